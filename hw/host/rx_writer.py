"""Slow-path RX writer: each frame of the receive packet buffer into the next posted host buffer.

Ref: docs/host_interface.md ("Slow-path receive", events, the accounting identity).

A filled RX buffer holds the frame's :class:`~hw.layouts.RxSummary` (32 bytes) and, from byte 32,
the frame. Buffers are aligned to the DMA beat: the bits of ``RxDescriptor.addr`` below the beat
(3:0 at 128 bits) are ignored, the summary starts at the address with them cleared. A frame whose
buffer is too small (``size < 32 + length``) is not written. Then comes the ``RX`` event.

The writer is a pipeline of three stages, each a set of registers, so that one DMA beat leaves
every clock and a frame's write is asked for while the frame before it is still being sent:

::

    descriptors ─┐                       ┌─► dma.req (one request per frame)
    frame ───────┴─► [T: taken] ─────────┼─► [D: data] ─► [skid] ─► dma.data
                                         └─► in-flight FIFO ─┬─► [event] ─► events, count
                                 dma.done ─► completion FIFO ┘

- **T (taken).** A descriptor is taken together with the frame at the head of ``frame`` (the
  frame waits for a descriptor; a fetch-error entry is taken on its own, at once). ``consume`` is
  pulsed in the same clock: see below. The buffer size is checked as the two are taken. A frame
  that fits has its write request (summary beats + frame words) issued from T, as soon as the
  request register is free, so the next frame's request goes out while this one's data streams.
- **D (data).** T hands its frame to D when D sends its last beat (no idle clock between frames)
  and, at the same time, queues the frame's event record in the in-flight FIFO. D sends the
  summary beats, then the frame's words from ``beats``, one beat per clock, the last beat's
  ``strb`` covering exactly the frame's last bytes (nothing past 32 + length is written); for a
  frame that does not fit, D takes its words from ``beats`` and drops them.
- **Events.** The write completions come back in request order and are taken as they come (into a
  FIFO as deep as the in-flight FIFO, so ``dma.done.ready`` is never low). The record at the head
  of the in-flight FIFO becomes its event once its completion (for a write) is there: ``RX`` with
  ``OK`` (``rx_to_host``) or ``DMA_ERROR`` (``rx_drop_dma_error``, detail = the buffer address
  bits 30:0, its ignored low bits 0), ``RX`` with ``BUFFER_TOO_SMALL`` (``rx_drop_too_small``), or
  ``ERROR``/``DMA_ERROR`` for a fetch-error entry (detail = the entry's address bits 30:0). So the
  events are in descriptor order, and a frame's event goes out only after the host acknowledged
  all of its write: a host that sees the event sees the data. The counter pulse comes with the
  event (the clock its ``events.valid`` rises): until then the frame is inside the NIC.

``consume`` is pulsed as the frame and its descriptor are taken: the packet buffer's ``reserved``
(admitted frames not consumed) then falls in the same clock as ``posted`` (buffers posted and not
taken, from the RX ring fetcher, which moves its index as the writer takes an entry), so
``reserved`` counts exactly the admitted frames that still need a buffer, and a frame is refused
for want of a buffer only when every posted buffer is promised. The frame's words stay in the
packet buffer until D reads them (they follow the words of the frames taken before it).
"""

from amaranth import Cat, Const, Module, Mux, Signal
from amaranth.lib import data, enum, stream, wiring
from amaranth.lib.fifo import SyncFIFO, SyncFIFOBuffered
from amaranth.lib.wiring import In, Out
from amaranth.utils import exact_log2

from .. import params
from ..layouts import (
    Event,
    EventCode,
    EventKind,
    HostCounterPulses,
    RingEntry,
    RingId,
    RxDescriptor,
    RxSummary,
)
from .dma import DmaWriteBeat, DmaWriteSignature
from .rx_buffer import RxStagedFrame

__all__ = ["RxWriter", "RX_SUMMARY_BYTES"]

#: Bytes of the summary in front of the frame in each RX buffer; the frame starts at this offset.
RX_SUMMARY_BYTES = data.Layout.cast(RxSummary).size // 8


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
        Frames (and fetch errors) between their hand-over to D and their event: bounds the writes
        waiting for completion. At least 2.

    Members
    -------
    frame : In(stream.Signature(RxStagedFrame))
        From the packet buffer: the next admitted frame. ``ready`` is ``consume``.
    beats : In(stream.Signature(data_bits))
        From the packet buffer: the frames' words, in order.
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
        if data_bits not in (64, 128, 256):
            raise ValueError(f"data_bits must be 64, 128 or 256, not {data_bits}")
        if max_in_flight < 2:
            raise ValueError(f"max_in_flight must be at least 2, not {max_in_flight}")
        self._data_bits = data_bits
        self._max_in_flight = max_in_flight
        super().__init__({
            "frame": In(stream.Signature(RxStagedFrame)),
            "beats": In(stream.Signature(data_bits)),
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

        m.submodules.flight = flight = SyncFIFOBuffered(
            width=_Record.size, depth=self._max_in_flight)
        m.submodules.completions = completions = SyncFIFO(width=1, depth=self._max_in_flight)

        # --- T: a descriptor taken, with its frame ---------------------------------------------
        entry = self.descriptors.payload
        desc = data.View(RxDescriptor, entry.entry)
        frame = self.frame.payload
        length = frame.summary.length

        t_valid = Signal()
        t_error = Signal()              # a fetch-error entry, no frame
        t_index = Signal.like(entry.index)
        t_detail = Signal(31)
        t_addr = Signal(params.DMA_ADDR_WIDTH)
        t_too_small = Signal()
        t_requested = Signal()          # its write request has been issued
        t_summary = Signal(RxSummary)
        t_words = Signal.like(frame.words)
        t_one_word = Signal()
        t_beats = Signal.like(self.dma.req.payload.beats)
        t_strb = Signal(beat_bytes)     # strobes of the frame's last word

        t_load = Signal()
        t_advance = Signal()            # T hands its contents over (to D and the in-flight FIFO)
        m.d.comb += [
            t_load.eq((~t_valid | t_advance) & self.descriptors.valid
                      & (entry.error | self.frame.valid)),
            self.descriptors.ready.eq(t_load),
            self.consume.eq(t_load & ~entry.error),
            self.frame.ready.eq(self.consume),
        ]
        # Bytes of the last word: length mod the beat, a whole beat if that is 0 (none for an
        # empty frame, whose one word is sent with no strobe).
        last_strb = Signal(beat_bytes)
        with m.Switch(length[:shift]):
            with m.Case(0):
                m.d.comb += last_strb.eq(Mux(length[shift:] == 0, 0, all_bytes))
            for n in range(1, beat_bytes):
                with m.Case(n):
                    m.d.comb += last_strb.eq((1 << n) - 1)
        buffer_addr = Cat(Const(0, shift), desc.addr[shift:])
        need = Signal(range(RX_SUMMARY_BYTES + (1 << len(length))))
        m.d.comb += need.eq(length + RX_SUMMARY_BYTES)
        with m.If(t_load):
            m.d.sync += [
                t_valid.eq(1),
                t_error.eq(entry.error),
                t_index.eq(entry.index),
                t_detail.eq(Mux(entry.error, entry.addr[:31], buffer_addr[:31])),
                t_addr.eq(buffer_addr),
                t_too_small.eq(desc.size < need),
                t_requested.eq(0),
                t_summary.eq(frame.summary),
                t_words.eq(frame.words),
                t_one_word.eq(frame.words == 1),
                t_beats.eq(frame.words + summary_beats),
                t_strb.eq(last_strb),
            ]
        with m.Elif(t_advance):
            m.d.sync += t_valid.eq(0)

        # The write request, from T: as soon as the request register is free.
        req = self.dma.req
        issue = Signal()
        m.d.comb += issue.eq(t_valid & ~t_error & ~t_too_small & ~t_requested
                             & (~req.valid | req.ready))
        with m.If(req.valid & req.ready):
            m.d.sync += req.valid.eq(0)
        with m.If(issue):
            m.d.sync += [
                req.valid.eq(1),
                req.payload.addr.eq(t_addr),
                req.payload.beats.eq(t_beats),
                t_requested.eq(1),
            ]

        # --- D: the data of one frame ----------------------------------------------------------
        d_valid = Signal()
        d_drain = Signal()              # too small: the words are read and dropped
        d_summary = Signal(8 * RX_SUMMARY_BYTES)
        d_summary_left = Signal(range(summary_beats + 1))
        d_words_left = Signal.like(t_words)
        d_last_word = Signal()          # d_words_left == 1
        d_strb = Signal(beat_bytes)

        # The output skid buffer: ``dma.data`` is a register, and D sees only ``room`` (a register),
        # not the manager's ready.
        wdata = self.dma.data
        skid_valid = Signal()
        skid = Signal(DmaWriteBeat(data_bits))
        room = Signal()
        push = Signal()
        push_beat = Signal(DmaWriteBeat(data_bits))
        m.d.comb += room.eq(~skid_valid)

        word_move = Signal()            # a word leaves ``beats`` (into the skid or dropped)
        d_done = Signal()               # D's last beat moves this clock
        with m.If(d_valid):
            with m.If(d_summary_left != 0):
                m.d.comb += [
                    push.eq(room),
                    push_beat.data.eq(d_summary[:data_bits]),
                    push_beat.strb.eq(all_bytes),
                ]
                with m.If(room):
                    m.d.sync += [
                        d_summary.eq(d_summary >> data_bits),
                        d_summary_left.eq(d_summary_left - 1),
                    ]
            with m.Else():
                m.d.comb += [
                    self.beats.ready.eq(d_drain | room),
                    word_move.eq(self.beats.valid & self.beats.ready),
                    push.eq(self.beats.valid & room & ~d_drain),
                    push_beat.data.eq(self.beats.payload),
                    push_beat.strb.eq(Mux(d_last_word, d_strb, all_bytes)),
                ]
        m.d.comb += d_done.eq(word_move & d_last_word)
        with m.If(word_move):
            m.d.sync += [
                d_words_left.eq(d_words_left - 1),
                d_last_word.eq(d_words_left == 2),
            ]

        m.d.comb += t_advance.eq(t_valid & flight.w_rdy & (
            t_error | ((~d_valid | d_done) & (t_too_small | t_requested))))
        with m.If(t_advance & ~t_error):
            m.d.sync += [
                d_valid.eq(1),
                d_drain.eq(t_too_small),
                d_summary.eq(t_summary),
                d_summary_left.eq(Mux(t_too_small, 0, summary_beats)),
                d_words_left.eq(t_words),
                d_last_word.eq(t_one_word),
                d_strb.eq(t_strb),
            ]
        with m.Elif(d_done):
            m.d.sync += d_valid.eq(0)

        wtake = Signal()
        m.d.comb += wtake.eq(wdata.valid & wdata.ready)
        with m.If(~wdata.valid | wtake):
            # The output register is free: from the skid buffer first, else from D.
            m.d.sync += [
                wdata.valid.eq(skid_valid | push),
                wdata.payload.eq(Mux(skid_valid, skid, push_beat)),
                skid_valid.eq(0),
            ]
        with m.Elif(push):
            m.d.sync += [skid_valid.eq(1), skid.eq(push_beat)]

        # --- In-flight records and completions -------------------------------------------------
        record_in = data.View(_Record, flight.w_data)
        m.d.comb += [
            record_in.kind.eq(Mux(t_error, _Kind.FETCH_ERROR,
                                  Mux(t_too_small, _Kind.TOO_SMALL, _Kind.WRITE))),
            record_in.index.eq(t_index),
            record_in.length.eq(Mux(t_error, 0, t_summary.length)),
            record_in.hash.eq(Mux(t_error, 0, t_summary.hash)),
            record_in.detail.eq(t_detail),
            flight.w_en.eq(t_advance),
        ]
        done = self.dma.done
        m.d.comb += [
            completions.w_data.eq(done.payload.error),
            completions.w_en.eq(done.valid),
            done.ready.eq(completions.w_rdy),
        ]

        # --- Events ----------------------------------------------------------------------------
        head = data.View(_Record, flight.r_data)
        is_write = Signal()
        failed = Signal()
        emit = Signal()
        m.d.comb += [
            is_write.eq(head.kind == _Kind.WRITE),
            failed.eq(completions.r_data),
            emit.eq(flight.r_rdy & (~self.events.valid | self.events.ready)
                    & (~is_write | completions.r_rdy)),
            flight.r_en.eq(emit),
            completions.r_en.eq(emit & is_write),
        ]
        event = self.events.payload
        with m.If(self.events.valid & self.events.ready):
            m.d.sync += self.events.valid.eq(0)
        m.d.sync += self.count.eq(0)
        with m.If(emit):
            m.d.sync += [
                self.events.valid.eq(1),
                event.kind.eq(Mux(head.kind == _Kind.FETCH_ERROR,
                                  EventKind.ERROR.value, EventKind.RX.value)),
                event.ring.eq(RingId.RX.value),
                event.index.eq(head.index),
                event.length.eq(head.length),
                event.tag.eq(head.hash),
                event.detail.eq(0),
            ]
            with m.Switch(head.kind):
                with m.Case(_Kind.WRITE):
                    m.d.sync += [
                        event.code.eq(Mux(failed, EventCode.DMA_ERROR.value, EventCode.OK.value)),
                        self.count.rx_to_host.eq(~failed),
                        self.count.rx_drop_dma_error.eq(failed),
                    ]
                    with m.If(failed):
                        m.d.sync += event.detail.eq(head.detail)
                with m.Case(_Kind.TOO_SMALL):
                    m.d.sync += [
                        event.code.eq(EventCode.BUFFER_TOO_SMALL.value),
                        self.count.rx_drop_too_small.eq(1),
                    ]
                with m.Default():
                    m.d.sync += [
                        event.code.eq(EventCode.DMA_ERROR.value),
                        event.detail.eq(head.detail),
                    ]
        return m
