"""inic host-driver model (SPEC §4).

:mod:`host_driver.driver` (rings, buffers, doorbells, the interrupt handler, checksum offload, the
fast-path commands and events) over a :mod:`host_driver.bus` (the NIC model or the RTL under
cocotb); :mod:`host_driver.ccb` (the Ccb records of the fast path); :mod:`host_driver.checksum` (the
driver's Internet-checksum helpers); :mod:`host_driver.memory` (host DRAM with an allocator, which
the simulated PCI bus serves DMA from); :mod:`host_driver.tcp` (a small host TCP endpoint for the
slow path, speaking in Ethernet/IPv4 and IPv6 frames) and :mod:`host_driver.neighbours` (its ARP and
IPv6 neighbour discovery). Nothing here imports ``sim/``.
"""
