"""RxPacketBuffer (hw/host/rx_buffer.py): admission, whole-frame drops, and the frames it hands on.

A Python model decides, frame by frame, admit or drop (and why). To keep the model exact, most
phases run with the DMA side stalled (so the packet buffer's free space is known to the word) and
end with a drain; one phase reads concurrently, with frames that fit whatever the reader does.
Every test runs at the three DMA widths: the frames come out packed into DMA words, each with the
RxSummary of its (random) status word.
"""

import random
from collections import deque

import pytest
from amaranth.lib import data

from hw import params
from hw.host.rx_buffer import RxPacketBuffer
from hw.layouts import RxStatus, RxSummary

from .amaranth_sim import run_testbenches

DEPTH = params.RX_PACKET_BUFFER_BYTES // params.BEAT_BYTES          # 8192 beats
MAX_BEATS = params.MAX_FRAME_BYTES // params.BEAT_BYTES             # 1152 beats
REASONS = ("disabled", "no_buffer", "overflow", "oversize")
WIDTHS = pytest.mark.parametrize("data_bits", [64, 128, 256])

_STATUS = data.Layout.cast(RxStatus)
_SUMMARY = data.Layout.cast(RxSummary)


def _field(layout, bits, name):
    f = layout[name]
    return bits >> f.offset & ((1 << f.width) - 1)


def _random_status(rng, hash_, length):
    """A status word of random bits but for ``hash`` and ``length``."""
    bits = rng.getrandbits(_STATUS.size)
    for name, value in (("hash", hash_), ("length", length)):
        f = _STATUS[name]
        bits = bits & ~(((1 << f.width) - 1) << f.offset) | value << f.offset
    return bits


def _expected_summary(status_bits):
    """RxSummary's docstring: each field the status field of that name (length: low 16 bits)."""
    out = 0
    for name, f in _SUMMARY:
        if name != "reserved":
            out |= (_field(_STATUS, status_bits, name) & ((1 << f.width) - 1)) << f.offset
    return out


def _words(beats, lanes):
    """Pack 64-bit beats into DMA words of ``lanes`` beats, the last one zero-padded."""
    return [sum(w << (64 * k) for k, w in enumerate(beats[i:i + lanes]))
            for i in range(0, len(beats), lanes)]


def _beats(frame, rng):
    """(data, keep, last) per beat; the bytes past the frame's end are random."""
    n = max(1, -(-len(frame) // 8))
    padded = frame + rng.randbytes(8 * n - len(frame))
    out = []
    for k in range(n):
        valid = min(8, max(0, len(frame) - 8 * k))
        out.append((int.from_bytes(padded[8 * k:8 * k + 8], "little"), (1 << valid) - 1,
                    k == n - 1))
    return out


class Model:
    """What the buffer must do with each frame, given the state at its first beat. A frame takes
    whole DMA words of ``lanes`` beats; a beat that begins a word needs a free word."""

    def __init__(self, lanes):
        self.lanes = lanes
        self.depth = DEPTH // lanes     # packet buffer words
        self.used = 0           # words held by kept frames not yet drained
        self.reserved = 0       # kept frames not yet consumed
        self.drops = dict.fromkeys(REASONS, 0)
        self.kept = []          # (status bits, length, words) of every admitted frame, in order

    def decide(self, nbeats, enable, running, posted):
        if not (enable and running and self.reserved < posted
                and self.reserved < params.RX_PACKET_BUFFER_FRAMES):
            return "disabled" if not enable else "no_buffer"
        # The first beat (1-based) that finds the buffer full, and the first one too many.
        nwords = -(-nbeats // self.lanes)
        k_overflow = ((self.depth - self.used) * self.lanes + 1
                      if self.used + nwords > self.depth else None)
        k_oversize = MAX_BEATS + 1 if nbeats > MAX_BEATS else None
        if k_overflow is not None and (k_oversize is None or k_overflow <= k_oversize):
            return "overflow"
        if k_oversize is not None:
            return "oversize"
        return "kept"

    def drained(self):
        self.used = 0
        self.reserved = 0


def _run(phases, seed, data_bits):
    """``phases``: list of (concurrent, frames); each frame is (bytes, enable, running, posted)."""
    rng = random.Random(seed)
    dut = RxPacketBuffer(data_bits=data_bits)
    lanes = data_bits // 64
    model = Model(lanes)
    st = {"active": False, "done": False, "consumed": 0, "statuses": deque(),
          "drops": dict.fromkeys(REASONS, 0), "status_sent": 0, "status_due": 0,
          "status_stalls": [], "short": []}

    async def producer(ctx):
        cycle = 0
        frame_id = 0

        async def tick():
            nonlocal cycle
            await ctx.tick()
            cycle += 1

        async def idle(n):
            ctx.set(dut.i.valid, 0)
            for _ in range(n):
                await tick()

        for concurrent, frames in phases:
            st["active"] = concurrent
            # ``posted`` counts in the clock before a frame's first beat: set it a clock ahead.
            ctx.set(dut.posted, frames[0][3])
            await idle(1)
            for n, (frame, enable, running, posted) in enumerate(frames):
                next_posted = frames[n + 1][3] if n + 1 < len(frames) else 0
                words = _beats(frame, rng)
                hash_ = 0x5EED0000 + frame_id
                frame_id += 1
                verdict = model.decide(len(words), enable, running, posted)
                status = _random_status(rng, hash_, len(frame) & 0x1FFFF)
                if verdict == "kept":
                    packed = _words([w for w, _, _ in words], lanes)
                    model.used += len(packed)
                    model.reserved += 1
                    model.kept.append((status, len(frame), packed))
                else:
                    model.drops[verdict] += 1
                for k, (word, keep, last) in enumerate(words):
                    if k == 0:
                        ctx.set(dut.enable, enable)
                        ctx.set(dut.running, running)
                    elif len(words) < 64:   # sampled at the first beat only: scramble later
                        ctx.set(dut.enable, rng.random() < 0.5)
                        ctx.set(dut.running, rng.random() < 0.5)
                    if k == len(words) - 1:
                        ctx.set(dut.posted, next_posted)
                    elif len(words) < 64:   # counts only in the clock before a first beat
                        ctx.set(dut.posted, rng.randrange(0, 40))
                    ctx.set(dut.i.payload, {"data": word, "keep": keep, "last": last})
                    ctx.set(dut.i.valid, 1)
                    assert ctx.get(dut.i.ready), f"i not ready at cycle {cycle}"
                    await tick()
                st["statuses"].append((cycle - 1 + rng.randrange(1, 7), status))
                st["status_due"] += 1
                gap = rng.choice([0, 0, 0, 1, 2])
                if gap:
                    await idle(gap)
            ctx.set(dut.i.valid, 0)
            # Every status word in (so a stalled reader finds every kept frame queued: up to
            # RX_PACKET_BUFFER_FRAMES), then drain: every kept frame comes out and is consumed.
            while st["status_sent"] < st["status_due"]:
                await tick()
            st["active"] = True
            while st["consumed"] < len(model.kept) or st["status_sent"] < st["status_due"]:
                await tick()
            await idle(5)
            st["active"] = False
            model.drained()
            assert st["drops"] == model.drops
            assert not ctx.get(dut.frame.valid)
            assert not ctx.get(dut.beats.valid)
        st["done"] = True

    async def status_source(ctx):
        cycle = 0
        while not st["done"] or st["statuses"]:
            queue = st["statuses"]
            if queue and queue[0][0] <= cycle:
                ctx.set(dut.status.payload, _STATUS.from_bits(queue[0][1]))
                ctx.set(dut.status.valid, 1)
                # Documented "always ready". Like the sequencer, wait when it is not; the run
                # fails at the end (after the other checks) if it ever was not.
                if ctx.get(dut.status.ready):
                    queue.popleft()
                    st["status_sent"] += 1
                else:
                    st["status_stalls"].append(cycle)
            else:
                ctx.set(dut.status.valid, 0)
            await ctx.tick()
            cycle += 1

    async def monitor(ctx):
        while not st["done"]:
            *_, disabled, no_buffer, overflow, oversize, short, oldest = await ctx.tick().sample(
                dut.drop_disabled, dut.drop_no_buffer, dut.drop_overflow, dut.drop_oversize,
                dut.short, dut.oldest)
            if short:
                st["short"].append((oldest, st["consumed"]))
            pulses = dict(zip(REASONS, (disabled, no_buffer, overflow, oversize)))
            assert sum(pulses.values()) <= 1, pulses
            for reason, pulse in pulses.items():
                st["drops"][reason] += pulse

    async def consumer(ctx):
        crng = random.Random(seed + 1)
        while not st["done"]:
            if not st["active"] or not ctx.get(dut.frame.valid):
                await ctx.tick()
                continue
            k = st["consumed"]
            assert k < len(model.kept), "a frame came out that the model dropped"
            status, length, words = model.kept[k]
            frame = ctx.get(dut.frame.payload)
            summary = frame.summary.as_value().value
            assert summary == _expected_summary(status), f"frame {k}: summary {summary:#x}"
            assert frame.summary.length == length
            assert frame.words == len(words), f"frame {k}: {frame.words} words"
            for name in ("src", "dst", "seq", "ack", "window"):
                assert getattr(frame.tcp, name) == _field(_STATUS, status, name), (k, name)
            assert frame.slot == k % params.RX_PACKET_BUFFER_FRAMES, (k, frame.slot)
            start, slot = frame.start, frame.slot
            for _ in range(crng.randrange(0, 3)):
                await ctx.tick()
            # The take, then (as the RX writer does) the read of its words, the claim's
            # release, and the slot's free once the words are read.
            ctx.set(dut.frame.ready, 1)
            await ctx.tick()
            ctx.set(dut.frame.ready, 0)
            ctx.set(dut.read.payload.addr, start)
            ctx.set(dut.read.payload.words, len(words))
            ctx.set(dut.read.valid, 1)
            await ctx.tick().until(dut.read.ready)
            ctx.set(dut.read.valid, 0)
            got = []
            while len(got) < len(words):
                ready = int(len(words) > 40 // lanes or crng.random() < 0.7)
                ctx.set(dut.beats.ready, ready)
                if ready and ctx.get(dut.beats.valid):
                    word = ctx.get(dut.beats.payload)
                    got.append(word.data)
                    assert word.last == (len(got) == len(words))
                await ctx.tick()
            ctx.set(dut.beats.ready, 0)
            assert got == words, f"frame {k}: data differs"
            ctx.set(dut.release, 1)
            await ctx.tick()
            ctx.set(dut.release, 0)
            ctx.set(dut.free.payload, slot)
            ctx.set(dut.free.valid, 1)
            await ctx.tick()
            ctx.set(dut.free.valid, 0)
            st["consumed"] += 1

    run_testbenches(dut, producer, status_source, monitor, consumer)
    assert st["consumed"] == len(model.kept)
    assert st["drops"] == model.drops
    stalls = st["status_stalls"]
    assert not stalls, (f"status.ready low while a status word waited, {len(stalls)} clocks "
                        f"from cycle {stalls[0] if stalls else None}")
    model.short = st["short"]
    return model


def _small(rng, n=None):
    return rng.randbytes(rng.randrange(0, 301) if n is None else n)


@WIDTHS
def test_admission_by_enable_running_and_posted(data_bits):
    rng = random.Random(1)
    phases = [
        # posted=1: one frame kept, the next finds its buffer promised; consume frees it.
        (False, [(_small(rng), 1, 1, 1), (_small(rng), 1, 1, 1)]),
        (False, [(_small(rng), 1, 1, 1), (_small(rng, 0), 1, 1, 1)]),
        (False, [(_small(rng), 1, 1, 5) for _ in range(8)]),
        # Random enable/running/posted per frame (then scrambled after each first beat).
        (False, [(_small(rng), rng.random() < 0.8, rng.random() < 0.8, rng.randrange(0, 12))
                 for _ in range(30)]),
        (False, [(_small(rng), rng.random() < 0.8, rng.random() < 0.8, rng.randrange(0, 12))
                 for _ in range(30)]),
    ]
    model = _run(phases, seed=10, data_bits=data_bits)
    assert len(model.kept) >= 20
    assert model.drops["disabled"] >= 5 and model.drops["no_buffer"] >= 10


@WIDTHS
def test_at_most_rx_packet_buffer_frames_reserved(data_bits):
    """With the DMA side stalled, RX_PACKET_BUFFER_FRAMES frames are kept, the rest refused; the
    refused frames' status words must still be taken at once (their frames hold no place)."""
    rng = random.Random(2)
    frames = [(_small(rng, rng.randrange(0, 40)), 1, 1, params.RX_PACKET_BUFFER_FRAMES + 8)
              for _ in range(params.RX_PACKET_BUFFER_FRAMES + 2)]
    model = _run([(False, frames)], seed=20, data_bits=data_bits)
    assert len(model.kept) == params.RX_PACKET_BUFFER_FRAMES
    assert model.drops == {"disabled": 0, "no_buffer": 2, "overflow": 0, "oversize": 0}
    # ``short`` (fewer than a quarter of the slots free) while more than 48 frames are held;
    # ``oldest`` follows the frames as they are freed.
    assert model.short and model.short[0] == (0, 0)
    # (``oldest`` moves a clock or two after the consumer counts a frame freed.)
    assert all(oldest in (consumed, consumed - 1) for oldest, consumed in model.short), (
        sorted(set(model.short)))
    assert max(consumed for _, consumed in model.short) <= 17


@WIDTHS
def test_oversize_and_long_refused_frames(data_bits):
    rng = random.Random(3)
    big = params.MAX_FRAME_BYTES
    long = 8 * 2050         # more beats than an 11-bit count holds
    phases = [
        # Oversize frames are dropped whole, one pulse each, and give their claim back.
        (False, [(rng.randbytes(big + 1), 1, 1, 2), (rng.randbytes(long), 1, 1, 2),
                 (_small(rng, 100), 1, 1, 2), (_small(rng, 20), 1, 1, 2),
                 (_small(rng, 30), 1, 1, 2)]),
        # Long frames refused at their first beat get exactly one pulse, for that reason.
        (False, [(rng.randbytes(big + 8), 0, 1, 5), (rng.randbytes(big + 8), 1, 0, 5),
                 (rng.randbytes(big + 8), 1, 1, 0), (rng.randbytes(big), 1, 1, 1)]),
    ]
    model = _run(phases, seed=30, data_bits=data_bits)
    assert model.drops == {"disabled": 1, "no_buffer": 3, "overflow": 0, "oversize": 2}
    assert [length for _, length, _ in model.kept] == [100, 20, big]


@WIDTHS
def test_overflow_mid_frame_and_when_full(data_bits):
    """Fill the packet buffer to 500 beats short of full with largest frames, then overflow it."""
    rng = random.Random(5)
    fill = DEPTH - 500
    sizes = [MAX_BEATS] * (fill // MAX_BEATS) + ([fill % MAX_BEATS] if fill % MAX_BEATS else [])
    assert len(sizes) + 2 < params.RX_PACKET_BUFFER_FRAMES
    posted = len(sizes) + 2
    frames = [(rng.randbytes(8 * n), 1, 1, posted) for n in sizes]
    frames += [
        (rng.randbytes(8000), 1, 1, posted),        # 1000 beats: overflows at its 501st beat
        (rng.randbytes(8 * 500 - 3), 1, 1, posted), # fills the buffer exactly
        (_small(rng, 0), 1, 1, posted),             # overflow at the first (only) beat
        (_small(rng, 5), 1, 1, posted),
        (_small(rng, 100), 1, 1, posted),           # the claims were given back: not no_buffer
    ]
    model = _run([(False, frames)], seed=50, data_bits=data_bits)
    assert model.drops == {"disabled": 0, "no_buffer": 0, "overflow": 4, "oversize": 0}
    # Short of words (fewer than a quarter free) with only a few frames in.
    assert model.short and model.short[0][0] == 0
    assert len(model.kept) == len(sizes) + 1


@WIDTHS
def test_concurrent_reader_random_frames(data_bits):
    rng = random.Random(4)
    phases = [(True, [(_small(rng), 1, 1, 31) for _ in range(25)]) for _ in range(3)]
    phases.append((True, [(_small(rng), 1, 1, 31) if k % 5 else (_small(rng), 0, 1, 31)
                          for k in range(25)]))
    model = _run(phases, seed=40, data_bits=data_bits)
    assert not model.short          # a few frames at a time: never short
    assert len(model.kept) == 95
    assert model.drops == {"disabled": 5, "no_buffer": 0, "overflow": 0, "oversize": 0}
