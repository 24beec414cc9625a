"""TX frame reader: TX descriptors in, frames read by DMA into the staging buffer with their
checksums, TX_DONE events out.

Ref: docs/host_interface.md ("Transmit", "Events"); RFC 1071 (the Internet checksum); Linux's
CHECKSUM_PARTIAL (the L4 sum runs from ``csum_start`` to the frame's end, seeded by the
pseudo-header sum the host left in the checksum field); RFC 768 (a computed 0 is sent as 0xFFFF).

The reader is a DMA read client (hw/host/dma.py). It never waits for a round trip per frame:

::

    descriptors ─► D1 ─► D2 (sums) ─► checks, room ─► issue ─┬─► dma.req: ONE request per frame
                                                             ├─► data contexts ─┐
                                                             └─► order FIFO ────┼──────────┐
    dma.resp ─► S0 ─► S1 ─► S2 ─► S3 (masked words) ─► adder trees ─► sums ─┐   │          │
         └─► buffer.data (every beat, room reserved)               results FIFO ─► complete ─►
                                                              buffer.commit, events FIFO ─► events

- **Issue.** Each descriptor is registered (D1), its sums (beats, checksum field ends) are
  registered (D2), then its checks and the room test are registered; a good one reserves its
  beats and a frame slot in the staging buffer and goes out as one read request for the whole
  frame (the manager splits it into bursts). The reader goes on to the next descriptor at once:
  up to ``contexts`` descriptors are in flight, which hides the host's read latency.
- **Data.** Read beats are taken as they come (``resp.ready`` is high whenever a frame is in
  flight) and written straight into the staging buffer. The two checksums are computed over the
  same beats in a pipeline: byte masks from subtractions of registers, then the masked words,
  then adder trees of two levels per stage, then a 32-bit accumulator per frame and two folds.
- **Completion**, in descriptor order: a good frame is committed to the staging buffer with its
  patches (discarded if a beat came back with an error) and gets ``TX_DONE`` (``OK`` or
  ``DMA_ERROR``); a refused descriptor (``BAD_DESCRIPTOR``) or a fetch error (``DMA_ERROR``) gets
  its ``TX_DONE`` in turn, without a read.

Frame addresses are taken on a DMA beat: the bits of ``addr`` below ``data_bits / 8`` bytes are
ignored (the frame is read from the beat that holds ``addr``'s byte). A ``DMA_ERROR`` event's
``detail`` is bits 30:0 of the failing beat's address (of the ring entry, for a fetch error).
"""

import enum

from amaranth import Cat, Const, Module, Mux, Signal, signed
from amaranth.lib import data, stream, wiring
from amaranth.lib.fifo import SyncFIFOBuffered
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
    TxDescriptor,
)
from ..lib.checksum import bytes_from, ones_complement_fold
from ..lib.netorder import be_field
from .dma import DmaReadSignature, check_data_bits
from .tx_buffer import TxBufferWriteSignature, buffer_beats

__all__ = ["TxReader"]


class _Kind(enum.IntEnum):
    GOOD = 0            # read the frame
    BAD = 1             # BAD_DESCRIPTOR, no read
    FETCH_ERROR = 2     # the ring entry could not be read: DMA_ERROR, no read


_INDEX_BITS = params.RING_INDEX_BITS

#: What the data pipeline needs of a frame in flight (``length`` <= MAX_FRAME_BYTES).
_DataContext = data.StructLayout({
    "length": 14,
    "ip_csum": 1,
    "ip_offset": 8,
    "l4_csum": 1,
    "csum_start": 8,
})

#: What completion needs of every descriptor, in descriptor order.
_OrderContext = data.StructLayout({
    "kind": 2,
    "index": _INDEX_BITS,
    "length": 16,
    "addr": 31,             # frame address (aligned), or the ring entry's for a fetch error
    "mac_beats": 12,
    "ip_csum": 1,
    "ip_field": 9,          # ip_offset + 10
    "l4_csum": 1,
    "l4_field": 9,          # csum_start + csum_offset
})

#: The data pipeline's answer for one frame.
_Result = data.StructLayout({
    "ip_sum": 16,
    "l4_sum": 16,
    "error": 1,
    "error_beat": 12,       # the first beat with an error
})

#: The fields of a TX_DONE event that vary.
_Done = data.StructLayout({
    "index": _INDEX_BITS,
    "length": 16,
    "code": 8,
    "detail": 31,
})


def _tree_stage(m, values, name):
    """Two levels of an adder tree, registered: ``values`` four at a time into their sums."""
    out = []
    for k in range(0, len(values), 4):
        group = values[k:k + 4]
        width = max(len(v) for v in group) + (len(group) - 1).bit_length()
        s = Signal(width, name=f"{name}_{k // 4}")
        m.d.sync += s.eq(sum(group[1:], group[0]))
        out.append(s)
    return out


class TxReader(wiring.Component):
    """Reads TX frames into the staging buffer, computing their checksums; reports TX_DONE.

    Parameters
    ----------
    data_bits : int
        DMA bus width: 64, 128 or 256.
    contexts : int
        Descriptors in flight at once (issued, TX_DONE not yet out); a power of 2.

    Members
    -------
    descriptors : In(stream.Signature(RingEntry))
        TX ring entries from the ring fetcher (``entry`` is a ``TxDescriptor``); ``error``: the
        entry could not be read.
    dma : Out(DmaReadSignature(data_bits))
        The DMA manager's read client: one request per frame; every response beat is taken.
    buffer : Out(TxBufferWriteSignature(data_bits))
        The staging buffer's write side (``TxFrameBuffer.w``).
    events : Out(stream.Signature(Event))
        ``TX_DONE`` events, in descriptor order; ``phase`` is 0 (the event writer sets it).
    count : Out(HostCounterPulses)
        ``tx_bad_descriptor`` pulses (BAD_DESCRIPTOR and DMA_ERROR); no other field is driven.
    """

    def __init__(self, *, data_bits=params.DMA_DATA_BITS, contexts=16):
        check_data_bits(data_bits)
        if contexts < 2 or contexts & (contexts - 1):
            raise ValueError(f"contexts must be a power of 2, at least 2, not {contexts}")
        self._data_bits = data_bits
        self._contexts = contexts
        super().__init__({
            "descriptors": In(stream.Signature(RingEntry)),
            "dma": Out(DmaReadSignature(data_bits)),
            "buffer": Out(TxBufferWriteSignature(data_bits)),
            "events": Out(stream.Signature(Event)),
            "count": Out(HostCounterPulses),
        })

    @property
    def data_bits(self):
        return self._data_bits

    @property
    def beat_bytes(self):
        return self._data_bits // 8

    @property
    def contexts(self):
        return self._contexts

    def elaborate(self, platform):
        m = Module()
        bb = self.beat_bytes
        shift = exact_log2(bb)
        depth = buffer_beats(self._data_bits)

        m.submodules.data_contexts = data_ctx = SyncFIFOBuffered(
            width=_DataContext.size, depth=self._contexts)
        m.submodules.order = order = SyncFIFOBuffered(
            width=_OrderContext.size, depth=self._contexts)
        m.submodules.results = results = SyncFIFOBuffered(
            width=_Result.size, depth=self._contexts)
        m.submodules.done = done = SyncFIFOBuffered(width=_Done.size, depth=4)

        self._issue(m, bb, shift, depth, data_ctx, order)
        self._data(m, bb, shift, data_ctx, results)
        self._complete(m, shift, order, results, done)
        return m

    # --- Issue: check, reserve, request ----------------------------------------------------
    def _issue(self, m, bb, shift, depth, data_ctx, order):
        # D1: the entry, registered.
        d1_valid = Signal()
        d1 = Signal(TxDescriptor)
        d1_index = Signal(_INDEX_BITS)
        d1_entry_addr = Signal(31)
        d1_error = Signal()
        m.d.comb += self.descriptors.ready.eq(~d1_valid)
        with m.If(self.descriptors.valid & ~d1_valid):
            entry = self.descriptors.payload
            m.d.sync += [
                d1_valid.eq(1),
                d1.eq(entry.entry),
                d1_index.eq(entry.index),
                d1_entry_addr.eq(entry.addr[:31]),
                d1_error.eq(entry.error),
            ]

        # D2: the sums of the checks and of the request, registered; a clock later, everything
        # that decides whether it goes (its checks, the room, the FIFOs' room), registered too.
        # None of those can turn false without the reader issuing (the buffer's free beats and
        # slots, the FIFOs' room, the request register only change that way otherwise in the
        # good direction), and D2 is reloaded after each issue, so the registered go is exact.
        d2_valid = Signal()
        d2_armed = Signal()             # d2 has been held a clock: go_good / go_bad are its own
        d2 = Signal(TxDescriptor)
        d2_index = Signal(_INDEX_BITS)
        d2_entry_addr = Signal(31)
        d2_error = Signal()
        d2_beats = Signal(17 - shift)   # DMA beats of the frame
        d2_mac_beats = Signal(14)
        d2_ip_need = Signal(9)          # frame bytes the IPv4 header needs
        d2_l4_need = Signal(10)         # frame bytes the L4 checksum field needs
        d2_ip_field = Signal(9)
        d2_l4_field = Signal(9)
        d2_len_bad = Signal()
        go_good = Signal()              # read it now
        go_bad = Signal()               # refuse it now (BAD_DESCRIPTOR or fetch error)
        fire = Signal()
        fire_good = Signal()
        d2_load = Signal()
        m.d.comb += d2_load.eq(d1_valid & ~d2_valid)
        with m.If(d2_load):
            length = d1.length
            m.d.sync += [
                d1_valid.eq(0),
                d2_valid.eq(1),
                d2.eq(d1),
                d2_index.eq(d1_index),
                d2_entry_addr.eq(d1_entry_addr),
                d2_error.eq(d1_error),
                d2_beats.eq((length + bb - 1) >> shift),
                d2_mac_beats.eq((length + 7) >> 3),
                d2_ip_need.eq(d1.ip_offset + 20),
                d2_l4_need.eq(d1.csum_start + d1.csum_offset + 2),
                d2_ip_field.eq(d1.ip_offset + 10),
                d2_l4_field.eq(d1.csum_start + d1.csum_offset),
                d2_len_bad.eq((length == 0) | (length > params.MAX_FRAME_BYTES)),
            ]
        with m.If(fire):
            m.d.sync += d2_valid.eq(0)
        m.d.sync += d2_armed.eq(d2_valid & ~fire)

        req = self.dma.req
        bad = Signal()
        m.d.comb += bad.eq(d2_error | d2_len_bad
                           | (d2.ip_csum & (d2.ip_offset[0] | (d2_ip_need > d2.length)))
                           | (d2.l4_csum & (d2.csum_start[0] | d2.csum_offset[0]
                                            | (d2_l4_need > d2.length))))
        m.d.sync += [
            go_good.eq(~bad & (self.buffer.free >= d2_beats) & self.buffer.frame_room
                       & data_ctx.w_rdy & order.w_rdy & ~req.valid),
            go_bad.eq(bad & order.w_rdy),
        ]

        # The request: a register, loaded while empty, offered as the descriptor is issued.
        frame_addr = Cat(Const(0, shift), d2.addr[shift:])
        with m.If(req.valid & req.ready):
            m.d.sync += req.valid.eq(0)
        with m.If(~req.valid):
            m.d.sync += [req.payload.addr.eq(frame_addr), req.payload.beats.eq(d2_beats)]
        m.d.comb += [
            fire_good.eq(d2_valid & d2_armed & go_good),
            fire.eq(d2_valid & d2_armed & (go_good | go_bad)),
        ]
        with m.If(fire_good):
            m.d.sync += req.valid.eq(1)
        ctx = data.View(_DataContext, data_ctx.w_data)
        entry = data.View(_OrderContext, order.w_data)
        m.d.comb += [
            self.buffer.reserve.eq(fire_good),
            self.buffer.reserve_beats.eq(d2_beats),
            data_ctx.w_en.eq(fire_good),
            ctx.length.eq(d2.length),
            ctx.ip_csum.eq(d2.ip_csum),
            ctx.ip_offset.eq(d2.ip_offset),
            ctx.l4_csum.eq(d2.l4_csum),
            ctx.csum_start.eq(d2.csum_start),
            order.w_en.eq(fire),
            entry.kind.eq(Mux(d2_error, _Kind.FETCH_ERROR,
                              Mux(go_good, _Kind.GOOD, _Kind.BAD))),
            entry.index.eq(d2_index),
            entry.length.eq(d2.length),
            entry.addr.eq(Mux(d2_error, d2_entry_addr, frame_addr[:31])),
            entry.mac_beats.eq(d2_mac_beats),
            entry.ip_csum.eq(d2.ip_csum),
            entry.ip_field.eq(d2_ip_field),
            entry.l4_csum.eq(d2.l4_csum),
            entry.l4_field.eq(d2_l4_field),
        ]

    # --- Data: into the buffer, through the checksum pipeline --------------------------------
    def _data(self, m, bb, shift, data_ctx, results):
        resp = self.dma.resp
        head = data.View(_DataContext, data_ctx.r_data)
        take = Signal()
        beat = Signal(12)               # beat of the frame now arriving
        m.d.comb += [
            resp.ready.eq(data_ctx.r_rdy),
            take.eq(resp.valid & data_ctx.r_rdy),
            data_ctx.r_en.eq(take & resp.payload.last),
        ]
        with m.If(take):
            m.d.sync += beat.eq(Mux(resp.payload.last, 0, beat + 1))
        base = Cat(Const(0, shift), beat)

        # S0: the beat (also written into the buffer from here), and the frame's bounds
        # relative to it.
        v0, last0, err0 = Signal(), Signal(), Signal()
        data0 = Signal(self._data_bits)
        len0 = Signal(signed(18))       # length - beat offset
        ips0 = Signal(signed(18))       # ip_offset - beat offset
        l4s0 = Signal(signed(18))       # csum_start - beat offset
        ip_en0, l4_en0 = Signal(), Signal()
        m.d.sync += [
            v0.eq(take),
            last0.eq(resp.payload.last),
            err0.eq(resp.payload.error),
            data0.eq(resp.payload.data),
            len0.eq(head.length - base),
            ips0.eq(head.ip_offset - base),
            l4s0.eq(head.csum_start - base),
            ip_en0.eq(head.ip_csum),
            l4_en0.eq(head.l4_csum),
        ]
        m.d.comb += [self.buffer.data.eq(data0), self.buffer.en.eq(v0)]

        # S1: byte masks of the bounds; the IHL nibble, if the IPv4 header starts in this beat.
        v1, last1, err1 = Signal(), Signal(), Signal()
        data1 = Signal(self._data_bits)
        in1 = Signal(bb)                # bytes of the frame
        ips1 = Signal(bb)               # bytes at or past ip_offset (0 without ip_csum)
        l4s1 = Signal(bb)               # bytes at or past csum_start (0 without l4_csum)
        hdr1 = Signal()                 # the IPv4 header starts in this beat ...
        hdr_at1 = Signal(shift)         # ... at this byte
        ihl1 = Signal(4)
        ihl = Signal(4)
        with m.Switch(ips0[1:shift]):   # ip_offset is even
            for k in range(bb // 2):
                with m.Case(k):
                    m.d.comb += ihl.eq(data0[16 * k:16 * k + 4])
        m.d.sync += [
            v1.eq(v0),
            last1.eq(last0),
            err1.eq(err0),
            data1.eq(data0),
            in1.eq(~bytes_from(len0, bb)),
            ips1.eq(bytes_from(ips0, bb) & ip_en0.replicate(bb)),
            l4s1.eq(bytes_from(l4s0, bb) & l4_en0.replicate(bb)),
            hdr1.eq(~ips0[-1] & (ips0[shift:] == 0)),
            hdr_at1.eq(ips0[:shift]),
            ihl1.eq(ihl),
        ]

        # S2: the IPv4 header's end relative to this beat, kept from the header beat on (it only
        # goes down, and stops once past).
        v2, last2, err2 = Signal(), Signal(), Signal()
        data2 = Signal(self._data_bits)
        in2, ips2, l4s2 = Signal(bb), Signal(bb), Signal(bb)
        ipe2 = Signal(signed(9))
        m.d.sync += [
            v2.eq(v1), last2.eq(last1), err2.eq(err1), data2.eq(data1),
            in2.eq(in1), ips2.eq(ips1), l4s2.eq(l4s1),
        ]
        with m.If(v1):
            with m.If(hdr1):
                m.d.sync += ipe2.eq(hdr_at1 + Cat(Const(0, 2), ihl1))
            with m.Elif(~ipe2[-1]):
                m.d.sync += ipe2.eq(ipe2 - bb)

        # S3: the masked beats.
        v3, last3, err3 = Signal(), Signal(), Signal()
        ip3 = Signal(self._data_bits)
        l43 = Signal(self._data_bits)
        ip_mask = Signal(bb)
        l4_mask = Signal(bb)
        m.d.comb += [
            ip_mask.eq(ips2 & ~bytes_from(ipe2, bb) & in2),
            l4_mask.eq(l4s2 & in2),
        ]
        m.d.sync += [
            v3.eq(v2), last3.eq(last2), err3.eq(err2),
            ip3.eq(Cat(*(data2[8 * i:8 * i + 8] & ip_mask[i].replicate(8) for i in range(bb)))),
            l43.eq(Cat(*(data2[8 * i:8 * i + 8] & l4_mask[i].replicate(8) for i in range(bb)))),
        ]

        # Adder trees, two levels a stage, down to one sum per beat.
        ip_words = [be_field(ip3, 2 * w, 2) for w in range(bb // 2)]
        l4_words = [be_field(l43, 2 * w, 2) for w in range(bb // 2)]
        vt, lastt, errt = v3, last3, err3
        level = 0
        while len(ip_words) > 1:
            ip_words = _tree_stage(m, ip_words, f"ip_tree{level}")
            l4_words = _tree_stage(m, l4_words, f"l4_tree{level}")
            vn, lastn, errn = Signal(name=f"v_tree{level}"), Signal(), Signal()
            m.d.sync += [vn.eq(vt), lastn.eq(lastt), errn.eq(errt)]
            vt, lastt, errt = vn, lastn, errn
            level += 1

        # Accumulate each frame (32 bits hold any frame's sum without carry-out); note its
        # first bad beat.
        acc_ip = Signal(32)
        acc_l4 = Signal(32)
        acc_first = Signal(init=1)      # the next beat starts a frame
        acc_beat = Signal(12)
        acc_err = Signal()
        acc_err_beat = Signal(12)
        next_ip = Signal(32)
        next_l4 = Signal(32)
        next_err = Signal()
        next_err_beat = Signal(12)
        keep = (~acc_first).replicate(32)
        m.d.comb += [
            next_ip.eq(ip_words[0] + (acc_ip & keep)),
            next_l4.eq(l4_words[0] + (acc_l4 & keep)),
            next_err.eq(errt | (acc_err & ~acc_first)),
            next_err_beat.eq(Mux(acc_err & ~acc_first, acc_err_beat, acc_beat)),
        ]
        sum_valid = Signal()
        sum_ip = Signal(32)
        sum_l4 = Signal(32)
        sum_err = Signal()
        sum_err_beat = Signal(12)
        m.d.sync += sum_valid.eq(0)
        with m.If(vt):
            m.d.sync += [
                acc_ip.eq(next_ip),
                acc_l4.eq(next_l4),
                acc_err.eq(next_err),
                acc_err_beat.eq(next_err_beat),
                acc_first.eq(lastt),
                acc_beat.eq(Mux(lastt, 0, acc_beat + 1)),
            ]
            with m.If(lastt):
                m.d.sync += [
                    sum_valid.eq(1),
                    sum_ip.eq(next_ip),
                    sum_l4.eq(next_l4),
                    sum_err.eq(next_err),
                    sum_err_beat.eq(next_err_beat),
                ]

        # Two folds (32 -> 17 -> 16 bits), then the results FIFO (it has room: at most
        # ``contexts`` frames are in flight).
        fold_valid = Signal()
        fold_ip = Signal(17)
        fold_l4 = Signal(17)
        fold_err = Signal()
        fold_err_beat = Signal(12)
        m.d.sync += [
            fold_valid.eq(sum_valid),
            fold_ip.eq(ones_complement_fold(sum_ip)),
            fold_l4.eq(ones_complement_fold(sum_l4)),
            fold_err.eq(sum_err),
            fold_err_beat.eq(sum_err_beat),
        ]
        result = data.View(_Result, results.w_data)
        m.d.comb += [
            results.w_en.eq(fold_valid),
            result.ip_sum.eq(ones_complement_fold(fold_ip)),
            result.l4_sum.eq(ones_complement_fold(fold_l4)),
            result.error.eq(fold_err),
            result.error_beat.eq(fold_err_beat),
        ]

    # --- Completion: commit or discard, TX_DONE, in descriptor order -------------------------
    def _complete(self, m, shift, order, results, done):
        head = data.View(_OrderContext, order.r_data)
        result = data.View(_Result, results.r_data)
        good = Signal()
        complete = Signal()
        m.d.comb += [
            good.eq(head.kind == _Kind.GOOD),
            complete.eq(order.r_rdy & (~good | results.r_rdy) & done.w_rdy),
            order.r_en.eq(complete),
            results.r_en.eq(complete & good),
            done.w_en.eq(complete),
        ]

        frame = self.buffer.frame
        l4_value = Signal(16)
        m.d.comb += [
            l4_value.eq(Mux(result.l4_sum == 0xFFFF, 0xFFFF, ~result.l4_sum)),
            self.buffer.commit.eq(complete & good),
            self.buffer.discard.eq(result.error),
            frame.beats.eq(head.mac_beats),
            frame.last_bytes.eq(Mux(head.length[:3] == 0, 8, head.length[:3])),
            frame.ip_csum.enable.eq(head.ip_csum),
            frame.ip_csum.offset.eq(head.ip_field),
            frame.ip_csum.value.eq(~result.ip_sum),
            frame.l4_csum.enable.eq(head.l4_csum),
            frame.l4_csum.offset.eq(head.l4_field),
            frame.l4_csum.value.eq(l4_value),
            self.count.tx_bad_descriptor.eq(complete & (~good | result.error)),
        ]

        event = data.View(_Done, done.w_data)
        error_addr = Signal(31)
        m.d.comb += [
            error_addr.eq(head.addr + Cat(Const(0, shift), result.error_beat)),
            event.index.eq(head.index),
            event.length.eq(Mux(head.kind == _Kind.FETCH_ERROR, 0, head.length)),
        ]
        with m.Switch(head.kind):
            with m.Case(_Kind.GOOD):
                m.d.comb += [
                    event.code.eq(Mux(result.error, EventCode.DMA_ERROR.value,
                                      EventCode.OK.value)),
                    event.detail.eq(Mux(result.error, error_addr, 0)),
                ]
            with m.Case(_Kind.BAD):
                m.d.comb += event.code.eq(EventCode.BAD_DESCRIPTOR.value)
            with m.Default():
                m.d.comb += [event.code.eq(EventCode.DMA_ERROR.value), event.detail.eq(head.addr)]

        out = data.View(_Done, done.r_data)
        payload = self.events.payload
        m.d.comb += [
            self.events.valid.eq(done.r_rdy),
            done.r_en.eq(self.events.ready),
            payload.kind.eq(EventKind.TX_DONE.value),
            payload.ring.eq(RingId.TX.value),
            payload.index.eq(out.index),
            payload.length.eq(out.length),
            payload.code.eq(out.code),
            payload.detail.eq(out.detail),
        ]
