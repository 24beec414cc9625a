"""Ethernet frames for the testbenches and the demo, built with scapy.

Every generator returns ``list[bytes]`` (no FCS), the same bytes for the same arguments.
Deliberately bad fields (checksums, lengths, IHL, data offset) are set explicitly or patched into
the built bytes so that scapy never "fixes" them.

- :func:`directed_cases` / :func:`directed_frames`: a named catalogue reaching every field and rule
  of docs/status_word.md.
- :func:`random_mix`: realistic traffic, mostly good TCP/UDP over IPv4/IPv6, a fraction of every bad
  kind.
- :func:`bad_frames`: corruptions and fuzz.
- :func:`tx_checksum_edge_cases`: frames for the TX checksum offload where the rule matters.
"""

import random

from scapy.layers.inet import ICMP, IP, TCP, UDP, IPOption_NOP, IPOption_RR
from scapy.layers.inet6 import (
    ICMPv6EchoRequest,
    IPv6,
    IPv6ExtHdrDestOpt,
    IPv6ExtHdrFragment,
    IPv6ExtHdrHopByHop,
    IPv6ExtHdrRouting,
)
from scapy.layers.l2 import ARP, Dot1Q, Ether
from scapy.packet import Raw

from hw.layouts import EtherType
from hw.params import MAX_FRAME_BYTES
from sim.reference.checksum import ones_complement_sum

__all__ = [
    "MAC_A", "MAC_B", "IPV4_A", "IPV4_B", "IPV6_A", "IPV6_B",
    "C_TAG", "S_TAG", "IPV4", "IPV6", "ARP_TYPE",
    "ethernet", "pad", "directed_cases", "directed_frames", "random_mix", "bad_frames",
    "tx_checksum_edge_cases",
]

MAC_A, MAC_B = "02:00:00:00:00:0a", "02:00:00:00:00:0b"
IPV4_A, IPV4_B = "192.0.2.10", "198.51.100.20"
IPV6_A, IPV6_B = "2001:db8::a", "2001:db8:0:1::b"

ETH_MIN_FRAME = 60          # shortest frame a MAC sends (64 with the FCS): shorter ones are padded
JUMBO_FRAME = 9000
C_TAG, S_TAG = EtherType.VLAN.value, EtherType.QINQ.value
IPV4, IPV6, ARP_TYPE = EtherType.IPV4.value, EtherType.IPV6.value, EtherType.ARP.value


def ethernet(ethertype: int, tags=(), src: str = MAC_A, dst: str = MAC_B):
    """Ethernet II header with VLAN ``tags`` ``[(tpid, tci), ...]`` (outer first) before
    ``ethertype``, as a scapy packet to stack the payload on."""
    types = [tpid for tpid, _ in tags] + [ethertype]
    header = Ether(dst=dst, src=src, type=types[0])
    for (_, tci), inner_type in zip(tags, types[1:]):
        header /= Dot1Q(prio=tci >> 13, dei=tci >> 12 & 1, vlan=tci & 0xFFF, type=inner_type)
    return header


def pad(frame: bytes, fill: int = 0) -> bytes:
    """``frame`` padded with ``fill`` bytes to the 60-byte Ethernet minimum."""
    return frame + bytes([fill]) * max(0, ETH_MIN_FRAME - len(frame))


def _ipv4(proto_layer, tags=(), src=IPV4_A, dst=IPV4_B, **ip_fields):
    """IPv4 frame (scapy packet) carrying ``proto_layer``."""
    return ethernet(IPV4, tags) / IP(src=src, dst=dst, **ip_fields) / proto_layer


def _ipv6(proto_layer, tags=(), src=IPV6_A, dst=IPV6_B, **ip_fields):
    """IPv6 frame (scapy packet) carrying ``proto_layer``."""
    return ethernet(IPV6, tags) / IPv6(src=src, dst=dst, **ip_fields) / proto_layer


def _tcp(payload=b"", flags="PA", sport=49152, dport=80, seq=1000, ack=2000, **tcp_fields):
    return TCP(sport=sport, dport=dport, seq=seq, ack=ack, flags=flags, window=65535,
               **tcp_fields) / Raw(payload)


def _udp(payload=b"", sport=5353, dport=53, **udp_fields):
    return UDP(sport=sport, dport=dport, **udp_fields) / Raw(payload)


def _arp(op=1):
    return ethernet(ARP_TYPE, dst="ff:ff:ff:ff:ff:ff" if op == 1 else MAC_B) / ARP(
        op=op, hwsrc=MAC_A, psrc=IPV4_A, hwdst="00:00:00:00:00:00" if op == 1 else MAC_B,
        pdst=IPV4_B)


def _patch(frame: bytes, offset: int, value: bytes) -> bytes:
    """``frame`` with ``value`` written at ``offset``."""
    return frame[:offset] + value + frame[offset + len(value):]


def _xor16(frame: bytes, offset: int, mask: int = 0x0101) -> bytes:
    """``frame`` with the 16-bit field at ``offset`` XORed with ``mask`` (breaks a checksum: 0x0101
    never turns a ones' complement value into itself or its other zero)."""
    value = int.from_bytes(frame[offset:offset + 2], "big") ^ mask
    return _patch(frame, offset, value.to_bytes(2, "big"))


def _payload(length, seed=0):
    """``length`` deterministic pseudo-random payload bytes."""
    return random.Random(seed).randbytes(length)


def _to_length(build, header_bytes, frame_bytes):
    """Frame from ``build(payload)`` whose total length is ``frame_bytes``."""
    return bytes(build(_payload(frame_bytes - header_bytes, frame_bytes)))


def directed_cases() -> list[tuple[str, bytes]]:
    """Named frames covering every field, flag and rule of docs/status_word.md."""
    cases = []

    def add(name, frame):
        cases.append((name, bytes(frame)))

    tcp4 = bytes(_ipv4(_tcp(b"GET / HTTP/1.1\r\n\r\n")))
    udp6 = bytes(_ipv6(_udp(b"\x12\x34" + bytes(10))))
    # Layer 2: runts, tags, EtherTypes.
    for length in range(14):
        add(f"runt {length} bytes", tcp4[:length])
    for tags in [
        [], [(C_TAG, 100)], [(S_TAG, 200)], [(S_TAG, 300), (C_TAG, 301)],
        [(C_TAG, 10), (C_TAG, 11)], [(S_TAG, 0), (S_TAG, 4095)], [(C_TAG, 0xF000 | 4095)],
        [(C_TAG, 0x2000 | 1)],
    ]:
        add(f"ipv4 tcp, tags {tags}", _ipv4(_tcp(b"tagged"), tags))
        add(f"ipv6 udp, tags {tags}", _ipv6(_udp(b"tagged"), tags))
    add("three tags (S, C, C): third tag not parsed",
        _ipv4(_tcp(b"x"), [(S_TAG, 1), (C_TAG, 2), (C_TAG, 3)]))
    add("three tags (C, C, S): third tag not parsed",
        _ipv4(_tcp(b"x"), [(C_TAG, 1), (C_TAG, 2), (S_TAG, 3)]))
    add("arp request", pad(bytes(_arp(1))))
    add("arp reply, nonzero padding", pad(bytes(_arp(2)), 0xA5))
    add("arp request, unpadded", _arp(1))
    add("arp in a C-tag", pad(bytes(ethernet(ARP_TYPE, [(C_TAG, 7)]) / _arp(1)[ARP])))
    for ethertype, body in [
        (0x88CC, b"\x02\x07\x04" + bytes(7)),           # LLDP
        (0x8035, bytes(28)),                             # RARP
        (0x8847, b"\x00\x01\x01\x40" + bytes(tcp4[14:])),  # MPLS
        (0x88E5, bytes(40)),                             # MACsec
        (0x002E, b"\xaa\xaa\x03" + bytes(43)),           # 802.3 length field
        (0x0000, bytes(46)),
        (0xFFFF, bytes(46)),
    ]:
        add(f"ethertype {ethertype:#06x}", ethernet(ethertype) / Raw(body))
    # IPv4 protocols, options, fragments.
    add("ipv4 tcp", tcp4)
    add("ipv4 udp", _ipv4(_udp(b"query")))
    add("ipv4 icmp echo", _ipv4(ICMP(type=8, id=1, seq=1) / Raw(b"ping" * 8)))
    for proto in (0, 2, 47, 132, 255):
        add(f"ipv4 protocol {proto}", pad(bytes(_ipv4(Raw(bytes(24)), proto=proto))))
    add("ipv4 options (ihl 6), tcp",
        _ipv4(_tcp(b"opts"), options=[IPOption_NOP(), IPOption_NOP(), IPOption_NOP(),
                                      IPOption_NOP()]))
    add("ipv4 options (ihl 15), tcp",
        _ipv4(_tcp(b"rr"), options=[IPOption_RR(routers=["10.9.9.9"] * 9)]))
    add("ipv4 options (ihl 7), udp", _ipv4(_udp(b"opts"), options=[IPOption_NOP()] * 8))
    add("ipv4 options, bad ip checksum", _xor16(bytes(
        _ipv4(_tcp(b"opts"), options=[IPOption_NOP()] * 4)), 14 + 10))
    add("ipv4 fragment: first (MF), tcp", _ipv4(_tcp(bytes(64)), flags="MF", id=7))
    add("ipv4 fragment: middle (MF, offset 8)", _ipv4(Raw(bytes(64)), flags="MF", frag=8,
                                                      proto=6, id=7))
    add("ipv4 fragment: last (offset 16), udp", _ipv4(Raw(bytes(30)), frag=16, proto=17, id=8))
    add("ipv4 fragment: offset 8191", pad(bytes(_ipv4(Raw(bytes(8)), frag=8191, proto=17))))
    add("ipv4 fragment, bad ip checksum",
        _xor16(bytes(_ipv4(_udp(bytes(20)), flags="MF")), 14 + 10))
    add("ipv4 DF only, tcp (not a fragment)", _ipv4(_tcp(b"df"), flags="DF"))
    add("ipv4 evil bit, tcp (not a fragment)", _ipv4(_tcp(b"evil"), flags="evil"))
    # Checksums.
    add("ipv4 tcp, bad ip checksum", _xor16(tcp4, 14 + 10))
    add("ipv4 tcp, ip checksum 0xffff for 0x0000", _ipv4_header_checksum_zero())
    add("ipv4 tcp, bad tcp checksum", _xor16(tcp4, 34 + 16))
    add("ipv4 tcp, bad ip and tcp checksums", _xor16(_xor16(tcp4, 14 + 10), 34 + 16))
    add("ipv4 udp, bad udp checksum", _xor16(bytes(_ipv4(_udp(b"dns"))), 34 + 6))
    add("ipv4 udp, checksum 0 (none sent)", _ipv4(_udp(b"no checksum", chksum=0)))
    add("ipv6 udp, checksum 0 (forbidden)", _ipv6(_udp(b"no checksum", chksum=0)))
    add("ipv6 tcp, bad tcp checksum", _xor16(bytes(_ipv6(_tcp(b"v6 data"))), 54 + 16))
    add("ipv6 udp, bad udp checksum", _xor16(udp6, 54 + 6))
    add("ipv4 tcp, odd payload length", _ipv4(_tcp(b"odd")))
    add("ipv6 tcp, odd payload length", _ipv6(_tcp(b"odd!!")))
    # TCP flags.
    for letter in "FSRPAUEC":
        add(f"tcp flag {letter}", pad(bytes(_ipv4(_tcp(flags=letter)))))
    add("tcp no flags", pad(bytes(_ipv4(_tcp(flags="")))))
    add("tcp all flags", pad(bytes(_ipv4(_tcp(flags="FSRPAUEC")))))
    add("tcp NS bit only (not in tcp_flags)", pad(bytes(_ipv4(_tcp(flags="N")))))
    for flags in ("S", "SA", "A", "FA", "RA", "PA", "SEC"):
        add(f"ipv6 tcp flags {flags}", _ipv6(_tcp(flags=flags)))
    add("tcp options (mss, wscale, sack-ok, timestamp)", _ipv4(_tcp(
        flags="S", options=[("MSS", 1460), ("SAckOK", b""), ("Timestamp", (1, 0)),
                            ("NOP", None), ("WScale", 7)])))
    # Ethernet padding: IP lengths exclude it.
    add("ipv4 tcp syn, zero padding", pad(bytes(_ipv4(_tcp(flags="S")))))
    add("ipv4 tcp ack, nonzero padding", pad(bytes(_ipv4(_tcp(flags="A"))), 0xFF))
    add("ipv4 udp 1 byte, padding 0x5a", pad(bytes(_ipv4(_udp(b"x"))), 0x5A))
    add("ipv4 udp, bad checksum, padded", _xor16(pad(bytes(_ipv4(_udp(b"x"))), 0x11), 34 + 6))
    add("ipv6 udp, 4 trailing bytes", udp6 + b"\xde\xad\xbe\xef")
    add("ipv4 tcp syn, padding, data offset reaches into the padding",
        pad(_patch(bytes(_ipv4(_tcp(flags="S"))), 34 + 12, b"\x60"), 0x01))
    # Sizes.
    add("ipv4 tcp, 1514-byte frame", _to_length(lambda p: _ipv4(_tcp(p)), 54, 1514))
    add("ipv4 tcp jumbo, 9000 bytes", _to_length(lambda p: _ipv4(_tcp(p)), 54, JUMBO_FRAME))
    add("ipv6 tcp jumbo, 9000 bytes", _to_length(lambda p: _ipv6(_tcp(p)), 74, JUMBO_FRAME))
    add("ipv4 udp, 9216 bytes (largest)", _to_length(lambda p: _ipv4(_udp(p)), 42,
                                                     MAX_FRAME_BYTES))
    add("ipv4 udp, 9217 bytes (oversize)", _to_length(lambda p: _ipv4(_udp(p)), 42,
                                                      MAX_FRAME_BYTES + 1))
    add("ipv6 tcp, 9300 bytes (oversize)", _to_length(lambda p: _ipv6(_tcp(p)), 74, 9300))
    add("ethertype 0x88b5, 9500 bytes (oversize)", ethernet(0x88B5) / Raw(bytes(9486)))
    # IPv4 header errors.
    for ihl in range(5):
        add(f"ipv4 ihl {ihl}", _ipv4(_tcp(b"bad ihl"), ihl=ihl))
    options_cut = bytes(_ipv4(_tcp(b"x"), options=[IPOption_RR(routers=["10.1.1.1"] * 9)]))
    add("ipv4 ihl 15, options cut off", options_cut[:14 + 30])
    add("ipv4 ihl 15, header ends the frame", options_cut[:14 + 60])
    add("ipv4 ethertype, version 6", ethernet(IPV4) / IPv6(src=IPV6_A, dst=IPV6_B) / _tcp(b"v"))
    add("ipv4 version 0", _patch(tcp4, 14, b"\x05"))
    add("ipv4 version 15", _patch(tcp4, 14, b"\xf5"))
    add("ipv4 version 6, ihl 2", _patch(tcp4, 14, b"\x62"))
    add("ipv6 ethertype, version 4", ethernet(IPV6) / IP(src=IPV4_A, dst=IPV4_B) / _tcp(bytes(40)))
    add("ipv4 total length 0", _ipv4(_tcp(b"len"), len=0))
    add("ipv4 total length 19", _ipv4(_tcp(b"len"), len=19))
    add("ipv4 total length 20 (no tcp header)", _ipv4(_tcp(b"len"), len=20))
    add("ipv4 total length 39 (tcp header short)", _ipv4(_tcp(b"len"), len=39))
    add("ipv4 total length 40, 3 tcp payload bytes outside it (tcp checksum fails)",
        _ipv4(_tcp(b"pad"), len=40))
    add("ipv4 total length 1500 in a short frame", _ipv4(_tcp(b"len"), len=1500))
    add("ipv4 total length frame + 1", _ipv4(_udp(b"len"), len=20 + 8 + 3 + 1))
    add("ipv4 options, total length < 4*ihl",
        _ipv4(_udp(b"x"), options=[IPOption_NOP()] * 8, len=24))
    # TCP and UDP length errors.
    for data_offset in range(5):
        add(f"tcp data offset {data_offset}", _ipv4(_tcp(b"doff", dataofs=data_offset)))
    add("tcp data offset 15, short segment", _ipv4(_tcp(b"abcd", dataofs=15)))
    add("tcp data offset 15, header fills the segment", _ipv4(_tcp(bytes(40), dataofs=15)))
    add("ipv6 tcp data offset 3", _ipv6(_tcp(b"doff", dataofs=3)))
    add("ipv6 tcp data offset 15, short segment", _ipv6(_tcp(b"doff", dataofs=15)))
    for udp_length in (0, 7):
        add(f"udp length {udp_length}", _ipv4(_udp(b"udp len", len=udp_length)))
    add("udp length > ip payload", _ipv4(_udp(b"udp len", len=8 + 7 + 1)))
    add("udp length < ip payload (not an error)", _ipv4(_udp(b"udp len", len=8 + 3)))
    add("ipv6 udp length 4", _ipv6(_udp(b"udp", len=4)))
    add("ipv6 udp length > ip payload", _ipv6(_udp(b"udp", len=100)))
    # IPv6.
    add("ipv6 tcp", _ipv6(_tcp(b"GET / HTTP/1.1\r\n\r\n")))
    add("ipv6 udp", udp6)
    add("ipv6 icmpv6 echo", _ipv6(ICMPv6EchoRequest(id=1, seq=1, data=b"ping")))
    add("ipv6 traffic class and flow label", _ipv6(_tcp(b"tc"), tc=0xB8, fl=0xABCDE))
    add("ipv6 hop-by-hop, tcp", _ipv6(IPv6ExtHdrHopByHop() / _tcp(b"hbh")))
    add("ipv6 routing, tcp", _ipv6(IPv6ExtHdrRouting() / _tcp(b"rt")))
    add("ipv6 fragment header, udp", _ipv6(IPv6ExtHdrFragment(m=1, id=9) / _udp(bytes(16))))
    add("ipv6 fragment header, offset 2", _ipv6(IPv6ExtHdrFragment(offset=2, id=9, nh=17)
                                                / Raw(bytes(16))))
    add("ipv6 destination options, udp", _ipv6(IPv6ExtHdrDestOpt() / _udp(b"do")))
    for next_header in (50, 51, 135, 139, 140, 253, 254):
        add(f"ipv6 extension header {next_header}", _ipv6(Raw(bytes(24)), nh=next_header))
    for next_header in (59, 4, 47, 255):
        add(f"ipv6 next header {next_header}", _ipv6(Raw(bytes(16)), nh=next_header))
    add("ipv6 payload length > frame", _ipv6(_tcp(b"plen"), plen=1000))
    add("ipv6 payload length 0, tcp", _ipv6(_tcp(b"plen"), plen=0))
    add("ipv6 payload length 19, tcp", _ipv6(_tcp(b"plen"), plen=19))
    add("ipv6 payload length 7, udp", _ipv6(_udp(b"plen"), plen=7))
    add("ipv6 version 0", _patch(udp6, 14, bytes([udp6[14] & 0x0F])))
    # Truncation at every header boundary.
    deep = bytes(_ipv4(_tcp(bytes(16), options=[("MSS", 1460), ("NOP", None), ("WScale", 2),
                                                ("NOP", None), ("NOP", None), ("SAckOK", b"")]),
                       [(S_TAG, 5), (C_TAG, 6)], options=[IPOption_NOP()] * 4))
    l3, l4 = 22, 22 + 24
    for cut in (15, 16, 17, 18, 19, 20, 21, 22, l3 + 1, l3 + 19, l3 + 20, l3 + 23, l3 + 24,
                l4 + 1, l4 + 7, l4 + 8, l4 + 19, l4 + 20, l4 + 31, l4 + 32, len(deep) - 1):
        add(f"truncated: 2 tags, ipv4 options, tcp options, {cut} of {len(deep)} bytes",
            deep[:cut])
    v6 = bytes(_ipv6(_udp(bytes(12)), [(C_TAG, 9)]))
    for cut in (18, 19, 20, 21, 18 + 39, 18 + 40, 18 + 47, 18 + 48, len(v6) - 1):
        add(f"truncated: tag, ipv6 udp, {cut} of {len(v6)} bytes", v6[:cut])
    v6tcp = bytes(_ipv6(_tcp(bytes(8))))
    for cut in (14, 54 + 13, 54 + 19, 54 + 20):
        add(f"truncated: ipv6 tcp, {cut} of {len(v6tcp)} bytes", v6tcp[:cut])
    for cut in (14, 33, 34, 41, 42, len(tcp4) - 1):
        add(f"truncated: ipv4 tcp, {cut} of {len(tcp4)} bytes", tcp4[:cut])
    return cases


def _ipv4_header_checksum_zero():
    """A good TCP/IPv4 frame whose header checksum is 0x0000, sent as 0xFFFF (also correct).

    With IP ID 0 the checksum is C = ~S, S the sum of the other words; IP ID C makes the sum
    0xFFFF.
    """
    checksum_at_id_0 = bytes(_ipv4(_tcp(b"csum"), id=0))[24:26]
    frame = bytes(_ipv4(_tcp(b"csum"), id=int.from_bytes(checksum_at_id_0, "big")))
    assert frame[24:26] == b"\x00\x00"
    return _patch(frame, 24, b"\xff\xff")


def tx_checksum_edge_cases() -> list[tuple[str, bytes, dict, bytes]]:
    """``(name, frame the host posts, NicDriver.send options, frame expected on MAC TX)`` for the
    IPv4 header checksum offload (docs/host_interface.md, "Transmit"): a header whose checksum
    computes to 0 (sent as 0, unlike an L4 checksum), and an IHL of 15 in a frame that ends
    inside the header (summed to the frame's end). The host leaves the field 0.
    """
    checksum_at_id_0 = bytes(_ipv4(_tcp(b"csum"), id=0))[24:26]
    zero = bytes(_ipv4(_tcp(b"csum"), id=int.from_bytes(checksum_at_id_0, "big")))
    assert zero[24:26] == b"\x00\x00"
    short = bytearray(bytes(_ipv4(_tcp()))[:50])
    short[14] = 0x4F                        # version 4, IHL 15: 60 header bytes, 36 in the frame
    short[24:26] = b"\0\0"
    want = bytearray(short)
    want[24:26] = (~ones_complement_sum(bytes(short[14:])) & 0xFFFF).to_bytes(2, "big")
    options = {"ip_csum": True, "ip_offset": 14}
    return [("ipv4 checksum 0", zero, options, zero),
            ("ihl past the end", bytes(short), options, bytes(want))]


def directed_frames() -> list[bytes]:
    """The frames of :func:`directed_cases`, in order."""
    return [frame for _, frame in directed_cases()]


def _random_tags(rng):
    """No tag most of the time, else one C-tag or an S-tag/C-tag pair."""
    roll = rng.random()
    if roll < 0.85:
        return []
    if roll < 0.95:
        return [(C_TAG, rng.randrange(1, 4095))]
    return [(S_TAG, rng.randrange(1, 4095)), (C_TAG, rng.randrange(1, 4095))]


def _random_good(rng):
    """One good frame of a realistic mix: TCP and UDP over IPv4/IPv6, some ARP and ICMP; sizes
    60..1514 bytes, 1 % jumbo (up to 9000)."""
    kind = rng.choices(["tcp4", "tcp6", "udp4", "udp6", "arp", "icmp4", "icmp6"],
                       weights=[45, 20, 15, 8, 4, 4, 4])[0]
    if kind == "arp":
        return pad(bytes(_arp(rng.choice([1, 2]))))
    tags = _random_tags(rng)
    if rng.random() < 0.01:
        frame_bytes = rng.randint(1515, JUMBO_FRAME)
    else:
        frame_bytes = rng.randint(ETH_MIN_FRAME, 1514)
    version = 6 if kind.endswith("6") else 4
    header_bytes = (14 + 4 * len(tags) + (40 if version == 6 else 20)
                    + (20 if kind.startswith("tcp") else 8))
    payload = rng.randbytes(max(0, frame_bytes - header_bytes))
    if kind.startswith("tcp"):
        layer = _tcp(payload, flags=rng.choices(["A", "PA", "S", "SA", "FA", "R"],
                                                weights=[40, 40, 5, 5, 5, 5])[0],
                     sport=rng.randrange(1024, 65536), dport=rng.choice([80, 443, 8080, 22]),
                     seq=rng.getrandbits(32), ack=rng.getrandbits(32))
    elif kind.startswith("udp"):
        layer = _udp(payload, sport=rng.randrange(1024, 65536), dport=rng.choice([53, 123, 4789]))
    elif kind == "icmp4":
        layer = ICMP(type=8, id=rng.getrandbits(16), seq=rng.getrandbits(16)) / Raw(payload)
    else:
        layer = ICMPv6EchoRequest(id=rng.getrandbits(16), seq=rng.getrandbits(16), data=payload)
    if version == 4:
        src = f"10.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(1, 255)}"
        dst = f"172.16.{rng.randrange(256)}.{rng.randrange(1, 255)}"
        frame = _ipv4(layer, tags, src=src, dst=dst, id=rng.getrandbits(16), ttl=64)
    else:
        src = f"2001:db8:{rng.getrandbits(16):x}::{rng.getrandbits(16):x}"
        dst = f"2001:db8:ffff::{rng.getrandbits(16):x}"
        frame = _ipv6(layer, tags, src=src, dst=dst, hlim=64)
    return pad(bytes(frame))


def _random_bad(rng):
    """One frame of a randomly chosen bad kind (every malformation, checksum error and exception
    of docs/status_word.md)."""
    kind = rng.choice([
        "ip_csum", "tcp_csum", "udp_csum", "udp6_zero_csum", "truncated", "runt", "fragment",
        "ip_options", "ipv6_ext", "bad_ihl", "bad_version", "bad_data_offset", "bad_udp_len",
        "bad_ip_len", "short_ip_len", "oversize", "three_tags", "other_ethertype",
    ])
    payload = rng.randbytes(rng.randrange(0, 200))
    tcp4 = bytes(_ipv4(_tcp(payload)))
    udp4 = bytes(_ipv4(_udp(payload)))
    if kind == "ip_csum":
        return pad(_xor16(rng.choice([tcp4, udp4]), 24))
    if kind == "tcp_csum":
        return pad(_xor16(tcp4, 50, rng.randrange(1, 0x10000)))
    if kind == "udp_csum":
        return _xor16(bytes(_ipv6(_udp(payload))), 60, rng.randrange(1, 0x10000))
    if kind == "udp6_zero_csum":
        return bytes(_ipv6(_udp(payload, chksum=0)))
    if kind == "truncated":
        good = _random_good(rng)
        return good[:rng.randrange(14, len(good))]
    if kind == "runt":
        return rng.randbytes(rng.randrange(1, 14))
    if kind == "fragment":
        return pad(bytes(_ipv4(Raw(payload), proto=rng.choice([6, 17]), flags=rng.choice(["MF", 0]),
                               frag=rng.randrange(1 if rng.random() < 0.5 else 0, 8192))))
    if kind == "ip_options":
        return bytes(_ipv4(_tcp(payload), options=[IPOption_NOP()] * rng.randrange(1, 41)))
    if kind == "ipv6_ext":
        header = rng.choice([IPv6ExtHdrHopByHop(), IPv6ExtHdrRouting(), IPv6ExtHdrDestOpt(),
                             IPv6ExtHdrFragment(id=rng.getrandbits(32))])
        return bytes(_ipv6(header / _tcp(payload)))
    if kind == "bad_ihl":
        return pad(_patch(tcp4, 14, bytes([0x40 | rng.randrange(5)])))
    if kind == "bad_version":
        version = rng.choice([v for v in range(16) if v != 4])
        return pad(_patch(tcp4, 14, bytes([version << 4 | 5])))
    if kind == "bad_data_offset":
        return pad(bytes(_ipv4(_tcp(payload, dataofs=rng.choice([0, 1, 2, 3, 4, 14, 15])))))
    if kind == "bad_udp_len":
        return pad(bytes(_ipv4(_udp(payload, len=rng.choice(
            [rng.randrange(8), 8 + len(payload) + rng.randrange(1, 100)])))))
    if kind == "bad_ip_len":
        return pad(bytes(_ipv4(_tcp(payload), len=rng.randrange(20))))
    if kind == "short_ip_len":
        return pad(bytes(_ipv4(_tcp(payload), len=40 + len(payload) + rng.randrange(1, 1000))))
    if kind == "oversize":
        return bytes(_ipv4(_udp(rng.randbytes(rng.randint(MAX_FRAME_BYTES - 41, 9600)))))
    if kind == "three_tags":
        return bytes(_ipv4(_tcp(payload), [(S_TAG, 1), (C_TAG, 2), (C_TAG, 3)]))
    return pad(bytes(ethernet(rng.choice([0x88CC, 0x8847, 0x8863, 0x22F0])) / Raw(payload)))


def random_mix(n: int, seed: int = 0) -> list[bytes]:
    """``n`` frames of realistic traffic: 90 % good (see :func:`_random_good`), 10 % bad kinds."""
    rng = random.Random(seed)
    return [_random_bad(rng) if rng.random() < 0.1 else _random_good(rng) for _ in range(n)]


def bad_frames(n: int, seed: int = 0) -> list[bytes]:
    """``n`` corrupt frames: random bytes (often behind a plausible Ethernet header), random
    truncations of good frames, random byte flips in the headers, and the bad kinds of
    :func:`random_mix`."""
    rng = random.Random(seed)
    frames = []
    for _ in range(n):
        kind = rng.choice(["random", "truncated", "flipped", "bad_kind"])
        if kind == "random":
            frame = rng.randbytes(rng.choice([rng.randrange(1, 64), rng.randrange(64, 300)]))
            if rng.random() < 0.7:
                ethertype = rng.choice([IPV4, IPV6, C_TAG, S_TAG, ARP_TYPE])
                frame = bytes(ethernet(ethertype)) + frame
        elif kind == "truncated":
            good = _random_good(rng)
            frame = good[:rng.randrange(1, len(good))]
        elif kind == "flipped":
            frame = bytearray(_random_good(rng))
            for _ in range(rng.randint(1, 4)):
                frame[rng.randrange(12, min(len(frame), 100))] ^= 1 << rng.randrange(8)
            frame = bytes(frame)
        else:
            frame = _random_bad(rng)
        frames.append(frame)
    return frames
