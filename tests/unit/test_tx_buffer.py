"""TxFrameBuffer (hw/host/tx_buffer.py): reserved, written and committed frames leave whole on the
64-bit MAC side, back to back, with their patches applied; discarded frames leave nothing."""

import gc
import itertools
import random
import warnings

import pytest
from amaranth.hdl import UnusedElaboratable

from hw.host.tx_buffer import TxFrameBuffer
from hw.layouts import TxBufferedFrame

from .amaranth_sim import run_testbenches

WIDTHS = (64, 128, 256)


def _words(frame, beat_bytes):
    """Beats of ``frame``; bytes past its end are filled with 0xA5 (they must not be trusted)."""
    beats = max(1, -(-len(frame) // beat_bytes))
    padded = frame.ljust(beat_bytes * beats, b"\xa5")
    return [int.from_bytes(padded[beat_bytes * k:beat_bytes * (k + 1)], "little")
            for k in range(beats)]


def _descriptor(frame, ip=None, l4=None):
    def patch(p):
        if p is None:
            return {"enable": 0, "offset": 0, "value": 0}
        return {"enable": 1, "offset": p[0], "value": p[1]}
    mac_beats = max(1, -(-len(frame) // 8))
    return TxBufferedFrame.const({
        "beats": mac_beats,
        "last_bytes": len(frame) - 8 * (mac_beats - 1),
        "ip_csum": patch(ip),
        "l4_csum": patch(l4),
    })


def _expected(frame, ip=None, l4=None):
    out = bytearray(frame)
    for p in (ip, l4):          # l4 last: it is the outer patch in the hardware
        if p is not None:
            out[p[0]:p[0] + 2] = p[1].to_bytes(2, "big")
    return bytes(out)


async def _reserve(ctx, dut, beats):
    while not (ctx.get(dut.w.free) >= beats and ctx.get(dut.w.frame_room)):
        await ctx.tick()
    ctx.set(dut.w.reserve, 1)
    ctx.set(dut.w.reserve_beats, beats)
    await ctx.tick()
    ctx.set(dut.w.reserve, 0)


async def _write_frame(ctx, dut, rng, frame, ip=None, l4=None, *, discard=False, gaps=True):
    """Reserve, write and commit one frame; the commit comes with the last beat or later."""
    words = _words(frame, dut.data_bits // 8)
    await _reserve(ctx, dut, len(words))
    commit_with_last = rng.random() < 0.5
    for k, word in enumerate(words):
        ctx.set(dut.w.data, word)
        ctx.set(dut.w.en, 1)
        if k == len(words) - 1 and commit_with_last:
            ctx.set(dut.w.frame, _descriptor(frame, ip, l4))
            ctx.set(dut.w.discard, discard)
            ctx.set(dut.w.commit, 1)
        await ctx.tick()
        ctx.set(dut.w.en, 0)
        ctx.set(dut.w.commit, 0)
        if gaps and rng.random() < 0.2:
            await ctx.tick()
    if not commit_with_last:
        for _ in range(rng.choice((0, 0, 3))):
            await ctx.tick()
        ctx.set(dut.w.frame, _descriptor(frame, ip, l4))
        ctx.set(dut.w.discard, discard)
        ctx.set(dut.w.commit, 1)
        await ctx.tick()
        ctx.set(dut.w.commit, 0)


def _collector(dut, rng, count, out, p_ready, starts=None):
    """Takes ``count`` frames off ``o`` with random backpressure; checks keep and ``sent``;
    records the clock of each frame's first beat in ``starts``."""

    async def tb(ctx):
        current = bytearray()
        sent = 0
        clock = 0
        while len(out) < count:
            ctx.set(dut.o.ready, int(rng.random() < p_ready))
            _, _, valid, ready, beat, sent_pulse = await ctx.tick().sample(
                dut.o.valid, dut.o.ready, dut.o.payload, dut.sent)
            clock += 1
            sent += sent_pulse
            if not (valid and ready):
                assert not sent_pulse
                continue
            if not current and starts is not None:
                starts.append(clock)
            word = int(beat.data).to_bytes(8, "little")
            keep = int(beat.keep)
            assert sent_pulse == int(beat.last)
            if beat.last:
                n = keep.bit_length()
                assert keep == (1 << n) - 1 and n >= 1, f"keep {keep:#x} not a run from bit 0"
                current += word[:n]
                out.append(bytes(current))
                current = bytearray()
            else:
                assert keep == 0xFF
                current += word
        ctx.set(dut.o.ready, 1)
        for _ in range(60):     # nothing else leaves (the discarded frames above all)
            _, _, valid = await ctx.tick().sample(dut.o.valid)
            assert not valid
        assert sent == count
        assert ctx.get(dut.w.free) == dut.depth
        assert ctx.get(dut.w.frame_room)

    return tb


def _frames(rng):
    f = rng.randbytes
    cases = [
        (f(20), (0, 0x1234), (18, 0xBEEF)),         # first beat; last beat (last_bytes 4)
        (f(64), (24, 0xA1B2), (30, 0xC3D4)),        # both patches in one beat
        (f(2), None, (0, 0xFFFF)),                  # whole frame is the field
        (f(1514), (14 + 10, 0x5A5A), (34 + 16, 0x0102)),   # IPv4 + TCP checksum places
        (f(9), None, None),                         # last_bytes 1
        (f(8), (6, 0x7788), None),                  # one full beat, field at its end
        (f(46), (40, 0x1111), (44, 0x2222)),        # both in the partial last beat
        (f(8 * 37), (8 * 36 + 6, 0x3344), (2, 0x5566)),
        (f(9000), (9000 - 2, 0x4242), (4000, 0x2424)),
        (f(32), (30, 0x0BAD), None),                # exactly one 256-bit beat
        (f(34), None, (32, 0xD00D)),                # two bytes into the next
    ]
    for _ in range(25):
        n = rng.randrange(2, 400)
        patches = []
        for _ in range(2):
            if rng.random() < 0.8:
                patches.append((rng.randrange(0, n - 1) & ~1, rng.getrandbits(16)))
            else:
                patches.append(None)
        if all(patches) and patches[0][0] == patches[1][0]:
            patches[1] = None       # overlapping fields are not a case the TX path produces
        cases.append((f(n), *patches))
    return cases


def _run(data_bits, seed, p_ready, gaps=True):
    rng = random.Random(seed)
    frames = _frames(rng)
    discarded = {3: rng.randbytes(77), 7: rng.randbytes(5), 12: rng.randbytes(300)}
    out = []
    dut = TxFrameBuffer(data_bits=data_bits)

    async def writer(ctx):
        for k, (frame, ip, l4) in enumerate(frames):
            await _write_frame(ctx, dut, rng, frame, ip, l4, gaps=gaps)
            if k in discarded:
                await _write_frame(ctx, dut, rng, discarded[k], (2, 0x9999), None,
                                   discard=True, gaps=gaps)

    run_testbenches(dut, writer, _collector(dut, random.Random(seed + 100), len(frames), out,
                                            p_ready))
    assert out == [_expected(*case) for case in frames]


@pytest.mark.parametrize("data_bits", WIDTHS)
def test_frames_leave_with_patches_under_backpressure(data_bits):
    _run(data_bits, seed=1, p_ready=0.6)


@pytest.mark.parametrize("data_bits", WIDTHS)
def test_frames_leave_with_patches_reader_always_ready(data_bits):
    _run(data_bits, seed=2, p_ready=1.0, gaps=False)


@pytest.mark.parametrize("data_bits", WIDTHS)
def test_back_to_back_frames(data_bits):
    """Committed frames leave with no idle clock between them (o always ready)."""
    rng = random.Random(4)
    dut = TxFrameBuffer(data_bits=data_bits)
    frames = [rng.randbytes(n) for n in (60, 60, 61, 9, 64, 100, 60, 1514, 60, 17)]
    out = []
    starts = []

    async def writer(ctx):
        ctx.set(dut.o.ready, 0)
        for frame in frames:
            await _write_frame(ctx, dut, rng, frame, gaps=False)

    async def reader(ctx):
        while ctx.get(dut.w.frame_room) and ctx.get(dut.w.free) == dut.depth:
            await ctx.tick()        # wait until the writer has started
        for _ in range(len(frames) * 30 + 200):
            await ctx.tick()        # let every frame be committed
        await _collector(dut, random.Random(5), len(frames), out, 1.0, starts)(ctx)

    run_testbenches(dut, writer, reader)
    assert out == frames
    mac_beats = [-(-len(f) // 8) for f in frames]
    assert [b - a for a, b in itertools.pairwise(starts)] == mac_beats[:-1]


@pytest.mark.parametrize("data_bits", WIDTHS)
def test_free_and_frame_room(data_bits):
    rng = random.Random(3)
    dut = TxFrameBuffer(data_bits=data_bits)
    depth, slots, beat = dut.depth, dut.frames, data_bits // 8
    small = [rng.randbytes(8) for _ in range(slots)]
    big = rng.randbytes(depth * beat)      # fills the buffer exactly
    out = []

    async def tb(ctx):
        ctx.set(dut.o.ready, 0)
        assert ctx.get(dut.w.free) == depth
        assert ctx.get(dut.w.frame_room)
        # A reservation counts against free and a slot at once.
        ctx.set(dut.w.reserve, 1)
        ctx.set(dut.w.reserve_beats, 10)
        await ctx.tick()
        ctx.set(dut.w.reserve, 0)
        assert ctx.get(dut.w.free) == depth - 10
        for k in range(10):
            ctx.set(dut.w.data, k)
            ctx.set(dut.w.en, 1)
            await ctx.tick()
            assert ctx.get(dut.w.free) == depth - 10
        ctx.set(dut.w.en, 0)
        ctx.set(dut.w.frame, _descriptor(bytes(10 * beat)))
        ctx.set(dut.w.discard, 1)
        ctx.set(dut.w.commit, 1)
        await ctx.tick()
        ctx.set(dut.w.commit, 0)
        ctx.set(dut.w.discard, 0)
        # Discarded: its beats come back as the sender skips them; nothing leaves.
        for _ in range(10 * beat // 8 + 20):
            assert not ctx.get(dut.o.valid)
            await ctx.tick()
        assert ctx.get(dut.w.free) == depth
        # ``slots`` reservations take every slot: frame_room falls after the last.
        for k in range(slots):
            assert ctx.get(dut.w.frame_room)
            ctx.set(dut.w.reserve, 1)
            ctx.set(dut.w.reserve_beats, 1)
            await ctx.tick()
            assert ctx.get(dut.w.free) == depth - 1 - k
        ctx.set(dut.w.reserve, 0)
        for _ in range(10):
            await ctx.tick()
            assert not ctx.get(dut.w.frame_room)
        # The frames are written and committed, one a clock; they leave while o is not ready
        # only as far as the output queue holds them.
        for frame in small:
            ctx.set(dut.w.data, _words(frame, beat)[0])
            ctx.set(dut.w.en, 1)
            ctx.set(dut.w.frame, _descriptor(frame))
            ctx.set(dut.w.commit, 1)
            await ctx.tick()
        ctx.set(dut.w.en, 0)
        ctx.set(dut.w.commit, 0)
        for _ in range(20):
            await ctx.tick()
            assert not ctx.get(dut.sent)
        queued = depth - ctx.get(dut.w.free)
        assert slots - 8 <= queued < slots
        ctx.set(dut.o.ready, 1)
        while len(out) < slots:
            if ctx.get(dut.o.valid):
                assert ctx.get(dut.sent)
                out.append(int(ctx.get(dut.o.payload.data)).to_bytes(8, "little"))
            await ctx.tick()
        assert out == small
        await ctx.tick()
        assert ctx.get(dut.w.frame_room)
        assert ctx.get(dut.w.free) == depth
        # A frame as large as the buffer: free reaches 0, and it all comes out intact.
        ctx.set(dut.o.ready, 0)
        ctx.set(dut.w.reserve, 1)
        ctx.set(dut.w.reserve_beats, depth)
        await ctx.tick()
        ctx.set(dut.w.reserve, 0)
        assert ctx.get(dut.w.free) == 0
        for word in _words(big, beat):
            ctx.set(dut.w.data, word)
            ctx.set(dut.w.en, 1)
            await ctx.tick()
        ctx.set(dut.w.en, 0)
        patches = ((100, 0xCAFE), (depth * beat - 2, 0xF00D))
        ctx.set(dut.w.frame, _descriptor(big, *patches))
        ctx.set(dut.w.commit, 1)
        await ctx.tick()
        ctx.set(dut.w.commit, 0)
        assert ctx.get(dut.w.free) == 0
        ctx.set(dut.o.ready, 1)
        data = bytearray()
        sent = 0
        for _ in range(depth * beat // 8 + 20):
            if ctx.get(dut.o.valid):
                data += int(ctx.get(dut.o.payload.data)).to_bytes(8, "little")
                sent += ctx.get(dut.sent)
            await ctx.tick()
        assert sent == 1
        assert bytes(data) == _expected(big, *patches)
        assert ctx.get(dut.w.free) == depth

    run_testbenches(dut, tb)


def test_parameters_checked():
    with warnings.catch_warnings():
        # The refused objects exist (Elaboratable.__new__ ran) but are never elaborated.
        warnings.simplefilter("ignore", UnusedElaboratable)
        with pytest.raises(ValueError, match="data_bits"):
            TxFrameBuffer(data_bits=32)
        with pytest.raises(ValueError, match="frames"):
            TxFrameBuffer(frames=12)
        gc.collect()
