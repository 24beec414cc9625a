"""inic host-driver model (SPEC §4).

Built so far: :mod:`host_driver.memory` (host DRAM with an allocator, which the simulated PCI bus
will serve DMA from) and :mod:`host_driver.tcp` (a small host TCP endpoint for the slow path,
speaking in Ethernet/IPv4 frames). The driver proper (rings, commands, events) arrives with the
host interface.
"""
