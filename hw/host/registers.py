"""The AXI4-Lite register target (BAR0): configuration, doorbells, interrupt and counters.

Every register, its offset, access and reset value comes from :data:`hw.host.regmap.REGISTERS`;
this module only says what each one does (docs/host_interface.md). A register regmap adds that
this module does not know is an error at elaboration, not a silent hole.

Writes: AW and W are taken independently, in either order, AW's address decoded as it is taken;
once both are held (and the previous write has been answered) the write starts. A plain register
takes its value in the next clock; a ring write (size, doorbell, event consumer) is checked over
the next two, so that each step starts from flip-flops. B is raised three clocks after the start,
after the write's effect: a read after B sees it. Reads: the address is
registered (each mux its own copy), then three registered stages of at most 8-to-1 muxes (words
by 8, then by 4, then the 0x80-byte block) give ``rdata``: four clocks from AR to R, no wide
combinational mux and no net driving every mux. Unmapped offsets read 0 and
ignore writes; every response is OKAY.
"""

import operator
from functools import reduce

from amaranth import Array, C, Cat, Module, Mux, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.fifo import SyncFIFOBuffered
from amaranth.lib.wiring import In, Out

from .. import params
from ..layouts import (
    EventCode,
    FastPathCounters,
    HostCounters,
    RegisterError,
    RingId,
    RxCounters,
)
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
_WORD_BITS = params.REG_ADDR_WIDTH - 2
#: Read mux: address bits each registered stage decodes, least significant first (8 words, then 4
#: of those, then the 0x80-byte block): no mux wider than 8 to 1 in front of a flip-flop.
_READ_STAGE_BITS = (3, 2, _WORD_BITS - 5)

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
    for name, field, element in regmap.FAST_PATH_COUNTER_FIELDS:
        roles[regmap.counter_register(name).name] = ("FAST_PATH_COUNTER", (field, element))
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
    fast_path_counters : In(FastPathCounters)
        Read at ``FAST_PATH_COUNTERS_BASE``, likewise (``flush_reason`` one register per
        element); driven by the fast path's counters once it exists (unconnected they read 0).
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
    fast_path_counters: In(FastPathCounters)

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
        # The address is decoded when AW is taken, into a flip-flop per writable register (and a
        # few derived fields): the write itself then starts from flip-flops with its target known.
        writable = [reg for reg in regmap.REGISTERS if reg.access != "ro"]
        ring_regs = {reg.name: roles[reg.name] for reg in writable
                     if roles[reg.name][0] in ("LOG2_SIZE", "PRODUCER", "CONSUMER")}
        rss_regs = {reg.name: roles[reg.name][1] for reg in writable
                    if roles[reg.name][0] == "RSS_KEY"}
        aw_hit = {reg.name: bus.awaddr[2:] == reg.offset >> 2 for reg in writable}

        def any_hit(names):
            return Cat(C(0, 1), *(aw_hit[name] for name in names)).any()

        def encode(numbers, width):
            """The number (name -> number) of the register AW hits, 0 if none."""
            return Cat(*(any_hit([n for n, k in numbers.items() if k >> b & 1])
                         for b in range(width)))

        aw_full = Signal()                  # awaddr held (decoded), waiting for its data
        sel = {reg.name: Signal(name=f"sel_{reg.name.lower()}") for reg in writable}
        sel_rss = Signal()                  # one of the RSS_KEY registers ...
        rss_index = Signal(4)               # ... this one
        sel_size = Signal()                 # a ring's LOG2_SIZE ...
        sel_index = Signal()                # ... or the index the host writes ...
        sel_ring = Signal(range(_RINGS))    # ... of this ring
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
            m.d.sync += [
                aw_full.eq(1),
                *(sel[name].eq(hit) for name, hit in aw_hit.items()),
                sel_rss.eq(any_hit(rss_regs)),
                rss_index.eq(encode(rss_regs, len(rss_index))),
                sel_size.eq(any_hit([n for n, (role, _) in ring_regs.items()
                                     if role == "LOG2_SIZE"])),
                sel_index.eq(any_hit([n for n, (role, _) in ring_regs.items()
                                      if role != "LOG2_SIZE"])),
                sel_ring.eq(encode({n: ring.value for n, (_, ring) in ring_regs.items()},
                                   len(sel_ring))),
            ]
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
        m.d.sync += [self.counters_clear.eq(0), self.bad_doorbell.eq(0)]
        m.d.sync += [self.rings[ring.value].reset.eq(0) for ring in RingId]

        # Plain registers, actions and RSS key words: in the clock after the write's, from a
        # registered enable per register (``write`` itself then drives a flip-flop per register,
        # not every byte of them). w_data and w_strb still hold the write: a new W is taken in
        # this clock at the earliest.
        enables = {name: Signal(name=f"we_{name.lower()}") for name in sel}
        m.d.sync += [enables[name].eq(write & sel[name]) for name in sel]
        rss_write = Signal()                # one of the RSS_KEY registers ...
        rss_write_index = Signal(4)         # ... this one
        m.d.sync += rss_write.eq(write & sel_rss)
        with m.If(write):
            m.d.sync += rss_write_index.eq(rss_index)
        intr_clear = Signal(2)              # W1C bits written to INTR_STATUS this clock
        for name, sig in plain.items():
            with m.If(enables[name]):
                m.d.sync += sig.eq(_merge(sig, w_data, w_strb) & _KEEP_BITS.get(name, 0xFFFF_FFFF))
        m.d.sync += self.counters_clear.eq(enables["CONTROL"] & w_strb[0] & w_data[1])
        assert regmap.BY_NAME["INTR_STATUS"].access == "w1c"
        m.d.comb += intr_clear.eq(w_data[:2] & (enables["INTR_STATUS"] & w_strb[0]).replicate(2))
        # The RSS key word: an AND-OR of the key words by their (one-hot) enables, merged.
        old_key = reduce(operator.or_, (plain[name] & enables[name].replicate(32)
                                        for name in rss_regs))
        m.d.sync += [
            self.rss_key_we.eq(rss_write),
            self.rss_key_addr.eq(rss_write_index),
            self.rss_key_data.eq(_merge(old_key, w_data, w_strb)),
        ]

        # Ring writes (size, doorbell, event consumer) take three clocks, each starting from
        # flip-flops: (1) in the write's clock, the written word merged with the ring's register
        # and the operands of the checks; (2) the two ring distances; (3) their compare, and the
        # ring's registers or the refusal. The NIC's index is sampled once, in (1): a later index
        # only moves towards the host's (doorbells) or away from it (event consumer), so a write
        # that passes against it passes against any later one. host_index changes only by writes,
        # and a write waits for the one before to be answered.
        # (1)
        def of_ring(field):
            """``field`` of the ring written: a 4-way mux on sel_ring."""
            return Array(getattr(self.rings[ring.value], field) for ring in RingId)[sel_ring]

        # Each ring's index mask and "off", registered: a size takes effect (3) at least two
        # clocks before the next write can start.
        masks = Array(Signal(RING_INDEX_BITS, name=f"mask_{ring.name.lower()}") for ring in RingId)
        offs = Array(Signal(init=1, name=f"off_{ring.name.lower()}") for ring in RingId)
        for ring in RingId:
            log2_size = self.rings[ring.value].log2_size
            m.d.sync += [masks[ring.value].eq(_size_mask(log2_size)),
                         offs[ring.value].eq(log2_size == 0)]
        log2_size, host_index, nic_index = (of_ring(field) for field in (
            "log2_size", "host_index", "nic_index"))
        old = Mux(sel_size, _word(log2_size), _word(host_index))
        value = _merge(old, w_data, w_strb)
        new = value[:RING_INDEX_BITS]
        is_event = sel_ring == RingId.EVENT.value
        assert [_host_produces(ring) for ring in RingId] == [ring != RingId.EVENT
                                                             for ring in RingId]
        op1 = Signal()
        ring1 = Signal(range(_RINGS))
        size1 = Signal()                    # a LOG2_SIZE write (else an index)
        value1 = Signal(32)                 # the merged word
        # Distances (2) takes: x - y and z - y, mod size. A doorbell is backwards when entries
        # outstanding (posted, not yet taken by the NIC) shrink: new - nic < host - nic. The
        # event consumer may only move forward, up to the NIC's producer: nic - host < new - host.
        x1 = Signal(RING_INDEX_BITS)
        y1 = Signal(RING_INDEX_BITS)
        z1 = Signal(RING_INDEX_BITS)
        mask1 = Signal(RING_INDEX_BITS)
        off1 = Signal()                     # the ring is off
        m.d.sync += op1.eq(write & (sel_size | sel_index))
        m.d.sync += [
            ring1.eq(sel_ring), size1.eq(sel_size), value1.eq(value),
            x1.eq(Mux(is_event, nic_index, new)),
            y1.eq(Mux(is_event, host_index, nic_index)),
            z1.eq(Mux(is_event, new, host_index)),
            mask1.eq(masks[sel_ring]),
            off1.eq(offs[sel_ring]),
        ]

        # (2) Distances, and the checks that need none.
        op2 = Signal()
        ring2 = Signal(range(_RINGS))
        size2 = Signal()
        value2 = Signal(32)
        p2 = Signal(RING_INDEX_BITS)
        q2 = Signal(RING_INDEX_BITS)
        bad2 = Signal()                     # refused whatever the distances say
        size_valid = (value1 == 0) | ((value1 >= params.RING_LOG2_SIZE_MIN)
                                      & (value1 <= params.RING_LOG2_SIZE_MAX))
        too_big = (value1[RING_INDEX_BITS:] != 0) | ((value1[:RING_INDEX_BITS] & ~mask1) != 0)
        m.d.sync += [
            op2.eq(op1), ring2.eq(ring1), size2.eq(size1), value2.eq(value1),
            p2.eq((x1 - y1)[:RING_INDEX_BITS] & mask1),
            q2.eq((z1 - y1)[:RING_INDEX_BITS] & mask1),
            bad2.eq(Mux(size1, ~size_valid, off1 | too_big)),
        ]

        # (3) The compare, and the write's effect. A refused write, registered on its way to
        # bad_doorbell and the FIFO.
        error = Signal(RegisterError)
        failed_clear = Signal()             # EVENT_LOG2_SIZE written this clock
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
            elif role == "FAST_PATH_COUNTER":
                field, element = arg
                value = self.fast_path_counters[field]
                value = value if element is None else value[element]
            else:
                raise AssertionError(reg.name)
            read[reg.name] = _word(value)

        # A registered mux per stage of _READ_STAGE_BITS address bits, least significant first:
        # rd_held[i] says stage i's words hold the read's address; the last stage is rdata.
        rd_held = Signal(len(_READ_STAGE_BITS))
        ar_word = Signal(_WORD_BITS)
        m.d.comb += [
            bus.arready.eq(~(rd_held.any() | bus.rvalid)),
            bus.rresp.eq(Resp.OKAY),
        ]
        m.d.sync += rd_held.eq(Cat(bus.arvalid & bus.arready, rd_held[:-1]))
        with m.If(bus.arvalid & bus.arready):
            m.d.sync += ar_word.eq(bus.araddr[2:])

        words = {reg.offset >> 2: read[reg.name] for reg in regmap.REGISTERS}
        shift = 0
        for stage, bits in enumerate(_READ_STAGE_BITS[:-1]):
            parents = {}
            for address, value in words.items():
                parents.setdefault(address >> bits, {})[address & (2 ** bits - 1)] = value
            words = {}
            for parent, children in parents.items():
                words[parent] = word = Signal(32, name=f"rd_stage{stage}_{parent:x}")
                # Each byte of each mux has its own copy of its address bits (while the read is
                # not in the mux's range, the copies hold their byte numbers, so that no two are
                # alike and merged): no net drives more than a byte of muxes.
                araddr = bus.araddr[2:]
                for lane in range(4):
                    select = Signal(bits, name=f"rd_select{stage}_{parent:x}_{lane}")
                    with m.If(bus.arvalid & bus.arready):
                        m.d.sync += select.eq(Mux(araddr[shift + bits:] == parent,
                                                  araddr[shift:shift + bits], lane))
                    byte = word[8 * lane:8 * lane + 8]
                    with m.Switch(select):
                        for low, value in children.items():
                            with m.Case(low):
                                m.d.sync += byte.eq(_word(value)[8 * lane:8 * lane + 8])
                        with m.Default():
                            m.d.sync += byte.eq(0)
            shift += bits
        assert shift + _READ_STAGE_BITS[-1] == _WORD_BITS
        with m.If(rd_held[-1]):
            m.d.sync += bus.rvalid.eq(1)
            with m.Switch(ar_word[shift:]):
                for parent, word in words.items():
                    with m.Case(parent):
                        m.d.sync += bus.rdata.eq(word)
                with m.Default():
                    m.d.sync += bus.rdata.eq(0)
        with m.If(bus.rvalid & bus.rready):
            m.d.sync += bus.rvalid.eq(0)
        return m
