"""Receive packet buffer: admits or drops each frame whole, and holds admitted frames for the DMA.

Ref: docs/host_interface.md (slow-path receive, the accounting identity).

A frame is admitted at its first beat only if the NIC is enabled, the RX ring runs, and a posted RX
buffer is left that no earlier admitted frame has claimed (``reserved < posted``); it is dropped
later if the packet buffer fills under it or it grows past ``MAX_FRAME_BYTES``. Its status word
comes from the sequencer after its last beat; the frame is offered to the DMA engine (``frame``)
only then, its beats already committed in the packet FIFO (``beats``). Exactly one drop pulse or,
later, one ``consume`` from the engine ends every frame's life here.
"""

from amaranth import Module, Mux, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.fifo import SyncFIFO, SyncFIFOBuffered
from amaranth.lib.wiring import In, Out

from .. import params
from ..layouts import RxBeat, RxBufferedFrame, RxStatus
from ..lib.packet_fifo import PacketFifo

__all__ = ["RxPacketBuffer"]

_DEPTH_BEATS = params.RX_PACKET_BUFFER_BYTES // params.BEAT_BYTES
_MAX_FRAME_BEATS = -(-params.MAX_FRAME_BYTES // params.BEAT_BYTES)
# Frames whose last beat has passed but whose status word has not come out of the sequencer yet.
_PENDING_DEPTH = 16


class RxPacketBuffer(wiring.Component):
    """Members
    -------
    i : In(stream.Signature(RxBeat))
        The sequencer's frame output. Ready every clock in practice.
    status : In(stream.Signature(RxStatus))
        The sequencer's status words, one per frame, each after its frame's last beat. Always ready.
    enable, running : In(1)
        NIC enabled; RX ring configured and not stopped. Sampled at each frame's first beat.
    posted : In(13)
        RX buffers posted by the host and not yet used by the DMA engine.
    consume : In(1)
        The DMA engine is done with the frame at the head of ``frame`` (and has used one buffer).
    frame : Out(stream.Signature(RxBufferedFrame))
        Status word and beat count of the next admitted frame. Its beats are next on ``beats``.
    beats : Out(stream.Signature(64))
        Data of admitted frames, as many beats as each frame had on ``i``.
    drop_disabled, drop_no_buffer, drop_overflow, drop_oversize : Out(1)
        One pulse per dropped frame, by reason.
    """

    i: In(stream.Signature(RxBeat))
    status: In(stream.Signature(RxStatus))
    enable: In(1)
    running: In(1)
    posted: In(13)
    consume: In(1)
    frame: Out(stream.Signature(RxBufferedFrame))
    beats: Out(stream.Signature(64))
    drop_disabled: Out(1)
    drop_no_buffer: Out(1)
    drop_overflow: Out(1)
    drop_oversize: Out(1)

    def elaborate(self, platform):
        m = Module()

        m.submodules.fifo = fifo = PacketFifo(width=64, depth=_DEPTH_BEATS)
        pending_record = data.StructLayout({"kept": 1, "beats": 12})
        m.submodules.pending = pending = SyncFIFO(
            width=pending_record.size, depth=_PENDING_DEPTH)
        m.submodules.ready = ready = SyncFIFOBuffered(
            width=data.Layout.cast(RxBufferedFrame).size, depth=params.RX_PACKET_BUFFER_FRAMES)
        wiring.connect(m, wiring.flipped(self.beats), fifo.r)

        # Frames admitted and not yet consumed: each holds a claim on one posted buffer.
        reserved = Signal(range(params.RX_PACKET_BUFFER_FRAMES + 1))
        reserve = Signal()
        release = Signal()      # a claim ends: consumed by the engine or dropped mid-frame
        m.d.sync += reserved.eq(reserved + reserve - release)

        beat = self.i.payload
        accept = Signal()
        m.d.comb += [
            self.i.ready.eq(pending.w_rdy),
            accept.eq(self.i.valid & self.i.ready),
        ]

        first = Signal(init=1)          # the next beat starts a frame
        keeping = Signal()              # the frame in progress is being stored
        beats_in = Signal(range(_MAX_FRAME_BEATS + 2))
        with m.If(accept):
            m.d.sync += first.eq(beat.last)

        admit = Signal()
        m.d.comb += admit.eq(self.enable & self.running & (reserved < self.posted)
                             & (reserved < params.RX_PACKET_BUFFER_FRAMES))
        # The beat goes into the FIFO if the frame is kept (or admitted by this very beat).
        storing = Signal()
        m.d.comb += storing.eq(accept & (keeping | (first & admit)))
        overflow = Signal()
        too_long = Signal()
        beat_count = Signal.like(beats_in)
        m.d.comb += [
            beat_count.eq(Mux(first, 1, beats_in + 1)),
            overflow.eq(storing & (fifo.w_free == 0)),
            # beat_count > _MAX_FRAME_BEATS, without the adder: a compare of a register.
            too_long.eq(storing & ~first & (beats_in >= _MAX_FRAME_BEATS)),
        ]
        with m.If(accept):
            m.d.sync += beats_in.eq(beat_count)

        gave_up = Signal()
        m.d.comb += gave_up.eq(overflow | too_long)
        m.d.comb += [
            fifo.w_data.eq(beat.data),
            fifo.w_en.eq(storing & ~gave_up),
            fifo.w_abort.eq(gave_up),
            fifo.w_commit.eq(storing & ~gave_up & beat.last),
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
            record_in.kept.eq(storing & ~gave_up),
            record_in.beats.eq(beat_count),
            pending.w_en.eq(accept & beat.last),
        ]
        frame_in = data.View(RxBufferedFrame, ready.w_data)
        m.d.comb += [
            # A dropped frame's status word is taken even when the admitted frames fill the
            # queue: the sequencer must never wait on a frame that is not kept.
            self.status.ready.eq((ready.w_rdy | ~record_out.kept) & pending.r_rdy),
            pending.r_en.eq(self.status.valid & self.status.ready),
            frame_in.status.eq(self.status.payload),
            frame_in.beats.eq(record_out.beats),
            ready.w_en.eq(self.status.valid & self.status.ready & record_out.kept),
        ]
        m.d.comb += [
            self.frame.payload.eq(ready.r_data),
            self.frame.valid.eq(ready.r_rdy),
            ready.r_en.eq(self.consume),
            release.eq(self.consume | (accept & gave_up)),
        ]
        return m
