"""TxFrameBuffer (hw/host/tx_buffer.py): committed frames leave whole, their patches applied."""

import random

from hw import params
from hw.host.tx_buffer import TxFrameBuffer
from hw.layouts import TxBufferedFrame

from .amaranth_sim import run_testbenches

DEPTH = params.TX_BUFFER_BYTES // params.BEAT_BYTES
FRAMES = 8      # frames the descriptor FIFO holds (hw/host/tx_buffer.py _FRAMES)


def _words(frame):
    """Beats of ``frame``; bytes past its end are filled with 0xA5 (they must not be trusted)."""
    beats = max(1, -(-len(frame) // 8))
    padded = frame.ljust(8 * beats, b"\xa5")
    return [int.from_bytes(padded[8 * k:8 * k + 8], "little") for k in range(beats)]


def _descriptor(frame, ip=None, l4=None):
    def patch(p):
        if p is None:
            return {"enable": 0, "offset": 0, "value": 0}
        return {"enable": 1, "offset": p[0], "value": p[1]}
    return TxBufferedFrame.const({
        "beats": len(_words(frame)),
        "last_bytes": len(frame) - 8 * (len(_words(frame)) - 1),
        "ip_csum": patch(ip),
        "l4_csum": patch(l4),
    })


def _expected(frame, ip=None, l4=None):
    out = bytearray(frame)
    for p in (ip, l4):          # l4 last: it is the outer patch in the hardware
        if p is not None:
            out[p[0]:p[0] + 2] = p[1].to_bytes(2, "big")
    return bytes(out)


async def _write_frame(ctx, dut, rng, frame, ip=None, l4=None, *, abort=False, gaps=True):
    words = _words(frame)
    commit_with_last = rng.random() < 0.5
    for k, word in enumerate(words):
        while ctx.get(dut.w_free) == 0:
            await ctx.tick()
        ctx.set(dut.w_data, word)
        ctx.set(dut.w_en, 1)
        is_last = k == len(words) - 1
        if is_last and commit_with_last and not abort:
            while not ctx.get(dut.w_frame_room):
                ctx.set(dut.w_en, 0)
                await ctx.tick()
                ctx.set(dut.w_en, 1)
            ctx.set(dut.w_frame, _descriptor(frame, ip, l4))
            ctx.set(dut.w_commit, 1)
        await ctx.tick()
        ctx.set(dut.w_en, 0)
        ctx.set(dut.w_commit, 0)
        if gaps and rng.random() < 0.2:
            await ctx.tick()
    if abort:
        ctx.set(dut.w_abort, 1)
        await ctx.tick()
        ctx.set(dut.w_abort, 0)
    elif not commit_with_last:
        while not ctx.get(dut.w_frame_room):
            await ctx.tick()
        ctx.set(dut.w_frame, _descriptor(frame, ip, l4))
        ctx.set(dut.w_commit, 1)
        await ctx.tick()
        ctx.set(dut.w_commit, 0)


def _collector(dut, rng, count, out, p_ready):
    """Takes ``count`` frames off ``o`` with random backpressure; checks keep and ``sent``."""

    async def tb(ctx):
        current = bytearray()
        sent = 0
        while len(out) < count:
            ctx.set(dut.o.ready, int(rng.random() < p_ready))
            _, _, valid, ready, beat, sent_pulse = await ctx.tick().sample(
                dut.o.valid, dut.o.ready, dut.o.payload, dut.sent)
            sent += sent_pulse
            if not (valid and ready):
                assert not sent_pulse
                continue
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
        ctx.set(dut.o.ready, 0)
        for _ in range(50):     # nothing else leaves (the aborted frame above all)
            _, _, valid = await ctx.tick().sample(dut.o.valid)
            assert not valid
        assert sent == count

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
    ]
    for _ in range(20):
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


def _run(seed, p_ready):
    rng = random.Random(seed)
    frames = _frames(rng)
    aborted = rng.randbytes(77)
    out = []
    dut = TxFrameBuffer()

    async def writer(ctx):
        for k, (frame, ip, l4) in enumerate(frames):
            await _write_frame(ctx, dut, rng, frame, ip, l4)
            if k == 3:
                await _write_frame(ctx, dut, rng, aborted, (2, 0x9999), None, abort=True)

    run_testbenches(dut, writer, _collector(dut, random.Random(seed + 100), len(frames), out,
                                            p_ready))
    assert out == [_expected(*case) for case in frames]


def test_frames_leave_with_patches_under_backpressure():
    _run(seed=1, p_ready=0.6)


def test_frames_leave_with_patches_reader_always_ready():
    _run(seed=2, p_ready=1.0)


def test_w_free_and_w_frame_room():
    rng = random.Random(3)
    dut = TxFrameBuffer()
    small = [rng.randbytes(8) for _ in range(FRAMES)]
    big = rng.randbytes(DEPTH * 8)      # fills the buffer exactly
    out = []

    async def tb(ctx):
        ctx.set(dut.o.ready, 0)
        assert ctx.get(dut.w_free) == DEPTH
        assert ctx.get(dut.w_frame_room)
        # 10 beats written: each counts against w_free at once; an abort gives them back.
        for k in range(10):
            ctx.set(dut.w_data, k)
            ctx.set(dut.w_en, 1)
            await ctx.tick()
            assert ctx.get(dut.w_free) == DEPTH - 1 - k
        ctx.set(dut.w_en, 0)
        ctx.set(dut.w_abort, 1)
        await ctx.tick()
        ctx.set(dut.w_abort, 0)
        assert ctx.get(dut.w_free) == DEPTH
        # FRAMES one-beat frames fill the frame FIFO; w_frame_room falls after the last.
        for k, frame in enumerate(small):
            assert ctx.get(dut.w_frame_room)
            ctx.set(dut.w_data, _words(frame)[0])
            ctx.set(dut.w_en, 1)
            ctx.set(dut.w_frame, _descriptor(frame))
            ctx.set(dut.w_commit, 1)
            await ctx.tick()
            assert ctx.get(dut.w_free) == DEPTH - 1 - k
        ctx.set(dut.w_en, 0)
        ctx.set(dut.w_commit, 0)
        for _ in range(10):
            await ctx.tick()
            assert not ctx.get(dut.w_frame_room)
            assert ctx.get(dut.w_free) == DEPTH - FRAMES
            assert not ctx.get(dut.sent)
        # One frame leaves: room for one more frame, one beat more free.
        ctx.set(dut.o.ready, 1)
        assert ctx.get(dut.o.valid)
        assert ctx.get(dut.o.payload.last)
        assert ctx.get(dut.sent)
        out.append(int(ctx.get(dut.o.payload.data)).to_bytes(8, "little"))
        await ctx.tick()
        ctx.set(dut.o.ready, 0)
        assert ctx.get(dut.w_frame_room)
        assert ctx.get(dut.w_free) == DEPTH - FRAMES + 1
        # Drain the rest.
        ctx.set(dut.o.ready, 1)
        while len(out) < FRAMES:
            if ctx.get(dut.o.valid):
                out.append(int(ctx.get(dut.o.payload.data)).to_bytes(8, "little"))
            await ctx.tick()
        assert out == small
        assert ctx.get(dut.w_free) == DEPTH
        # A frame as large as the buffer: w_free reaches 0, and it all comes out intact.
        ctx.set(dut.o.ready, 0)
        for word in _words(big):
            ctx.set(dut.w_data, word)
            ctx.set(dut.w_en, 1)
            await ctx.tick()
        ctx.set(dut.w_en, 0)
        assert ctx.get(dut.w_free) == 0
        ctx.set(dut.w_frame, _descriptor(big, (100, 0xCAFE), (DEPTH * 8 - 2, 0xF00D)))
        ctx.set(dut.w_commit, 1)
        await ctx.tick()
        ctx.set(dut.w_commit, 0)
        assert ctx.get(dut.w_free) == 0
        ctx.set(dut.o.ready, 1)
        data = bytearray()
        sent = 0
        for _ in range(DEPTH + 20):
            if ctx.get(dut.o.valid):
                data += int(ctx.get(dut.o.payload.data)).to_bytes(8, "little")
                sent += ctx.get(dut.sent)
            await ctx.tick()
        assert sent == 1
        assert bytes(data) == _expected(big, (100, 0xCAFE), (DEPTH * 8 - 2, 0xF00D))
        assert ctx.get(dut.w_free) == DEPTH

    run_testbenches(dut, tb)
