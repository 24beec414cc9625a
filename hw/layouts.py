"""Wire formats shared by the gateware, the testbenches and the host driver.

Every format that crosses a block boundary is one :class:`amaranth.lib.data.Struct` defined here and
imported wherever it is used: the gateware builds signals of these shapes, the testbenches and the
host driver pack and unpack integers with :func:`pack` and :func:`unpack`. No format is typed twice.

Structs pack LSB-first. Multi-byte protocol fields (addresses, ports, sequence numbers) are stored
as numbers (network byte order already converted by the gateware), so ``status.sport == 80`` for
HTTP.
"""

from amaranth.lib import data, enum

from . import params

__all__ = [
    "EtherType", "L3Type", "L4Type", "HashType", "RxBeat", "RxErrors", "RxStatus", "RxCounters",
    "pack", "unpack",
]


class EtherType(enum.Enum, shape=16):
    """EtherTypes the receive sequencer recognises (IEEE 802.3 §3.2.6, IEEE 802.1Q §9.5)."""
    IPV4 = 0x0800
    ARP = 0x0806
    VLAN = 0x8100       # C-tag (802.1Q)
    QINQ = 0x88A8       # S-tag (802.1ad)
    IPV6 = 0x86DD


class L3Type(enum.Enum, shape=2):
    """Network layer, from the innermost EtherType."""
    OTHER = 0
    IPV4 = 1
    IPV6 = 2
    ARP = 3


class L4Type(enum.Enum, shape=3):
    """Transport layer, from the IPv4 protocol or the IPv6 next header. NONE for non-IP frames."""
    NONE = 0
    TCP = 1
    UDP = 2
    ICMP = 3
    OTHER = 4


class HashType(enum.Enum, shape=2):
    """Which RSS input the Toeplitz hash was computed over (Microsoft RSS definition)."""
    NONE = 0            # not IP, or no complete IP header: hash is 0
    IP_2TUPLE = 1       # source and destination address
    IP_4TUPLE = 2       # addresses and TCP/UDP ports


class RxBeat(data.Struct):
    """One beat of a MAC frame stream (RX and TX): 8 bytes, byte 0 of the beat in ``data[0:8]``.

    ``keep`` marks the valid bytes of the last beat as a run from bit 0; every other beat is full.
    Frames carry no FCS.
    """
    data: 8 * params.BEAT_BYTES
    keep: params.BEAT_BYTES
    last: 1


class RxErrors(data.Struct):
    """Why a frame is malformed. Any bit set makes ``RxStatus.malformed`` true."""
    runt: 1             # shorter than 14 bytes
    truncated: 1        # a header, or the IP datagram, extends beyond the end of the frame
    bad_version: 1      # IP version nibble does not match the EtherType
    bad_ihl: 1          # IPv4 IHL < 5 (version right)
    bad_ip_len: 1       # IPv4 total length shorter than its header
    bad_l4_len: 1       # L4 header cut off; TCP data offset < 5 or past the IP payload;
                        # UDP length < 8 or past the IP payload
    oversize: 1         # longer than 9216 bytes


class RxStatus(data.Struct):
    """The receive sequencer's summary of one frame (SPEC §3), emitted once per frame, in order.

    Fields that do not apply to a frame read 0; the ``*_valid`` bits say which apply.

    Members
    -------
    length : 17 bits
        Frame length in bytes (saturates at 131071).
    l2_valid : 1 bit
        The Ethernet header and its VLAN tags are complete: ``vlan_*`` and ``ethertype`` apply.
    vlan_count : 2 bits
        VLAN tags (0x8100 / 0x88A8) before the innermost EtherType, at most 2 are parsed.
    vlan0, vlan1 : 12 bits
        VLAN IDs, outer first.
    ethertype : 16 bits
        Innermost EtherType, an :class:`EtherType` value or any other (0x8100 / 0x88A8 when a
        third tag follows two).
    l3, l4 : L3Type, L4Type
        Protocol classification.
    ip_proto : 8 bits
        IPv4 protocol or IPv6 next header.
    addr_valid : 1 bit
        ``src``/``dst`` apply: a complete IP header of the right version.
    l4_valid : 1 bit
        A complete TCP or UDP header was found (not for fragments): ports and TCP fields apply.
    fragment, ip_options : 1 bit
        IPv4 MF/offset or IPv6 fragment header; IPv4 options or IPv6 extension headers.
    ip_csum_valid, ip_csum_ok : 1 bit
        IPv4 header checksum was checked / was right.
    l4_csum_valid, l4_csum_ok : 1 bit
        TCP/UDP checksum (with pseudo-header) was checked / was right.
    errors : RxErrors
        Malformed-frame reasons; ``malformed`` is their OR.
    candidate : 1 bit
        Fast-path candidate, exactly as SPEC §3 defines it.
    hash_type, hash : HashType, 32 bits
        Toeplitz (RSS) hash and the input it covered.
    src, dst : 128 bits
        IP addresses (IPv4 in the low 32 bits).
    sport, dport, seq, ack, window, tcp_flags : TCP/UDP header fields
        ``tcp_flags`` is TCP header byte 13 (bit 0 FIN ... bit 7 CWR).
    payload_len : 16 bits
        TCP/UDP payload bytes, from the IP lengths (Ethernet padding excluded).
    l3_offset, l4_offset, payload_offset : 8 bits
        Byte offsets of the IP header, the TCP/UDP header and the payload in the frame.
    """
    length: 17
    l2_valid: 1
    vlan_count: 2
    vlan0: 12
    vlan1: 12
    ethertype: 16
    l3: L3Type
    l4: L4Type
    ip_proto: 8
    addr_valid: 1
    l4_valid: 1
    fragment: 1
    ip_options: 1
    ip_csum_valid: 1
    ip_csum_ok: 1
    l4_csum_valid: 1
    l4_csum_ok: 1
    errors: RxErrors
    malformed: 1
    candidate: 1
    hash_type: HashType
    hash: 32
    src: 128
    dst: 128
    sport: 16
    dport: 16
    seq: 32
    ack: 32
    window: 16
    tcp_flags: 8
    payload_len: 16
    l3_offset: 8
    l4_offset: 8
    payload_offset: 8


class RxCounters(data.Struct):
    """Receive statistics of the sequencer, 32-bit wrapping counts of finished status words.

    ``frames`` counts every frame; each other counter counts the frames with that property, so
    ``frames`` = the frames the MAC delivered, and no bad frame goes uncounted (SPEC §7).
    """
    frames: 32
    candidates: 32
    malformed: 32
    runt: 32
    truncated: 32
    bad_version: 32
    bad_ihl: 32
    bad_ip_len: 32
    bad_l4_len: 32
    oversize: 32
    ip_csum_bad: 32
    l4_csum_bad: 32
    fragments: 32


def pack(layout, fields):
    """Pack a dict of field values into the integer a signal of ``layout`` holds."""
    return layout.const(fields).as_value().value


def unpack(layout, bits):
    """Unpack an integer into a :class:`amaranth.lib.data.Const` view of ``layout``."""
    return layout.from_bits(bits)
