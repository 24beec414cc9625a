"""Reference model of the receive status word: the JSON row of docs/status_word.md for one frame,
and the whole :class:`~hw.layouts.RxStatus` (:func:`expected_fields`).

The rule book decides structure (which header is complete, which length is consistent) with plain
byte-length checks; the field values of every complete header come from scapy's dissection of that
header's bytes (``IP``, ``IPv6``, ``TCP``, ``UDP``, ``Dot1Q``/``Dot1AD``), the offsets included
(from the tags scapy read, ``IP.ihl``, ``TCP.dataofs``). Checksums and the hash come from the other
reference models. Any byte string gives a row; nothing raises.
"""

import ipaddress
from dataclasses import dataclass

from amaranth.lib import data
from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.inet6 import IPv6
from scapy.layers.l2 import Dot1AD, Dot1Q

from hw.layouts import (
    ETH_HEADER_BYTES,
    IPV4_MIN_HEADER_BYTES,
    IPV6_EXTENSION_HEADERS,
    IPV6_FRAGMENT_HEADER,
    IPV6_HEADER_BYTES,
    TCP_MIN_HEADER_BYTES,
    UDP_HEADER_BYTES,
    VLAN_TAG_BYTES,
    EtherType,
    HashType,
    IpProto,
    L3Type,
    L4Type,
    RxErrors,
    TcpFlags,
)
from hw.params import MAX_FRAME_BYTES, MIN_FRAME_BYTES, MS_RSS_KEY

from .checksum import ipv4_header_ok, l4_checksum_ok
from .toeplitz import toeplitz_hash

__all__ = ["JSON_KEYS", "ERROR_NAMES", "TCP_FLAG_LETTERS", "expected_status", "expected_errors",
           "expected_fields"]

#: Keys of a status row, in order (docs/status_word.md "JSON keys"); ``synthetic_l2`` is the
#: caller's to add.
JSON_KEYS = (
    "frame", "len", "vlan", "ethertype", "l3", "l4", "ip_csum_ok", "l4_csum_ok", "fragment",
    "ip_options", "malformed", "src", "dst", "sport", "dport", "tcp_flags", "seq", "ack", "window",
    "payload_len", "hash", "candidate",
)

VLAN_TAGS = {EtherType.VLAN.value: Dot1Q, EtherType.QINQ.value: Dot1AD}
MAX_VLAN_TAGS = 2
L3_BY_ETHERTYPE = {EtherType.IPV4.value: "ipv4", EtherType.IPV6.value: "ipv6",
                   EtherType.ARP.value: "arp"}
L4_BY_IPV4_PROTOCOL = {IpProto.TCP.value: "tcp", IpProto.UDP.value: "udp",
                       IpProto.ICMP.value: "icmp"}
L4_BY_IPV6_NEXT_HEADER = {IpProto.TCP.value: "tcp", IpProto.UDP.value: "udp",
                          IpProto.ICMPV6.value: "icmp"}
#: ``tcp_flags`` in a row: a letter per bit set, the flag's initial, bit 0 (FIN) first.
TCP_FLAG_LETTERS = "".join(flag.name[0] for flag in TcpFlags)
#: Malformed-frame reasons, named as the fields of :class:`hw.layouts.RxErrors`.
ERROR_NAMES = (
    "runt", "truncated", "bad_version", "bad_ihl", "bad_ip_len", "bad_l4_len", "oversize",
)
assert tuple(data.Layout.cast(RxErrors).members) == ERROR_NAMES


@dataclass
class _IpHeader:
    """What an IP header with reported addresses tells the transport layer."""
    src: ipaddress.IPv4Address | ipaddress.IPv6Address
    dst: ipaddress.IPv4Address | ipaddress.IPv6Address
    protocol: int
    l4: str
    fragment: bool
    options: bool
    csum_ok: bool | None
    l4_offset: int
    ip_end: int


def expected_status(frame: bytes, index: int = 0, key: bytes = MS_RSS_KEY) -> dict:
    """The status row (keys :data:`JSON_KEYS`) the receive sequencer must report for ``frame``.

    ``index`` is the frame's position in the stream, ``key`` the RSS key the hash is computed under.
    """
    return _evaluate(bytes(frame), index, key)[0]


def expected_errors(frame: bytes) -> frozenset[str]:
    """The malformed-frame reasons (names from :data:`ERROR_NAMES`) the sequencer must flag."""
    return frozenset(_evaluate(bytes(frame), 0, MS_RSS_KEY)[1])


def expected_fields(frame: bytes, key: bytes = MS_RSS_KEY) -> dict:
    """Every :class:`~hw.layouts.RxStatus` field the receive sequencer must report for ``frame``,
    as a dict of ints for :func:`hw.layouts.pack` (``errors`` a dict of its bits); fields not in
    the dict are 0.

    Fields that do not apply read 0 (the RxStatus docstring): ``vlan*``, ``ethertype`` and
    ``l3_offset`` need ``l2_valid`` (docs/status_word.md defines ``l3_offset`` with layer 2);
    ``ip_proto``, ``l4``, ``fragment``, ``ip_options``, ``src``, ``dst``, ``l4_offset`` need
    ``addr_valid``; ports, TCP fields and ``payload_offset`` need ``l4_valid``; ``payload_len``
    needs ``l4_valid`` and no bad_l4_len; ``ip_csum_ok``/``l4_csum_ok`` their ``*_valid``.
    :func:`sim.status_json.status_to_json` of the packed value gives :func:`expected_status`'s
    row back.
    """
    frame = bytes(frame)
    row, errors, extra = _evaluate(frame, 0, key)
    f = {"length": min(len(frame), (1 << 17) - 1)}
    if row["ethertype"] is not None:
        vlans = row["vlan"]
        f.update(l2_valid=1, vlan_count=len(vlans), ethertype=row["ethertype"],
                 l3_offset=extra["l3_offset"])
        f.update({f"vlan{n}": vid for n, vid in enumerate(vlans)})
    f["l3"] = L3Type[row["l3"].upper()].value
    if row["src"] is not None:
        f.update(addr_valid=1, l4=L4Type[row["l4"].upper()].value, ip_proto=extra["ip_proto"],
                 fragment=int(row["fragment"]), ip_options=int(row["ip_options"]),
                 src=int(ipaddress.ip_address(row["src"])),
                 dst=int(ipaddress.ip_address(row["dst"])),
                 l4_offset=extra["l4_offset"], hash_type=HashType.IP_2TUPLE.value)
    if row["sport"] is not None:
        f.update(l4_valid=1, sport=row["sport"], dport=row["dport"],
                 payload_offset=extra["payload_offset"],
                 hash_type=HashType.IP_4TUPLE.value)
        if row["l4"] == "tcp":
            f.update(seq=row["seq"], ack=row["ack"], window=row["window"],
                     tcp_flags=sum(1 << TCP_FLAG_LETTERS.index(c) for c in row["tcp_flags"]))
        f["payload_len"] = row["payload_len"] or 0
    if row["ip_csum_ok"] is not None:
        f.update(ip_csum_valid=1, ip_csum_ok=int(row["ip_csum_ok"]))
    if row["l4_csum_ok"] is not None:
        f.update(l4_csum_valid=1, l4_csum_ok=int(row["l4_csum_ok"]))
    f["errors"] = {name: int(name in errors) for name in ERROR_NAMES}
    f.update(malformed=int(row["malformed"]), candidate=int(row["candidate"]),
             hash=int(row["hash"], 16))
    return f


def _evaluate(frame, index, key):
    """``(status row, set of error names, extra)`` for ``frame``; ``extra`` has the offsets and
    ``ip_proto`` where they apply."""
    row = dict.fromkeys(JSON_KEYS)
    row.update(frame=index, len=len(frame), l3="other", candidate=False)
    errors = set()
    extra = {}
    if len(frame) > MAX_FRAME_BYTES:
        errors.add("oversize")

    ip = None
    if len(frame) < MIN_FRAME_BYTES:
        errors.add("runt")
    elif (l2 := _ethernet(frame)) is None:
        errors.add("truncated")
    else:
        row["vlan"], row["ethertype"], l3_offset = l2
        extra["l3_offset"] = l3_offset
        row["l3"] = L3_BY_ETHERTYPE.get(row["ethertype"], "other")
        if row["l3"] == "ipv4":
            ip = _ipv4(frame, l3_offset, errors)
        elif row["l3"] == "ipv6":
            ip = _ipv6(frame, l3_offset, errors)

    hash_input = b""
    l4_valid = False
    if ip is not None:
        row.update(l4=ip.l4, ip_csum_ok=ip.csum_ok, fragment=ip.fragment, ip_options=ip.options,
                   src=str(ip.src), dst=str(ip.dst))
        extra.update(ip_proto=ip.protocol, l4_offset=ip.l4_offset)
        hash_input = ip.src.packed + ip.dst.packed
        if ip.l4 in ("tcp", "udp") and not ip.fragment:
            l4_valid = _transport(frame, ip, row, errors, extra)
            if l4_valid:
                hash_input += row["sport"].to_bytes(2, "big") + row["dport"].to_bytes(2, "big")
    row["hash"] = f"{toeplitz_hash(key, hash_input):08x}"
    row["malformed"] = bool(errors)
    if l4_valid and not errors:
        row["l4_csum_ok"] = _l4_checksum(frame, ip)
    row["candidate"] = (row["l4"] == "tcp" and not row["malformed"] and not row["fragment"]
                        and not row["ip_options"]
                        and (row["l3"] == "ipv6" or row["ip_csum_ok"] is True)
                        and row["l4_csum_ok"] is True)
    return row, errors, extra


def _ethernet(frame):
    """``(VLAN IDs, innermost EtherType, l3_offset)``, None when a tag or EtherType is cut off."""
    # The EtherType is read as bytes: scapy's Ether turns values <= 1500 into an 802.3 length.
    ethertype = int.from_bytes(frame[ETH_HEADER_BYTES - 2:ETH_HEADER_BYTES], "big")
    vlans = []
    offset = ETH_HEADER_BYTES
    while ethertype in VLAN_TAGS and len(vlans) < MAX_VLAN_TAGS:
        if len(frame) < offset + VLAN_TAG_BYTES:
            return None
        tag = VLAN_TAGS[ethertype](frame[offset:offset + VLAN_TAG_BYTES])
        vlans.append(tag.vlan)
        ethertype = tag.type
        offset += VLAN_TAG_BYTES
    return vlans, ethertype, offset


def _ipv4(frame, l3_offset, errors):
    """The IPv4 header at ``l3_offset`` if its addresses are reported, else None; adds errors."""
    if len(frame) < l3_offset + IPV4_MIN_HEADER_BYTES:
        errors.add("truncated")
        return None
    hdr = IP(frame[l3_offset:l3_offset + IPV4_MIN_HEADER_BYTES])
    if hdr.version != 4:
        errors.add("bad_version")
        return None
    if hdr.ihl < 5:
        errors.add("bad_ihl")
        return None
    l4_offset = l3_offset + 4 * hdr.ihl
    csum_ok = None
    if l4_offset > len(frame):
        errors.add("truncated")
    else:
        csum_ok = ipv4_header_ok(frame[l3_offset:l4_offset])
    if hdr.len < 4 * hdr.ihl:
        errors.add("bad_ip_len")
    if l3_offset + hdr.len > len(frame):
        errors.add("truncated")
    return _IpHeader(
        src=ipaddress.IPv4Address(hdr.src), dst=ipaddress.IPv4Address(hdr.dst),
        protocol=hdr.proto, l4=L4_BY_IPV4_PROTOCOL.get(hdr.proto, "other"),
        fragment=bool(hdr.flags.MF) or hdr.frag != 0, options=hdr.ihl > 5, csum_ok=csum_ok,
        l4_offset=l4_offset, ip_end=l3_offset + hdr.len,
    )


def _ipv6(frame, l3_offset, errors):
    """The IPv6 header at ``l3_offset`` if its addresses are reported, else None; adds errors."""
    if len(frame) < l3_offset + IPV6_HEADER_BYTES:
        errors.add("truncated")
        return None
    hdr = IPv6(frame[l3_offset:l3_offset + IPV6_HEADER_BYTES])
    if hdr.version != 6:
        errors.add("bad_version")
        return None
    ip_end = l3_offset + IPV6_HEADER_BYTES + hdr.plen
    if ip_end > len(frame):
        errors.add("truncated")
    extension = hdr.nh in IPV6_EXTENSION_HEADERS
    return _IpHeader(
        src=ipaddress.IPv6Address(hdr.src), dst=ipaddress.IPv6Address(hdr.dst),
        protocol=hdr.nh, l4="other" if extension else L4_BY_IPV6_NEXT_HEADER.get(hdr.nh, "other"),
        fragment=hdr.nh == IPV6_FRAGMENT_HEADER, options=extension, csum_ok=None,
        l4_offset=l3_offset + IPV6_HEADER_BYTES, ip_end=ip_end,
    )


def _transport(frame, ip, row, errors, extra):
    """Fill the TCP/UDP fields of ``row`` and ``extra["payload_offset"]``; True when the header is
    present (``l4_valid``)."""
    header_bytes = TCP_MIN_HEADER_BYTES if ip.l4 == "tcp" else UDP_HEADER_BYTES
    start = ip.l4_offset
    if start + header_bytes > min(len(frame), ip.ip_end):
        errors.add("bad_l4_len")
        return False
    l4_length = ip.ip_end - start
    if ip.l4 == "tcp":
        tcp = TCP(frame[start:start + TCP_MIN_HEADER_BYTES])
        flags = int(tcp.flags) & 0xFF
        row.update(sport=tcp.sport, dport=tcp.dport, seq=tcp.seq, ack=tcp.ack, window=tcp.window,
                   tcp_flags="".join(letter for bit, letter in enumerate(TCP_FLAG_LETTERS)
                                     if flags >> bit & 1))
        header_bytes = 4 * tcp.dataofs
        length_ok = tcp.dataofs >= 5 and header_bytes <= l4_length
    else:
        udp = UDP(frame[start:start + UDP_HEADER_BYTES])
        row.update(sport=udp.sport, dport=udp.dport)
        length_ok = UDP_HEADER_BYTES <= udp.len <= l4_length
    extra["payload_offset"] = start + header_bytes
    if length_ok:
        row["payload_len"] = l4_length - header_bytes
    else:
        errors.add("bad_l4_len")
    return True


def _l4_checksum(frame, ip):
    """Checksum verdict of a well-formed TCP/UDP segment: True, False, or None (IPv4 UDP with
    checksum 0: none sent)."""
    segment = frame[ip.l4_offset:ip.ip_end]
    if ip.l4 == "udp" and UDP(segment[:UDP_HEADER_BYTES]).chksum == 0:
        return None if ip.src.version == 4 else False
    return l4_checksum_ok(ip.src.packed, ip.dst.packed, ip.protocol, segment)
