"""The driver's checksum helpers (host_driver/checksum.py) against the golden model and scapy.

The pseudo-header sums are checked against :mod:`sim.reference.checksum` and, on random IPv4 and
IPv6 TCP/UDP frames, against scapy: the uncomplemented pseudo-header sum plus the segment, folded
and complemented, must be the checksum scapy computed for the frame.
"""

import random
import socket

import pytest
from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.inet6 import IPv6
from scapy.layers.l2 import Dot1Q, Ether
from scapy.packet import Raw

from host_driver.checksum import csum_fold, csum_ipv6_magic, csum_partial, csum_tcpudp_magic
from sim.reference.checksum import ones_complement_sum, pseudo_header


def _random_frame(rng, version):
    """A random TCP or UDP frame over IPv4 or IPv6, maybe VLAN-tagged; checksums by scapy."""
    if version == 4:
        ip = IP(src=".".join(str(rng.randrange(256)) for _ in range(4)),
                dst=".".join(str(rng.randrange(256)) for _ in range(4)),
                options=b"\x01" * rng.choice([0, 4, 8]))
    else:
        ip = IPv6(src=":".join(f"{rng.randrange(1 << 16):x}" for _ in range(8)),
                  dst=":".join(f"{rng.randrange(1 << 16):x}" for _ in range(8)))
    if rng.random() < 0.5:
        l4 = TCP(sport=rng.randrange(1 << 16), dport=rng.randrange(1 << 16),
                 seq=rng.getrandbits(32), flags="PA")
    else:
        l4 = UDP(sport=rng.randrange(1 << 16), dport=rng.randrange(1 << 16))
    # Both MAC addresses given: scapy would otherwise look the IPv6 destination up on the network.
    l2 = Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02")
    if rng.random() < 0.3:
        l2 /= Dot1Q(vlan=rng.randrange(4096))
    return l2 / ip / l4 / Raw(rng.randbytes(rng.randrange(0, 1400)))


def test_csum_partial_folds_to_the_golden_sum():
    rng = random.Random(1)
    for _ in range(500):
        data = rng.randbytes(rng.randrange(0, 200))
        assert csum_fold(csum_partial(data)) == ~ones_complement_sum(data) & 0xFFFF
    assert csum_fold(csum_partial(b"\xff" * 64)) == 0         # carries all the way round


def test_csum_partial_chains_over_even_pieces():
    data = random.Random(2).randbytes(301)
    assert csum_partial(data[100:], csum_partial(data[:100])) == csum_partial(data)


@pytest.mark.parametrize("version", [4, 6])
def test_pseudo_header_sums_match_the_golden_model(version):
    rng = random.Random(version)
    nbytes = 4 if version == 4 else 16
    magic = csum_tcpudp_magic if version == 4 else csum_ipv6_magic
    for _ in range(300):
        src, dst = rng.randbytes(nbytes), rng.randbytes(nbytes)
        proto = rng.choice([6, 17, rng.randrange(256)])
        length = rng.randrange(1 << 16)
        want = ones_complement_sum(pseudo_header(src, dst, proto, length))
        assert ~magic(src, dst, length, proto) & 0xFFFF == want


@pytest.mark.parametrize("version", [4, 6])
def test_pseudo_header_plus_segment_gives_scapys_checksum(version):
    """CHECKSUM_PARTIAL done by hand: the segment with its checksum field 0, summed onto the
    pseudo-header, folded and complemented, is the checksum scapy put in the frame."""
    rng = random.Random(10 + version)
    magic = csum_tcpudp_magic if version == 4 else csum_ipv6_magic
    family = socket.AF_INET if version == 4 else socket.AF_INET6
    for _ in range(100):
        frame = Ether(bytes(_random_frame(rng, version)))
        ip = frame[IP if version == 4 else IPv6]
        l4, proto, field = (frame[TCP], 6, 16) if TCP in frame else (frame[UDP], 17, 6)
        segment = bytearray(bytes(l4))
        segment[field:field + 2] = b"\0\0"
        computed = magic(socket.inet_pton(family, ip.src), socket.inet_pton(family, ip.dst),
                         len(segment), proto, csum_partial(bytes(segment)))
        if proto == 17 and computed == 0:
            computed = 0xFFFF                               # RFC 768: 0 is sent as all ones
        assert computed == l4.chksum
