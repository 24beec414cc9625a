"""inic gateware: Amaranth 0.5 components and the wire formats they share with sim/ and host_driver/."""
