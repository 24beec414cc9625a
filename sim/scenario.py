"""The end-to-end TCP scenario: a remote peer on the wire, a host stack behind the driver.

The same scenario runs against the RTL under cocotb (``sim/cosim/nic_tb.py``: ``inic demo``, the
end-to-end cosim test, ``inic bench``) and against the Python NIC model (``tests/unit``). It knows
the NIC only through a :class:`host_driver.bus.Bus` and two callables: ``to_wire`` (a frame into MAC
RX) and :meth:`TcpScenario.from_wire` (a frame the NIC sent on MAC TX).

    remote TcpStack ──frames──► MAC RX ─► NIC ─► DMA ─► driver ─► StackPort ─► host TcpStack
                    ◄─frames─── MAC TX ◄─ NIC ◄─ DMA ◄─ driver ◄─ StackPort ◄─

The TCP clock is the bus's cycle count scaled by ``cycle_seconds``, with the stacks' timers shrunk
to match, so a retransmission timeout is a few thousand cycles, not a simulated second.
"""

import random
from collections import deque
from collections.abc import Callable

from host_driver.bus import Bus
from host_driver.driver import NicDriver, StackPort
from host_driver.offload import HostOffload, OffloadPolicy
from host_driver.tcp import State, TcpStack

__all__ = ["REMOTE_MAC", "REMOTE_IP", "HOST_MAC", "HOST_IP", "CYCLE_SECONDS", "TCP_TIMERS",
           "TcpScenario", "ScenarioTimeout"]

REMOTE_MAC, REMOTE_IP = "02:00:00:00:00:02", "10.0.0.2"
HOST_MAC, HOST_IP = "02:00:00:00:00:01", "10.0.0.1"
#: TCP seconds per NIC cycle: 1 µs, so the stacks' timers below are a few thousand cycles.
CYCLE_SECONDS = 1e-6
TCP_TIMERS = {"rto_initial": 0.02, "rto_min": 0.004, "rto_max": 0.1, "time_wait": 0.005,
              "max_retries": 30}
#: Cycles the loop lets pass when no interrupt comes.
QUANTUM = 200


class ScenarioTimeout(AssertionError):
    """A step of the scenario did not finish within its cycle budget."""


class TcpScenario:
    """Remote peer ⇄ NIC ⇄ driver ⇄ host stack.

    Parameters
    ----------
    bus : Bus
    to_wire : Callable[[bytes], None]
        Puts a frame on MAC RX.
    start : dict
        Keyword arguments of :meth:`NicDriver.start` (ring sizes, moderation...).
    step_hook : async callable or None
        Called once per loop step (tests use it to starve the NIC of RX buffers).
    offload : OffloadPolicy or None
        With a policy, the host stack hands connections out to the NIC's fast path
        (:class:`host_driver.offload.HostOffload`, ``self.offload``); None: no offload at all.
    stack_options : dict
        More keyword arguments for both :class:`TcpStack`s.
    """

    def __init__(self, bus: Bus, to_wire: Callable[[bytes], None], *, start=None,
                 step_hook=None, cycle_seconds=CYCLE_SECONDS,
                 offload: OffloadPolicy | None = None, stack_options=None):
        self.bus = bus
        self.to_wire = to_wire
        self.start_options = dict(start or {})
        self.step_hook = step_hook
        self.cycle_seconds = cycle_seconds
        self.driver = NicDriver(bus)
        self.port = StackPort(self.driver)
        self._from_nic: deque[bytes] = deque()
        self._to_nic: deque[bytes] = deque()
        options = {**TCP_TIMERS, **(stack_options or {})}
        self.remote = TcpStack(REMOTE_MAC, REMOTE_IP, self._to_nic.append, self.clock, **options)
        self.host = TcpStack(HOST_MAC, HOST_IP, self.port.send_frame, self.clock, **options)
        if offload is None:
            self.offload = None
            self.port.attach(self.host)
        else:
            self.port.stack = self.host
            self.offload = HostOffload(self.driver, self.host, offload)
        self.frames_to_nic = 0
        self.frames_from_nic = 0

    def clock(self) -> float:
        return self.bus.now() * self.cycle_seconds

    def from_wire(self, frame: bytes) -> None:
        """A frame the NIC sent on MAC TX (for the remote peer)."""
        self._from_nic.append(bytes(frame))

    async def step(self):
        while self._to_nic:
            self.to_wire(self._to_nic.popleft())
            self.frames_to_nic += 1
        while self._from_nic:
            self.remote.receive_frame(self._from_nic.popleft())
            self.frames_from_nic += 1
        if await self.bus.wait_irq(QUANTUM):
            await self.driver.service()
        if self.offload is not None:
            await self.offload.pump()
        await self.port.flush()
        self.remote.poll()
        self.host.poll()
        if self.step_hook is not None:
            await self.step_hook()

    async def run_until(self, condition, what, max_cycles=20_000_000):
        start = self.bus.now()
        while not condition():
            if self.bus.now() - start > max_cycles:
                raise ScenarioTimeout(f"{what}: not done after {self.bus.now() - start} cycles")
            await self.step()

    async def transfer(self, down=1 << 20, up=256 << 10, seed=1):
        """Remote connects to the host's port 80, sends ``down`` bytes, the host sends ``up``
        back, both close. Returns ``(bytes the host got, bytes the remote got, expected)``."""
        rng = random.Random(seed)
        down_data, up_data = rng.randbytes(down), rng.randbytes(up)
        await self.driver.start(**self.start_options)
        listener = self.host.listen(80)
        remote_conn = self.remote.connect(HOST_MAC, HOST_IP, 80)
        accepted = []
        await self.run_until(lambda: accepted.append(listener.accept()) or accepted[-1],
                             "handshake")
        host_conn = accepted[-1]
        got_down, got_up = bytearray(), bytearray()

        def drained(conn, buf, n):
            if conn.recv_queue:
                buf += conn.recv(1 << 20)
            return len(buf) >= n

        remote_conn.send(down_data)
        await self.run_until(lambda: drained(host_conn, got_down, down), "remote -> host")
        host_conn.send(up_data)
        await self.run_until(lambda: drained(remote_conn, got_up, up), "host -> remote")
        remote_conn.close()
        await self.run_until(lambda: host_conn.eof, "remote close")
        host_conn.close()
        await self.run_until(lambda: remote_conn.state in (State.CLOSED, State.TIME_WAIT)
                             and host_conn.state is State.CLOSED, "host close")
        return bytes(got_down), bytes(got_up), (down_data, up_data)
