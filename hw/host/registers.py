"""The AXI4-Lite register target (BAR0): configuration, doorbells, interrupt and counters.

Every register, its offset, access and reset value comes from :data:`hw.host.regmap.REGISTERS`;
this module only says what each one does (docs/host_interface.md). A register regmap adds that
this module does not know is an error at elaboration, not a silent hole.

Writes: AW and W are taken independently, in either order; once both are held (and the previous B
has been accepted) the write is done in one clock and answered OKAY. Reads: the address is
registered, each 0x80-byte group of registers is muxed into a register, then the group is muxed
into ``rdata``: three clocks from AR to R, no wide combinational mux. Unmapped offsets read 0 and
ignore writes; every response is OKAY.
"""

from amaranth import C, Cat, Module, Mux, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.fifo import SyncFIFOBuffered
from amaranth.lib.wiring import In, Out

from .. import params
from ..layouts import EventCode, HostCounters, RegisterError, RingId, RxCounters
from ..params import RING_INDEX_BITS
from . import regmap
from .axi import AxiLiteSignature, Resp
from .interrupts import InterruptModerator
from .rings import RingConfigSignature

__all__ = ["Registers"]

_RINGS = len(RingId)
#: Refused writes waiting for the engine to report them.
ERROR_FIFO_DEPTH = 4
_RSS_KEY_WORDS = params.RSS_KEY_BYTES // 4
#: Read mux, first stage: registers are grouped by 0x80-byte block (32 words).
_GROUP_WORD_BITS = 5
_WORD_BITS = params.REG_ADDR_WIDTH - 2

# Bits kept by the plain read/write registers; the others read 0.
_KEEP_BITS = {
    "CONTROL": regmap.CONTROL_ENABLE,   # COUNTERS_CLEAR is an action, it reads 0
    "INTR_MASK": regmap.INTR_EVENTS | regmap.INTR_FATAL,
    **{regmap.ring_register(ring, "BASE_LO").name: 0xFFFF_FFF0 for ring in RingId},
}


def _host_produces(ring):
    """The host writes the ring's producer index (a doorbell); else it writes the consumer."""
    return ring != RingId.EVENT


def _roles():
    """What each register of the map is: name -> (role, argument)."""
    roles = {name: (name, None) for name in (
        "ID", "VERSION", "CONTROL", "STATUS", "INTR_STATUS", "INTR_MASK", "INTR_MOD_EVENTS",
        "INTR_MOD_CYCLES")}
    for ring in RingId:
        for what in ("BASE_LO", "BASE_HI", "LOG2_SIZE", "PRODUCER", "CONSUMER"):
            roles[regmap.ring_register(ring, what).name] = (what, ring)
    for n in range(_RSS_KEY_WORDS):
        roles[f"RSS_KEY{n}"] = ("RSS_KEY", n)
    for name, _ in data.Layout.cast(RxCounters):
        roles[regmap.counter_register("rx_" + name).name] = ("RX_COUNTER", name)
    for name, _ in data.Layout.cast(HostCounters):
        roles[regmap.counter_register(name).name] = ("HOST_COUNTER", name)
    return roles


def _word(value):
    """``value`` zero-extended to a 32-bit register word."""
    return value if len(value) >= 32 else Cat(value, C(0, 32 - len(value)))


def _merge(old, wdata, wstrb):
    """The word a write leaves: written bytes where ``wstrb`` is set, ``old`` elsewhere."""
    old = _word(old)
    return Cat(*(Mux(wstrb[i], wdata[8 * i:8 * i + 8], old[8 * i:8 * i + 8]) for i in range(4)))


def _size_mask(log2_size):
    """``2**log2_size - 1`` as a ring index (a thermometer code: one small compare a bit)."""
    return Cat(*(log2_size > i for i in range(RING_INDEX_BITS)))


class Registers(wiring.Component):
    """AXI4-Lite register target of the host interface (BAR0).

    Arrays of four are indexed by :class:`~hw.layouts.RingId` value. Pulses, indices and ``irq`` are
    registers; nothing leaves through a combinational decode of the bus.

    Members
    -------
    bus : In(AxiLiteSignature(REG_ADDR_WIDTH))
        The AXI4-Lite target, 32-bit data. All responses are OKAY.
    enable : Out(1)
        ``CONTROL.ENABLE``.
    counters_clear : Out(1)
        One-clock pulse: ``CONTROL`` was written with bit 1 (COUNTERS_CLEAR) set.
    rss_key_we, rss_key_addr : Out(1), Out(4)
        One-clock pulse: ``RSS_KEY<rss_key_addr>`` was written ...
    rss_key_data : Out(32)
        ... with this word (byte ``4n`` in bits 31:24, as the register).
    rings : Out(RingConfigSignature()).array(4)
        One per ring (:class:`~hw.host.rings.RingConfigSignature`):

        - ``base``: ``<RING>_BASE_HI:<RING>_BASE_LO``, bits 3:0 always 0.
        - ``log2_size``: ``<RING>_LOG2_SIZE``; 0 = ring off (also after a refused size).
        - ``reset``: one-clock pulse on every ``<RING>_LOG2_SIZE`` write, valid or refused (in the
          clock ``log2_size`` and ``host_index`` take their new values): the ring's unit zeroes its
          own index.
        - ``host_index``: the index the host writes: producer (doorbell) of COMMAND/RX/TX, consumer
          of EVENT. Only values that pass the checks get here.
        - ``nic_index`` (in): the index the NIC keeps: consumer of COMMAND/RX/TX, producer of
          EVENT. Read back as the read-only index register and used to check the host's writes.
    event_written : In(1)
        Pulse: the engine wrote one event (counted by the interrupt moderation).
    event_write_failed : In(1)
        Pulse: an event-ring write got a DMA error. Sets the sticky ``STATUS.EVENT_WRITE_FAILED``
        (cleared by an ``EVENT_LOG2_SIZE`` write) and ``INTR_STATUS.FATAL``.
    irq : Out(1)
        ``INTR_STATUS & INTR_MASK != 0``, one clock after the status changes.
    interrupt_raised : Out(1)
        Pulse in the clock ``irq`` rises (for the ``interrupts`` counter).
    bad_doorbell : Out(1)
        Pulse per refused doorbell, event consumer or ring size write (for ``bad_doorbells``);
        counted even when ``reg_error`` has no room.
    reg_error : Out(stream.Signature(RegisterError))
        Each refused write, for the engine's ERROR event, through an ERROR_FIFO_DEPTH-deep FIFO;
        a refusal that finds it full is counted but not reported.
    rx_counters : In(RxCounters)
        Read at ``RX_COUNTERS_BASE``, one 32-bit field per register in layout order.
    host_counters : In(HostCounters)
        Read at ``HOST_COUNTERS_BASE``, likewise.
    """

    bus: In(AxiLiteSignature(params.REG_ADDR_WIDTH))
    enable: Out(1)
    counters_clear: Out(1)
    rss_key_we: Out(1)
    rss_key_addr: Out(4)
    rss_key_data: Out(32)
    rings: Out(RingConfigSignature()).array(_RINGS)
    event_written: In(1)
    event_write_failed: In(1)
    irq: Out(1)
    interrupt_raised: Out(1)
    bad_doorbell: Out(1)
    reg_error: Out(stream.Signature(RegisterError))
    rx_counters: In(RxCounters)
    host_counters: In(HostCounters)

    def elaborate(self, platform):
        m = Module()
        bus = self.bus
        roles = _roles()
        unknown = [reg.name for reg in regmap.REGISTERS if reg.name not in roles]
        if unknown:
            raise ValueError(f"registers without hardware: {unknown}")

        # --- Storage ------------------------------------------------------------------------------
        # Plain read/write registers: a word each, reset from the map; bits outside _KEEP_BITS are
        # never set, so synthesis drops their flip-flops.
        plain = {reg.name: Signal(32, init=reg.reset, name=reg.name.lower())
                 for reg in regmap.REGISTERS
                 if reg.access == "rw" and roles[reg.name][0] not in
                 ("LOG2_SIZE", "PRODUCER", "CONSUMER")}
        for name, sig in plain.items():
            assert sig.init & ~_KEEP_BITS.get(name, 0xFFFF_FFFF) == 0, name
        write_failed = Signal()             # STATUS.EVENT_WRITE_FAILED
        intr_status = Signal(2)             # INTR_EVENTS | INTR_FATAL
        for reg in regmap.REGISTERS:        # the map's reset values of the rest are these
            if reg.name not in plain and roles[reg.name][0] not in ("ID", "VERSION"):
                assert reg.reset == 0, reg.name

        m.d.comb += self.enable.eq(plain["CONTROL"][0])
        for ring in RingId:
            m.d.comb += self.rings[ring.value].base.eq(Cat(
                plain[regmap.ring_register(ring, "BASE_LO").name],
                plain[regmap.ring_register(ring, "BASE_HI").name]))

        # --- Write channel ------------------------------------------------------------------------
        aw_full = Signal()                  # awaddr held, waiting for its data
        aw_word = Signal(_WORD_BITS)
        w_full = Signal()                   # wdata held, waiting for its address
        w_data = Signal(32)
        w_strb = Signal(4)
        write = Signal()                    # do the held write this clock
        # The write's two following clocks (ring writes are checked in them); B after the second.
        written = Signal(2)
        m.d.comb += [
            bus.awready.eq(~aw_full),
            bus.wready.eq(~w_full),
            bus.bresp.eq(Resp.OKAY),
            write.eq(aw_full & w_full & ~bus.bvalid & (written == 0)),
        ]
        with m.If(bus.awvalid & bus.awready):
            m.d.sync += [aw_full.eq(1), aw_word.eq(bus.awaddr[2:])]
        with m.If(bus.wvalid & bus.wready):
            m.d.sync += [w_full.eq(1), w_data.eq(bus.wdata), w_strb.eq(bus.wstrb)]
        m.d.sync += written.eq(Cat(write, written[0]))
        with m.If(write):
            m.d.sync += [aw_full.eq(0), w_full.eq(0)]
        with m.If(written[1]):
            m.d.sync += bus.bvalid.eq(1)
        with m.If(bus.bvalid & bus.bready):
            m.d.sync += bus.bvalid.eq(0)

        # Pulses are one clock long unless a write below sets them again.
        m.d.sync += [self.counters_clear.eq(0), self.rss_key_we.eq(0), self.bad_doorbell.eq(0)]
        m.d.sync += [self.rings[ring.value].reset.eq(0) for ring in RingId]

        # A refused write, registered on its way to bad_doorbell and the FIFO.
        error = Signal(RegisterError)
        intr_clear = Signal(2)              # W1C bits written to INTR_STATUS this clock
        failed_clear = Signal()             # EVENT_LOG2_SIZE written this clock

        # Ring writes (size, doorbell, event consumer) take three clocks, each starting from
        # flip-flops: (1) in the write's clock, the written word merged with the ring's register
        # and the operands of the checks; (2) the two ring distances; (3) their compare, and the
        # ring's registers or the refusal. The NIC's index is sampled once, in (1): a later index
        # only moves towards the host's (doorbells) or away from it (event consumer), so a write
        # that passes against it passes against any later one. host_index changes only by writes,
        # and a write waits for the one before to be answered.
        size_mask = [_size_mask(self.rings[r.value].log2_size) for r in RingId]
        ring1 = Signal(range(_RINGS))       # (1) -> (2): the ring written
        size1 = Signal()                    # a LOG2_SIZE write (else an index)
        value1 = Signal(32)                 # the merged word
        x1 = Signal(RING_INDEX_BITS)        # distances (2) takes: x - y and z - y, mod size
        y1 = Signal(RING_INDEX_BITS)
        z1 = Signal(RING_INDEX_BITS)
        mask1 = Signal(RING_INDEX_BITS)
        off1 = Signal()                     # the ring is off
        ring2 = Signal(range(_RINGS))       # (2) -> (3)
        size2 = Signal()
        value2 = Signal(32)
        p2 = Signal(RING_INDEX_BITS)
        q2 = Signal(RING_INDEX_BITS)
        bad2 = Signal()                     # refused whatever the distances say
        op1 = Signal()
        op2 = Signal()
        m.d.sync += [op1.eq(0), op2.eq(op1)]

        def write_ring(what, ring):
            r = ring.value
            log2_size = self.rings[r].log2_size
            host_index = self.rings[r].host_index
            nic = self.rings[r].nic_index
            old = log2_size if what == "LOG2_SIZE" else host_index
            value = _merge(old, w_data, w_strb)
            new = value[:RING_INDEX_BITS]
            m.d.sync += [
                op1.eq(1), ring1.eq(r), size1.eq(what == "LOG2_SIZE"), value1.eq(value),
                mask1.eq(size_mask[r]), off1.eq(log2_size == 0),
            ]
            if what == "LOG2_SIZE":
                return                          # (2) checks the value alone
            if _host_produces(ring):
                # Entries outstanding (posted, not yet taken by the NIC) must not shrink:
                # new - nic < host - nic is backwards.
                x, y, z = new, nic, host_index
            else:
                # The consumer may only move forward, up to the NIC's producer:
                # nic - host < new - host is backwards.
                x, y, z = nic, host_index, new
            m.d.sync += [x1.eq(x), y1.eq(y), z1.eq(z)]

        # (2) Distances, and the checks that need none.
        size_valid = (value1 == 0) | ((value1 >= params.RING_LOG2_SIZE_MIN)
                                      & (value1 <= params.RING_LOG2_SIZE_MAX))
        too_big = (value1[RING_INDEX_BITS:] != 0) | ((value1[:RING_INDEX_BITS] & ~mask1) != 0)
        m.d.sync += [
            ring2.eq(ring1), size2.eq(size1), value2.eq(value1),
            p2.eq((x1 - y1)[:RING_INDEX_BITS] & mask1),
            q2.eq((z1 - y1)[:RING_INDEX_BITS] & mask1),
            bad2.eq(Mux(size1, ~size_valid, off1 | too_big)),
        ]

        # (3) The compare, and the write's effect.
        refused = bad2 | (~size2 & (p2 < q2))
        with m.If(op2):
            with m.If(refused):
                m.d.sync += [
                    self.bad_doorbell.eq(1),
                    error.code.eq(Mux(size2, EventCode.BAD_RING_SIZE, EventCode.BAD_DOORBELL)),
                    error.ring.eq(ring2),
                    error.detail.eq(value2),
                ]
            with m.Switch(ring2):
                for ring in RingId:
                    config = self.rings[ring.value]
                    with m.Case(ring.value):
                        with m.If(size2):
                            m.d.sync += [
                                config.log2_size.eq(Mux(refused, 0, value2)),
                                config.host_index.eq(0),
                                config.reset.eq(1),
                            ]
                            if ring == RingId.EVENT:
                                m.d.comb += failed_clear.eq(1)
                        with m.Elif(~refused):
                            m.d.sync += config.host_index.eq(value2)

        with m.If(write):
            with m.Switch(aw_word):
                for reg in regmap.REGISTERS:
                    if reg.access == "ro":
                        continue                # writes ignored
                    role, arg = roles[reg.name]
                    with m.Case(reg.offset >> 2):
                        if reg.name in plain:
                            sig = plain[reg.name]
                            merged = _merge(sig, w_data, w_strb)
                            m.d.sync += sig.eq(merged & _KEEP_BITS.get(reg.name, 0xFFFF_FFFF))
                        if role == "CONTROL":
                            m.d.sync += self.counters_clear.eq(w_strb[0] & w_data[1])
                        elif role == "RSS_KEY":
                            m.d.sync += [
                                self.rss_key_we.eq(1),
                                self.rss_key_addr.eq(arg),
                                self.rss_key_data.eq(merged),
                            ]
                        elif role == "INTR_STATUS":
                            assert reg.access == "w1c"
                            m.d.comb += intr_clear.eq(w_data[:2] & w_strb[0].replicate(2))
                        elif role in ("LOG2_SIZE", "PRODUCER", "CONSUMER"):
                            write_ring(role, arg)

        # --- Refused writes -> FIFO -> reg_error --------------------------------------------------
        m.submodules.error_fifo = error_fifo = SyncFIFOBuffered(
            width=len(error.as_value()), depth=ERROR_FIFO_DEPTH)
        m.d.comb += [
            error_fifo.w_data.eq(error),
            error_fifo.w_en.eq(self.bad_doorbell),      # dropped (still counted) when full
            self.reg_error.payload.eq(error_fifo.r_data),
            self.reg_error.valid.eq(error_fifo.r_rdy),
            error_fifo.r_en.eq(self.reg_error.ready),
        ]

        # --- Status and interrupt -----------------------------------------------------------------
        m.submodules.moderator = moderator = InterruptModerator()
        m.d.comb += [
            moderator.event_written.eq(self.event_written),
            moderator.mod_events.eq(plain["INTR_MOD_EVENTS"]),
            moderator.mod_cycles.eq(plain["INTR_MOD_CYCLES"]),
        ]
        # A new cause wins over a clear in the same clock, so nothing is lost.
        m.d.sync += [
            write_failed.eq((write_failed & ~failed_clear) | self.event_write_failed),
            intr_status.eq((intr_status & ~intr_clear)
                           | Cat(moderator.fire, self.event_write_failed)),
        ]
        assert (regmap.INTR_EVENTS, regmap.INTR_FATAL) == (1, 2)
        irq_next = (intr_status & plain["INTR_MASK"][:2]) != 0
        m.d.sync += [self.irq.eq(irq_next), self.interrupt_raised.eq(irq_next & ~self.irq)]

        # --- Read channel -------------------------------------------------------------------------
        read = {}                           # name -> 32-bit value the register reads
        assert (regmap.STATUS_ENABLED, regmap.STATUS_EVENT_WRITE_FAILED) == (1, 2)
        for reg in regmap.REGISTERS:
            role, arg = roles[reg.name]
            if reg.name in plain:
                value = plain[reg.name]
            elif role in ("ID", "VERSION"):
                value = C(reg.reset, 32)
            elif role == "STATUS":
                value = Cat(self.enable, write_failed)
            elif role == "INTR_STATUS":
                value = intr_status
            elif role == "LOG2_SIZE":
                value = self.rings[arg.value].log2_size
            elif role in ("PRODUCER", "CONSUMER"):
                host_owned = (role == "PRODUCER") == _host_produces(arg)
                ring = self.rings[arg.value]
                value = ring.host_index if host_owned else ring.nic_index
            elif role == "RX_COUNTER":
                value = self.rx_counters[arg]
            elif role == "HOST_COUNTER":
                value = self.host_counters[arg]
            else:
                raise AssertionError(reg.name)
            read[reg.name] = _word(value)

        rd_addr_held = Signal()             # clock 1: address registered
        rd_group_held = Signal()            # clock 2: group words registered
        ar_word = Signal(_WORD_BITS)
        m.d.comb += [
            bus.arready.eq(~(rd_addr_held | rd_group_held | bus.rvalid)),
            bus.rresp.eq(Resp.OKAY),
        ]
        m.d.sync += [rd_addr_held.eq(bus.arvalid & bus.arready), rd_group_held.eq(rd_addr_held)]
        with m.If(bus.arvalid & bus.arready):
            m.d.sync += ar_word.eq(bus.araddr[2:])

        groups = {}
        for reg in regmap.REGISTERS:
            groups.setdefault((reg.offset >> 2) >> _GROUP_WORD_BITS, []).append(reg)
        group_word = {}
        for group, regs in groups.items():
            group_word[group] = word = Signal(32, name=f"rd_group{group}")
            with m.Switch(ar_word[:_GROUP_WORD_BITS]):
                for reg in regs:
                    with m.Case((reg.offset >> 2) & (2 ** _GROUP_WORD_BITS - 1)):
                        m.d.sync += word.eq(read[reg.name])
                with m.Default():
                    m.d.sync += word.eq(0)
        with m.If(rd_group_held):
            m.d.sync += bus.rvalid.eq(1)
            with m.Switch(ar_word[_GROUP_WORD_BITS:]):
                for group, word in group_word.items():
                    with m.Case(group):
                        m.d.sync += bus.rdata.eq(word)
                with m.Default():
                    m.d.sync += bus.rdata.eq(0)
        with m.If(bus.rvalid & bus.rready):
            m.d.sync += bus.rvalid.eq(0)
        return m
