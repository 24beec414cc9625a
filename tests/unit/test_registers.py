"""Registers (hw/host/registers.py), driven by a small AXI4-Lite manager in Amaranth's simulator.

Every offset and reset value comes from hw.host.regmap; every number checked is exact.
"""

import pytest
from amaranth.lib import data, wiring
from amaranth.sim import Simulator

from hw import params
from hw.host import regmap
from hw.host.axi import Resp
from hw.host.registers import ERROR_FIFO_DEPTH, Registers
from hw.host.rings import RingConfigSignature
from hw.layouts import EventCode, HostCounters, RegisterError, RingId, RxCounters, unpack

_TIMEOUT = 50       # clocks any handshake may take before the test calls it a deadlock
_ORDERS = ("aw_first", "w_first", "together")


def _off(name):
    return regmap.BY_NAME[name].offset


def _ring(ring, what):
    return regmap.ring_register(ring, what).offset


class Manager:
    """An AXI4-Lite manager plus a record of the target's pulse outputs, clock by clock."""

    def __init__(self, dut):
        self.dut = dut
        self.bus = dut.bus
        self.ctx = None
        self.clock = 0
        self.pulses = []        # (clock, name, value) of every pulse output seen high
        self.errors = []        # reg_error transfers, as (code, ring, detail)

    # --- the manager ---

    async def _handshakes(self, *channels):
        """Raise valid on every (valid, ready, [(signal, value), ...]) channel at once; drop each
        when its transfer happens."""
        ctx = self.ctx
        pending = list(channels)
        for valid, _, fields in pending:
            for sig, value in fields:
                ctx.set(sig, value)
            ctx.set(valid, 1)
        for _ in range(_TIMEOUT):
            done = [ch for ch in pending if ctx.get(ch[1])]
            await ctx.tick()
            for ch in done:
                ctx.set(ch[0], 0)
                pending.remove(ch)
            if not pending:
                return
        raise AssertionError("AXI handshake never completed")

    def _aw(self, offset):
        return (self.bus.awvalid, self.bus.awready, [(self.bus.awaddr, offset)])

    def _w(self, value, strb):
        return (self.bus.wvalid, self.bus.wready,
                [(self.bus.wdata, value), (self.bus.wstrb, strb)])

    def _ar(self, offset):
        return (self.bus.arvalid, self.bus.arready, [(self.bus.araddr, offset)])

    async def _response(self, valid, ready, *payload, delay=0):
        ctx = self.ctx
        if delay:
            await ctx.tick().repeat(delay)
        ctx.set(ready, 1)
        for _ in range(_TIMEOUT):
            if ctx.get(valid):
                values = [ctx.get(sig) for sig in payload]
                await ctx.tick()
                ctx.set(ready, 0)
                return values
            await ctx.tick()
        raise AssertionError("no AXI response")

    async def write(self, offset, value, strb=0xF, order="together", b_delay=0):
        if order == "aw_first":
            await self._handshakes(self._aw(offset))
            await self._handshakes(self._w(value, strb))
        elif order == "w_first":
            await self._handshakes(self._w(value, strb))
            await self._handshakes(self._aw(offset))
        else:
            await self._handshakes(self._aw(offset), self._w(value, strb))
        (resp,) = await self._response(self.bus.bvalid, self.bus.bready, self.bus.bresp,
                                       delay=b_delay)
        assert resp == Resp.OKAY
        # The write's pulses came with B; one more clock and the monitor has recorded them.
        await self.ctx.tick()

    async def read(self, offset, r_delay=0):
        await self._handshakes(self._ar(offset))
        value, resp = await self._response(self.bus.rvalid, self.bus.rready, self.bus.rdata,
                                           self.bus.rresp, delay=r_delay)
        assert resp == Resp.OKAY
        return value

    async def write_name(self, name, value, **kwargs):
        await self.write(_off(name), value, **kwargs)

    async def read_name(self, name):
        return await self.read(_off(name))

    async def settle(self, clocks=4):
        """Let pulses reach the record and the error FIFO its output."""
        await self.ctx.tick().repeat(clocks)

    async def pulse_event(self, signal, count=1):
        for _ in range(count):
            self.ctx.set(signal, 1)
            await self.ctx.tick()
        self.ctx.set(signal, 0)

    # --- the record ---

    def seen(self, name, since=0):
        return [(clock, value) for clock, n, value in self.pulses if n == name and clock >= since]

    def errors_since(self, mark):
        return self.errors[mark:]

    async def monitor(self, ctx):
        dut = self.dut
        named = [
            ("counters_clear", dut.counters_clear),
            ("rss_key", dut.rss_key_we),
            ("bad_doorbell", dut.bad_doorbell),
            ("interrupt_raised", dut.interrupt_raised),
            *((f"ring_reset{r.value}", dut.rings[r.value].reset) for r in RingId),
        ]
        extra = [dut.rss_key_addr, dut.rss_key_data, dut.reg_error.valid, dut.reg_error.ready,
                 dut.reg_error.payload.as_value()]
        while True:
            _, _, *values = await ctx.tick().sample(*(sig for _, sig in named), *extra)
            flags, (key_addr, key_data, err_valid, err_ready, err_payload) = (
                values[:len(named)], values[len(named):])
            for (name, _), flag in zip(named, flags):
                if flag:
                    value = (key_addr, key_data) if name == "rss_key" else 1
                    self.pulses.append((self.clock, name, value))
            if err_valid and err_ready:
                error = unpack(RegisterError, err_payload)
                self.errors.append((error.code, error.ring, error.detail))
            self.clock += 1


def run(body, error_ready=1):
    """Simulate a fresh Registers with ``body(manager)`` as the testbench."""
    dut = Registers()
    manager = Manager(dut)

    async def testbench(ctx):
        manager.ctx = ctx
        ctx.set(dut.reg_error.ready, error_ready)
        await body(manager)

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(testbench)
    sim.add_testbench(manager.monitor, background=True)
    sim.run()
    return manager


# --- Reset values, reads, AXI behaviour --------------------------------------------------------


def test_reset_values_of_every_register():
    async def body(h):
        assert await h.read_name("ID") == params.NIC_ID == 0x494E4943
        assert await h.read_name("VERSION") == params.NIC_VERSION
        for reg in regmap.REGISTERS:
            assert await h.read(reg.offset) == reg.reset, reg.name
        key = b""
        for n in range(params.RSS_KEY_BYTES // 4):
            key += (await h.read_name(f"RSS_KEY{n}")).to_bytes(4, "big")
        assert key == params.MS_RSS_KEY
        ctx = h.ctx
        assert ctx.get(h.dut.enable) == 0
        assert ctx.get(h.dut.irq) == 0
        for r in RingId:
            assert ctx.get(h.dut.rings[r.value].log2_size) == 0
            assert ctx.get(h.dut.rings[r.value].base) == 0
            assert ctx.get(h.dut.rings[r.value].host_index) == 0
        assert ctx.get(h.dut.reg_error.valid) == 0

    run(body)


def test_unmapped_offsets_read_zero_and_ignore_writes():
    mapped = {reg.offset for reg in regmap.REGISTERS}
    holes = [0x020, 0x0FC, 0x180, 0x1FC, 0x228, 0x2FC, 0x334, 0x37C, 0x3BC, 0xFFC]
    assert not mapped & set(holes)

    async def body(h):
        before = [await h.read(reg.offset) for reg in regmap.REGISTERS]
        for offset in holes:
            await h.write(offset, 0xFFFF_FFFF)
            assert await h.read(offset) == 0, hex(offset)
        assert [await h.read(reg.offset) for reg in regmap.REGISTERS] == before
        await h.settle()
        assert h.pulses == []

    run(body)


def test_writes_to_read_only_registers_are_ignored():
    ro = [reg for reg in regmap.REGISTERS if reg.access == "ro"]
    assert {"ID", "STATUS", "EVENT_PRODUCER", "RX_CONSUMER", "RX_FRAMES", "EVENTS"} <= {
        reg.name for reg in ro}

    async def body(h):
        h.ctx.set(h.dut.rings[RingId.RX.value].nic_index, 3)
        for reg in ro:
            await h.write(reg.offset, 0xA5A5_A5A5)
        for reg in ro:
            expected = 3 if reg.name == "RX_CONSUMER" else reg.reset
            assert await h.read(reg.offset) == expected, reg.name
        await h.settle()
        assert h.pulses == []

    run(body)


@pytest.mark.parametrize("order", _ORDERS)
def test_write_in_any_channel_order(order):
    async def body(h):
        await h.write_name("INTR_MOD_CYCLES", 0x1234_5678, order=order)
        assert await h.read_name("INTR_MOD_CYCLES") == 0x1234_5678
        await h.write_name("INTR_MOD_CYCLES", 0x0BAD_F00D, order=order, b_delay=5)
        assert await h.read_name("INTR_MOD_CYCLES") == 0x0BAD_F00D

    run(body)


def test_w_held_long_before_aw_and_reads_meanwhile():
    async def body(h):
        ctx, bus = h.ctx, h.bus
        # W first, held: the target must take it and still answer reads.
        ctx.set(bus.wdata, 0xCAFE)
        ctx.set(bus.wstrb, 0xF)
        ctx.set(bus.wvalid, 1)
        await ctx.tick().repeat(3)
        assert await h.read_name("ID") == params.NIC_ID
        ctx.set(bus.wvalid, 0)          # it was accepted long ago
        await h._handshakes(h._aw(_off("INTR_MOD_EVENTS")))
        (resp,) = await h._response(bus.bvalid, bus.bready, bus.bresp)
        assert resp == Resp.OKAY
        assert await h.read_name("INTR_MOD_EVENTS") == 0xCAFE

    run(body)


def test_aw_w_and_ar_all_at_once():
    async def body(h):
        ctx, bus = h.ctx, h.bus
        ctx.set(bus.bready, 1)
        ctx.set(bus.rready, 1)
        await h._handshakes(h._aw(_off("INTR_MOD_CYCLES")), h._w(0x77, 0xF),
                            h._ar(_off("VERSION")))
        got_b = got_r = False
        for _ in range(_TIMEOUT):
            if ctx.get(bus.bvalid):
                got_b = True
            if ctx.get(bus.rvalid):
                got_r = True
                assert ctx.get(bus.rdata) == params.NIC_VERSION
            await ctx.tick()
        assert got_b and got_r
        ctx.set(bus.bready, 0)
        ctx.set(bus.rready, 0)
        assert await h.read_name("INTR_MOD_CYCLES") == 0x77

    run(body)


def test_back_to_back_writes_with_b_held_off():
    async def body(h):
        ctx, bus = h.ctx, h.bus
        # Two writes offered while the first B is not taken: the second must wait, not be lost.
        await h._handshakes(h._aw(_off("INTR_MOD_CYCLES")), h._w(1, 0xF))
        await h._handshakes(h._aw(_off("INTR_MOD_EVENTS")), h._w(2, 0xF))
        await ctx.tick().repeat(3)
        for _ in range(2):
            (resp,) = await h._response(bus.bvalid, bus.bready, bus.bresp)
            assert resp == Resp.OKAY
        await ctx.tick()
        assert ctx.get(bus.bvalid) == 0
        assert await h.read_name("INTR_MOD_CYCLES") == 1
        assert await h.read_name("INTR_MOD_EVENTS") == 2

    run(body)


def test_read_data_holds_while_rready_is_low():
    frames = regmap.counter_register("rx_frames").offset

    async def body(h):
        ctx, bus = h.ctx, h.bus
        ctx.set(h.dut.rx_counters.frames, 100)
        await h._handshakes(h._ar(frames))
        for _ in range(4):
            await ctx.tick()
        assert ctx.get(bus.rvalid) == 1
        ctx.set(h.dut.rx_counters.frames, 101)      # the counter moves on; R must not
        for _ in range(3):
            await ctx.tick()
            assert ctx.get(bus.rdata) == 100
        (value,) = await h._response(bus.rvalid, bus.rready, bus.rdata)
        assert value == 100
        assert await h.read(frames) == 101

    run(body)


def test_counters_read_at_their_offsets():
    rx_fields = [name for name, _ in data.Layout.cast(RxCounters)]
    host_fields = [name for name, _ in data.Layout.cast(HostCounters)]

    async def body(h):
        for i, name in enumerate(rx_fields):
            h.ctx.set(h.dut.rx_counters[name], 0x1000_0000 + i * 0x0101)
        for i, name in enumerate(host_fields):
            h.ctx.set(h.dut.host_counters[name], 0xF000_0000 + i * 0x0303)
        for i, name in enumerate(rx_fields):
            offset = regmap.RX_COUNTERS_BASE + 4 * i
            assert offset == regmap.counter_register("rx_" + name).offset
            assert await h.read(offset) == 0x1000_0000 + i * 0x0101, name
        for i, name in enumerate(host_fields):
            offset = regmap.HOST_COUNTERS_BASE + 4 * i
            assert offset == regmap.counter_register(name).offset
            assert await h.read(offset) == 0xF000_0000 + i * 0x0303, name

    run(body)


def test_fast_path_counters_read_at_their_offsets():
    async def body(h):
        for i, (_, field, element) in enumerate(regmap.FAST_PATH_COUNTER_FIELDS):
            counter = h.dut.fast_path_counters[field]
            h.ctx.set(counter if element is None else counter[element], 0x2000_0000 + i * 0x0505)
        for i, name in enumerate(regmap.FAST_PATH_COUNTER_NAMES):
            offset = regmap.FAST_PATH_COUNTERS_BASE + 4 * i
            assert offset == regmap.counter_register(name).offset
            assert await h.read(offset) == 0x2000_0000 + i * 0x0505, name

    run(body)


# --- Read/write registers, strobes, actions ----------------------------------------------------


def test_rw_round_trip_with_strobes():
    async def body(h):
        await h.write_name("INTR_MOD_CYCLES", 0x1122_3344)
        await h.write_name("INTR_MOD_CYCLES", 0xAABB_CCDD, strb=0b0101)
        assert await h.read_name("INTR_MOD_CYCLES") == 0x11BB_33DD
        await h.write_name("INTR_MOD_CYCLES", 0xEEFF_0000, strb=0b1000)
        assert await h.read_name("INTR_MOD_CYCLES") == 0xEEBB_33DD
        await h.write_name("INTR_MOD_CYCLES", 0, strb=0)
        assert await h.read_name("INTR_MOD_CYCLES") == 0xEEBB_33DD
        # Registers keep only their defined bits.
        await h.write_name("INTR_MASK", 0xFFFF_FFFF)
        assert await h.read_name("INTR_MASK") == regmap.INTR_EVENTS | regmap.INTR_FATAL
        await h.write_name("CONTROL", 0xFFFF_FFFD)
        assert await h.read_name("CONTROL") == regmap.CONTROL_ENABLE
        # Every plain word of every ring: a full-width round trip (BASE_LO bits 3:0 read 0).
        for r in RingId:
            lo, hi = 0x89AB_CDE0 + 0x100 * r.value + 0xF, 0x0123_4567 + r.value
            await h.write(_ring(r, "BASE_LO"), lo)
            await h.write(_ring(r, "BASE_HI"), hi)
            await h.write(_ring(r, "BASE_HI"), 0x99, strb=0b0001)
            hi = (hi & ~0xFF) | 0x99
            assert await h.read(_ring(r, "BASE_LO")) == lo & ~0xF
            assert await h.read(_ring(r, "BASE_HI")) == hi
            assert h.ctx.get(h.dut.rings[r.value].base) == (hi << 32) | (lo & ~0xF)

    run(body)


def test_control_enable_and_counters_clear_pulse():
    async def body(h):
        dut, ctx = h.dut, h.ctx
        await h.write_name("CONTROL", regmap.CONTROL_ENABLE)
        assert ctx.get(dut.enable) == 1
        assert await h.read_name("STATUS") == regmap.STATUS_ENABLED
        await h.settle()
        assert h.seen("counters_clear") == []
        mark = h.clock
        await h.write_name("CONTROL", regmap.CONTROL_ENABLE | regmap.CONTROL_COUNTERS_CLEAR)
        await h.settle()
        assert len(h.seen("counters_clear", mark)) == 1     # one clock exactly
        assert await h.read_name("CONTROL") == regmap.CONTROL_ENABLE
        assert ctx.get(dut.enable) == 1
        mark = h.clock
        await h.write_name("CONTROL", regmap.CONTROL_COUNTERS_CLEAR)
        await h.settle()
        assert len(h.seen("counters_clear", mark)) == 1
        assert ctx.get(dut.enable) == 0
        assert await h.read_name("STATUS") == 0
        # Byte 0 not written: no clear, enable unchanged.
        mark = h.clock
        await h.write_name("CONTROL", 0xFFFF_FF00 | regmap.CONTROL_COUNTERS_CLEAR, strb=0b1110)
        await h.settle()
        assert h.seen("counters_clear", mark) == []
        assert ctx.get(dut.enable) == 0

    run(body)


def test_rss_key_writes_pulse_the_sequencer():
    async def body(h):
        await h.write_name("RSS_KEY3", 0xDEAD_BEEF)
        await h.write_name("RSS_KEY9", 0x0000_1200, strb=0b0010)
        await h.settle()
        reset9 = regmap.BY_NAME["RSS_KEY9"].reset
        merged9 = (reset9 & ~0xFF00) | 0x1200
        assert [value for _, value in h.seen("rss_key")] == [(3, 0xDEAD_BEEF), (9, merged9)]
        assert await h.read_name("RSS_KEY3") == 0xDEAD_BEEF
        assert await h.read_name("RSS_KEY9") == merged9
        assert await h.read_name("RSS_KEY4") == regmap.BY_NAME["RSS_KEY4"].reset
        assert h.ctx.get(h.dut.rss_key_we) == 0

    run(body)


# --- Rings -------------------------------------------------------------------------------------


def test_ring_size_and_reset_pulse():
    async def body(h):
        dut, ctx = h.dut, h.ctx
        for r in RingId:
            mark, err_mark = h.clock, len(h.errors)
            await h.write(_ring(r, "LOG2_SIZE"), params.RING_LOG2_SIZE_MAX)
            await h.settle()
            assert ctx.get(dut.rings[r.value].log2_size) == params.RING_LOG2_SIZE_MAX
            assert await h.read(_ring(r, "LOG2_SIZE")) == params.RING_LOG2_SIZE_MAX
            assert len(h.seen(f"ring_reset{r.value}", mark)) == 1
            others = [o for o in RingId if o != r]
            assert all(h.seen(f"ring_reset{o.value}", mark) == [] for o in others)
            assert h.seen("bad_doorbell", mark) == [] and h.errors_since(err_mark) == []
        # Refused sizes: ring off, reset pulse anyway, error with the value written.
        r = RingId.RX
        for bad in (params.RING_LOG2_SIZE_MAX + 1, 15, 0x100, 0x1_0003,
                    0x8000_0001):
            await h.write(_ring(r, "LOG2_SIZE"), params.RING_LOG2_SIZE_MIN)
            mark, err_mark = h.clock, len(h.errors)
            await h.write(_ring(r, "LOG2_SIZE"), bad)
            await h.settle()
            assert ctx.get(dut.rings[r.value].log2_size) == 0, bad
            assert await h.read(_ring(r, "LOG2_SIZE")) == 0
            assert len(h.seen(f"ring_reset{r.value}", mark)) == 1
            assert len(h.seen("bad_doorbell", mark)) == 1
            assert h.errors_since(err_mark) == [(EventCode.BAD_RING_SIZE.value, r.value, bad)]
        # 0 turns a ring off without complaint.
        mark = h.clock
        await h.write(_ring(RingId.TX, "LOG2_SIZE"), 0)
        await h.settle()
        assert ctx.get(dut.rings[RingId.TX.value].log2_size) == 0
        assert len(h.seen(f"ring_reset{RingId.TX.value}", mark)) == 1
        assert h.seen("bad_doorbell", mark) == []

    run(body)


def test_size_write_zeroes_the_host_index():
    async def body(h):
        for r in RingId:
            host_reg = "PRODUCER" if r != RingId.EVENT else "CONSUMER"
            h.ctx.set(h.dut.rings[r.value].nic_index, 6 if r == RingId.EVENT else 0)
            await h.write(_ring(r, "LOG2_SIZE"), 3)
            await h.write(_ring(r, host_reg), 5)
            assert h.ctx.get(h.dut.rings[r.value].host_index) == 5
            assert await h.read(_ring(r, host_reg)) == 5
            await h.write(_ring(r, "LOG2_SIZE"), 4)
            assert h.ctx.get(h.dut.rings[r.value].host_index) == 0
            assert await h.read(_ring(r, host_reg)) == 0

    run(body)


async def _expect_refused(h, offset, value, ring, strb=0xF):
    before = h.ctx.get(h.dut.rings[ring.value].host_index)
    mark, err_mark = h.clock, len(h.errors)
    await h.write(offset, value, strb=strb)
    await h.settle()
    assert h.ctx.get(h.dut.rings[ring.value].host_index) == before, value
    assert await h.read(offset) == before
    assert len(h.seen("bad_doorbell", mark)) == 1, value
    return h.errors_since(err_mark)


async def _expect_taken(h, offset, value, ring):
    mark = h.clock
    await h.write(offset, value)
    await h.settle()
    assert h.seen("bad_doorbell", mark) == [], value
    assert h.ctx.get(h.dut.rings[ring.value].host_index) == value
    assert await h.read(offset) == value


@pytest.mark.parametrize("ring", [RingId.COMMAND, RingId.RX, RingId.TX])
def test_doorbell(ring):
    producer = _ring(ring, "PRODUCER")
    bad = EventCode.BAD_DOORBELL.value

    async def body(h):
        ctx, dut = h.ctx, h.dut
        # Ring off: every value refused.
        for value in (0, 1):
            assert await _expect_refused(h, producer, value, ring) == [(bad, ring.value, value)]
        await h.write(_ring(ring, "LOG2_SIZE"), 3)        # 8 entries
        await _expect_taken(h, producer, 5, ring)
        # >= size, also through high bits.
        for value in (8, 13, 0x1_0000 | 5, 0x8000_0005):
            assert await _expect_refused(h, producer, value, ring) == [(bad, ring.value, value)]
        # The NIC has taken 2: 3 outstanding (2..4). Fewer outstanding is taking entries back.
        ctx.set(dut.rings[ring.value].nic_index, 2)
        assert await h.read(_ring(ring, "CONSUMER")) == 2
        for value in (4, 3, 2):
            assert await _expect_refused(h, producer, value, ring) == [(bad, ring.value, value)]
        await _expect_taken(h, producer, 5, ring)         # unchanged is fine
        await _expect_taken(h, producer, 1, ring)         # wraps: 7 outstanding, the most
        # Now 7 outstanding: 2 (empty) would be fewer.
        assert await _expect_refused(h, producer, 2, ring) == [(bad, ring.value, 2)]
        # Strobes: byte 0 only, merged with the current value 1 -> 0x0000_0007.
        ctx.set(dut.rings[ring.value].nic_index, 1)
        mark = h.clock
        await h.write(producer, 0xFFFF_FF07, strb=0b0001)
        await h.settle()
        assert h.seen("bad_doorbell", mark) == []
        assert await h.read(producer) == 7
        # Byte 1 only: merged 0x0000_FF07 >= size.
        assert await _expect_refused(h, producer, 0x0000_FF00, ring, strb=0b0010) == [
            (bad, ring.value, 0xFF07)]

    run(body)


def test_event_consumer():
    ring = RingId.EVENT
    consumer = _ring(ring, "CONSUMER")
    bad = EventCode.BAD_DOORBELL.value

    async def body(h):
        ctx, dut = h.ctx, h.dut
        assert await _expect_refused(h, consumer, 0, ring) == [(bad, ring.value, 0)]   # ring off
        await h.write(_ring(ring, "LOG2_SIZE"), 3)
        ctx.set(dut.rings[ring.value].nic_index, 5)        # the NIC wrote events 0..4
        assert await h.read(_ring(ring, "PRODUCER")) == 5
        await _expect_taken(h, consumer, 3, ring)
        for value in (6, 7, 2, 0, 8, 0x1_0003):           # past the producer, backwards, >= size
            assert await _expect_refused(h, consumer, value, ring) == [(bad, ring.value, value)]
        await _expect_taken(h, consumer, 3, ring)         # unchanged is fine
        await _expect_taken(h, consumer, 5, ring)         # all consumed
        # The producer wraps round to 2: consumer may go 5 -> 6, 7, 0, 1, 2 but not 3 or 4.
        ctx.set(dut.rings[ring.value].nic_index, 2)
        await _expect_taken(h, consumer, 0, ring)
        for value in (3, 4, 7):
            assert await _expect_refused(h, consumer, value, ring) == [(bad, ring.value, value)]
        await _expect_taken(h, consumer, 2, ring)
        # EVENT_PRODUCER is read-only.
        await h.write(_ring(ring, "PRODUCER"), 1)
        assert await h.read(_ring(ring, "PRODUCER")) == 2

    run(body)


def test_error_fifo_keeps_four_and_counts_all():
    assert ERROR_FIFO_DEPTH == 4
    ring = RingId.TX
    refused = [8, 9, 10, 11, 12, 13]

    async def body(h):
        await h.write(_ring(ring, "LOG2_SIZE"), 3)
        mark = h.clock
        for value in refused:
            await h.write(_ring(ring, "PRODUCER"), value)
        await h.settle()
        assert len(h.seen("bad_doorbell", mark)) == len(refused)
        assert h.errors == []
        h.ctx.set(h.dut.reg_error.ready, 1)
        await h.settle(10)
        assert h.errors == [(EventCode.BAD_DOORBELL.value, ring.value, value)
                            for value in refused[:4]]
        assert h.ctx.get(h.dut.reg_error.valid) == 0

    run(body, error_ready=0)


# --- Interrupts and status ---------------------------------------------------------------------


def test_irq_from_moderation_and_mask():
    async def body(h):
        ctx, dut = h.ctx, h.dut
        await h.write_name("INTR_MOD_EVENTS", 3)
        await h.pulse_event(dut.event_written, 2)
        await h.settle()
        assert await h.read_name("INTR_STATUS") == 0
        await h.pulse_event(dut.event_written, 1)
        await h.settle()
        assert await h.read_name("INTR_STATUS") == regmap.INTR_EVENTS
        assert ctx.get(dut.irq) == 0                      # masked
        assert h.seen("interrupt_raised") == []
        mark = h.clock
        await h.write_name("INTR_MASK", regmap.INTR_EVENTS)
        await h.settle()
        assert ctx.get(dut.irq) == 1
        assert len(h.seen("interrupt_raised", mark)) == 1
        # W1C: writing 0, or the other bit, clears nothing.
        await h.write_name("INTR_STATUS", regmap.INTR_FATAL)
        await h.write_name("INTR_STATUS", regmap.INTR_EVENTS, strb=0b1110)
        assert await h.read_name("INTR_STATUS") == regmap.INTR_EVENTS
        await h.write_name("INTR_STATUS", regmap.INTR_EVENTS)
        await h.settle()
        assert await h.read_name("INTR_STATUS") == 0
        assert ctx.get(dut.irq) == 0
        # By time: one event, then the timer.
        await h.write_name("INTR_MOD_CYCLES", 20)
        await h.pulse_event(dut.event_written, 1)
        mark = h.clock
        await h.settle(10)
        assert ctx.get(dut.irq) == 0
        await h.settle(15)
        assert ctx.get(dut.irq) == 1
        assert len(h.seen("interrupt_raised", mark)) == 1
        # The mask alone lowers and raises the line again.
        await h.write_name("INTR_MASK", 0)
        await h.settle()
        assert ctx.get(dut.irq) == 0
        mark = h.clock
        await h.write_name("INTR_MASK", regmap.INTR_EVENTS | regmap.INTR_FATAL)
        await h.settle()
        assert ctx.get(dut.irq) == 1
        assert len(h.seen("interrupt_raised", mark)) == 1

    run(body)


def test_event_write_failed_is_sticky_and_fatal():
    async def body(h):
        ctx, dut = h.ctx, h.dut
        await h.write(_ring(RingId.EVENT, "LOG2_SIZE"), 4)
        await h.write_name("INTR_MASK", regmap.INTR_FATAL)
        await h.pulse_event(dut.event_write_failed)
        await h.settle()
        assert await h.read_name("STATUS") == regmap.STATUS_EVENT_WRITE_FAILED
        assert await h.read_name("INTR_STATUS") == regmap.INTR_FATAL
        assert ctx.get(dut.irq) == 1
        # Rewriting another ring's size does not clear it; the event ring's does.
        await h.write(_ring(RingId.RX, "LOG2_SIZE"), 4)
        assert await h.read_name("STATUS") == regmap.STATUS_EVENT_WRITE_FAILED
        await h.write(_ring(RingId.EVENT, "LOG2_SIZE"), 4)
        assert await h.read_name("STATUS") == 0
        # FATAL stays until the host clears it.
        assert await h.read_name("INTR_STATUS") == regmap.INTR_FATAL
        await h.write_name("INTR_STATUS", regmap.INTR_FATAL)
        await h.settle()
        assert await h.read_name("INTR_STATUS") == 0
        assert ctx.get(dut.irq) == 0
        # A refused size write clears it as well (any EVENT_LOG2_SIZE write reconfigures).
        await h.pulse_event(dut.event_write_failed)
        await h.write(_ring(RingId.EVENT, "LOG2_SIZE"), 13)
        assert await h.read_name("STATUS") == 0

    run(body)


def test_a_new_cause_wins_over_a_clear_in_the_same_clock():
    async def body(h):
        ctx, dut, bus = h.ctx, h.dut, h.bus
        await h.pulse_event(dut.event_written)           # INTR_MOD_EVENTS = 1 at reset
        await h.settle()
        assert await h.read_name("INTR_STATUS") == regmap.INTR_EVENTS
        # AW and W are taken together in clock c, the write starts in clock c + 1 and a plain
        # register (INTR_STATUS here) takes it in c + 2. An event written in clock c + 1 fires in
        # c + 2; a write failure in c + 2 counts at once. Both must survive the W1C of both bits
        # done in that clock.
        assert ctx.get(bus.awready) and ctx.get(bus.wready)
        ctx.set(bus.awaddr, _off("INTR_STATUS"))
        ctx.set(bus.wdata, regmap.INTR_EVENTS | regmap.INTR_FATAL)
        ctx.set(bus.wstrb, 0xF)
        for sig in (bus.awvalid, bus.wvalid):
            ctx.set(sig, 1)
        await ctx.tick()
        for sig in (bus.awvalid, bus.wvalid):
            ctx.set(sig, 0)
        ctx.set(dut.event_written, 1)
        await ctx.tick()
        ctx.set(dut.event_written, 0)
        ctx.set(dut.event_write_failed, 1)
        await ctx.tick()
        ctx.set(dut.event_write_failed, 0)
        (resp,) = await h._response(bus.bvalid, bus.bready, bus.bresp)
        assert resp == Resp.OKAY
        assert await h.read_name("INTR_STATUS") == regmap.INTR_EVENTS | regmap.INTR_FATAL
        assert await h.read_name("STATUS") == regmap.STATUS_EVENT_WRITE_FAILED

    run(body)


def test_rings_speak_ring_config_signature():
    """One RingConfigSignature per ring, indexed by RingId value: a ring's unit connects to it
    with one wiring.connect."""
    member = Registers.__annotations__["rings"]
    assert member.flow == wiring.Out
    assert isinstance(member.signature, RingConfigSignature)
    assert member.signature.members == RingConfigSignature().members
    assert member.dimensions == (len(RingId),)
