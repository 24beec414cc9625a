"""First light of the whole NIC (``hw.nic.Nic``): registers, RX into a host buffer, TX with checksum
offload, commands. Bus models straight from cocotbext-axi; the driver model has its own tests.

Both tests run the NIC model beside the RTL (``sim/scoreboard.py``) on the same register writes,
frames and host memory, and end with its check: ``test_smoke`` in RX mode "exact" (every event
compared), ``test_rx_starvation_backpressure`` in RX mode "follow" (its host re-posts buffers at
random while frames arrive, so which frames find a buffer is a matter of timing: the RTL's drops are
checked by the accounting identity, every delivered frame against the model).
"""

import cocotb
from amaranth.lib import data
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, RisingEdge
from cocotbext.axi import AxiBus, AxiLiteBus, AxiLiteMaster, AxiRam
from scapy.layers.inet import IP, TCP
from scapy.layers.l2 import Ether

from hw import params
from hw.host import regmap
from hw.layouts import (
    RX_SUMMARY_BYTES,
    Command,
    CommandOpcode,
    Event,
    EventCode,
    EventKind,
    RingId,
    RxDescriptor,
    RxSummary,
    TxDescriptor,
    pack,
    unpack,
)
from sim.cosim.nic_tb import MacPort, peek_counters
from sim.reference.checksum import ones_complement_sum, pseudo_header
from sim.scoreboard import NicScoreboard

EVENT_RING, RX_RING, TX_RING, CMD_RING = 0x1000, 0x2000, 0x3000, 0x4000
RX_BUFS = 0x10000
TX_BUFS = 0x20000


class Smoke:
    """cocotbext-axi's AXI4-Lite master and AXI RAM on the NIC, the MAC port, and the scoreboard
    (RX mode ``rx``), which sees every register write made through :meth:`write`, every event
    :meth:`next_event` takes and the MAC's frames."""

    def __init__(self, dut, rx="exact"):
        self.dut = dut
        cocotb.start_soon(Clock(dut.clk, params.CLOCK_PERIOD_NS, unit="ns").start())
        self.mmio = AxiLiteMaster(AxiLiteBus.from_prefix(dut, "s_axil_"), dut.clk, dut.rst)
        self.ram = AxiRam(AxiBus.from_prefix(dut, "m_axi_"), dut.clk, dut.rst, size=1 << 20)
        self.mac = MacPort(dut)
        self.scoreboard = NicScoreboard(self.ram.read, base=0, size=1 << 20, rx=rx, log=dut._log)
        self.scoreboard.attach_mac(self.mac)
        self.tx_frames = []
        self.mac.on_tx = self.tx_frames.append
        self.event_index = 0
        self.phase = 1

    async def reset(self):
        self.dut.rst.value = 1
        await ClockCycles(self.dut.clk, 4)
        self.dut.rst.value = 0
        cocotb.start_soon(self._edges())

    async def _edges(self):
        edge = RisingEdge(self.dut.clk)
        while True:
            await edge
            self.mac.step()

    async def write(self, name, value):
        offset = regmap.BY_NAME[name].offset
        await self.mmio.write_dword(offset, value)
        self.scoreboard.write_register(offset, value)

    def check(self):
        """The scoreboard's final check, with the RTL's counters (read in zero time)."""
        self.scoreboard.check(peek_counters(self.dut))
        self.dut._log.info("scoreboard: compared %s", self.scoreboard.compared)

    async def read(self, name):
        return await self.mmio.read_dword(regmap.BY_NAME[name].offset)

    async def setup_ring(self, ring, base, log2):
        await self.write(f"{ring.name}_BASE_LO", base)
        await self.write(f"{ring.name}_BASE_HI", 0)
        await self.write(f"{ring.name}_LOG2_SIZE", log2)

    async def send_frame(self, frame):
        """Put ``frame`` on MAC RX, back to back with the frames before it; the MAC is never
        held off."""
        self.mac.send(frame)
        while not self.mac.idle:
            await RisingEdge(self.dut.clk)
        assert self.mac.rx_stalls == 0

    async def next_event(self, timeout=5000):
        for _ in range(timeout):
            raw = int.from_bytes(self.ram.read(EVENT_RING + 16 * self.event_index, 16), "little")
            event = unpack(Event, raw)
            if event.phase == self.phase and event.kind != 0:
                self.scoreboard.rtl_event({name: int(getattr(event, name))
                                           for name in data.Layout.cast(Event).members})
                self.event_index = (self.event_index + 1) % 16
                if self.event_index == 0:
                    self.phase ^= 1
                await self.write("EVENT_CONSUMER", self.event_index)
                return event
            await RisingEdge(self.dut.clk)
        raise AssertionError("no event")


@cocotb.test()
async def test_smoke(dut):
    tb = Smoke(dut)
    await tb.reset()
    assert await tb.read("ID") == params.NIC_ID
    await tb.setup_ring(RingId.EVENT, EVENT_RING, 4)
    await tb.setup_ring(RingId.RX, RX_RING, 3)
    await tb.setup_ring(RingId.TX, TX_RING, 3)
    await tb.setup_ring(RingId.COMMAND, CMD_RING, 3)
    for i in range(4):
        desc = pack(RxDescriptor, {"addr": RX_BUFS + 0x1000 * i, "size": 2048, "reserved": 0})
        tb.ram.write(RX_RING + 16 * i, desc.to_bytes(16, "little"))
    await tb.write("RX_PRODUCER", 4)
    await tb.write("CONTROL", regmap.CONTROL_ENABLE)

    frames = [bytes(Ether(dst="02:00:00:00:00:01") / IP(src="10.0.0.2", dst="10.0.0.1")
                    / TCP(sport=1000 + n, dport=80, flags="PA") / (b"x" * (n * 37)))
              for n in range(3)]
    for frame in frames:
        await tb.send_frame(frame)
    for n, frame in enumerate(frames):
        event = await tb.next_event()
        assert (event.kind, event.ring, event.index, event.code) == (
            EventKind.RX.value, RingId.RX.value, n, EventCode.OK.value), event
        assert event.length == len(frame)
        buf = RX_BUFS + 0x1000 * n
        header = tb.ram.read(buf, RX_SUMMARY_BYTES)
        summary = unpack(RxSummary, int.from_bytes(header, "little"))
        assert summary.length == len(frame) and summary.sport == 1000 + n and summary.candidate
        assert tb.ram.read(buf + RX_SUMMARY_BYTES, len(frame)) == frame
        assert event.tag == summary.hash
    assert await tb.read("RX_TO_HOST") == 3
    assert await tb.read("RX_CONSUMER") == 3

    # TX with both checksums offloaded: IP checksum field 0, TCP field = pseudo-header sum.
    pkt = Ether() / IP(src="10.0.0.1", dst="10.0.0.2") / TCP(sport=80, dport=1000) / (b"y" * 101)
    want = bytes(Ether(bytes(pkt)))       # scapy fills in both checksums
    raw = bytearray(want)
    raw[24:26] = b"\0\0"
    raw[50:52] = ones_complement_sum(pseudo_header(want[26:30], want[30:34], 6,
                                                   len(want) - 34)).to_bytes(2, "big")
    tb.ram.write(TX_BUFS, bytes(raw))
    desc = pack(TxDescriptor, {"addr": TX_BUFS, "length": len(raw), "ip_csum": 1, "l4_csum": 1,
                               "reserved0": 0, "ip_offset": 14, "csum_start": 34,
                               "csum_offset": 16, "reserved1": 0})
    tb.ram.write(TX_RING, desc.to_bytes(16, "little"))
    await tb.write("TX_PRODUCER", 1)
    event = await tb.next_event()
    assert (event.kind, event.code, event.length) == (EventKind.TX_DONE.value, 0, len(raw)), event
    for _ in range(500):
        if tb.tx_frames:
            break
        await RisingEdge(dut.clk)
    assert tb.tx_frames == [want], (tb.tx_frames, want)

    # Commands: a NOP and an unknown opcode.
    for i, opcode in enumerate((CommandOpcode.NOP.value, 0x77)):
        cmd = pack(Command, {"opcode": opcode, "ring": 0, "tag": 0x100 + i, "arg": 0, "addr": 0})
        tb.ram.write(CMD_RING + 16 * i, cmd.to_bytes(16, "little"))
    await tb.write("COMMAND_PRODUCER", 2)
    for i, code in enumerate((EventCode.OK, EventCode.UNKNOWN_OPCODE)):
        event = await tb.next_event()
        assert (event.kind, event.tag, event.code) == (
            EventKind.COMMAND_DONE.value, 0x100 + i, code.value), event
    assert await tb.read("BAD_COMMANDS") == 1
    tb.check()


def _random_frames(rng, count):
    """Line-rate traffic for the RX path: good TCP/UDP frames of every size, runts, junk, and
    frames over MAX_FRAME_BYTES."""
    from scapy.layers.inet import UDP
    frames = []
    for n in range(count):
        roll = rng.random()
        if roll < 0.03:
            frames.append(rng.randbytes(rng.randrange(0, 14)))
        elif roll < 0.06:
            frames.append(rng.randbytes(params.MAX_FRAME_BYTES + rng.randrange(1, 200)))
        elif roll < 0.1:
            frames.append(rng.randbytes(rng.randrange(14, 200)))
        else:
            l4 = TCP(sport=n, dport=80) if rng.random() < 0.7 else UDP(sport=n, dport=53)
            size = rng.choice([0, 6, 100, 512, 1000, 1460, rng.randrange(0, 1460)])
            frames.append(bytes(Ether() / IP(src="10.1.0.2", dst="10.1.0.1") / l4
                                / rng.randbytes(size)))
    return frames


@cocotb.test()
async def test_rx_starvation_backpressure(dut):
    """Back-to-back frames while the host posts buffers late and the DMA target stalls: every
    frame is delivered whole and in order or dropped and counted; the MAC is never stalled."""
    import random

    from sim.reference.nic_model import rx_summary_header

    rng = random.Random(7)
    tb = Smoke(dut, rx="follow")

    def pauses(p):
        while True:
            yield rng.random() < p

    for channel in (tb.ram.write_if.aw_channel, tb.ram.write_if.w_channel,
                    tb.ram.write_if.b_channel, tb.ram.read_if.ar_channel,
                    tb.ram.read_if.r_channel):
        channel.set_pause_generator(pauses(0.3))
    await tb.reset()
    await tb.setup_ring(RingId.EVENT, EVENT_RING, 4)
    await tb.setup_ring(RingId.RX, RX_RING, 4)
    await tb.write("CONTROL", regmap.CONTROL_ENABLE)
    ring_size, buf_size = 16, 0x2800
    posted = 0

    async def post(n):
        nonlocal posted
        for _ in range(n):
            slot = posted % ring_size
            desc = pack(RxDescriptor, {"addr": RX_BUFS + buf_size * slot, "size": buf_size,
                                       "reserved": 0})
            tb.ram.write(RX_RING + 16 * slot, desc.to_bytes(16, "little"))
            posted += 1
        await tb.write("RX_PRODUCER", posted % ring_size)

    # Two oversize frames first, while buffers are posted, so that they are admitted and must be
    # cut off; then the random mix.
    frames = [rng.randbytes(params.MAX_FRAME_BYTES + 1), rng.randbytes(12000),
              *_random_frames(rng, 120)]
    delivered = []

    async def host():
        await post(12)
        while True:
            event = await tb.next_event(timeout=10**9)
            assert (event.kind, event.code) == (EventKind.RX.value, EventCode.OK.value), event
            buf = RX_BUFS + buf_size * event.index
            header = tb.ram.read(buf, RX_SUMMARY_BYTES)
            frame = tb.ram.read(buf + RX_SUMMARY_BYTES, event.length)
            delivered.append((frame, header))
            # Starve now and then: re-post late.
            if rng.random() < 0.3:
                await ClockCycles(dut.clk, rng.randrange(50, 400))
            await post(1)

    cocotb.start_soon(host())
    await ClockCycles(dut.clk, 200)
    for frame in frames:
        await tb.send_frame(frame)
    await ClockCycles(dut.clk, 3000)

    counters = {name: await tb.read(name) for name in (
        "RX_FRAMES", "RX_TO_HOST", "RX_DROP_DISABLED", "RX_DROP_NO_BUFFER", "RX_DROP_OVERFLOW",
        "RX_DROP_OVERSIZE", "RX_DROP_TOO_SMALL", "RX_DROP_DMA_ERROR")}
    dut._log.info("counters %s", counters)
    assert counters["RX_FRAMES"] == len(frames)
    assert counters["RX_TO_HOST"] == len(delivered)
    assert sum(v for k, v in counters.items() if k not in ("RX_FRAMES",)) == len(frames)
    assert counters["RX_DROP_NO_BUFFER"] > 0 and counters["RX_DROP_OVERSIZE"] > 0
    # Delivered frames are the sent frames, in order, a subsequence; each summary correct.
    it = iter(enumerate(frames))
    for frame, header in delivered:
        for index, sent in it:  # noqa: B007 (index is used after the loop)
            if sent == frame:
                break
        else:
            raise AssertionError("a delivered frame was not sent, or out of order")
        assert len(frame) <= params.MAX_FRAME_BYTES
        assert header == rx_summary_header(frame), index
    tb.check()
