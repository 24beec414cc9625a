"""Receive packet buffer: admits or drops each frame whole, and holds admitted frames for the DMA.

Ref: docs/host_interface.md (slow-path receive, the accounting identity).

A frame is admitted at its first beat only if the NIC is enabled, the RX ring runs, and a posted RX
buffer is left that no earlier admitted frame has claimed (``reserved < posted``); it is dropped
later if the packet buffer fills under it or it grows past ``MAX_FRAME_BYTES``. Its status word
comes from the sequencer after its last beat; the frame is offered (``frame``, to the dispatcher)
only then, as a :class:`~hw.layouts.RxStagedFrame`: its :class:`~hw.layouts.RxSummary`
(:func:`summarize`), its TCP fields (:func:`tcp_fields`) and its length in DMA words, its data
already committed in the packet FIFO (``beats``). Exactly one drop pulse or, later, one
``release`` (the RX writer took a buffer for it) ends every frame's claim here.

The data is stored at the DMA width: the 64-bit MAC beats of a frame are packed, beat 0 in bits
63:0, into ``data_bits`` words. Each frame starts a new word and its last word is zero-padded, so
a frame takes its length rounded up to the DMA word (at least one word, even when empty), and the
writer sends one full DMA beat per clock.
"""

from amaranth import Cat, Const, Module, Mux, Signal, Value
from amaranth.lib import data, stream, wiring
from amaranth.lib.fifo import SyncFIFO
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out
from amaranth.utils import exact_log2

from .. import params
from ..layouts import RxBeat, RxStagedFrame, RxStatus, RxSummary, RxTcpFields
from ..lib.packet_store import PacketStore, StoreRead, StoreWord
from .dma import check_data_bits

__all__ = ["RxPacketBuffer", "summarize", "tcp_fields"]

_MAX_FRAME_BEATS = -(-params.MAX_FRAME_BYTES // params.BEAT_BYTES)
# Frames whose last beat has passed but whose status word has not come out of the sequencer yet.
_PENDING_DEPTH = 16


def summarize(status):
    """The :class:`~hw.layouts.RxSummary` of an :class:`~hw.layouts.RxStatus` view: every field
    of the summary copied from the status field of the same name (``length`` keeps its low 16 bits:
    frames here are at most ``MAX_FRAME_BYTES``), ``reserved`` 0. Pure wiring, no logic."""
    status_layout = data.Layout.cast(RxStatus)
    parts = []
    for name, field in sorted(data.Layout.cast(RxSummary), key=lambda item: item[1].offset):
        width = field.width
        if name == "reserved":
            parts.append(Const(0, width))
            continue
        value = Value.cast(getattr(status, name))
        if len(value) != status_layout[name].width:
            raise AssertionError(name)
        value = value[:width]
        parts.append(Cat(value, Const(0, width - len(value))))
    return data.View(RxSummary, Cat(*parts))


def tcp_fields(status):
    """The :class:`~hw.layouts.RxTcpFields` of an :class:`~hw.layouts.RxStatus` view: the fields
    of the same names. Pure wiring."""
    fields = data.Layout.cast(RxTcpFields)
    return data.View(RxTcpFields, Cat(*(Value.cast(getattr(status, name))
                                        for name, _ in sorted(fields, key=lambda f: f[1].offset))))


class RxPacketBuffer(wiring.Component):
    """Parameters
    ----------
    data_bits : int
        DMA bus width (64, 128 or 256): the width of the words on ``beats``.

    Members
    -------
    i : In(stream.Signature(RxBeat))
        The sequencer's frame output. Ready every clock in practice.
    status : In(stream.Signature(RxStatus))
        The sequencer's status words, one per frame, each after its frame's last beat. Always ready.
    enable, running : In(1)
        NIC enabled; RX ring configured and not stopped. Sampled at each frame's first beat.
    posted : In(13)
        RX buffers posted by the host and not yet taken by the RX writer. Compared a clock ahead:
        a frame is admitted if ``posted``, in the clock before its first beat, exceeded the frames
        admitted before it and not taken by the writer then.
    release : In(1)
        A frame's claim on a posted buffer ends: the RX writer took a buffer for it (or, later,
        the fast path placed it). One pulse per frame taken from ``frame``, at or after its take.
    frame : Out(stream.Signature(RxStagedFrame))
        Summary, TCP fields and word count of the next admitted frame, from a register. Its words
        follow on ``beats`` those of the frames taken before it. After a take the next frame
        shows two clocks later.
    read : In(stream.Signature(StoreRead(depth_words)))
        Read a frame's words (``start``, ``words`` of its record, or a part of them), in any
        order, as long as its slot is not freed.
    beats : Out(stream.Signature(StoreWord(data_bits)))
        The words asked for, in request order (``last`` on each request's final word).
    free : In(stream.Signature(6))
        The frame in this slot is done with: its words and its slot are given back once every
        frame admitted before it is freed too. Always ready.
    release_fast, free_fast : In(1), In(stream.Signature(6))
        The same, from the receive engine (a frame the fast path took needs no RX buffer; a pure
        ACK's slot is free at once); they may come in the same clock as the RX writer's.
    drop_disabled, drop_no_buffer, drop_overflow, drop_oversize : Out(1)
        One pulse per dropped frame, by reason.
    short : Out(1)
        Fewer than a quarter of the buffer's words or frame slots are free, and a frame is in
        (registered). With ``oldest``: the receive engine flushes the connection whose queue holds
        the oldest frame (docs/fast_path.md, "Queues in the packet buffer").
    oldest : Out(6)
        The slot of the oldest frame whose space has not come back (a register).
    """

    def __init__(self, *, data_bits=params.DMA_DATA_BITS):
        check_data_bits(data_bits)
        self._data_bits = data_bits
        super().__init__({
            "i": In(stream.Signature(RxBeat)),
            "status": In(stream.Signature(RxStatus)),
            "enable": In(1),
            "running": In(1),
            "posted": In(13),
            "release": In(1),
            "frame": Out(stream.Signature(RxStagedFrame)),
            "read": In(stream.Signature(StoreRead(self.depth_words_for(data_bits)))),
            "beats": Out(stream.Signature(StoreWord(data_bits))),
            "free": In(stream.Signature(exact_log2(params.RX_PACKET_BUFFER_FRAMES))),
            "release_fast": In(1),
            "free_fast": In(stream.Signature(exact_log2(params.RX_PACKET_BUFFER_FRAMES))),
            "drop_disabled": Out(1),
            "drop_no_buffer": Out(1),
            "drop_overflow": Out(1),
            "drop_oversize": Out(1),
            "short": Out(1),
            "oldest": Out(exact_log2(params.RX_PACKET_BUFFER_FRAMES)),
        })

    @property
    def data_bits(self):
        return self._data_bits

    @property
    def depth_words(self):
        """Packet buffer size in DMA words."""
        return self.depth_words_for(self._data_bits)

    @staticmethod
    def depth_words_for(data_bits):
        """Packet buffer size in DMA words at ``data_bits``."""
        return params.RX_PACKET_BUFFER_BYTES * 8 // data_bits

    def elaborate(self, platform):
        m = Module()
        lanes = self._data_bits // 64          # MAC beats per DMA word
        lane_bits = max(1, exact_log2(lanes))

        m.submodules.fifo = fifo = PacketStore(width=self._data_bits, depth=self.depth_words)
        pending_record = data.StructLayout({"kept": 1, "words": 12, "start": 13})
        m.submodules.pending = pending = SyncFIFO(
            width=pending_record.size, depth=_PENDING_DEPTH)
        # The admitted frames' records, in block RAM (a queue of RX_PACKET_BUFFER_FRAMES).
        queue_depth = params.RX_PACKET_BUFFER_FRAMES
        frame_bits = data.Layout.cast(RxStagedFrame).size
        m.submodules.queue = queue = Memory(shape=frame_bits, depth=queue_depth, init=[],
                                            attrs={"no_rw_check": 1})
        queue_w = queue.write_port()
        queue_r = queue.read_port(domain="comb")
        wiring.connect(m, wiring.flipped(self.read), fifo.r_req)
        wiring.connect(m, wiring.flipped(self.beats), fifo.r)

        # Frames admitted and not yet consumed: each holds a claim on one posted buffer.
        reserved = Signal(range(params.RX_PACKET_BUFFER_FRAMES + 1))
        reserve = Signal()
        release = Signal()      # a claim ends: released by the writer or dropped mid-frame
        # (A fast-path release is not in ``release`` below, the claims' room looks at a clock
        # later: no buffer leaves ``posted`` with it, so the room is only late by a clock.)
        m.d.sync += reserved.eq(reserved + reserve - release - self.release_fast)

        beat = self.i.payload
        accept = Signal()
        m.d.comb += [
            self.i.ready.eq(pending.w_rdy),
            accept.eq(self.i.valid & self.i.ready),
        ]

        first = Signal(init=1)          # the next beat starts a frame
        keeping = Signal()              # the frame in progress is being stored
        beats_in = Signal(range(_MAX_FRAME_BEATS + 2))
        words_in = Signal(12)           # words of the frame in progress begun so far
        lane = Signal(lane_bits)        # lane of the next stored beat in its word
        frame_start = Signal(13)        # the store word of the frame in progress
        with m.If(accept):
            m.d.sync += first.eq(beat.last)
            with m.If(first):
                m.d.sync += frame_start.eq(fifo.w_addr)

        # Room for one more claim: reserved < min(posted, RX_PACKET_BUFFER_FRAMES), decided a clock
        # ahead (a register: the compare's carry chain is then off the admission path). It is
        # computed from ``posted`` and the claims as they stand after this clock's frame beat, but
        # before this clock's ``release``: a buffer the writer takes in this clock leaves
        # ``posted`` in the next, so it counts on neither side. (A buffer posted in this clock is
        # seen a clock later: never a claim without a buffer.)
        frames_bits = exact_log2(params.RX_PACKET_BUFFER_FRAMES)

        def below_posted(value, name):
            lt = Signal(name=name)
            m.d.comb += lt.eq(~value[frames_bits]
                              & ((self.posted[frames_bits:] != 0)
                                 | (value[:frames_bits] < self.posted[:frames_bits])))
            return lt

        claims_plus = Signal(frames_bits + 2)
        claims_minus = Signal(frames_bits + 2)
        m.d.comb += [claims_plus.eq(reserved + 1), claims_minus.eq(reserved - 1)]
        room_same = below_posted(reserved, "room_same")
        room_plus = below_posted(claims_plus, "room_plus")
        room_minus = below_posted(claims_minus, "room_minus")
        gave_back = Signal()                # a frame dropped mid-way returns its claim
        room = Signal()
        m.d.sync += room.eq(Mux(reserve & ~gave_back, room_plus,
                                Mux(gave_back & ~reserve, room_minus, room_same)))
        # Frame slots: a frame holds one from its admission until it is freed (or dropped
        # mid-way). ``slot_room`` (slots_held < RX_PACKET_BUFFER_FRAMES) is decided a clock
        # ahead, from the count this clock's admission, drop and free leave.
        slots_held = Signal(range(params.RX_PACKET_BUFFER_FRAMES + 1))
        slots_next = Signal(range(params.RX_PACKET_BUFFER_FRAMES + 2))
        slot_freed = Signal()
        slot_room = Signal(init=1)
        m.d.comb += slots_next.eq(slots_held + reserve - gave_back - slot_freed)
        m.d.sync += [
            slots_held.eq(slots_next),
            slot_room.eq(slots_next < params.RX_PACKET_BUFFER_FRAMES),
        ]
        admit = Signal()
        m.d.comb += admit.eq(self.enable & self.running & room & slot_room)
        # The beat goes into the FIFO if the frame is kept (or admitted by this very beat).
        storing = Signal()
        m.d.comb += storing.eq(accept & (keeping | (first & admit)))
        # A beat in lane 0 begins a word: it needs a free word of the packet FIFO. The words
        # before it (this frame's included) were written in earlier clocks, so ``w_free`` counts
        # them; from here until the word is written the free space can only grow. So only a beat
        # that begins a word can find ``w_free == 0``.
        word_start = Signal()
        m.d.comb += word_start.eq(lane == 0)
        overflow = Signal()
        too_long = Signal()
        beat_count = Signal.like(beats_in)
        word_count = Signal.like(words_in)
        m.d.comb += [
            beat_count.eq(Mux(first, 1, beats_in + 1)),
            word_count.eq(Mux(first, 1, words_in + word_start)),
            overflow.eq(storing & (fifo.w_free == 0)),
            # beat_count > _MAX_FRAME_BEATS, without the adder: a compare of a register.
            too_long.eq(storing & ~first & (beats_in >= _MAX_FRAME_BEATS)),
        ]
        with m.If(accept):
            m.d.sync += [beats_in.eq(beat_count), words_in.eq(word_count)]

        gave_up = Signal()
        m.d.comb += gave_up.eq(overflow | too_long)

        # Packing: the beats of a word wait in ``held``; the word is written with its last beat
        # (the lanes after a frame's last beat read 0).
        held = Signal(self._data_bits)
        word_end = Signal()
        m.d.comb += word_end.eq(beat.last | (lane == lanes - 1))
        word = []
        for k in range(lanes):
            slot = held[64 * k:64 * (k + 1)]
            word.append(Mux(lane == k, beat.data, Mux(lane > k, slot, 0)))
        stored = Signal()
        m.d.comb += stored.eq(storing & ~gave_up)
        # The slot of the next beat takes whatever is on ``i`` (its enable is the lane alone); it
        # belongs to the word only once a beat is stored there and the lane moves on.
        for k in range(lanes - 1):
            with m.If(lane == k):
                m.d.sync += held[64 * k:64 * (k + 1)].eq(beat.data)
        with m.If(stored):
            m.d.sync += lane.eq(Mux(word_end, 0, lane + 1))
        with m.If(accept & gave_up):
            # (Already 0: a drop comes at a word's first beat, MAX_FRAME_BEATS being whole words.)
            m.d.sync += lane.eq(0)

        m.d.comb += [
            fifo.w_data.eq(Cat(*word)),
            fifo.w_en.eq(stored & word_end),
            fifo.w_abort.eq(gave_up),
            fifo.w_commit.eq(stored & beat.last),
            reserve.eq(accept & first & admit),
        ]
        with m.If(accept):
            with m.If(first):
                m.d.sync += keeping.eq(admit & ~beat.last)
                with m.If(~admit):
                    m.d.comb += [
                        self.drop_disabled.eq(~self.enable),
                        self.drop_no_buffer.eq(self.enable),
                    ]
            with m.Elif(beat.last):
                m.d.sync += keeping.eq(0)
            with m.If(gave_up):
                m.d.sync += keeping.eq(0)
                m.d.comb += [
                    self.drop_overflow.eq(overflow),
                    self.drop_oversize.eq(~overflow),
                ]

        # One pending record per frame at its last beat: was it kept? Matched in order with the
        # status words.
        record_in = data.View(pending_record, pending.w_data)
        record_out = data.View(pending_record, pending.r_data)
        m.d.comb += [
            record_in.kept.eq(stored),
            record_in.words.eq(word_count),
            record_in.start.eq(Mux(first, fifo.w_addr, frame_start)),
            pending.w_en.eq(accept & beat.last),
        ]
        # The queue never fills: every record in it holds a frame slot until the frame is freed,
        # and there are RX_PACKET_BUFFER_FRAMES slots. So a status word is taken as soon as its
        # pending record is there; the record's place in the queue is the frame's slot. The
        # record is written a clock late, from registers (the write enable comes from the status
        # handshake and would otherwise drive the block RAM's enables), and read only once
        # written (``queue_filled``, the write pointer a clock late).
        queue_wr = Signal(range(2 * queue_depth))    # one more bit than the address: a full
        queue_rd = Signal(range(2 * queue_depth))    # queue is not an empty one
        queue_filled = Signal(range(2 * queue_depth))
        queue_write = Signal()
        frame_in = Signal(RxStagedFrame, reset_less=True)
        write_en = Signal()
        write_addr = Signal(range(queue_depth))
        m.d.comb += [
            self.status.ready.eq(pending.r_rdy),
            pending.r_en.eq(self.status.valid & self.status.ready),
            queue_write.eq(self.status.valid & self.status.ready & record_out.kept),
        ]
        m.d.sync += [
            frame_in.summary.eq(summarize(self.status.payload)),
            frame_in.tcp.eq(tcp_fields(self.status.payload)),
            frame_in.words.eq(record_out.words),
            frame_in.start.eq(record_out.start),
            frame_in.slot.eq(queue_wr[:-1]),
            write_en.eq(queue_write),
            write_addr.eq(queue_wr[:-1]),
            queue_filled.eq(queue_wr),
        ]
        m.d.comb += [
            queue_w.data.eq(frame_in),
            queue_w.addr.eq(write_addr),
            queue_w.en.eq(write_en),
            queue_r.addr.eq(queue_rd[:-1]),
        ]
        with m.If(queue_write):
            m.d.sync += queue_wr.eq(queue_wr + 1)
        take = Signal()
        m.d.comb += take.eq(self.frame.valid & self.frame.ready)
        with m.If(take):
            m.d.sync += queue_rd.eq(queue_rd + 1)
        # ``frame`` is the head record two clocks after it is addressed: the block RAM's read
        # register (the queue's read port is asynchronous with a register after it, which yosys
        # merges into the block RAM; ``no_rw_check``: a record is read only after its write), then
        # a register that copies it every clock (no enable, no reset, no logic after the block
        # RAM's 4.3 ns clock-to-out): the taker computes on ``frame`` in the clock it takes it.
        # After a take the next record shows two clocks later.
        ram_out = Signal(frame_bits, reset_less=True)
        frame_out = Signal(RxStagedFrame, reset_less=True)
        ram_valid = Signal()
        frame_valid = Signal()
        m.d.sync += [
            ram_out.eq(queue_r.data),
            frame_out.eq(ram_out),
            ram_valid.eq((queue_rd != queue_filled) & ~take),
            frame_valid.eq(ram_valid & ~take),
        ]
        m.d.comb += [
            self.frame.payload.eq(frame_out),
            self.frame.valid.eq(frame_valid),
            gave_back.eq(accept & gave_up),
            release.eq(self.release | gave_back),
        ]

        # --- Freeing: frames are freed in any order, their space in arrival order --------------
        # ``released`` marks the slots freed; the oldest slot (``queue_free``) gives its words
        # back to the store once it is marked, one slot a clock. The word counts are kept apart
        # from the records (a small memory read at ``queue_free``).
        queue_free = Signal(range(2 * queue_depth))
        released = Signal(queue_depth)
        slot_words = Memory(shape=12, depth=queue_depth, init=[])
        m.submodules.slot_words = slot_words
        words_w = slot_words.write_port()
        words_r = slot_words.read_port(domain="comb")
        m.d.comb += [
            words_w.addr.eq(write_addr),
            words_w.data.eq(frame_in.words),
            words_w.en.eq(write_en),
            words_r.addr.eq(queue_free[:-1]),
            self.free.ready.eq(1),
            self.free_fast.ready.eq(1),
        ]
        oldest_done = Signal()
        m.d.comb += oldest_done.eq((queue_free != queue_filled)
                                   & released.bit_select(queue_free[:-1], 1))
        free_words = Signal(13)
        m.d.sync += [free_words.eq(Mux(oldest_done, words_r.data, 0)), slot_freed.eq(oldest_done)]
        m.d.comb += fifo.free_words.eq(free_words)
        for k in range(queue_depth):
            with m.If((self.free.valid & (self.free.payload == k))
                      | (self.free_fast.valid & (self.free_fast.payload == k))):
                m.d.sync += released[k].eq(1)
            with m.Elif(oldest_done & (queue_free[:-1] == k)):
                m.d.sync += released[k].eq(0)
        with m.If(oldest_done):
            m.d.sync += queue_free.eq(queue_free + 1)

        # --- Pressure: a queued frame the oldest while the space runs short --------------------
        short = Signal()
        m.d.sync += short.eq(
            (queue_free != queue_filled)
            & ((fifo.w_free < self.depth_words // 4)
               | (slots_held > queue_depth - queue_depth // 4)))
        m.d.comb += [self.short.eq(short), self.oldest.eq(queue_free[:-1])]
        return m
