"""The Toeplitz golden model against Microsoft's published RSS verification vectors.

Vectors: "Verifying the RSS Hash Calculation" (Microsoft NDIS docs), with the default key
hw.params.MS_RSS_KEY; the same table is in the Intel 82599 datasheet §7.1.2.8.3 and in DPDK's
app/test/test_thash.c.
Microsoft publishes five IPv4 rows and three IPv6 rows.
"""

import random

import pytest

from sim.reference.rss_vectors import MS_RSS_VECTORS
from sim.reference.toeplitz import MS_RSS_KEY, rss_input, toeplitz_hash


@pytest.mark.parametrize("src, sport, dst, dport, hash_2tuple, hash_4tuple",
                         MS_RSS_VECTORS)
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
