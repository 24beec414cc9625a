"""SipHash-c-d in plain Python, as the golden model of the SipHash core (hw/lib/siphash.py).

Ref: J.-P. Aumasson, D. J. Bernstein, "SipHash: a fast short-input PRF" (INDOCRYPT 2012), §2;
the reference implementation https://github.com/veorq/SipHash (siphash.c, for the 128-bit output).

The state is four 64-bit words initialised from the 128-bit key ``k0 ‖ k1`` (each half read
little-endian from the key bytes). The message is cut into 64-bit little-endian words; the last word
holds the ``len % 8`` remaining bytes and, in its top byte, the message length mod 256. Each word
``m`` is compressed by ``v3 ^= m``, ``c`` SipRounds, ``v0 ^= m``; finalisation is ``v2 ^= 0xff``
and ``d`` SipRounds, and the hash is ``v0 ^ v1 ^ v2 ^ v3``. SipHash-2-4 is the PRF the paper
recommends; SipHash-1-3 is the faster variant (Linux's hsiphash on 64-bit, Rust's std).
"""

__all__ = [
    "MASK64", "INIT", "rotl", "sip_round", "initial_state", "message_words", "siphash",
    "siphash_bytes", "siphash128",
]

MASK64 = (1 << 64) - 1
#: ``v0..v3`` before the key is mixed in: "somepseudorandomlygeneratedbytes" in ASCII.
INIT = (0x736F6D6570736575, 0x646F72616E646F6D, 0x6C7967656E657261, 0x7465646279746573)


def rotl(x, bits):
    """Rotate the 64-bit word ``x`` left by ``bits``."""
    return ((x << bits) | (x >> (64 - bits))) & MASK64


def sip_round(v0, v1, v2, v3):
    """One SipRound: four additions, six rotations, four XORs; returns the new ``(v0..v3)``."""
    v0 = (v0 + v1) & MASK64
    v2 = (v2 + v3) & MASK64
    v1 = rotl(v1, 13) ^ v0
    v3 = rotl(v3, 16) ^ v2
    v0 = rotl(v0, 32)
    v2 = (v2 + v1) & MASK64
    v0 = (v0 + v3) & MASK64
    v1 = rotl(v1, 17) ^ v2
    v3 = rotl(v3, 21) ^ v0
    v2 = rotl(v2, 32)
    return v0, v1, v2, v3


def initial_state(key: bytes, *, out128=False):
    """``(v0..v3)`` for a 16-byte key (the 128-bit-output variant also flips ``v1 ^= 0xee``)."""
    if len(key) != 16:
        raise ValueError(f"a SipHash key is 16 bytes, got {len(key)}")
    k0 = int.from_bytes(key[:8], "little")
    k1 = int.from_bytes(key[8:], "little")
    return (INIT[0] ^ k0, INIT[1] ^ k1 ^ (0xEE if out128 else 0), INIT[2] ^ k0, INIT[3] ^ k1)


def message_words(message: bytes):
    """The 64-bit words SipHash compresses: ``len // 8 + 1`` of them, the last one padded."""
    full = len(message) // 8 * 8
    words = [int.from_bytes(message[i:i + 8], "little") for i in range(0, full, 8)]
    tail = int.from_bytes(message[full:], "little")
    words.append(tail | (len(message) & 0xFF) << 56)
    return words


def _compress(state, message, c):
    v0, v1, v2, v3 = state
    for m in message_words(message):
        v3 ^= m
        for _ in range(c):
            v0, v1, v2, v3 = sip_round(v0, v1, v2, v3)
        v0 ^= m
    return v0, v1, v2, v3


def siphash(key: bytes, message: bytes, c=2, d=4) -> int:
    """SipHash-c-d of ``message`` under the 16-byte ``key``: the 64-bit result as an integer
    (the reference implementation's 8 output bytes read little-endian)."""
    if c < 1 or d < 1:
        raise ValueError(f"SipHash needs at least one round of each kind, got c={c}, d={d}")
    v0, v1, v2, v3 = _compress(initial_state(key), message, c)
    v2 ^= 0xFF
    for _ in range(d):
        v0, v1, v2, v3 = sip_round(v0, v1, v2, v3)
    return v0 ^ v1 ^ v2 ^ v3


def siphash_bytes(key: bytes, message: bytes, c=2, d=4) -> bytes:
    """:func:`siphash` as the reference implementation's 8 output bytes."""
    return siphash(key, message, c, d).to_bytes(8, "little")


def siphash128(key: bytes, message: bytes, c=2, d=4) -> bytes:
    """The 128-bit-output variant (reference ``siphash.c`` with ``outlen == 16``): 16 bytes."""
    if c < 1 or d < 1:
        raise ValueError(f"SipHash needs at least one round of each kind, got c={c}, d={d}")
    v0, v1, v2, v3 = _compress(initial_state(key, out128=True), message, c)
    v2 ^= 0xEE
    for _ in range(d):
        v0, v1, v2, v3 = sip_round(v0, v1, v2, v3)
    first = v0 ^ v1 ^ v2 ^ v3
    v1 ^= 0xDD
    for _ in range(d):
        v0, v1, v2, v3 = sip_round(v0, v1, v2, v3)
    second = v0 ^ v1 ^ v2 ^ v3
    return first.to_bytes(8, "little") + second.to_bytes(8, "little")
