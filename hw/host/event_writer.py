"""The event writer: puts the NIC's events into the EVENT ring in host memory, a DMA write client.

Ref: docs/host_interface.md ("Events", "Interrupts").

Every unit that reports to the host (RX writer, TX reader, command unit) hands its events to one
of ``sources``; refused register writes arrive on ``reg_error`` and become ``ERROR`` events. The
writer takes them round robin (each source's events stay in its order), gives each the next slot
of the ring and its phase, and writes it with one DMA write request:

::

    sources[0..n-1] ────┐             ┌──────── events: 16-deep LUT RAM queue ─────────┐
    reg_error ─► ERROR ─┴─ round robin ─► write ... issue ─► (slot, phase) ... data ─► dma.data
                           (grant chosen   (wr_ptr)  (iss_ptr)   │           (dat_ptr)   (beats,
                            a clock ahead)                       └► dma.req              strobes)
                                                         dma.done ─► write_failed

- **Slots.** Event ``k`` goes to ``base + 16 * slot``: two beats at 64 bits, one at 128, half a
  beat (strobes on its 16 bytes) at 256. ``phase`` is 1 on the first pass through the ring and
  flips on each wrap; the writer sets it, the sources' value is ignored.
- **Ring full.** One slot is always left empty: an event is issued only while the slot after it is
  not the host's consumer index (``config.host_index``), and not at all while the ring is not
  configured (``log2_size`` 0). Slots are counted when the event is *issued*, so the events in
  flight (issued, not yet written) are counted against the ring's room. Then the writer waits, and
  its sources wait behind it.
- **Several in flight.** Events wait in one queue (``fifo_depth`` deep, LUT RAM) from the clock
  the arbiter takes them until their last beat is taken; the issue stage gives the next one its
  slot and sends its request, the data stage sends the issued ones' beats, and neither waits for
  an earlier event's completion (up to ``max_outstanding`` completions are awaited). Each stage
  acts on registered flags only, so no handshake runs through two stages in one clock. One event
  a request: alone the writer moves one event a clock (at 64 bits one every two clocks, two beats
  each); behind the DMA manager, which takes a request every other clock, one every two clocks.
- **Written.** An event is *written* when the DMA manager takes its last data beat: then the
  producer index ``config.nic_index`` moves past it, and ``written`` and ``count.events`` pulse.
  The host finds events by their phase, not by the producer index, and can see an event as soon
  as that beat reaches memory, i.e. after it left the writer: the producer index (which bounds the
  host's ``EVENT_CONSUMER`` writes) has moved by then. The write's completion comes later; an error
  in it pulses ``write_failed`` (STATUS.EVENT_WRITE_FAILED, INTR_STATUS.FATAL) and the slot stays
  used (the producer index has moved already), as the host driver expects.
- **Reset.** ``config.reset`` (the ring's size was written) puts the producer index at 0 and the
  phase at 1. Events issued before it and not yet written are still sent (their requests are out)
  but with every strobe 0 (at 64 bits an event whose first beat left already is cut: its second
  beat, the one with the phase, writes nothing), so none of them appears in the old ring or the
  new one; they are not counted, and their completions pulse nothing (nor does any completion of
  an event written before the reset). An event whose last beat is taken in the reset's clock was
  written to the old ring and is counted. The event waiting to be issued goes to the new ring.
"""

from amaranth import Cat, Const, Module, Mux, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out
from amaranth.utils import exact_log2

from .. import params
from ..layouts import Event, EventKind, HostCounterPulses, RegisterError
from .dma import DmaWriteSignature, check_data_bits
from .rings import RingConfigSignature

__all__ = ["EventWriter"]

_ENTRY_BYTES = params.RING_ENTRY_BYTES
_ENTRY_BITS = 8 * _ENTRY_BYTES
_INDEX_BITS = params.RING_INDEX_BITS

#: What the issue stage adds to an event for the data stage: its phase and, at 256 bits, which
#: half of the beat its slot is.
_Slot = data.StructLayout({"phase": 1, "half": 1})


class EventWriter(wiring.Component):
    """Writes events into the EVENT ring through one DMA write client.

    Parameters
    ----------
    sources : int
        Event streams (>= 1), served round robin with ``reg_error``.
    data_bits : int
        DMA bus width: 64, 128 or 256.
    fifo_depth : int
        Events taken from the inputs whose last beat the DMA manager has not taken yet (a power
        of two >= 2; up to 16 is one LUT RAM deep).
    max_outstanding : int
        Issued events whose write completion has not come back yet (>= 1).

    Members
    -------
    config : In(RingConfigSignature)
        The EVENT ring from the register target; ``nic_index`` is the producer index.
    sources : In(stream.Signature(Event)).array(sources)
        Events to write; ``phase`` is ignored.
    reg_error : In(stream.Signature(RegisterError))
        Refused register writes: each becomes an ``ERROR`` event (``ring``, index 0, ``code``,
        ``detail`` = bits 30:0 of the value written).
    dma : Out(DmaWriteSignature(data_bits))
        The DMA manager's write client.
    written : Out(1)
        Pulse per event written (its last beat taken), for the interrupt moderation.
    write_failed : Out(1)
        Pulse per event whose write completed with an error, for STATUS and INTR_STATUS.FATAL.
    count : Out(HostCounterPulses)
        Only ``events`` is driven (with ``written``).
    """

    def __init__(self, sources, *, data_bits=params.DMA_DATA_BITS, fifo_depth=16,
                 max_outstanding=2 * params.DMA_MAX_WRITES):
        if not isinstance(sources, int) or sources < 1:
            raise ValueError(f"sources must be a positive integer, not {sources!r}")
        check_data_bits(data_bits)
        if not isinstance(fifo_depth, int) or fifo_depth < 2 or fifo_depth & (fifo_depth - 1):
            raise ValueError(f"fifo_depth must be a power of two >= 2, not {fifo_depth!r}")
        if not isinstance(max_outstanding, int) or max_outstanding < 1:
            raise ValueError(f"max_outstanding must be an integer >= 1, not {max_outstanding!r}")
        self._sources = sources
        self._data_bits = data_bits
        self._fifo_depth = fifo_depth
        self._max_outstanding = max_outstanding
        super().__init__({
            "config": In(RingConfigSignature()),
            "sources": In(stream.Signature(Event)).array(sources),
            "reg_error": In(stream.Signature(RegisterError)),
            "dma": Out(DmaWriteSignature(data_bits)),
            "written": Out(1),
            "write_failed": Out(1),
            "count": Out(HostCounterPulses),
        })

    @property
    def data_bits(self):
        return self._data_bits

    @property
    def beat_bytes(self):
        return self._data_bits // 8

    @property
    def beats_per_event(self):
        """Data beats of one event's write request."""
        return max(1, _ENTRY_BITS // self._data_bits)

    def elaborate(self, platform):
        m = Module()
        cfg = self.config
        dma = self.dma

        # --- Ring size: the index mask (registered; ``mask_now`` for the reset clock) ----------
        mask_now = Signal(_INDEX_BITS)
        with m.Switch(cfg.log2_size):
            for n in range(params.RING_LOG2_SIZE_MIN, params.RING_LOG2_SIZE_MAX + 1):
                with m.Case(n):
                    m.d.comb += mask_now.eq((1 << n) - 1)
        mask = Signal(_INDEX_BITS)
        m.d.sync += mask.eq(mask_now)

        # --- Arbitration: one event from the sources or reg_error into ``events`` ------------
        error_event = Signal(Event)
        m.d.comb += [
            error_event.kind.eq(EventKind.ERROR.value),
            error_event.ring.eq(self.reg_error.payload.ring),
            error_event.code.eq(self.reg_error.payload.code),
            error_event.detail.eq(self.reg_error.payload.detail[:31]),
        ]
        inputs = [(s.valid, s.payload, s.ready) for s in self.sources]
        inputs.append((self.reg_error.valid, error_event, self.reg_error.ready))

        # The events wait in ``events`` (LUT RAM, ``fifo_depth`` deep) between three pointers:
        # ``wr_ptr`` (the arbiter writes), ``iss_ptr`` (the next to issue) and ``dat_ptr`` (the
        # next whose beats go out). The arbiter, the issue and the data stage each act on
        # registered flags only (``full``, ``has_pending``, ``has_issued``), not on each other's
        # handshakes in the same clock. ``slots`` holds what the issue stage adds (the phase).
        depth = self._fifo_depth
        ptr_bits = exact_log2(depth) + 1
        m.submodules.events = events = Memory(shape=_ENTRY_BITS, depth=depth, init=[])
        m.submodules.slots = slots = Memory(shape=_Slot, depth=depth, init=[])
        ev_w = events.write_port()
        ev_r = events.read_port(domain="comb")
        slot_w = slots.write_port()
        slot_r = slots.read_port(domain="comb")
        wr_ptr = Signal(ptr_bits)
        iss_ptr = Signal(ptr_bits)
        dat_ptr = Signal(ptr_bits)
        take = Signal()             # the arbiter writes an event
        issue = Signal()            # the issue stage gives the next event its slot
        take_last = Signal()        # the data stage's last beat of an event is taken
        used = Signal(range(depth + 1))         # taken, last beat not yet taken
        pending = Signal(range(depth + 1))      # taken, not yet issued
        issued = Signal(range(depth + 1))       # issued, last beat not yet taken
        full = Signal()
        has_pending = Signal()
        has_issued = Signal()
        m.d.sync += [
            used.eq(used + take - take_last),
            pending.eq(pending + take - issue),
            issued.eq(issued + issue - take_last),
            # The flags of the next counts, with the handshakes only selecting (no adder).
            full.eq(Mux(take & ~take_last, used == depth - 1, full & ~(take_last & ~take))),
            has_pending.eq(Mux(take & ~issue, 1, has_pending & ~(issue & ~take & (pending == 1)))),
            has_issued.eq(Mux(issue & ~take_last, 1,
                              has_issued & ~(take_last & ~issue & (issued == 1)))),
            wr_ptr.eq(wr_ptr + take),
            iss_ptr.eq(iss_ptr + issue),
            dat_ptr.eq(dat_ptr + take_last),
        ]

        # Arbitration: the input to take from is chosen a clock ahead (``grant``, a one-hot
        # register), so that only a register selects the 128-bit mux into ``events``, each of its
        # bits for one input's 128 AND gates (an AND-OR mux): round robin after the input taken
        # last, among the inputs valid now. An input that stays valid is still valid in the next
        # clock (stream rule), unless taken now: then it has the lowest priority, and is chosen
        # again only when no other input is valid (if it has nothing more then, the clock is lost
        # and the choice made again).
        n = len(inputs)
        grant = Signal(n, init=1 << (n - 1))
        last = Signal(n, init=1 << (n - 1))
        chosen = 0
        for i, (_, payload, ready) in enumerate(inputs):
            chosen |= Mux(grant[i], payload.as_value(), 0)
            m.d.comb += ready.eq(~full & grant[i])
        m.d.comb += [
            take.eq(~full & (grant & Cat(*(valid for valid, _, _ in inputs))).any()),
            ev_w.addr.eq(wr_ptr[:-1]),
            ev_w.data.eq(chosen),
            ev_w.en.eq(take),
        ]
        # Both candidates are computed ahead of ``take``, which only selects.
        valids = [v for v, _, _ in inputs]
        after_grant = _round_robin(m, valids, grant, "rr_after_grant")
        after_last = _round_robin(m, valids, last, "rr_after_last")
        with m.If(take):
            m.d.sync += [last.eq(grant), grant.eq(after_grant)]
        with m.Else():
            m.d.sync += grant.eq(after_last)

        # --- Issue: the next slot, its phase, the request ---------------------------------------
        # ``issue_index`` is the slot the next event gets, ``issue_next`` and ``issue_next2`` the
        # two after it. ``issue`` enables the request's address register and the pointers, so it
        # comes from registers only: ``room`` (the ring has a free slot for the next event and
        # fewer than ``max_outstanding`` completions are awaited) is computed a clock ahead, for
        # either outcome of this clock's issue, from the host's index of this clock (which can
        # only move forward, giving room: a clock late is safe).
        issue_index = Signal(_INDEX_BITS)
        issue_next = Signal(_INDEX_BITS, init=1)
        issue_next2 = Signal(_INDEX_BITS, init=2)
        issue_phase = Signal(init=1)
        outstanding = Signal(range(self._max_outstanding + 1))     # issued, not completed
        outstanding_next = Signal.like(outstanding)
        done = Signal()
        room = Signal()
        req_free = Signal()
        m.d.comb += [
            req_free.eq(~dma.req.valid | dma.req.ready),
            issue.eq(has_pending & room & req_free & ~cfg.reset),
            outstanding_next.eq(outstanding + issue - done),
        ]
        m.d.sync += outstanding.eq(outstanding_next)
        ring_room = Signal()
        with m.If(cfg.reset):
            m.d.comb += ring_room.eq(cfg.host_index != 1)
        with m.Elif(issue):
            m.d.comb += ring_room.eq(issue_next2 != cfg.host_index)
        with m.Else():
            m.d.comb += ring_room.eq(issue_next != cfg.host_index)
        m.d.sync += room.eq((cfg.log2_size != 0) & ring_room
                            & (outstanding_next != self._max_outstanding))
        shift = exact_log2(self.beat_bytes)
        slot_addr = Signal(params.DMA_ADDR_WIDTH)
        m.d.comb += slot_addr.eq(Cat(Const(0, 4), cfg.base[4:] + issue_index))
        m.d.comb += [
            slot_w.addr.eq(iss_ptr[:-1]),
            slot_w.data.phase.eq(issue_phase),
            slot_w.data.half.eq(slot_addr[4] if self._data_bits == 256 else 0),
            slot_w.en.eq(issue),
        ]
        with m.If(issue):
            m.d.sync += [
                dma.req.valid.eq(1),
                dma.req.payload.addr.eq(Cat(Const(0, shift), slot_addr[shift:])),
                dma.req.payload.beats.eq(self.beats_per_event),
                issue_index.eq(issue_next),
                issue_next.eq(issue_next2),
                issue_next2.eq((issue_next2 + 1) & mask),
            ]
            with m.If(issue_next == 0):
                m.d.sync += issue_phase.eq(~issue_phase)
        with m.Elif(dma.req.ready):
            m.d.sync += dma.req.valid.eq(0)
        with m.If(cfg.reset):
            m.d.sync += [issue_index.eq(0), issue_next.eq(1), issue_next2.eq(2 & mask_now),
                         issue_phase.eq(1)]

        # --- Data: the issued events' beats; strobes 0 for events issued before a reset -------
        stale = Signal(range(depth + 1))    # the first ``stale`` issued events: before a reset
        beat = Signal()                     # 64 bits: the second beat
        last_beat = Signal()
        event_bits = Signal(_ENTRY_BITS)
        m.d.comb += [
            ev_r.addr.eq(dat_ptr[:-1]),
            slot_r.addr.eq(dat_ptr[:-1]),
            event_bits.eq(Cat(ev_r.data[:_ENTRY_BITS - 1], slot_r.data.phase)),
        ]
        strb_ones = Const((1 << self.beat_bytes) - 1, self.beat_bytes)
        keep = Signal()
        m.d.comb += keep.eq(stale == 0)
        if self._data_bits == 64:
            m.d.comb += [
                dma.data.payload.data.eq(event_bits.word_select(beat, 64)),
                dma.data.payload.strb.eq(Mux(keep, strb_ones, 0)),
                last_beat.eq(beat),
            ]
            with m.If(dma.data.valid & dma.data.ready):
                m.d.sync += beat.eq(~beat)
        elif self._data_bits == 128:
            m.d.comb += [
                dma.data.payload.data.eq(event_bits),
                dma.data.payload.strb.eq(Mux(keep, strb_ones, 0)),
                last_beat.eq(1),
            ]
        else:
            half_ones = Const(0xFFFF, 16)
            m.d.comb += [
                dma.data.payload.data.eq(Cat(event_bits, event_bits)),
                dma.data.payload.strb.eq(Mux(keep, Mux(slot_r.data.half,
                                                        Cat(Const(0, 16), half_ones),
                                                        Cat(half_ones, Const(0, 16))), 0)),
                last_beat.eq(1),
            ]
        m.d.comb += [
            dma.data.valid.eq(has_issued),
            take_last.eq(dma.data.valid & dma.data.ready & last_beat),
        ]
        with m.If(cfg.reset):
            m.d.sync += stale.eq(issued - take_last)
        with m.Elif(take_last & ~keep):
            m.d.sync += stale.eq(stale - 1)

        # --- Written: producer index, pulses --------------------------------------------------
        nic_index = Signal(_INDEX_BITS)
        written = Signal()
        m.d.comb += [written.eq(take_last & keep), cfg.nic_index.eq(nic_index)]
        m.d.sync += [self.written.eq(written), self.count.events.eq(written)]
        with m.If(cfg.reset):
            m.d.sync += nic_index.eq(0)
        with m.Elif(written):
            m.d.sync += nic_index.eq((nic_index + 1) & mask)

        # --- Completions: taken as they come; errors of events issued since the reset --------
        stale_done = Signal.like(outstanding)   # completions of events issued before a reset
        m.d.comb += [dma.done.ready.eq(1), done.eq(dma.done.valid)]
        m.d.sync += self.write_failed.eq(done & dma.done.payload.error & (stale_done == 0)
                                         & ~cfg.reset)
        with m.If(cfg.reset):
            m.d.sync += stale_done.eq(outstanding - done)
        with m.Elif(done & (stale_done != 0)):
            m.d.sync += stale_done.eq(stale_done - 1)
        return m


def _round_robin(m, requests, last, name):
    """One-hot: the first of ``requests`` (1-bit values) after ``last`` (one-hot), cyclically;
    ``last`` if none."""
    n = len(requests)
    grant = Signal(n, name=name)
    for idx in range(n):
        terms = []
        for start in range(n):
            # After ``start`` the candidates are start+1, ..., start+n; ``idx`` wins if it asks
            # and none of those before it does.
            before = [requests[(start + k) % n] for k in range(1, (idx - start) % n or n)]
            terms.append(last[start] & requests[idx] & ~Cat(*before).any() if before
                         else last[start] & requests[idx])
        m.d.comb += grant[idx].eq(Cat(*terms).any())
    with m.If(~Cat(*requests).any()):
        m.d.comb += grant.eq(last)
    return grant
