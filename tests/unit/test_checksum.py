"""ChecksumAccumulator (hw/lib/checksum.py) against the golden ones' complement sum."""

import random

from hw.lib.checksum import ChecksumAccumulator
from sim.reference.checksum import ones_complement_sum

from .amaranth_sim import run_testbenches


def _frames(rng, count):
    """Random frames, each with a random even-aligned region [lo, hi) of bytes that count."""
    frames = []
    for _ in range(count):
        frame = rng.randbytes(rng.choice([1, 7, 8, 9, 60, 64, 333, 1514]))
        lo = rng.randrange(0, len(frame) + 1) & ~1
        hi = rng.randrange(lo, len(frame) + 1)
        frames.append((frame, lo, hi))
    frames.append((b"\xff" * 64, 0, 64))          # sums to 0xFFFF with carries all the way
    frames.append((bytes(16), 0, 16))             # all zero
    return frames


def _sum_in_hardware(frames, idle_every=0):
    dut = ChecksumAccumulator()
    sums = []

    async def producer(ctx):
        for frame, lo, hi in frames:
            beats = max(1, (len(frame) + 7) // 8)
            for k in range(beats):
                chunk = frame[8 * k:8 * k + 8]
                mask = sum(1 << i for i in range(len(chunk)) if lo <= 8 * k + i < hi)
                ctx.set(dut.data, int.from_bytes(chunk.ljust(8, b"\0"), "little"))
                ctx.set(dut.mask, mask)
                ctx.set(dut.last, k == beats - 1)
                ctx.set(dut.valid, 1)
                await ctx.tick()
                if idle_every and k % idle_every == 0:
                    ctx.set(dut.valid, 0)
                    await ctx.tick()
        ctx.set(dut.valid, 0)

    async def consumer(ctx):
        while len(sums) < len(frames):
            _, _, value, valid = await ctx.tick().sample(dut.sum, dut.sum_valid)
            if valid:
                sums.append(value)

    run_testbenches(dut, producer, consumer)
    return sums


def test_back_to_back_frames_match_golden_model():
    frames = _frames(random.Random(2), 60)
    expected = [ones_complement_sum(frame[lo:hi]) for frame, lo, hi in frames]
    assert _sum_in_hardware(frames) == expected


def test_idle_cycles_do_not_disturb_the_sum():
    frames = _frames(random.Random(3), 20)
    expected = [ones_complement_sum(frame[lo:hi]) for frame, lo, hi in frames]
    assert _sum_in_hardware(frames, idle_every=3) == expected
