"""Slow-path RX writer: each frame of the receive packet buffer into the next posted host buffer.

Ref: docs/host_interface.md ("Slow-path receive", events, the accounting identity).

A filled RX buffer holds the frame's :class:`~hw.layouts.RxSummary` (32 bytes) and, from byte 32,
the frame. Buffers are aligned to the DMA beat: the bits of ``RxDescriptor.addr`` below the beat
(3:0 at 128 bits) are ignored, the summary starts at the address with them cleared. A frame whose
buffer is too small (``size < 32 + length``) is not written. Then comes the ``RX`` event.

The writer is a pipeline. A frame and its descriptor go into one of two *slots*, which a request
stage and a data stage then visit in turn, so that one DMA beat leaves every clock and a frame's
write request goes out while the frame before it is still being sent:

::

    descriptors ─┬─► slot A ─┐ ┌─► [request] ─► dma.req (one request per frame)
    frame ───────┤   slot B ─┴─┴─► [data] ─► [skid] ─► dma.data
                 └─► in-flight FIFO ─┬─► [event] ─► events, count
               dma.done ─► completions ┘

- **Take.** A descriptor is taken together with the frame at the head of ``frame`` into the next
  slot when it is free (the frame waits for a descriptor; a fetch-error entry is taken on its own,
  at once, and takes no slot). ``consume`` is pulsed in the same clock: see below. The buffer size
  is checked as the two are taken, and the entry's event record is queued in the in-flight FIFO.
- **Request.** For each slot in turn, a frame that fits gets its write request (summary beats +
  frame words; the summary alone for an empty frame) as soon as the request register is free.
- **Data.** For each slot in turn, once its request is out (or it does not fit): the summary
  beats, then the frame's words from ``beats``, one beat per clock, the last beat's ``strb``
  covering exactly the frame's last bytes (nothing past 32 + length is written); for a frame that
  does not fit, its words are taken from ``beats`` and dropped. The next slot follows in the next
  clock: no idle clock between frames.
- **Events.** The write completions come back in request order and are taken as they come (into a
  FIFO as deep as the in-flight FIFO, so ``dma.done.ready`` is never low). The record at the head
  of the in-flight FIFO becomes its event once its completion (for a write) is there: ``RX`` with
  ``OK`` (``rx_to_host``) or ``DMA_ERROR`` (``rx_drop_dma_error``, detail = the buffer address
  bits 30:0, its ignored low bits 0), ``RX`` with ``BUFFER_TOO_SMALL`` (``rx_drop_too_small``), or
  ``ERROR``/``DMA_ERROR`` for a fetch-error entry (detail = the entry's address bits 30:0). So the
  events are in descriptor order, and a frame's event goes out only after the host acknowledged
  all of its write: a host that sees the event sees the data. The counter pulse comes with the
  event (the clock its ``events.valid`` rises): until then the frame is inside the NIC.

Timing: every wide register (a slot's contents, the request, the output and skid beats, the event)
is loaded under an enable that comes straight from flip-flops: a free slot samples its inputs
every clock and keeps them once taken; the output registers load whenever they are free.

``consume`` is pulsed as the frame and its descriptor are taken: the packet buffer's ``reserved``
(admitted frames not consumed) then falls in the same clock as ``posted`` (buffers posted and not
taken, from the RX ring fetcher, which moves its index as the writer takes an entry), so
``reserved`` counts exactly the admitted frames that still need a buffer, and a frame is refused
for want of a buffer only when every posted buffer is promised. The frame's words stay in the
packet buffer until the data stage reads them (they follow the words of the frames taken before
it).
"""

from amaranth import Cat, Const, Module, Mux, Signal
from amaranth.lib import data, enum, stream, wiring
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
    RxStagedFrame,
    RxSummary,
)
from ..lib.packet_store import StoreRead, StoreWord
from .dma import DmaWriteBeat, DmaWriteSignature, check_data_bits
from .rx_buffer import RxPacketBuffer

__all__ = ["RxWriter", "RX_SUMMARY_BYTES"]

#: Bytes of the summary in front of the frame in each RX buffer; the frame starts at this offset.


class _Kind(enum.Enum, shape=2):
    """What an in-flight record will become."""
    WRITE = 0           # RX OK / DMA_ERROR, once its write completed
    TOO_SMALL = 1       # RX BUFFER_TOO_SMALL
    FETCH_ERROR = 2     # ERROR DMA_ERROR


_Record = data.StructLayout({
    "kind": _Kind,
    "index": params.RING_LOG2_SIZE_MAX,
    "length": 16,
    "hash": 32,
    "detail": 31,
})


class RxWriter(wiring.Component):
    """Parameters
    ----------
    data_bits : int
        DMA bus width: 64, 128 or 256.
    max_in_flight : int
        Entries (frames and fetch errors) between their take and their event: bounds the writes
        waiting for completion. At least 2.

    Members
    -------
    frame : In(stream.Signature(RxStagedFrame))
        From the packet buffer: the next admitted frame. ``ready`` is ``consume``.
    read : Out(stream.Signature(StoreRead(words)))
        To the packet buffer (of ``words`` DMA words): read each frame's words, in take order.
    beats : In(stream.Signature(StoreWord(data_bits)))
        From the packet buffer: the words asked for, in order.
    free : Out(stream.Signature(6))
        To the packet buffer: the slot of a frame whose words have all been read.
    consume : Out(1)
        To the packet buffer: one pulse per frame, as it is taken with its descriptor.
    descriptors : In(stream.Signature(RingEntry))
        From the RX ring fetcher: ``RxDescriptor`` entries in ring order; ``error``: the fetch
        failed (an ``ERROR`` event, the entry skipped).
    dma : Out(DmaWriteSignature(data_bits))
        Write client of the DMA manager: one request per frame written.
    events : Out(stream.Signature(Event))
        ``RX`` and ``ERROR`` events (ring RX, ``phase`` 0: the event writer sets it), in
        descriptor order.
    count : Out(HostCounterPulses)
        ``rx_to_host``, ``rx_drop_too_small``, ``rx_drop_dma_error``; the other bits are 0.
    """

    def __init__(self, *, data_bits=params.DMA_DATA_BITS, max_in_flight=params.DMA_MAX_WRITES):
        check_data_bits(data_bits)
        if max_in_flight < 2:
            raise ValueError(f"max_in_flight must be at least 2, not {max_in_flight}")
        self._data_bits = data_bits
        self._max_in_flight = max_in_flight
        super().__init__({
            "frame": In(stream.Signature(RxStagedFrame)),
            "read": Out(stream.Signature(StoreRead(RxPacketBuffer.depth_words_for(data_bits)))),
            "beats": In(stream.Signature(StoreWord(data_bits))),
            "free": Out(stream.Signature(6)),
            "consume": Out(1),
            "descriptors": In(stream.Signature(RingEntry)),
            "dma": Out(DmaWriteSignature(data_bits)),
            "events": Out(stream.Signature(Event)),
            "count": Out(HostCounterPulses),
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

        m.submodules.flight = flight = SyncFIFO(width=_Record.size, depth=self._max_in_flight)
        m.submodules.completions = completions = SyncFIFO(width=1, depth=self._max_in_flight)

        # --- Take ------------------------------------------------------------------------------
        entry = self.descriptors.payload
        desc = data.View(RxDescriptor, entry.entry)
        frame = self.frame.payload
        length = frame.summary.length

        need = Signal(range(RX_SUMMARY_BYTES + (1 << len(length))))
        too_small = Signal()
        empty = Signal()
        last_strb = Signal(beat_bytes)      # bytes of the last word: length mod the beat, or all
        buffer_addr = Signal(params.DMA_ADDR_WIDTH)
        m.d.comb += [
            need.eq(length + RX_SUMMARY_BYTES),
            too_small.eq(desc.size < need),
            empty.eq(length == 0),
            buffer_addr.eq(Cat(Const(0, shift), desc.addr[shift:])),
        ]
        with m.Switch(length[:shift]):
            with m.Case(0):
                m.d.comb += last_strb.eq(all_bytes)
            for n in range(1, beat_bytes):
                with m.Case(n):
                    m.d.comb += last_strb.eq((1 << n) - 1)

        slots = [_Slot(data_bits, f"slot{i}") for i in range(2)]
        take_ptr = Signal()                 # the slot the next frame goes into
        req_ptr = Signal()                  # the slot the request stage looks at
        cur = Signal()                      # the slot the data stage sends
        take = Signal()
        take_free = Signal()
        head_asked = Signal()               # the head frame's words are asked for (below)
        m.d.comb += [
            take_free.eq(~Mux(take_ptr, slots[1].valid, slots[0].valid)),
            take.eq(self.descriptors.valid & flight.w_rdy
                    & (entry.error | (self.frame.valid & take_free & head_asked))),
            self.descriptors.ready.eq(take),
            self.consume.eq(take & ~entry.error),
            self.frame.ready.eq(self.consume),
        ]
        with m.If(take & ~entry.error):
            m.d.sync += take_ptr.eq(~take_ptr)
        # Each frame asks the packet buffer for its words as soon as it is the head of ``frame``,
        # before it is taken (frames are taken in order, so the words come back in take order):
        # they are on their way while the frame waits for a descriptor or a slot, and its
        # summary beats never wait for them. At most two frames (the slots) and the head are
        # between their request and their last word, so the request FIFO never fills.
        read_layout = StoreRead(RxPacketBuffer.depth_words_for(data_bits))
        m.submodules.reads = reads = SyncFIFO(width=read_layout.size, depth=4)
        read_in = data.View(read_layout, reads.w_data)
        head_requested = Signal()
        ask = Signal()
        m.d.comb += [
            ask.eq(self.frame.valid & ~head_requested),
            head_asked.eq(head_requested | ask),
        ]
        with m.If(take & ~entry.error):
            m.d.sync += head_requested.eq(0)
        with m.Elif(ask):
            m.d.sync += head_requested.eq(1)
        m.d.comb += [
            read_in.addr.eq(frame.start),
            read_in.words.eq(frame.words),
            reads.w_en.eq(ask),
            self.read.payload.eq(reads.r_data),
            self.read.valid.eq(reads.r_rdy),
            reads.r_en.eq(self.read.ready),
        ]
        for i, slot in enumerate(slots):
            # A free slot samples the head frame every clock and keeps it once taken.
            with m.If(~slot.valid):
                m.d.sync += [
                    slot.valid.eq(take & ~entry.error & (take_ptr == i)),
                    slot.decided.eq(0),
                    slot.too_small.eq(too_small),
                    slot.drain.eq(too_small | empty),
                    slot.addr.eq(buffer_addr),
                    slot.beats.eq(Mux(empty, summary_beats, frame.words + summary_beats)),
                    slot.summary.eq(frame.summary),
                    slot.in_summary.eq(~too_small),
                    slot.summary_index.eq(0),
                    slot.words_left.eq(frame.words),
                    slot.frame_slot.eq(frame.slot),
                    slot.last_word.eq(frame.words == 1),
                    slot.strb.eq(last_strb),
                ]

        record_in = data.View(_Record, flight.w_data)
        m.d.comb += [
            record_in.kind.eq(Mux(entry.error, _Kind.FETCH_ERROR,
                                  Mux(too_small, _Kind.TOO_SMALL, _Kind.WRITE))),
            record_in.index.eq(entry.index),
            record_in.length.eq(Mux(entry.error, 0, length)),
            record_in.hash.eq(Mux(entry.error, 0, frame.summary.hash)),
            record_in.detail.eq(Mux(entry.error, entry.addr[:31], buffer_addr[:31])),
            flight.w_en.eq(take),
        ]

        # --- Request ---------------------------------------------------------------------------
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
        with m.If(undecided & (req_free | req_slot_too_small)):
            m.d.sync += req_ptr.eq(~req_ptr)
            for i, slot in enumerate(slots):
                with m.If(req_ptr == i):
                    m.d.sync += slot.decided.eq(1)

        # --- Data ------------------------------------------------------------------------------
        m.d.sync += self.free.valid.eq(0)           # one pulse per frame (below)
        # The output skid buffer: ``dma.data`` is a register, and the data stage sees only
        # ``room`` (a register), not the manager's ready.
        wdata = self.dma.data
        skid_valid = Signal()
        skid = Signal(DmaWriteBeat(data_bits))
        room = Signal()
        push = Signal()
        push_beat = Signal(DmaWriteBeat(data_bits))
        m.d.comb += room.eq(~skid_valid)

        # Each slot's step is computed from its own flags only (``decided`` implies ``valid``),
        # so that a slot's counters do not wait on the other slot's state.
        for i, slot in enumerate(slots):
            sel = Signal(name=f"slot{i}_sending")           # the data stage is on this slot
            header = Signal(name=f"slot{i}_header_beat")    # a summary beat goes out
            words = Signal(name=f"slot{i}_on_words")        # its words are next on ``beats``
            move = Signal(name=f"slot{i}_word_move")        # a word leaves ``beats``
            # A frame's first summary beat waits for its first word on ``beats``: then its
            # beats leave back to back (a frame that arrives alone would otherwise wait for its
            # words between its summary and its data; frames behind others find theirs there).
            started = Signal(name=f"slot{i}_started")
            m.d.comb += [
                sel.eq((cur == i) & slot.decided),
                started.eq((slot.summary_index != 0) | self.beats.valid),
                header.eq(sel & slot.in_summary & room & started),
                words.eq(sel & ~slot.in_summary),
                move.eq(words & self.beats.valid & (slot.drain | room)),
            ]
            with m.If(sel):
                with m.If(slot.in_summary):
                    m.d.comb += push.eq(room & started)
                    with m.Switch(slot.summary_index):
                        for k in range(summary_beats):
                            with m.Case(k):
                                m.d.comb += push_beat.data.eq(
                                    slot.summary.as_value()[k * data_bits:(k + 1) * data_bits])
                    m.d.comb += push_beat.strb.eq(all_bytes)
                with m.Else():
                    m.d.comb += [
                        self.beats.ready.eq(slot.drain | room),
                        push.eq(self.beats.valid & room & ~slot.drain),
                        push_beat.data.eq(self.beats.payload.data),
                        push_beat.strb.eq(Mux(slot.last_word, slot.strb, all_bytes)),
                    ]
            with m.If(header):
                m.d.sync += [
                    slot.summary_index.eq(slot.summary_index + 1),
                    slot.in_summary.eq(slot.summary_index != summary_beats - 1),
                ]
            with m.If(move):
                m.d.sync += [
                    slot.words_left.eq(slot.words_left - 1),
                    slot.last_word.eq(slot.words_left == 2),
                ]
                with m.If(slot.last_word):
                    m.d.sync += [slot.valid.eq(0), slot.decided.eq(0), cur.eq(~cur)]
                    m.d.sync += [self.free.valid.eq(1), self.free.payload.eq(slot.frame_slot)]

        wtake = Signal()
        m.d.comb += wtake.eq(wdata.valid & wdata.ready)
        with m.If(~wdata.valid | wtake):
            # The output register is free: from the skid buffer first, else from the data stage.
            m.d.sync += [
                wdata.valid.eq(skid_valid | push),
                wdata.payload.eq(Mux(skid_valid, skid, push_beat)),
                skid_valid.eq(0),
            ]
        with m.Elif(push):
            m.d.sync += skid_valid.eq(1)
        with m.If(~skid_valid):
            m.d.sync += skid.eq(push_beat)

        # --- Completions and events ------------------------------------------------------------
        done = self.dma.done
        m.d.comb += [
            completions.w_data.eq(done.payload.error),
            completions.w_en.eq(done.valid),
            done.ready.eq(completions.w_rdy),
        ]
        head = data.View(_Record, flight.r_data)
        is_write = Signal()
        failed = Signal()
        ready_to_emit = Signal()            # the head record has all it needs
        ev_free = Signal()
        m.d.comb += [
            is_write.eq(head.kind == _Kind.WRITE),
            failed.eq(is_write & completions.r_data),
            ready_to_emit.eq(flight.r_rdy & (~is_write | completions.r_rdy)),
            ev_free.eq(~self.events.valid | self.events.ready),
            flight.r_en.eq(ready_to_emit & ev_free),
            completions.r_en.eq(ready_to_emit & ev_free & is_write),
        ]
        event = self.events.payload
        with m.If(ev_free):
            m.d.sync += [
                self.events.valid.eq(ready_to_emit),
                event.kind.eq(Mux(head.kind == _Kind.FETCH_ERROR,
                                  EventKind.ERROR.value, EventKind.RX.value)),
                event.ring.eq(RingId.RX.value),
                event.index.eq(head.index),
                event.length.eq(head.length),
                event.tag.eq(head.hash),
                event.detail.eq(Mux(failed | (head.kind == _Kind.FETCH_ERROR), head.detail, 0)),
            ]
            with m.Switch(head.kind):
                with m.Case(_Kind.WRITE):
                    m.d.sync += event.code.eq(
                        Mux(failed, EventCode.DMA_ERROR.value, EventCode.OK.value))
                with m.Case(_Kind.TOO_SMALL):
                    m.d.sync += event.code.eq(EventCode.BUFFER_TOO_SMALL.value)
                with m.Default():
                    m.d.sync += event.code.eq(EventCode.DMA_ERROR.value)
        emit = ready_to_emit & ev_free
        m.d.sync += [
            self.count.eq(0),
            self.count.rx_to_host.eq(emit & is_write & ~failed),
            self.count.rx_drop_dma_error.eq(emit & failed),
            self.count.rx_drop_too_small.eq(emit & (head.kind == _Kind.TOO_SMALL)),
        ]
        return m


class _Slot:
    """One frame between its take and its last beat: what the request and data stages need."""

    def __init__(self, data_bits, name):
        beat_bytes = data_bits // 8
        summary_beats = RX_SUMMARY_BYTES // beat_bytes
        self.valid = Signal(name=f"{name}_valid")
        self.decided = Signal(name=f"{name}_decided")           # request issued (or none needed)
                                                                # and not yet sent
        self.too_small = Signal(name=f"{name}_too_small")
        self.drain = Signal(name=f"{name}_drain")               # words dropped, not sent
        self.addr = Signal(params.DMA_ADDR_WIDTH, name=f"{name}_addr")
        self.beats = Signal(params.DMA_REQUEST_BEATS_BITS, name=f"{name}_beats")
        self.summary = Signal(RxSummary, name=f"{name}_summary")
        self.in_summary = Signal(name=f"{name}_in_summary")     # summary beats still to send
        self.summary_index = Signal(range(summary_beats + 1), name=f"{name}_summary_index")
        self.words_left = Signal(12, name=f"{name}_words_left")
        self.frame_slot = Signal(6, name=f"{name}_frame_slot")  # freed after its last word
        self.last_word = Signal(name=f"{name}_last_word")       # words_left == 1
        self.strb = Signal(beat_bytes, name=f"{name}_strb")     # of the last word
