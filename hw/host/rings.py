"""Ring bookkeeping: each host ring's configuration, indices and prefetched entries.

Ref: docs/host_interface.md (rings).

The register target owns what the host writes (base, size, the host's index); the unit that works
a ring owns the NIC's index. Between the two runs one :class:`RingConfigSignature` per ring,
so ``hw/nic.py`` connects a ring with one ``wiring.connect``:

- COMMAND, RX, TX (the host produces, the NIC consumes): a :class:`RingFetcher` prefetches posted
  entries through a DMA read client and hands them, in order, to the ring's consumer as
  :class:`~hw.layouts.RingEntry`; the NIC's (consumer) index moves as the consumer takes them.
- EVENT (the NIC produces): the event writer keeps the producer index and the phase.
"""

from amaranth import C, Cat, Module, Mux, ResetInserter, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.fifo import SyncFIFO, SyncFIFOBuffered
from amaranth.lib.wiring import In, Out

from .. import params
from ..layouts import RingEntry
from .dma import DmaReadSignature, check_data_bits

__all__ = ["RingConfigSignature", "RingFetcher"]

_INDEX_BITS = params.RING_INDEX_BITS
_ENTRY_BITS = 8 * params.RING_ENTRY_BYTES
#: Address bits of a ring's offset (index * entry bytes) above the entry's own bits: the part of
#: ``base + offset`` that is an adder; the bits above only take its carry.
_LOW_BITS = 4 + _INDEX_BITS
assert params.RING_ENTRY_BYTES == 16


class RingConfigSignature(wiring.Signature):
    """One ring, from the register target's side.

    Members
    -------
    base : Out(64)
        Bus address of entry 0 (``<RING>_BASE_LO/HI``).
    log2_size : Out(4)
        ``<RING>_LOG2_SIZE``; 0 = not configured.
    reset : Out(1)
        Pulse: the size was written; both indices go back to 0.
    host_index : Out(RING_LOG2_SIZE_MAX)
        The host's index: producer of COMMAND/RX/TX, consumer of EVENT.
    nic_index : In(RING_LOG2_SIZE_MAX)
        The NIC's index: consumer of COMMAND/RX/TX, producer of EVENT.
    """

    def __init__(self):
        index = params.RING_LOG2_SIZE_MAX
        super().__init__({
            "base": Out(params.DMA_ADDR_WIDTH),
            "log2_size": Out(4),
            "reset": Out(1),
            "host_index": Out(index),
            "nic_index": In(index),
        })


class RingFetcher(wiring.Component):
    """Prefetches the entries the host posts on one ring (COMMAND, RX or TX) and hands them out in
    ring order.

    The entries fetched and not yet taken (in the cache or still on their way) are
    ``fetch_index - nic_index``; the cache has room for ``cache_entries`` of them, and that room is
    reserved when a fetch is asked for, so every read response is taken as it comes (the DMA
    manager's rule). A fetch is one DMA request of ``n`` entries,
    ``n = min(posted not fetched, entries to the ring's end, max_fetch)``: a request never wraps.
    It is asked for only when the free room takes all ``n`` (``cache_entries >= max_fetch``, so
    the room always comes): a consumer that takes one entry at a time does not cause a stream of
    one-entry fetches, and a full batch is always ready when the cache has drained to half.

    **Fetches in flight.** Up to ``max_inflight`` requests (default 2) are outstanding. With one,
    a batch of 16 entries costs a whole round trip (~78 clocks of latency + 16 beats + a few clocks
    of planning: ~6 clocks an entry, too close to the 10.5 clocks a 60-byte frame needs); with two
    (and a cache of two batches) the next batch is asked for as soon as the consumer has taken the
    first half of the cache, and a 256-entry ring is delivered at about 3 clocks an entry (see
    ``tests/unit/test_ring_fetcher.py``). The cost is a 2-bit counter; more would only spend the
    DMA manager's shared read slots on small requests.

    **Planning.** The batch is planned in a four-stage pipeline of registers (posted / room / to
    end; their caps; the minimum; the room check) from the indices, so no subtractor or compare
    feeds another on one clock; the request's address is computed beside it in two steps. A
    plan is used only when the fetch index has not moved (no fetch, no reset) for the four clocks
    it took; the host's and the consumer's indices only move the
    way that makes a plan conservative (more posted, more room).

    **Bus widths.** Entries are 16 bytes: at 64 bits two beats make an entry (its ``error`` the OR
    of both), at 128 one beat, at 256 one beat holds two entries. At 256 bits a request starts on
    the aligned beat and drops the half before an odd start and after an odd end, and the cache is
    two banks (the 16-byte half of the beat an entry occupies), so a beat's two entries are cached
    in one clock.

    **Reset.** ``config.reset`` (the size was written) returns both indices to 0 and empties the
    cache. Fetches in flight at that moment are counted as stale: their beats are still taken
    from the DMA manager, and dropped.

    **Stop.** While ``stop`` is high no fetch is asked for and no entry is offered:
    ``entries.valid`` falls even if an entry was on offer (the consumers of this stream decide on
    ``valid & ready`` in the same clock). Entries already cached stay.

    Timing: ``posted``, ``running``, ``config.nic_index``, the request and the entry's index and
    data are registers; ``entries.valid`` is the cache's ready gated by ``stop`` and
    ``config.reset`` (at 256 bits the entry also passes a 2:1 bank mux). Addresses are
    ``base + 16 * index`` as a 12-bit adder whose carry (a register) picks ``base[16:]`` or a
    register holding ``base[16:] + 1`` (``base`` is written before the ring is used: that register
    is a clock behind); the entry's address is a register but for that 2:1 mux of its upper bits.

    Parameters
    ----------
    data_bits : int
        DMA bus width: 64, 128 or 256.
    cache_entries : int
        Entries the cache holds (fetched, not yet taken); at least ``max_fetch``.
    max_fetch : int
        Most entries one DMA request asks for.
    max_inflight : int
        Requests outstanding at once.

    Members
    -------
    config : In(RingConfigSignature())
        The ring's registers; ``config.nic_index`` (the consumer index the host reads) is driven
        from here.
    dma : Out(DmaReadSignature(data_bits))
        The DMA read client.
    entries : Out(stream.Signature(RingEntry))
        Posted entries in ring order with their ``index`` and bus ``addr``; ``error``: the host
        answered the read with an error (the consumer reports it and skips the slot).
    stop : In(1)
        Level: RING_STOP for this ring.
    posted : Out(RING_LOG2_SIZE_MAX + 1)
        Entries the host has posted that the consumer has not taken
        (``host_index - nic_index`` mod size); a register, computed for the NIC's next index from
        the host's index a clock old.
    running : Out(1)
        Configured (``log2_size != 0``) and not stopped; a register.
    """

    def __init__(self, data_bits=params.DMA_DATA_BITS, cache_entries=32, max_fetch=16,
                 max_inflight=2):
        check_data_bits(data_bits)
        if not 1 <= max_fetch <= 256:
            raise ValueError(f"max_fetch must be 1..256, not {max_fetch}")
        if cache_entries < max_fetch:
            raise ValueError(f"cache_entries ({cache_entries}) must be at least max_fetch "
                             f"({max_fetch}): a fetch waits for room for its whole batch")
        if not 2 <= cache_entries <= 1024:
            raise ValueError(f"cache_entries must be 2..1024, not {cache_entries}")
        if max_inflight < 1:
            raise ValueError(f"max_inflight must be at least 1, not {max_inflight}")
        self._data_bits = data_bits
        self._cache_entries = cache_entries
        self._max_fetch = max_fetch
        self._max_inflight = max_inflight
        super().__init__({
            "config": In(RingConfigSignature()),
            "dma": Out(DmaReadSignature(data_bits)),
            "entries": Out(stream.Signature(RingEntry)),
            "stop": In(1),
            "posted": Out(_INDEX_BITS + 1),
            "running": Out(1),
        })

    @property
    def data_bits(self):
        return self._data_bits

    @property
    def cache_entries(self):
        return self._cache_entries

    @property
    def max_fetch(self):
        return self._max_fetch

    @property
    def max_inflight(self):
        return self._max_inflight

    def elaborate(self, platform):
        m = Module()
        cfg = self.config
        out = self.entries
        req = self.dma.req
        resp = self.dma.resp
        wide = self._data_bits == 256

        # 2**log2_size - 1 as a thermometer code: one LUT a bit, no shifter or subtractor.
        mask = Signal(_INDEX_BITS)
        m.d.comb += mask.eq(Cat(*(cfg.log2_size > i for i in range(_INDEX_BITS))))
        base_low = cfg.base[4:_LOW_BITS]
        base_high = cfg.base[_LOW_BITS:]
        base_high_1 = Signal.like(base_high)        # base_high + 1, for a carry out of the low part
        m.d.sync += base_high_1.eq(base_high + 1)

        nic = Signal(_INDEX_BITS)               # the consumer index: entry on offer
        nic_1 = Signal(_INDEX_BITS)             # (nic + 1) mod size
        fetch = Signal(_INDEX_BITS)             # next entry to ask for
        advance = Signal()
        m.d.comb += [
            advance.eq(out.valid & out.ready),
            cfg.nic_index.eq(nic),
        ]
        with m.If(cfg.reset):
            m.d.sync += [nic.eq(0), nic_1.eq(mask[0])]
        with m.Elif(advance):
            m.d.sync += [nic.eq(nic_1), nic_1.eq((nic_1 + 1) & mask)]

        # posted: both candidates from flip-flops; the late ``advance`` only selects.
        posted_now = Signal(_INDEX_BITS)
        posted_less = Signal(_INDEX_BITS)
        m.d.comb += [
            posted_now.eq((cfg.host_index - nic) & mask),
            posted_less.eq((cfg.host_index - nic_1) & mask),
        ]
        with m.If(cfg.reset):
            m.d.sync += self.posted.eq(0)
        with m.Elif(advance):
            m.d.sync += self.posted.eq(posted_less)
        with m.Else():
            m.d.sync += self.posted.eq(posted_now)
        m.d.sync += self.running.eq((cfg.log2_size != 0) & ~self.stop)

        # The offered entry's address, base + 16 * nic, likewise from two candidates.
        sum_now = Signal(_INDEX_BITS + 1)
        sum_next = Signal(_INDEX_BITS + 1)
        m.d.comb += [sum_now.eq(base_low + nic), sum_next.eq(base_low + nic_1)]
        out_low = Signal(_INDEX_BITS)
        out_carry = Signal()        # the low part's carry, a register before it fans out
        carry = Signal()
        with m.If(cfg.reset):
            m.d.comb += carry.eq(0)
            m.d.sync += out_low.eq(base_low)
        with m.Elif(advance):
            m.d.comb += carry.eq(sum_next[-1])
            m.d.sync += out_low.eq(sum_next[:_INDEX_BITS])
        with m.Else():
            m.d.comb += carry.eq(sum_now[-1])
            m.d.sync += out_low.eq(sum_now[:_INDEX_BITS])
        m.d.sync += out_carry.eq(carry)

        # --- Fetch planning -----------------------------------------------------------------------
        issue = Signal()
        moved = Signal()                        # the fetch index moves (or is reset) this clock
        m.d.comb += moved.eq(issue | cfg.reset)
        cache_bits = self._cache_entries.bit_length()
        fetch_range = range(self._max_fetch + 1)
        mf = self._max_fetch

        # Stage 1: posted and not fetched, fetched and not taken, entries to the end minus one.
        to_fetch_1 = Signal(_INDEX_BITS)
        in_cache_1 = Signal(cache_bits)
        to_end_1 = Signal(_INDEX_BITS)
        # Stage 2: each capped at max_fetch; the free room.
        to_fetch_2 = Signal(fetch_range)
        to_end_2 = Signal(fetch_range)
        room_2 = Signal(cache_bits)
        # Stage 3: the batch, and the room.
        n_3 = Signal(fetch_range)
        room_3 = Signal(cache_bits)
        fetch_sum_1 = Signal(_INDEX_BITS + 1)
        fetch_addr_2 = Signal.like(req.payload.addr)
        # Stage 4: the request, ready to go.
        n_4 = Signal(fetch_range)
        go_4 = Signal()
        valid = [Signal(name=f"plan_valid_{i}") for i in (1, 2, 3, 4)]
        m.d.sync += [
            to_fetch_1.eq((cfg.host_index - fetch) & mask),
            # At most cache_entries, so its low bits are the whole difference.
            in_cache_1.eq((fetch[:cache_bits] - nic[:cache_bits]) & mask[:cache_bits]),
            to_end_1.eq(~fetch & mask),
            to_fetch_2.eq(Mux(to_fetch_1 >= mf, mf, to_fetch_1)),
            to_end_2.eq(Mux(to_end_1 >= mf - 1, mf, to_end_1 + 1)),
            room_2.eq(self._cache_entries - in_cache_1),
            n_3.eq(Mux(to_fetch_2 < to_end_2, to_fetch_2, to_end_2)),
            room_3.eq(room_2),
            n_4.eq(n_3),
            go_4.eq((n_3 != 0) & (room_3 >= n_3)),
            # The request's address, base + 16 * fetch: the sum, then the upper bits from its carry.
            fetch_sum_1.eq(base_low + fetch),
            fetch_addr_2.eq(Cat(
                C(0, 5) if wide else Cat(C(0, 4), fetch_sum_1[0]), fetch_sum_1[1:_INDEX_BITS],
                Mux(fetch_sum_1[-1], base_high_1, base_high))),
            valid[0].eq(~moved),
            *(valid[i].eq(valid[i - 1] & ~moved) for i in (1, 2, 3)),
        ]

        # --- Requests -----------------------------------------------------------------------------
        inflight = Signal(range(self._max_inflight + 1))    # asked for, last beat not yet back
        stale = Signal.like(inflight)           # the oldest of them were asked before a reset
        retire = Signal()
        m.d.comb += retire.eq(resp.valid & resp.ready & resp.payload.last)
        inflight_next = Signal.like(inflight)
        m.d.comb += inflight_next.eq(inflight + issue - retire)
        m.d.sync += inflight.eq(inflight_next)
        with m.If(cfg.reset):
            m.d.sync += stale.eq(inflight_next)
        with m.Elif(retire & (stale != 0)):
            m.d.sync += stale.eq(stale - 1)

        m.d.comb += issue.eq(valid[3] & go_4 & ~self.stop & ~cfg.reset & ~req.valid
                             & (inflight != self._max_inflight))
        with m.If(req.valid & req.ready):
            m.d.sync += req.valid.eq(0)
        start_half = fetch_sum_1[0]             # 256 bits: the entry is the beat's upper half
        skips = Signal(2)                       # 256 bits: (drop first lower, drop last upper)
        with m.If(issue):
            m.d.sync += [
                req.valid.eq(1),
                req.payload.addr.eq(fetch_addr_2),
                fetch.eq((fetch + n_4) & mask),
            ]
            if self._data_bits == 64:
                m.d.sync += req.payload.beats.eq(n_4 << 1)
            elif self._data_bits == 128:
                m.d.sync += req.payload.beats.eq(n_4)
            else:
                m.d.sync += req.payload.beats.eq((start_half + n_4 + 1) >> 1)
                m.d.comb += skips.eq(Cat(start_half, start_half ^ n_4[0]))
        with m.If(cfg.reset):
            m.d.sync += fetch.eq(0)

        # --- Responses into the cache -------------------------------------------------------------
        discard = Signal()
        beat = Signal()
        m.d.comb += [
            resp.ready.eq(1),                   # room was reserved: take every beat as it comes
            discard.eq(stale != 0),
            beat.eq(resp.valid & ~discard),
        ]
        width = _ENTRY_BITS + 1                 # entry, error
        data = resp.payload.data
        error = resp.payload.error
        if not wide:
            cache = SyncFIFOBuffered(width=width, depth=self._cache_entries)
            m.submodules.cache = ResetInserter(cfg.reset)(cache)
            if self._data_bits == 128:
                m.d.comb += [cache.w_en.eq(beat), cache.w_data.eq(Cat(data, error))]
            else:
                # Two beats an entry; every request is whole entries, so the parity of the
                # beats taken (stale or not) says which half this beat is.
                upper = Signal()
                lower = Signal(64)
                lower_error = Signal()
                with m.If(resp.valid):
                    m.d.sync += upper.eq(~upper)
                    with m.If(~upper):
                        m.d.sync += [lower.eq(data), lower_error.eq(error)]
                m.d.comb += [
                    cache.w_en.eq(beat & upper),
                    cache.w_data.eq(Cat(lower, data, lower_error | error)),
                ]
            head_data = cache.r_data
            head_ready = cache.r_rdy
            m.d.comb += cache.r_en.eq(advance)
        else:
            # Bank b holds the entries in the half b of a beat (address bit 4); consecutive
            # entries alternate, so each bank holds at most half the cache.
            banks = []
            for b in range(2):
                bank = SyncFIFOBuffered(width=width, depth=(self._cache_entries + 1) // 2)
                m.submodules[f"cache_{b}"] = ResetInserter(cfg.reset)(bank)
                banks.append(bank)
            # Per request in flight (stale or not), the halves it drops.
            m.submodules.requests = requests = SyncFIFO(width=2, depth=self._max_inflight)
            first = Signal(init=1)              # the next beat is its request's first
            with m.If(resp.valid):
                m.d.sync += first.eq(resp.payload.last)
            m.d.comb += [
                requests.w_en.eq(issue),
                requests.w_data.eq(skips),
                requests.r_en.eq(retire),
                banks[0].w_en.eq(beat & ~(first & requests.r_data[0])),
                banks[0].w_data.eq(Cat(data[:_ENTRY_BITS], error)),
                banks[1].w_en.eq(beat & ~(resp.payload.last & requests.r_data[1])),
                banks[1].w_data.eq(Cat(data[_ENTRY_BITS:], error)),
            ]
            head_bank = out_low[0]              # address bit 4 of the entry on offer
            head_data = Mux(head_bank, banks[1].r_data, banks[0].r_data)
            head_ready = Mux(head_bank, banks[1].r_rdy, banks[0].r_rdy)
            m.d.comb += [
                banks[0].r_en.eq(advance & ~head_bank),
                banks[1].r_en.eq(advance & head_bank),
            ]

        # --- Entries out --------------------------------------------------------------------------
        m.d.comb += [
            out.valid.eq(head_ready & ~self.stop & ~cfg.reset),
            out.payload.entry.eq(head_data[:_ENTRY_BITS]),
            out.payload.error.eq(head_data[_ENTRY_BITS]),
            out.payload.index.eq(nic),
            out.payload.addr.eq(Cat(C(0, 4), out_low, Mux(out_carry, base_high_1, base_high))),
        ]
        return m
