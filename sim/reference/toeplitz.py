"""Microsoft RSS Toeplitz hash, bit by bit, as a golden model for the receive sequencer.

Ref: Microsoft NDIS docs, "RSS hashing functions" and "Verifying the RSS Hash Calculation".

For every input bit that is set, MSB of the first byte first, the 32 key bits starting at that bit's
position are XORed into the result. The key must be at least 4 bytes longer than the input.
"""

import ipaddress

from hw.params import MS_RSS_KEY

__all__ = ["MS_RSS_KEY", "toeplitz_hash", "rss_input"]


def toeplitz_hash(key: bytes, data: bytes) -> int:
    """Return the 32-bit Toeplitz hash of ``data`` under ``key`` (e.g. :data:`MS_RSS_KEY`)."""
    if len(key) < len(data) + 4:
        raise ValueError(f"a {len(key)}-byte key hashes at most {len(key) - 4} bytes of input, "
                         f"got {len(data)}")
    key_bits = int.from_bytes(key, "big")
    key_width = 8 * len(key)
    result = 0
    for bit in range(8 * len(data)):
        if data[bit // 8] >> (7 - bit % 8) & 1:
            result ^= key_bits >> (key_width - 32 - bit) & 0xFFFF_FFFF
    return result


def rss_input(src: str | bytes, dst: str | bytes, sport: int | None = None,
              dport: int | None = None) -> bytes:
    """Return the RSS hash input ``src ‖ dst [‖ sport ‖ dport]``, all in network byte order.

    Addresses are IPv4 or IPv6 text or packed bytes (both of the same version); ports are given
    together or not at all.
    """
    src_bytes, dst_bytes = _packed(src), _packed(dst)
    if len(src_bytes) != len(dst_bytes):
        raise ValueError("source and destination addresses are of different IP versions")
    if (sport is None) != (dport is None):
        raise ValueError("give both ports or neither")
    ports = b"" if sport is None else sport.to_bytes(2, "big") + dport.to_bytes(2, "big")
    return src_bytes + dst_bytes + ports


def _packed(address: str | bytes) -> bytes:
    """Packed form of an IPv4 or IPv6 address given as text or as 4 / 16 bytes."""
    return ipaddress.ip_address(address).packed
