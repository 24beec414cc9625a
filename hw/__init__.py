"""inic gateware: Amaranth components and the wire formats shared with sim/ and host_driver/."""
