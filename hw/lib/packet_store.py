"""A store of whole frames: written in order like a FIFO (commit or take back), read by request.

Ref: docs/host_interface.md (slow-path receive: frames are dropped whole, never in part),
docs/fast_path.md ("Queues in the packet buffer": frames leave in any order).

The writer appends words to a circular buffer and commits or aborts whole frames, as into a FIFO;
``w_addr`` tells where the next word goes, so the writer knows where each frame starts. The
readers ask for runs of words (``r_req``: address and count) in any order and get them back in
request order on ``r``. Space comes back only when the owner says so (``free_words``): the owner
frees frames in the order they were written (it knows which ones it no longer needs), so the
free space is always one run behind the write pointer.

The storage is simple dual-port block RAM; its two-clock read latency (the block RAM, then a data
register) is hidden by a 4-entry prefetch FIFO, so a request streams a word every clock and the
next request's words follow without a gap.
"""

from amaranth import Cat, Module, Mux, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.fifo import SyncFIFO
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

__all__ = ["PacketStore", "StoreRead", "StoreWord"]

_PREFETCH_DEPTH = 4
_BLOCK_RAM_BITS = 16384


def StoreRead(depth):
    """A read request: ``words`` (>= 1) words from word address ``addr`` on (wrapping)."""
    bits = (depth - 1).bit_length()
    return data.StructLayout({"addr": bits, "words": bits + 1})


def StoreWord(width):
    """A word read; ``last``: the request's final word."""
    return data.StructLayout({"data": width, "last": 1})


class PacketStore(wiring.Component):
    """Words of whole frames in block RAM, read back by request.

    Parameters
    ----------
    width : int
        Bits of a word.
    depth : int
        Words (a power of two).

    Members
    -------
    w_data, w_en : In
        Write one word this clock at ``w_addr`` (the writer checks ``w_free`` first).
    w_commit : In(1)
        The words written since the last commit, including one written this clock, are a frame
        the readers may ask for.
    w_abort : In(1)
        Forget the words written since the last commit (not together with ``w_en``).
    w_addr : Out
        Where the next word will be written.
    w_free : Out
        Words that can still be written: the depth minus the words written and not freed.
    free_words : In
        Words given back this clock: the owner no longer needs the oldest frames that take them.
    r_req : In(stream.Signature(StoreRead(depth)))
        A run of committed words to read.
    r : Out(stream.Signature(StoreWord(width)))
        The requests' words, in request order.
    """

    def __init__(self, *, width, depth):
        if depth < 2 or depth & (depth - 1):
            raise ValueError(f"depth must be a power of 2 of at least 2, not {depth}")
        self._width = width
        self._depth = depth
        addr_bits = (depth - 1).bit_length()
        super().__init__({
            "w_data": In(width),
            "w_en": In(1),
            "w_commit": In(1),
            "w_abort": In(1),
            "w_addr": Out(addr_bits),
            "w_free": Out(range(depth + 1)),
            "free_words": In(range(depth + 1)),
            "r_req": In(stream.Signature(StoreRead(depth))),
            "r": Out(stream.Signature(StoreWord(width))),
        })

    def elaborate(self, platform):
        m = Module()
        depth = self._depth
        addr_bits = (depth - 1).bit_length()

        # The storage is cut into slices of at most 16 Kbit (one ECP5 DP16KD each: 4 bits wide at
        # a depth of 4096, 8 at 2048, ...), so that each block RAM drives its own bits of the word
        # straight into a register: no multiplexer between block RAMs after the block RAM's slow
        # clock-to-out. A read only asks for committed words, which are never being written, so
        # the memories are marked ``no_rw_check`` (without it yosys wraps them in collision logic
        # between the address and the data; the read port is asynchronous with a register after
        # it, which yosys merges into the block RAM: the attribute is honoured only then).
        slice_bits = max(1, min(self._width, _BLOCK_RAM_BITS // depth))
        write_ports, read_ports = [], []
        for n, lsb in enumerate(range(0, self._width, slice_bits)):
            bits = min(slice_bits, self._width - lsb)
            mem = Memory(shape=bits, depth=depth, init=[], attrs={"no_rw_check": 1})
            m.submodules[f"mem{n}"] = mem
            write_ports.append((lsb, bits, mem.write_port()))
            read_ports.append((lsb, bits, mem.read_port(domain="comb")))

        wr_ptr = Signal(addr_bits)          # next word to write
        committed = Signal(addr_bits)       # where the frame being written began
        m.d.comb += self.w_addr.eq(wr_ptr)

        # The memory is written a clock late, from registers: ``w_en`` comes from the writer's
        # decisions of the clock and would otherwise drive the write enables of every block RAM.
        # A frame is committed with (or after) its last word, and a reader asks for it only
        # after its record went through at least a register, so no read meets a late write.
        write_addr = Signal(addr_bits)
        write_data = Signal(self._width, reset_less=True)
        write_en = Signal()
        m.d.sync += [write_addr.eq(wr_ptr), write_data.eq(self.w_data), write_en.eq(self.w_en)]
        for lsb, bits, wp in write_ports:
            m.d.comb += [
                wp.addr.eq(write_addr),
                wp.data.eq(write_data[lsb:lsb + bits]),
                wp.en.eq(write_en),
            ]
        wr_next = Signal(addr_bits)
        m.d.comb += wr_next.eq(Mux(self.w_en, wr_ptr + 1, wr_ptr))
        with m.If(self.w_abort):
            m.d.sync += wr_ptr.eq(committed)
        with m.Else():
            m.d.sync += wr_ptr.eq(wr_next)
        with m.If(self.w_commit):
            m.d.sync += committed.eq(wr_next)

        # ``w_free`` is a register kept by increments: the writer compares it in the same clock
        # as it decides to write, so it must start from flip-flops. ``uncommitted`` is what an
        # abort gives back.
        free = Signal(range(depth + 1), init=depth)
        uncommitted = Signal(range(depth + 1))
        m.d.comb += self.w_free.eq(free)
        with m.If(self.w_abort):
            m.d.sync += [free.eq(free + uncommitted + self.free_words), uncommitted.eq(0)]
        with m.Else():
            m.d.sync += free.eq(free + self.free_words - self.w_en)
            with m.If(self.w_commit):
                m.d.sync += uncommitted.eq(0)
            with m.Else():
                m.d.sync += uncommitted.eq(uncommitted + self.w_en)

        # Read side: request registers -> memory -> data register -> prefetch FIFO -> r. A word
        # is issued only when the prefetch FIFO has room for it and for the two still in flight.
        # The memory reads ``rd_ptr`` every clock; only an issued read's data goes on.
        m.submodules.prefetch = prefetch = SyncFIFO(width=self._width + 1, depth=_PREFETCH_DEPTH)
        rd_ptr = Signal(addr_bits)
        left = Signal(addr_bits + 1)        # words of the current request not yet issued
        read_data = Signal(self._width, reset_less=True)
        for n, (lsb, bits, rp) in enumerate(read_ports):
            ram_out = Signal(bits, name=f"ram_out{n}")     # the block RAM's own read register
            m.d.comb += rp.addr.eq(rd_ptr)
            m.d.sync += [ram_out.eq(rp.data), read_data[lsb:lsb + bits].eq(ram_out)]
        in_flight = Signal(2)               # issued reads in the memory / in ``read_data``
        last_flight = Signal(2)             # ... and whether each is its request's last word
        issue = Signal()
        room = Signal()
        m.d.comb += [
            room.eq(prefetch.w_level + in_flight[0] + in_flight[1] < _PREFETCH_DEPTH),
            issue.eq((left != 0) & room),
            self.r_req.ready.eq((left == 0) | ((left == 1) & room)),
            prefetch.w_data.eq(Cat(read_data, last_flight[1])),
            prefetch.w_en.eq(in_flight[1]),
        ]
        m.d.sync += [
            in_flight.eq(Cat(issue, in_flight[0])),
            last_flight.eq(Cat(issue & (left == 1), last_flight[0])),
        ]
        with m.If(self.r_req.valid & self.r_req.ready):
            m.d.sync += [rd_ptr.eq(self.r_req.payload.addr), left.eq(self.r_req.payload.words)]
        with m.Elif(issue):
            m.d.sync += [rd_ptr.eq(rd_ptr + 1), left.eq(left - 1)]

        out = data.View(StoreWord(self._width), prefetch.r_data)
        m.d.comb += [
            self.r.payload.data.eq(out.data),
            self.r.payload.last.eq(out.last),
            self.r.valid.eq(prefetch.r_rdy),
            prefetch.r_en.eq(self.r.ready),
        ]
        return m
