"""cocotb module of ``inic peer``: the NIC RTL between the kernel's TAP and the host stack.

    kernel ⇄ TAP ⇄ WireBridge ⇄ MAC ⇄ NIC RTL ⇄ PCI model ⇄ driver ⇄ host TcpStack ⇄ Service

Everything is configured by the JSON file named in ``INIC_PEER_CONFIG`` (written by
:mod:`sim.peer.run`). The test writes ``ready_file`` once the NIC is up and the host stack listens
(or connects, with ``connect``), runs until ``stop_file`` appears, the process ``watch_pid`` is
gone or ``max_cycles`` pass, lets open connections finish for a while, and writes
``result_file``: the figures of ``inic peer --json`` and more.

The host stack's clock is the simulated cycle count times ``tcp_seconds_per_cycle``: its timers
run on simulated time, scaled so that they tick at about the kernel's wall-clock pace while the
simulation runs (see docs/kernel_peer.md).

With ``offload`` (the default of ``inic peer``) the host stack hands the kernel's connections to the
NIC's fast path by :class:`host_driver.offload.OffloadPolicy` and the service reads through posted
receives (RCVMDLs); the NIC model then does not run beside the RTL (as in
tests/cosim/nic_fast_path_tests.py: the handout's fence and the delayed-ACK timer make the two
differ in timing), and the result carries the offload's statistics and the NIC's FP_* counters.
"""

import dataclasses
import json
import os
import time
import traceback
from pathlib import Path

import cocotb

from host_driver.driver import NicDriver, StackPort
from host_driver.offload import HostOffload, OffloadPolicy, Phase
from host_driver.tcp import TcpStack
from hw.layouts import FastPathCounters, unpack

from ..cosim.nic_tb import NicTb, peek_counters
from .bridge import WireBridge
from .services import Service
from .tap import Tap, open_tap

#: Cycles the host loop lets pass when no interrupt comes.
QUANTUM = 200
#: Cycles between two looks at the stop file and the watched process.
CHECK_CYCLES = 2048
#: Cycles the TX path gets at the end to send what the host posted.
DRAIN_CYCLES = 50_000
#: Cycles a client-mode connect waits before trying again after "connection refused".
CONNECT_RETRY_CYCLES = 4000
#: Cycles the end of a run waits at most for the NIC to settle: every frame MAC RX took counted
#: by where it went, every RX event taken by the driver (a frame still in flight when the counters
#: are read would break the accounting).
SETTLE_CYCLES = 50_000


@dataclasses.dataclass
class Starvation:
    """Stop re-posting RX buffers once ``after_bytes`` arrived, for ``cycles`` clocks."""
    after_bytes: int
    cycles: int
    start: int | None = None
    end: int | None = None


class PeerHost:
    """The host behind the NIC: driver, stack port, TCP stack and the service on it."""

    def __init__(self, tb: NicTb, config: dict):
        self.tb = tb
        self.bus = tb.host_bus      # the driver's register writes reach the scoreboard's model too
        self.driver = NicDriver(self.bus)
        self.port = StackPort(self.driver)
        scale = config["tcp_seconds_per_cycle"]
        host = config["host"]
        self.stack = TcpStack(
            host["mac"], host["ipv4"], self.port.send_frame, lambda: self.bus.now() * scale,
            ipv6=host["ipv6"], **config["stack"])
        self.offload = None
        if config.get("offload"):
            # As sim/scenario.py attaches it: the offload takes the driver's frames and events.
            self.port.stack = self.stack
            self.offload = HostOffload(self.driver, self.stack, OffloadPolicy())
        else:
            self.port.attach(self.stack)
        self.service = Service(config["service"], config["reply_bytes"], offload=self.offload)
        # Per served connection first handed out: its OffloadStats (kept by reference: the
        # offload forgets a closed connection) and their slow-path bytes at that moment (HANDOUT2
        # posted), so the slow-path bytes after the handout can be told.
        self.handout_marks: dict = {}
        self.listener = None
        starve = config.get("starve")
        self.starve = Starvation(**starve) if starve else None
        self.connect_attempts = 0
        self.rx_capacity = 0        # RX buffers kept posted when not starving (set at start)
        self.settled = None         # the end condition: {"ok", "cycles" waited for it}

    async def step(self) -> None:
        if await self.bus.wait_irq(QUANTUM):
            await self.driver.service()
        if self.offload is not None:
            await self.offload.pump()
            self._note_handouts()
        self.stack.poll()
        if self.listener is not None:
            while conn := self.listener.accept():
                self.service.serve(conn)
        self.service.poll()
        await self.port.flush()
        await self._starve()

    def _note_handouts(self) -> None:
        """Right after the pump that posted a connection's first HANDOUT2: every slow-path frame
        the host took before the INTERLOCK is counted, every later one is held."""
        for served in self.service.connections:
            conn = served.conn
            if conn not in self.handout_marks and self.offload.phase(conn) is Phase.OFFLOADED:
                stats = self.offload.connection_stats(conn)
                self.handout_marks[conn] = (stats, stats.rx_slow_bytes)

    async def _starve(self) -> None:
        s = self.starve
        if s is None or s.end is not None:
            return
        now = self.bus.now()
        if s.start is None and self.stack.stats.bytes_received >= s.after_bytes:
            s.start = now
            self.driver.rx_target = 0
        elif s.start is not None and now - s.start >= s.cycles:
            s.end = now
            self.driver.rx_target = self.rx_capacity
            await self.driver.refill()


@cocotb.test()
async def peer(dut):
    config = json.loads(Path(os.environ["INIC_PEER_CONFIG"]).read_text())
    # Without the offload the NIC model runs beside the RTL on the kernel's traffic, whatever the
    # kernel sends (sim/scoreboard.py; "follow": which frames find an RX buffer is a matter of
    # timing). With it the model would differ in timing (the module docstring).
    offload = bool(config.get("offload"))
    tb = NicTb(dut, scoreboard=None if offload else "follow")
    await tb.reset()
    host = PeerHost(tb, config)
    if tb.scoreboard is not None:
        tb.watch(host.driver)
    tap = Tap(open_tap(config["netns"], config["tap"]))
    bridge = WireBridge(tap, tb.mac, dut.clk, pcap=config.get("pcap"))
    tb.mac.wire_spacing = True
    tb.mac.on_tx = bridge.to_kernel
    error = None
    stopped_by = None
    try:
        await host.driver.start(**config["driver"])
        host.rx_capacity = host.driver.rx_target
        cocotb.start_soon(bridge.start())
        connect = config.get("connect")
        if connect is None:
            host.listener = host.stack.listen(config["port"])
        Path(config["ready_file"]).write_text(json.dumps({"cycle": tb.cycle}))
        stopped_by = await _serve(host, config, connect)
    except Exception as exc:        # reported in the result, then re-raised for cocotb
        error = f"{type(exc).__name__}: {exc}"
        dut._log.error("%s", traceback.format_exc())
    scoreboard = None
    offload_stats = fast = None
    if host.offload is not None and error is None:
        offload_stats = await host.offload.statistics()
        fast = await host.driver.fast_path_counters()
    if tb.scoreboard is not None and error is None:
        try:
            tb.check()
            scoreboard = {"compared": dict(tb.scoreboard.compared), "mismatches": []}
        except AssertionError as exc:
            scoreboard = {"compared": dict(tb.scoreboard.compared),
                          "mismatches": tb.scoreboard.mismatches[:20]}
            error = str(exc).splitlines()[0]
    result = _result(tb, host, bridge, tap, error, stopped_by, offload_stats, fast)
    result["scoreboard"] = scoreboard
    bridge.close()
    tap.close()
    Path(config["result_file"]).write_text(json.dumps(result))
    assert error is None, error


class Client:
    """Client mode (``connect``): the host stack connects to the kernel's listener, again every
    ``CONNECT_RETRY_CYCLES`` while the answer is "connection refused" (the listener, started by
    the user's command, may not be up yet), at most ``attempts`` times."""

    def __init__(self, host: PeerHost, address: str, port: int, attempts: int):
        self.host, self.address, self.port, self.attempts = host, address, port, attempts
        self.next_try: int | None = host.bus.now()
        self.served = None

    def poll(self) -> None:
        host, now = self.host, self.host.bus.now()
        if self.next_try is not None and now >= self.next_try:
            self.next_try = None
            host.connect_attempts += 1
            self.served = host.service.serve(host.stack.connect(None, self.address, self.port))
        elif (self.served is not None and self.served.conn.error == "connection refused"
              and host.connect_attempts < self.attempts):
            host.service.connections.remove(self.served)
            self.served = None
            self.next_try = now + CONNECT_RETRY_CYCLES


async def _serve(host: PeerHost, config: dict, connect: dict | None) -> str:
    """Run the host until told to stop; then give open connections ``grace_cycles`` to close and
    the TX path time to send what the host posted. Returns what stopped it."""
    bus = host.bus
    client = None
    if connect is not None:
        address = config["peer"]["ipv6" if connect["ipv6"] else "ipv4"]
        client = Client(host, address, connect["port"], connect["attempts"])
    next_check = bus.now() + CHECK_CYCLES
    stopped_by = None
    while stopped_by is None:
        if client is not None:
            client.poll()
        await host.step()
        if bus.now() >= next_check:
            next_check = bus.now() + CHECK_CYCLES
            stopped_by = _stop_reason(config, bus.now())
    grace_end = bus.now() + config["grace_cycles"]
    while not host.service.done and bus.now() < grace_end:
        await host.step()
    # Let what the host posted leave the wire, so the TX counters can be compared.
    while (host.driver.tx_pending or host.port.pending or not host.tb.mac.tx_idle) \
            and bus.now() < grace_end + DRAIN_CYCLES:
        await host.step()
    settle_start = bus.now()
    while not (settled := _settled(host)) and bus.now() < settle_start + SETTLE_CYCLES:
        await host.step()
    host.settled = {"ok": settled, "cycles": bus.now() - settle_start}
    return stopped_by


def peek_fast_path_counters(dut) -> dict:
    """The NIC's FastPathCounters, read from the register target's inputs in zero time."""
    fp = unpack(FastPathCounters, int(dut.registers.fast_path_counters.value))
    return {name: int(getattr(fp, name)) for name in ("fast_frames", "frame_data", "pure_acks",
                                                       "queued")}


def _settled(host: PeerHost) -> bool:
    """Every frame MAC RX played is counted where it went (to the host, to the fast path with
    none left in a connection's queue, or to a counted drop) and every RX buffer the NIC filled
    reached the driver: the end condition of a run, waited for rather than sampled once."""
    if not host.tb.mac.idle:
        return False
    counters = peek_counters(host.tb.dut)
    drops = sum(v for k, v in counters.items() if k.startswith("rx_drop_"))
    taken = counters["rx_to_host"] + drops
    if host.offload is not None:
        fp = peek_fast_path_counters(host.tb.dut)
        if fp["queued"]:
            return False
        taken += fp["fast_frames"] + fp["frame_data"] + fp["pure_acks"]
    return (counters["rx_frames"] == taken == host.tb.mac.rx_frames
            and counters["rx_to_host"] == host.driver.stats.rx_frames)


def _stop_reason(config: dict, cycle: int) -> str | None:
    if Path(config["stop_file"]).exists():
        return "stop file"
    if not Path(f"/proc/{config['watch_pid']}").exists():
        return "inic peer exited"
    if config["max_cycles"] and cycle >= config["max_cycles"]:
        return "max_cycles"
    return None


def _result(tb: NicTb, host: PeerHost, bridge: WireBridge, tap: Tap, error, stopped_by,
            offload_stats: dict | None, fast: dict | None) -> dict:
    counters = peek_counters(tb.dut)
    nic_drops = sum(v for k, v in counters.items() if k.startswith("rx_drop_"))
    # Frames the fast path took (placed, shown with FRAME_DATA, pure ACKs, still queued).
    fast_frames = 0 if fast is None else (fast["fp_fast_frames"] + fast["fp_frame_data"]
                                          + fast["fp_pure_acks"] + fast["fp_queued"])
    nic_acks = 0 if fast is None else fast["fp_acks_sent"]
    served = [s.summary() for s in host.service.connections]
    connection_errors = [s["error"] for s in served if s["error"]]
    # Every frame is accounted for: from the kernel into MAC RX (or dropped in the bridge), then
    # into the host or dropped by the NIC with a counted reason.
    accounting = {
        "bridge": bridge.frames_in == tb.mac.rx_frames + tb.mac.queued + bridge.queue_drops,
        "nic_rx": counters["rx_frames"] == counters["rx_to_host"] + fast_frames + nic_drops,
        "driver_rx": counters["rx_to_host"] == host.driver.stats.rx_frames,
        # MAC TX: the host's frames and the ACKs the NIC built itself.
        "tx": counters["tx_frames"] + nic_acks == tb.mac.tx_frames == bridge.frames_out,
    }
    ok = (error is None and not connection_errors and all(accounting.values())
          and bool(served) and all(s["state"] in ("CLOSED", "TIME-WAIT") for s in served))
    stats = host.stack.stats
    return {
        "ok": ok,
        "error": error or (connection_errors[0] if connection_errors else None),
        "stopped_by": stopped_by,
        "connections": len(served),
        "bytes_in": sum(s["bytes_in"] for s in served),
        "bytes_out": sum(s["bytes_out"] for s in served),
        "frames_in": bridge.frames_in,
        "frames_out": bridge.frames_out,
        "frames_dropped": bridge.queue_drops + tap.write_drops + nic_drops,
        "cycles": tb.cycle,
        **_fast_path_figures(host, offload_stats, fast),
        "wall_seconds": round(bridge.wall_seconds, 3),
        "simulated_seconds": bridge.simulated_seconds,
        "slowdown": round(bridge.slowdown, 1),
        "cycles_per_wall_second": round(tb.cycle / bridge.wall_seconds) if bridge.wall_seconds
        else 0,
        "accounting": accounting,
        "settled": host.settled,
        "drops": {"bridge_queue": bridge.queue_drops, "tap_write": tap.write_drops,
                  **{k: v for k, v in counters.items() if k.startswith("rx_drop_")}},
        "starved": dataclasses.asdict(host.starve) if host.starve else None,
        "connect_attempts": host.connect_attempts,
        "host_stack": dataclasses.asdict(stats),
        "served": served,
        "counters": counters,
        "driver": {"rx_frames": host.driver.stats.rx_frames,
                   "tx_frames": host.driver.stats.tx_frames,
                   "interrupts": host.driver.stats.interrupts},
        "wall_time": time.time(),
    }


def _fast_path_figures(host: PeerHost, stats: dict | None, fast: dict | None) -> dict:
    """``fast_path_bytes`` (the NIC's FP_FAST_BYTES + FP_FRAME_DATA_BYTES: payload it placed into
    RCVMDLs or showed with FRAME_DATA), ``slow_path_bytes`` (in-order payload the host stack took
    from RX buffers; of it ``slow_path_bytes_after_handout``), ``handouts`` and ``flushes`` (the
    NIC's FP_HANDOUTS, FP_FLUSHES; ``flushes_by_reason`` from the FLUSH events), then the offload's
    statistics (``offload``: GET_TCP_STATISTICS, the FP_* counters included)."""
    if host.offload is None:
        # No offload: every payload byte came up through the RX buffers and the host stack.
        return {"fast_path_bytes": 0, "slow_path_bytes": host.stack.stats.bytes_received,
                "handouts": 0, "flushes": 0, "offload_on": False, "offload": None}
    if stats is None:           # the run failed before the statistics were read
        return {"fast_path_bytes": 0, "slow_path_bytes": 0, "handouts": 0, "flushes": 0,
                "offload_on": True, "offload": None}
    after = sum(s.rx_slow_bytes - mark for s, mark in host.handout_marks.values())
    return {
        "fast_path_bytes": fast["fp_fast_bytes"] + fast["fp_frame_data_bytes"],
        "slow_path_bytes": stats["rx_slow_bytes"],
        "handouts": fast["fp_handouts"],
        "flushes": fast["fp_flushes"],
        "slow_path_bytes_after_handout": after,
        "flushes_by_reason": stats["flushes"],
        "offload_on": True,
        "offload": stats,
    }
