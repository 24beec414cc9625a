"""HeaderDecoder (hw/rx_sequencer/header_decoder.py) against the scapy-based reference model.

The decoder sees only the first 104 bytes of a frame; the fields it alone determines are compared
with the reference row (length-dependent verdicts and checksums are the frame checker's).
"""

from hw import params
from hw.layouts import RxStatus, unpack
from hw.rx_sequencer.header_decoder import DecodedHeader, HeaderDecoder
from sim.frames import bad_frames, directed_frames, random_mix
from sim.reference.rx_status import expected_status
from sim.status_json import status_to_json

from .amaranth_sim import run_testbenches

DECODER_KEYS = ("vlan", "ethertype", "l3", "l4", "fragment", "ip_options", "src", "dst", "sport",
                "dport", "tcp_flags", "seq", "ack", "window", "payload_len", "hash")


def _decode(frames, toeplitz_passes=params.RSS_HASH_PASSES):
    """Decode each frame's header window, as close together as frames needing a hash can come
    (5 clocks; every clock with a parallel Toeplitz unit); returns the DecodedHeader values."""
    dut = HeaderDecoder(toeplitz_passes=toeplitz_passes)
    gap = 0 if toeplitz_passes == 1 else 4
    decoded = []
    hashes = []
    overruns = []

    async def producer(ctx):
        ctx.set(dut.key, int.from_bytes(params.MS_RSS_KEY, "big"))
        for frame in frames:
            window = frame[:params.HEADER_WINDOW_BYTES]
            ctx.set(dut.window, int.from_bytes(window, "little"))
            ctx.set(dut.window_len, len(window))
            ctx.set(dut.valid, 1)
            await ctx.tick()
            ctx.set(dut.valid, 0)
            if gap:
                await ctx.tick().repeat(gap)

    async def consumer(ctx):
        while len(hashes) < len(frames):
            _, _, info, valid, hash_value, hash_valid, overrun = await ctx.tick().sample(
                dut.info, dut.info_valid, dut.hash, dut.hash_valid, dut.hash_overrun)
            overruns.append(overrun)
            if valid:
                decoded.append(DecodedHeader.from_bits(info.as_value().value))
            if hash_valid:
                hashes.append(hash_value)

    run_testbenches(dut, producer, consumer)
    assert not any(overruns)
    return decoded, hashes


def _compare(frames, toeplitz_passes=params.RSS_HASH_PASSES):
    mismatches = []
    decoded, hashes = _decode(frames, toeplitz_passes)
    for index, (frame, info, hash_value) in enumerate(zip(frames, decoded, hashes, strict=True)):
        status = unpack(RxStatus, info.status.as_value().value)
        got = status_to_json(status, index)
        got["hash"] = f"{hash_value:08x}"
        want = expected_status(frame, index)
        diff = {k: (got[k], want[k]) for k in DECODER_KEYS if got[k] != want[k]}
        if diff:
            mismatches.append((index, frame[:64].hex(), diff))
    assert not mismatches, mismatches[:5]


def test_directed_catalogue():
    _compare(directed_frames())


def test_random_and_bad_frames():
    _compare(random_mix(150, seed=5) + bad_frames(150, seed=6))


def test_parallel_toeplitz_one_window_per_clock():
    _compare(random_mix(100, seed=7), toeplitz_passes=1)
