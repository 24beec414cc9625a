"""The SipHash golden model (sim/reference/siphash.py) against the published vectors and a C
implementation.

Vectors: the reference implementation's ``vectors.h`` (sim/reference/siphash_vectors.py names the
source), SipHash-2-4 with 64- and 128-bit output. Random keys and messages of every length up to
100 bytes (every tail length, and the lengths the NIC hashes: 12 and 36 bytes) are checked against
the ``siphash24`` package, a C implementation of SipHash-2-4 and SipHash-1-3.
"""

import random

import pytest
import siphash24

from sim.reference.siphash import rotl, sip_round, siphash, siphash128, siphash_bytes
from sim.reference.siphash_vectors import KEY, SIP64, SIP128, message


@pytest.mark.parametrize("n", range(64))
def test_reference_vectors_64(n):
    assert siphash_bytes(KEY, message(n)) == SIP64[n]


@pytest.mark.parametrize("n", range(64))
def test_reference_vectors_128(n):
    assert siphash128(KEY, message(n)) == SIP128[n]


def test_paper_example():
    # The SipHash paper, Appendix A: 15-byte message 00..0e under key 00..0f.
    assert siphash(KEY, message(15)) == 0xA129CA6149BE45E5


@pytest.mark.parametrize("c, d, c_impl", [(2, 4, siphash24.siphash24), (1, 3, siphash24.siphash13)])
def test_random_against_c_implementation(c, d, c_impl):
    rng = random.Random(c * 10 + d)
    for length in [*range(101), 12, 36, 12, 36]:
        key = rng.randbytes(16)
        msg = rng.randbytes(length)
        # digest(): the 8 bytes as the reference writes them (intdigest() is signed).
        assert siphash_bytes(key, msg, c, d) == c_impl(msg, key=key).digest(), (length, key, msg)


def test_round_counts_matter():
    # c and d are used: each pair gives a different function.
    key, msg = bytes(range(16)), b"inic" * 3
    results = {siphash(key, msg, c, d) for c in (1, 2, 3) for d in (1, 3, 4)}
    assert len(results) == 9


def test_rotation_and_round_basics():
    assert rotl(1 << 63, 1) == 1
    assert rotl(0x0123456789ABCDEF, 32) == 0x89ABCDEF01234567
    assert sip_round(0, 0, 0, 0) == (0, 0, 0, 0)


def test_bad_arguments():
    with pytest.raises(ValueError, match="16 bytes"):
        siphash(bytes(15), b"")
    with pytest.raises(ValueError, match="at least one round"):
        siphash(KEY, b"", 0, 4)
