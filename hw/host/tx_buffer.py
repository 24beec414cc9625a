"""Transmit staging buffer: whole frames wait here, then leave on MAC TX with their checksums.

Ref: docs/host_interface.md (transmit). The DMA engine writes a frame's beats as they arrive from
the host, computing its checksums on the way; it commits the frame with the two checksum values once
the last beat is in (or takes the frame back on a DMA error). The sender streams committed frames
out one beat a clock and overwrites the checksum fields as their beats pass.
"""

from amaranth import Cat, Const, Module, Mux, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.fifo import SyncFIFO
from amaranth.lib.wiring import In, Out

from .. import params
from ..layouts import RxBeat, TxBufferedFrame
from ..lib.packet_fifo import PacketFifo

__all__ = ["TxFrameBuffer"]

_DEPTH_BEATS = params.TX_BUFFER_BYTES // params.BEAT_BYTES
_FRAMES = 8


def _patched(beat_data, beat_index, patch):
    """``beat_data`` with ``patch`` applied if its field lies in beat ``beat_index``."""
    hit = patch.enable & (patch.offset[3:] == beat_index)
    byte_in_beat = patch.offset[:3]
    out = []
    for i in range(params.BEAT_BYTES):
        byte = beat_data[8 * i:8 * i + 8]
        if i % 2 == 0:      # fields are at even offsets: a field starts at byte i or i - 1
            byte = Mux(hit & (byte_in_beat == i), patch.value[8:16], byte)
        else:
            byte = Mux(hit & (byte_in_beat == i - 1), patch.value[0:8], byte)
        out.append(byte)
    return Cat(*out)


class TxFrameBuffer(wiring.Component):
    """Members
    -------
    w_data, w_en, w_abort : In
        Beats of the frame being read from the host; ``w_abort`` forgets them.
    w_commit : In(1)
        The frame is complete: ``w_frame`` describes it (its beats are all written).
    w_frame : In(TxBufferedFrame)
    w_free : Out
        Beats free. ``w_frame_room``: a frame can be committed.
    o : Out(stream.Signature(RxBeat))
        Frames to the MAC.
    sent : Out(1)
        Pulse as each frame's last beat leaves.
    """

    w_data: In(64)
    w_en: In(1)
    w_abort: In(1)
    w_commit: In(1)
    w_frame: In(TxBufferedFrame)
    w_free: Out(range(_DEPTH_BEATS + 1))
    w_frame_room: Out(1)
    o: Out(stream.Signature(RxBeat))
    sent: Out(1)

    def elaborate(self, platform):
        m = Module()
        m.submodules.fifo = fifo = PacketFifo(width=64, depth=_DEPTH_BEATS)
        m.submodules.frames = frames = SyncFIFO(
            width=data.Layout.cast(TxBufferedFrame).size, depth=_FRAMES)
        m.d.comb += [
            fifo.w_data.eq(self.w_data),
            fifo.w_en.eq(self.w_en),
            fifo.w_abort.eq(self.w_abort),
            fifo.w_commit.eq(self.w_commit),
            self.w_free.eq(fifo.w_free),
            self.w_frame_room.eq(frames.w_rdy),
            frames.w_data.eq(self.w_frame),
            frames.w_en.eq(self.w_commit),
        ]

        frame = data.View(TxBufferedFrame, frames.r_data)
        index = Signal(12)
        last = Signal()
        m.d.comb += last.eq(index == frame.beats - 1)
        keep_last = Signal(params.BEAT_BYTES)
        with m.Switch(frame.last_bytes):
            for n in range(1, params.BEAT_BYTES + 1):
                with m.Case(n):
                    m.d.comb += keep_last.eq((1 << n) - 1)
        data_out = _patched(_patched(fifo.r.payload, index, frame.ip_csum), index, frame.l4_csum)
        m.d.comb += [
            self.o.valid.eq(frames.r_rdy & fifo.r.valid),
            self.o.payload.data.eq(data_out),
            self.o.payload.keep.eq(Mux(last, keep_last, Const(0xFF, 8))),
            self.o.payload.last.eq(last),
            fifo.r.ready.eq(frames.r_rdy & self.o.ready),
        ]
        with m.If(self.o.valid & self.o.ready):
            m.d.sync += index.eq(Mux(last, 0, index + 1))
            with m.If(last):
                m.d.comb += [frames.r_en.eq(1), self.sent.eq(1)]
        return m
