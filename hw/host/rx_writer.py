"""RX writer: the receive side's one DMA writer, doing the receive engine's jobs in order.

Ref: docs/host_interface.md ("Slow-path receive", events, the accounting identity),
docs/fast_path.md ("Blocks", "The receive engine, step by step").

Each :class:`~hw.layouts.RxJob` is one of:

- ``SLOW``: the frame into the next posted RX buffer, then an ``RX`` event. A filled RX buffer
  holds the frame's :class:`~hw.layouts.RxSummary` (32 bytes) and, from byte 32, the frame.
  Buffers are aligned to the DMA beat: the bits of ``RxDescriptor.addr`` below the beat (3:0 at
  128 bits) are ignored, the summary starts at the address with them cleared. A frame whose buffer
  is too small (``size < 32 + length``) is not written. With ``event.kind`` set (not 0) the
  event is that kind, with the job's ``event.tag`` and ``event.detail`` (also with
  ``BUFFER_TOO_SMALL`` or ``DMA_ERROR``): the SYN-cookie unit's ``CONNECTION`` and ``SYN_ASK``.
- ``FRAME_DATA``: the same fill, event ``FRAME_DATA`` (tag: the segment's ``seq``, detail: the
  ``conn_nbr``, also with ``BUFFER_TOO_SMALL`` or ``DMA_ERROR``). Counted by the ``frame_data``
  pulse when OK (the receive engine counts it), in ``rx_drop_*`` as ``SLOW`` when not.
- ``PLACE``: bytes ``[offset, offset + length)`` of the frame (``offset`` from the frame's first
  byte) to host address ``addr``, any byte alignment: one write request, no descriptor, no event.
  A write that fails names its ``conn_nbr`` on ``place_failed`` (the engine flushes it).
- ``EVENT``: ``event`` alone, posted once every earlier job's writes completed.

``free`` frees the frame's packet-buffer slot once the job has read the frame's words (a segment
placed in several pieces frees it with its last piece).

The writer is a pipeline. A job with data goes into one of two *slots*, which a request stage and
a beat stage then visit in turn, so that one DMA beat leaves every clock and a job's write request
goes out while the job before it is still being sent:

::

    jobs (head) ─► reads ─► read ══► packet buffer ══► beats ────────────┐
      │                                                                   ▼
      ├─► slot A ─┐ ┌─► [request] ───────────────────────────────────► dma.req
      │   slot B ─┴─┴─► [beat: summary or word | prev word] ─► rotate ─► [out, skid] ─► dma.data
    descriptors (a fill takes one; a fetch error is taken alone)
      │
      └─► in-flight FIFO (a record per job, per fetch error) ─┬─► [retire] ─► events, count,
                     dma.done ─► completions FIFO ────────────┘        frame_data, place_failed

- **Read.** A job asks the packet buffer for its words as soon as it is the head of ``jobs``,
  before it is taken: a fill the frame's words, a placement the words its bytes are in (word
  ``start + offset // W``, ``ceil((offset % W + length) / W)`` words; ``W`` = bytes of a beat).
  Jobs are taken in order, so the words come back in take order, and they are on their way while
  the job waits for a descriptor or a slot.
- **Take.** A fill is taken with a descriptor into the next free slot (``consume`` is pulsed in
  the same clock: see below); its buffer size is checked then. A placement is taken into a slot
  alone, an ``EVENT`` job into the in-flight FIFO alone; a fetch-error descriptor is taken on its
  own, at once, before the job at the head. Every entry taken queues its record in the in-flight
  FIFO, in take order.
- **Request.** For each slot in turn, a job with a write gets its request (fill: summary beats +
  frame words, the summary alone for an empty frame; placement: ``ceil((addr % W + length) /
  W)`` beats from ``addr`` rounded down to the beat) as soon as the request register is free.
- **Beat.** For each slot in turn, once its request is out (or it has none): the summary beats,
  then its words from ``beats``, one beat per clock, into the rotator's input registers; a fill
  that does not fit drops its words. The next slot follows in the next clock.
- **Rotate.** A placement's bytes move from their place in the packet buffer's words to their
  place in the host's beats: byte ``j`` of a beat is byte ``j + d`` of (previous word, this word),
  ``d = (offset - addr) mod W``. When the piece starts later in its first word than in its first
  beat (``offset % W > addr % W``) the first word only loads the previous-word register
  (``absorb``), if it can in the clock the job before sends a last beat of its own from the
  previous word alone (``flush``: a piece whose last beat needs no further word). The first and
  last beats' strobes cover exactly the piece's bytes. A fill is the case ``d = 0`` (the word
  passes straight through).
- **Events.** The write completions come back in request order and are taken as they come (into
  a FIFO as deep as the in-flight FIFO, so ``dma.done.ready`` is never low). The record at the
  head of the in-flight FIFO is retired once its completion (for a write) is there: ``RX`` with
  ``OK`` (``rx_to_host``) or ``DMA_ERROR`` (``rx_drop_dma_error``, detail = the buffer address
  bits 30:0, its ignored low bits 0), ``BUFFER_TOO_SMALL`` (``rx_drop_too_small``);
  ``FRAME_DATA`` likewise; ``ERROR``/``DMA_ERROR`` for a fetch-error entry (detail = the entry's
  address bits 30:0); an ``EVENT`` job's event; for a placement, nothing, or its ``conn_nbr`` on
  ``place_failed`` if the write failed. So every event goes out only after the host acknowledged
  all the writes before it: a host that sees the event sees the data. The counter pulse comes
  with the event (the clock its ``events.valid`` rises): until then the frame is inside the NIC.

Timing: every wide register (a slot's contents, the request, the rotator's input and output, the
skid beat, the event) is loaded under an enable that comes straight from flip-flops: a free slot
samples its inputs every clock and keeps them once taken; the other registers load whenever they
are free; ``prev`` loads the word at the head of ``beats`` whenever the rotator's input is free
(taken or not: see the code), not on the beat stage's decision, which would fan out to every bit.
The rotator's shift and strobes come from the slot's registers, computed at the take; its input
is registered (the word and the previous word), and so is its output (``dma.data`` or the skid
beat), so the byte multiplexer (W to 1 per output byte) stands alone between them. The beat
stage's slot select is a register; the buffer-size compare reaches only a slot's ``too_small``
and the in-flight record (a fill that does not fit becomes a drain in the clock after its take).

Why it is shaped so. One writer does every job of the receive side, in order, with one DMA
client whose completions come back in request order: so an event (an ``EVENT`` job's too) reaches
the host after every write before it, and the host sees the receive side's events in one order
(docs/fast_path.md). The packet buffer gives one word a clock, so a placement is realigned on the
way, a word in and a beat out each clock, by a rotator with a register of the previous word,
rather than by reading bytes; the summary beats of a fill use the same path with ``d = 0``. Two
slots are what one beat a clock needs (one job's request goes out while the other is sent); a
third would only shorten very short jobs. Throughput: fills as before (one beat a clock, no idle
clock between frames); placements one beat a clock, back to back, except for one clock for the
word that only loads ``prev`` when the job before ends with a beat that took a word; one-beat
placements with a backlog leave every 2.2 to 3 clocks (a job's words are asked for as it reaches
the head and take 5 clocks to come, at most three jobs are asked for, and a slot is taken again
three clocks after its last beat), against a 60-byte frame every 10.5 clocks on the wire.

``consume`` is pulsed as a fill and its descriptor are taken: the packet buffer's ``reserved``
(admitted frames not consumed) then falls in the same clock as ``posted`` (buffers posted and not
taken, from the RX ring fetcher, which moves its index as the writer takes an entry), so
``reserved`` counts exactly the admitted frames that still need a buffer, and a frame is refused
for want of a buffer only when every posted buffer is promised. The frame's words stay in the
packet buffer until the job reads them (after the words of the jobs taken before it).
"""

from amaranth import Cat, Const, Module, Mux, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.fifo import SyncFIFO
from amaranth.lib.wiring import In, Out
from amaranth.utils import exact_log2

from .. import params
from ..layouts import (
    RX_SUMMARY_BYTES,
    Event,
    EventCode,
    EventKind,
    HostCounterPulses,
    RingEntry,
    RingId,
    RxDescriptor,
    RxJob,
    RxJobKind,
    RxSummary,
)
from ..lib.packet_store import StoreRead, StoreWord
from .dma import DmaWriteBeat, DmaWriteSignature, check_data_bits
from .rx_buffer import RxPacketBuffer

__all__ = ["RxWriter", "RX_SUMMARY_BYTES"]


# What an in-flight record becomes at the head of the in-flight FIFO (for a write, once its
# completion is there): the event it posts, the counter it pulses.
_Record = data.StructLayout({
    "write": 1,             # waits for its write's completion (a fill, a placement)
    "post": 1,              # posts an event (all but PLACE)
    "slow": 1,              # a SLOW fill: rx_to_host when OK
    "frame_data": 1,        # a FRAME_DATA fill: the frame_data pulse when OK
    "too_small": 1,         # rx_drop_too_small
    "keep_detail": 1,       # ``detail`` also when OK (else only with DMA_ERROR)
    "kind": 4,              # the event
    "ring": 8,
    "index": 16,
    "length": 16,
    "code": 8,
    "tag": 32,
    "detail": 31,           # PLACE: its conn_nbr in bits 15:0
})


class RxWriter(wiring.Component):
    """Parameters
    ----------
    data_bits : int
        DMA bus width: 64, 128 or 256.
    max_in_flight : int
        Entries (jobs and fetch errors) between their take and their retirement: bounds the
        writes waiting for completion. At least 2.

    Members
    -------
    jobs : In(stream.Signature(RxJob))
        From the receive engine (or the dispatcher, every frame a ``SLOW`` job): the jobs, in
        order. The payload should come from flip-flops: the take computes on it.
    read : Out(stream.Signature(StoreRead(words)))
        To the packet buffer (of ``words`` DMA words): read each job's words, in take order.
    beats : In(stream.Signature(StoreWord(data_bits)))
        From the packet buffer: the words asked for, in order.
    free : Out(stream.Signature(6))
        To the packet buffer: the slot of a frame whose job (with ``free``) has read its words.
    consume : Out(1)
        To the packet buffer: one pulse per ``SLOW`` / ``FRAME_DATA`` job, as it is taken with its
        descriptor (the frame's claim on a posted buffer ends).
    descriptors : In(stream.Signature(RingEntry))
        From the RX ring fetcher: ``RxDescriptor`` entries in ring order; ``error``: the fetch
        failed (an ``ERROR`` event, the entry skipped).
    dma : Out(DmaWriteSignature(data_bits))
        Write client of the DMA manager: one request per fill or placement.
    events : Out(stream.Signature(Event))
        ``RX``, ``FRAME_DATA``, ``ERROR`` events (ring RX, ``phase`` 0: the event writer sets it)
        and the ``EVENT`` jobs' events, in take order.
    count : Out(HostCounterPulses)
        ``rx_to_host``, ``rx_drop_too_small``, ``rx_drop_dma_error``; the other bits are 0.
    frame_data : Out(1)
        A pulse with each ``FRAME_DATA`` event with ``OK``.
    place_failed : Out(stream.Signature(16))
        The ``conn_nbr`` of a placement whose write failed, in completion order (held until
        taken; the writer waits meanwhile).
    """

    def __init__(self, *, data_bits=params.DMA_DATA_BITS, max_in_flight=params.DMA_MAX_WRITES):
        check_data_bits(data_bits)
        if max_in_flight < 2:
            raise ValueError(f"max_in_flight must be at least 2, not {max_in_flight}")
        self._data_bits = data_bits
        self._max_in_flight = max_in_flight
        super().__init__({
            "jobs": In(stream.Signature(RxJob)),
            "read": Out(stream.Signature(StoreRead(RxPacketBuffer.depth_words_for(data_bits)))),
            "beats": In(stream.Signature(StoreWord(data_bits))),
            "free": Out(stream.Signature(6)),
            "consume": Out(1),
            "descriptors": In(stream.Signature(RingEntry)),
            "dma": Out(DmaWriteSignature(data_bits)),
            "events": Out(stream.Signature(Event)),
            "count": Out(HostCounterPulses),
            "frame_data": Out(1),
            "place_failed": Out(stream.Signature(16)),
        })

    @property
    def data_bits(self):
        return self._data_bits

    def elaborate(self, platform):
        m = Module()
        data_bits = self._data_bits
        beat_bytes = data_bits // 8
        shift = exact_log2(beat_bytes)
        summary_beats = RX_SUMMARY_BYTES // beat_bytes
        all_bytes = (1 << beat_bytes) - 1

        # The in-flight FIFO is written a clock after the take, from a register (``record``): the
        # take's decision does not reach its write enables. A take needs ``w_level <
        # max_in_flight - 1``, so that the record still in the register fits too.
        in_flight = self._max_in_flight
        m.submodules.flight = flight = SyncFIFO(width=_Record.size, depth=in_flight)
        m.submodules.completions = completions = SyncFIFO(width=1, depth=in_flight)
        flight_room = Signal()
        m.d.comb += flight_room.eq(flight.w_level < in_flight - 1)

        def bytes_below(n, name):
            """Strobes of the bytes below ``n`` (``n`` mod the beat; 0: all of them)."""
            strb = Signal(beat_bytes, name=name)
            with m.Switch(n):
                with m.Case(0):
                    m.d.comb += strb.eq(all_bytes)
                for k in range(1, beat_bytes):
                    with m.Case(k):
                        m.d.comb += strb.eq((1 << k) - 1)
            return strb

        def bytes_from(n, name):
            """Strobes of the bytes from ``n`` on."""
            strb = Signal(beat_bytes, name=name)
            with m.Switch(n):
                for k in range(beat_bytes):
                    with m.Case(k):
                        m.d.comb += strb.eq(all_bytes & ~((1 << k) - 1))
            return strb

        # --- The job at the head ------------------------------------------------------------------
        job = self.jobs.payload
        frame = job.frame
        is_fill = Signal()                  # SLOW or FRAME_DATA: a descriptor, a slot
        is_place = Signal()
        is_event = Signal()
        m.d.comb += [
            is_fill.eq((job.kind == RxJobKind.SLOW) | (job.kind == RxJobKind.FRAME_DATA)),
            is_place.eq(job.kind == RxJobKind.PLACE),
            is_event.eq(job.kind == RxJobKind.EVENT),
        ]

        # A fill: the descriptor's checks.
        entry = self.descriptors.payload
        desc = data.View(RxDescriptor, entry.entry)
        length = frame.summary.length
        need = Signal(range(RX_SUMMARY_BYTES + (1 << len(length))))
        too_small = Signal()
        empty = Signal()
        buffer_addr = Signal(params.DMA_ADDR_WIDTH)
        m.d.comb += [
            need.eq(length + RX_SUMMARY_BYTES),
            # (A size of 2**17 or more always fits: the compare's carry chain is 17 bits long.)
            too_small.eq((desc.size[len(need):] == 0) & (desc.size[:len(need)] < need)),
            empty.eq(length == 0),
            buffer_addr.eq(Cat(Const(0, shift), desc.addr[shift:])),
        ]
        fill_last_strb = bytes_below(length[:shift], "fill_last_strb")

        # A placement: where its bytes are and where they go.
        dst_lo = Signal(shift)              # addr % W: the first byte's place in its beat
        src_lo = Signal(shift)              # offset % W: ... in its packet-buffer word
        dst_end = Signal(len(job.length) + 1)
        dst_end_lo = Signal(shift)          # (addr + length) % W, from the low bits alone
        src_end = Signal(len(job.length) + 1)
        place_beats = Signal(params.DMA_REQUEST_BEATS_BITS)
        place_words = Signal(12)
        place_addr = Signal(params.DMA_ADDR_WIDTH)
        m.d.comb += [
            dst_lo.eq(job.addr[:shift]),
            src_lo.eq(job.offset[:shift]),
            dst_end.eq(dst_lo + job.length),
            dst_end_lo.eq(dst_lo + job.length[:shift]),
            src_end.eq(src_lo + job.length),
            place_beats.eq((dst_end + beat_bytes - 1) >> shift),
            place_words.eq((src_end + beat_bytes - 1) >> shift),
            place_addr.eq(Cat(Const(0, shift), job.addr[shift:])),
        ]
        place_first_strb = bytes_from(dst_lo, "place_first_strb")
        place_last_strb = bytes_below(dst_end_lo, "place_last_strb")

        # --- Take ---------------------------------------------------------------------------------
        slots = [_Slot(data_bits, f"slot{i}") for i in range(2)]
        take_ptr = Signal()                 # the slot the next job with data goes into
        req_ptr = Signal()                  # the slot the request stage looks at
        cur = Signal()                      # the slot the beat stage sends
        take_free = Signal()
        error_entry = Signal()              # a fetch error: taken on its own, at once
        error_take = Signal()
        job_take = Signal()
        into_slot = Signal()
        m.d.comb += [
            take_free.eq(~Mux(take_ptr, slots[1].valid, slots[0].valid)),
            error_entry.eq(self.descriptors.valid & entry.error),
            error_take.eq(error_entry & flight_room),
            # (A job with data asks for its words at the latest in the clock it is taken.)
            job_take.eq(self.jobs.valid & flight_room & ~error_entry
                        & (is_event | (take_free & (is_place | self.descriptors.valid)))),
            into_slot.eq(job_take & ~is_event),
            self.jobs.ready.eq(job_take),
            self.consume.eq(job_take & is_fill),
            self.descriptors.ready.eq(error_take | self.consume),
        ]
        with m.If(into_slot):
            m.d.sync += take_ptr.eq(~take_ptr)

        # Each job with data asks the packet buffer for its words as soon as it is the head of
        # ``jobs``, before it is taken (jobs are taken in order, so the words come back in take
        # order): they are on their way while the job waits for a descriptor or a slot, and a
        # fill's summary beats never wait for them. At most two jobs (the slots) and the head are
        # between their request and their last word, so the request FIFO never fills.
        read_layout = StoreRead(RxPacketBuffer.depth_words_for(data_bits))
        m.submodules.reads = reads = SyncFIFO(width=read_layout.size, depth=4)
        read_in = data.View(read_layout, reads.w_data)
        head_requested = Signal()
        ask = Signal()
        m.d.comb += [
            ask.eq(self.jobs.valid & ~is_event & ~head_requested),
        ]
        with m.If(job_take):
            m.d.sync += head_requested.eq(0)
        with m.Elif(ask):
            m.d.sync += head_requested.eq(1)
        m.d.comb += [
            read_in.addr.eq(Mux(is_place, frame.start + (job.offset >> shift), frame.start)),
            read_in.words.eq(Mux(is_place, place_words, frame.words)),
            reads.w_en.eq(ask),
            self.read.payload.eq(reads.r_data),
            self.read.valid.eq(reads.r_rdy),
            reads.r_en.eq(self.read.ready),
        ]
        for i, slot in enumerate(slots):
            # A free slot samples the head job every clock and keeps it once taken.
            with m.If(~slot.valid):
                m.d.sync += [
                    slot.valid.eq(into_slot & (take_ptr == i)),
                    slot.decided.eq(0),
                    slot.summary.eq(frame.summary),
                    slot.summary_index.eq(0),
                    slot.free.eq(job.free),
                    slot.frame_slot.eq(frame.slot),
                    slot.first.eq(1),
                    slot.words_done.eq(0),
                    slot.fresh.eq(1),
                ]
                with m.If(is_place):
                    m.d.sync += [
                        slot.too_small.eq(0),
                        slot.drain.eq(0),
                        slot.in_summary.eq(0),
                        slot.addr.eq(place_addr),
                        slot.beats.eq(place_beats),
                        slot.beats_left.eq(place_beats),
                        slot.last_beat.eq(place_beats == 1),
                        slot.beats_done.eq(0),
                        slot.words_left.eq(place_words),
                        slot.last_word.eq(place_words == 1),
                        slot.direct.eq(src_lo == dst_lo),
                        slot.absorb.eq(src_lo > dst_lo),
                        slot.rotate.eq(src_lo - dst_lo),
                        slot.first_strb.eq(place_first_strb),
                        slot.last_strb.eq(place_last_strb),
                    ]
                with m.Else():
                    fill_beats = Mux(empty, summary_beats, frame.words + summary_beats)
                    m.d.sync += [
                        slot.too_small.eq(too_small),
                        slot.drain.eq(empty),
                        slot.in_summary.eq(1),
                        slot.addr.eq(buffer_addr),
                        slot.beats.eq(fill_beats),
                        slot.beats_left.eq(fill_beats),
                        slot.last_beat.eq(fill_beats == 1),
                        slot.beats_done.eq(0),
                        slot.words_left.eq(frame.words),
                        slot.last_word.eq(frame.words == 1),
                        slot.direct.eq(1),
                        slot.absorb.eq(0),
                        slot.rotate.eq(0),
                        slot.first_strb.eq(all_bytes),
                        slot.last_strb.eq(fill_last_strb),
                    ]

            # A fill that does not fit becomes a drain in the clock after its take (its request
            # stage decides it then, its beat stage comes later): the buffer-size compare only
            # reaches ``too_small`` and the in-flight record.
            with m.Else():
                m.d.sync += slot.fresh.eq(0)
                with m.If(slot.fresh & slot.too_small):
                    m.d.sync += [slot.in_summary.eq(0), slot.drain.eq(1),
                                 slot.beats_done.eq(1)]

        record_in = Signal(_Record)
        fill_event = Signal(4)
        # A SLOW job whose ``event.kind`` is set posts that kind, ``tag`` and ``detail`` instead
        # of RX's (the SYN-cookie unit's CONNECTION and SYN_ASK: docs/syn_cookie.md §3).
        named = Signal()
        m.d.comb += [
            named.eq((job.kind == RxJobKind.SLOW) & (job.event.kind != 0)),
            fill_event.eq(Mux(named, job.event.kind,
                              Mux(job.kind == RxJobKind.FRAME_DATA,
                                  EventKind.FRAME_DATA.value, EventKind.RX.value))),
        ]
        with m.If(error_entry):
            m.d.comb += [
                record_in.post.eq(1),
                record_in.keep_detail.eq(1),
                record_in.kind.eq(EventKind.ERROR.value),
                record_in.ring.eq(RingId.RX.value),
                record_in.index.eq(entry.index),
                record_in.code.eq(EventCode.DMA_ERROR.value),
                record_in.detail.eq(entry.addr[:31]),
            ]
        with m.Elif(is_event):
            m.d.comb += [
                record_in.post.eq(1),
                record_in.keep_detail.eq(1),
                record_in.kind.eq(job.event.kind),
                record_in.ring.eq(job.event.ring),
                record_in.index.eq(job.event.index),
                record_in.length.eq(job.event.length),
                record_in.code.eq(job.event.code),
                record_in.tag.eq(job.event.tag),
                record_in.detail.eq(job.event.detail),
            ]
        with m.Elif(is_place):
            m.d.comb += [
                record_in.write.eq(1),
                record_in.detail.eq(job.conn_nbr),
            ]
        with m.Else():
            frame_data = job.kind == RxJobKind.FRAME_DATA
            m.d.comb += [
                record_in.write.eq(~too_small),
                record_in.post.eq(1),
                record_in.slow.eq(~too_small & ~frame_data),
                record_in.frame_data.eq(~too_small & frame_data),
                record_in.too_small.eq(too_small),
                record_in.keep_detail.eq(frame_data | named),
                record_in.kind.eq(fill_event),
                record_in.ring.eq(RingId.RX.value),
                record_in.index.eq(entry.index),
                record_in.length.eq(length),
                record_in.code.eq(Mux(too_small, EventCode.BUFFER_TOO_SMALL.value,
                                      EventCode.OK.value)),
                record_in.tag.eq(Mux(named, job.event.tag,
                                     Mux(frame_data, frame.tcp.seq, frame.summary.hash))),
                record_in.detail.eq(Mux(named, job.event.detail,
                                        Mux(frame_data, job.conn_nbr, buffer_addr[:31]))),
            ]
        record = Signal(_Record)
        record_valid = Signal()
        m.d.sync += [record.eq(record_in), record_valid.eq(error_take | job_take)]
        m.d.comb += [flight.w_data.eq(record), flight.w_en.eq(record_valid)]

        # --- Request ------------------------------------------------------------------------------
        req = self.dma.req
        req_free = Signal()
        undecided = Signal()
        req_slot_too_small = Signal()
        m.d.comb += [
            req_free.eq(~req.valid | req.ready),
            undecided.eq(Mux(req_ptr, slots[1].valid & ~slots[1].decided,
                             slots[0].valid & ~slots[0].decided)),
            req_slot_too_small.eq(Mux(req_ptr, slots[1].too_small, slots[0].too_small)),
        ]
        with m.If(req_free):
            m.d.sync += [
                req.valid.eq(undecided & ~req_slot_too_small),
                req.payload.addr.eq(Mux(req_ptr, slots[1].addr, slots[0].addr)),
                req.payload.beats.eq(Mux(req_ptr, slots[1].beats, slots[0].beats)),
            ]
        decide = [Signal(name=f"slot{i}_decide") for i in range(2)]
        with m.If(undecided & (req_free | req_slot_too_small)):
            m.d.sync += req_ptr.eq(~req_ptr)
            for i, slot in enumerate(slots):
                m.d.comb += decide[i].eq(req_ptr == i)
                with m.If(req_ptr == i):
                    m.d.sync += slot.decided.eq(1)

        # --- Beat ---------------------------------------------------------------------------------
        m.d.sync += self.free.valid.eq(0)           # one pulse per freeing job (below)
        # The rotator's input registers: the word (``hi``), the previous word or the word again
        # (``lo``), the shift and the strobes. ``prev`` is the last word taken from ``beats``.
        rot_valid = Signal()
        rot_lo = Signal(data_bits)
        rot_hi = Signal(data_bits)
        rot_shift = Signal(shift)
        rot_strb = Signal(beat_bytes)
        prev = Signal(data_bits)
        # The output skid buffer: ``dma.data`` is a register, and the rotator's input registers
        # see only ``room`` (a register), not the manager's ready.
        wdata = self.dma.data
        skid_valid = Signal()
        skid = Signal(DmaWriteBeat(data_bits))
        room = Signal()
        rot_free = Signal()
        m.d.comb += [
            room.eq(~skid_valid),
            rot_free.eq(~rot_valid | room),
        ]
        emit = Signal()                     # a beat into the rotator's input registers
        emit_lo = Signal(data_bits)
        emit_hi = Signal(data_bits)
        emit_shift = Signal(shift)
        emit_strb = Signal(beat_bytes)

        # A placement whose first word only loads ``prev`` (``absorb``) takes it early, in the
        # clock the other slot sends its last beat from ``prev`` alone (``flush``: no word is
        # taken then; a beat after the last word is always the last), so that such pieces
        # follow each other without an idle clock.
        # ``sels``: the beat stage is on this slot, ``(cur == i) & decided`` as a register (set
        # from the next values of both), so that the beat stage's logic starts at flip-flops.
        sels = [Signal(name=f"slot{i}_sending") for i in range(2)]
        flushes, dones = [], []
        for i, slot in enumerate(slots):
            sel = sels[i]
            flush = Signal(name=f"slot{i}_flush_beat")      # its last beat, from ``prev`` alone
            m.d.comb += [
                flush.eq(sel & ~slot.in_summary & slot.words_done & ~slot.beats_done & rot_free),
            ]
            sels.append(sel)
            flushes.append(flush)
        earlies = []

        # Each slot's step is computed from its own flags only (``decided`` implies ``valid``),
        # so that a slot's counters do not wait on the other slot's state (but for ``early``).
        for i, slot in enumerate(slots):
            sel, flush = sels[i], flushes[i]
            early = Signal(name=f"slot{i}_early_absorb")    # its first word, in a flush
            header = Signal(name=f"slot{i}_header_beat")    # a summary beat goes out
            want = Signal(name=f"slot{i}_wants_word")       # its words are next on ``beats``
            take_only = Signal(name=f"slot{i}_take_only")   # a word taken without a beat
            move = Signal(name=f"slot{i}_word_move")        # a word leaves ``beats``
            beat = Signal(name=f"slot{i}_beat")             # a beat goes out
            # A fill's first summary beat waits for its first word on ``beats``: then its beats
            # leave back to back (a frame that arrives alone would otherwise wait for its words
            # between its summary and its data; frames behind others find theirs there).
            started = Signal(name=f"slot{i}_started")
            m.d.comb += [
                early.eq(~sel & slot.decided & slot.absorb & flushes[1 - i]),
                started.eq((slot.summary_index != 0) | self.beats.valid),
                header.eq(sel & slot.in_summary & rot_free & started),
                want.eq(sel & ~slot.in_summary & ~slot.words_done),
                take_only.eq(slot.drain | slot.absorb),
                move.eq(self.beats.valid & ((want & (slot.drain | rot_free)) | early)),
                beat.eq(header | (move & ~take_only) | flush),
            ]
            with m.If(sel):
                m.d.comb += [
                    emit.eq(beat),
                    emit_shift.eq(slot.rotate),
                    emit_strb.eq(Mux(slot.first, slot.first_strb, all_bytes)
                                 & Mux(slot.last_beat, slot.last_strb, all_bytes)),
                ]
                with m.If(slot.in_summary):
                    with m.Switch(slot.summary_index):
                        for k in range(summary_beats):
                            with m.Case(k):
                                m.d.comb += emit_hi.eq(
                                    slot.summary.as_value()[k * data_bits:(k + 1) * data_bits])
                with m.Else():
                    m.d.comb += [
                        self.beats.ready.eq(want & (slot.drain | rot_free)),
                        emit_hi.eq(self.beats.payload.data),
                    ]
                m.d.comb += emit_lo.eq(Mux(slot.direct, emit_hi, prev))
            with m.If(header):
                m.d.sync += [
                    slot.summary_index.eq(slot.summary_index + 1),
                    slot.in_summary.eq(slot.summary_index != summary_beats - 1),
                ]
            with m.If(move):
                m.d.sync += [
                    slot.absorb.eq(0),
                    slot.words_left.eq(slot.words_left - 1),
                    slot.last_word.eq(slot.words_left == 2),
                    slot.words_done.eq(slot.last_word),
                ]
                with m.If(slot.last_word & slot.free):
                    m.d.sync += [self.free.valid.eq(1), self.free.payload.eq(slot.frame_slot)]
            with m.If(beat):
                m.d.sync += [
                    slot.first.eq(0),
                    slot.beats_left.eq(slot.beats_left - 1),
                    slot.last_beat.eq(slot.beats_left == 2),
                    slot.beats_done.eq(slot.last_beat),
                ]
            # Done: its last word taken (or all taken before) and its last beat out (or none
            # left): the next slot's turn from the next clock.
            done = Signal(name=f"slot{i}_done")
            m.d.comb += done.eq(((move & slot.last_word) | slot.words_done)
                                & ((beat & slot.last_beat) | slot.beats_done) & sel)
            with m.If(done):
                m.d.sync += [slot.valid.eq(0), slot.decided.eq(0)]
            dones.append(done)

            earlies.append(early)
        with m.If(earlies[0] | earlies[1]):
            m.d.comb += self.beats.ready.eq(1)
        cur_next = Signal()
        m.d.comb += cur_next.eq(cur ^ dones[0] ^ dones[1])
        m.d.sync += cur.eq(cur_next)
        for i, slot in enumerate(slots):
            m.d.sync += sels[i].eq((cur_next == i) & ((slot.decided & ~dones[i]) | decide[i]))

        # ``prev`` loads the word at the head of ``beats`` whenever the rotator's input is free,
        # taken or not: an enable from flip-flops, not from the beat stage's decision (which
        # would fan out to every bit). It is right whenever a rotation reads it: a placement
        # takes every word in a clock when the rotator's input is free (also the word that only
        # loads ``prev``), and a word it leaves at the head is then never one it still needs
        # from ``prev`` (its last beat from ``prev`` alone goes out in that same clock).
        with m.If(self.beats.valid & rot_free):
            m.d.sync += prev.eq(self.beats.payload.data)
        with m.If(rot_free):
            m.d.sync += [
                rot_valid.eq(emit),
                rot_lo.eq(emit_lo),
                rot_hi.eq(emit_hi),
                rot_shift.eq(emit_shift),
                rot_strb.eq(emit_strb),
            ]

        # --- Rotate -------------------------------------------------------------------------------
        push_beat = Signal(DmaWriteBeat(data_bits))
        m.d.comb += [
            push_beat.data.eq(Cat(rot_lo, rot_hi).bit_select(rot_shift * 8, data_bits)),
            push_beat.strb.eq(rot_strb),
        ]
        push = Signal()
        m.d.comb += push.eq(rot_valid & room)
        wtake = Signal()
        m.d.comb += wtake.eq(wdata.valid & wdata.ready)
        with m.If(~wdata.valid | wtake):
            # The output register is free: from the skid buffer first, else from the rotator.
            m.d.sync += [
                wdata.valid.eq(skid_valid | push),
                wdata.payload.eq(Mux(skid_valid, skid, push_beat)),
                skid_valid.eq(0),
            ]
        with m.Elif(push):
            m.d.sync += skid_valid.eq(1)
        with m.If(~skid_valid):
            m.d.sync += skid.eq(push_beat)

        # --- Completions and events ---------------------------------------------------------------
        done = self.dma.done
        m.d.comb += [
            completions.w_data.eq(done.payload.error),
            completions.w_en.eq(done.valid),
            done.ready.eq(completions.w_rdy),
        ]
        head = data.View(_Record, flight.r_data)
        failed = Signal()
        ready = Signal()                    # the head record has all it needs
        ev_free = Signal()
        pf_free = Signal()
        retire = Signal()
        m.d.comb += [
            failed.eq(head.write & completions.r_data),
            ready.eq(flight.r_rdy & (~head.write | completions.r_rdy)),
            ev_free.eq(~self.events.valid | self.events.ready),
            pf_free.eq(~self.place_failed.valid | self.place_failed.ready),
            retire.eq(ready & Mux(head.post, ev_free, ~failed | pf_free)),
            flight.r_en.eq(retire),
            completions.r_en.eq(retire & head.write),
        ]
        event = self.events.payload
        with m.If(ev_free):
            m.d.sync += [
                self.events.valid.eq(ready & head.post),
                event.kind.eq(head.kind),
                event.ring.eq(head.ring),
                event.index.eq(head.index),
                event.length.eq(head.length),
                event.code.eq(Mux(failed, EventCode.DMA_ERROR.value, head.code)),
                event.tag.eq(head.tag),
                event.detail.eq(Mux(failed | head.keep_detail, head.detail, 0)),
            ]
        with m.If(pf_free):
            m.d.sync += [
                self.place_failed.valid.eq(ready & ~head.post & failed),
                self.place_failed.payload.eq(head.detail[:16]),
            ]
        m.d.sync += [
            self.count.eq(0),
            self.count.rx_to_host.eq(retire & head.slow & ~failed),
            self.count.rx_drop_dma_error.eq(retire & (head.slow | head.frame_data) & failed),
            self.count.rx_drop_too_small.eq(retire & head.too_small),
            self.frame_data.eq(retire & head.frame_data & ~failed),
        ]
        return m


class _Slot:
    """One job with data between its take and its last beat: what the request and beat stages
    need, all computed at the take."""

    def __init__(self, data_bits, name):
        beat_bytes = data_bits // 8
        summary_beats = RX_SUMMARY_BYTES // beat_bytes
        self.valid = Signal(name=f"{name}_valid")
        self.decided = Signal(name=f"{name}_decided")           # request issued (or none needed)
                                                                # and not yet sent
        self.too_small = Signal(name=f"{name}_too_small")       # a fill that does not fit
        self.drain = Signal(name=f"{name}_drain")               # words dropped, not sent
        self.addr = Signal(params.DMA_ADDR_WIDTH, name=f"{name}_addr")
        self.beats = Signal(params.DMA_REQUEST_BEATS_BITS, name=f"{name}_beats")
        self.summary = Signal(RxSummary, name=f"{name}_summary")
        self.in_summary = Signal(name=f"{name}_in_summary")     # summary beats still to send
        self.summary_index = Signal(range(summary_beats + 1), name=f"{name}_summary_index")
        self.words_left = Signal(12, name=f"{name}_words_left")
        self.last_word = Signal(name=f"{name}_last_word")       # words_left == 1
        self.words_done = Signal(name=f"{name}_words_done")     # words_left == 0
        self.beats_left = Signal(params.DMA_REQUEST_BEATS_BITS, name=f"{name}_beats_left")
        self.last_beat = Signal(name=f"{name}_last_beat")       # beats_left == 1
        self.beats_done = Signal(name=f"{name}_beats_done")     # beats_left == 0 (or none)
        self.first = Signal(name=f"{name}_first")               # no beat sent yet
        self.fresh = Signal(name=f"{name}_fresh")               # taken in the clock before
        self.direct = Signal(name=f"{name}_direct")             # words pass straight (shift 0)
        self.absorb = Signal(name=f"{name}_absorb")             # next word: into ``prev`` only
        self.rotate = Signal(exact_log2(beat_bytes), name=f"{name}_rotate")
        self.first_strb = Signal(beat_bytes, name=f"{name}_first_strb")
        self.last_strb = Signal(beat_bytes, name=f"{name}_last_strb")
        self.free = Signal(name=f"{name}_free")                 # free the frame's slot ...
        self.frame_slot = Signal(6, name=f"{name}_frame_slot")  # ... after its last word
