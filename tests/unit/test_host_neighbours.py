"""The host stack's link-layer side: ARP, IPv6 neighbour discovery, echo, what it ignores, and
malformed frames.

One `TcpStack` (MAC_A, IP_A, IP6_A and its link-local address) is fed hand-made scapy frames; its
answers are parsed with scapy and checked field by field, checksums recomputed by scapy.
Resolution in front of TCP connections is tested with two stacks in ``test_host_tcp.py``.
"""

import random

import pytest
from scapy.layers.inet import ICMP, IP, TCP, UDP
from scapy.layers.inet6 import (
    ICMPv6EchoReply,
    ICMPv6EchoRequest,
    ICMPv6MLReport2,
    ICMPv6ND_NA,
    ICMPv6ND_NS,
    ICMPv6ND_RS,
    ICMPv6NDOptDstLLAddr,
    ICMPv6NDOptSrcLLAddr,
    IPv6,
    IPv6ExtHdrHopByHop,
)
from scapy.layers.l2 import ARP, Ether
from scapy.packet import Raw

from host_driver.tcp import State, TcpStack
from sim.reference.checksum import ones_complement_sum, pseudo_header

MAC_A, IP_A, IP6_A = "02:00:00:00:00:0a", "192.0.2.10", "2001:db8::a"
LINK_LOCAL_A = "fe80::ff:fe00:a"  # EUI-64 of MAC_A
MAC_B, IP_B, IP6_B, LINK_LOCAL_B = "02:00:00:00:00:0b", "192.0.2.20", "2001:db8::b", "fe80::b"
BROADCAST = "ff:ff:ff:ff:ff:ff"


class Host:
    """Stack ``a`` alone, with the frames it sends in ``out`` and a settable clock ``now``."""

    def __init__(self, **args):
        self.now = 0.0
        self.out: list[bytes] = []
        self.stack = TcpStack(MAC_A, IP_A, self.out.append, lambda: self.now, ipv6=IP6_A, **args)

    def feed(self, packet) -> list:
        """Give the stack one frame; the frames it answered with, parsed by scapy."""
        before = len(self.out)
        self.stack.receive_frame(bytes(packet))
        return [Ether(frame) for frame in self.out[before:]]


def icmpv6_checksum_ok(frame: bytes) -> bool:
    """Scapy recomputes the same ICMPv6 checksum over the datagram."""
    packet = Ether(frame)
    datagram = frame[14:14 + 40 + packet[IPv6].plen]
    rebuilt = IPv6(datagram)
    rebuilt[IPv6].payload.cksum = None
    return bytes(rebuilt) == datagram


def ns(target, src=IP6_B, dst=None, lladdr=MAC_B, hlim=255, ether_dst=None):
    """A Neighbour Solicitation from B for ``target`` (to its solicited-node group by default)."""
    if dst is None:
        low = target.split(":")[-1].rjust(4, "0")
        dst = {IP6_A: "ff02::1:ff00:a", LINK_LOCAL_A: "ff02::1:ff00:a"}.get(target,
                                                                            f"ff02::1:ff00:{low}")
    if ether_dst is None:
        ether_dst = "33:33:" + ":".join(f"{b:02x}" for b in bytes.fromhex(
            "ff" + dst.split(":")[-2][-2:].rjust(2, "0") + dst.split(":")[-1].rjust(4, "0")))
    packet = Ether(src=MAC_B, dst=ether_dst) / IPv6(src=src, dst=dst, hlim=hlim) / ICMPv6ND_NS(
        tgt=target)
    return packet / ICMPv6NDOptSrcLLAddr(lladdr=lladdr) if lladdr else packet


def test_link_local_address_and_groups():
    host = Host()
    assert host.stack.link_local == LINK_LOCAL_A and host.stack.ipv6 == IP6_A
    (na,) = host.feed(ns(LINK_LOCAL_A, src=LINK_LOCAL_B))
    assert na.dst == MAC_B and na[IPv6].src == LINK_LOCAL_A


def test_arp_request_is_answered():
    host = Host()
    request = Ether(src=MAC_B, dst=BROADCAST) / ARP(op=1, hwsrc=MAC_B, psrc=IP_B,
                                                     hwdst="00:00:00:00:00:00", pdst=IP_A)
    (reply,) = host.feed(request)
    assert len(bytes(reply)) == 60
    assert (reply.dst, reply.src, reply.type) == (MAC_B, MAC_A, 0x0806)
    arp = reply[ARP]
    assert (arp.hwtype, arp.ptype, arp.hwlen, arp.plen, arp.op) == (1, 0x0800, 6, 4, 2)
    assert (arp.hwsrc, arp.psrc, arp.hwdst, arp.pdst) == (MAC_A, IP_A, MAC_B, IP_B)
    assert host.stack.neighbours == {IP_B: MAC_B}
    assert host.stack.stats.arp_replies_sent == 1
    # A request for another address: no answer, and the requester is not learned.
    other = Ether(src="02:00:00:00:00:0c", dst=BROADCAST) / ARP(
        op=1, hwsrc="02:00:00:00:00:0c", psrc="192.0.2.30", pdst="192.0.2.99")
    assert host.feed(other) == [] and "192.0.2.30" not in host.stack.neighbours
    # A reply nobody asked for is not learned either; one for a known neighbour updates it.
    unasked = Ether(src="02:00:00:00:00:0c", dst=MAC_A) / ARP(
        op=2, hwsrc="02:00:00:00:00:0c", psrc="192.0.2.31", hwdst=MAC_A, pdst=IP_A)
    moved = Ether(src="02:00:00:00:00:0d", dst=BROADCAST) / ARP(
        op=1, hwsrc="02:00:00:00:00:0d", psrc=IP_B, pdst="192.0.2.99")
    host.feed(unasked)
    assert host.feed(moved) == []
    assert host.stack.neighbours == {IP_B: "02:00:00:00:00:0d", "192.0.2.31": "02:00:00:00:00:0c"}
    assert host.stack.stats.frames_ignored == 2


@pytest.mark.parametrize(("target", "src", "unicast"),
                         [(IP6_A, IP6_B, False), (LINK_LOCAL_A, LINK_LOCAL_B, False),
                          (IP6_A, IP6_B, True)])
def test_neighbour_solicitation_is_answered(target, src, unicast):
    """Ref: RFC 4861 §7.2.4: a solicited NA to the soliciting node, with our MAC in a target
    link-layer address option, Solicited and Override set, Router clear, hop limit 255."""
    host = Host()
    request = ns(target, src=src, dst=target if unicast else None,
                 ether_dst=MAC_A if unicast else None)
    (reply,) = host.feed(request)
    assert (reply.dst, reply.src, reply.type) == (MAC_B, MAC_A, 0x86DD)
    ip = reply[IPv6]
    assert (ip.src, ip.dst, ip.hlim, ip.nh) == (target, src, 255, 58)
    na = reply[ICMPv6ND_NA]
    assert (na.type, na.code, na.R, na.S, na.O, na.tgt) == (136, 0, 0, 1, 1, target)
    option = reply[ICMPv6NDOptDstLLAddr]
    assert (option.type, option.len, option.lladdr) == (2, 1, MAC_A)
    assert icmpv6_checksum_ok(bytes(reply))
    assert host.stack.neighbours == {src: MAC_B}
    assert host.stack.stats.neighbour_adverts_sent == 1


def test_invalid_solicitations_are_dropped():
    """Ref: RFC 4861 §7.1.1: hop limit not 255, bad checksum, or a target not ours: no answer."""
    host = Host()
    assert host.feed(ns(IP6_A, hlim=64)) == []
    bad = bytearray(bytes(ns(IP6_A)))
    bad[14 + 40 + 2] ^= 0x55
    assert host.feed(bad) == []
    assert host.stack.stats.checksum_errors == 1
    assert host.feed(ns("2001:db8::c")) == []  # another host's address
    zero_length_option = ns(IP6_A, lladdr=None) / Raw(b"\x01\x00" + bytes(6))
    assert host.feed(zero_length_option) == []
    assert host.stack.neighbours == {} and host.stack.stats.neighbour_adverts_sent == 0


def test_dad_probes():
    """Ref: RFC 4862 §5.4.3: a DAD probe (from ::) for our address is answered to all-nodes,
    not solicited; one for another address is ignored."""
    host = Host()
    (reply,) = host.feed(ns(IP6_A, src="::", lladdr=None))
    assert reply.dst == "33:33:00:00:00:01" and reply[IPv6].dst == "ff02::1"
    assert reply[ICMPv6ND_NA].S == 0 and reply[ICMPv6ND_NA].O == 1
    assert host.feed(ns("2001:db8::c", src="::", lladdr=None)) == []
    assert host.stack.neighbours == {}


def test_unsolicited_ipv6_traffic_is_ignored():
    """What a Linux interface sends when it comes up, and other traffic not for us, gets no
    answer and is counted in frames_ignored."""
    host = Host()
    frames = [
        # Router solicitation to all-routers, and to all-nodes.
        Ether(src=MAC_B, dst="33:33:00:00:00:02") / IPv6(src=LINK_LOCAL_B, dst="ff02::2",
                                                         hlim=255) / ICMPv6ND_RS(),
        Ether(src=MAC_B, dst="33:33:00:00:00:01") / IPv6(src=LINK_LOCAL_B, dst="ff02::1",
                                                         hlim=255) / ICMPv6ND_RS(),
        # MLDv2 report, with its hop-by-hop router alert.
        Ether(src=MAC_B, dst="33:33:00:00:00:16") / IPv6(src=LINK_LOCAL_B, dst="ff02::16",
                                                         hlim=1)
        / IPv6ExtHdrHopByHop() / ICMPv6MLReport2(),
        # DAD probe of B's own address, to B's solicited-node group.
        ns(IP6_B, src="::", lladdr=None),
        # An unsolicited NA for an unknown neighbour.
        Ether(src=MAC_B, dst="33:33:00:00:00:01") / IPv6(src=IP6_B, dst="ff02::1", hlim=255)
        / ICMPv6ND_NA(O=1, tgt=IP6_B) / ICMPv6NDOptDstLLAddr(lladdr=MAC_B),
        # A hop-by-hop header to our address, UDP to our addresses, a frame for another MAC.
        Ether(src=MAC_B, dst=MAC_A) / IPv6(src=IP6_B, dst=IP6_A) / IPv6ExtHdrHopByHop() / TCP(),
        Ether(src=MAC_B, dst=MAC_A) / IPv6(src=IP6_B, dst=IP6_A) / UDP(dport=53),
        Ether(src=MAC_B, dst=MAC_A) / IP(src=IP_B, dst=IP_A) / UDP(dport=53),
        Ether(src=MAC_B, dst="02:00:00:00:00:99") / IP(src=IP_B, dst=IP_A) / TCP(dport=80),
        # A v4 broadcast datagram and a TCP segment to another IPv4 address.
        Ether(src=MAC_B, dst=BROADCAST) / IP(src=IP_B, dst="255.255.255.255") / UDP(),
        Ether(src=MAC_B, dst=MAC_A) / IP(src=IP_B, dst="192.0.2.99") / TCP(dport=80),
    ]
    for frame in frames:
        assert host.feed(frame) == []
    assert host.stack.stats.frames_ignored == len(frames)
    assert host.stack.neighbours == {}


@pytest.mark.parametrize("family", [4, 6])
def test_ping(family):
    """Ref: RFC 792 (Echo), RFC 4443 §4.2: the reply carries back identifier, sequence, data."""
    host = Host()
    data = bytes(range(56))
    if family == 4:
        request = (Ether(src=MAC_B, dst=MAC_A) / IP(src=IP_B, dst=IP_A)
                   / ICMP(type=8, id=0x1234, seq=7) / Raw(data))
    else:
        request = (Ether(src=MAC_B, dst=MAC_A) / IPv6(src=LINK_LOCAL_B, dst=LINK_LOCAL_A)
                   / ICMPv6EchoRequest(id=0x1234, seq=7, data=data))
    (reply,) = host.feed(request)
    assert (reply.dst, reply.src) == (MAC_B, MAC_A)
    frame = bytes(reply)
    if family == 4:
        ip, icmp = reply[IP], reply[ICMP]
        assert (ip.src, ip.dst, ip.ttl, ip.proto) == (IP_A, IP_B, 64, 1)
        assert (icmp.type, icmp.code, icmp.id, icmp.seq, icmp[Raw].load) == (0, 0, 0x1234, 7, data)
        rebuilt = IP(frame[14:14 + ip.len])
        rebuilt.chksum = rebuilt[ICMP].chksum = None
        assert bytes(rebuilt) == frame[14:14 + ip.len]
    else:
        ip, echo = reply[IPv6], reply[ICMPv6EchoReply]
        assert (ip.src, ip.dst, ip.hlim, ip.nh) == (LINK_LOCAL_A, LINK_LOCAL_B, 64, 58)
        assert (echo.type, echo.code, echo.id, echo.seq, echo.data) == (129, 0, 0x1234, 7, data)
        assert icmpv6_checksum_ok(frame)
    assert host.stack.stats.pings == host.stack.stats.echo_replies_sent == 1
    # A request with a bad checksum gets no reply.
    bad = bytearray(bytes(request))
    bad[-1] ^= 0xFF
    assert host.feed(bad) == [] and host.stack.stats.checksum_errors == 1


def test_answers_without_ipv6_or_ipv4():
    """An IPv4-only stack ignores IPv6 (no link-local address either); an IPv6-only one ARP."""
    out = []
    v4 = TcpStack(MAC_A, IP_A, out.append, lambda: 0.0)
    v6 = TcpStack(MAC_A, None, out.append, lambda: 0.0, ipv6=IP6_A)
    v4.receive_frame(bytes(ns(IP6_A)))
    v6.receive_frame(bytes(Ether(src=MAC_B, dst=BROADCAST) / ARP(op=1, hwsrc=MAC_B, psrc=IP_B,
                                                                  pdst=IP_A)))
    assert out == [] and v4.stats.frames_ignored == v6.stats.frames_ignored == 1
    with pytest.raises(ValueError, match="IPv6"):
        v4.connect(MAC_B, IP6_B, 80)
    with pytest.raises(ValueError, match="IPv4"):
        v6.connect(MAC_B, IP_B, 80)


# -- Malformed input -------------------------------------------------------------------------


def with_tcp_checksum(frame: bytearray) -> bytes:
    """``frame`` (Ethernet / IPv4 or IPv6 / TCP, maybe damaged) with the TCP checksum made right
    again by the reference model, so that the damage reaches the TCP parser."""
    if frame[12:14] == b"\x08\x00":
        header = (frame[14] & 0xF) * 4
        start, src, dst = 14 + header, frame[26:30], frame[30:34]
        end = 14 + int.from_bytes(frame[16:18], "big")
    else:
        start, src, dst = 54, frame[22:38], frame[38:54]
        end = start + int.from_bytes(frame[18:20], "big")
    if not start + 18 <= end <= len(frame):
        return bytes(frame)
    frame[start + 16:start + 18] = b"\0\0"
    total = ones_complement_sum(pseudo_header(bytes(src), bytes(dst), 6, end - start)
                                + bytes(frame[start:end]))
    frame[start + 16:start + 18] = (~total & 0xFFFF).to_bytes(2, "big")
    return bytes(frame)


def seed_frames() -> list[bytes]:
    """Valid frames of every kind the stack handles: TCP with every option, both families, ARP,
    NS, NA, echo."""
    options = [("MSS", 1460), ("SAckOK", b""), ("Timestamp", (5, 0)), ("NOP", None),
               ("WScale", 7)]
    frames = []
    for ip in (IP(src=IP_B, dst=IP_A), IPv6(src=IP6_B, dst=IP6_A)):
        base = Ether(src=MAC_B, dst=MAC_A) / ip
        frames += [
            base / TCP(sport=40000, dport=5001, flags="S", options=options),
            base / TCP(sport=40001, dport=5001, seq=101, flags="PA", options=[
                ("NOP", None), ("NOP", None), ("Timestamp", (9, 1)), ("NOP", None), ("NOP", None),
                ("SAck", (1, 2, 3, 4, 5, 6))]) / Raw(b"x" * 100),
            base / TCP(sport=40001, dport=5001, seq=101, flags="FA") / Raw(b"bye"),
        ]
    frames += [
        Ether(src=MAC_B, dst=BROADCAST) / ARP(op=1, hwsrc=MAC_B, psrc=IP_B, pdst=IP_A),
        ns(IP6_A), ns(LINK_LOCAL_A, src=LINK_LOCAL_B),
        Ether(src=MAC_B, dst=MAC_A) / IPv6(src=IP6_B, dst=IP6_A, hlim=255)
        / ICMPv6ND_NA(S=1, O=1, tgt=IP6_B) / ICMPv6NDOptDstLLAddr(lladdr=MAC_B),
        Ether(src=MAC_B, dst=MAC_A) / IP(src=IP_B, dst=IP_A) / ICMP(type=8) / Raw(b"ping"),
        Ether(src=MAC_B, dst=MAC_A) / IPv6(src=IP6_B, dst=IP6_A) / ICMPv6EchoRequest(data=b"p"),
    ]
    return [bytes(frame) for frame in frames]


def open_connections(host: Host) -> list[bytes]:
    """Open one connection per family to the listener on 5001 with all options agreed, make the
    stack send data on it, and return frames that continue those connections: in order, after a
    gap, SACKing the stack's data, FIN."""
    frames = []
    listener = host.stack.listen(5001)
    for ip in (IP(src=IP_B, dst=IP_A), IPv6(src=IP6_B, dst=IP6_A)):
        base = Ether(src=MAC_B, dst=MAC_A) / ip
        host.feed(base / TCP(sport=41000, dport=5001, seq=100, flags="S", options=[
            ("MSS", 1000), ("SAckOK", b""), ("Timestamp", (5, 0)), ("NOP", None), ("WScale", 7)]))
        iss = Ether(host.out[-1])[TCP].seq
        ts = [("NOP", None), ("NOP", None), ("Timestamp", (6, 0))]
        host.feed(base / TCP(sport=41000, dport=5001, seq=101, ack=iss + 1, flags="A", options=ts))
        conn = listener.accept()
        assert conn.sack_permitted and conn.timestamps and conn.snd_wscale == 7
        conn.send(bytes(5000))
        sack = ts[:2] + [("NOP", None), ("NOP", None), ("SAck", (iss + 1001, iss + 3001))]
        frames += [bytes(base / TCP(sport=41000, dport=5001, seq=seq, ack=iss + 1, flags=flags,
                                    options=sack) / Raw(b"d" * 300))
                   for seq, flags in ((101, "A"), (701, "PA"), (401, "FA"))]
    return frames


def test_fuzz_malformed_frames_never_raise():
    """Thousands of damaged frames (bytes flipped, cut, lengthened, random; TCP headers damaged
    behind a good checksum) into a stack with a listener and open connections, both families:
    no exception, and the stack still works afterwards."""
    rng = random.Random(2024)
    host = Host(rto_initial=0.5)
    seeds = open_connections(host) + seed_frames() + host.out[:]
    for _ in range(4000):
        frame = bytearray(rng.choice(seeds))
        kind = rng.randrange(5)
        if kind == 0:
            for _ in range(rng.randrange(1, 6)):
                frame[rng.randrange(len(frame))] = rng.randrange(256)
        elif kind == 1:
            del frame[rng.randrange(len(frame)):]
        elif kind == 2:
            frame += rng.randbytes(rng.randrange(1, 64))
        elif kind == 3:
            frame = bytearray(frame[:14]) + rng.randbytes(rng.randrange(0, 120))
        else:  # the TCP header or its options, damaged under a good checksum
            if frame[12:14] not in (b"\x08\x00", b"\x86\xdd") or frame[23 if frame[13] == 0
                                                                       else 20] != 6:
                continue
            start = 34 if frame[12:14] == b"\x08\x00" else 54
            for _ in range(rng.randrange(1, 4)):
                frame[start + rng.randrange(12, min(60, len(frame) - start))] = rng.randrange(256)
            frame = bytearray(with_tcp_checksum(frame))
        host.stack.receive_frame(bytes(frame))
        if rng.random() < 0.05:
            host.now += 0.1
            host.stack.poll()
    stats = host.stack.stats
    assert stats.frames_ignored > 100 and stats.checksum_errors > 100
    assert stats.segments_received > 100 and stats.out_of_order_queued > 0
    assert stats.sack_blocks_sent > 0 and stats.sacked_bytes_skipped > 0 and stats.paws_drops > 0
    # Still alive: it answers a ping and opens a new connection.
    replies = Host.feed(host, Ether(src=MAC_B, dst=MAC_A) / IP(src=IP_B, dst=IP_A) / ICMP(type=8))
    assert [ICMP in reply for reply in replies] == [True]
    (syn_ack,) = host.feed(Ether(src=MAC_B, dst=MAC_A) / IP(src=IP_B, dst=IP_A)
                           / TCP(sport=45000, dport=5001, seq=7, flags="S"))
    assert syn_ack[TCP].flags == "SA" and syn_ack[TCP].ack == 8
    assert any(c.state is State.SYN_RECEIVED for c in host.stack.connections)
