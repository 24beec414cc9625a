"""The host end of the PCI link for cocotb: MMIO into BAR0, host memory behind the NIC's DMA.

- :class:`DmaTarget` answers the DUT's AXI4 manager (``m_axi__*``: 64-bit address, 64/128/256-bit
  data as the DUT was built, 4-bit ID, INCR bursts) from a
  :class:`~host_driver.memory.HostMemory`, with a PCIe-like read latency,
  write-response latency and bandwidth (:class:`LinkConfig`), seeded random ready deassertion,
  error injection (address ranges answered SLVERR or DECERR) and a log of every transaction.
  It is written here rather than taken from cocotbext-axi: ``AxiRam``/``AxiSlave`` have no read
  latency, no bandwidth limit and answer only SLVERR (on an exception of the backend), and they
  run one coroutine per channel where one per clock edge is what keeps Icarus runs fast
  (see sim/cosim/rx_tb.py).
- :class:`CocotbBus` is :class:`host_driver.bus.Bus` over the DUT: registers through cocotbext-axi's
  ``AxiLiteMaster`` on ``s_axil__*``, the interrupt ``irq``, time in ``clk`` cycles; the driver
  (:mod:`host_driver.driver`) runs on it unchanged.

Defaults (:class:`LinkConfig`), for the NIC clock (:data:`hw.params.CLOCK_PERIOD_NS`, 6.4 ns)
behind a PCIe Gen3 x4 link:

- ``read_latency`` 78 cycles ≈ 500 ns: a memory read request's round trip through the root complex
  to DRAM and back (typically 400-900 ns on servers);
- ``write_latency`` 16 cycles ≈ 100 ns: PCIe writes are posted, so the bridge answers B as soon as
  the TLP is on its way;
- ``bytes_per_cycle`` 25: Gen3 x4 carries ≈ 3.94 GB/s per direction (8 GT/s, 128b/130b), ≈ 25
  bytes per NIC cycle, and ``tlp_overhead_bytes`` 24 more per burst (a TLP's header, sequence
  number, LCRC and framing), so small transfers cost what they cost on a real link; the 128-bit
  AXI bus moves 16 bytes a cycle, so for large bursts the bus limits, for small ones the link;
- ``max_reads`` 16 outstanding read bursts (tags), no random stalls, no errors.
"""

import random
from collections import deque
from dataclasses import dataclass, field

import cocotb
from cocotb.triggers import ClockCycles, First, RisingEdge
from cocotbext.axi import AxiLiteBus, AxiLiteMaster

from host_driver.bus import Bus
from host_driver.memory import HostMemory
from hw.host.axi import Burst, Resp

__all__ = ["LinkConfig", "AxiTransaction", "DmaTarget", "CocotbBus"]



@dataclass
class LinkConfig:
    """Timing and misbehaviour of the host side of the link (see the module docstring)."""
    read_latency: int = 78
    write_latency: int = 16
    bytes_per_cycle: float = 25.0
    tlp_overhead_bytes: int = 24
    max_reads: int = 16
    ready_stall: float = 0.0        # probability that a ready is low on a cycle
    seed: int = 1
    #: ``(start, end, resp, kind)``: bursts touching ``[start, end)`` get ``resp`` (Resp.SLVERR
    #: or Resp.DECERR); ``kind`` "read", "write" or "both".
    errors: list = field(default_factory=list)


@dataclass
class AxiTransaction:
    """One AXI burst as the monitor saw it."""
    kind: str           # "read" or "write"
    addr: int
    bytes: int          # beats × beat bytes (reads) / strobed bytes (writes)
    cycle: int          # address handshake
    id: int = 0
    beats: int = 0
    resp: int = Resp.OKAY
    done: int | None = None     # cycle of the last R beat / the B handshake


class _Credit:
    """Link bandwidth: ``rate`` bytes a cycle accrue (up to a few beats' worth); a beat may move
    when a beat's worth is there. A burst's TLP overhead is charged as it starts (the level may go
    negative: the next beats wait)."""

    def __init__(self, rate, beat):
        self.rate = rate
        self.beat = beat
        self.level = float(beat)

    def tick(self):
        self.level = min(self.level + self.rate, 4.0 * self.beat + self.rate)

    def take(self) -> bool:
        if self.level >= self.beat:
            self.level -= self.beat
            return True
        return False

    def charge(self, n):
        self.level -= n


class DmaTarget:
    """AXI4 subordinate on the DUT's ``<prefix>*`` ports serving ``memory``.

    Call :meth:`step` once per rising edge (or :meth:`start` for a coroutine that does). Members:
    ``transactions`` (every burst, :class:`AxiTransaction`), ``violations`` (protocol errors seen:
    not INCR, not 8-byte beats, crossing 4 KB, wlast misplaced), ``cycle``.
    """

    def __init__(self, dut, memory: HostMemory, config: LinkConfig | None = None,
                 prefix: str = "m_axi__"):
        self.dut = dut
        self.memory = memory
        self.config = config or LinkConfig()
        self._rng = random.Random(self.config.seed)
        self.cycle = 0
        self.transactions: list[AxiTransaction] = []
        self.violations: list[str] = []
        sig = {name: getattr(dut, prefix + name) for name in (
            "awid", "awaddr", "awlen", "awsize", "awburst", "awvalid", "awready",
            "wdata", "wstrb", "wlast", "wvalid", "wready", "bid", "bresp", "bvalid", "bready",
            "arid", "araddr", "arlen", "arsize", "arburst", "arvalid", "arready",
            "rid", "rdata", "rresp", "rlast", "rvalid", "rready")}
        self._s = sig
        self.beat = len(sig["wdata"]) // 8
        self._reads: deque = deque()        # [transaction, due cycle, beats sent]
        self._aws: deque = deque()          # write transactions awaiting data
        self._wbeats: deque = deque()       # (data, strb, last) received before their AW
        self._bs: deque = deque()           # [transaction, due cycle]
        self._rd_credit = _Credit(self.config.bytes_per_cycle, self.beat)
        self._wr_credit = _Credit(self.config.bytes_per_cycle, self.beat)
        self._out = dict.fromkeys(("arready", "awready", "wready", "rvalid", "bvalid"), 0)
        for name in self._out:
            sig[name].value = 0
        self._r_beat = None
        self._b_beat = None

    def start(self):
        """Step on every rising edge of ``dut.clk`` from now on."""
        return cocotb.start_soon(self._run())

    async def _run(self):
        edge = RisingEdge(self.dut.clk)
        while True:
            await edge
            self.step()

    def _drive(self, name, value):
        if self._out[name] != value:
            self._s[name].value = value
            self._out[name] = value

    def _stall(self) -> bool:
        return self.config.ready_stall > 0 and self._rng.random() < self.config.ready_stall

    def _resp(self, addr, n, kind) -> int:
        if addr < self.memory.base or addr + n > self.memory.base + self.memory.size:
            return Resp.DECERR
        for start, end, resp, k in self.config.errors:
            if start < addr + n and addr < end and k in (kind, "both"):
                return resp
        return Resp.OKAY

    def _check_burst(self, kind, addr, length, size, burst):
        if burst != Burst.INCR:
            self.violations.append(f"{kind} {addr:#x}: burst type {burst}, not INCR")
        if 2 ** size != self.beat:
            self.violations.append(f"{kind} {addr:#x}: size {size}, not {self.beat}-byte beats")
        if (addr & 0xFFF) + (length + 1) * self.beat > 0x1000:
            self.violations.append(f"{kind} {addr:#x}: {length + 1} beats cross 4 KB")

    def step(self):
        """One rising edge: take the handshakes that happened, then drive the next cycle."""
        s, out = self._s, self._out
        self.cycle += 1
        self._rd_credit.tick()
        self._wr_credit.tick()
        # -- handshakes at this edge (inputs sampled as they were before it) --
        if out["arready"] and int(s["arvalid"].value):
            addr, length = int(s["araddr"].value), int(s["arlen"].value)
            self._check_burst("read", addr, length, int(s["arsize"].value),
                              int(s["arburst"].value))
            t = AxiTransaction("read", addr, (length + 1) * self.beat, self.cycle,
                               int(s["arid"].value), length + 1)
            self.transactions.append(t)
            self._reads.append([t, self.cycle + self.config.read_latency, 0])
        if out["rvalid"] and int(s["rready"].value):
            entry = self._reads[0]
            entry[2] += 1
            if entry[2] == entry[0].beats:
                entry[0].done = self.cycle
                self._reads.popleft()
            self._r_beat = None
        if out["awready"] and int(s["awvalid"].value):
            addr, length = int(s["awaddr"].value), int(s["awlen"].value)
            self._check_burst("write", addr, length, int(s["awsize"].value),
                              int(s["awburst"].value))
            t = AxiTransaction("write", addr, 0, self.cycle, int(s["awid"].value), length + 1)
            t.data = []
            self.transactions.append(t)
            self._aws.append(t)
        if out["wready"] and int(s["wvalid"].value):
            self._wbeats.append((int(s["wdata"].value), int(s["wstrb"].value),
                                 int(s["wlast"].value)))
        while self._aws and self._wbeats:
            self._write_beat(self._aws[0], *self._wbeats.popleft())
        if out["bvalid"] and int(s["bready"].value):
            self._bs.popleft()[0].done = self.cycle
            self._b_beat = None
        # -- drive the next cycle --
        self._drive("arready", int(len(self._reads) < self.config.max_reads and not self._stall()))
        self._drive("awready", int(len(self._aws) < 4 and not self._stall()))
        self._drive("wready", int(len(self._wbeats) < 4 and not self._stall()
                                  and self._wr_credit.take()))
        if self._r_beat is None and self._reads:
            t, due, sent = self._reads[0]
            if due <= self.cycle and self._rd_credit.take():
                if sent == 0:
                    self._rd_credit.charge(self.config.tlp_overhead_bytes)
                addr = (t.addr & ~(self.beat - 1)) + sent * self.beat
                resp = self._resp(addr, self.beat, "read")
                data = (int.from_bytes(self.memory.read(addr, self.beat), "little")
                        if resp == Resp.OKAY else 0)
                if resp != Resp.OKAY:
                    t.resp = resp
                s["rdata"].value = data
                s["rid"].value = t.id
                s["rresp"].value = resp
                s["rlast"].value = int(sent + 1 == t.beats)
                self._r_beat = True
        self._drive("rvalid", int(self._r_beat is not None))
        if self._b_beat is None and self._bs and self._bs[0][1] <= self.cycle:
            t = self._bs[0][0]
            s["bid"].value = t.id
            s["bresp"].value = t.resp
            self._b_beat = True
        self._drive("bvalid", int(self._b_beat is not None))

    def _write_beat(self, t, data, strb, last):
        n = len(t.data)
        t.data.append((data, strb))
        if last != (n + 1 == t.beats):
            self.violations.append(f"write {t.addr:#x}: wlast on beat {n + 1} of {t.beats}")
        if n + 1 < t.beats:
            return
        self._aws.popleft()
        self._wr_credit.charge(self.config.tlp_overhead_bytes)
        beat = self.beat
        base = t.addr & ~(beat - 1)
        t.resp = self._resp(base, t.beats * beat, "write")
        for i, (word, mask) in enumerate(t.data):
            raw = word.to_bytes(beat, "little")
            for lane in range(beat):
                if mask >> lane & 1:
                    t.bytes += 1
                    if t.resp == Resp.OKAY:
                        self.memory.write(base + i * beat + lane, raw[lane:lane + 1])
        del t.data
        self._bs.append([t, self.cycle + self.config.write_latency])


class CocotbBus(Bus):
    """:class:`host_driver.bus.Bus` over the RTL NIC ``dut`` under cocotb.

    Creates the AXI4-Lite master (``s_axil__*``) and the :class:`DmaTarget` (``m_axi__*``); the
    caller starts the clock and releases ``rst``, then calls :meth:`start`.
    """

    def __init__(self, dut, memory: HostMemory, config: LinkConfig | None = None):
        self.dut = dut
        self.memory = memory
        self.mmio = AxiLiteMaster(AxiLiteBus.from_prefix(dut, "s_axil_"), dut.clk, dut.rst)
        self.dma = DmaTarget(dut, memory, config)

    def start(self):
        """Start serving DMA (after reset)."""
        return self.dma.start()

    async def read32(self, offset: int) -> int:
        return await self.mmio.read_dword(offset)

    async def write32(self, offset: int, value: int) -> None:
        await self.mmio.write_dword(offset, value & 0xFFFF_FFFF)

    def _irq(self) -> bool:
        value = self.dut.irq.value
        return value.is_resolvable and bool(int(value))

    async def wait_irq(self, max_cycles: int) -> bool:
        if self._irq():
            return True
        if max_cycles > 0:
            await First(RisingEdge(self.dut.irq), ClockCycles(self.dut.clk, max_cycles))
        return self._irq()

    async def delay(self, cycles: int) -> None:
        if cycles > 0:
            await ClockCycles(self.dut.clk, cycles)

    def now(self) -> int:
        return self.dma.cycle
