"""SynAckBuilder (hw/syn_cookie/synack_builder.py): every request gives one SYN-ACK frame, in
order, byte for byte the golden model's (``sim.reference.syn_cookie.syn_ack_frame``), that scapy
parses back field by field with both checksums as scapy recomputes them; frames leave back to
back, one beat a clock, and the latency is what the builder states."""

import ipaddress
import itertools
import random

import pytest
from amaranth.lib import data
from scapy.layers.inet import IP, TCP
from scapy.layers.inet6 import IPv6
from scapy.layers.l2 import Dot1Q, Ether

from hw import params
from hw.layouts import TcpFlags
from hw.syn_cookie.layouts import SynAckRequest
from hw.syn_cookie.synack_builder import (
    LATENCY,
    VARIANTS,
    SynAckBuilder,
    syn_ack_frame_beats,
    syn_ack_frame_length,
)
from sim.reference.syn_cookie import syn_ack_frame

from .amaranth_sim import run_testbenches

WIDTHS = {name: field.width for name, field in data.Layout.cast(SynAckRequest)}
#: What decides a SYN-ACK's bytes beyond its fields: (ipv6, vlan, options, wscale_ok, ecn), options
#: one of "mss" (no timestamps), "ts_sack", "ts" (timestamps without SACK). Without timestamps
#: the builder ignores ``wscale_ok`` (as the model), which the cases with "mss" check.
CASES = list(itertools.product((0, 1), (0, 1), ("mss", "ts_sack", "ts"), (0, 1), (0, 1)))


def _request(rng, ipv6, vlan, options, wscale_ok, ecn, fill=None):
    """A request of this case; every field random (or ``fill``: all ones / all zeros), the ones
    the case does not use too (the builder must ignore them, the high address bits of IPv4
    included)."""
    def value(name):
        width = WIDTHS[name]
        if fill is None:
            return rng.getrandbits(width)
        return (1 << width) - 1 if fill else 0
    req = {name: value(name) for name in WIDTHS}
    req.update(ipv6=ipv6, vlan=vlan, timestamps=int(options != "mss"), wscale_ok=wscale_ok,
               ecn=ecn)
    if options != "mss":
        req["sack"] = int(options == "ts_sack")
    return req


def _layout(req):
    """(ipv6, vlan, timestamps, window scale sent) of a request."""
    ts = req["timestamps"]
    return req["ipv6"], req["vlan"], ts, ts & req["wscale_ok"]


def _model_frame(req):
    """The model's bytes: it takes IPv4 addresses of 32 bits (the builder ignores the rest)."""
    if not req["ipv6"]:
        req = dict(req, local_ip=req["local_ip"] & 0xFFFFFFFF,
                   remote_ip=req["remote_ip"] & 0xFFFFFFFF)
    return syn_ack_frame(req)


def _mac(n):
    return ":".join(f"{b:02x}" for b in n.to_bytes(6, "big"))


def _check_frame(frame, req):
    """``frame`` is the SYN-ACK of ``req``: the model's bytes; parsed by scapy, every field, the
    options in order; both checksums as scapy recomputes them."""
    assert frame == _model_frame(req)
    ipv6, vlan, ts, ws = _layout(req)
    tcp_len = 24 + 12 * ts + 4 * ws
    natural = 14 + 4 * vlan + (40 if ipv6 else 20) + tcp_len
    assert len(frame) == max(natural, 60) == syn_ack_frame_length(*_layout(req))
    assert frame[natural:] == bytes(len(frame) - natural), "padding not zero"

    pkt = Ether(frame)
    assert pkt.dst == _mac(req["remote_mac"]) and pkt.src == _mac(req["local_mac"])
    if vlan:
        tag = pkt[Dot1Q]
        assert pkt.type == 0x8100 and (tag.prio << 13 | tag.dei << 12 | tag.vlan) == req["vlan_tci"]
    else:
        assert Dot1Q not in pkt
    if ipv6:
        ip = pkt[IPv6]
        assert (ip.version, ip.tc, ip.fl, ip.plen, ip.nh, ip.hlim) == (
            6, req["tos"], 0, tcp_len, 6, req["ttl"])
        assert int(ipaddress.IPv6Address(ip.src)) == req["local_ip"]
        assert int(ipaddress.IPv6Address(ip.dst)) == req["remote_ip"]
    else:
        ip = pkt[IP]
        assert (ip.version, ip.ihl, ip.tos, ip.len, ip.id, int(ip.flags), ip.frag, ip.ttl,
                ip.proto) == (4, 5, req["tos"], 20 + tcp_len, 0, 2, 0, req["ttl"], 6)
        assert int(ipaddress.IPv4Address(ip.src)) == req["local_ip"] & 0xFFFFFFFF
        assert int(ipaddress.IPv4Address(ip.dst)) == req["remote_ip"] & 0xFFFFFFFF
    tcp = pkt[TCP]
    flags = TcpFlags.SYN | TcpFlags.ACK | (TcpFlags.ECE if req["ecn"] else 0)
    assert (tcp.sport, tcp.dport, tcp.seq, tcp.ack, tcp.dataofs, tcp.reserved, int(tcp.flags),
            tcp.window, tcp.urgptr) == (req["local_port"], req["remote_port"], req["seq"],
                                        req["ack"], tcp_len // 4, 0, int(flags),
                                        req["window"], 0)
    options = [("MSS", req["mss"])]
    if ts:
        options += [("SAckOK", b"")] if req["sack"] else [("NOP", None), ("NOP", None)]
        options += [("Timestamp", (req["ts_val"], req["ts_ecr"]))]
        if ws:
            options += [("NOP", None), ("WScale", req["wscale"])]
    assert tcp.options == options
    assert bytes(tcp.payload) == frame[natural:]    # only the padding follows the TCP header

    # Checksums: scapy recomputes them with the fields deleted.
    rebuilt = pkt.copy()
    del rebuilt[TCP].chksum
    if not ipv6:
        del rebuilt[IP].chksum
    rebuilt = Ether(bytes(rebuilt))
    assert rebuilt[TCP].chksum == tcp.chksum, "TCP checksum"
    if not ipv6:
        assert rebuilt[IP].chksum == ip.chksum, "IPv4 header checksum"


def _word_sum(octets):
    return sum(int.from_bytes(octets[k:k + 2], "big") for k in range(0, len(octets), 2))


def _raw_sums(req):
    """The plain integer sums of the 16-bit words each checksum covers (its own field zero):
    (IPv4 header or None, TCP with its pseudo-header)."""
    frame = _model_frame(req)
    ipv6, vlan, ts, ws = _layout(req)
    l3 = 14 + 4 * vlan
    ip_len = 40 if ipv6 else 20
    tcp = bytearray(frame[l3 + ip_len:l3 + ip_len + 24 + 12 * ts + 4 * ws])
    tcp[16:18] = b"\0\0"
    addresses = frame[l3 + 8:l3 + 40] if ipv6 else frame[l3 + 12:l3 + 20]
    tcp_sum = _word_sum(addresses) + 6 + len(tcp) + _word_sum(tcp)
    if ipv6:
        return None, tcp_sum
    header = bytearray(frame[l3:l3 + 20])
    header[10:12] = b"\0\0"
    return _word_sum(header), tcp_sum


def _carry_request(rng, case):
    """A request whose sums end in 0xFFFF before the first fold, so that the first fold carries
    into bit 16 and only the second fold gives the right checksum: IPv4's TTL and TOS (in the
    header sum only) and ``window`` (in the TCP sum only) chosen for it."""
    for _ in range(1000):
        req = _request(rng, *case)
        req.update(window=0)
        ip_sum, _ = _raw_sums(req)
        if ip_sum is not None:
            # TTL is the high byte of a word, TOS the low byte of another.
            need = (0xFFFF - ip_sum + (req["ttl"] << 8) + req["tos"]) & 0xFFFF
            if need > 0xFF00 + 0xFF:
                continue
            req["ttl"], req["tos"] = min(need >> 8, 0xFF), need - (min(need >> 8, 0xFF) << 8)
            if req["tos"] > 0xFF:
                continue
        _, tcp_sum = _raw_sums(req)
        req["window"] = 0xFFFF - (tcp_sum & 0xFFFF)
        if all(raw is None or (raw & 0xFFFF == 0xFFFF and raw >> 16) for raw in _raw_sums(req)):
            return req
    raise AssertionError("no carry request found")


async def _put_requests(ctx, dut, rng, requests, p_gap, taken, spacing=None):
    """Offers the requests in order, with random idle clocks (probability ``p_gap`` each) or, with
    ``spacing``, one every ``spacing`` clocks (then each must be taken at once); records the clock
    each is taken in ``taken``."""
    clock = 0
    for req in requests:
        while rng.random() < p_gap:
            ctx.set(dut.requests.valid, 0)
            await ctx.tick()
            clock += 1
        ctx.set(dut.requests.payload, SynAckRequest.const(req))
        ctx.set(dut.requests.valid, 1)
        while True:
            _, _, ready = await ctx.tick().sample(dut.requests.ready)
            clock += 1
            if ready:
                break
            assert spacing is None, "a request of the paced flood had to wait"
        taken.append(clock)
        if spacing is not None:
            ctx.set(dut.requests.valid, 0)
            for _ in range(spacing - 1):
                await ctx.tick()
                clock += 1
    ctx.set(dut.requests.valid, 0)


def _collector(dut, rng, count, out, p_ready, starts, stalls):
    """Takes ``count`` frames off ``o``, with ``o.ready`` high with probability ``p_ready``;
    checks ``keep``; records the clock of each frame's first beat, and each clock between the
    first beat and the last with ``o.ready`` but no beat in ``stalls``; then checks nothing more
    leaves and the builder is ready for requests."""

    async def tb(ctx):
        current = bytearray()
        clock = 0
        idle_ready = []
        while len(out) < count:
            assert clock < 100 * count / p_ready, "frames missing"
            ctx.set(dut.o.ready, int(rng.random() < p_ready))
            _, _, valid, ready, beat = await ctx.tick().sample(
                dut.o.valid, dut.o.ready, dut.o.payload)
            clock += 1
            if not (valid and ready):
                if ready and starts:
                    idle_ready.append(clock)
                continue
            stalls.extend(idle_ready)
            idle_ready.clear()
            if not current:
                starts.append(clock)
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
            _, _, valid, req_ready = await ctx.tick().sample(dut.o.valid, dut.requests.ready)
            assert not valid, "a frame no request asked for"
            assert req_ready

    return tb


def _run(requests, seed, p_gap, p_ready, spacing=None):
    """Runs the requests through and checks every frame; returns the clocks each request was
    taken, each frame's first beat was taken, and the clocks with ``o.ready`` but no beat (from
    the first beat to the last). Both testbenches count the same clock edges from 0."""
    rng = random.Random(seed)
    dut = SynAckBuilder()
    out, taken, starts, stalls = [], [], [], []

    async def producer(ctx):
        await _put_requests(ctx, dut, rng, requests, p_gap, taken, spacing)

    run_testbenches(dut, producer, _collector(dut, random.Random(seed + 1), len(requests), out,
                                              p_ready, starts, stalls))
    assert len(out) == len(requests)
    for frame, req in zip(out, requests, strict=True):
        _check_frame(frame, req)
    return taken, starts, stalls


@pytest.mark.parametrize("case", CASES, ids=lambda c: "-".join(map(str, c)))
def test_every_variant(case):
    """Each case: random fields, all-ones and all-zeros fields, a carry through both folds."""
    rng = random.Random(hash(case) & 0xFFFF)
    requests = [_request(rng, *case) for _ in range(3)]
    requests += [_request(rng, *case, fill=fill) for fill in (0, 1)]
    requests.append(_carry_request(rng, case))
    _run(requests, 5, 0.0, 1.0)


@pytest.mark.parametrize(("seed", "p_gap", "p_ready"), [(1, 0.3, 0.6), (2, 0.0, 0.3),
                                                        (3, 0.5, 1.0)])
def test_random_requests_with_back_pressure(seed, p_gap, p_ready):
    rng = random.Random(seed)
    requests = [_request(rng, *rng.choice(CASES)) for _ in range(150)]
    _, _, stalls = _run(requests, seed, p_gap, p_ready)
    if p_gap == 0:
        assert stalls == [], "with requests waiting, a beat leaves on every clock o.ready is high"


@pytest.mark.parametrize("layout", VARIANTS, ids=lambda v: "ipv6{}-vlan{}-ts{}-ws{}".format(*v))
def test_frames_back_to_back_and_latency(layout):
    """With requests waiting and ``o.ready`` high, each frame's first beat follows the previous
    frame's last beat (one SYN-ACK per ``beats`` clocks: 8 for the 60-byte ones, 13 for the
    98-byte ones); the first request's first beat is taken LATENCY + 1 edges after the request
    (valid on ``o`` after LATENCY edges, taken on the next)."""
    ipv6, vlan, ts, ws = layout
    rng = random.Random(10)
    options = "ts_sack" if ts else "mss"
    requests = [_request(rng, ipv6, vlan, options, ws, rng.getrandbits(1)) for _ in range(10)]
    taken, starts, stalls = _run(requests, 11, 0.0, 1.0)
    assert stalls == []
    beats = syn_ack_frame_beats(*layout)
    assert [b - a for a, b in itertools.pairwise(starts)] == [beats] * (len(requests) - 1)
    assert starts[0] - taken[0] == LATENCY + 1 == 8


def test_mixed_frames_back_to_back():
    rng = random.Random(12)
    requests = [_request(rng, *rng.choice(CASES)) for _ in range(60)]
    _, starts, stalls = _run(requests, 13, 0.0, 1.0)
    assert stalls == []
    beats = [syn_ack_frame_beats(*_layout(r)) for r in requests]
    assert [b - a for a, b in itertools.pairwise(starts)] == beats[:-1]


@pytest.mark.parametrize("case", [(0, 0, "mss", 0, 0), (0, 1, "mss", 1, 1)])
def test_minimum_size_syn_flood(case):
    """A back-to-back flood of 60-byte SYNs gives one SYN-ACK request every 8 clocks: each is
    taken at once and its 60- or 62-byte SYN-ACK (8 beats) leaves LATENCY clocks later, every
    time (the builder never falls behind)."""
    assert syn_ack_frame_beats(*_layout(_request(random.Random(0), *case))) == 8
    assert params.MIN_TX_FRAME_BYTES // params.BEAT_BYTES + 1 == 8
    rng = random.Random(20)
    requests = [_request(rng, *case) for _ in range(40)]
    taken, starts, _ = _run(requests, 21, 0.0, 1.0, spacing=8)
    assert [s - t for t, s in zip(taken, starts, strict=True)] == [LATENCY + 1] * len(requests)
    assert [b - a for a, b in itertools.pairwise(taken)] == [8] * (len(requests) - 1)
