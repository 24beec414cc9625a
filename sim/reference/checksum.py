"""Internet checksums (ones' complement sums of 16-bit words) as a golden model.

Ref: RFC 1071 (computation), RFC 791 §3.1 (IPv4 header), RFC 9293 §3.1 (TCP pseudo-header),
RFC 768 (UDP), RFC 8200 §8.1 (IPv6 pseudo-header).

A received header or segment is correct when the ones' complement sum over it, checksum field
included (and the pseudo-header for TCP/UDP), is 0xFFFF.
"""

__all__ = ["ones_complement_sum", "ipv4_header_ok", "pseudo_header", "l4_checksum_ok"]


def ones_complement_sum(data: bytes) -> int:
    """16-bit ones' complement sum of ``data`` in big-endian words, odd length padded with 0."""
    if len(data) % 2:
        data += b"\x00"
    total = sum(int.from_bytes(data[i:i + 2], "big") for i in range(0, len(data), 2))
    while total > 0xFFFF:
        total = (total & 0xFFFF) + (total >> 16)
    return total


def ipv4_header_ok(hdr: bytes) -> bool:
    """True when the IPv4 header ``hdr`` (all 4·IHL bytes, nothing more) has a correct checksum."""
    return ones_complement_sum(hdr) == 0xFFFF


def pseudo_header(src: bytes, dst: bytes, proto: int, length: int) -> bytes:
    """TCP/UDP pseudo-header: IPv4 (RFC 9293 §3.1) for 4-byte addresses, IPv6 (RFC 8200 §8.1)
    for 16-byte ones.

    ``proto`` is the IPv4 protocol / IPv6 upper-layer next header, ``length`` the TCP/UDP length.
    """
    if len(src) == len(dst) == 4:
        return src + dst + bytes([0, proto]) + length.to_bytes(2, "big")
    if len(src) == len(dst) == 16:
        return src + dst + length.to_bytes(4, "big") + bytes([0, 0, 0, proto])
    raise ValueError("addresses must both be 4 bytes (IPv4) or both 16 bytes (IPv6)")


def l4_checksum_ok(src: bytes, dst: bytes, proto: int, segment: bytes) -> bool:
    """True when the TCP/UDP ``segment`` (header and payload) checks out with its pseudo-header."""
    return ones_complement_sum(pseudo_header(src, dst, proto, len(segment)) + segment) == 0xFFFF
