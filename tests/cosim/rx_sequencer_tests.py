"""cocotb tests of the receive sequencer RTL, run on Icarus by test_rx_sequencer.py.

Every test ends with the scoreboard's checks: each frame leaves ``o`` byte for byte, each status
word equals the reference model's row field by field and then every RxStatus field bit for bit
(``ip_proto``, ``hash_type``, the offsets, zeros where nothing applies), exactly one per frame and
nothing left over.
Random tests take their seed from ``INIC_SEED`` (logged) so a failure can be replayed.
"""

import logging
import os
import random

import cocotb
from scapy.layers.inet import ICMP, IP, TCP, UDP
from scapy.layers.inet6 import ICMPv6EchoRequest, IPv6
from scapy.layers.l2 import Ether

from hw.params import MAX_FRAME_BYTES, MIN_FRAME_BYTES, MS_RSS_KEY, RSS_KEY_BYTES
from sim.cosim.rx_tb import RxTb, budget, random_pauses
from sim.frames import MAC_A, MAC_B, bad_frames, directed_frames, random_mix
from sim.reference.rss_vectors import MS_RSS_VECTORS

SEED = int(os.environ.get("INIC_SEED", "20240611"))
LOG = logging.getLogger("cocotb.tb")



def _rng(name):
    LOG.info("%s: INIC_SEED=%d", name, SEED)
    return random.Random(f"{SEED}-{name}")


async def _run_checked(tb, frames, slack=2000, factor=4):
    """Send ``frames``, wait for all outputs (bounded), run the final checks."""
    for frame in frames:
        tb.send(frame)
    await tb.drain(budget(frames, slack, factor))
    tb.check()


def _report_timing(tb, frames):
    timing = tb.timing()
    span = timing[-1].status_out - timing[0].first_in + 1
    latencies = [t.latency for t in timing]
    tb.log.info("%d frames in %d cycles (%.2f per frame), latency %d..%d cycles",
                len(frames), span, span / len(frames), min(latencies), max(latencies))


@cocotb.test(timeout_time=2, timeout_unit="ms")
async def test_directed(dut):
    """The directed catalogue at full rate, outputs always ready; then the counters clear."""
    tb = RxTb(dut)
    await tb.reset()
    frames = directed_frames()
    await _run_checked(tb, frames)
    _report_timing(tb, frames)
    assert tb.counters().frames == len(frames)
    await tb.clear_counters()
    assert int(dut.counters.value) == 0, "counters_clear left counts behind"


@cocotb.test(timeout_time=20, timeout_unit="ms")
async def test_random_mix(dut):
    """3000 random frames with idle input cycles and backpressure on ``o`` and ``status``."""
    rng = _rng("random_mix")
    tb = RxTb(dut, pause=random_pauses(rng, 0.15), o_backpressure=random_pauses(rng, 0.2),
              status_backpressure=random_pauses(rng, 0.3))
    await tb.reset()
    frames = random_mix(3000, SEED)
    await _run_checked(tb, frames, factor=8)
    _report_timing(tb, frames)


async def _line_rate(tb, frames):
    """Back-to-back ``frames`` with outputs ready: ``i.ready`` high on every clock a beat is
    offered, so the input takes exactly one beat per cycle."""
    await _run_checked(tb, frames)
    stalls = tb.source.stalls
    assert stalls == 0, f"i.ready was low on {stalls} cycles with a beat offered"
    first, last = tb.source.accepted[0][0], tb.source.accepted[-1][1]
    beats = tb.source.beats_accepted
    assert last - first + 1 == beats, f"{beats} beats took {last - first + 1} cycles"
    _report_timing(tb, frames)


@cocotb.test(timeout_time=2, timeout_unit="ms")
async def test_line_rate_60(dut):
    """400 back-to-back 60-byte frames: 8 cycles per frame, ``i.ready`` never low."""
    tb = RxTb(dut)
    await tb.reset()
    base = bytes(Ether(src=MAC_A, dst=MAC_B) / IP(src="10.0.0.1", dst="10.0.0.2")
                 / TCP(sport=1024, dport=80, flags="A"))
    frames = [base.ljust(60, b"\0")[:60]] * 400
    await _line_rate(tb, frames)
    assert tb.source.beats_accepted == 8 * len(frames)


@cocotb.test(timeout_time=20, timeout_unit="ms")
async def test_line_rate_mix(dut):
    """Back-to-back random mix, directed catalogue and one-beat frames (0..8 bytes): one beat taken
    every clock."""
    tb = RxTb(dut)
    await tb.reset()
    rng = _rng("line_rate_mix")
    tiny = [rng.randbytes(rng.randrange(9)) for _ in range(64)]
    frames = directed_frames() + random_mix(150, SEED + 1) + tiny
    await _line_rate(tb, frames)


def _vector_frames():
    """For each Microsoft vector: TCP and UDP frames (4-tuple), then an ICMP / ICMPv6 echo and a
    frame of another protocol (GRE / no next header) (2-tuple)."""
    frames = []
    for src, sport, dst, dport, _, _ in MS_RSS_VECTORS:
        v6 = ":" in src
        ip, other = (IPv6(src=src, dst=dst), IPv6(src=src, dst=dst, nh=59)) if v6 else \
            (IP(src=src, dst=dst), IP(src=src, dst=dst, proto=47))
        frames += [bytes(Ether(src=MAC_A, dst=MAC_B) / layer) for layer in (
            ip / TCP(sport=sport, dport=dport, flags="S"),
            ip / UDP(sport=sport, dport=dport) / b"rss",
            ip / (ICMPv6EchoRequest() if v6 else ICMP()) / b"rss",
            other / b"rss",
        )]
    return frames


@cocotb.test(timeout_time=2, timeout_unit="ms")
async def test_rss_vectors(dut):
    """Microsoft's verification vectors through the RTL, checked against the published hashes
    (4-tuple for TCP and UDP, 2-tuple for ICMP and other protocols) as well as the model."""
    hashes = []
    tb = RxTb(dut, on_status=lambda status, index: hashes.append(status.hash))
    await tb.reset()
    await _run_checked(tb, _vector_frames())
    wrong = []
    for n, (src, _, dst, _, hash2, hash4) in enumerate(MS_RSS_VECTORS):
        for kind, got, want in zip(("TCP", "UDP", "ICMP", "other"), hashes[4 * n:4 * n + 4],
                                   (hash4, hash4, hash2, hash2)):
            if got != want:
                wrong.append(f"{src} -> {dst} {kind}: got {got:08x}, published {want:08x}")
    assert not wrong, "\n".join(wrong)


@cocotb.test(timeout_time=10, timeout_unit="ms")
async def test_rss_key_runtime(dut):
    """The key register written at run time: two random keys, each over a mixed batch, checked
    against the Toeplitz model; then the Microsoft key again."""
    tb = RxTb(dut)
    await tb.reset()
    rng = _rng("rss_key_runtime")
    batch = _vector_frames() + random_mix(20, SEED + 2)
    for key in (rng.randbytes(RSS_KEY_BYTES), rng.randbytes(RSS_KEY_BYTES), MS_RSS_KEY):
        await tb.set_rss_key(key)
        for frame in batch:
            tb.send(frame)
        await tb.drain(budget(batch))
    tb.check()


def _bad_input(rng):
    """Runts, oversize, truncated and random frames, plus the generator's bad frames."""
    runts = [rng.randbytes(n) for n in range(MIN_FRAME_BYTES)]
    tcp = bytes(Ether(src=MAC_A, dst=MAC_B) / IP(src="10.1.0.1", dst="10.1.0.2")
                / TCP(sport=5000, dport=80))
    oversize = [tcp + rng.randbytes(n - len(tcp))
                for n in (MAX_FRAME_BYTES, MAX_FRAME_BYTES + 1, rng.randrange(9218, 16001), 16000)]
    mix = random_mix(100, SEED + 3)
    truncated = [frame[:rng.randrange(len(frame) + 1)] for frame in mix]
    noise = [rng.randbytes(rng.randrange(200)) for _ in range(100)]
    frames = bad_frames(200, SEED) + runts + oversize + truncated + noise
    rng.shuffle(frames)
    return frames


@cocotb.test(timeout_time=10, timeout_unit="ms")
async def test_bad_input(dut):
    """Bad input under idle cycles and backpressure: nothing hangs, one status word per frame."""
    rng = _rng("bad_input")
    tb = RxTb(dut, pause=random_pauses(rng, 0.1), o_backpressure=random_pauses(rng, 0.2),
              status_backpressure=random_pauses(rng, 0.2))
    await tb.reset()
    frames = _bad_input(rng)
    await _run_checked(tb, frames, factor=8)
