"""The status-word reference model: hand-checked rows, one case per rule of docs/status_word.md,
coverage of the directed catalogue, robustness on fuzz, and field values against scapy's own
dissection of whole frames."""

import random

import pytest
from amaranth.lib import data
from scapy.layers.inet import ICMP, IP, TCP, UDP, in4_chksum
from scapy.layers.inet6 import IPv6, IPv6ExtHdrFragment, IPv6ExtHdrHopByHop, in6_chksum
from scapy.layers.l2 import ARP, Dot1Q, Ether
from scapy.packet import Raw

from hw.layouts import RxErrors
from sim.frames import MAC_A, bad_frames, directed_cases, ethernet, pad, random_mix
from sim.reference.rx_status import (
    ERROR_NAMES,
    JSON_KEYS,
    expected_errors,
    expected_fields,
    expected_status,
)

# Microsoft's first RSS verification vectors (see test_reference_toeplitz.py) as real frames.
V4_SRC, V4_DST, SPORT, DPORT = "66.9.149.187", "161.142.100.80", 2794, 1766
V6_SRC, V6_DST = "3ffe:2501:200:1fff::7", "3ffe:2501:200:3::1"
V4_HASH_4TUPLE, V4_HASH_2TUPLE = "51ccc178", "323e8fc2"
V6_HASH_4TUPLE, V6_HASH_2TUPLE = "40207d3d", "2cc18cd5"


def v4(*layers, tags=(), **ip_fields):
    """IPv4 frame from the first Microsoft vector's addresses; ``layers`` stacked on IP."""
    packet = ethernet(0x0800, tags) / IP(src=V4_SRC, dst=V4_DST, **ip_fields)
    for layer in layers:
        packet /= layer
    return bytes(packet)


def v6(*layers, tags=(), **ip_fields):
    """IPv6 frame from the first Microsoft IPv6 vector's addresses."""
    packet = ethernet(0x86DD, tags) / IPv6(src=V6_SRC, dst=V6_DST, **ip_fields)
    for layer in layers:
        packet /= layer
    return bytes(packet)


def tcp(payload=b"", **fields):
    fields = {"sport": SPORT, "dport": DPORT, "seq": 100, "ack": 200, "flags": "PA",
              "window": 1000} | fields
    return TCP(**fields) / Raw(payload)


def udp(payload=b"", **fields):
    return UDP(sport=SPORT, dport=DPORT, **fields) / Raw(payload)


def row(**fields):
    """A full expected row: nulls and defaults, overridden by ``fields``."""
    return dict.fromkeys(JSON_KEYS) | {"frame": 0, "l3": "other", "malformed": False,
                                       "hash": "00000000", "candidate": False} | fields


def test_ipv4_tcp_exact():
    frame = v4(tcp(b"hello"))
    assert expected_status(frame, 5) == row(
        frame=5, len=59, vlan=[], ethertype=0x0800, l3="ipv4", l4="tcp", ip_csum_ok=True,
        l4_csum_ok=True, fragment=False, ip_options=False, src=V4_SRC, dst=V4_DST, sport=SPORT,
        dport=DPORT, tcp_flags="PA", seq=100, ack=200, window=1000, payload_len=5,
        hash=V4_HASH_4TUPLE, candidate=True)
    assert list(expected_status(frame)) == list(JSON_KEYS)


def test_ipv6_udp_in_vlan_exact():
    frame = v6(udp(b"abc"), tags=[(0x8100, 42)])
    assert expected_status(frame) == row(
        len=69, vlan=[42], ethertype=0x86DD, l3="ipv6", l4="udp", l4_csum_ok=True,
        fragment=False, ip_options=False, src=V6_SRC, dst=V6_DST, sport=SPORT, dport=DPORT,
        payload_len=3, hash=V6_HASH_4TUPLE)


def test_ipv4_fragment_exact():
    frame = v4(Raw(bytes(30)), proto=17, flags="MF", id=9)
    assert expected_status(frame) == row(
        len=64, vlan=[], ethertype=0x0800, l3="ipv4", l4="udp", ip_csum_ok=True, fragment=True,
        ip_options=False, src=V4_SRC, dst=V4_DST, hash=V4_HASH_2TUPLE)


def test_runt_and_arp_exact():
    assert expected_status(bytes(13), 1) == row(frame=1, len=13, malformed=True)
    arp = pad(bytes(ethernet(0x0806) / ARP(op=1, hwsrc=MAC_A, psrc="10.0.0.1", pdst="10.0.0.2")))
    assert expected_status(arp) == row(len=60, vlan=[], ethertype=0x0806, l3="arp")


def test_ipv6_extension_header_exact():
    frame = v6(IPv6ExtHdrHopByHop(), tcp())
    assert expected_status(frame) == row(
        len=82, vlan=[], ethertype=0x86DD, l3="ipv6", l4="other", fragment=False, ip_options=True,
        src=V6_SRC, dst=V6_DST, hash=V6_HASH_2TUPLE)


def test_ipv4_cut_short_exact():
    """Total length beyond the frame: truncated, but the complete TCP header is still reported."""
    frame = v4(tcp(bytes(100)))[:70]
    assert expected_status(frame) == row(
        len=70, vlan=[], ethertype=0x0800, l3="ipv4", l4="tcp", ip_csum_ok=True, fragment=False,
        ip_options=False, malformed=True, src=V4_SRC, dst=V4_DST, sport=SPORT, dport=DPORT,
        tcp_flags="PA", seq=100, ack=200, window=1000, payload_len=100, hash=V4_HASH_4TUPLE)


TCP_FRAME = v4(tcp(b"data"))

# (rule, frame, expected subset of the row, expected error names)
RULES = [
    ("runt: < 14 bytes", b"\x01" * 13, {"l3": "other", "vlan": None, "ethertype": None}, {"runt"}),
    ("14 bytes is not a runt", bytes(ethernet(0x88B5)), {"vlan": [], "ethertype": 0x88B5}, set()),
    ("tag cut off", bytes(ethernet(0x8100))[:16], {"vlan": None, "ethertype": None, "l3": "other"},
     {"truncated"}),
    ("inner EtherType cut off", bytes(ethernet(0x0800, [(0x88A8, 1), (0x8100, 2)]))[:21],
     {"vlan": None, "ethertype": None}, {"truncated"}),
    ("S-tag then C-tag", v4(tcp(), tags=[(0x88A8, 0xE000 | 300), (0x8100, 301)]),
     {"vlan": [300, 301], "ethertype": 0x0800, "l3": "ipv4", "candidate": True}, set()),
    ("third tag: l3 other", v4(tcp(), tags=[(0x8100, 1), (0x8100, 2), (0x88A8, 3)]),
     {"vlan": [1, 2], "ethertype": 0x88A8, "l3": "other", "l4": None, "hash": "00000000"}, set()),
    ("arp", bytes(ethernet(0x0806) / ARP()), {"l3": "arp", "l4": None}, set()),
    ("other EtherType", bytes(ethernet(0x88CC) / Raw(bytes(46))), {"l3": "other", "l4": None},
     set()),
    ("ipv4 header incomplete", TCP_FRAME[:33], {"l3": "ipv4", "l4": None, "src": None,
                                                "ip_csum_ok": None}, {"truncated"}),
    ("ipv4 bad version", TCP_FRAME[:14] + b"\x65" + TCP_FRAME[15:],
     {"l4": None, "src": None, "ip_csum_ok": None, "fragment": None, "hash": "00000000"},
     {"bad_version"}),
    ("ipv4 bad ihl", v4(tcp(), ihl=4), {"l4": None, "src": None, "ip_options": None},
     {"bad_ihl"}),
    ("ipv4 options", v4(tcp(), options=b"\x01\x01\x01\x00"),
     {"ip_options": True, "candidate": False, "l4_csum_ok": True}, set()),
    ("ipv4 options cut off", v4(tcp(), options=b"\x01" * 40)[:40],
     {"src": V4_SRC, "ip_options": True, "ip_csum_ok": None, "hash": V4_HASH_2TUPLE},
     {"truncated", "bad_l4_len"}),
    ("ipv4 fragment offset", v4(tcp(), frag=100),
     {"fragment": True, "l4": "tcp", "sport": None, "l4_csum_ok": None, "hash": V4_HASH_2TUPLE},
     set()),
    ("ipv4 DF is no fragment", v4(tcp(), flags="DF"), {"fragment": False, "candidate": True},
     set()),
    ("ipv4 total length < header", v4(tcp(), len=19), {"src": V4_SRC, "sport": None},
     {"bad_ip_len", "bad_l4_len"}),
    ("ipv4 total length > frame", v4(udp(b"abc"), len=100),
     {"payload_len": 72, "l4_csum_ok": None}, {"truncated"}),
    ("ethernet padding ignored", pad(v4(tcp(b"x")), 0xEE),
     {"len": 60, "payload_len": 1, "l4_csum_ok": True, "candidate": True}, set()),
    ("ip checksum", TCP_FRAME[:24] + bytes([TCP_FRAME[24] ^ 1]) + TCP_FRAME[25:],
     {"ip_csum_ok": False, "l4_csum_ok": True, "candidate": False}, set()),
    ("icmp", v4(ICMP()), {"l4": "icmp", "sport": None, "hash": V4_HASH_2TUPLE}, set()),
    ("ipv4 protocol other", v4(Raw(bytes(8)), proto=89), {"l4": "other"}, set()),
    ("ipv6 header incomplete", v6(udp())[:53], {"l3": "ipv6", "l4": None}, {"truncated"}),
    ("ipv6 bad version", bytes(ethernet(0x86DD) / IP(src=V4_SRC, dst=V4_DST) / Raw(bytes(40))),
     {"l3": "ipv6", "l4": None, "src": None}, {"bad_version"}),
    ("ipv6 fragment header", v6(IPv6ExtHdrFragment(m=1), udp()),
     {"l4": "other", "fragment": True, "ip_options": True, "hash": V6_HASH_2TUPLE}, set()),
    ("ipv6 next header 59", v6(nh=59), {"l4": "other", "ip_options": False}, set()),
    ("ipv6 icmpv6", v6(Raw(bytes(8)), nh=58), {"l4": "icmp"}, set()),
    ("ipv6 payload beyond frame", v6(tcp(), plen=21), {"payload_len": 1}, {"truncated"}),
    ("ipv6 tcp candidate", v6(tcp(b"six")), {"candidate": True, "ip_csum_ok": None}, set()),
    ("tcp header beyond ip_end", v4(tcp(bytes(20)), len=39),
     {"sport": None, "hash": V4_HASH_2TUPLE}, {"bad_l4_len"}),
    ("tcp data offset < 5", v4(tcp(b"abcd", dataofs=4)),
     {"sport": SPORT, "payload_len": None, "l4_csum_ok": None, "hash": V4_HASH_4TUPLE},
     {"bad_l4_len"}),
    ("tcp data offset beyond the segment, inside the padding", pad(v4(tcp(dataofs=6))),
     {"tcp_flags": "PA", "payload_len": None}, {"bad_l4_len"}),
    ("tcp options", v4(tcp(b"z", options=[("MSS", 1460)])), {"payload_len": 1, "candidate": True},
     set()),
    ("tcp flags in FSRPAUEC order, NS ignored", v4(tcp(flags=0x1FF)), {"tcp_flags": "FSRPAUEC"},
     set()),
    ("udp length < 8", v4(udp(b"abc", len=7)), {"sport": SPORT, "payload_len": None},
     {"bad_l4_len"}),
    ("udp length > l4 length", v4(udp(b"abc", len=12)), {"payload_len": None}, {"bad_l4_len"}),
    ("udp payload from ip length", v4(udp(b"abcdef", len=10)), {"payload_len": 6}, set()),
    ("udp over ipv4 checksum 0", v4(udp(b"abc", chksum=0)), {"l4_csum_ok": None}, set()),
    ("udp over ipv6 checksum 0", v6(udp(b"abc", chksum=0)), {"l4_csum_ok": False}, set()),
    ("tcp checksum", TCP_FRAME[:50] + bytes([TCP_FRAME[50] ^ 1]) + TCP_FRAME[51:],
     {"l4_csum_ok": False, "candidate": False}, set()),
    ("oversize", v4(tcp(bytes(9216 - 54 + 1))),
     {"len": 9217, "malformed": True, "l4_csum_ok": None, "candidate": False}, {"oversize"}),
    ("9216 bytes is not oversize", v4(tcp(bytes(9216 - 54))), {"candidate": True}, set()),
]


@pytest.mark.parametrize("frame, subset, errors", [case[1:] for case in RULES],
                         ids=[case[0] for case in RULES])
def test_rule(frame, subset, errors):
    status = expected_status(frame)
    assert {key: status[key] for key in subset} == subset
    assert expected_errors(frame) == errors
    assert status["malformed"] == bool(errors)


def test_error_names_are_the_rx_errors_fields():
    assert tuple(name for name, _ in data.Layout.cast(RxErrors)) == ERROR_NAMES


def test_directed_catalogue_reaches_every_outcome():
    cases = directed_cases()
    rows = [expected_status(frame, index) for index, (_, frame) in enumerate(cases)]
    assert set().union(*(expected_errors(frame) for _, frame in cases)) == set(ERROR_NAMES)
    reached = {(key, repr(row[key])) for row in rows for key in JSON_KEYS}
    for key, values in [
        ("l3", ["ipv4", "ipv6", "arp", "other"]),
        ("l4", ["tcp", "udp", "icmp", "other", None]),
        ("ip_csum_ok", [True, False, None]), ("l4_csum_ok", [True, False, None]),
        ("fragment", [True, False, None]), ("ip_options", [True, False, None]),
        ("malformed", [True, False]), ("candidate", [True, False]),
        ("vlan", [None, [], [4095], [300, 301]]), ("tcp_flags", [None, "", "FSRPAUEC"]),
        ("payload_len", [None, 0]),
    ]:
        for value in values:
            assert (key, repr(value)) in reached, (key, value)
    for letter in "FSRPAUEC":
        assert any(row["tcp_flags"] == letter for row in rows)
    hashes_by_input = {"4-tuple": False, "2-tuple": False, "none": False}
    for row_ in rows:
        if row_["sport"] is not None:
            hashes_by_input["4-tuple"] = True
        elif row_["src"] is not None:
            hashes_by_input["2-tuple"] = True
        else:
            hashes_by_input["none"] |= row_["hash"] == "00000000"
    assert all(hashes_by_input.values())


def check_row_shape(status, index):
    """Exactly the JSON keys, in order, each of its documented type."""
    assert list(status) == list(JSON_KEYS)
    assert status["frame"] == index
    assert isinstance(status["len"], int)
    assert status["l3"] in ("ipv4", "ipv6", "arp", "other")
    assert status["l4"] in ("tcp", "udp", "icmp", "other", None)
    assert status["vlan"] is None or all(0 <= vid < 4096 for vid in status["vlan"])
    for key in ("ip_csum_ok", "l4_csum_ok", "fragment", "ip_options"):
        assert status[key] in (True, False, None)
    assert isinstance(status["malformed"], bool) and isinstance(status["candidate"], bool)
    for key in ("ethertype", "sport", "dport", "seq", "ack", "window", "payload_len"):
        assert status[key] is None or isinstance(status[key], int)
    assert len(status["hash"]) == 8 and int(status["hash"], 16) >= 0
    assert (status["l4"] is None) == (status["src"] is None)
    assert status["hash"] == "00000000" or status["src"] is not None


def test_directed_rows_have_exactly_the_keys():
    for index, frame in enumerate(frame for _, frame in directed_cases()):
        check_row_shape(expected_status(frame, index), index)


def test_never_raises_on_fuzz():
    rng = random.Random(99)
    frames = bad_frames(500, seed=7) + [rng.randbytes(rng.randrange(120)) for _ in range(300)]
    for index, frame in enumerate(frames):
        check_row_shape(expected_status(frame, index), index)


def scapy_view(frame):
    """``(ip layer, L4 segment bytes)`` located with scapy's fields (tags, IHL, IP lengths)."""
    packet = Ether(frame)
    tags = sum(1 for layer in packet.layers() if issubclass(layer, Dot1Q))
    if IP in packet:
        ip = packet[IP]
        start, length = 14 + 4 * tags + 4 * ip.ihl, ip.len - 4 * ip.ihl
    else:
        ip = packet[IPv6]
        start, length = 14 + 4 * tags + 40, ip.plen
    return ip, frame[start:start + length]


def scapy_l4_checksum_ok(ip, segment, is_tcp):
    """The checksum verdict from scapy's pseudo-header checksum routines."""
    field = 16 if is_tcp else 6
    sent = int.from_bytes(segment[field:field + 2], "big")
    if not is_tcp and sent == 0:
        return None if isinstance(ip, IP) else False
    zeroed = segment[:field] + b"\0\0" + segment[field + 2:]
    proto = 6 if is_tcp else 17
    computed = in4_chksum(proto, ip, zeroed) if isinstance(ip, IP) else in6_chksum(proto, ip,
                                                                                   zeroed)
    return computed == sent or {computed, sent} == {0, 0xFFFF}


def test_fields_match_scapy_dissection_of_the_random_mix():
    checked = 0
    for frame in random_mix(400, seed=3):
        status = expected_status(frame)
        if status["malformed"] or status["l3"] not in ("ipv4", "ipv6"):
            continue
        ip, segment = scapy_view(frame)
        assert (status["src"], status["dst"]) == (ip.src, ip.dst)
        if status["sport"] is None:
            continue
        is_tcp = status["l4"] == "tcp"
        assert status["l4_csum_ok"] == scapy_l4_checksum_ok(ip, segment, is_tcp)
        layer = TCP(segment) if is_tcp else UDP(segment)
        assert (status["sport"], status["dport"]) == (layer.sport, layer.dport)
        if is_tcp:
            assert (status["seq"], status["ack"], status["window"]) == (
                layer.seq, layer.ack, layer.window)
            assert status["payload_len"] == len(segment) - 4 * layer.dataofs
        else:
            assert status["payload_len"] == len(segment) - 8
        checked += 1
    assert checked > 250


def test_rss_key_is_a_parameter():
    key = bytes(range(40))
    frame = v4(tcp())
    assert expected_status(frame, key=key)["hash"] != expected_status(frame)["hash"]


# -- The whole RxStatus (expected_fields): ip_proto, hash_type, offsets, zeros where nothing applies

ZERO_UNLESS = {
    # field: the valid bit it needs (RxStatus docstring; docs/status_word.md)
    "vlan_count": "l2_valid", "vlan0": "l2_valid", "vlan1": "l2_valid", "ethertype": "l2_valid",
    "l3_offset": "l2_valid", "ip_proto": "addr_valid", "l4": "addr_valid",
    "fragment": "addr_valid", "ip_options": "addr_valid", "src": "addr_valid",
    "dst": "addr_valid", "l4_offset": "addr_valid", "sport": "l4_valid", "dport": "l4_valid",
    "seq": "l4_valid", "ack": "l4_valid", "window": "l4_valid", "tcp_flags": "l4_valid",
    "payload_offset": "l4_valid", "payload_len": "l4_valid", "ip_csum_ok": "ip_csum_valid",
    "l4_csum_ok": "l4_csum_valid",
}


@pytest.mark.parametrize("frame, want", [
    # TCP with 12 bytes of options in a VLAN: offsets from the tag, IHL and data offset.
    (v4(tcp(b"abc", options=[("NOP", None)] * 12), tags=[(0x8100, 7)]),
     {"l3_offset": 18, "l4_offset": 38, "payload_offset": 70, "ip_proto": 6, "hash_type": 2}),
    # IPv4 options (IHL 6) and UDP.
    (v4(udp(b"xy"), options=b"\x01\x01\x01\x00"),
     {"l3_offset": 14, "l4_offset": 38, "payload_offset": 46, "ip_proto": 17, "hash_type": 2}),
    # IPv6 TCP: next header 6, fixed 40-byte header.
    (v6(tcp()), {"l3_offset": 14, "l4_offset": 54, "payload_offset": 74, "ip_proto": 6,
                 "hash_type": 2}),
    # ICMP: addresses only, a 2-tuple hash, no payload offset.
    (v4(ICMP()), {"l3_offset": 14, "l4_offset": 34, "payload_offset": 0, "ip_proto": 1,
                  "hash_type": 1}),
    # A fragment: no ports, a 2-tuple.
    (v4(tcp(), flags="MF"), {"l4_offset": 34, "payload_offset": 0, "hash_type": 1}),
    # IPv6 extension header: ip_proto is the next header (0), l4 other.
    (v6(IPv6ExtHdrHopByHop() / tcp()), {"ip_proto": 0, "l4_offset": 54, "hash_type": 1}),
    # ARP: layer 2 applies (l3_offset), no IP.
    (bytes(Ether(src=MAC_A) / ARP()), {"l3_offset": 14, "l4_offset": 0, "ip_proto": 0,
                                       "hash_type": 0}),
    # IPv4 header cut off: l3_offset only.
    (v4(tcp())[:30], {"l3_offset": 14, "l4_offset": 0, "ip_proto": 0, "hash_type": 0}),
    # A runt: nothing.
    (bytes(10), {"l3_offset": 0, "l4_offset": 0, "ip_proto": 0, "hash_type": 0}),
], ids=["vlan-tcp-options", "ip-options-udp", "ipv6-tcp", "icmp", "fragment", "ipv6-ext", "arp",
        "ipv4-cut", "runt"])
def test_expected_fields_offsets_proto_hash_type(frame, want):
    fields = expected_fields(frame)
    assert {name: int(fields.get(name, 0)) for name in want} == want


def test_expected_fields_read_zero_where_they_do_not_apply():
    """On the directed catalogue and the random mix: a field whose valid bit is 0 is 0, and the
    packed status word renders back to expected_status's row."""
    from hw.layouts import RxStatus, pack, unpack
    from sim.status_json import status_to_json

    frames = [case[1] for case in directed_cases()] + random_mix(150, seed=3) + bad_frames(150)
    for n, frame in enumerate(frames):
        fields = expected_fields(frame)
        for name, valid in ZERO_UNLESS.items():
            if not fields.get(valid, 0):
                assert fields.get(name, 0) == 0, (n, name, frame.hex())
        view = unpack(RxStatus, pack(RxStatus, fields))
        assert status_to_json(view, n) == expected_status(frame, n), frame.hex()
