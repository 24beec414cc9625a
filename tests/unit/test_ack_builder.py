"""AckBuilder (hw/fast_path/ack_builder.py): every request gives one ACK frame, in order, that
scapy parses back field by field, with both checksums as scapy computes them; frames leave back
to back."""

import ipaddress
import itertools
import random

import pytest
from amaranth.lib import data
from scapy.layers.inet import IP, TCP
from scapy.layers.inet6 import IPv6
from scapy.layers.l2 import Dot1Q, Ether

from hw import params
from hw.fast_path.ack_builder import AckBuilder, ack_frame_length, frame_beats
from hw.layouts import AckRequest

from .amaranth_sim import run_testbenches

VARIANTS = list(itertools.product((0, 1), repeat=3))      # (ipv6, vlan, timestamps)
WIDTHS = {name: field.width for name, field in data.Layout.cast(AckRequest)}


def _request(rng, ipv6, vlan, ts, fill=None):
    """A request of this variant; every field random (or ``fill``: all ones / all zeros), the ones
    the variant does not use too (the builder must ignore them, the high address bits of IPv4
    included)."""
    def value(name):
        width = WIDTHS[name]
        if fill is None:
            return rng.getrandbits(width)
        return (1 << width) - 1 if fill else 0
    req = {name: value(name) for name in WIDTHS}
    req.update(ipv6=ipv6, vlan=vlan, timestamps=ts)
    return req


def _mac(n):
    return ":".join(f"{b:02x}" for b in n.to_bytes(6, "big"))


def _ipv4(n):
    return ".".join(str(b) for b in (n & 0xFFFFFFFF).to_bytes(4, "big"))


def _ipv6(n):
    return str(ipaddress.IPv6Address(n))


def _scapy_frame(req):
    """The frame built by scapy from the request, checksums computed by scapy, padded."""
    pkt = Ether(dst=_mac(req["remote_mac"]), src=_mac(req["local_mac"]))
    if req["vlan"]:
        tci = req["vlan_tci"]
        pkt = pkt / Dot1Q(prio=tci >> 13, dei=(tci >> 12) & 1, vlan=tci & 0xFFF)
    if req["ipv6"]:
        pkt = pkt / IPv6(tc=req["tos"], fl=0, nh=6, hlim=req["ttl"],
                         src=_ipv6(req["local_ip"]), dst=_ipv6(req["remote_ip"]))
    else:
        pkt = pkt / IP(tos=req["tos"], id=req["ip_id"], flags="DF", frag=0, ttl=req["ttl"],
                       proto=6, src=_ipv4(req["local_ip"]), dst=_ipv4(req["remote_ip"]))
    options = ([("NOP", None), ("NOP", None), ("Timestamp", (req["ts_val"], req["ts_ecr"]))]
               if req["timestamps"] else [])
    pkt = pkt / TCP(sport=req["local_port"], dport=req["remote_port"], seq=req["seq"],
                    ack=req["ack"], flags=req["flags"], window=req["window"], urgptr=0,
                    options=options)
    return bytes(pkt).ljust(params.MIN_TX_FRAME_BYTES, b"\0")


def _word_sum(data):
    return sum(int.from_bytes(data[k:k + 2], "big") for k in range(0, len(data), 2))


def _raw_sums(req):
    """The plain integer sums of the 16-bit words each checksum covers (its own field zero):
    (IPv4 header or None, TCP with its pseudo-header)."""
    frame = _scapy_frame(req)
    l3 = 14 + 4 * req["vlan"]
    ip_len = 40 if req["ipv6"] else 20
    tcp = bytearray(frame[l3 + ip_len:l3 + ip_len + (32 if req["timestamps"] else 20)])
    tcp[16:18] = b"\0\0"
    addresses = frame[l3 + 8:l3 + 40] if req["ipv6"] else frame[l3 + 12:l3 + 20]
    tcp_sum = _word_sum(addresses) + 6 + len(tcp) + _word_sum(tcp)
    if req["ipv6"]:
        return None, tcp_sum
    header = bytearray(frame[l3:l3 + 20])
    header[10:12] = b"\0\0"
    return _word_sum(header), tcp_sum


def _carry_request(rng, ipv6, vlan, ts):
    """A request whose sums end in 0xFFFF before the first fold, so that the first fold carries
    into bit 16 and only the second fold gives the right checksum: ``ip_id`` and ``window`` (each
    in one sum only) chosen for it."""
    req = _request(rng, ipv6, vlan, ts)
    req.update(ip_id=0, window=0)
    ip_sum, tcp_sum = _raw_sums(req)
    req["window"] = 0xFFFF - (tcp_sum & 0xFFFF)
    if ip_sum is not None:
        req["ip_id"] = 0xFFFF - (ip_sum & 0xFFFF)
    for raw in _raw_sums(req):
        assert raw is None or (raw & 0xFFFF == 0xFFFF and raw >> 16)
    return req


def _check_frame(frame, req):
    """``frame`` is the ACK of ``req``: parsed by scapy, every field; checksums recomputed."""
    ipv6, vlan, ts = req["ipv6"], req["vlan"], req["timestamps"]
    tcp_len = 32 if ts else 20
    natural = 14 + 4 * vlan + (40 if ipv6 else 20) + tcp_len
    assert len(frame) == max(natural, 60) == ack_frame_length(ipv6, vlan, ts)
    assert frame[natural:] == bytes(len(frame) - natural), "padding not zero"

    pkt = Ether(frame)
    assert pkt.dst == _mac(req["remote_mac"]) and pkt.src == _mac(req["local_mac"])
    if vlan:
        assert pkt.type == 0x8100
        tag = pkt[Dot1Q]
        assert (tag.prio << 13 | tag.dei << 12 | tag.vlan) == req["vlan_tci"]
        assert tag.type == (0x86DD if ipv6 else 0x0800)
    else:
        assert Dot1Q not in pkt and pkt.type == (0x86DD if ipv6 else 0x0800)
    if ipv6:
        ip = pkt[IPv6]
        assert (ip.version, ip.tc, ip.fl, ip.plen, ip.nh, ip.hlim) == (
            6, req["tos"], 0, tcp_len, 6, req["ttl"])
        assert (ip.src, ip.dst) == (_ipv6(req["local_ip"]), _ipv6(req["remote_ip"]))
    else:
        ip = pkt[IP]
        assert (ip.version, ip.ihl, ip.tos, ip.len, ip.id, int(ip.flags), ip.frag, ip.ttl,
                ip.proto) == (4, 5, req["tos"], 20 + tcp_len, req["ip_id"], 2, 0, req["ttl"], 6)
        assert (ip.src, ip.dst) == (_ipv4(req["local_ip"]), _ipv4(req["remote_ip"]))
    tcp = pkt[TCP]
    assert (tcp.sport, tcp.dport, tcp.seq, tcp.ack, tcp.dataofs, tcp.reserved, int(tcp.flags),
            tcp.window, tcp.urgptr) == (req["local_port"], req["remote_port"], req["seq"],
                                        req["ack"], tcp_len // 4, 0, req["flags"],
                                        req["window"], 0)
    if ts:
        assert tcp.options == [("NOP", None), ("NOP", None),
                               ("Timestamp", (req["ts_val"], req["ts_ecr"]))]
    else:
        assert tcp.options == []
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
    # And the whole frame, as scapy builds it from the request.
    assert frame == _scapy_frame(req)


async def _put_requests(ctx, dut, rng, requests, p_gap):
    for req in requests:
        while rng.random() < p_gap:
            ctx.set(dut.requests.valid, 0)
            await ctx.tick()
        ctx.set(dut.requests.payload, AckRequest.const(req))
        ctx.set(dut.requests.valid, 1)
        while True:
            _, _, ready = await ctx.tick().sample(dut.requests.ready)
            if ready:
                break
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


def _run(requests, seed, p_gap, p_ready):
    """Runs the requests through; returns the clocks of each frame's first beat and the clocks
    with ``o.ready`` but no beat (from the first beat to the last)."""
    rng = random.Random(seed)
    dut = AckBuilder()
    out, starts, stalls = [], [], []

    async def producer(ctx):
        await _put_requests(ctx, dut, rng, requests, p_gap)

    run_testbenches(dut, producer, _collector(dut, random.Random(seed + 1), len(requests), out,
                                              p_ready, starts, stalls))
    assert len(out) == len(requests)
    for frame, req in zip(out, requests, strict=True):
        _check_frame(frame, req)
    return starts, stalls


def _mixed_requests(rng, count):
    requests = [_request(rng, *v, fill=fill) for v in VARIANTS for fill in (0, 1)]
    requests += [_carry_request(rng, *v) for v in VARIANTS]
    requests += [_request(rng, *rng.choice(VARIANTS)) for _ in range(count)]
    return requests


@pytest.mark.parametrize(("seed", "p_gap", "p_ready"), [(1, 0.3, 0.6), (2, 0.0, 0.3),
                                                        (3, 0.5, 1.0)])
def test_random_requests_give_their_frames(seed, p_gap, p_ready):
    rng = random.Random(seed)
    _, stalls = _run(_mixed_requests(rng, 300), seed, p_gap, p_ready)
    if p_gap == 0:
        assert stalls == [], "with requests waiting, a beat leaves on every clock o.ready is high"


@pytest.mark.parametrize("variant", VARIANTS)
def test_frames_back_to_back(variant):
    """With requests waiting and ``o.ready`` high, each frame's first beat follows the previous
    frame's last beat: the shortest ACKs (60 bytes) leave one every 8 clocks."""
    rng = random.Random(10)
    requests = [_request(rng, *variant) for _ in range(12)]
    starts, stalls = _run(requests, 11, 0.0, 1.0)
    assert stalls == []
    beats = frame_beats(*variant)
    assert [b - a for a, b in itertools.pairwise(starts)] == [beats] * (len(requests) - 1)
    assert starts[0] <= 9        # request taken on the first edge, first beat 7 edges later


def test_mixed_frames_back_to_back():
    rng = random.Random(12)
    requests = _mixed_requests(rng, 40)
    starts, stalls = _run(requests, 13, 0.0, 1.0)
    assert stalls == []
    beats = [frame_beats(r["ipv6"], r["vlan"], r["timestamps"]) for r in requests]
    assert [b - a for a, b in itertools.pairwise(starts)] == beats[:-1]
    assert min(beats) == 8 and params.MIN_TX_FRAME_BYTES == 60
