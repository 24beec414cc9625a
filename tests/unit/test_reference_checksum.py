"""The checksum golden model against scapy's checksum code and RFC 1071's worked example."""

import random

import pytest
from scapy.layers.inet import IP, TCP, UDP, in4_chksum
from scapy.layers.inet6 import IPv6, in6_chksum
from scapy.packet import Raw
from scapy.utils import checksum

from sim.reference.checksum import (
    ipv4_header_ok,
    l4_checksum_ok,
    ones_complement_sum,
    pseudo_header,
)


def test_rfc1071_example():
    """RFC 1071 §3: the words 0001 f203 f4f5 f6f7 sum to 0xddf2."""
    assert ones_complement_sum(bytes.fromhex("0001f203f4f5f6f7")) == 0xDDF2


@pytest.mark.parametrize("length", [0, 1, 2, 3, 19, 20, 59, 1500])
def test_sum_matches_scapy(length):
    rng = random.Random(length)
    for _ in range(20):
        data = rng.randbytes(length)
        assert ones_complement_sum(data) ^ 0xFFFF == checksum(data)


def test_odd_length_pads_with_zero():
    assert ones_complement_sum(b"\x12\x34\x56") == 0x1234 + 0x5600


def test_ipv4_header():
    header = bytes(IP(src="192.0.2.1", dst="198.51.100.2", id=77, ttl=9, proto=6))
    assert ipv4_header_ok(header)
    assert not ipv4_header_ok(header[:10] + bytes([header[10] ^ 1]) + header[11:])
    with_options = bytes(IP(src="192.0.2.1", dst="198.51.100.2", options=b"\x01\x01\x01\x00"))
    assert len(with_options) == 24 and ipv4_header_ok(with_options)


def test_pseudo_headers_layout():
    v4 = pseudo_header(bytes([1, 2, 3, 4]), bytes([5, 6, 7, 8]), 6, 0x1234)
    assert v4 == bytes([1, 2, 3, 4, 5, 6, 7, 8, 0, 6, 0x12, 0x34])
    v6 = pseudo_header(bytes(16), bytes(range(16)), 17, 0x12345)
    assert v6 == bytes(16) + bytes(range(16)) + bytes([0, 1, 0x23, 0x45, 0, 0, 0, 17])
    with pytest.raises(ValueError):
        pseudo_header(bytes(4), bytes(16), 6, 0)


@pytest.mark.parametrize("layer", [TCP, UDP])
@pytest.mark.parametrize("payload_length", [0, 1, 2, 101])
def test_l4_checksum_matches_scapy_ipv4(layer, payload_length):
    ip = IP(src="10.1.2.3", dst="10.3.2.1", proto=6 if layer is TCP else 17)
    segment = bytes(layer(sport=1234, dport=80, chksum=0) / Raw(bytes(range(payload_length))))
    expected = in4_chksum(ip.proto, ip, segment)
    sum_ = ones_complement_sum(pseudo_header(bytes([10, 1, 2, 3]), bytes([10, 3, 2, 1]), ip.proto,
                                             len(segment)) + segment)
    assert sum_ ^ 0xFFFF == expected
    built = bytes(ip / layer(sport=1234, dport=80) / Raw(bytes(range(payload_length))))
    assert l4_checksum_ok(bytes([10, 1, 2, 3]), bytes([10, 3, 2, 1]), ip.proto, built[20:])


@pytest.mark.parametrize("layer", [TCP, UDP])
@pytest.mark.parametrize("payload_length", [0, 1, 33])
def test_l4_checksum_matches_scapy_ipv6(layer, payload_length):
    nh = 6 if layer is TCP else 17
    ip = IPv6(src="2001:db8::1", dst="2001:db8::2", nh=nh)
    segment = bytes(layer(sport=1234, dport=80, chksum=0) / Raw(bytes(range(payload_length))))
    src = bytes.fromhex("20010db8" + "0" * 23 + "1")
    dst = bytes.fromhex("20010db8" + "0" * 23 + "2")
    assert ones_complement_sum(pseudo_header(src, dst, nh, len(segment)) + segment) ^ 0xFFFF == (
        in6_chksum(nh, ip, segment))
    built = bytes(ip / layer(sport=1234, dport=80) / Raw(bytes(range(payload_length))))
    assert l4_checksum_ok(src, dst, nh, built[40:])
    corrupted = built[40:-1] + bytes([built[-1] ^ 0x10])
    assert not l4_checksum_ok(src, dst, nh, corrupted)
