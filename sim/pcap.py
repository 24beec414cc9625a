"""Capture files for ``inic replay``: read pcap/pcapng, write Ethernet pcap.

Ref: tcpdump.org LINKTYPE list (1 Ethernet; 101 raw IP, 228 raw IPv4, 229 raw IPv6; 0 BSD
loopback (DLT_NULL), 108 OpenBSD loopback (DLT_LOOP); 113 Linux SLL, 276 Linux SLL2); DLT_RAW is
12 on most systems and 14 on OpenBSD, and those values are read as raw IP too.

The sequencer takes Ethernet II frames. Frames of raw-IP, loopback and Linux-cooked captures get a
synthetic Ethernet II header: fixed locally administered MACs and the EtherType from the IP version
(101/12/14), from the link type (228, 229), from the loopback header's address family, or from the
SLL protocol field.

A loopback record starts with a 4-byte address family: in network byte order for DLT_LOOP, in the
capturing host's byte order for DLT_NULL. The capturing host is not always the one that wrote the
file header, so the DLT_NULL order is read from the value itself: every address family is below
0x10000, so a value above that read little-endian is big-endian (as Wireshark and tcpdump do).
"""

from pathlib import Path

from scapy.error import Scapy_Exception
from scapy.utils import RawPcapReader, RawPcapWriter

from hw.layouts import EtherType

__all__ = ["CaptureError", "SYNTHETIC_DST_MAC", "SYNTHETIC_SRC_MAC", "read_capture",
           "write_capture"]

LINKTYPE_ETHERNET = 1
LINKTYPES_RAW_IP = frozenset({101, 12, 14})
LINKTYPE_IPV4 = 228
LINKTYPE_IPV6 = 229
LINKTYPE_NULL = 0               # BSD loopback, address family in the capturing host's byte order
LINKTYPE_LOOP = 108             # OpenBSD loopback, address family in network byte order
LOOPBACK_HEADER_BYTES = 4
#: EtherType of each loopback address family: AF_INET, and AF_INET6 as the BSDs number it
#: (24 NetBSD/OpenBSD, 28 FreeBSD, 30 macOS).
LOOPBACK_ETHERTYPES = {2: 0x0800, 24: 0x86DD, 28: 0x86DD, 30: 0x86DD}
LINKTYPE_LINUX_SLL = 113
LINKTYPE_LINUX_SLL2 = 276
SLL_HEADER_BYTES = 16           # protocol at bytes 14-15
SLL2_HEADER_BYTES = 20          # protocol at bytes 0-1
SYNTHETIC_DST_MAC = bytes.fromhex("020000000002")
SYNTHETIC_SRC_MAC = bytes.fromhex("020000000001")
SUPPORTED = ("1 Ethernet, 101/12/14 raw IP, 228 raw IPv4, 229 raw IPv6, 0 BSD loopback, "
             "108 OpenBSD loopback, 113 Linux SLL, 276 Linux SLL2")
LINKTYPES = frozenset({LINKTYPE_ETHERNET, *LINKTYPES_RAW_IP, LINKTYPE_IPV4, LINKTYPE_IPV6,
                       LINKTYPE_NULL, LINKTYPE_LOOP, LINKTYPE_LINUX_SLL, LINKTYPE_LINUX_SLL2})
#: Timestamp of the first frame :func:`write_capture` writes (2024-01-01T00:00:00Z).
FIRST_TIMESTAMP = 1_704_067_200


class CaptureError(Exception):
    """A capture file that cannot be replayed; the message is one line for the user."""


def read_capture(path) -> tuple[list[bytes], bool]:
    """Frames of a pcap or pcapng file as Ethernet II bytes, and whether L2 was synthesized (any
    frame of a raw-IP, loopback or Linux-cooked link type). Raises :class:`CaptureError`."""
    path = Path(path)
    if not path.exists():
        raise CaptureError(f"{path}: no such file")
    if not path.is_file():
        raise CaptureError(f"{path}: not a file")
    if path.stat().st_size == 0:
        raise CaptureError(f"{path}: empty file, not a capture")
    try:
        with open(path, "rb") as stream:    # scapy gets an open file: closed even if it rejects it
            return _read_records(path, stream)
    except OSError as error:
        raise CaptureError(f"{path}: cannot read ({error.strerror})") from None


def _read_records(path, stream):
    """``(frames, synthetic)`` from the capture open as ``stream``."""
    try:
        reader = RawPcapReader(stream)
    except Scapy_Exception:
        raise CaptureError(f"{path}: not a pcap or pcapng capture") from None
    frames = []
    synthetic = False
    # A pcap file has one link type; pcapng has one per interface, given with each record.
    file_linktype = getattr(reader, "linktype", None)
    if file_linktype is not None:
        _check_linktype(path, file_linktype)
    for number, (data, meta) in enumerate(reader, start=1):
        if getattr(meta, "caplen", len(data)) > len(data):
            raise CaptureError(f"{path}: record {number} is cut short (file ends inside it)")
        linktype = getattr(meta, "linktype", file_linktype)
        _check_linktype(path, linktype)
        frames.append(_as_ethernet(path, number, data, linktype))
        synthetic |= linktype != LINKTYPE_ETHERNET
    return frames, synthetic


def _check_linktype(path, linktype):
    if linktype not in LINKTYPES:
        raise CaptureError(f"{path}: unsupported link type {linktype} (supported: {SUPPORTED})")


def _as_ethernet(path, number, data, linktype):
    """Record ``number`` (from 1) of link type ``linktype`` as an Ethernet II frame."""
    if linktype == LINKTYPE_ETHERNET:
        return data
    if linktype in LINKTYPES_RAW_IP:
        version = data[0] >> 4 if data else 0
        ethertype = (EtherType.IPV6 if version == 6 else EtherType.IPV4).value
        return _synthetic_header(ethertype) + data
    if linktype in (LINKTYPE_IPV4, LINKTYPE_IPV6):
        return _synthetic_header(0x0800 if linktype == LINKTYPE_IPV4 else 0x86DD) + data
    if linktype in (LINKTYPE_NULL, LINKTYPE_LOOP):
        return _loopback_as_ethernet(path, number, data, linktype)
    header_bytes = SLL_HEADER_BYTES if linktype == LINKTYPE_LINUX_SLL else SLL2_HEADER_BYTES
    if len(data) < header_bytes:
        raise CaptureError(f"{path}: record {number} is shorter than its {header_bytes}-byte "
                           "Linux cooked header")
    protocol = data[14:16] if linktype == LINKTYPE_LINUX_SLL else data[0:2]
    return _synthetic_header(int.from_bytes(protocol, "big")) + data[header_bytes:]


def _loopback_as_ethernet(path, number, data, linktype):
    """Record ``number`` of a BSD (``LINKTYPE_NULL``) or OpenBSD (``LINKTYPE_LOOP``) loopback
    capture as an Ethernet II frame, the EtherType from its address family."""
    if len(data) < LOOPBACK_HEADER_BYTES:
        raise CaptureError(f"{path}: record {number} is shorter than its "
                           f"{LOOPBACK_HEADER_BYTES}-byte loopback header")
    family = int.from_bytes(data[:LOOPBACK_HEADER_BYTES], "big")
    if linktype == LINKTYPE_NULL:
        little = int.from_bytes(data[:LOOPBACK_HEADER_BYTES], "little")
        if little <= 0xFFFF:
            family = little
    if family not in LOOPBACK_ETHERTYPES:
        raise CaptureError(f"{path}: record {number} has loopback address family {family} "
                           "(known: 2 IPv4; 24, 28, 30 IPv6)")
    return _synthetic_header(LOOPBACK_ETHERTYPES[family]) + data[LOOPBACK_HEADER_BYTES:]


def _synthetic_header(ethertype):
    return SYNTHETIC_DST_MAC + SYNTHETIC_SRC_MAC + ethertype.to_bytes(2, "big")


def write_capture(path, frames, linktype=LINKTYPE_ETHERNET) -> None:
    """Write ``frames`` (Ethernet, or records of another ``linktype``) as a little-endian pcap
    file, 1 ms apart from a fixed timestamp (the same frames always give the same file)."""
    with RawPcapWriter(str(path), linktype=linktype, endianness="<") as writer:
        writer.linktype = linktype      # scapy takes a link type of 0 (DLT_NULL) for "not given"
        writer.write_header(None)
        for index, frame in enumerate(frames):
            writer.write_packet(bytes(frame), sec=FIRST_TIMESTAMP + index // 1000,
                                usec=index % 1000 * 1000)
