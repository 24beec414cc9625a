"""ToeplitzHash (hw/rx_sequencer/toeplitz.py) against the golden model and the Microsoft vectors."""

import random

import pytest

from hw.params import MS_RSS_KEY
from hw.rx_sequencer.toeplitz import TOEPLITZ_INPUT_BYTES, ToeplitzHash
from sim.reference.rss_vectors import MS_RSS_VECTORS
from sim.reference.toeplitz import rss_input, toeplitz_hash

from .amaranth_sim import run_testbenches

# Every row of Microsoft's table, with and without ports.
MS_VECTORS = ([(rss_input(src, dst), h2) for src, _, dst, _, h2, _ in MS_RSS_VECTORS]
              + [(rss_input(src, dst, sp, dp), h4) for src, sp, dst, dp, _, h4 in MS_RSS_VECTORS])


def _hash_all(key, inputs, passes=4):
    """Hash each input through the hardware, as often as it accepts them; returns the hashes."""
    dut = ToeplitzHash(passes=passes)
    results = []
    overruns = []

    async def producer(ctx):
        ctx.set(dut.key, int.from_bytes(key, "big"))
        for value in inputs:
            ctx.set(dut.data, int.from_bytes(value.ljust(TOEPLITZ_INPUT_BYTES, b"\0"), "big"))
            ctx.set(dut.valid, 1)
            overruns.append(ctx.get(dut.overrun))
            await ctx.tick()
            ctx.set(dut.valid, 0)
            if passes > 1:
                await ctx.tick().repeat(passes)

    async def consumer(ctx):
        while len(results) < len(inputs):
            _, _, hash_value, valid = await ctx.tick().sample(dut.hash, dut.hash_valid)
            if valid:
                results.append(hash_value)

    run_testbenches(dut, producer, consumer)
    assert not any(overruns)
    return results


@pytest.mark.parametrize("passes", [1, 2, 4])
def test_microsoft_vectors(passes):
    inputs = [v for v, _ in MS_VECTORS]
    assert _hash_all(MS_RSS_KEY, inputs, passes) == [h for _, h in MS_VECTORS]


@pytest.mark.parametrize("passes", [1, 4])
def test_random_keys_and_inputs_match_golden_model(passes):
    rng = random.Random(1)
    for _ in range(3):
        key = rng.randbytes(40)
        inputs = [rng.randbytes(rng.choice([8, 12, 32, 36])) for _ in range(20)]
        assert _hash_all(key, inputs, passes) == [toeplitz_hash(key, v) for v in inputs]


@pytest.mark.parametrize("passes", [1, 4])
def test_latency_is_as_declared(passes):
    dut = ToeplitzHash(passes=passes)
    seen = []

    async def testbench(ctx):
        ctx.set(dut.key, int.from_bytes(MS_RSS_KEY, "big"))
        ctx.set(dut.valid, 1)
        await ctx.tick()
        ctx.set(dut.valid, 0)
        for cycle in range(1, 10):
            if ctx.get(dut.hash_valid):
                seen.append(cycle)
            await ctx.tick()

    run_testbenches(dut, testbench)
    assert seen == [dut.latency]


def test_overrun_is_flagged():
    dut = ToeplitzHash(passes=4)
    flags = []

    async def testbench(ctx):
        for gap in (4, 5):      # a start 4 clocks after the last is too soon, 5 is fine
            ctx.set(dut.valid, 1)
            await ctx.tick()
            ctx.set(dut.valid, 0)
            await ctx.tick().repeat(gap - 1)
            ctx.set(dut.valid, 1)
            flags.append(ctx.get(dut.overrun))
            await ctx.tick()
            ctx.set(dut.valid, 0)
            await ctx.tick().repeat(10)

    run_testbenches(dut, testbench)
    assert flags == [1, 0]
