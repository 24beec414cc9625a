"""A synchronous FIFO for wide words, its memory cut into slices that each have their own addresses.

Ref: docs/rx_sequencer.md, "Timing status" (why the receive sequencer's status and header FIFOs are
built this way, and what each change gained).

:class:`SlicedFIFO` has the ports and the clock-by-clock behaviour of Amaranth's
:class:`amaranth.lib.fifo.SyncFIFOBuffered` (a block-RAM FIFO with a registered output). It differs
in how the storage is built, for timing:

- The word may be stored in slices of ``slice_bits`` bits, each a memory with its own write and read
  address registers, so that no single address register fans out to every RAM of a wide word.
  Slice ``j``'s addresses run ``j`` entries ahead of the others', so no two address registers are
  the same logic and synthesis does not merge them back into one.
- The memories are marked ``no_rw_check``: a read never hits the entry being written in the same
  clock (a read needs a filled entry, a write a free one), and without the attribute Yosys wraps
  block RAM in collision logic whose select reaches every bit of the word.
"""

from amaranth import Module, Mux, Signal
from amaranth.lib import wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

__all__ = ["SlicedFIFO"]


class SlicedFIFO(wiring.Component):
    """``SyncFIFOBuffered`` (same ports and timing) for a wide word, stored in sliced memories.

    Parameters
    ----------
    width : int
        Bits of a word.
    depth : int
        Words the FIFO holds: ``depth - 1`` in memory plus the output register; at least 2.
    slice_bits : int or None
        Bits of the word per memory (the last slice takes what is left); ``None`` for one memory.

    Members
    -------
    w_data : In(width)
        Word to write.
    w_en : In(1)
        Write ``w_data`` this clock, if ``w_rdy``.
    w_rdy : Out(1)
        There is room for a word.
    r_data : Out(width)
        The oldest word, valid while ``r_rdy``.
    r_en : In(1)
        Take ``r_data`` this clock, if ``r_rdy``.
    r_rdy : Out(1)
        ``r_data`` holds a word.
    level : Out(range(depth + 1))
        Words in the FIFO, the output register included.
    """

    def __init__(self, *, width, depth, slice_bits=None):
        if not isinstance(width, int) or width < 1:
            raise TypeError(f"width must be a positive integer, not {width!r}")
        if not isinstance(depth, int) or depth < 2:
            raise ValueError(f"depth must be an integer of at least 2, not {depth!r}")
        if slice_bits is not None and (not isinstance(slice_bits, int) or slice_bits < 1):
            raise TypeError(f"slice_bits must be a positive integer or None, not {slice_bits!r}")
        self._width = width
        self._depth = depth
        self._slice_bits = min(slice_bits or width, width)
        super().__init__({
            "w_data": In(width), "w_en": In(1), "w_rdy": Out(1),
            "r_data": Out(width), "r_en": In(1), "r_rdy": Out(1),
            "level": Out(range(depth + 1)),
        })

    @property
    def width(self):
        return self._width

    @property
    def depth(self):
        return self._depth

    @property
    def slice_bits(self):
        return self._slice_bits

    def elaborate(self, platform):
        m = Module()
        inner_depth = self._depth - 1            # plus the output register
        inner_level = Signal(range(inner_depth + 1))
        inner_r_rdy = inner_level != 0
        m.d.comb += self.w_rdy.eq(inner_level != inner_depth)
        do_write = self.w_rdy & self.w_en
        do_inner_read = inner_r_rdy & (~self.r_rdy | self.r_en)

        for j, lo in enumerate(range(0, self._width, self._slice_bits)):
            hi = min(lo + self._slice_bits, self._width)
            storage = Memory(shape=hi - lo, depth=inner_depth, init=[],
                             attrs={"no_rw_check": 1})
            m.submodules[f"storage{j}"] = storage
            w_port = storage.write_port()
            r_port = storage.read_port(domain="sync")
            produce = Signal(range(inner_depth), init=j % inner_depth, name=f"produce{j}")
            consume = Signal(range(inner_depth), init=j % inner_depth, name=f"consume{j}")
            m.d.comb += [
                w_port.addr.eq(produce),
                w_port.data.eq(self.w_data[lo:hi]),
                w_port.en.eq(do_write),
                r_port.addr.eq(consume),
                r_port.en.eq(do_inner_read),
                self.r_data[lo:hi].eq(r_port.data),
            ]
            with m.If(do_write):
                m.d.sync += produce.eq(Mux(produce == inner_depth - 1, 0, produce + 1))
            with m.If(do_inner_read):
                m.d.sync += consume.eq(Mux(consume == inner_depth - 1, 0, consume + 1))

        with m.If(do_write & ~do_inner_read):
            m.d.sync += inner_level.eq(inner_level + 1)
        with m.If(do_inner_read & ~do_write):
            m.d.sync += inner_level.eq(inner_level - 1)
        with m.If(do_inner_read):
            m.d.sync += self.r_rdy.eq(1)
        with m.Elif(self.r_en):
            m.d.sync += self.r_rdy.eq(0)
        m.d.comb += self.level.eq(inner_level + self.r_rdy)
        return m
