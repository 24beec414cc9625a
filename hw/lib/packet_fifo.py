"""A FIFO of whole frames: beats are written speculatively and either committed or taken back.

Ref: docs/host_interface.md (slow-path receive: frames are dropped whole, never in part).

The reader sees only committed beats, so a frame the writer gives up on half-way (packet buffer
full, oversize) vanishes without trace. The storage is simple dual-port block RAM; its two-clock
read latency (the block RAM, then a data register) is hidden by a 4-entry prefetch FIFO, so the
read side streams a beat every clock.
"""

from amaranth import Cat, Module, Mux, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.fifo import SyncFIFO
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

__all__ = ["PacketFifo"]

_PREFETCH_DEPTH = 4
_BLOCK_RAM_BITS = 16384


class PacketFifo(wiring.Component):
    """Beats of whole frames in block RAM.

    Members
    -------
    w_data, w_en : In
        Write one beat this clock (the writer checks ``w_free`` first).
    w_commit : In(1)
        Make every beat written so far, including one written this clock, visible to the reader.
    w_abort : In(1)
        Forget the beats written since the last commit (not together with ``w_en``).
    w_free : Out
        Beats that can still be written, uncommitted beats counted as used.
    r : Out(stream.Signature(width))
        Committed beats, in order.
    """

    def __init__(self, *, width, depth):
        if depth & (depth - 1):
            raise ValueError(f"depth must be a power of 2, not {depth}")
        self._width = width
        self._depth = depth
        super().__init__({
            "w_data": In(width),
            "w_en": In(1),
            "w_commit": In(1),
            "w_abort": In(1),
            "w_free": Out(range(depth + 1)),
            "r": Out(stream.Signature(width)),
        })

    def elaborate(self, platform):
        m = Module()
        depth = self._depth
        ptr_bits = depth.bit_length()      # one more bit than the address: full != empty

        # The storage is cut into slices of at most 16 Kbit (one ECP5 DP16KD each: 4 bits wide at
        # a depth of 4096, 8 at 2048, ...), so that each block RAM drives its own bits of the word
        # straight into a register: no multiplexer between block RAMs of different addresses after
        # the block RAM's slow clock-to-out (4.3 ns: yosys leaves its output register unused).
        # An issued read never hits the entry being written (it reads a committed one, writes go
        # past them; other reads are discarded), so the memories are marked ``no_rw_check``:
        # without it yosys wraps them in collision logic between the address and the data. (The
        # read port is asynchronous with a register after it, which yosys merges into the block
        # RAM: the attribute is honoured only then.)
        slice_bits = max(1, min(self._width, _BLOCK_RAM_BITS // depth))
        write_ports, read_ports = [], []
        for n, lsb in enumerate(range(0, self._width, slice_bits)):
            bits = min(slice_bits, self._width - lsb)
            mem = Memory(shape=bits, depth=depth, init=[], attrs={"no_rw_check": 1})
            m.submodules[f"mem{n}"] = mem
            write_ports.append((lsb, bits, mem.write_port()))
            read_ports.append((lsb, bits, mem.read_port(domain="comb")))

        wr_ptr = Signal(ptr_bits)           # next beat to write
        committed = Signal(ptr_bits)        # beats before this are the reader's
        rd_ptr = Signal(ptr_bits)           # next beat to read out of the memory

        # The memory is written a clock late, from registers: ``w_en`` comes from the writer's
        # decisions of the clock and would otherwise drive the write enables of every block RAM.
        # The reader sees a commit a clock late too (``readable``), so it never reads an entry
        # before its write. The counters' sums come from registers; ``w_en`` only selects.
        write_addr = Signal(ptr_bits - 1)
        write_data = Signal(self._width, reset_less=True)
        write_en = Signal()
        m.d.sync += [write_addr.eq(wr_ptr), write_data.eq(self.w_data), write_en.eq(self.w_en)]
        for lsb, bits, wp in write_ports:
            m.d.comb += [
                wp.addr.eq(write_addr),
                wp.data.eq(write_data[lsb:lsb + bits]),
                wp.en.eq(write_en),
            ]
        wr_next = Signal(ptr_bits)
        m.d.comb += wr_next.eq(Mux(self.w_en, wr_ptr + 1, wr_ptr))
        readable = Signal(ptr_bits)         # ``committed`` a clock late
        m.d.sync += readable.eq(committed)
        with m.If(self.w_abort):
            m.d.sync += wr_ptr.eq(committed)
        with m.Else():
            m.d.sync += wr_ptr.eq(wr_next)
        with m.If(self.w_commit):
            m.d.sync += committed.eq(wr_next)

        # ``w_free`` is a register kept by increments, not ``depth - (wr_ptr - freed)``: the writer
        # compares it in the same clock as it decides to write, so it must start from flip-flops.
        # ``uncommitted`` (``wr_ptr - committed``) is what an abort gives back.
        free = Signal(range(depth + 1), init=depth)
        uncommitted = Signal(range(depth + 1))
        r_take = Signal()
        m.d.comb += self.w_free.eq(free)
        with m.If(self.w_abort):
            m.d.sync += [free.eq(free + uncommitted + r_take), uncommitted.eq(0)]
        with m.Else():
            m.d.sync += free.eq(Mux(self.w_en, Mux(r_take, free, free - 1),
                                    Mux(r_take, free + 1, free)))
            with m.If(self.w_commit):
                m.d.sync += uncommitted.eq(0)
            with m.Else():
                m.d.sync += uncommitted.eq(Mux(self.w_en, uncommitted + 1, uncommitted))

        # Read side: memory -> data register -> prefetch FIFO -> r. A read is issued only when the
        # prefetch FIFO has room for it and for the two still in flight. The memory reads
        # ``rd_ptr`` every clock (its read enable is not ``issue``: that compare would drive the
        # enables of every block RAM); only an issued read's data goes into the prefetch FIFO.
        m.submodules.prefetch = prefetch = SyncFIFO(width=self._width, depth=_PREFETCH_DEPTH)
        read_data = Signal(self._width, reset_less=True)
        for n, (lsb, bits, rp) in enumerate(read_ports):
            ram_out = Signal(bits, name=f"ram_out{n}")     # the block RAM's own read register
            m.d.comb += rp.addr.eq(rd_ptr)
            m.d.sync += [ram_out.eq(rp.data), read_data[lsb:lsb + bits].eq(ram_out)]
        in_flight = Signal(2)               # issued reads in the memory / in ``read_data``
        issue = Signal()
        m.d.comb += [
            issue.eq((rd_ptr != readable)
                     & (prefetch.w_level + in_flight[0] + in_flight[1] < _PREFETCH_DEPTH)),
            prefetch.w_data.eq(read_data),
            prefetch.w_en.eq(in_flight[1]),
        ]
        m.d.sync += in_flight.eq(Cat(issue, in_flight[0]))
        with m.If(issue):
            m.d.sync += rd_ptr.eq(rd_ptr + 1)

        m.d.comb += [
            self.r.payload.eq(prefetch.r_data),
            self.r.valid.eq(prefetch.r_rdy),
            prefetch.r_en.eq(self.r.ready),
        ]
        m.d.comb += r_take.eq(self.r.valid & self.r.ready)
        return m
