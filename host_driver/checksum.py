"""The driver's Internet-checksum helpers, after Linux's ``csum_partial`` family.

Ref: RFC 1071 (computation), RFC 9293 §3.1 (TCP pseudo-header, IPv4), RFC 768 (UDP),
RFC 8200 §8.1 (IPv6 pseudo-header); Linux ``include/net/checksum.h`` and
``include/net/ip6_checksum.h``.

As in Linux, a sum is kept unfolded (``csum_partial`` only adds 16-bit words, carries and all)
until ``csum_fold`` folds the carries back in and complements the result. For CHECKSUM_PARTIAL the
stack stores the *uncomplemented* pseudo-header sum in the TCP/UDP checksum field:
``~csum_tcpudp_magic`` (IPv4) or ``~csum_ipv6_magic`` (IPv6) of the addresses, the length and the
protocol; the NIC adds the segment to it and stores the complement. The driver keeps its own copy
of these few lines, as a driver does, rather than borrowing the testbenches' golden model
(``sim/reference/checksum.py``), which its unit test compares it with.
"""

import struct

__all__ = ["csum_partial", "csum_fold", "csum_tcpudp_magic", "csum_ipv6_magic"]


def csum_partial(buf: bytes, total: int = 0) -> int:
    """``total`` plus the big-endian 16-bit words of ``buf`` (an odd last byte padded with 0),
    unfolded."""
    if len(buf) % 2:
        buf = bytes(buf) + b"\0"
    return total + sum(struct.unpack(f"!{len(buf) // 2}H", buf))


def csum_fold(total: int) -> int:
    """Fold an unfolded sum to 16 bits with end-around carries and complement it."""
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def csum_tcpudp_magic(saddr: bytes, daddr: bytes, length: int, proto: int, total: int = 0) -> int:
    """The folded, complemented sum of ``total`` and the IPv4 pseudo-header: the 4-byte addresses,
    a zero byte and the protocol, the TCP/UDP length (RFC 9293 §3.1)."""
    return csum_fold(csum_partial(saddr + daddr, total) + proto + length)


def csum_ipv6_magic(saddr: bytes, daddr: bytes, length: int, proto: int, total: int = 0) -> int:
    """The folded, complemented sum of ``total`` and the IPv6 pseudo-header: the 16-byte addresses,
    the 32-bit upper-layer length, three zero bytes and the next header (RFC 8200 §8.1)."""
    return csum_fold(csum_partial(saddr + daddr, total) + (length >> 16) + (length & 0xFFFF)
                     + proto)
