"""RingFetcher (hw/host/rings.py) against a Python model of a host ring.

Host memory is a ``ReadServer`` (random latency and ready, error pages). The host testbench sets
the ring up (base, size and the reset pulse, as the register target does), posts entries in random
batches (writes them into memory, then moves ``host_index``), toggles ``stop`` and sometimes
rewrites the size while fetches are in flight. The consumer takes entries with random backpressure
and compares each (content, index, address, error) with the model's next posted entry; every clock
it checks ``nic_index`` and ``posted`` against the model, that no entry is offered while stopped or
in the reset clock, and that no request is asked for while stopped. At the end everything posted
has been taken and the DMA server has nothing left.
"""

import gc
import random
import warnings
from collections import deque

import pytest
from amaranth.hdl import UnusedElaboratable

from hw.host.rings import RingFetcher

from .amaranth_sim import run_testbenches
from .dma_model import ReadServer

MEMORY_BYTES = 0x20000
ERROR_PAGE = 0x3000
RESET = "reset"             # marker in the expected queue: the size was rewritten here


def _entry_error(addr):
    return (addr & ~0xFFF) == ERROR_PAGE


class _Model:
    """What the host has posted, in order, and what the consumer has taken."""

    def __init__(self):
        # RESET, then the current ring's entries (index, addr, content, error) not yet taken, then
        # RESET and the entries of a ring set up since (the consumer has not seen its reset yet).
        self.expected = deque([RESET])
        self.done = False
        self.taken = 0
        self.resets_in_flight = 0   # resets with a fetch in flight or in the request register
        self.stop_clocks = 0


def _tb(dut, server, model, rng, phases, p_stop):
    cfg = dut.config

    async def host(ctx):
        for log2_size, base, count, drain in phases:
            size = 1 << log2_size
            mask = size - 1
            if server.pending or ctx.get(dut.dma.req.valid):
                model.resets_in_flight += 1
            ctx.set(cfg.base, base)
            ctx.set(cfg.log2_size, log2_size)
            ctx.set(cfg.host_index, 0)
            ctx.set(cfg.reset, 1)
            model.expected.append(RESET)
            await ctx.tick()
            ctx.set(cfg.reset, 0)
            host_index = 0
            posted = 0
            while posted < count:
                if rng.random() < p_stop:
                    ctx.set(dut.stop, 1 - ctx.get(dut.stop))
                nic = ctx.get(cfg.nic_index)
                free = mask - ((host_index - nic) & mask)
                k = min(free, count - posted, rng.choice((1, 1, 2, 3, 5, 8, 17)))
                if rng.random() < 0.3:
                    k = 0
                for j in range(k):
                    slot = (host_index + j) & mask
                    addr = base + 16 * slot
                    content = rng.getrandbits(128)
                    server.memory[addr:addr + 16] = content.to_bytes(16, "little")
                    model.expected.append((slot, addr, content, _entry_error(addr)))
                host_index = (host_index + k) & mask
                posted += k
                ctx.set(cfg.host_index, host_index)
                await ctx.tick().repeat(rng.randint(1, 12))
            if drain:
                ctx.set(dut.stop, 0)
                while any(e is not RESET for e in model.expected):
                    await ctx.tick()
        ctx.set(dut.stop, 0)
        model.done = True

    async def consumer(ctx):
        nic = 0
        stopped_prev = False
        req_loaded_prev = False
        clocks = 0
        while not (model.done and all(e is RESET for e in model.expected)):
            clocks += 1
            assert clocks < 200_000, "timeout"
            ctx.set(dut.entries.ready, int(rng.random() < 0.7))
            (_, _, valid, ready, payload, reset, host_index, log2_size, stop, req_valid,
             req_ready) = await ctx.tick().sample(
                dut.entries.valid, dut.entries.ready, dut.entries.payload, cfg.reset,
                cfg.host_index, cfg.log2_size, dut.stop, dut.dma.req.valid, dut.dma.req.ready)
            mask = (1 << log2_size) - 1
            if stop:
                model.stop_clocks += 1
                assert not valid, "entry offered while stopped"
            if reset:
                assert not valid, "entry offered in the reset clock"
                model.expected.popleft()
                while model.expected[0] is not RESET:
                    model.expected.popleft()
                nic = 0
            elif valid and ready:
                assert model.expected[0] is RESET      # the current ring's marker
                model.expected.popleft()
                index, addr, content, error = model.expected.popleft()
                model.expected.appendleft(RESET)
                assert (payload.index, payload.addr, payload.error) == (index, addr, error), (
                    index, addr, error, payload)
                if not error:
                    assert int(payload.entry) == content, (index, hex(addr))
                nic = (nic + 1) & mask
                model.taken += 1
            # A request loaded into the register in a clock where stop was high.
            loaded = bool(req_valid) and not req_loaded_prev
            assert not (loaded and stopped_prev), "fetch asked for while stopped"
            req_loaded_prev = bool(req_valid and not req_ready)
            stopped_prev = bool(stop)
            assert ctx.get(cfg.nic_index) == nic
            assert ctx.get(dut.posted) == (host_index - nic) & mask
        # Nothing left: no beat on its way, nothing extra offered.
        await ctx.tick().repeat(200)
        assert not server.pending
        assert not ctx.get(dut.dma.req.valid)
        assert not ctx.get(dut.entries.valid)
        assert ctx.get(dut.posted) == 0

    return host, consumer


def _phases(rng, max_fetch):
    """(log2_size, base, entries to post, drain before the next) per ring setup."""
    phases = []
    for log2_size in (1, 2, 3, 4, 1, 3, 4, 2):
        size = 1 << log2_size
        if rng.random() < 0.4:      # across the error page's start
            base = ERROR_PAGE - 16 * rng.randint(1, size)
        else:
            base = 16 * rng.randrange((MEMORY_BYTES - 16 * size) // 16)
        phases.append((log2_size, base, rng.randint(3 * size, 6 * size), rng.random() < 0.5))
    # Larger rings: several fetches per pass, a wrap, batches capped by max_fetch; the error page,
    # then a 64 KB boundary (a carry out of the address's low 16 bits) inside the ring.
    for log2_size, boundary in ((6, ERROR_PAGE), (8, ERROR_PAGE), (6, 0x10000)):
        size = 1 << log2_size
        base = boundary - 16 * rng.randint(size // 4, size // 2)
        phases.append((log2_size, base, 2 * size + rng.randint(0, size), True))
    return phases


@pytest.mark.parametrize("data_bits", [64, 128, 256])
def test_ring_fetcher_random(data_bits):
    rng = random.Random(data_bits)
    dut = RingFetcher(data_bits)
    memory = bytearray(MEMORY_BYTES)
    server = ReadServer(dut.dma, memory, data_bits // 8, seed=data_bits, p_ready=0.7,
                        latency=(1, 40), error_pages={ERROR_PAGE})
    model = _Model()
    host, consumer = _tb(dut, server, model, rng, _phases(rng, dut.max_fetch), p_stop=0.05)
    run_testbenches(dut, host, consumer, processes=[server.run])
    assert not server.violations, server.violations[:5]
    assert model.resets_in_flight > 0
    assert model.stop_clocks > 0
    assert model.taken > 500
    entry_beats = max(1, 128 // data_bits)
    for _, beats in server.requests:
        assert beats <= dut.max_fetch * entry_beats + (data_bits == 256)


@pytest.mark.parametrize("max_inflight", [1, 3])
def test_ring_fetcher_inflight(max_inflight):
    """Other numbers of fetches in flight, a small cache and batch, 128 bits."""
    rng = random.Random(max_inflight)
    dut = RingFetcher(128, cache_entries=5, max_fetch=3, max_inflight=max_inflight)
    memory = bytearray(MEMORY_BYTES)
    server = ReadServer(dut.dma, memory, 16, seed=max_inflight, p_ready=0.7, latency=(1, 40),
                        error_pages={ERROR_PAGE})
    model = _Model()
    phases = [p for p in _phases(rng, dut.max_fetch) if p[0] <= 4]
    host, consumer = _tb(dut, server, model, rng, phases, p_stop=0.05)
    run_testbenches(dut, host, consumer, processes=[server.run])
    assert not server.violations, server.violations[:5]
    assert all(beats <= 3 for _, beats in server.requests)


def test_ring_fetcher_throughput():
    """A posted ring of 256 entries, host latency 78, everything always ready: >= 1 entry per 5
    clocks."""
    dut = RingFetcher(128)
    memory = bytearray(MEMORY_BYTES)
    server = ReadServer(dut.dma, memory, 16, p_ready=1.0, latency=(78, 78))
    rng = random.Random(1)
    entries = 256
    base = 0x1000
    contents = [rng.getrandbits(128) for _ in range(entries)]
    for i, content in enumerate(contents):
        memory[base + 16 * i:base + 16 * i + 16] = content.to_bytes(16, "little")
    taken = []

    async def host(ctx):
        ctx.set(dut.config.base, base)
        ctx.set(dut.config.log2_size, 9)
        ctx.set(dut.config.reset, 1)
        await ctx.tick()
        ctx.set(dut.config.reset, 0)
        ctx.set(dut.config.host_index, entries)

    async def consumer(ctx):
        ctx.set(dut.entries.ready, 1)
        clock = 0
        while len(taken) < entries:
            _, _, valid, payload = await ctx.tick().sample(dut.entries.valid,
                                                           dut.entries.payload)
            clock += 1
            if valid:
                assert int(payload.entry) == contents[payload.index]
                taken.append((clock, int(payload.index)))

    run_testbenches(dut, host, consumer, processes=[server.run])
    assert [i for _, i in taken] == list(range(entries))
    total = taken[-1][0]                            # doorbell to last entry taken
    steady = (taken[-1][0] - taken[0][0]) / (entries - 1)
    print(f"\n256 entries: {total} clocks from the doorbell ({total / entries:.2f} clocks/entry), "
          f"{steady:.2f} clocks/entry from the first entry; {len(server.requests)} requests")
    assert total / entries <= 5


def test_ring_fetcher_parameters():
    with warnings.catch_warnings():
        # The refused objects exist (Elaboratable.__new__ ran) but are never elaborated.
        warnings.simplefilter("ignore", UnusedElaboratable)
        for kwargs, match in (
                ({"data_bits": 32}, "data_bits"), ({"max_fetch": 0}, "max_fetch"),
                ({"cache_entries": 8, "max_fetch": 16}, "at least max_fetch"),
                ({"max_inflight": 0}, "max_inflight"), ({"cache_entries": 2048}, "cache_entries")):
            with pytest.raises(ValueError, match=match):
                RingFetcher(**kwargs)
        gc.collect()
