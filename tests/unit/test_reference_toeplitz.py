"""The Toeplitz golden model against Microsoft's published RSS verification vectors.

Vectors: "Verifying the RSS Hash Calculation" (Microsoft NDIS docs), with the default key
hw.params.MS_RSS_KEY; the same table is in the Intel 82599 datasheet §7.1.2.8.3 and in DPDK's
app/test/test_thash.c.
Microsoft publishes five IPv4 rows and three IPv6 rows.
"""

import random

import pytest

from sim.reference.toeplitz import MS_RSS_KEY, rss_input, toeplitz_hash

# (source address, source port, destination address, destination port, hash without ports, with)
IPV4_VECTORS = [
    ("66.9.149.187", 2794, "161.142.100.80", 1766, 0x323E8FC2, 0x51CCC178),
    ("199.92.111.2", 14230, "65.69.140.83", 4739, 0xD718262A, 0xC626B0EA),
    ("24.19.198.95", 12898, "12.22.207.184", 38024, 0xD2D0A5DE, 0x5C2B394A),
    ("38.27.205.30", 48228, "209.142.163.6", 2217, 0x82989176, 0xAFC7327F),
    ("153.39.163.191", 44251, "202.188.127.2", 1303, 0x5D1809C5, 0x10E828A2),
]
IPV6_VECTORS = [
    ("3ffe:2501:200:1fff::7", 2794, "3ffe:2501:200:3::1", 1766, 0x2CC18CD5, 0x40207D3D),
    ("3ffe:501:8::260:97ff:fe40:efab", 14230, "ff02::1", 4739, 0x0F0C461C, 0xDDE51BBF),
    ("3ffe:1900:4545:3:200:f8ff:fe21:67cf", 44251, "fe80::200:f8ff:fe21:67cf", 38024,
     0x4B61E985, 0x02D1FEEF),
]


@pytest.mark.parametrize("src, sport, dst, dport, hash_2tuple, hash_4tuple",
                         IPV4_VECTORS + IPV6_VECTORS)
def test_microsoft_vectors(src, sport, dst, dport, hash_2tuple, hash_4tuple):
    assert toeplitz_hash(MS_RSS_KEY, rss_input(src, dst)) == hash_2tuple
    assert toeplitz_hash(MS_RSS_KEY, rss_input(src, dst, sport, dport)) == hash_4tuple


def test_rss_input_layout():
    assert rss_input("66.9.149.187", "161.142.100.80", 2794, 1766) == bytes(
        [66, 9, 149, 187, 161, 142, 100, 80, 0x0A, 0xEA, 0x06, 0xE6])
    packed = bytes(range(16))
    assert rss_input(packed, packed[::-1]) == packed + packed[::-1]
    assert len(rss_input("::1", "::2", 1, 2)) == 36


@pytest.mark.parametrize("args", [("10.0.0.1", "::1"), ("10.0.0.1", "10.0.0.2", 80, None),
                                  ("10.0.0.1", "10.0.0.2", None, 80)])
def test_rss_input_rejects_inconsistent_arguments(args):
    with pytest.raises(ValueError):
        rss_input(*args)


def test_hash_is_linear_and_zero_for_no_input():
    """Toeplitz is XOR-linear: H(a ^ b) = H(a) ^ H(b), and H(0...) = 0."""
    rng = random.Random(1)
    assert toeplitz_hash(MS_RSS_KEY, b"") == 0
    assert toeplitz_hash(MS_RSS_KEY, bytes(36)) == 0
    for _ in range(20):
        a, b = rng.randbytes(36), rng.randbytes(36)
        xor = bytes(x ^ y for x, y in zip(a, b))
        assert toeplitz_hash(MS_RSS_KEY, xor) == (
            toeplitz_hash(MS_RSS_KEY, a) ^ toeplitz_hash(MS_RSS_KEY, b))


def test_single_bit_selects_key_window():
    """Input bit i set alone gives key bits i..i+31."""
    key = bytes(range(1, 41))
    key_bits = int.from_bytes(key, "big")
    for bit in (0, 1, 7, 8, 100, 287):
        data = (1 << (8 * 36 - 1 - bit)).to_bytes(36, "big")
        assert toeplitz_hash(key, data) == key_bits >> (320 - 32 - bit) & 0xFFFFFFFF


def test_key_too_short():
    with pytest.raises(ValueError):
        toeplitz_hash(bytes(39), bytes(36))
