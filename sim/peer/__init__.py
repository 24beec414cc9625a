"""The real Linux TCP stack as the NIC's remote peer (``inic peer``, SPEC §10).

- :mod:`sim.peer.netns`: the namespace and its TAP device (the kernel's end of the wire).
- :mod:`sim.peer.tap`: attaching to that TAP from the simulator, non-blocking frame I/O.
- :mod:`sim.peer.bridge`: the wire between the TAP and the NIC's MAC, inside the cocotb test.
- :mod:`sim.peer.peer_tb`: the cocotb module: NIC RTL, driver, host stack, service, bridge.
- :mod:`sim.peer.services`: echo, discard, reply:N on the host stack's connections.
- :mod:`sim.peer.run`: ``inic peer`` itself (namespace, simulation process, the user's command).
- :mod:`sim.peer.kernel_client`: the kernel-side socket program the tests (and users) run.

docs/kernel_peer.md explains the design and the figures.
"""
