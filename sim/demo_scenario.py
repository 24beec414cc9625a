"""The scenario of ``inic demo``: a TCP transfer that shows the slow path, a handout, the fast
path, a flush and a re-handout (docs/fast_path.md), on any NIC behind a
:class:`host_driver.bus.Bus` — the RTL under cocotb (sim/cosim/demo_tb.py) or the NIC model
(tests/unit/test_demo_scenario.py).

1. The remote connects to the host's port 80 (slow path: SYN, SYN-ACK, ACK).
2. The host stack's :class:`~host_driver.offload.OffloadPolicy` hands the connection out; an
   application (:class:`sim.offload_app.Reader`) posts receives, which become RCVMDLs.
3. The remote sends ``down`` bytes: the NIC places them into the application's buffers and ACKs
   them itself (fast path).
4. A third of the way through, the wire loses one data segment: the next one is out of order,
   the NIC flushes the connection (``OUT_OF_ORDER``); the host stack recovers on the slow path
   (the remote resends) and the policy hands the connection out again.
5. The host answers with ``up`` bytes: a send on an offloaded connection flushes it (``HOST``),
   the stack sends on the slow path, and once everything is acknowledged hands it out again.
6. The remote closes (``FIN`` flushes), then the host.

:func:`figures` measures the outcome from the host side's statistics
(:meth:`HostOffload.statistics`) and cross-checks them with the NIC's FastPathCounters.
"""

from host_driver.tcp import State
from sim.offload_app import SEGMENT, Reader, payload
from sim.scenario import HOST_IP, HOST_MAC, TcpScenario

__all__ = ["LossyWire", "OffloadDemo", "figures", "DATA_FRAME_MIN_BYTES"]

#: A remote frame longer than this carries data (a pure ACK with timestamps is 66 bytes, a SYN 78).
DATA_FRAME_MIN_BYTES = 80
#: Timeout of every phase, in NIC cycles.
PHASE_CYCLES = 50_000_000


class LossyWire:
    """The remote -> NIC wire: passes frames to ``to_wire`` and loses one data segment, the first
    one after ``after`` data segments that goes by while ``armed()`` is true."""

    def __init__(self, to_wire, after: int, armed):
        self.to_wire, self.after, self.armed = to_wire, after, armed
        self.data_frames = 0
        self.lost = None        # the lost segment's index among the data segments

    def __call__(self, frame: bytes) -> None:
        if len(frame) > DATA_FRAME_MIN_BYTES:
            self.data_frames += 1
            if self.lost is None and self.data_frames > self.after and self.armed():
                self.lost = self.data_frames
                return
        self.to_wire(frame)


class _ReaderSetup:
    """What :class:`Reader` needs: the offload and the host memory."""

    def __init__(self, offload, memory):
        self.offload, self.memory = offload, memory


class OffloadDemo:
    """The scenario on ``scenario`` (a :class:`TcpScenario` with an offload policy, whose
    ``to_wire`` is a :class:`LossyWire` armed by :meth:`offloaded`).

    Members
    -------
    steps : list of (str, int)
        Each phase that finished and the NIC cycle it finished at.
    """

    def __init__(self, scenario: TcpScenario, down: int, up: int, seed: int = 1):
        self.scenario, self.down, self.up = scenario, down, up
        self.down_data, self.up_data = payload(down, seed), payload(up, seed + 1)
        self.conn = self.remote = self.reader = None
        self.got_up = bytearray()
        self.steps: list[tuple[str, int]] = []

    @staticmethod
    def lose_after(down: int) -> int:
        """Data segments that pass before the one the wire loses: a third of the download."""
        return max(1, down // SEGMENT // 3)

    def offloaded(self) -> bool:
        """The host's connection is handed out (HANDOUT2 posted)."""
        return self.conn is not None and self.scenario.offload.offloaded(self.conn)

    async def _until(self, condition, what):
        await self.scenario.run_until(condition, what, PHASE_CYCLES)
        self.steps.append((what, self.scenario.bus.now()))

    async def run(self) -> None:
        """Every phase; raises :class:`sim.scenario.ScenarioTimeout` when one does not finish."""
        s = self.scenario
        await s.driver.start(**s.start_options)
        listener = s.host.listen(80)
        self.remote = s.remote.connect(HOST_MAC, HOST_IP, 80)
        accepted = []
        await self._until(lambda: accepted.append(listener.accept()) or accepted[-1],
                          "handshake")
        self.conn = accepted[-1]
        self.reader = Reader(_ReaderSetup(s.offload, s.driver.memory), self.conn)
        await self._until(lambda: self.reader.pump() or self.offloaded(), "handout")
        self.remote.send(self.down_data)
        await self._until(lambda: self.reader.pump() or len(self.reader.data) >= self.down,
                          "download")
        self.conn.send(self.up_data)

        def uploaded():
            self.reader.pump()
            if self.remote.recv_queue:
                self.got_up += self.remote.recv(1 << 20)
            return len(self.got_up) >= self.up

        await self._until(uploaded, "upload")
        await self._until(lambda: self.reader.pump() or self.offloaded(), "handout again")
        self.remote.close()
        await self._until(lambda: self.reader.pump() or not self.reader.posted, "remote close")
        self.conn.close()
        await self._until(lambda: self.conn.state is State.CLOSED
                          and self.remote.state in (State.CLOSED, State.TIME_WAIT), "host close")

    @property
    def byte_exact(self) -> bool:
        return (self.reader is not None and bytes(self.reader.data) == self.down_data
                and bytes(self.got_up) == self.up_data)


async def figures(scenario: TcpScenario) -> dict:
    """The fast-path figures of ``inic demo --json``, measured on the host side and cross-checked
    with the NIC's FastPathCounters: ``fast_path_bytes`` (placed by the NIC into RCVMDLs),
    ``frame_data_bytes`` (shown by FRAME_DATA), ``slow_path_bytes`` (received data the host stack
    took from slow-path frames), ``tx_slow_bytes``, ``handouts``, ``flushes`` (by reason) and
    ``nic_acks``; ``mismatches`` lists every figure the two sides disagree on (empty when they
    agree), ``fast_path_counters`` the NIC's counters as read."""
    stats = await scenario.offload.statistics()
    fp = {name: value for name, value in stats.items() if name.startswith("fp_")}
    flushes = dict(stats["flushes"])
    nic_flushes = {name.removeprefix("fp_flush_").upper(): value for name, value in fp.items()
                   if name.startswith("fp_flush_") and value}
    pairs = {
        "fast_path_bytes": (stats["rx_fast_bytes"], fp["fp_fast_bytes"]),
        "fast_path_segments": (stats["rx_fast_segments"], fp["fp_fast_frames"]),
        "frame_data_bytes": (stats["rx_frame_data_bytes"], fp["fp_frame_data_bytes"]),
        "handouts": (stats["handouts"], fp["fp_handouts"]),
        "flushes": (flushes, nic_flushes),
        "nic_acks": (stats["nic_acks"], fp["fp_acks_sent"]),
    }
    out = {name: host for name, (host, _) in pairs.items()}
    out.update(slow_path_bytes=stats["rx_slow_bytes"], slow_path_segments=stats["rx_slow_segments"],
               tx_slow_bytes=stats["tx_slow_bytes"], refused=dict(stats["refused"]),
               mismatches=[f"{name}: host {host}, NIC {nic}"
                           for name, (host, nic) in pairs.items() if host != nic],
               fast_path_counters=fp)
    return out
