"""Host interface: AXI4-Lite registers, the DMA master, the rings and the slow path (SPEC §3)."""
