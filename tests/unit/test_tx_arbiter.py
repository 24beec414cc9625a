"""TxArbiter (hw/tx/arbiter.py): each input's frames leave whole and in order, never
interleaved, round robin per frame; back to back, one beat a clock, across frames and inputs."""

import gc
import random
import warnings

import pytest
from amaranth.hdl import UnusedElaboratable

from hw.layouts import RxBeat
from hw.tx.arbiter import TxArbiter

from .amaranth_sim import run_testbenches


def _frames(rng, count, seen, lengths=(1, 200)):
    """``count`` random frames, none equal to one in ``seen`` (so each output frame names its
    input)."""
    out = []
    while len(out) < count:
        frame = rng.randbytes(rng.randint(*lengths))
        if frame not in seen:
            seen.add(frame)
            out.append(frame)
    return out


def _beats(frame):
    """(data, keep, last) of each beat; bytes past the frame's end are 0xA5 (must not be
    trusted)."""
    beats = []
    for k in range(0, len(frame), 8):
        chunk = frame[k:k + 8]
        last = k + 8 >= len(frame)
        beats.append((int.from_bytes(chunk.ljust(8, b"\xa5"), "little"),
                      (1 << len(chunk)) - 1, int(last)))
    return beats


def _producer(stream, frames, rng, p_gap_beat, p_gap_frame):
    async def tb(ctx):
        for frame in frames:
            while rng.random() < p_gap_frame:
                ctx.set(stream.valid, 0)
                await ctx.tick()
            for k, (word, keep, last) in enumerate(_beats(frame)):
                while k and rng.random() < p_gap_beat:
                    ctx.set(stream.valid, 0)
                    await ctx.tick()
                ctx.set(stream.payload, RxBeat.const({"data": word, "keep": keep, "last": last}))
                ctx.set(stream.valid, 1)
                while True:
                    _, _, ready = await ctx.tick().sample(stream.ready)
                    if ready:
                        break
        ctx.set(stream.valid, 0)
    return tb


def _collector(dut, rng, count, out, p_ready, clocks, stalls):
    """Takes ``count`` frames off ``o`` (``o.ready`` high with probability ``p_ready``); records
    each beat's clock in ``clocks``, and in ``stalls`` each clock between the first beat and the
    last with ``o.ready`` but no beat; then checks nothing more leaves."""
    async def tb(ctx):
        current = bytearray()
        clock = 0
        idle_ready = []
        while len(out) < count:
            assert clock < 50_000, "frames missing"
            ctx.set(dut.o.ready, int(rng.random() < p_ready))
            _, _, valid, ready, beat = await ctx.tick().sample(
                dut.o.valid, dut.o.ready, dut.o.payload)
            clock += 1
            if not (valid and ready):
                if ready and clocks:
                    idle_ready.append(clock)
                continue
            stalls.extend(idle_ready)
            idle_ready.clear()
            clocks.append(clock)
            word = int(beat.data).to_bytes(8, "little")
            keep = int(beat.keep)
            if beat.last:
                n = keep.bit_length()
                assert n >= 1 and keep == (1 << n) - 1, f"keep {keep:#x} not a run from bit 0"
                out.append(bytes(current + word[:n]))
                current = bytearray()
            else:
                assert keep == 0xFF
                current += word
        ctx.set(dut.o.ready, 1)
        for _ in range(30):
            _, _, valid = await ctx.tick().sample(dut.o.valid)
            assert not valid
    return tb


def _sources(out, per_input):
    """The input each output frame came from: each must be the next frame of exactly one input
    (whole, in that input's order: an interleaved or reordered frame matches none); every input's
    frames all came out."""
    heads = [0] * len(per_input)
    sources = []
    for frame in out:
        match = [k for k, frames in enumerate(per_input)
                 if heads[k] < len(frames) and frames[heads[k]] == frame]
        assert len(match) == 1, f"output frame {len(sources)} is no input's next frame"
        heads[match[0]] += 1
        sources.append(match[0])
    assert heads == [len(frames) for frames in per_input]
    return sources


def _run(inputs, counts, seed, *, p_gap_beat, p_gap_frame, p_ready, lengths=(1, 200)):
    rng = random.Random(seed)
    seen = set()
    per_input = [_frames(rng, n, seen, lengths) for n in counts]
    dut = TxArbiter(inputs)
    out, clocks, stalls = [], [], []
    producers = [_producer(dut.i[k], frames, random.Random(seed * 10 + k), p_gap_beat,
                           p_gap_frame) for k, frames in enumerate(per_input)]
    run_testbenches(dut, *producers, _collector(dut, random.Random(seed + 1), sum(counts), out,
                                                p_ready, clocks, stalls))
    if p_gap_beat == p_gap_frame == 0:
        assert stalls == [], "with beats waiting, one leaves on every clock o.ready is high"
    return _sources(out, per_input), per_input, clocks


@pytest.mark.parametrize("inputs", (1, 2, 3))
@pytest.mark.parametrize(("seed", "p_gap_beat", "p_gap_frame", "p_ready"),
                         [(1, 0.2, 0.5, 0.6), (2, 0.0, 0.8, 0.9), (3, 0.4, 0.1, 0.3)])
def test_frames_whole_and_in_order(inputs, seed, p_gap_beat, p_gap_frame, p_ready):
    _run(inputs, [60] * inputs, seed + 10 * inputs, p_gap_beat=p_gap_beat,
         p_gap_frame=p_gap_frame, p_ready=p_ready)


@pytest.mark.parametrize("inputs", (2, 3))
@pytest.mark.parametrize("p_ready", (1.0, 0.5))
def test_round_robin_with_every_input_busy(inputs, p_ready):
    """Every input always has a frame waiting: each sends one in every ``inputs`` consecutive
    frames (from the first on)."""
    sources, _, _ = _run(inputs, [40] * inputs, 7 + inputs, p_gap_beat=0.0, p_gap_frame=0.0,
                         p_ready=p_ready)
    assert len(set(sources[:inputs])) == inputs
    assert all(sources[j] == sources[j % inputs] for j in range(inputs * 40))


@pytest.mark.parametrize("inputs", (1, 2, 3))
def test_back_to_back_one_beat_a_clock(inputs):
    """With every input busy and ``o.ready`` high, one beat leaves every clock, across frames
    and inputs; short frames (1 beat) included."""
    _, per_input, clocks = _run(inputs, [30] * inputs, 20 + inputs, p_gap_beat=0.0,
                                p_gap_frame=0.0, p_ready=1.0, lengths=(1, 40))
    beats = sum(len(_beats(f)) for frames in per_input for f in frames)
    assert len(clocks) == beats
    assert clocks[-1] - clocks[0] == beats - 1


@pytest.mark.parametrize("busy", (0, 1, 2))
def test_back_to_back_from_one_input(busy):
    """One input alone sends its frames back to back (no idle clock between its frames)."""
    counts = [0, 0, 0]
    counts[busy] = 40
    sources, per_input, clocks = _run(3, counts, 30 + busy, p_gap_beat=0.0, p_gap_frame=0.0,
                                      p_ready=1.0, lengths=(1, 30))
    assert set(sources) == {busy}
    beats = sum(len(_beats(f)) for f in per_input[busy])
    assert clocks[-1] - clocks[0] == beats - 1


def test_inputs_validated():
    with warnings.catch_warnings():
        # The refused objects exist (Elaboratable.__new__ ran) but are never elaborated.
        warnings.simplefilter("ignore", UnusedElaboratable)
        with pytest.raises(ValueError, match="inputs must be at least 1, not 0"):
            TxArbiter(0)
        with pytest.raises(TypeError, match="inputs must be an int"):
            TxArbiter(2.0)
        gc.collect()
