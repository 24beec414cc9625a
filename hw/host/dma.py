"""The DMA manager: one AXI4 manager port shared by every unit that moves bytes to or from the host.

Ref: docs/host_interface.md ("DMA manager"); AMBA AXI and ACE Protocol Specification (IHI 0022)
§A3.4 (bursts, the 4 KB rule), §A5 (ordering by transaction ID).

The units that move bytes are the manager's *clients*. A read client asks for ``beats`` bus beats
from ``addr`` and gets them back, in order, on its response stream; a write client asks to write
``beats`` beats at ``addr``, hands over the beats on its data stream and gets one completion (with
the OR of every burst's error) when the host has answered all of it. Clients never see AXI:

::

    read client i:   req ─► [burst splitter i] ─┐            ┌─► AR (ARID = i)
                     resp ◄─────────────────────┼── R by RID ┤
    write client j:  req ─► [burst splitter j] ─┼─ arbiter ──┼─► AW (AWID = j)
                     data ─► W mux (in AW order)┤            ├─► W
                     done ◄── B by BID ─────────┘            └── B

- **Bursts.** Each request is split into INCR bursts of at most ``max_burst_bytes`` (256, PCIe's
  usual max payload and read request size), never across a 4 KB boundary. Addresses are in bytes;
  their bits below the bus width are ignored (a request starts on a beat); write strobes select
  the bytes written.
- **Several transactions in flight.** Up to ``max_reads`` read bursts and ``max_writes`` write
  bursts are outstanding at once, from any mix of clients; arbitration is round robin per burst
  (one burst every other clock per channel at most: a 256-byte burst takes 16 clocks of data at
  128 bits), so a long transfer of one client never holds off another's descriptor fetch or
  event.
- **Per-client order.** Each client has its own AXI ID, and AXI keeps the order of one ID's
  transactions: a client's responses and completions come back in the order of its requests,
  while different clients' reads may interleave on R (the host may reorder between IDs).
- **No buffering of responses.** R and B go straight to the client the ID names; a client that
  is not ready stalls the shared channel. Clients therefore take responses as they come: each
  reserves room for what it reads before it asks (the TX reader, for example, for the frame).

Timing: every AXI output comes from a register; a client's request is registered with its first
burst already planned, each later burst is planned a clock after the previous one left, planned
bursts wait in a small FIFO per client, and the arbiter's choice is registered before it fires.
The W skid buffer is cut into slices, each with its own copies of the control flip-flops, so no
net from a control flip-flop or gate drives more than one slice's data registers.
"""

from itertools import pairwise

from amaranth import Cat, Const, Module, Mux, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.fifo import SyncFIFOBuffered
from amaranth.lib.wiring import In, Out
from amaranth.utils import ceil_log2, exact_log2

from .. import params
from .axi import AxiSignature, Burst, Resp

__all__ = [
    "check_data_bits", "DmaRequest", "DmaReadBeat", "DmaWriteBeat", "DmaWriteDone",
    "DmaReadSignature", "DmaWriteSignature", "DmaManager",
]


def check_data_bits(data_bits):
    """Refuse a DMA bus width other than 64, 128 or 256 bits (every DMA client takes one)."""
    if data_bits not in (64, 128, 256):
        raise ValueError(f"data_bits must be 64, 128 or 256, not {data_bits}")


def DmaRequest(addr_width=params.DMA_ADDR_WIDTH, beats_bits=params.DMA_REQUEST_BEATS_BITS):
    """A read or write request: ``beats`` (>= 1) bus beats starting at byte address ``addr``."""
    return data.StructLayout({"addr": addr_width, "beats": beats_bits})


def DmaReadBeat(data_bits=params.DMA_DATA_BITS):
    """One beat of read data; ``last`` marks the request's final beat, ``error`` a beat the host
    answered with SLVERR or DECERR (its data is not to be used)."""
    return data.StructLayout({"data": data_bits, "last": 1, "error": 1})


def DmaWriteBeat(data_bits=params.DMA_DATA_BITS):
    """One beat of write data and its byte strobes (bit i writes byte i of the beat)."""
    return data.StructLayout({"data": data_bits, "strb": data_bits // 8})


#: A write request's completion: the host answered every burst; ``error`` if any with an error.
DmaWriteDone = data.StructLayout({"error": 1})


class DmaReadSignature(wiring.Signature):
    """A read client, from the client's side: requests out, data beats in."""

    def __init__(self, data_bits=params.DMA_DATA_BITS, addr_width=params.DMA_ADDR_WIDTH,
                 beats_bits=params.DMA_REQUEST_BEATS_BITS):
        super().__init__({
            "req": Out(stream.Signature(DmaRequest(addr_width, beats_bits))),
            "resp": In(stream.Signature(DmaReadBeat(data_bits))),
        })


class DmaWriteSignature(wiring.Signature):
    """A write client, from the client's side: requests and data beats out, completions in."""

    def __init__(self, data_bits=params.DMA_DATA_BITS, addr_width=params.DMA_ADDR_WIDTH,
                 beats_bits=params.DMA_REQUEST_BEATS_BITS):
        super().__init__({
            "req": Out(stream.Signature(DmaRequest(addr_width, beats_bits))),
            "data": Out(stream.Signature(DmaWriteBeat(data_bits))),
            "done": In(stream.Signature(DmaWriteDone)),
        })


class _BurstSplitter(wiring.Component):
    """Holds one client request and cuts it into bursts.

    The plan for the first burst is computed as the request is accepted, the plan for each later
    one a clock after the previous burst was pushed, so every plan is a register: its compares
    are, and the burst's length is chosen from them by one multiplexer. Planned bursts wait in a
    two-entry FIFO for the arbiter (``burst_*``, ``take``): the arbiter's grant never reaches the
    splitter's address and length registers in the same clock.
    """

    def __init__(self, addr_width, beats_bits, beat_bytes, max_burst_beats):
        self._beat_bytes = beat_bytes
        self._max_burst_beats = max_burst_beats
        super().__init__({
            "req": In(stream.Signature(DmaRequest(addr_width, beats_bits))),
            "burst_valid": Out(1),
            "burst_addr": Out(addr_width),
            "burst_beats": Out(range(max_burst_beats + 1)),
            "burst_final": Out(1),      # the request's last burst
            "take": In(1),
        })
        self._burst = data.StructLayout({
            "addr": addr_width, "beats": range(max_burst_beats + 1), "final": 1})
        beats = range(max_burst_beats + 1)
        #: A planned burst: ``to_4k`` beats if ``at_4k`` (it ends at a 4 KB boundary), else
        #: ``capped``; ``final`` if that is all that is left of the request.
        self._plan_layout = data.StructLayout({
            "to_4k": beats, "capped": beats, "at_4k": 1, "final": 1})

    def _plan(self, m, addr, left, name):
        """The burst at ``addr``: what is ``left``, capped, ending at a 4 KB boundary; and
        whether that is all that is left (the request's final burst), found beside the length
        rather than by comparing the length with ``left`` after it.

        The 4 KB boundary can end a burst only when it is at most ``cap`` beats away (``near``:
        the beat's index in its page has all its bits above ``cap``'s at one), and then its
        distance is ``cap`` minus the index's low bits; so every compare is as narrow as
        ``cap``, not as the page."""
        shift = exact_log2(self._beat_bytes)
        cap = self._max_burst_beats
        k = exact_log2(cap)
        page = addr[shift:12]           # the beat's index in its 4 KB page
        low = left[:k + 1]
        fits = Signal(name=f"{name}_fits")          # left <= cap
        near = Signal(name=f"{name}_near")          # the boundary is at most cap beats away
        short = Signal(name=f"{name}_short")        # and nearer than left (when near)
        plan = Signal(self._plan_layout, name=name)
        m.d.comb += [
            fits.eq((left[k + 1:] == 0) & ~(left[k] & left[:k].any())),
            near.eq(page[k:].all() if k < len(page) else 1),
            plan.to_4k.eq(cap - page[:k]),
            short.eq(plan.to_4k < low),
            plan.capped.eq(Mux(fits, low, cap)),
            plan.at_4k.eq(near & (short | ~fits)),
            plan.final.eq(fits & ~(near & short)),
        ]
        return plan

    def elaborate(self, platform):
        m = Module()
        shift = exact_log2(self._beat_bytes)
        busy = Signal()
        addr = Signal.like(self.burst_addr)
        left = Signal.like(self.req.payload.beats)
        plan_valid = Signal()
        plan = Signal(self._plan_layout)
        plan_beats = Signal.like(self.burst_beats)

        # The two-entry FIFO of planned bursts: two registers, written and read in turn. The
        # arbiter's ``take`` moves only the read pointer and the level, never a register's enable.
        entries = [Signal(self._burst, name=f"burst_{k}") for k in range(2)]
        w_ptr = Signal()
        r_ptr = Signal()
        level = Signal(range(3))
        push = Signal()
        head = data.View(self._burst, Mux(r_ptr, entries[1].as_value(), entries[0].as_value()))
        m.d.comb += [
            self.req.ready.eq(~busy),
            push.eq(plan_valid & (level != 2)),
            plan_beats.eq(Mux(plan.at_4k, plan.to_4k, plan.capped)),
            self.burst_valid.eq(level != 0),
            self.burst_addr.eq(head.addr),
            self.burst_beats.eq(head.beats),
            self.burst_final.eq(head.final),
        ]
        for k, entry in enumerate(entries):
            with m.If(push & (w_ptr == k)):
                m.d.sync += entry.eq(Cat(addr, plan_beats, plan.final))
        with m.If(push):
            m.d.sync += w_ptr.eq(~w_ptr)
        with m.If(self.take):
            m.d.sync += r_ptr.eq(~r_ptr)
        m.d.sync += level.eq(level + push - self.take)
        first = self._plan(m, self.req.payload.addr, self.req.payload.beats, "first_plan")
        later = self._plan(m, addr, left, "next_plan")
        # While idle the registers sample the request on every clock (their enable is ``busy``,
        # a flip-flop): ``valid`` reaches only ``busy`` and ``plan_valid``.
        with m.If(~busy):
            m.d.sync += [
                busy.eq(self.req.valid),
                addr.eq(Cat(Const(0, shift), self.req.payload.addr[shift:])),
                left.eq(self.req.payload.beats),
                plan.eq(first),
                plan_valid.eq(self.req.valid),
            ]
        with m.Elif(push):
            m.d.sync += [
                addr.eq(addr + (plan_beats << shift)),
                left.eq(left - plan_beats),
                plan_valid.eq(0),
            ]
            with m.If(plan.final):
                m.d.sync += busy.eq(0)
        with m.Elif(busy & ~plan_valid):
            m.d.sync += [plan.eq(later), plan_valid.eq(1)]
        return m


def _arbiter(m, requests, ready, name):
    """Round-robin choice of one of ``requests`` (1-bit values), in two clocks: the choice is
    registered first, then the granted request fires when ``ready``. Nothing between the requests
    and the grant register reaches the requesters' pop enables, which see only ``fire`` and the
    registered grant. One grant every two clocks at most: a burst every other clock per channel.

    Returns ``(fire, grant)``: ``fire`` is high in the clock the granted request (``grant``) is
    taken.
    """
    n = len(requests)
    last = Signal(range(max(n, 2)), name=f"{name}_last")
    choice = Signal(range(max(n, 2)), name=f"{name}_choice")
    grant = Signal(range(max(n, 2)), name=f"{name}_grant")
    held = Signal(name=f"{name}_held")
    fire = Signal(name=f"{name}_fire")
    # Candidates in priority order: last+1, last+2, ..., last. The first one requesting wins.
    for offset in reversed(range(1, n + 1)):
        for start in range(n):
            idx = (start + offset) % n
            with m.If((last == start) & requests[idx]):
                m.d.comb += choice.eq(idx)
    m.d.comb += fire.eq(held & ready)
    with m.If(fire):
        m.d.sync += held.eq(0)
    with m.Elif(~held & Cat(*requests).any()):
        m.d.sync += [held.eq(1), grant.eq(choice), last.eq(choice)]
    return fire, grant


def _skid(m, out_valid, out_ready, out_fields, in_valid, in_fields, name):
    """Output registers (``out_fields``, ``out_valid``) with a spare set behind them: a skid
    buffer. Returns the producer's ready, ``~spare_valid``, a flip-flop: the consumer's
    ``out_ready`` reaches only the output registers' enables, never back into the producer."""
    spare_valid = Signal(name=f"{name}_spare_valid")
    spares = [Signal.like(field, name=f"{name}_spare_{k}") for k, field in enumerate(out_fields)]
    with m.If(~out_valid | out_ready):
        # Output free (or freed this clock): the spare first, else the new one. While the spare
        # is full the producer is not ready, so nothing new comes in.
        with m.If(spare_valid):
            m.d.sync += [o.eq(sp) for o, sp in zip(out_fields, spares)]
            m.d.sync += [out_valid.eq(1), spare_valid.eq(0)]
        with m.Else():
            m.d.sync += [o.eq(i) for o, i in zip(out_fields, in_fields)]
            m.d.sync += out_valid.eq(in_valid)
    with m.Elif(in_valid):
        m.d.sync += [sp.eq(i) for sp, i in zip(spares, in_fields)]
        m.d.sync += spare_valid.eq(1)
    return ~spare_valid


def _replica(m, value, load, name):
    """A register that takes ``value`` when ``load``: one of several copies of the same register,
    each driving a share of its loads. Written as ``q ^ (load & (q ^ value))`` rather than as an
    enable: Yosys merges flip-flops with the same data, enable and reset (a ``keep`` attribute on
    the signal does not stop it), but each copy's data here is a function of its own output."""
    q = Signal.like(value, name=name)
    m.d.sync += q.eq(q ^ ((q ^ value) & load.replicate(len(q))))
    return q


def _sliced_skid(m, out_valid, out_ready, out_bits, in_valid, in_bits, slice_bits, name):
    """:func:`_skid` for a wide word, cut into slices of at most ``slice_bits``: each slice has its
    own copy of the control flip-flops (``spare_valid``, ``out_valid``), so no control net drives
    more than a slice's registers. A slice's spare registers sample the input on every clock
    while they are empty (enable: that slice's ``~spare_valid``, a flip-flop), and its output
    registers load when free (``~out_valid | out_ready``, one LUT). One more copy, with no data,
    drives ``out_valid`` and the producer's ready.

    ``in_bits(k, lo, hi)`` gives bits ``lo:hi`` of the input word for slice ``k`` (each slice
    may select them with its own copies of the selecting registers). Returns the producer's
    ready, the data-less copy's ``~spare_valid``: every copy holds the same value, since all
    see the same ``in_valid`` and ``out_ready``."""
    def control(valid, suffix):
        spare_valid = Signal(name=f"{name}_spare_valid{suffix}")
        free = ~valid | out_ready
        with m.If(free):
            m.d.sync += [valid.eq(spare_valid | in_valid), spare_valid.eq(0)]
        with m.Elif(in_valid):
            m.d.sync += spare_valid.eq(1)
        return spare_valid, free

    width = len(out_bits)
    n = -(-width // slice_bits)
    bounds = [width * k // n for k in range(n + 1)]
    for k, (lo, hi) in enumerate(pairwise(bounds)):
        spare_valid, free = control(Signal(name=f"{name}_out_valid_{k}"), f"_{k}")
        spare = Signal(hi - lo, name=f"{name}_spare_{k}")
        new = in_bits(k, lo, hi)
        with m.If(free):
            m.d.sync += out_bits[lo:hi].eq(Mux(spare_valid, spare, new))
        with m.If(~spare_valid):
            m.d.sync += spare.eq(new)
    spare_valid, _ = control(out_valid, "")
    return ~spare_valid


class DmaManager(wiring.Component):
    """One AXI4 manager port shared by ``read_clients`` read clients and ``write_clients`` write
    clients.

    Parameters
    ----------
    read_clients, write_clients : int
        How many of each (1..2**id_width); client ``i`` uses AXI ID ``i`` on its channel.
    data_bits : int
        DMA bus width: 64, 128 or 256.
    max_reads, max_writes : int
        Read / write bursts outstanding at once (the AXI target's limits).
    max_burst_bytes : int
        Longest burst in bytes (a power of two, at least one beat, at most 4096).

    Members
    -------
    axi : Out(AxiSignature)
        The AXI4 manager port.
    read : In(DmaReadSignature).array(read_clients)
        The read clients.
    write : In(DmaWriteSignature).array(write_clients)
        The write clients.
    read_errors, write_errors : Out(1)
        Pulses: a read beat / a write burst answered with SLVERR or DECERR.
    reads_outstanding, writes_outstanding : Out
        Bursts in flight, for the waveform and the benchmarks.
    """

    def __init__(self, *, read_clients, write_clients, data_bits=params.DMA_DATA_BITS,
                 addr_width=params.DMA_ADDR_WIDTH, id_width=params.DMA_ID_BITS,
                 beats_bits=params.DMA_REQUEST_BEATS_BITS, max_reads=params.DMA_MAX_READS,
                 max_writes=params.DMA_MAX_WRITES, max_burst_bytes=params.DMA_MAX_BURST_BYTES):
        check_data_bits(data_bits)
        for name, value in (("read_clients", read_clients), ("write_clients", write_clients)):
            if not 1 <= value <= 2 ** id_width:
                raise ValueError(f"{name} must be 1..{2 ** id_width}, not {value}")
        if max_burst_bytes & (max_burst_bytes - 1) or not \
                data_bits // 8 <= max_burst_bytes <= min(4096, 256 * data_bits // 8):
            raise ValueError(f"max_burst_bytes must be a power of two from one beat to 4096 "
                             f"(and at most 256 beats), not {max_burst_bytes}")
        for name, value in (("max_reads", max_reads), ("max_writes", max_writes)):
            if value < 1:
                raise ValueError(f"{name} must be at least 1, not {value}")
        self._data_bits = data_bits
        self._addr_width = addr_width
        self._id_width = id_width
        self._beats_bits = beats_bits
        self._max_reads = max_reads
        self._max_writes = max_writes
        self._max_burst_bytes = max_burst_bytes
        self._n_read = read_clients
        self._n_write = write_clients
        rd = DmaReadSignature(data_bits, addr_width, beats_bits)
        wr = DmaWriteSignature(data_bits, addr_width, beats_bits)
        super().__init__({
            "axi": Out(AxiSignature(addr_width, data_bits, id_width)),
            "read": In(rd).array(read_clients),
            "write": In(wr).array(write_clients),
            "read_errors": Out(1),
            "write_errors": Out(1),
            "reads_outstanding": Out(range(max_reads + 1)),
            "writes_outstanding": Out(range(max_writes + 1)),
        })

    @property
    def data_bits(self):
        return self._data_bits

    @property
    def beat_bytes(self):
        return self._data_bits // 8

    @property
    def max_burst_beats(self):
        return self._max_burst_bytes // self.beat_bytes

    def elaborate(self, platform):
        m = Module()
        self._elaborate_reads(m)
        self._elaborate_writes(m)
        return m

    def _splitters(self, m, clients, kind):
        splitters = []
        for i, client in enumerate(clients):
            splitter = _BurstSplitter(self._addr_width, self._beats_bits, self.beat_bytes,
                                      self.max_burst_beats)
            m.submodules[f"{kind}_splitter_{i}"] = splitter
            wiring.connect(m, wiring.flipped(client.req), splitter.req)
            splitters.append(splitter)
        return splitters

    def _finals(self, m, n, depth, kind):
        """Per client, the 'final burst of its request' flag of each outstanding burst, in order:
        a client's bursts come back in order (one AXI ID), so the flag at the head is the one
        of the burst now answered. ``depth`` is the outstanding limit, so none can overflow."""
        fifos = []
        for i in range(n):
            fifo = SyncFIFOBuffered(width=1, depth=depth)
            m.submodules[f"{kind}_final_{i}"] = fifo
            fifos.append(fifo)
        return fifos

    # --- Reads ---------------------------------------------------------------------------------
    @staticmethod
    def _outstanding(m, limit, issue, retire, name):
        """Bursts in flight, and a registered 'another may start' flag (no compare behind
        ``issue`` or ``retire``: the flag for each next count is compared from the count, and
        ``issue`` and ``retire`` only select one)."""
        count = Signal(range(limit + 1), name=f"{name}_outstanding")
        room = Signal(init=1, name=f"{name}_room")
        up = Signal.like(count, name=f"{name}_outstanding_up")
        down = Signal.like(count, name=f"{name}_outstanding_down")
        m.d.comb += [up.eq(count + 1), down.eq(count - 1)]
        m.d.sync += [
            count.eq(count + issue - retire),
            room.eq(Mux(issue & ~retire, up < limit,
                        Mux(retire & ~issue, down < limit, count < limit))),
        ]
        return count, room

    def _address_channel(self, m, ch, splitters, finals, issue, room, on_grant=None):
        """AR or AW (``ch``): the round-robin choice among the splitters' planned bursts and the
        channel's output registers behind a skid buffer. Drives ``issue`` (a burst leaves the
        splitter this clock) and, for the granted splitter, its ``take`` and its final-flag
        FIFO's write; ``on_grant(i, splitter)`` adds a statement for the granted client."""
        axi = self.axi
        ids, addrs, lens = (getattr(axi, f"{ch}{name}") for name in ("id", "addr", "len"))
        valid, ready = getattr(axi, f"{ch}valid"), getattr(axi, f"{ch}ready")
        next_id, next_addr, next_len = (Signal.like(field, name=f"{ch}_next_{name}") for field, name
                                        in ((ids, "id"), (addrs, "addr"), (lens, "len")))
        skid_ready = _skid(m, valid, ready, [ids, addrs, lens], issue,
                           [next_id, next_addr, next_len], ch)
        fire, grant = _arbiter(m, [s.burst_valid for s in splitters], skid_ready & room,
                               f"{ch}_arb")
        m.d.comb += issue.eq(fire)
        for i, (splitter, final) in enumerate(zip(splitters, finals)):
            with m.If(grant == i):
                m.d.comb += [
                    next_id.eq(i),
                    next_addr.eq(splitter.burst_addr),
                    next_len.eq(splitter.burst_beats - 1),
                    final.w_data.eq(splitter.burst_final),
                ]
                if on_grant is not None:
                    m.d.comb += on_grant(i, splitter)
                with m.If(issue):
                    m.d.comb += [splitter.take.eq(1), final.w_en.eq(1)]
        m.d.comb += [
            getattr(axi, f"{ch}size").eq(exact_log2(self.beat_bytes)),
            getattr(axi, f"{ch}burst").eq(Burst.INCR),
            getattr(axi, f"{ch}prot").eq(0),
        ]

    def _elaborate_reads(self, m):
        axi = self.axi
        n = self._n_read
        splitters = self._splitters(m, self.read, "read")
        finals = self._finals(m, n, self._max_reads, "read")

        issue = Signal()
        retire = Signal()
        outstanding, room = self._outstanding(m, self._max_reads, issue, retire, "read")
        m.d.comb += self.reads_outstanding.eq(outstanding)

        # AR: output registers behind a skid buffer, loaded from the granted splitter's burst.
        self._address_channel(m, "ar", splitters, finals, issue, room)

        # R: to the client the ID names. Data goes to every client; valid only to that one.
        # Each client's taking of a beat is found from its own ID compare and ready, not from
        # the shared ``rready``.
        error = Signal()
        takes = []
        m.d.comb += error.eq(axi.rresp != Resp.OKAY)
        for i, (client, final) in enumerate(zip(self.read, finals)):
            mine = Signal(name=f"r_to_{i}")
            take = Signal(name=f"r_take_{i}")
            m.d.comb += [
                mine.eq(axi.rid == i),
                take.eq(axi.rvalid & mine & client.resp.ready),
                client.resp.valid.eq(axi.rvalid & mine),
                client.resp.payload.data.eq(axi.rdata),
                client.resp.payload.error.eq(error),
                client.resp.payload.last.eq(axi.rlast & final.r_data),
                final.r_en.eq(take & axi.rlast),
            ]
            with m.If(mine):
                m.d.comb += axi.rready.eq(client.resp.ready)
            takes.append(take)
        m.d.comb += [
            retire.eq(Cat(takes).any() & axi.rlast),
            self.read_errors.eq(Cat(takes).any() & error),
        ]

    # --- Writes --------------------------------------------------------------------------------
    def _elaborate_writes(self, m):
        axi = self.axi
        n = self._n_write
        splitters = self._splitters(m, self.write, "write")
        finals = self._finals(m, n, self._max_writes, "write")
        burst_range = range(self.max_burst_beats + 1)
        client_bits = max(1, ceil_log2(n))

        issue = Signal()
        retire = Signal()
        outstanding, room = self._outstanding(m, self._max_writes, issue, retire, "write")
        m.d.comb += self.writes_outstanding.eq(outstanding)

        # The W channel sends bursts in AW order: each issued burst queues (client, beats) here
        # until its data starts; a burst is outstanding until its B, so this never fills.
        w_order = SyncFIFOBuffered(width=client_bits + len(Const(0, burst_range)),
                                   depth=self._max_writes)
        m.submodules.w_order = w_order

        # AW: output registers behind a skid buffer, loaded from the granted splitter's burst;
        # each burst also queues (client, beats) for the W channel.
        self._address_channel(
            m, "aw", splitters, finals, issue, room,
            on_grant=lambda i, splitter: w_order.w_data.eq(
                Cat(Const(i, client_bits), splitter.burst_beats)))
        m.d.comb += w_order.w_en.eq(issue)

        # W: an output register fed from the client whose burst is sending. The next burst waits
        # in ``w_next``, taken from the order FIFO ahead of time, so the switch at a burst's last
        # beat touches only a few registers and the FIFO's read never waits on the data path.
        w_active = Signal()
        w_take = [Signal(name=f"w_take_{i}") for i in range(n)]   # w_active & (client == i)
        w_left = Signal(burst_range)
        w_last = Signal()           # w_left == 1
        w_next_valid = Signal()
        w_next_client = Signal(client_bits)
        w_next_beats = Signal(burst_range)
        w_next_last = Signal()
        w_move = Signal()           # a beat moves from the client into the W registers
        head_client = w_order.r_data[:client_bits]
        head_beats = w_order.r_data[client_bits:]

        # W: output registers behind a skid buffer; the client's ready is the skid's, a
        # flip-flop, so neither ``wready`` nor the W registers' enable reaches into the client.
        # The skid is sliced (145 bits at 128-bit data): each slice of about 36 bits has its own
        # control flip-flops and its own copy of the sending client's number to select its bits.
        # The clients' ready and ``w_move`` come from the skid's data-less copy and from one
        # ``w_take`` flag per client, a few flip-flops and one or two LUTs.
        switch = Signal()           # the next burst becomes the one sending
        words = [Cat(c.data.payload.data, c.data.payload.strb, w_last) for c in self.write]

        def in_bits(k, lo, hi):
            client = _replica(m, w_next_client, switch, f"w_client_{k}")
            word = words[0][lo:hi]
            for i in range(1, n):
                word = Mux(client == i, words[i][lo:hi], word)
            return word

        w_ready = _sliced_skid(m, axi.wvalid, axi.wready, Cat(axi.wdata, axi.wstrb, axi.wlast),
                               w_move, in_bits, 40, "w")
        offered = Cat(take & c.data.valid for take, c in zip(w_take, self.write))
        m.d.comb += w_move.eq(w_ready & offered.any())
        for take, client in zip(w_take, self.write):
            m.d.comb += client.data.ready.eq(w_ready & take)
        with m.If(~w_next_valid & w_order.r_rdy):
            m.d.comb += w_order.r_en.eq(1)
            m.d.sync += [
                w_next_valid.eq(1),
                w_next_client.eq(head_client),
                w_next_beats.eq(head_beats),
                w_next_last.eq(head_beats == 1),
            ]
        m.d.comb += switch.eq(~w_active | (w_move & w_last))
        with m.If(switch):
            m.d.sync += [
                w_active.eq(w_next_valid),
                *(take.eq(w_next_valid & (w_next_client == i)) for i, take in enumerate(w_take)),
                w_left.eq(w_next_beats),
                w_last.eq(w_next_last),
            ]
            with m.If(w_next_valid):
                m.d.sync += w_next_valid.eq(0)
        with m.Elif(w_move):
            m.d.sync += [w_left.eq(w_left - 1), w_last.eq(w_left == 2)]

        # B: to the client the ID names; errors of a request's bursts are gathered until its
        # final burst's response, which becomes the client's completion.
        # As on R, each client's taking of a response is found from its own ID compare.
        error = Signal()
        takes = []
        m.d.comb += error.eq(axi.bresp != Resp.OKAY)
        for i, (client, final) in enumerate(zip(self.write, finals)):
            mine = Signal(name=f"b_to_{i}")
            ready = Signal(name=f"b_ready_{i}")
            take = Signal(name=f"b_take_{i}")
            failed = Signal(name=f"b_failed_{i}")      # an earlier burst of this request failed
            m.d.comb += [
                mine.eq(axi.bid == i),
                ready.eq(~final.r_data | client.done.ready),
                take.eq(axi.bvalid & mine & ready),
                client.done.valid.eq(axi.bvalid & mine & final.r_data),
                client.done.payload.error.eq(failed | error),
                final.r_en.eq(take),
            ]
            with m.If(mine):
                m.d.comb += axi.bready.eq(ready)
            with m.If(take):
                m.d.sync += failed.eq(Mux(final.r_data, 0, failed | error))
            takes.append(take)
        m.d.comb += [
            retire.eq(Cat(takes).any()),
            self.write_errors.eq(Cat(takes).any() & error),
        ]
