"""PacketFifo (hw/lib/packet_fifo.py) against a Python model: a deque of committed beats."""

import random
from collections import deque

from hw.lib.packet_fifo import PacketFifo

from .amaranth_sim import run_testbenches

WIDTH = 64


def _idle_writer(ctx, dut):
    ctx.set(dut.w_en, 0)
    ctx.set(dut.w_commit, 0)
    ctx.set(dut.w_abort, 0)


def _random_run(seed, depth, cycles, p_ready):
    """One testbench drives both sides, so the model steps exactly with the clock."""
    rng = random.Random(seed)
    dut = PacketFifo(width=WIDTH, depth=depth)
    result = {"read": [], "committed_total": 0, "full_seen": 0, "aborted": 0}

    async def tb(ctx):
        committed = deque()     # the reader's beats, in order
        pending = []            # written since the last commit
        stored = 0              # beats in the FIFO: pending + committed not yet read
        for cycle in range(cycles + 400):
            draining = cycle >= cycles
            # w_free: every beat not yet read counts, committed or not.
            assert ctx.get(dut.w_free) == depth - stored, cycle
            if stored == depth:
                result["full_seen"] += 1

            w_en = commit = abort = 0
            if not draining:
                op = rng.random()
                if op < 0.55 and stored < depth:
                    w_en = 1
                    commit = int(rng.random() < 0.2)
                elif op < 0.65:
                    commit = 1
                elif op < 0.72 and pending:
                    abort = 1
            elif pending:
                commit = 1
            data = rng.getrandbits(WIDTH)
            ready = 1 if draining else int(rng.random() < p_ready)
            ctx.set(dut.w_data, data)
            ctx.set(dut.w_en, w_en)
            ctx.set(dut.w_commit, commit)
            ctx.set(dut.w_abort, abort)
            ctx.set(dut.r.ready, ready)

            valid = ctx.get(dut.r.valid)
            payload = ctx.get(dut.r.payload)
            if valid:
                # Nothing uncommitted (or aborted) is ever visible.
                assert committed, f"valid with no committed beat at cycle {cycle}"
                assert payload == committed[0], cycle
            await ctx.tick()

            if valid and ready:
                result["read"].append(committed.popleft())
                stored -= 1
            if w_en:
                pending.append(data)
                stored += 1
            if abort:
                stored -= len(pending)
                result["aborted"] += len(pending)
                pending = []
            if commit:
                committed.extend(pending)
                result["committed_total"] += len(pending)
                pending = []
        _idle_writer(ctx, dut)
        assert not committed and not pending
        assert ctx.get(dut.w_free) == depth
        assert not ctx.get(dut.r.valid)

    run_testbenches(dut, tb)
    return result


def test_random_interleavings_match_model_small_depth():
    # depth 16 is filled often; the model's full state is checked every clock.
    result = _random_run(seed=1, depth=16, cycles=4000, p_ready=0.35)
    assert result["full_seen"] > 20
    assert result["aborted"] > 50
    assert len(result["read"]) == result["committed_total"] > 500


def test_random_interleavings_match_model_fast_reader():
    result = _random_run(seed=2, depth=32, cycles=3000, p_ready=0.9)
    assert len(result["read"]) == result["committed_total"] > 500


def test_fill_to_full_then_read_one_beat_per_clock():
    depth = 64
    dut = PacketFifo(width=WIDTH, depth=depth)
    words = [random.Random(5).getrandbits(WIDTH) for _ in range(depth)]

    async def tb(ctx):
        ctx.set(dut.r.ready, 0)
        for k, word in enumerate(words):
            assert ctx.get(dut.w_free) == depth - k
            ctx.set(dut.w_data, word)
            ctx.set(dut.w_en, 1)
            ctx.set(dut.w_commit, k == depth - 1)
            await ctx.tick()
        _idle_writer(ctx, dut)
        assert ctx.get(dut.w_free) == 0
        for _ in range(10):         # the prefetch fills, but w_free stays at 0 until beats leave
            await ctx.tick()
            assert ctx.get(dut.w_free) == 0
        assert ctx.get(dut.r.valid)
        ctx.set(dut.r.ready, 1)
        out = []
        for k in range(depth):
            assert ctx.get(dut.r.valid), f"bubble at beat {k}"
            out.append(ctx.get(dut.r.payload))
            await ctx.tick()
            assert ctx.get(dut.w_free) == k + 1
        assert out == words
        for _ in range(5):
            assert not ctx.get(dut.r.valid)
            await ctx.tick()

    run_testbenches(dut, tb)


def test_streaming_write_commit_reads_one_beat_per_clock():
    """Beats committed every clock come out every clock once the pipeline has filled."""
    depth = 16
    n = 200
    dut = PacketFifo(width=WIDTH, depth=depth)
    rng = random.Random(6)
    words = [rng.getrandbits(WIDTH) for _ in range(n)]

    async def tb(ctx):
        ctx.set(dut.r.ready, 1)
        out = []
        first_valid = None
        cycle = 0
        while len(out) < n:
            k = cycle
            if k < n:
                ctx.set(dut.w_data, words[k])
                ctx.set(dut.w_en, 1)
                ctx.set(dut.w_commit, 1)
            else:
                _idle_writer(ctx, dut)
            if ctx.get(dut.r.valid):
                if first_valid is None:
                    first_valid = cycle
                out.append(ctx.get(dut.r.payload))
            await ctx.tick()
            cycle += 1
            assert cycle < n + 20
        assert out == words
        # n beats in n consecutive clocks: no bubble after the latency.
        assert cycle - first_valid == n
        # Latency: write and commit, the memory written and the commit seen (a clock late),
        # the block RAM read, the data register, the prefetch FIFO.
        assert first_valid <= 5

    run_testbenches(dut, tb)


def test_abort_returns_space_and_hides_beats():
    depth = 16
    dut = PacketFifo(width=WIDTH, depth=depth)

    async def tb(ctx):
        ctx.set(dut.r.ready, 1)
        # 3 beats committed, 10 written then aborted, 2 more committed.
        for k in range(3):
            ctx.set(dut.w_data, 0x100 + k)
            ctx.set(dut.w_en, 1)
            ctx.set(dut.w_commit, k == 2)
            await ctx.tick()
        ctx.set(dut.r.ready, 0)
        for k in range(10):
            ctx.set(dut.w_data, 0x200 + k)
            ctx.set(dut.w_en, 1)
            ctx.set(dut.w_commit, 0)
            await ctx.tick()
        assert ctx.get(dut.w_free) == depth - 13
        _idle_writer(ctx, dut)
        ctx.set(dut.w_abort, 1)
        await ctx.tick()
        ctx.set(dut.w_abort, 0)
        assert ctx.get(dut.w_free) == depth - 3
        for k in range(2):
            ctx.set(dut.w_data, 0x300 + k)
            ctx.set(dut.w_en, 1)
            ctx.set(dut.w_commit, k == 1)
            await ctx.tick()
        _idle_writer(ctx, dut)
        ctx.set(dut.r.ready, 1)
        out = []
        for _ in range(20):
            if ctx.get(dut.r.valid):
                out.append(ctx.get(dut.r.payload))
            await ctx.tick()
        assert out == [0x100, 0x101, 0x102, 0x300, 0x301]
        assert ctx.get(dut.w_free) == depth

    run_testbenches(dut, tb)
