"""Transmit staging buffer: whole frames wait here, then leave on MAC TX with their checksums.

Ref: docs/host_interface.md (transmit).

The TX reader (hw/host/tx_reader.py) writes each frame's DMA beats (``data_bits`` wide) as they
arrive from the host. It first *reserves* room for the whole frame (its beats and a frame slot),
before it asks the DMA manager for the data, since read data must be taken as it comes. Once the
frame's checksums are known it *commits* the frame: its MAC beats, the bytes of its last MAC beat,
the two checksum patches, and ``discard`` when a DMA error spoiled it. The sender takes committed
frames in order and streams them out 64 bits a clock, back to back across frames, overwriting the
checksum fields as their beats pass; a discarded frame's beats are skipped, nothing of it leaves.

::

    w.data ─► block RAM (data_bits) ─► register ─► prefetch FIFO ─┐
    w.commit ─► frame FIFO ──────────────────────────────────────┤
                                           sender: lane select, patch hits ─► register ─►
                                           patch bytes ─► output FIFO ─► o (64 bits)

Every beat a frame was reserved for is written (a discarded frame's too), so the reservation
accounting is one counter of free beats and one of free frame slots, both registers the writer
compares: a beat is free again when the sender takes it, a slot when the sender starts its frame.
"""

from amaranth import Cat, Const, Module, Mux, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.fifo import SyncFIFO, SyncFIFOBuffered
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out
from amaranth.utils import exact_log2

from .. import params
from ..layouts import RxBeat, TxBufferedFrame, TxPatch
from .dma import check_data_bits

__all__ = ["TxBufferWriteSignature", "TxFrameBuffer", "buffer_beats"]

_MAC_BYTES = params.BEAT_BYTES      # MAC TX beat: 8 bytes
_MAC_SHIFT = exact_log2(_MAC_BYTES)
_PREFETCH_DEPTH = 8                 # data beats read ahead of the sender
_OUT_DEPTH = 4                      # MAC beats queued for ``o``


def buffer_beats(data_bits=params.DMA_DATA_BITS):
    """Beats of ``data_bits`` the staging buffer holds (``TX_BUFFER_BYTES`` in all)."""
    check_data_bits(data_bits)
    return params.TX_BUFFER_BYTES // (data_bits // 8)


class TxBufferWriteSignature(wiring.Signature):
    """The staging buffer's write side, from the writer's (the TX reader's) side.

    Members
    -------
    reserve : Out(1)
        Pulse: take ``reserve_beats`` beats and one frame slot for a frame about to be read. Only
        while ``free >= reserve_beats`` and ``frame_room``.
    reserve_beats : Out
        Beats (``data_bits`` wide) of the frame: ``ceil(length / (data_bits / 8))``.
    free : In
        Beats neither stored nor reserved (a register).
    frame_room : In(1)
        A frame slot can be reserved.
    data, en : Out
        Write one beat of the oldest reserved frame not yet complete; every reserved beat is
        written, in order.
    commit : Out(1)
        Pulse: the oldest uncommitted frame is complete (all its beats written): ``frame`` says
        how to send it. Frames are committed in the order they were reserved.
    frame : Out(TxBufferedFrame)
        ``beats`` counts MAC beats of 8 bytes (``ceil(length / 8)``), ``last_bytes`` the bytes of
        the last one (1..8); patch offsets are frame byte offsets.
    discard : Out(1)
        With ``commit``: the frame is not sent (its beats are skipped).
    """

    def __init__(self, data_bits=params.DMA_DATA_BITS):
        depth = buffer_beats(data_bits)
        self._data_bits = data_bits
        super().__init__({
            "reserve": Out(1),
            "reserve_beats": Out(range(depth + 1)),
            "free": In(range(depth + 1)),
            "frame_room": In(1),
            "data": Out(data_bits),
            "en": Out(1),
            "commit": Out(1),
            "frame": Out(TxBufferedFrame),
            "discard": Out(1),
        })

    @property
    def data_bits(self):
        return self._data_bits


#: A committed frame as the frame FIFO keeps it: what the sender needs, precomputed at commit.
_Staged = data.StructLayout({
    "beats_m1": 12,         # MAC beats - 1
    "single": 1,            # one MAC beat only
    "keep_last": _MAC_BYTES,
    "ip_csum": TxPatch,
    "l4_csum": TxPatch,
    "discard": 1,
})

#: A MAC beat between the sender's two stages, with what its patches do to it.
_PatchHit = data.StructLayout({"hit": 1, "byte": _MAC_SHIFT, "value": 16})


def _patched(beat_data, patch):
    """``beat_data`` (64 bits) with the 16-bit field of ``patch`` (a ``_PatchHit``) written."""
    out = []
    for i in range(_MAC_BYTES):
        byte = beat_data[8 * i:8 * i + 8]
        if i % 2 == 0:      # fields are at even offsets: a field starts at byte i or i - 1
            byte = Mux(patch.hit & (patch.byte == i), patch.value[8:16], byte)
        else:
            byte = Mux(patch.hit & (patch.byte == i - 1), patch.value[0:8], byte)
        out.append(byte)
    return Cat(*out)


class TxFrameBuffer(wiring.Component):
    """Whole TX frames in block RAM, sent 64 bits a clock with their checksum patches.

    Parameters
    ----------
    data_bits : int
        Width of the write side (the DMA bus): 64, 128 or 256.
    frames : int
        Frame slots (committed or reserved frames not yet started by the sender); a power of 2.

    Members
    -------
    w : In(TxBufferWriteSignature(data_bits))
        The write side (reserve, beats, commit).
    o : Out(stream.Signature(RxBeat))
        Frames to the MAC, back to back (no idle clock between frames while data is there).
    sent : Out(1)
        Pulse as each frame's last beat leaves on ``o`` (counts ``tx_frames``).
    """

    def __init__(self, *, data_bits=params.DMA_DATA_BITS, frames=32):
        check_data_bits(data_bits)
        if frames < 2 or frames & (frames - 1):
            raise ValueError(f"frames must be a power of 2, at least 2, not {frames}")
        self._data_bits = data_bits
        self._frames = frames
        super().__init__({
            "w": In(TxBufferWriteSignature(data_bits)),
            "o": Out(stream.Signature(RxBeat)),
            "sent": Out(1),
        })

    @property
    def data_bits(self):
        return self._data_bits

    @property
    def depth(self):
        """Beats of ``data_bits`` the buffer holds."""
        return buffer_beats(self._data_bits)

    @property
    def frames(self):
        return self._frames

    def elaborate(self, platform):
        m = Module()
        w = self.w
        depth = self.depth
        addr_bits = exact_log2(depth)
        lanes = self._data_bits // 64

        # --- Data: block RAM, its read registered, then a prefetch FIFO -------------------------
        m.submodules.mem = mem = Memory(shape=self._data_bits, depth=depth, init=[])
        wp = mem.write_port()
        rp = mem.read_port()
        wr_ptr = Signal(addr_bits + 1)      # one more bit than the address: full != empty
        rd_ptr = Signal(addr_bits + 1)
        m.d.comb += [wp.addr.eq(wr_ptr), wp.data.eq(w.data), wp.en.eq(w.en)]
        with m.If(w.en):
            m.d.sync += wr_ptr.eq(wr_ptr + 1)

        m.submodules.prefetch = prefetch = SyncFIFO(width=self._data_bits, depth=_PREFETCH_DEPTH)
        pf_credit = Signal(range(_PREFETCH_DEPTH + 1), init=_PREFETCH_DEPTH)  # room not promised
        issue = Signal()
        ram_valid = Signal()                # rp.data holds the beat read last clock
        reg_valid = Signal()
        reg_data = Signal(self._data_bits)  # the block RAM's output, registered before any logic
        m.d.comb += [
            issue.eq((rd_ptr != wr_ptr) & (pf_credit != 0)),
            rp.addr.eq(rd_ptr),     # read every clock (no enable fanning out to the block
                                    # RAMs): the beat after an issue is the one issued
            prefetch.w_data.eq(reg_data),
            prefetch.w_en.eq(reg_valid),
        ]
        m.d.sync += [ram_valid.eq(issue), reg_valid.eq(ram_valid), reg_data.eq(rp.data)]
        with m.If(issue):
            m.d.sync += rd_ptr.eq(rd_ptr + 1)
        m.d.sync += pf_credit.eq(pf_credit - issue + prefetch.r_en)

        # --- Frames: committed descriptions, in order --------------------------------------------
        m.submodules.frames = frames = SyncFIFOBuffered(
            width=_Staged.size, depth=self._frames)
        staged = data.View(_Staged, frames.w_data)
        keep_last = Signal(_MAC_BYTES)
        with m.Switch(w.frame.last_bytes):
            for n in range(1, _MAC_BYTES + 1):
                with m.Case(n):
                    m.d.comb += keep_last.eq((1 << n) - 1)
        m.d.comb += [
            staged.beats_m1.eq(w.frame.beats - 1),
            staged.single.eq(w.frame.beats == 1),
            staged.keep_last.eq(keep_last),
            staged.ip_csum.eq(w.frame.ip_csum),
            staged.l4_csum.eq(w.frame.l4_csum),
            staged.discard.eq(w.discard),
            frames.w_en.eq(w.commit),
        ]

        # --- Reservations --------------------------------------------------------------------
        free = Signal(range(depth + 1), init=depth)
        frame_credit = Signal(range(self._frames + 1), init=self._frames)
        beat_freed = Signal()       # registered: the sender took a data beat last clock
        frame_freed = Signal()      # registered: the sender started a frame last clock
        m.d.sync += [
            free.eq(free + beat_freed - Mux(w.reserve, w.reserve_beats, 0)),
            frame_credit.eq(frame_credit + frame_freed - w.reserve),
            beat_freed.eq(prefetch.r_en),
            frame_freed.eq(frames.r_en),
        ]
        m.d.comb += [w.free.eq(free), w.frame_room.eq(frame_credit != 0)]

        # --- Sender, stage 1: the current frame; one MAC beat a clock ----------------------------
        m.submodules.out = out = SyncFIFOBuffered(width=data.Layout.cast(RxBeat).size,
                                                  depth=_OUT_DEPTH)
        active = Signal()           # a frame is being sent (cur_* describe it)
        cur = Signal(_Staged)
        left = Signal(12)           # MAC beats after the current one
        last = Signal()             # the current MAC beat is the frame's last (left == 0)
        index = Signal(12)          # MAC beat index in the frame
        lane = Signal(range(lanes)) if lanes > 1 else Const(0, 1)

        p1_valid = Signal()
        p1_data = Signal(64)
        p1_keep = Signal(_MAC_BYTES)
        p1_last = Signal()
        p1_ip = Signal(_PatchHit)
        p1_l4 = Signal(_PatchHit)

        step = Signal()             # the current MAC beat moves to stage 2 (or is skipped)
        load = Signal()             # the next frame becomes current
        m.d.comb += [
            step.eq(active & prefetch.r_rdy & (~p1_valid | out.w_rdy)),
            load.eq(frames.r_rdy & (~active | (step & last))),
            frames.r_en.eq(load),
            prefetch.r_en.eq(step & ((lane == lanes - 1) | last)),
        ]
        lane_data = Signal(64)
        with m.Switch(lane):
            for k in range(lanes):
                with m.Case(k):
                    m.d.comb += lane_data.eq(prefetch.r_data[64 * k:64 * k + 64])

        with m.If(step):
            m.d.sync += [
                left.eq(left - 1),
                last.eq(left == 1),
                index.eq(index + 1),
            ]
            if lanes > 1:
                m.d.sync += lane.eq(lane + 1)
            with m.If(last):
                m.d.sync += [active.eq(0), index.eq(0)]
                if lanes > 1:
                    m.d.sync += lane.eq(0)
        with m.If(load):
            head = data.View(_Staged, frames.r_data)
            m.d.sync += [
                active.eq(1),
                cur.eq(head),
                left.eq(head.beats_m1),
                last.eq(head.single),
                index.eq(0),
            ]
            if lanes > 1:
                m.d.sync += lane.eq(0)

        # Stage 2: the beat, and per patch whether it hits this beat (compares off the data path).
        with m.If(~p1_valid | out.w_rdy):
            m.d.sync += p1_valid.eq(step & ~cur.discard)
            with m.If(step):
                m.d.sync += [
                    p1_data.eq(lane_data),
                    p1_keep.eq(Mux(last, cur.keep_last, (1 << _MAC_BYTES) - 1)),
                    p1_last.eq(last),
                ]
                for p1, patch in ((p1_ip, cur.ip_csum), (p1_l4, cur.l4_csum)):
                    m.d.sync += [
                        p1.hit.eq(patch.enable & (patch.offset[_MAC_SHIFT:] == index)),
                        p1.byte.eq(patch.offset[:_MAC_SHIFT]),
                        p1.value.eq(patch.value),
                    ]
        beat_in = data.View(RxBeat, out.w_data)
        m.d.comb += [
            beat_in.data.eq(_patched(_patched(p1_data, p1_ip), p1_l4)),
            beat_in.keep.eq(p1_keep),
            beat_in.last.eq(p1_last),
            out.w_en.eq(p1_valid),
        ]
        beat_out = data.View(RxBeat, out.r_data)
        m.d.comb += [
            self.o.valid.eq(out.r_rdy),
            self.o.payload.eq(beat_out),
            out.r_en.eq(self.o.ready),
            self.sent.eq(out.r_rdy & self.o.ready & beat_out.last),
        ]
        return m
