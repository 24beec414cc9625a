"""SlicedFIFO (hw/lib/fifo.py) against a Python deque, and clock by clock against SyncFIFOBuffered.

A producer and a consumer testbench, each with its own random pauses, move words through the FIFO;
a monitor checks ``level`` against the words the model holds at every clock edge. The comparison
with Amaranth's ``SyncFIFOBuffered`` checks the claim that the two have the same timing.
"""

import gc
import random
import warnings
from collections import deque

import pytest
from amaranth import Module
from amaranth.hdl import Fragment, UnusedElaboratable
from amaranth.lib.fifo import SyncFIFOBuffered

from hw import params
from hw.layouts import RxStatus
from hw.lib.fifo import SlicedFIFO
from hw.rx_sequencer.header_decoder import DecodedHeader

from .amaranth_sim import run_testbenches

# (width, depth, slice_bits): the sequencer's two uses, the smallest FIFO, more slices than
# memory entries (the slices' address offsets wrap), and a last slice narrower than the others.
CONFIGS = [
    pytest.param(RxStatus.as_shape().size, params.RX_STATUS_FIFO_DEPTH, 96, id="status-fifo"),
    pytest.param(DecodedHeader.as_shape().size, params.RX_HEADER_FIFO_DEPTH, None,
                 id="header-fifo"),
    pytest.param(8, 2, None, id="depth-2"),
    pytest.param(37, 4, 5, id="8-slices-3-entries"),
    pytest.param(64, 7, 30, id="uneven-slices"),
]


def _move_words(dut, words, *, seed, p_write, p_read):
    """Push ``words`` through ``dut`` with random pauses on both sides; the words read, in order."""
    rng_w = random.Random(seed)
    rng_r = random.Random(seed + 1)
    model = deque()                 # the words written and not yet read
    out = []
    stats = {"full": 0, "empty_while_reading": 0}

    async def producer(ctx):
        for word in words:
            while rng_w.random() >= p_write:
                ctx.set(dut.w_en, 0)
                await ctx.tick()
            ctx.set(dut.w_data, word)
            ctx.set(dut.w_en, 1)
            while True:
                _, _, w_rdy = await ctx.tick().sample(dut.w_rdy)
                if w_rdy:
                    break
                stats["full"] += 1
            model.append(word)
        ctx.set(dut.w_en, 0)

    async def consumer(ctx):
        while len(out) < len(words):
            r_en = rng_r.random() < p_read
            ctx.set(dut.r_en, r_en)
            _, _, r_rdy, r_data = await ctx.tick().sample(dut.r_rdy, dut.r_data)
            if r_en and r_rdy:
                # A word is readable at the earliest two clocks after its write, so the producer
                # has put it into the model by now.
                assert r_data == model.popleft(), f"word {len(out)}"
                out.append(r_data)
            elif r_en:
                stats["empty_while_reading"] += 1
        ctx.set(dut.r_en, 0)
        for _ in range(4):
            assert not ctx.get(dut.r_rdy), "a word left over"
            await ctx.tick()
        assert ctx.get(dut.level) == 0

    async def monitor(ctx):
        held = 0
        while len(out) < len(words):
            _, _, level, w_en, w_rdy, r_en, r_rdy = await ctx.tick().sample(
                dut.level, dut.w_en, dut.w_rdy, dut.r_en, dut.r_rdy)
            assert level == held
            assert w_rdy == (held - r_rdy != dut.depth - 1)     # room in the memory part
            held += (w_en and w_rdy) - (r_en and r_rdy)

    run_testbenches(dut, producer, consumer, monitor)
    return out, stats


@pytest.mark.parametrize(("width", "depth", "slice_bits"), CONFIGS)
@pytest.mark.parametrize(("p_write", "p_read"), [(0.9, 0.3), (0.3, 0.9), (0.7, 0.7)],
                         ids=["slow-reader", "slow-writer", "even"])
def test_random_backpressure_matches_deque(width, depth, slice_bits, p_write, p_read):
    rng = random.Random(width * 1000 + depth)
    words = [rng.getrandbits(width) for _ in range(300)]
    dut = SlicedFIFO(width=width, depth=depth, slice_bits=slice_bits)
    out, stats = _move_words(dut, words, seed=depth, p_write=p_write, p_read=p_read)
    assert out == words
    if p_read < p_write:
        assert stats["full"] > 10           # the writer met a full FIFO
    if p_write < p_read:
        assert stats["empty_while_reading"] > 10


# A 2-deep FIFO has one entry in memory: when streaming it takes a word every other clock.
STREAMING = [config for config in CONFIGS if config.id != "depth-2"]


@pytest.mark.parametrize(("width", "depth", "slice_bits"), STREAMING)
def test_one_word_per_clock_when_both_sides_are_ready(width, depth, slice_bits):
    words = [random.Random(7).getrandbits(width) for _ in range(50)]
    dut = SlicedFIFO(width=width, depth=depth, slice_bits=slice_bits)
    cycles = []

    async def producer(ctx):
        for word in words:
            ctx.set(dut.w_data, word)
            ctx.set(dut.w_en, 1)
            _, _, w_rdy = await ctx.tick().sample(dut.w_rdy)
            assert w_rdy
        ctx.set(dut.w_en, 0)

    async def consumer(ctx):
        ctx.set(dut.r_en, 1)
        out = []
        cycle = 0
        while len(out) < len(words):
            _, _, r_rdy, r_data = await ctx.tick().sample(dut.r_rdy, dut.r_data)
            if r_rdy:
                out.append(r_data)
                cycles.append(cycle)
            cycle += 1
        assert out == words

    run_testbenches(dut, producer, consumer)
    assert cycles[0] == 2                   # written at edge 0, read data valid after edge 2
    assert cycles == list(range(2, 2 + len(words)))


@pytest.mark.parametrize(("width", "depth", "slice_bits"), CONFIGS)
def test_same_timing_as_sync_fifo_buffered(width, depth, slice_bits):
    """Same random inputs into both FIFOs: the same outputs at every clock."""
    m = Module()
    m.submodules.dut = dut = SlicedFIFO(width=width, depth=depth, slice_bits=slice_bits)
    m.submodules.ref = ref = SyncFIFOBuffered(width=width, depth=depth)
    rng = random.Random(depth)
    compared = {"valid_words": 0}

    async def stimulus(ctx):
        for cycle in range(600):
            w_en, w_data, r_en = rng.random() < 0.6, rng.getrandbits(width), rng.random() < 0.5
            for fifo in (dut, ref):
                ctx.set(fifo.w_en, w_en)
                ctx.set(fifo.w_data, w_data)
                ctx.set(fifo.r_en, r_en)
            for name in ("w_rdy", "r_rdy", "level"):
                assert ctx.get(getattr(dut, name)) == ctx.get(getattr(ref, name)), (name, cycle)
            if ctx.get(ref.r_rdy):
                assert ctx.get(dut.r_data) == ctx.get(ref.r_data), cycle
                compared["valid_words"] += 1
            await ctx.tick()

    run_testbenches(m, stimulus)
    assert compared["valid_words"] > 200


def _elaborated(fifo):
    """``fifo``, elaborated (Amaranth warns about components that never are)."""
    Fragment.get(fifo, None)
    return fifo


def test_parameters_are_read_only_properties():
    fifo = _elaborated(SlicedFIFO(width=540, depth=16, slice_bits=96))
    assert (fifo.width, fifo.depth, fifo.slice_bits) == (540, 16, 96)
    assert _elaborated(SlicedFIFO(width=12, depth=4)).slice_bits == 12
    assert _elaborated(SlicedFIFO(width=12, depth=4, slice_bits=100)).slice_bits == 12
    with pytest.raises(AttributeError):
        fifo.depth = 8


@pytest.mark.parametrize(("kwargs", "error"), [
    ({"width": 0, "depth": 4}, TypeError),
    ({"width": 8.0, "depth": 4}, TypeError),
    ({"width": 8, "depth": 1}, ValueError),
    ({"width": 8, "depth": 4, "slice_bits": 0}, TypeError),
])
def test_bad_parameters_are_refused(kwargs, error):
    # The half-built component is never elaborated: collect it here, its warning silenced, rather
    # than let the warning surface in a later test.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UnusedElaboratable)
        with pytest.raises(error):
            SlicedFIFO(**kwargs)
        gc.collect()
