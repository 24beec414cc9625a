"""The dispatcher: one CCB-table lookup per received frame that names a TCP tuple, in order.

Ref: docs/fast_path.md ("Blocks", "Numbering and the fence"), docs/ccb_table.md ("How the
dispatcher will use it").

::

    frames ─┬─► records FIFO (every frame, in order) ───────────┬─► o (frame + the table's answer)
            └─► lookup (frames that name a TCP tuple) ─► table ─► results FIFO ─┘

Every frame of the packet buffer passes, in arrival order. One that names a TCP tuple (TCP,
``addr_valid``, ``l4_valid``: a candidate or not, so that an exception on an offloaded connection
is seen) is looked up as it is taken; the table answers in request order :attr:`CcbTable.latency`
clocks later. The frame waits in the records FIFO meanwhile, and leaves with its answer, after
every frame before it: frames that need no lookup wait their turn too.

The results FIFO is as deep as the records FIFO and every answer has its frame in the records FIFO
until both leave together, so the results FIFO never fills: ``result.ready`` is high every clock,
as the table asks.

``frames_in`` counts the frames taken (every one, looked up or not). A table command's answer
sampled with it gives the *fence*: frames numbered below it may have been looked up before the
command took effect, the others after (the table's consistency rule).
"""

from amaranth import Module, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.fifo import SyncFIFOBuffered
from amaranth.lib.wiring import In, Out

from ..ccb.layouts import CcbLookup, CcbResult
from ..layouts import DispatchedFrame, L3Type, L4Type, RxStagedFrame
from ..lib.fifo import SlicedFIFO

__all__ = ["Dispatcher", "needs_lookup"]

#: Frames between their take and their output: more than the table's latency covers at the
#: packet buffer's best rate (a frame every 3 clocks), so the table's latency never throttles.
_DEPTH = 16
#: Bits of the records FIFO per memory slice (docs/rx_sequencer.md: sliced FIFOs).
_SLICE_BITS = 72


def needs_lookup(summary):
    """The frame names a TCP tuple: TCP, a complete IP header, a complete TCP header."""
    return (summary.l4 == L4Type.TCP) & summary.addr_valid & summary.l4_valid


class Dispatcher(wiring.Component):
    """Members
    -------
    frames : In(stream.Signature(RxStagedFrame))
        The packet buffer's frames, in arrival order.
    lookup : Out(stream.Signature(CcbLookup))
        Requests to the CCB table (the tag is unused: answers come in order).
    result : In(stream.Signature(CcbResult))
        The table's answers, in request order. Always ready.
    o : Out(stream.Signature(DispatchedFrame))
        Every frame with its answer, in arrival order.
    frames_in : Out(32)
        Frames taken so far (wrapping): the fence counter.
    """

    frames: In(stream.Signature(RxStagedFrame))
    lookup: Out(stream.Signature(CcbLookup))
    result: In(stream.Signature(CcbResult))
    o: Out(stream.Signature(DispatchedFrame))
    frames_in: Out(32)

    def elaborate(self, platform):
        m = Module()
        record_layout = data.StructLayout({"frame": RxStagedFrame, "looked_up": 1})
        m.submodules.records = records = SlicedFIFO(
            width=record_layout.size, depth=_DEPTH, slice_bits=_SLICE_BITS)
        m.submodules.results = results = SyncFIFOBuffered(
            width=data.Layout.cast(CcbResult).size, depth=_DEPTH)

        frame = self.frames.payload
        summary = frame.summary
        wants = Signal()
        take = Signal()
        m.d.comb += [
            wants.eq(needs_lookup(summary)),
            # A frame that needs a lookup is taken with it; the request's valid does not wait
            # for the table's ready.
            self.lookup.valid.eq(self.frames.valid & records.w_rdy & wants),
            take.eq(self.frames.valid & records.w_rdy & (~wants | self.lookup.ready)),
            self.frames.ready.eq(take),
        ]
        t = self.lookup.payload.tuple
        m.d.comb += [
            t.src.eq(frame.tcp.src),
            t.dst.eq(frame.tcp.dst),
            t.sport.eq(summary.sport),
            t.dport.eq(summary.dport),
            t.ipv6.eq(summary.l3 == L3Type.IPV6),
        ]
        record_in = data.View(record_layout, records.w_data)
        m.d.comb += [
            record_in.frame.eq(frame),
            record_in.looked_up.eq(wants),
            records.w_en.eq(take),
        ]
        with m.If(take):
            m.d.sync += self.frames_in.eq(self.frames_in + 1)

        m.d.comb += [
            results.w_data.eq(self.result.payload),
            results.w_en.eq(self.result.valid),
            self.result.ready.eq(1),
        ]

        record = data.View(record_layout, records.r_data)
        answer = data.View(CcbResult, results.r_data)
        out = self.o.payload
        leave = Signal()
        m.d.comb += [
            self.o.valid.eq(records.r_rdy & (~record.looked_up | results.r_rdy)),
            leave.eq(self.o.valid & self.o.ready),
            records.r_en.eq(leave),
            results.r_en.eq(leave & record.looked_up),
            out.frame.eq(record.frame),
            out.looked_up.eq(record.looked_up),
        ]
        with m.If(record.looked_up):
            m.d.comb += [
                out.hit.eq(answer.hit),
                out.state.eq(answer.state),
                out.conn_nbr.eq(answer.conn_nbr),
            ]
        return m
