"""cocotb testbench for the whole NIC (``hw.nic.Nic``, Verilog top ``inic_nic``).

:class:`NicTb` owns the clock, reset, host memory, the PCI model (:mod:`sim.cosim.pci`: MMIO and
the DMA target) and :class:`MacPort`, which drives MAC RX and collects MAC TX frames in one
coroutine per clock edge. The end-to-end test and ``inic demo`` play
:class:`sim.scenario.TcpScenario` on it; the slow-path bench drives the driver directly.
"""

import logging

import cocotb
from amaranth.lib import data
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, RisingEdge, Timer
from cocotb_bus.monitors import Monitor

from host_driver.memory import HostMemory
from hw.layouts import HostCounters, RxCounters, unpack
from hw.params import BEAT_BYTES, CLOCK_PERIOD_NS

from ..scoreboard import MirroredBus, NicScoreboard
from .pci import CocotbBus, LinkConfig
from .rx_tb import _BeatCodec, frame_beats

__all__ = ["NicTb", "MacPort", "EdgeMonitor", "HOST_MEMORY_BYTES", "peek_counters"]

#: Host DRAM the simulation gives the driver (rings, RX buffers, TX buffers).
HOST_MEMORY_BYTES = 1 << 24


def peek_counters(dut) -> dict:
    """Every counter of the NIC ``dut``, read from the register target's inputs in zero time (no
    bus access, so no simulated cycle), named as :meth:`host_driver.driver.NicDriver.counters`
    names them: ``rx_`` + RxCounters field, then the HostCounters fields."""
    rx = unpack(RxCounters, int(dut.registers.rx_counters.value))
    host = unpack(HostCounters, int(dut.registers.host_counters.value))
    out = {f"rx_{name}": int(getattr(rx, name)) for name in data.Layout.cast(RxCounters).members}
    out.update({name: int(getattr(host, name))
                for name in data.Layout.cast(HostCounters).members})
    return out


class EdgeMonitor(Monitor):
    """A cocotb-bus :class:`~cocotb_bus.monitors.Monitor` fed by the testbench's one coroutine per
    clock edge instead of a coroutine of its own (that one coroutine for every bus model is what
    keeps Icarus runs fast, see sim/cosim/rx_tb.py). Callbacks, ``wait_for_recv`` and
    :class:`cocotb_bus.scoreboard.Scoreboard` work as with any cocotb-bus monitor; without a
    callback, transactions queue in the monitor."""

    def __init__(self, name, callback=None):
        self.name = name
        self.log = logging.getLogger(f"cocotb.monitor.{name}")
        super().__init__(callback)

    async def _monitor_recv(self):
        return      # transactions arrive through publish()

    def publish(self, transaction):
        self._recv(transaction)


class MacPort:
    """The MAC side: frames queued with :meth:`send` go out on ``mac_rx`` one beat a clock, back
    to back, or with :attr:`wire_spacing` spaced as a 10GbE wire spaces them (SPEC §6: each frame
    takes its bytes + 24 of FCS, preamble and inter-frame gap, at 8 bytes a clock: idle clocks
    follow each frame, the fractions carried over); each frame is given to ``on_rx_start`` as its
    first beat goes out. Frames leaving on ``mac_tx`` are published on :attr:`tx_monitor` (and
    given to ``on_tx``). ``mac_tx`` is always ready, or with :attr:`tx_wire_spacing` not ready for
    the clocks the wire spends after each frame. Counts what crossed; :attr:`tx_end_cycles` has the
    clock of each TX frame's last beat (clear it at will), :attr:`last_rx_cycle` that of the last
    RX beat taken."""

    #: Bytes a 10GbE wire spends on a frame beyond the bytes the MAC hands over.
    WIRE_OVERHEAD_BYTES = 24

    def __init__(self, dut, on_tx=None):
        self._dut = dut
        self.on_tx = on_tx
        self.on_rx_start = None
        self.tx_monitor = EdgeMonitor("mac_tx")
        self._codec = _BeatCodec()
        self._beats: list[int] = []
        self._pos = 0
        self._queue: list[bytes] = []
        self._tx = bytearray()
        self.rx_frames = self.rx_bytes = self.tx_frames = self.tx_bytes = 0
        self.rx_stalls = 0
        self.cycle = 0              # rising edges seen
        self.last_tx_cycle = 0      # when the last MAC TX frame ended
        self._offered = False
        self.wire_spacing = False
        self._gap = 0.0             # idle clocks owed to the wire before the next frame
        self.tx_wire_spacing = False
        self._tx_gap = 0.0
        self._tx_ready = 1
        self.tx_end_cycles: list[int] = []
        self.last_rx_cycle = 0
        dut.mac_rx__valid.value = 0
        dut.mac_tx__ready.value = 1

    def send(self, frame: bytes):
        self._queue.append(bytes(frame))

    @property
    def queued(self) -> int:
        """Frames waiting to go out on MAC RX (the one going out not counted)."""
        return len(self._queue)

    @property
    def tx_idle(self) -> bool:
        """No MAC TX frame is half received."""
        return not self._tx

    @property
    def idle(self) -> bool:
        return not self._queue and not self._beats

    def step(self):
        dut = self._dut
        self.cycle += 1
        if self._offered:
            if int(dut.mac_rx__ready.value):
                self._pos += 1
                self.last_rx_cycle = self.cycle
                if self._pos == len(self._beats):
                    if self.wire_spacing:
                        self._gap += self._frame_wire_cycles - len(self._beats)
                    self._beats, self._pos = [], 0
            else:
                self.rx_stalls += 1
        if not self._beats and self._gap >= 1:
            self._gap -= 1
        elif not self._beats and self._queue:
            frame = self._queue.pop(0)
            self._beats = frame_beats(frame)
            self._frame_wire_cycles = (len(frame) + self.WIRE_OVERHEAD_BYTES) / BEAT_BYTES
            self.rx_frames += 1
            self.rx_bytes += len(frame)
            if self.on_rx_start is not None:
                self.on_rx_start(frame)
        offer = bool(self._beats)
        if offer:
            dut.mac_rx__payload.value = self._beats[self._pos]
        if offer != self._offered:
            dut.mac_rx__valid.value = int(offer)
            self._offered = offer
        if self._tx_ready and int(dut.mac_tx__valid.value):
            chunk, keep, last = self._codec.fields(int(dut.mac_tx__payload.value))
            self._tx += chunk[:bin(keep).count("1")] if last else chunk
            if last:
                frame, self._tx = bytes(self._tx), bytearray()
                self.tx_frames += 1
                self.tx_bytes += len(frame)
                self.last_tx_cycle = self.cycle
                self.tx_end_cycles.append(self.cycle)
                if self.tx_wire_spacing:
                    beats = -(-len(frame) // BEAT_BYTES)
                    self._tx_gap += (len(frame) + self.WIRE_OVERHEAD_BYTES) / BEAT_BYTES - beats
                if self.on_tx is not None:
                    self.on_tx(frame)
                if self.tx_monitor._callbacks:
                    self.tx_monitor.publish(frame)
        # Ready for the next clock: low while the wire still spends the last frame's gap.
        ready = 1
        if self._tx_gap >= 1:
            self._tx_gap -= 1
            ready = 0
        if ready != self._tx_ready:
            dut.mac_tx__ready.value = ready
            self._tx_ready = ready


class NicTb:
    """The NIC testbench: clock, reset, host memory, the PCI model (``bus``, a
    :class:`~sim.cosim.pci.CocotbBus`), the MAC (``mac``) and the scoreboard.

    With ``scoreboard`` ("exact" or "follow", the RX mode of :class:`sim.scoreboard.NicScoreboard`)
    :attr:`scoreboard` runs the NIC model beside the RTL: it sees the MAC's frames both ways and
    every register write made through :attr:`host_bus` (the bus to give the driver, a
    :class:`~sim.scoreboard.MirroredBus`); give it the driver's events with :meth:`watch` and end
    the test with :meth:`check`. Without, :attr:`host_bus` is :attr:`bus` and nothing is compared
    (``inic demo``, ``inic bench``).
    """

    def __init__(self, dut, link: LinkConfig | None = None, *, scoreboard: str | None = None):
        self.dut = dut
        self.memory = HostMemory(HOST_MEMORY_BYTES)
        self.bus = CocotbBus(dut, self.memory, link)
        # cocotbext-axi logs every register access at INFO: thousands of lines a run, and slow.
        logging.getLogger(f"cocotb.{dut._name}.s_axil_").setLevel(logging.WARNING)
        self.mac = MacPort(dut)
        self.scoreboard = None
        self.host_bus = self.bus
        if scoreboard is not None:
            self.scoreboard = NicScoreboard(
                self.memory.read, base=self.memory.base, size=self.memory.size,
                errors=self.bus.dma.config.errors, rx=scoreboard, log=dut._log)
            self.scoreboard.attach_mac(self.mac)
            self.host_bus = MirroredBus(self.bus, self.scoreboard)

    def watch(self, driver) -> None:
        """Give every event ``driver`` takes to the scoreboard."""
        driver.on_event = self.scoreboard.rtl_event

    def check(self) -> None:
        """The scoreboard's final check, with the RTL's counters (read in zero time)."""
        self.scoreboard.check(peek_counters(self.dut))
        self.dut._log.info("scoreboard: compared %s", self.scoreboard.compared)

    async def reset(self, cycles=4):
        self.dut.rst.value = 1
        # The clock starts after the design's combinational logic has settled (sim/verilog.py,
        # for_icarus: 1 ns), so the bus models never sample an undriven ready at the first edge.
        await Timer(2, unit="ns")
        cocotb.start_soon(Clock(self.dut.clk, CLOCK_PERIOD_NS, unit="ns", impl="gpi").start())
        await ClockCycles(self.dut.clk, cycles)
        self.dut.rst.value = 0
        self.bus.start()
        cocotb.start_soon(self._edges())

    async def _edges(self):
        edge = RisingEdge(self.dut.clk)
        while True:
            await edge
            self.mac.step()

    @property
    def cycle(self) -> int:
        return self.bus.now()
