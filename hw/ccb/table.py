"""CCB hash-lookup table: TCP 4-tuple -> ``conn_nbr`` + state, one lookup per clock.

Ref: SPEC §3 (CCB table), issue 9. Design and figures: docs/ccb_table.md. Golden model (the
normative algorithm, reproduced here step by step): sim/reference/ccb_table.py.

Organisation. Two banks of ``buckets`` buckets of ``ways`` 36-bit fingerprint entries
(``valid | d | fp | conn_nbr``, one block RAM column per way and bank), a key store indexed by
``conn_nbr`` (``key_lo``: family, the low 32 bits of both addresses and the ports, every
conn_nbr; ``key_hi``: bits 127:32 of both addresses, IPv6-capable conn_nbrs only), a state
store, and a stash of ``stash`` full keys in registers.

Lookup pipeline. A lookup (or a command's find) is hashed by one SipHash-c-d core over the
36-byte message (IPv4 addresses IPv4-mapped); the request waits in a ring (distributed RAM,
written every clock, read at a plain pointer). After the core, a fixed pipeline with no stall:

- Q: the hash and its ring entry registered (no enable); the command unit's read flag.
- P0: bucket addresses ``b0``, ``b1`` to the banks' read ports; the 8 stash slots compared with
  the tuple in 16-bit chunks (registered). The clock edge that ends P0 is the lookup's *view*:
  it sees the buckets and the stash as every command left them before that edge.
- P1, L1: bucket words into the block RAMs' output registers (hw/lib/bram.py), then the
  compare registers; stash chunk results ANDed in two steps.
- P2: tag compares (8 ways); stash hit, slot, conn_nbr.
- P3: first match (bank 0 first, lowest way), its conn_nbr (or the stash's).
- P4: key store and state store read at that conn_nbr.
- P5, L5: their words through the output registers, then the compare registers.
- P6: key compare in chunks (registered). P7: the chunks ANDed (key equal).
- P8: hit = stash hit | (tag match & key equal). P9: the result goes to the output FIFO, or a
  find's to the command unit.

Commands. One at a time: the find goes through the hash core (it takes one lookup slot: the
lookup stream's ``ready`` is low on that clock); every bucket read the command unit needs
(the start of a cuckoo walk and each kick, each stash entry a delete's drain examines) takes
the banks' read port at P0 for one clock, holding the hash core's output for that clock.
Every write goes through two registers (``_WRITE_DELAY``); a command takes effect at its last
table write (``commit``) and its answer is valid from the next clock. After a reset the table
clears its block RAMs before it takes anything (docs/ccb_table.md, Reset).
"""

from amaranth import Array, C, Cat, Const, Module, Mux, Signal, Value
from amaranth.lib import data, stream, wiring
from amaranth.lib.fifo import SyncFIFOBuffered
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from ..lib.bram import DP16KD_MODES, BlockRam
from ..lib.siphash import SipHash
from .layouts import (
    CONN_NBR_BITS,
    CcbCommand,
    CcbCounters,
    CcbLookup,
    CcbOpcode,
    CcbResponse,
    CcbResult,
    CcbStatus,
    CcbTuple,
    ccb_entry_layout,
)

__all__ = ["CcbTable", "LFSR_TAPS", "LFSR_RESET"]

#: The kick LFSR (16-bit Galois), as the model's.
LFSR_TAPS, LFSR_RESET = 0xB400, 0xACE1

#: Hash message bytes: src and dst as 16-byte addresses, two ports.
MESSAGE_BYTES = 36

#: Copies of the command register's load enable (one per chunk of its bits).
_CMD_COPIES = 8

#: Bits compared per chunk in the first stage of a wide compare.
_CHUNK = 16

#: Clocks from the hash leaving the core to the result written into the output FIFO (Q, P0..P8).
_PIPE_STAGES = 13

#: Clocks a write into SyncFIFOBuffered takes to be readable.
_FIFO_LATENCY = 2


#: Clocks from a write requested by the command unit to the clock edge that writes it: one
#: register by the command unit, one by the memory it goes to (they may be far apart).
_WRITE_DELAY = 2


class _WriteRequest:
    """A memory port's signals as plain attributes: ``addr``, ``data`` and, for a write port,
    ``en`` (a write port's request, registered ``_WRITE_DELAY`` times before the memory, or the
    read and write ports of a ``BlockRam`` or ``_SlicedMemory``)."""


def _bram_slice_bits(depth):
    """The widest ECP5 DP16KD configuration holding ``depth`` words (one block RAM, no
    output multiplexer), e.g. 4096 x 4, 1024 x 18; None when no single block RAM holds them
    (a 64K table: no slicing then)."""
    fitting = [bits for bits, words in DP16KD_MODES if depth <= words]
    return max(fitting) if fitting else None


class _SlicedMemory:
    """One logical memory as slices of the width that makes each slice one block RAM
    configuration with nothing between its output and the register that takes it (a deeper,
    wider mapping puts a multiplexer and a second route after the block RAM's slow output).

    ``read_port()`` and ``write_port()`` return objects with ``addr``, ``data`` (and ``en``)
    like a Memory's ports; ``memories`` lists ``(low bit, width, Memory)`` for testbenches.
    """

    def __init__(self, m, name, width, depth, init=None, platform=None):
        self.width, self.depth = width, depth
        bits = _bram_slice_bits(depth) or width
        self.memories = []
        self._rams = []
        for index, low in enumerate(range(0, width, bits)):
            w = min(bits, width - low)
            if init is None:
                # No initial contents: a BlockRam (DP16KD with its output register on ECP5).
                ram = BlockRam(m, f"{name}_{index}", w, depth, platform)
                self._rams.append((low, w, ram))
                memory = ram.memory
            else:
                values = [(v >> low) & ((1 << w) - 1) for v in init]
                memory = Memory(shape=w, depth=depth, init=values)
                m.submodules[f"{name}_{index}"] = memory
            self.memories.append((low, w, memory))
        self._m, self._name = m, name

    def read_port(self):
        port = _WriteRequest()
        port.addr = Signal(range(self.depth), name=f"{self._name}_rd_addr")
        if self._rams:
            self._m.d.comb += [ram.r_addr.eq(port.addr) for _, _, ram in self._rams]
            port.data = Cat(*(ram.r_data for _, _, ram in self._rams))
        else:
            ports = [memory.read_port() for _, _, memory in self.memories]
            self._m.d.comb += [p.addr.eq(port.addr) for p in ports]
            port.data = Cat(*(p.data for p in ports))
        return port

    def write_port(self):
        port = _WriteRequest()
        port.addr = Signal(range(self.depth), name=f"{self._name}_wr_addr")
        port.data = Signal(self.width, name=f"{self._name}_wr_data")
        port.en = Signal(name=f"{self._name}_wr_en")
        if self._rams:
            for low, w, ram in self._rams:
                self._m.d.comb += [ram.w_addr.eq(port.addr), ram.w_data.eq(port.data[low:low + w]),
                                   ram.w_en.eq(port.en)]
        else:
            for low, w, memory in self.memories:
                p = memory.write_port()
                self._m.d.comb += [p.addr.eq(port.addr), p.data.eq(port.data[low:low + w]),
                                   p.en.eq(port.en)]
        return port

    def sim_set(self, ctx, index, value):
        for low, w, memory in self.memories:
            ctx.set(memory.data[index], (value >> low) & ((1 << w) - 1))

    def sim_get(self, ctx, index):
        return sum(ctx.get(memory.data[index]) << low for low, _, memory in self.memories)


def _stages(m, value, clocks, name, *, data=False):
    """``[value, value a clock later, ...]``: ``clocks`` registers in a row (reset to 0;
    ``data``: no reset)."""
    stages = [value]
    for i in range(clocks):
        reg = Signal(len(Value.cast(value)), name=f"{name}_d{i + 1}", reset_less=data)
        m.d.sync += reg.eq(stages[-1])
        stages.append(reg)
    return stages


def _delayed(m, value, clocks, name, *, data=False):
    """``value`` through ``clocks`` registers."""
    return _stages(m, value, clocks, name, data=data)[-1]


def _any(values):
    result = values[0]
    for value in values[1:]:
        result = result | value
    return result


def _chunks_equal(a, b):
    """Per-chunk equality of two equal-width values: a list of 1-bit values."""
    assert len(a) == len(b)
    return [a[i:i + _CHUNK] == b[i:i + _CHUNK] for i in range(0, len(a), _CHUNK)]


def _message(t):
    """The 36-byte hash message of a (normalised) tuple, byte 0 in bits 7:0: both addresses
    as 16 network-order bytes (IPv4 as ``::ffff:a.b.c.d``), then the ports, network order."""
    mapped = C(0xFFFF << 32, 128)

    def address(value):
        full = Mux(t.ipv6, value, mapped | value[:32])
        return [full.word_select(15 - k, 8) for k in range(16)]

    return Cat(*address(t.src), *address(t.dst), t.sport[8:], t.sport[:8], t.dport[8:],
               t.dport[:8])


def _normalised(m, t, name):
    """``t`` with bits 127:32 of IPv4 addresses cleared, as a new signal."""
    out = Signal(CcbTuple, name=name)
    m.d.comb += [
        out.eq(t),
        out.src.eq(Mux(t.ipv6, t.src, t.src[:32])),
        out.dst.eq(Mux(t.ipv6, t.dst, t.dst[:32])),
    ]
    return out


def _lowest(bits):
    """(any, index of the lowest set bit) of a list of 1-bit values."""
    index = Const(0, max(1, (len(bits) - 1).bit_length()))
    for i in reversed(range(len(bits))):
        index = Mux(bits[i], i, index)
    any_ = bits[0]
    for b in bits[1:]:
        any_ = any_ | b
    return any_, index


def _or_select(selects, values):
    """OR of the ``values`` whose select bit is set (a one-hot multiplexer)."""
    result = 0
    for select, value in zip(selects, values):
        result = result | Mux(select, value, 0)
    return result


def _popcount(bits):
    total = Const(0, len(bits).bit_length())
    for b in bits:
        total = total + b
    return total


class CcbTable(wiring.Component):
    """The CCB table: lookup stream, command stream, counters.

    Parameters
    ----------
    entries : int
        Bucket slots and conn_nbrs (a power of two, at most 65536).
    ways : int
        Entries per bucket (a power of two, at least 2); two banks.
    stash : int
        Stash slots (full keys in registers), at least 1.
    max_kicks : int
        Longest cuckoo walk, at least 1.
    ipv6_entries : int or None
        conn_nbrs ``0 .. ipv6_entries - 1`` can hold an IPv6 key (default: a quarter).
    fp_bits : int or None
        Fingerprint bits (default: what fills an entry to 36 bits, at least 6; the model's).
    c_rounds, d_rounds : int
        SipRounds of the hash (SipHash-1-3 by default).

    Members
    -------
    lookup : In(stream.Signature(CcbLookup))
        One request accepted per clock while ``result`` is taken; ``ready`` is low on a clock a
        command's find takes (and when the pipeline is full because ``result`` is not taken).
    result : Out(stream.Signature(CcbResult))
        Results in request order, :attr:`latency` clocks after acceptance with no stall.
    command : In(stream.Signature(CcbCommand))
        One command at a time: ``ready`` while no command is held (the previous one done,
        its delete drain included); it starts once the previous answer was taken.
    response : Out(stream.Signature(CcbResponse))
        One answer per command, valid from the clock after the command's commit.
    counters : Out(CcbCounters)

    Attributes
    ----------
    latency : int
        Clocks from a lookup accepted to its result valid (no stall).
    view_delay : int
        Clocks from a lookup accepted to the clock edge of its view (no stall, no slot taken).
    sim_handles : dict
        For testbenches, set by ``elaborate``: the memories (``banks[bank][way]``, ``key_lo``,
        ``key_hi``, ``state``, ``pools``), the stash registers, the kick LFSR, the entry count
        and ``view`` (a lookup's view is this clock's edge), to compare placement with the
        model and to load a state into the table (``CcbTableBench.load``).
    """

    def __init__(self, entries=4096, *, ways=4, stash=8, max_kicks=128, ipv6_entries=None,
                 fp_bits=None, c_rounds=1, d_rounds=3):
        def integer(name, value, low):
            if not isinstance(value, int) or isinstance(value, bool) or value < low:
                raise ValueError(f"{name} must be an integer >= {low}, not {value!r}")
        integer("entries", entries, 8)
        integer("ways", ways, 2)
        integer("stash", stash, 1)
        integer("max_kicks", max_kicks, 1)
        for name, value in (("entries", entries), ("ways", ways)):
            if value & (value - 1):
                raise ValueError(f"{name} must be a power of two, not {value}")
        if entries > 1 << CONN_NBR_BITS:
            raise ValueError(f"entries must be at most {1 << CONN_NBR_BITS}, not {entries}")
        buckets = entries // (2 * ways)
        if buckets < 2:
            raise ValueError("entries must hold at least two buckets of ways per bank")
        ipv6_entries = entries // 4 if ipv6_entries is None else ipv6_entries
        integer("ipv6_entries", ipv6_entries, 1)
        if ipv6_entries > entries:
            raise ValueError(f"ipv6_entries must be at most entries ({entries})")
        self._index_bits = buckets.bit_length() - 1
        self._conn_bits = (entries - 1).bit_length()
        if fp_bits is None:
            fp_bits = min(32, max(6, 36 - 1 - self._conn_bits - self._index_bits))
        integer("fp_bits", fp_bits, 1)
        if fp_bits > 32:
            raise ValueError(f"fp_bits must be at most 32, not {fp_bits}")
        self._entries, self._ways, self._buckets = entries, ways, buckets
        self._stash, self._max_kicks, self._ipv6_entries = stash, max_kicks, ipv6_entries
        self._fp_bits = fp_bits
        # No tag through the core: its output FIFO's register would load ~300 bits on one
        # enable (routed at 66 MHz); the request waits in the table's own ring instead.
        # Its output FIFO unbuffered: the Q stage registers the hash, so o.ready moves a pointer
        # only, not a 64-bit load enable.
        self._hash = SipHash(message_bytes=MESSAGE_BYTES, c_rounds=c_rounds, d_rounds=d_rounds,
                             buffered_output=False)
        self._c_rounds, self._d_rounds = c_rounds, d_rounds
        super().__init__({
            "lookup": In(stream.Signature(CcbLookup)),
            "result": Out(stream.Signature(CcbResult)),
            "command": In(stream.Signature(CcbCommand)),
            "response": Out(stream.Signature(CcbResponse)),
            "counters": Out(CcbCounters),
        })

    entries = property(lambda self: self._entries)
    ways = property(lambda self: self._ways)
    buckets = property(lambda self: self._buckets, doc="Buckets per bank.")
    stash = property(lambda self: self._stash)
    max_kicks = property(lambda self: self._max_kicks)
    ipv6_entries = property(lambda self: self._ipv6_entries)
    fp_bits = property(lambda self: self._fp_bits)
    c_rounds = property(lambda self: self._c_rounds)
    d_rounds = property(lambda self: self._d_rounds)

    @property
    def ring_layout(self):
        """What waits in the request ring while the hash core hashes its tuple."""
        return data.StructLayout({"find": 1, "tuple": CcbTuple, "tag": 16})

    @property
    def entry_layout(self):
        return ccb_entry_layout(self._index_bits, self._fp_bits, self._conn_bits)

    @property
    def hash_latency(self):
        return self._hash.latency

    @property
    def view_delay(self):
        return self._hash.latency + 2

    @property
    def latency(self):
        return self._hash.latency + _PIPE_STAGES - 1 + _FIFO_LATENCY

    @property
    def result_fifo_depth(self):
        return _PIPE_STAGES + _FIFO_LATENCY + 2

    def elaborate(self, platform):
        m = Module()
        W, k, cb, fb = self._ways, self._index_bits, self._conn_bits, self._fp_bits
        wb = (W - 1).bit_length()
        S = self._stash
        entry = self.entry_layout
        ebits = entry.size

        # --- hash core and its arbiter -------------------------------------------------------
        m.submodules.hash = hasher = self._hash
        table_key = Signal(128)
        # After a reset the block RAMs still hold the old table: until ``clearing`` falls the
        # table writes it empty (below) and takes no lookup and starts no command.
        clearing = Signal(init=1)
        clear_clocks = max(2 * self._buckets, self._ipv6_entries,
                           self._entries - self._ipv6_entries)
        clear_addr = Signal(range(clear_clocks))
        m.d.comb += hasher.key.eq(table_key)

        find_req = Signal()         # the command unit's find offers the hash input (register)
        cmd = Signal(CcbCommand, reset_less=True)   # the command being executed (normalised)
        set_state_cmd = Signal()    # cmd is a SET_STATE, registered
        m.d.sync += set_state_cmd.eq(cmd.opcode == CcbOpcode.SET_STATE)
        key_we = Signal()           # SET_KEY accepted: the key loads on the next edge
        m.d.sync += key_we.eq(0)
        with m.If(key_we):
            m.d.sync += table_key.eq(cmd.key)
        lookup_tuple = _normalised(m, self.lookup.payload.tuple, "lookup_tuple")
        # The find's message, registered (cmd is stable from the clock before FIND).
        cmd_message = Signal(8 * MESSAGE_BYTES, reset_less=True)
        m.d.sync += cmd_message.eq(_message(cmd.tuple))
        hash_tuple = Signal(CcbTuple)
        m.d.comb += [
            hash_tuple.eq(Mux(find_req, cmd.tuple.as_value(), lookup_tuple.as_value())),
            hasher.i.valid.eq(find_req | (self.lookup.valid & ~clearing)),
            hasher.i.payload.message.eq(Mux(find_req, cmd_message, _message(lookup_tuple))),
            self.lookup.ready.eq(hasher.i.ready & ~find_req & ~clearing),
        ]
        # The request ring: each request accepted by the core, in order (the core keeps order
        # and holds at most ``fifo_depth``); read one clock ahead of its hash (a register with
        # no enable, nothing wide on one control net).
        ring_depth = 1 << (self._hash.fifo_depth).bit_length()
        m.submodules.ring = ring = Memory(shape=self.ring_layout, depth=ring_depth, init=[])
        ring_wr = ring.write_port()
        ring_rd = ring.read_port(domain="comb")
        ring_wp = Signal(range(ring_depth))
        ring_rp = Signal(range(ring_depth))
        m.d.comb += [
            ring_wr.addr.eq(ring_wp),
            # Written every clock (no enable net across the ring); the pointer moves on an
            # accepted request, and the ring never holds more than the core (fifo_depth < depth).
            ring_wr.en.eq(1),
            ring_wr.data.find.eq(find_req),
            ring_wr.data.tuple.eq(hash_tuple),
            ring_wr.data.tag.eq(self.lookup.payload.tag),
        ]
        with m.If(hasher.i.valid & hasher.i.ready):
            m.d.sync += ring_wp.eq(ring_wp + 1)

        # --- memories ----------------------------------------------------------------------
        # Bucket ways and key store: block RAMs with their output register (read data two
        # edges after the address; hw/lib/bram.py).
        banks_rd, banks_wr, bank_rams = [], [], []
        for bank in range(2):
            rd, wr, rams = [], [], []
            for way in range(W):
                ram = BlockRam(m, f"bank{bank}_way{way}", ebits, self._buckets, platform)
                rd_port, wr_port = _WriteRequest(), _WriteRequest()
                rd_port.addr, rd_port.data = ram.r_addr, ram.r_data
                wr_port.addr, wr_port.data, wr_port.en = ram.w_addr, ram.w_data, ram.w_en
                rd.append(rd_port)
                wr.append(wr_port)
                rams.append(ram.memory)
            banks_rd.append(rd)
            banks_wr.append(wr)
            bank_rams.append(rams)
        self.sim_handles = {"banks": bank_rams}
        key_lo_bits, key_hi_bits = 97, 192
        key_lo = _SlicedMemory(m, "key_lo", key_lo_bits, self._entries, platform=platform)
        key_hi = _SlicedMemory(m, "key_hi", key_hi_bits, self._ipv6_entries, platform=platform)
        state_mem = _SlicedMemory(m, "state", 2, self._entries, platform=platform)
        def registered(port, name, clocks=_WRITE_DELAY):
            # A write port driven through _WRITE_DELAY registers: the FSM's request (addr,
            # data, en) this clock is written on the edge _WRITE_DELAY clocks later.
            request = _WriteRequest()
            for field in ("addr", "data", "en"):
                signal = Signal.like(getattr(port, field), name=f"{name}_{field}")
                setattr(request, field, signal)
                m.d.sync += getattr(port, field).eq(_delayed(
                    m, signal, clocks - 1, f"{name}_{field}", data=field != "en"))
            return request

        key_lo_rd = key_lo.read_port()
        key_hi_rd = key_hi.read_port()
        state_rd = state_mem.read_port()
        key_lo_wr = registered(key_lo.write_port(), "key_lo_wr")
        key_hi_wr = registered(key_hi.write_port(), "key_hi_wr")
        state_wr = registered(state_mem.write_port(), "state_wr")

        def key_lo_of(t):
            return Cat(t.src[:32], t.dst[:32], t.sport, t.dport, t.ipv6)

        def key_hi_of(t):
            return Cat(t.src[32:], t.dst[32:])

        # Stash, in registers.
        st_valid = Signal(S)
        st_key = [Signal(CcbTuple, name=f"stash{s}_key", reset_less=True) for s in range(S)]
        st_conn = [Signal(cb, name=f"stash{s}_conn", reset_less=True) for s in range(S)]
        st_b0 = [Signal(k, name=f"stash{s}_b0", reset_less=True) for s in range(S)]
        st_b1 = [Signal(k, name=f"stash{s}_b1", reset_less=True) for s in range(S)]
        st_fp = [Signal(fb, name=f"stash{s}_fp", reset_less=True) for s in range(S)]

        # --- lookup pipeline ---------------------------------------------------------------
        cmd_read = Signal()         # the command unit reads buckets this clock (P0 slot)
        cmd_b0 = Signal(k)          # registers, set with cmd_read
        cmd_b1 = Signal(k)
        fifo_depth = self.result_fifo_depth
        m.submodules.results = results = SyncFIFOBuffered(
            width=data.Layout.cast(CcbResult).size, depth=fifo_depth)
        in_flight = Signal(range(fifo_depth + 1))
        credit = Signal(init=1)     # in_flight != fifo_depth, registered
        m.d.comb += hasher.o.ready.eq(~cmd_read & credit)
        h = hasher.o.payload
        take = Signal()
        m.d.comb += take.eq(hasher.o.valid & hasher.o.ready)
        # Q: the hash and its request (the ring read at a plain register), registered with no
        # enable; the command unit's read slot rides along.
        m.d.comb += ring_rd.addr.eq(ring_rp)
        m.d.sync += ring_rp.eq(ring_rp + take)
        q_take, q_read = Signal(), Signal()
        q_hash = Signal(32 + fb, reset_less=True)
        request = Signal(self.ring_layout, reset_less=True)
        m.d.sync += [q_take.eq(take), q_read.eq(cmd_read), q_hash.eq(h.hash[:32 + fb]),
                     request.eq(ring_rd.data)]

        # P0
        p0_b0, p0_b1 = q_hash[0:k], q_hash[16:16 + k]
        for bank, addr in ((0, Mux(q_read, cmd_b0, p0_b0)), (1, Mux(q_read, cmd_b1, p0_b1))):
            for way in range(W):
                m.d.comb += banks_rd[bank][way].addr.eq(addr)
        s1_lookup = Signal()
        s1_find = Signal()
        s1_tuple = Signal(CcbTuple, reset_less=True)
        s1_tag = Signal(16, reset_less=True)
        s1_b0 = Signal(k, reset_less=True)
        s1_b1 = Signal(k, reset_less=True)
        s1_fp = Signal(fb, reset_less=True)
        h_tuple = request.tuple
        s1_st_eq = []
        for s in range(S):
            eqs = _chunks_equal(Cat(st_key[s].as_value(), st_valid[s]),
                                Cat(h_tuple.as_value(), C(1, 1)))
            reg = Signal(len(eqs), name=f"s1_stash{s}_eq", reset_less=True)
            m.d.sync += reg.eq(Cat(*eqs))
            s1_st_eq.append(reg)
        s1_st_conn = [Signal(cb, name=f"s1_stash{s}_conn", reset_less=True) for s in range(S)]
        m.d.sync += [a.eq(b) for a, b in zip(s1_st_conn, st_conn)]
        m.d.sync += [
            s1_lookup.eq(q_take & ~request.find),
            s1_find.eq(q_take & request.find),
            s1_tuple.eq(h_tuple),
            s1_tag.eq(request.tag),
            s1_b0.eq(p0_b0),
            s1_b1.eq(p0_b1),
            s1_fp.eq(q_hash[32:32 + fb]),
        ]

        # P1: bucket words registered; stash chunk results ANDed.
        def carry(name, src, width=None):
            reg = Signal(width if width is not None else src.shape(), name=name,
                         reset_less=True)
            m.d.sync += reg.eq(src)
            return reg

        # The block RAM's output (4.3 ns after the clock on ECP5 without its output register)
        # lands in a register of its own that feeds nothing else (L1), so that the register
        # can sit beside the block RAM; everything else waits one clock with it.
        def late(name, src):
            return carry(name, carry(f"{name}_l", src))

        s2_lookup, s2_find = Signal(), Signal()
        l1_lookup, l1_find = Signal(), Signal()
        m.d.sync += [l1_lookup.eq(s1_lookup), l1_find.eq(s1_find),
                     s2_lookup.eq(l1_lookup), s2_find.eq(l1_find)]
        s2_tuple = Signal(CcbTuple, reset_less=True)
        l1_tuple = Signal(CcbTuple, reset_less=True)
        m.d.sync += [l1_tuple.eq(s1_tuple), s2_tuple.eq(l1_tuple)]
        s2_tag = late("s2_tag", s1_tag)
        s2_b0, s2_b1, s2_fp = late("s2_b0", s1_b0), late("s2_b1", s1_b1), late("s2_fp", s1_fp)
        s2_words = [[Signal(entry, name=f"s2_bank{bank}_way{way}", reset_less=True)
                     for way in range(W)] for bank in range(2)]
        for bank in range(2):
            for way in range(W):
                # (the block RAM's output register is the landing register L1)
                m.d.sync += s2_words[bank][way].eq(banks_rd[bank][way].data)
        # The stash's chunk results ANDed in two steps (groups of 4, then the rest).
        l1_st_part = []
        for s_ in range(S):
            eqs = s1_st_eq[s_]
            groups = [eqs[i:i + 4].all() for i in range(0, len(eqs), 4)]
            l1_st_part.append(carry(f"l1_stash{s_}_part", Cat(*groups)))
        s2_st_match = Signal(S, reset_less=True)
        m.d.sync += s2_st_match.eq(Cat(*(part.all() for part in l1_st_part)))
        s2_st_conn = [late(f"s2_stash{s}_conn", s1_st_conn[s]) for s in range(S)]

        # P2: tag compares; stash hit.
        flat = [s2_words[bank][way] for bank in range(2) for way in range(W)]
        s2_d = late("s2_d", s1_b0 ^ s1_b1)
        s3_match = Signal(2 * W, reset_less=True)
        s3_valids = Signal(2 * W, reset_less=True)
        m.d.sync += [
            s3_match.eq(Cat(*((w.valid == 1) & (w.d == s2_d) & (w.fp == s2_fp) for w in flat))),
            s3_valids.eq(Cat(*(w.valid for w in flat))),
        ]
        s3_conns = [carry(f"s3_conn{i}", w.conn_nbr) for i, w in enumerate(flat)]
        st_any, st_index = _lowest([s2_st_match[s] for s in range(S)])
        s3_st_hit = carry("s3_stash_hit", st_any)
        s3_st_slot = carry("s3_stash_slot", st_index, max(1, (S - 1).bit_length()))
        # At most one slot holds a key: the matching slot's conn_nbr by AND-OR, no priority.
        s3_st_conn = carry("s3_stash_conn", _or_select(
            [s2_st_match[s] for s in range(S)], s2_st_conn), cb)
        s3_lookup, s3_find = carry("s3_lookup", s2_lookup), carry("s3_find", s2_find)
        s3_tuple = Signal(CcbTuple, reset_less=True)
        m.d.sync += s3_tuple.eq(s2_tuple)
        s3_tag = carry("s3_tag", s2_tag)
        s3_b0, s3_b1, s3_fp = carry("s3_b0", s2_b0), carry("s3_b1", s2_b1), carry("s3_fp", s2_fp)

        # P3: the first tag match and the conn_nbr to read.
        b_any, b_index = _lowest([s3_match[i] for i in range(2 * W)])
        s4_bucket_hit = carry("s4_bucket_hit", b_any)
        s4_match_index = carry("s4_match_index", b_index, wb + 1)
        # Two tag matches in a pair only ever hold the same conn_nbr (an entry a walk is
        # moving): AND-OR, no priority; the priority index is for a find's delete only.
        s4_conn = carry("s4_conn", Mux(s3_st_hit, s3_st_conn, _or_select(
            [s3_match[i] for i in range(2 * W)], s3_conns)), cb)
        chain = {"lookup": s3_lookup, "find": s3_find, "tag": s3_tag, "b0": s3_b0, "b1": s3_b1,
                 "fp": s3_fp, "st_hit": s3_st_hit, "st_slot": s3_st_slot,
                 "valids": s3_valids}

        def advance(stage, values):
            out = {}
            for name, value in values.items():
                if name in ("lookup", "find"):
                    reg = Signal(name=f"s{stage}_{name}")
                    m.d.sync += reg.eq(value)
                    out[name] = reg
                else:
                    out[name] = carry(f"s{stage}_{name}", value)
            return out

        s4 = advance(4, chain)
        s4_tuple = Signal(CcbTuple, reset_less=True)
        m.d.sync += s4_tuple.eq(s3_tuple)

        # P4: key store and state read at the candidate's conn_nbr.
        m.d.comb += [
            key_lo_rd.addr.eq(s4_conn),
            key_hi_rd.addr.eq(s4_conn),
            state_rd.addr.eq(s4_conn),
        ]
        s5 = advance(5, s4 | {"bucket_hit": s4_bucket_hit, "match_index": s4_match_index,
                              "conn": s4_conn})
        s5_tuple = Signal(CcbTuple, reset_less=True)
        m.d.sync += s5_tuple.eq(s4_tuple)

        # P5: key-store words registered.
        # (their landing registers L5 first, as L1's)
        s6 = advance(6, advance("5l", s5))
        s6_tuple = Signal(CcbTuple, reset_less=True)
        l5_tuple = Signal(CcbTuple, reset_less=True)
        m.d.sync += [l5_tuple.eq(s5_tuple), s6_tuple.eq(l5_tuple)]
        # (read latency 2: the block RAMs' output registers are the landing registers L5)
        s6_key_lo = carry("s6_key_lo", key_lo_rd.data)
        s6_key_hi = carry("s6_key_hi", key_hi_rd.data)
        s6_state = carry("s6_state", state_rd.data)

        # P6: key compare, first stage.
        lo_eq = _chunks_equal(s6_key_lo, key_lo_of(s6_tuple))
        hi_eq = _chunks_equal(s6_key_hi, key_hi_of(s6_tuple))
        s7 = advance(7, s6 | {"state": s6_state})
        s7_lo_eq = carry("s7_lo_eq", Cat(*lo_eq))
        s7_hi_eq = carry("s7_hi_eq", Cat(*hi_eq))
        s7_ipv6 = carry("s7_ipv6", s6_tuple.ipv6)

        # P7: the chunks reduced to one bit, registered.
        s8 = advance(8, s7)
        s8_key_eq = carry("s8_key_eq", s7_lo_eq.all() & (~s7_ipv6 | s7_hi_eq.all()))

        # P8: hit or not.
        s9 = advance(9, s8)
        hit = carry("s9_hit", s8["st_hit"] | (s8["bucket_hit"] & s8_key_eq))
        collision = carry("s9_collision", ~s8["st_hit"] & s8["bucket_hit"] & ~s8_key_eq)

        # P9: the answer.
        answer = Signal(CcbResult)
        m.d.comb += [
            answer.hit.eq(hit),
            answer.state.eq(Mux(hit, s9["state"], 0)),
            answer.conn_nbr.eq(Mux(hit, s9["conn"], 0)),
            answer.tag.eq(s9["tag"]),
            results.w_data.eq(answer),
            results.w_en.eq(s9["lookup"]),
            self.result.valid.eq(results.r_rdy),
            self.result.payload.eq(results.r_data),
            results.r_en.eq(self.result.ready),
        ]
        delivered = self.result.valid & self.result.ready
        in_flight_next = Signal.like(in_flight)
        m.d.comb += in_flight_next.eq(in_flight + take - s9["find"] - delivered)
        m.d.sync += [in_flight.eq(in_flight_next), credit.eq(in_flight_next != fifo_depth)]

        # --- counters ----------------------------------------------------------------------
        counters = self.counters
        count = {name: Signal(name=f"count_{name}") for name in
                 ("inserts", "exists", "insert_full", "deletes", "absent")}
        kicks_add = Signal(range(self._max_kicks + 1))
        used = Signal(range(self._entries + 1))
        table_empty = Signal(init=1)    # used == 0, registered (SET_KEY comes clocks after)
        m.d.sync += table_empty.eq(used == 0)
        c_lookup, c_hit, c_miss = Signal(), Signal(), Signal()     # the P8 result, registered
        m.d.sync += [c_lookup.eq(s9["lookup"]), c_hit.eq(s9["lookup"] & hit),
                     c_miss.eq(s9["lookup"] & ~hit)]
        for name, pulse in count.items():
            m.d.sync += counters[name].eq(counters[name] + _delayed(m, pulse, 1, f"count_{name}"))
        m.d.sync += [
            counters.lookups.eq(counters.lookups + c_lookup),
            counters.hits.eq(counters.hits + c_hit),
            counters.misses.eq(counters.misses + c_miss),
            counters.kicks.eq(counters.kicks + _delayed(m, kicks_add, 1, "kicks_add")),
            counters.stash_used.eq(_popcount([st_valid[s] for s in range(S)])),
            counters.used.eq(used),
        ]

        # --- conn_nbr pools: FIFOs in block RAM, ascending at reset -------------------------
        pools = []
        for name, first, size in (("pool_v6", 0, self._ipv6_entries),
                                  ("pool_v4", self._ipv6_entries,
                                   self._entries - self._ipv6_entries)):
            if size == 0:
                pools.append(None)
                continue
            mem = _SlicedMemory(m, name, cb, size, init=range(first, first + size))
            rd, wr = mem.read_port(), mem.write_port()
            head = Signal(range(size), name=f"{name}_head")
            tail = Signal(range(size), name=f"{name}_tail")
            level = Signal(range(size + 1), name=f"{name}_level", init=size)
            pop, push = Signal(name=f"{name}_pop"), Signal(name=f"{name}_push")
            m.d.comb += [rd.addr.eq(head), wr.addr.eq(tail), wr.en.eq(push)]

            def wrap(ptr, size=size):
                return Mux(ptr == size - 1, 0, ptr + 1)
            with m.If(pop):
                m.d.sync += head.eq(wrap(head))
            with m.If(push):
                m.d.sync += tail.eq(wrap(tail))
            m.d.sync += level.eq(level - pop + push)
            pools.append({"rd": rd, "wr": wr, "level": level, "pop": pop, "push": push,
                          "memory": mem, "head": head, "tail": tail})

        # --- command unit ------------------------------------------------------------------
        # Find results.
        f_found, f_collision = Signal(), Signal()
        f_conn = Signal(cb)
        f_st_hit = Signal()
        f_st_slot = Signal(max(1, (S - 1).bit_length()))
        f_match_index = Signal(wb + 1)
        f_valids = Signal(2 * W)
        f_b0, f_b1, f_fp = Signal(k), Signal(k), Signal(fb)

        # Response.
        resp_valid = Signal()
        resp_status = Signal(CcbStatus)
        resp_conn = Signal(cb)
        m.d.comb += [
            self.response.valid.eq(resp_valid),
            self.response.payload.status.eq(resp_status),
            self.response.payload.conn_nbr.eq(resp_conn),
        ]
        # Every table write is requested by the FSM and done one clock later (the memories'
        # write ports and the stash's enables are registers), so an answer waits one clock in
        # rq_* too: it is valid from the clock after its commit.
        rq_valid = Signal()
        rq_status = Signal(CcbStatus)
        rq_conn = Signal(cb)
        m.d.sync += rq_valid.eq(0)
        rq_valid_stages = _stages(m, rq_valid, _WRITE_DELAY - 1, "rq_valid")
        rq_valid_d = rq_valid_stages[-1]
        rq_busy = _any(rq_valid_stages)     # an answer on its way
        rq_status_d = _delayed(m, rq_status, _WRITE_DELAY - 1, "rq_status", data=True)
        rq_conn_d = _delayed(m, rq_conn, _WRITE_DELAY - 1, "rq_conn", data=True)
        with m.If(rq_valid_d):
            m.d.sync += [resp_valid.eq(1), resp_status.eq(rq_status_d),
                         resp_conn.eq(rq_conn_d)]
        with m.Elif(self.response.valid & self.response.ready):
            m.d.sync += resp_valid.eq(0)

        def respond(status, conn=0):
            m.d.sync += [rq_valid.eq(1), rq_status.eq(status), rq_conn.eq(conn)]

        def finish():
            # Done: RETIRE until the last requested write is done (the stash takes cmd.tuple
            # then), then IDLE, and the next command may come.
            m.next = "RETIRE"

        def answer(status, conn=0, *, counter):
            # A command that ends with its answer and one counter.
            respond(status, conn)
            m.d.comb += count[counter].eq(1)
            finish()

        # Bucket writes: one entry per clock.
        wr_en = Signal()
        wr_bank = Signal()
        wr_bucket = Signal(k)
        wr_way = Signal(wb)
        wr_data = Signal(entry)
        wr_en_a = _delayed(m, wr_en, _WRITE_DELAY - 1, "wr_en")
        wr_bank_a = _delayed(m, wr_bank, _WRITE_DELAY - 1, "wr_bank", data=True)
        wr_way_a = _delayed(m, wr_way, _WRITE_DELAY - 1, "wr_way", data=True)
        wr_bucket_a = _delayed(m, wr_bucket, _WRITE_DELAY - 1, "wr_bucket", data=True)
        wr_data_a = _delayed(m, wr_data, _WRITE_DELAY - 1, "wr_data", data=True)
        for bank in range(2):
            for way in range(W):
                port = banks_wr[bank][way]
                with m.If(clearing):
                    m.d.sync += [port.addr.eq(clear_addr), port.data.eq(0),
                                 port.en.eq(clear_addr < self._buckets)]
                with m.Else():
                    m.d.sync += [
                        port.addr.eq(wr_bucket_a),
                        port.data.eq(wr_data_a),
                        port.en.eq(wr_en_a & (wr_bank_a == bank) & (wr_way_a == way)),
                    ]

        def new_entry(b0, b1, fp, conn):
            value = Signal(entry)
            m.d.comb += [value.valid.eq(1), value.d.eq(b0 ^ b1), value.fp.eq(fp),
                         value.conn_nbr.eq(conn)]
            return value

        # The bucket words of the command unit's last read (P2 registers, bank-major).
        rd_words = flat

        def free_way(valid_bits):
            """The model's step 4 over the pair's valid bits (bank 0 ways, then bank 1's):
            (any free, bank, way)."""
            free0 = [~valid_bits[w] for w in range(W)]
            free1 = [~valid_bits[W + w] for w in range(W)]
            n0, n1 = _popcount(free0), _popcount(free1)
            any0, way0 = _lowest(free0)
            any1, way1 = _lowest(free1)
            bank = n1 > n0
            return any0 | any1, bank, Mux(bank, way1, way0)

        # The new insert's conn_nbr: the family's pool, IPv4 falling back to the IPv6 one.
        v6, v4 = pools
        use_v6 = Signal()
        have_conn = Signal()
        head_conn = Signal(cb)
        v6_level = v6["level"] if v6 else C(0, 1)
        v4_level = v4["level"] if v4 else C(0, 1)
        m.d.comb += [
            use_v6.eq(cmd.tuple.ipv6 | (v4_level == 0)),
            have_conn.eq(Mux(use_v6, v6_level != 0, v4_level != 0)),
        ]
        if v6 and v4:
            # The heads, registered after their block RAM (they change once per insert).
            v6_head, v4_head = Signal(cb, reset_less=True), Signal(cb, reset_less=True)
            m.d.sync += [v6_head.eq(_delayed(m, v6["rd"].data, 1, "v6_head_l", data=True)),
                         v4_head.eq(_delayed(m, v4["rd"].data, 1, "v4_head_l", data=True))]
            m.d.comb += head_conn.eq(Mux(use_v6, v6_head, v4_head))
        else:
            only_head = Signal(cb, reset_less=True)
            m.d.sync += only_head.eq(_delayed(m, (v6 or v4)["rd"].data, 1, "head_l", data=True))
            m.d.comb += head_conn.eq(only_head)
        new_conn = Signal(cb)
        new_v6 = Signal()           # taken from the IPv6-capable pool
        # Key-store and state writes: address and data always these; the FSM sets the enables.
        m.d.comb += [
            key_lo_wr.addr.eq(new_conn), key_lo_wr.data.eq(key_lo_of(cmd.tuple)),
            key_hi_wr.addr.eq(new_conn), key_hi_wr.data.eq(key_hi_of(cmd.tuple)),
            state_wr.addr.eq(Mux(set_state_cmd, f_conn, new_conn)), state_wr.data.eq(cmd.state),
        ]

        # Placement of the new entry (free way, or the walk's first slot).
        pl_bank = Signal()
        pl_bucket = Signal(k)
        pl_way = Signal(wb)
        place_kind = Signal(2)      # 0: bucket slot, 1: stash
        # The stash's lowest free slot, registered (the stash changes tens of clocks before a
        # command looks).
        stash_free_any = Signal()
        stash_free_slot = Signal(max(1, (S - 1).bit_length()))
        free_any_, free_slot_ = _lowest([~st_valid[s] for s in range(S)])
        stash_free_onehot = Signal(S)
        m.d.sync += [stash_free_any.eq(free_any_), stash_free_slot.eq(free_slot_),
                     stash_free_onehot.eq(Cat(*(free_slot_ == s for s in range(S))))]

        # Walk.
        lfsr = Signal(16, init=LFSR_RESET)
        lfsr_next = Signal(16)
        m.d.comb += lfsr_next.eq((lfsr >> 1) ^ Mux(lfsr[0], LFSR_TAPS, 0))
        cur_bank = Signal()
        cur_bucket = Signal(k)
        kicks = Signal(range(self._max_kicks + 1))
        walk_ok = Signal()
        path_layout = data.StructLayout({"bank": 1, "bucket": k, "way": wb, "entry": entry})
        m.submodules.path = path_mem = Memory(shape=path_layout, depth=self._max_kicks + 1,
                                              init=[])
        path_rd, path_wr = path_mem.read_port(), path_mem.write_port()
        path_index = Signal(range(self._max_kicks + 1))
        path_reg = Signal(path_layout)
        uw_last, uw_move = Signal(), Signal()      # UNWIND's conditions, registered
        m.d.comb += path_rd.addr.eq(path_index)
        m.submodules.visited = visited_mem = Memory(shape=W, depth=2 * self._buckets, init=[])
        vis_rd = visited_mem.read_port()
        vis_wr = registered(visited_mem.write_port(), "vis_wr", clocks=1)
        m.d.comb += vis_rd.addr.eq(Cat(cur_bucket, cur_bank))
        vis_reg = Signal(W)
        m.d.sync += vis_reg.eq(vis_rd.data)
        # Registered choices of PREPARE.
        dc_any_free, dc_bank, dc_have_conn = Signal(), Signal(), Signal()
        dc_way = Signal(wb)
        # Registered decisions of WALK_CHECK.
        wc_free = Signal()
        wc_free_way = Signal(wb)
        wc_way = Signal(wb)
        wc_blocked = Signal()
        prev_bank = Signal()
        prev_bucket = Signal(k)
        prev_way = Signal(wb)
        # Drain.
        drain_slot = Signal(S + 1)      # one-hot: the slot the drain looks at; bit S: done
        dr_place = Signal()
        dr_valid = Signal()
        dr_tags = Signal(2 * W)         # DRAIN_CHECK: the pair's entries with the slot's tag
        dr_valids = Signal(2 * W)
        dr_bank = Signal()
        dr_way = Signal(wb)


        command_tuple = _normalised(m, self.command.payload.tuple, "command_tuple")
        insert_entry = new_entry(f_b0, f_b1, f_fp, new_conn)
        dr_b0, dr_b1, dr_fp, dr_conn = Signal(k), Signal(k), Signal(fb), Signal(cb)
        drain_entry = new_entry(dr_b0, dr_b1, dr_fp, dr_conn)
        # The current bucket's words, captured by WALK_CHECK for WALK_STEP.
        cw_words = [Signal(entry, name=f"walk_word{w}") for w in range(W)]
        kicked = Signal(entry)      # the one WALK_STEP kicks, registered by WALK_KICK

        view = Signal()         # a lookup's view: its buckets and stash are read on this edge
        m.d.comb += view.eq(q_take & ~request.find)
        self.sim_handles.update(
            stash_valid=st_valid, stash_key=st_key, stash_conn=st_conn, stash_b0=st_b0,
            stash_b1=st_b1, stash_fp=st_fp, lfsr=lfsr, view=view, used=used, key_lo=key_lo,
            clearing=clearing,
            key_hi=key_hi, state=state_mem,
            pools=[None if pool is None else {name: pool[name] for name in
                                              ("memory", "head", "tail", "level")}
                   for pool in pools])

        m.d.sync += cmd_read.eq(0)      # a one-clock pulse, set by the states that read
        # The command register loads the input every clock while empty. Its ~420 flip-flops
        # take their enable from _CMD_COPIES copies of the "empty" flag (a chunk each, no logic
        # in front); each copy updates from itself, so synthesis keeps them apart.
        loaded = Signal(CcbCommand)
        m.d.comb += [loaded.eq(self.command.payload), loaded.tuple.eq(command_tuple)]
        cmd_bits, loaded_bits = cmd.as_value(), loaded.as_value()
        chunk = -(-len(cmd_bits) // _CMD_COPIES)
        cmd_empties = [Signal(init=1, name=f"cmd_empty{i}") for i in range(_CMD_COPIES)]
        cmd_empty = cmd_empties[0]
        cmd_release = Signal()      # RETIRE: the command register is free from the next clock
        m.d.comb += self.command.ready.eq(cmd_empty)
        for i, empty in enumerate(cmd_empties):
            with m.If(empty):
                m.d.sync += cmd_bits[i * chunk:(i + 1) * chunk].eq(
                    loaded_bits[i * chunk:(i + 1) * chunk])
            with m.If(cmd_release):
                m.d.sync += empty.eq(1)
            with m.Elif(self.command.valid & empty):
                m.d.sync += empty.eq(0)
        # Stash writes, one-hot pulses, on the edge of the bucket writes requested with them:
        # st_we (from KEYS, valid in COMMIT_INSERT) loads the slot _WRITE_DELAY clocks later
        # (st_we_q); st_clear (set by the state that requests it) clears it as st_clear_q.
        retire = Signal(range(_WRITE_DELAY))
        st_we_go = Signal()             # KEYS: the new entry goes to the stash
        st_clear = Signal(S)
        m.d.sync += [st_we_go.eq(0), st_clear.eq(0)]
        st_we = Signal(S)
        m.d.comb += st_we.eq(Mux(st_we_go, stash_free_onehot, 0))
        st_we_q = _delayed(m, st_we, _WRITE_DELAY, "st_we")
        st_clear_stages = _stages(m, st_clear, _WRITE_DELAY - 1, "st_clear")
        st_clear_q = st_clear_stages[-1]
        st_clearing = _any(st_clear_stages)     # slots whose clear is on its way

        with m.FSM(name="command") as command_fsm:
            with m.State("IDLE"):
                # IDLE -- waiting for a command (and for the previous answer to be taken).
                with m.If(~cmd_empty & ~resp_valid & ~rq_busy & ~clearing):
                    with m.If(cmd.opcode == CcbOpcode.SET_KEY):
                        m.next = "SET_KEY"
                    with m.Else():
                        m.d.sync += find_req.eq(1)
                        m.next = "FIND"

            with m.State("RETIRE"):
                # RETIRE -- _WRITE_DELAY - 1 clocks, then the command register is free.
                with m.If(retire == _WRITE_DELAY - 2):
                    m.d.sync += retire.eq(0)
                    m.d.comb += cmd_release.eq(1)
                    m.next = "IDLE"
                with m.Else():
                    m.d.sync += retire.eq(retire + 1)

            with m.State("SET_KEY"):
                # SET_KEY -- only while the table is empty.
                with m.If(table_empty):
                    m.d.sync += key_we.eq(1)
                    respond(CcbStatus.OK)
                with m.Else():
                    respond(CcbStatus.NOT_EMPTY)
                finish()

            with m.State("FIND"):
                # FIND -- the tuple enters the hash core (one lookup slot).
                with m.If(hasher.i.ready):
                    m.d.sync += find_req.eq(0)
                    m.next = "FIND_WAIT"

            with m.State("FIND_WAIT"):
                # FIND_WAIT -- its answer leaves the pipeline at P7.
                with m.If(s9["find"]):
                    m.d.sync += [
                        f_found.eq(hit), f_collision.eq(collision), f_conn.eq(s9["conn"]),
                        f_st_hit.eq(s9["st_hit"]), f_st_slot.eq(s9["st_slot"]),
                        f_match_index.eq(s9["match_index"]), f_valids.eq(s9["valids"]),
                        f_b0.eq(s9["b0"]), f_b1.eq(s9["b1"]), f_fp.eq(s9["fp"]),
                    ]
                    m.next = "PREPARE"

            with m.State("PREPARE"):
                # PREPARE -- the free-way choice and the new conn_nbr, registered.
                any_free, fw_bank, fw_way = free_way(f_valids)
                m.d.sync += [dc_any_free.eq(any_free), dc_bank.eq(fw_bank), dc_way.eq(fw_way),
                             dc_have_conn.eq(have_conn)]
                m.next = "DECIDE"

            with m.State("DECIDE"):
                # DECIDE -- the model's steps 1-5 for an insert; delete and set_state.
                any_free, fw_bank, fw_way, have_conn_ = dc_any_free, dc_bank, dc_way, dc_have_conn
                with m.Switch(cmd.opcode):
                    with m.Case(CcbOpcode.INSERT):
                        m.d.sync += [new_conn.eq(head_conn), new_v6.eq(use_v6)]
                        with m.If(f_found):
                            answer(CcbStatus.EXISTS, f_conn, counter="exists")
                        with m.Elif(~have_conn_):
                            answer(CcbStatus.FULL, counter="insert_full")
                        with m.Elif(f_collision):
                            with m.If(stash_free_any):
                                m.d.sync += place_kind.eq(1)
                                m.next = "KEYS"
                            with m.Else():
                                answer(CcbStatus.FULL, counter="insert_full")
                        with m.Elif(any_free):
                            m.d.sync += [
                                place_kind.eq(0), pl_bank.eq(fw_bank),
                                pl_bucket.eq(Mux(fw_bank, f_b1, f_b0)), pl_way.eq(fw_way),
                            ]
                            m.next = "KEYS"
                        with m.Else():
                            m.d.sync += [cur_bank.eq(0), cur_bucket.eq(f_b0), kicks.eq(0),
                                         cmd_read.eq(1), cmd_b0.eq(f_b0), cmd_b1.eq(f_b0)]
                            m.next = "WALK_READ"
                    with m.Case(CcbOpcode.DELETE):
                        with m.If(~f_found):
                            answer(CcbStatus.ABSENT, counter="absent")
                        with m.Else():
                            m.next = "DELETE"
                    with m.Default():     # SET_STATE
                        with m.If(~f_found):
                            respond(CcbStatus.ABSENT)
                            m.d.comb += count["absent"].eq(1)
                        with m.Else():
                            m.d.comb += state_wr.en.eq(1)
                            respond(CcbStatus.OK)
                        finish()

            with m.State("WALK_READ"):
                # WALK_READ -- read bucket (cur_bank, cur_bucket): one P0 slot.
                m.next = "WALK_WAIT"

            with m.State("WALK_WAIT"):
                # WALK_WAIT, WALK_WAIT2 -- the read passes Q and P0; the words reach the P2
                # registers, the visited mask vis_reg.
                m.next = "WALK_WAIT2"

            with m.State("WALK_WAIT2"):
                m.next = "WALK_WAIT3"

            with m.State("WALK_WAIT3"):
                m.next = "WALK_CHECK"

            with m.State("WALK_CHECK"):
                # WALK_CHECK -- free way here (ends the walk)? else the next kick's way:
                # advance the LFSR, skip ways already on the path.
                cur = [Mux(cur_bank, rd_words[W + w].as_value(), rd_words[w].as_value())
                       for w in range(W)]
                m.d.sync += [reg.eq(value) for reg, value in zip(cw_words, cur)]
                any_free, first_free = _lowest([~value[-1] for value in cur])
                start = lfsr_next[:wb]
                way = start
                blocked = Const(1, 1)
                for step in reversed(range(W)):
                    candidate = (start + step)[:wb]
                    free = ~vis_reg.bit_select(candidate, 1)
                    way = Mux(free, candidate, way)
                    blocked = blocked & ~free
                m.d.sync += [wc_free.eq(any_free & (kicks != 0)), wc_free_way.eq(first_free),
                             wc_way.eq(way), wc_blocked.eq(blocked)]
                m.next = "WALK_KICK"

            with m.State("WALK_KICK"):
                # WALK_KICK -- the entry the kick would move, registered.
                m.d.sync += kicked.eq(Array(w.as_value() for w in cw_words)[wc_way])
                m.next = "WALK_STEP"

            with m.State("WALK_STEP"):
                # WALK_STEP -- end on a free way, fail, or kick: record the slot, mark it
                # visited, go to the kicked entry's other bucket.
                with m.If(wc_free):
                    m.d.comb += [
                        path_wr.addr.eq(kicks), path_wr.en.eq(1),
                        path_wr.data.bank.eq(cur_bank), path_wr.data.bucket.eq(cur_bucket),
                        path_wr.data.way.eq(wc_free_way),
                    ]
                    m.d.sync += [walk_ok.eq(1), path_index.eq(kicks)]
                    m.next = "UNWIND_ADDR"
                with m.Elif(kicks == self._max_kicks):
                    m.d.sync += [walk_ok.eq(0), path_index.eq(kicks - 1)]
                    m.next = "UNWIND_ADDR"
                with m.Else():
                    m.d.sync += lfsr.eq(lfsr_next)
                    with m.If(wc_blocked):
                        m.d.sync += [walk_ok.eq(0), path_index.eq(kicks - 1)]
                        m.next = "UNWIND_ADDR"
                    with m.Else():
                        m.d.comb += [
                            path_wr.addr.eq(kicks), path_wr.en.eq(1),
                            path_wr.data.bank.eq(cur_bank), path_wr.data.bucket.eq(cur_bucket),
                            path_wr.data.way.eq(wc_way), path_wr.data.entry.eq(kicked),
                            vis_wr.addr.eq(Cat(cur_bucket, cur_bank)),
                            vis_wr.data.eq(vis_reg | (1 << wc_way)), vis_wr.en.eq(1),
                        ]
                        next_bucket = cur_bucket ^ kicked.d
                        m.d.sync += [
                            kicks.eq(kicks + 1), cur_bank.eq(~cur_bank),
                            cur_bucket.eq(next_bucket), cmd_read.eq(1),
                            cmd_b0.eq(next_bucket), cmd_b1.eq(next_bucket),
                        ]
                        m.next = "WALK_READ"

            with m.State("UNWIND_ADDR"):
                # UNWIND_ADDR -- read path[path_index] (the walk backwards from its end).
                m.next = "UNWIND_DATA"

            with m.State("UNWIND_DATA"):
                # UNWIND_DATA -- the path entry, registered after its RAM.
                m.d.sync += [path_reg.eq(path_rd.data), uw_last.eq(path_index == 0),
                             uw_move.eq(walk_ok & (path_index != kicks))]
                m.next = "UNWIND"

            with m.State("UNWIND"):
                # UNWIND -- a successful walk moves the entry of path[i] into path[i + 1]'s slot
                # (the last first); every walk clears the visited masks it set.
                slot = path_reg
                m.d.comb += [vis_wr.addr.eq(Cat(slot.bucket, slot.bank)), vis_wr.data.eq(0),
                             vis_wr.en.eq(1)]
                with m.If(uw_move):
                    m.d.comb += [wr_en.eq(1), wr_bank.eq(prev_bank), wr_bucket.eq(prev_bucket),
                                 wr_way.eq(prev_way), wr_data.eq(slot.entry)]
                m.d.sync += [prev_bank.eq(slot.bank), prev_bucket.eq(slot.bucket),
                             prev_way.eq(slot.way)]
                with m.If(uw_last):
                    with m.If(walk_ok):
                        m.d.sync += [place_kind.eq(0), pl_bank.eq(slot.bank),
                                     pl_bucket.eq(slot.bucket), pl_way.eq(slot.way)]
                        m.d.comb += kicks_add.eq(kicks)
                        m.next = "KEYS"
                    with m.Elif(stash_free_any):
                        m.d.sync += place_kind.eq(1)
                        m.next = "KEYS"
                    with m.Else():
                        answer(CcbStatus.FULL, counter="insert_full")
                with m.Else():
                    m.d.sync += path_index.eq(path_index - 1)
                    m.next = "UNWIND_ADDR"

            with m.State("KEYS"):
                # KEYS -- key store and state of the new conn_nbr, before its entry is visible.
                m.d.comb += [key_lo_wr.en.eq(1), key_hi_wr.en.eq(new_v6),
                             state_wr.en.eq(1)]
                m.d.sync += st_we_go.eq(place_kind == 1)
                m.next = "COMMIT_INSERT"

            with m.State("COMMIT_INSERT"):
                # COMMIT_INSERT -- the new entry (bucket slot or stash): the insert's commit.
                with m.If(place_kind == 0):
                    m.d.comb += [wr_en.eq(1), wr_bank.eq(pl_bank), wr_bucket.eq(pl_bucket),
                                 wr_way.eq(pl_way), wr_data.eq(insert_entry)]
                # (a stash slot is written by st_we, set by KEYS, below the FSM)
                if v6:
                    m.d.comb += v6["pop"].eq(new_v6)
                if v4:
                    m.d.comb += v4["pop"].eq(~new_v6)
                m.d.sync += used.eq(used + 1)
                m.d.comb += count["inserts"].eq(1)
                respond(CcbStatus.INSERTED, new_conn)
                finish()

            with m.State("DELETE"):
                # DELETE -- clear the entry (the commit), free its conn_nbr, then drain.
                with m.If(f_st_hit):
                    m.d.sync += st_clear.eq(Cat(*(f_st_slot == s for s in range(S))))
                with m.Else():
                    bank = f_match_index[wb]
                    m.d.comb += [wr_en.eq(1), wr_bank.eq(bank),
                                 wr_bucket.eq(Mux(bank, f_b1, f_b0)),
                                 wr_way.eq(f_match_index[:wb]), wr_data.eq(0)]
                freed_v6 = f_conn < self._ipv6_entries
                if v6:
                    m.d.comb += [v6["push"].eq(freed_v6), v6["wr"].data.eq(f_conn)]
                if v4:
                    m.d.comb += [v4["push"].eq(~freed_v6), v4["wr"].data.eq(f_conn)]
                m.d.sync += [used.eq(used - 1), drain_slot.eq(1)]
                m.d.comb += count["deletes"].eq(1)
                respond(CcbStatus.OK)
                m.next = "DRAIN"

            with m.State("DRAIN"):
                # DRAIN -- stash slot drain_slot, lowest first: read its bucket pair.
                with m.If(drain_slot[S]):
                    finish()
                with m.Else():
                    live = st_valid & ~st_clearing
                    sel = [drain_slot[s] for s in range(S)]
                    m.d.sync += [dr_valid.eq((live & drain_slot[:S]).any()),
                                 dr_b0.eq(_or_select(sel, st_b0)), dr_b1.eq(_or_select(sel, st_b1)),
                                 dr_fp.eq(_or_select(sel, st_fp)),
                                 dr_conn.eq(_or_select(sel, st_conn))]
                    m.next = "DRAIN_SELECT"

            with m.State("DRAIN_SELECT"):
                # DRAIN_SELECT -- an occupied slot: read its bucket pair; else the next slot.
                with m.If(dr_valid):
                    m.d.sync += [cmd_read.eq(1), cmd_b0.eq(dr_b0), cmd_b1.eq(dr_b1)]
                    m.next = "DRAIN_READ"
                with m.Else():
                    m.d.sync += drain_slot.eq(drain_slot << 1)
                    m.next = "DRAIN"

            with m.State("DRAIN_READ"):
                # DRAIN_READ -- read its bucket pair (one P0 slot).
                m.next = "DRAIN_WAIT"

            with m.State("DRAIN_WAIT"):
                m.next = "DRAIN_WAIT2"

            with m.State("DRAIN_WAIT2"):
                m.next = "DRAIN_WAIT3"

            with m.State("DRAIN_WAIT3"):
                m.next = "DRAIN_CHECK"

            with m.State("DRAIN_CHECK"):
                # DRAIN_CHECK -- no entry of the pair with its tag, and a free way (step 4).
                d = dr_b0 ^ dr_b1
                m.d.sync += [
                    dr_tags.eq(Cat(*((w.valid == 1) & (w.d == d) & (w.fp == dr_fp)
                                     for w in rd_words))),
                    dr_valids.eq(Cat(*(w.valid for w in rd_words))),
                ]
                m.next = "DRAIN_PLACE"

            with m.State("DRAIN_PLACE"):
                # DRAIN_PLACE -- where it goes, if anywhere.
                any_free, fw_bank, fw_way = free_way(dr_valids)
                m.d.sync += [dr_place.eq(~dr_tags.any() & any_free), dr_bank.eq(fw_bank),
                             dr_way.eq(fw_way)]
                m.next = "DRAIN_MOVE"

            with m.State("DRAIN_MOVE"):
                # DRAIN_MOVE -- the entry into its bucket and out of the stash on the same edge.
                with m.If(dr_place):
                    m.d.comb += [wr_en.eq(1), wr_bank.eq(dr_bank),
                                 wr_bucket.eq(Mux(dr_bank, dr_b1, dr_b0)),
                                 wr_way.eq(dr_way), wr_data.eq(drain_entry)]
                    m.d.sync += st_clear.eq(drain_slot[:S])
                m.d.sync += drain_slot.eq(drain_slot << 1)
                m.next = "DRAIN"

        # About 30 states: one-hot (Yosys recodes the state register), so that each state's
        # decode is one flip-flop and the next-state logic stays shallow.
        command_fsm.state.attrs["fsm_encoding"] = "one-hot"

        # Clear: one address a clock, every bucket way and visited mask to zero and both pools
        # back to ascending conn_nbrs (the rest of the table's state is registers with a reset;
        # the key store is only read behind a bucket entry).
        with m.If(clearing):
            m.d.comb += [vis_wr.addr.eq(clear_addr), vis_wr.data.eq(0),
                         vis_wr.en.eq(clear_addr < 2 * self._buckets)]
            for pool, first in ((v6, 0), (v4, self._ipv6_entries)):
                if pool:
                    size = pool["memory"].depth
                    m.d.comb += [pool["wr"].addr.eq(clear_addr),
                                 pool["wr"].data.eq(first + clear_addr),
                                 pool["wr"].en.eq(clear_addr < size)]
            m.d.sync += clear_addr.eq(clear_addr + 1)
            with m.If(clear_addr == clear_clocks - 1):
                m.d.sync += clearing.eq(0)

        # The new entry into the stash (COMMIT_INSERT): each slot's ~330 flip-flops load on a
        # register of their own, not on the FSM's decode.
        for s in range(S):
            with m.If(st_clear_q[s]):
                m.d.sync += st_valid[s].eq(0)
            with m.If(st_we_q[s]):
                m.d.sync += [st_valid[s].eq(1), st_key[s].eq(cmd.tuple), st_conn[s].eq(new_conn),
                             st_b0[s].eq(f_b0), st_b1[s].eq(f_b1), st_fp[s].eq(f_fp)]
        return m
