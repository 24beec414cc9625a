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
    "EtherType", "IpProto", "TcpFlags", "L3Type", "L4Type", "HashType",
    "RxBeat", "RxErrors", "RxStatus", "RxCounters",
    "RingId", "CommandOpcode", "EventKind", "EventCode",
    "RxDescriptor", "TxDescriptor", "Command", "Event", "HostCounters", "HostCounterPulses",
    "RegisterError", "TxPatch", "TxBufferedFrame",
    "RingEntry", "RxSummary", "RX_SUMMARY_BYTES", "RxTcpFields", "RxStagedFrame",
    "DispatchedFrame",
    "FlushReason", "ConnArg", "RcvMdlEntry", "ConnState", "CcbTupleHost", "CcbRoute", "CcbTcp",
    "CcbTransfer", "CcbStats", "Ccb", "CCB_VERSION", "CCB_BYTES", "CCB_TUPLE_BYTES",
    "MAX_WSCALE", "MAX_RCV_MSS", "RCVMDL_ENDED_BY_PSH",
    "RxJobKind", "RxJob", "AckRequest", "FastPathCounters",
    "pack", "unpack",
    "ETH_HEADER_BYTES", "VLAN_TAG_BYTES",
    "IPV4_MIN_HEADER_BYTES", "IPV4_TOTAL_LENGTH_OFFSET", "IPV4_FLAGS_FRAGMENT_OFFSET",
    "IPV4_PROTOCOL_OFFSET", "IPV4_CHECKSUM_OFFSET", "IPV4_SRC_OFFSET", "IPV4_DST_OFFSET",
    "IPV6_HEADER_BYTES", "IPV6_PAYLOAD_LENGTH_OFFSET", "IPV6_NEXT_HEADER_OFFSET",
    "IPV6_SRC_OFFSET", "IPV6_DST_OFFSET", "IPV6_EXTENSION_HEADERS", "IPV6_FRAGMENT_HEADER",
    "TCP_MIN_HEADER_BYTES", "UDP_HEADER_BYTES", "L4_CHECKSUM_OFFSET",
]


class EtherType(enum.Enum, shape=16):
    """EtherTypes the receive sequencer recognises (IEEE 802.3 §3.2.6, IEEE 802.1Q §9.5)."""
    IPV4 = 0x0800
    ARP = 0x0806
    VLAN = 0x8100       # C-tag (802.1Q)
    QINQ = 0x88A8       # S-tag (802.1ad)
    IPV6 = 0x86DD


class IpProto(enum.Enum, shape=8):
    """IPv4 protocol / IPv6 next-header numbers the NIC tells apart (IANA "Assigned Internet
    Protocol Numbers")."""
    ICMP = 1
    TCP = 6
    UDP = 17
    ICMPV6 = 58


class TcpFlags(enum.IntFlag, shape=8):
    """TCP control bits, TCP header byte 13, as ``RxStatus.tcp_flags`` holds them (RFC 9293 §3.1;
    ECE and CWR: RFC 3168 §6.1)."""
    FIN = 0x01
    SYN = 0x02
    RST = 0x04
    PSH = 0x08
    ACK = 0x10
    URG = 0x20
    ECE = 0x40
    CWR = 0x80


# --- Protocol headers: sizes, and byte offsets of fields more than one part reads ---------------
# Ref: IEEE 802.3 §3.2 (Ethernet II), IEEE 802.1Q §9 (VLAN tag), RFC 791 §3.1 (IPv4), RFC 8200 §3
# and §4 (IPv6, extension headers), RFC 9293 §3.1 (TCP), RFC 768 (UDP). Offsets count from the
# header's first byte.

#: Destination and source addresses, then the EtherType (its last two bytes).
ETH_HEADER_BYTES = 14
#: A VLAN tag: TCI, then the next EtherType; the tag's own EtherType (TPID) is the one before it.
VLAN_TAG_BYTES = 4
IPV4_MIN_HEADER_BYTES = 20
IPV4_TOTAL_LENGTH_OFFSET = 2
#: Flags (bits 15:13) and fragment offset (bits 12:0).
IPV4_FLAGS_FRAGMENT_OFFSET = 6
IPV4_PROTOCOL_OFFSET = 9
IPV4_CHECKSUM_OFFSET = 10
IPV4_SRC_OFFSET = 12
IPV4_DST_OFFSET = 16
IPV6_HEADER_BYTES = 40
IPV6_PAYLOAD_LENGTH_OFFSET = 4
IPV6_NEXT_HEADER_OFFSET = 6
IPV6_SRC_OFFSET = 8
IPV6_DST_OFFSET = 24
#: IPv6 next-header values that are extension headers (IANA "IPv6 Extension Header Types"); the
#: NIC flags them, it does not walk them.
IPV6_EXTENSION_HEADERS = (0, 43, 44, 50, 51, 60, 135, 139, 140, 253, 254)
IPV6_FRAGMENT_HEADER = 44
TCP_MIN_HEADER_BYTES = 20
UDP_HEADER_BYTES = 8
#: The checksum field in the TCP and UDP headers.
L4_CHECKSUM_OFFSET = {IpProto.TCP: 16, IpProto.UDP: 6}


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


# --- Host interface (docs/host_interface.md) -----------------------------------------------------
#
# Every ring entry is 16 bytes (two beats of the 64-bit DMA bus), little-endian in host memory: the
# struct's bit 0 is bit 0 of the entry's first byte, as a little-endian host reads it. Numeric
# fields whose values come from an enum below are plain unsigned fields, so that a reader of host
# memory can see (and reject) a value the enum does not name.


class RingId(enum.Enum, shape=8):
    """The four rings in host memory; the number is the ring's index in the register map."""
    COMMAND = 0         # host -> NIC: commands
    EVENT = 1           # NIC -> host: completions and errors
    RX = 2              # host -> NIC: empty slow-path receive buffers
    TX = 3              # host -> NIC: frames to transmit


class CommandOpcode(enum.Enum, shape=8):
    """``Command.opcode`` values. Any other value is answered ``UNKNOWN_OPCODE``."""
    NOP = 0             # completes at once (a ping, or a fence behind earlier commands)
    RING_STOP = 1       # stop the RX or TX ring named by ``Command.ring``
    RING_START = 2      # restart it
    # The fast path (SPEC §8, docs/fast_path.md "Commands"): ``arg`` is a :class:`ConnArg`
    # for every one but HANDOUT1.
    HANDOUT1 = 3        # addr: the host's Ccb (the NIC reads its tuple); arg: host context
    HANDOUT2 = 4        # addr: the host's Ccb (the NIC reads it whole)
    RCVMDL = 5          # addr: the RcvMdlEntry list; tag: the handle; ConnArg.entries, .push
    WINUPDATE = 6       # addr bits 31:0: bytes the application consumed of what FRAME_DATA showed
    FLUSH = 7           # return the connection to the host
    CLOSE = 8           # return it for good: the host closes it in software
    # The SYN-cookie unit (docs/syn_cookie.md "Host interface"); the command unit answers
    # UNKNOWN_OPCODE until the unit lands. ``arg`` is a hw.syn_cookie.layouts.SynTableArg.
    SYN_SERVICE = 9     # addr: a SynService entry (32 bytes) for services-list slot arg.index
    SYN_RULE = 10       # addr: a SynRule entry (32 bytes) for rule slot arg.index
    SYN_ACCEPT = 11     # addr: the RX buffer of a SYN_ASK event: answer that SYN with a cookie
    SYN_DENY = 12       # the host refuses a SYN_ASK SYN (counted; the NIC sends nothing)


class EventKind(enum.Enum, shape=4):
    """``Event.kind`` values. 0 never appears in a written event."""
    RX = 1              # a slow-path RX buffer was filled (or returned unused, see ``code``)
    TX_DONE = 2         # a TX descriptor's frame was read; the buffer is the host's again
    COMMAND_DONE = 3    # a command completed (``code`` says how)
    ERROR = 4           # a bad doorbell, ring configuration or descriptor fetch
    # The fast path (docs/fast_path.md "Events"); ``detail`` holds the conn_nbr.
    INTERLOCK = 5       # HANDOUT1 done: the tuple is pending; tag: host context
    RCVMDL_DONE = 6     # an RCVMDL completed: index: its handle; tag: bytes placed
    FRAME_DATA = 7      # a fast-path segment in an RX buffer (as RX); tag: its sequence number
    FLUSH = 8           # the connection is the host's again: code: a FlushReason; index: the
                        # RCVMDL handle; tag: bytes placed in it; length: frames passed before
    # The SYN-cookie unit (docs/syn_cookie.md "Events"): an RX buffer filled as for RX.
    CONNECTION = 9      # the frame is an ACK with a valid cookie; tag: SynConnectionInfo,
                        # detail: SynConnectionDetail
    SYN_ASK = 10        # the frame is a SYN for an *ask* service; detail: SynConnectionDetail


class EventCode(enum.Enum, shape=8):
    """``Event.code``: the outcome of the operation the event reports."""
    OK = 0
    BUFFER_TOO_SMALL = 1    # RX: frame + header larger than the buffer; frame dropped, buffer
                            # returned unused
    DMA_ERROR = 2           # the host answered a DMA read or write with SLVERR/DECERR
    UNKNOWN_OPCODE = 3      # command opcode not in CommandOpcode
    BAD_RING = 4            # command names a ring it cannot act on
    BAD_DOORBELL = 5        # producer/consumer index >= ring size, or moved backwards
    BAD_RING_SIZE = 6       # ring log2 size outside 1..12
    BAD_DESCRIPTOR = 7      # TX length 0 or longer than MAX_FRAME_BYTES; odd checksum offsets
                            # or a checksum field outside the frame
    # Fast-path commands refused (nothing changed):
    UNKNOWN_CONNECTION = 8  # conn_nbr not handed out (or out of range)
    WRONG_STATE = 9         # the connection cannot take this command now (HANDOUT2 twice, a
                            # second RCVMDL, WINUPDATE past what FRAME_DATA showed, ...)
    TUPLE_EXISTS = 10       # HANDOUT1 of a tuple already in the table
    TABLE_FULL = 11         # HANDOUT1 with no conn_nbr or table place left
    BAD_CCB = 12            # HANDOUT2's Ccb failed a check: the connection is flushed back
    BAD_MDL = 13            # RCVMDL with no entry, more than RCVMDL_MAX_ENTRIES, or an entry
                            # of length 0


class RxDescriptor(data.Struct):
    """Slow-path RX ring entry: an empty host buffer. The NIC fills it with the frame's
    :class:`RxSummary` (``RX_SUMMARY_BYTES``) followed by the whole frame."""
    addr: 64            # bus address, aligned to the DMA beat (the bits below are ignored)
    size: 32            # bytes available at addr
    reserved: 32


class TxDescriptor(data.Struct):
    """TX ring entry: one whole frame (no FCS) in one host buffer.

    Checksum offload, as Linux's CHECKSUM_PARTIAL: with ``ip_csum`` the NIC computes the IPv4 header
    checksum of the header at ``ip_offset`` (IHL, at least 5, read from the frame, the header summed
    as far as the frame goes; the host leaves the field 0; a result of 0 is sent as 0); with
    ``l4_csum`` the NIC sums the frame from ``csum_start`` to its end, complements the sum and
    stores it at ``csum_start + csum_offset``, where the host left the pseudo-header sum (a result
    of 0 is sent as 0xFFFF, RFC 768). All three offsets are even.
    """
    addr: 64
    length: 16          # frame bytes, 1..MAX_FRAME_BYTES
    ip_csum: 1
    l4_csum: 1
    reserved0: 6
    ip_offset: 8
    csum_start: 8
    csum_offset: 8
    reserved1: 16


class Command(data.Struct):
    """Command ring entry."""
    opcode: 8           # a CommandOpcode value
    ring: 8             # a RingId value, for RING_STOP / RING_START
    tag: 16             # returned in the COMMAND_DONE event
    arg: 32
    addr: 64


class Event(data.Struct):
    """Event ring entry, written by the NIC.

    ``phase`` is 1 on the first pass through the ring and flips on each wrap, so the host (which
    zeroes the ring before use) sees a new event as one whose phase differs from the stale slot.
    It is the entry's last bit: the NIC writes the entry in one burst, in address order, so a host
    that sees the new phase sees the whole entry (as with the phase tag of NVMe completions).
    """
    kind: 4             # an EventKind value
    reserved0: 4
    ring: 8             # the RingId the event is about
    index: 16           # the descriptor / command index in that ring
    length: 16          # RX: frame bytes; TX_DONE: frame bytes
    code: 8             # an EventCode value
    reserved1: 8
    tag: 32             # RX: the RSS hash; COMMAND_DONE: the command's tag
    detail: 31          # ERROR: the value written / bits 30:0 of the failing address
    phase: 1


class HostCounters(data.Struct):
    """Host-interface statistics, 32-bit wrapping. With the sequencer's ``RxCounters.frames``:
    frames = rx_to_host + every rx_drop_* + the frames inside the NIC (SPEC §7)."""
    rx_to_host: 32          # frames written whole into a host RX buffer
    rx_drop_disabled: 32    # arrived while CONTROL.ENABLE was 0
    rx_drop_no_buffer: 32   # no RX buffer posted (or the RX ring stopped) when the frame began
    rx_drop_overflow: 32    # the packet buffer filled while the frame arrived
    rx_drop_oversize: 32    # longer than MAX_FRAME_BYTES
    rx_drop_too_small: 32   # did not fit the posted buffer (returned with BUFFER_TOO_SMALL)
    rx_drop_dma_error: 32   # the buffer write got an error response
    tx_frames: 32           # frames sent on MAC TX
    tx_bad_descriptor: 32   # TX descriptors refused (BAD_DESCRIPTOR or DMA_ERROR)
    commands: 32            # commands completed, good or bad
    bad_commands: 32        # UNKNOWN_OPCODE or BAD_RING
    bad_doorbells: 32       # BAD_DOORBELL or BAD_RING_SIZE register writes
    dma_errors: 32          # every DMA response with SLVERR/DECERR
    events: 32              # events written to the event ring
    interrupts: 32          # rising edges of the interrupt line


#: One bit per HostCounters field: the blocks pulse a bit to count one.
HostCounterPulses = data.StructLayout({name: 1 for name, _ in data.Layout.cast(HostCounters)})


class RegisterError(data.Struct):
    """A register write the target refused, for the event writer to report as an ERROR event."""
    code: 8             # EventCode.BAD_DOORBELL or BAD_RING_SIZE
    ring: 8             # the RingId written
    detail: 32          # the value written


class TxPatch(data.Struct):
    """A 16-bit field the TX path overwrites as the frame leaves (a checksum it computed)."""
    enable: 1
    offset: 14          # byte offset of the field's first (most significant) byte; even
    value: 16


class TxBufferedFrame(data.Struct):
    """A frame in the TX staging buffer, ready to send: beats, bytes in its last beat, patches."""
    beats: 12
    last_bytes: 4       # 1..8
    ip_csum: TxPatch
    l4_csum: TxPatch


class RingEntry(data.Struct):
    """One entry of a host ring as a ring fetcher hands it to its consumer (hw/host/rings.py).

    ``entry`` is the 16 bytes read from host memory (a :class:`RxDescriptor`, :class:`TxDescriptor`
    or :class:`Command`, to be cast by the consumer); ``index`` its slot in the ring and ``addr``
    its bus address (for a ``DMA_ERROR`` event's ``detail``); ``error``: the host answered the
    read with SLVERR/DECERR, so ``entry`` is not to be used: the consumer reports the error and
    skips the slot.
    """
    entry: 8 * params.RING_ENTRY_BYTES
    index: params.RING_LOG2_SIZE_MAX
    addr: params.DMA_ADDR_WIDTH
    error: 1


class RxSummary(data.Struct):
    """The 32 bytes that precede a frame in its slow-path RX buffer: the part of the frame's
    :class:`RxStatus` a host stack uses to take the frame without parsing it again (a compact
    receive completion, as a NIC's descriptor write-back). Fields mean what they mean in
    :class:`RxStatus`; addresses and TCP sequence fields are in the frame itself, at ``l3_offset``
    and ``l4_offset``. Fields that do not apply read 0.
    """
    length: 16
    l3: L3Type
    l4: L4Type
    hash_type: HashType
    vlan_count: 2
    l2_valid: 1
    addr_valid: 1
    l4_valid: 1
    fragment: 1
    ip_options: 1
    ip_csum_valid: 1
    ip_csum_ok: 1
    l4_csum_valid: 1
    l4_csum_ok: 1
    malformed: 1
    candidate: 1
    errors: RxErrors
    ip_proto: 8
    tcp_flags: 8
    vlan0: 12
    vlan1: 12
    ethertype: 16
    hash: 32
    l3_offset: 8
    l4_offset: 8
    payload_offset: 8
    payload_len: 16
    sport: 16
    dport: 16
    reserved: 53


#: Bytes of the :class:`RxSummary` at the head of a filled RX buffer; the frame follows.
RX_SUMMARY_BYTES = data.Layout.cast(RxSummary).size // 8


class RxTcpFields(data.Struct):
    """The fields of a frame's :class:`RxStatus` beyond its :class:`RxSummary` that the dispatcher
    and the receive engine need: the tuple (with ``sport``/``dport`` of the summary) and the TCP
    sequence fields. They mean what they mean in :class:`RxStatus`."""
    src: 128
    dst: 128
    seq: 32
    ack: 32
    window: 16


class RxStagedFrame(data.Struct):
    """A frame waiting in the receive packet buffer (hw/host/rx_buffer.py): the summary that goes
    in front of it in a host RX buffer, its TCP fields, how many DMA words of the packet buffer it
    takes (at least 1, even for an empty frame), where they start, and its frame slot."""
    summary: RxSummary
    tcp: RxTcpFields
    words: 12
    start: 13           # the packet buffer word of its first byte (13 bits: 8192 words at 64)
    slot: 6             # its frame slot (RX_PACKET_BUFFER_FRAMES = 64): freed by this number


class DispatchedFrame(data.Struct):
    """A frame of the packet buffer after the dispatcher (hw/dispatch/dispatcher.py): the frame
    and what the CCB table answered for its tuple. ``looked_up``: the frame names a TCP tuple
    (TCP, ``addr_valid``, ``l4_valid``) and was looked up; ``hit``, ``state`` (the table's
    ``CcbState``) and ``conn_nbr`` are the answer (0 without a lookup or on a miss)."""
    frame: RxStagedFrame
    looked_up: 1
    hit: 1
    state: 2
    conn_nbr: 16


# --- The fast path (SPEC §3, §8; docs/fast_path.md) -----------------------------------------------


class FlushReason(enum.Enum, shape=8):
    """``Event.code`` of a ``FLUSH`` event: why the connection went back to the host. Counted one
    by one in :class:`FastPathCounters`."""
    HOST = 0            # the host's FLUSH command
    CLOSE = 1           # the host's CLOSE command
    OUT_OF_ORDER = 2    # sequence number other than RCV_NXT: a drop, reordering or duplicate
    OUT_OF_WINDOW = 3   # data beyond the advertised window, or a window probe
    FIN = 4
    RST = 5
    SYN = 6
    URG = 7
    FRAGMENT = 8        # an IP fragment of the connection (no L4 header to check)
    BAD_CHECKSUM = 9    # IPv4 header or TCP checksum wrong, or the frame malformed
    IP_OPTIONS = 10     # IPv4 options or IPv6 extension headers
    QUEUE_FULL = 11     # the connection's queue reached QUEUE_MAX_FRAMES, or it held the
                        # packet buffer's oldest frame while the buffer ran short
    BAD_ACK = 12        # an ACK of data the host has not sent (ack beyond SND_NXT)
    BAD_CCB = 13        # HANDOUT2's Ccb failed a check
    DMA_ERROR = 14      # a placement, list or Ccb transfer got an error response


class ConnArg(data.Struct):
    """``Command.arg`` of HANDOUT2, RCVMDL, WINUPDATE, FLUSH and CLOSE."""
    conn_nbr: 16
    entries: 8          # RCVMDL: RcvMdlEntry count, 1..RCVMDL_MAX_ENTRIES
    push: 1             # RCVMDL: complete it at the end of a segment with PSH
    reserved: 7


class RcvMdlEntry(data.Struct):
    """One scatter-gather entry of an RCVMDL list in host memory (16 bytes, little-endian): a
    host buffer the NIC fills with the connection's in-order payload. Any byte alignment."""
    addr: 64
    length: 32          # 1 .. 2**32 - 1 bytes
    reserved: 32


class ConnState(enum.Enum, shape=4):
    """The receive state of a connection on the NIC (``Ccb.state``, written back on a flush)."""
    FREE = 0            # no connection
    PENDING = 1         # HANDOUT1 done: frames queue until HANDOUT2
    FAST = 2            # fast path: segments placed into the RCVMDL
    INDICATED = 3       # no RCVMDL: one segment shown with FRAME_DATA, the next ones queue
    FLUSHING = 4        # going back to the host


class CcbTupleHost(data.Struct):
    """Bytes 0-47 of a :class:`Ccb`: what HANDOUT1 reads. The tuple as a received frame names it,
    ``remote`` being the peer, numbers as in :class:`RxStatus` (IPv4 in the low 32 bits)."""
    remote_ip: 128
    local_ip: 128
    remote_port: 16
    local_port: 16
    ipv6: 1
    reserved: 95


class CcbRoute(data.Struct):
    """Connection-invariant fields the host owns (seed 002): how the NIC addresses its ACKs."""
    local_mac: 48       # numbers, first byte on the wire in bits 47:40
    remote_mac: 48      # the next hop's
    vlan_tci: 16        # with ``vlan``: one 802.1Q tag (PCP, DEI, VID) in the NIC's ACKs
    vlan: 1
    timestamps: 1       # RFC 7323 timestamps were agreed: every ACK carries TSopt
    reserved0: 6
    ttl: 8              # IPv4 TTL / IPv6 hop limit of the NIC's ACKs
    tos: 8              # IPv4 TOS / IPv6 traffic class
    rcv_mss: 16         # the MSS the host advertised: a segment this long is "full-sized"
    snd_wscale: 4       # the peer's window shift (RFC 7323), 0..14
    rcv_wscale: 4       # the shift of the windows the NIC advertises, 0..14
    iss: 32             # initial send / receive sequence numbers (connection-invariant)
    irs: 32
    host_context: 32    # HANDOUT1's arg, returned in INTERLOCK (written by the NIC)


class CcbTcp(data.Struct):
    """Segment-variant fields (seed 002): the host's at HANDOUT2, the NIC's until the flush,
    written back then. Sequence numbers are absolute, as on the wire."""
    rcv_nxt: 32
    rcv_buf: 32         # receive buffer the host grants: the window while an RCVMDL is posted
    rcv_unconsumed: 32  # bytes FRAME_DATA showed that no WINUPDATE has given back yet
    rcv_adv: 32         # right edge advertised so far (RCV_NXT + window): never moves left
    snd_una: 32
    snd_nxt: 32
    snd_wnd: 32         # the peer's window, in bytes (its field << snd_wscale)
    snd_wl1: 32         # seq and ack of the segment that last set snd_wnd (RFC 9293)
    snd_wl2: 32
    ts_recent: 32       # the peer's last TSval, echoed as TSecr
    ts_val: 32          # the TSval of the NIC's next ACK (the host's clock at HANDOUT2)
    ip_id: 16           # IPv4 identification of the NIC's next ACK
    unacked: 8          # in-order segments taken since the last ACK sent
    ack_now: 1          # an ACK is owed at once (PSH, RCVMDL done, second full segment)
    reserved: 7


class CcbTransfer(data.Struct):
    """The per-transfer part: the posted RCVMDL. Zero at HANDOUT2; written back on a flush
    (the FLUSH event carries ``handle`` and ``placed`` too)."""
    addr: 64            # host address of the RcvMdlEntry list
    handle: 16          # the RCVMDL command's tag
    entries: 8
    entry: 8            # the entry being filled
    offset: 32          # bytes of that entry filled
    placed: 32          # bytes of the whole list filled
    posted: 1           # an RCVMDL is posted
    push: 1             # complete it on PSH
    reserved: 6
    queued: 8           # frames in the connection's queue (always 0 in the host's copy)
    reserved1: 80


class CcbStats(data.Struct):
    """Per-connection statistics (GET_TCP_STATISTICS), counted by the NIC since HANDOUT2 and
    written back on a flush (the host adds them up)."""
    fast_bytes: 32      # payload bytes placed into RCVMDLs
    fast_segments: 32   # segments placed
    frame_data: 32      # segments shown with FRAME_DATA
    acks: 32            # ACKs the NIC sent


class Ccb(data.Struct):
    """The communication control block of an offloaded connection (SPEC §3; seed 003's CCB,
    seed 002's classes), as it sits in host memory at the address HANDOUT1/HANDOUT2 give, 16-byte
    aligned. The host builds it; HANDOUT1 reads ``tuple``, HANDOUT2 reads it whole and checks it,
    a flush writes it back whole. One record per conn_nbr on the NIC (the CCB store) holds the
    same fields.
    """
    tuple: CcbTupleHost
    route: CcbRoute
    tcp: CcbTcp
    transfer: CcbTransfer
    stats: CcbStats
    version: 8          # CCB_VERSION: any other value is a bad CCB
    state: ConnState    # written by the NIC; the host leaves it 0
    conn_nbr: 16        # written by the NIC
    reserved: 100


#: ``Ccb.version`` of this layout.
CCB_VERSION = 1
#: HANDOUT2's checks of a Ccb: the largest window shift (RFC 7323 §2.3), and the largest
#: ``rcv_mss`` (a segment that long still fits a frame of MAX_FRAME_BYTES).
MAX_WSCALE = 14
MAX_RCV_MSS = (params.MAX_FRAME_BYTES - ETH_HEADER_BYTES - IPV4_MIN_HEADER_BYTES
               - TCP_MIN_HEADER_BYTES)
#: RCVMDL_DONE ``code`` when a PSH ended the RCVMDL (OK when it is full).
RCVMDL_ENDED_BY_PSH = 1
#: Bytes of a Ccb in host memory; of the part HANDOUT1 reads.
CCB_BYTES = data.Layout.cast(Ccb).size // 8
CCB_TUPLE_BYTES = data.Layout.cast(CcbTupleHost).size // 8
#: Alignment of a Ccb and of an RcvMdlEntry list in host memory: a DMA word at every width (64,
#: 128, 256 bits) and a cache line. The NIC ignores the command address's low 6 bits.
CCB_ALIGN = 64


class RxJobKind(enum.Enum, shape=2):
    """What the RX writer does with an :class:`RxJob`."""
    SLOW = 0            # the frame into the next RX buffer (summary + frame), then event RX
    FRAME_DATA = 1      # the same, then event FRAME_DATA (tag: the frame's seq, detail: conn_nbr)
    PLACE = 2           # bytes [offset, offset + length) of the frame to host address ``addr``
    EVENT = 3           # ``event`` alone


class RxJob(data.Struct):
    """One job of the receive engine for the RX writer (docs/fast_path.md, "The receive
    engine"). Jobs are done in order; each job's event (SLOW, FRAME_DATA, EVENT) is posted after
    the writes of every earlier job completed. ``free``: free the frame's packet-buffer slot once
    this job has read its bytes (SLOW and FRAME_DATA always; PLACE on a segment's last piece).
    Of ``frame.tcp`` the RX writer reads ``seq`` only, and only ``seq`` is carried (the rest reads
    0)."""
    kind: RxJobKind
    frame: RxStagedFrame    # SLOW, FRAME_DATA, PLACE
    free: 1
    offset: 14              # PLACE: the first byte, counted from the frame's first byte
    length: 14              # PLACE: bytes, 1 .. MAX_FRAME_BYTES
    addr: 64                # PLACE: host address of the first byte (any alignment)
    conn_nbr: 16            # FRAME_DATA: the event's detail; PLACE: named if its write fails
    event: Event            # EVENT: the event to post (``phase`` is the event writer's);
                            # SLOW: kind 0, or the kind, tag and detail of the event to post
                            # instead of RX (CONNECTION, SYN_ASK)


class AckRequest(data.Struct):
    """What the ACK builder needs for one TCP segment without payload (hw/fast_path/ack_builder.py):
    every header field, from the CCB store and the engine. Numbers as in :class:`Ccb`."""
    local_mac: 48
    remote_mac: 48
    vlan: 1             # one 802.1Q tag with ``vlan_tci`` after the source MAC
    vlan_tci: 16
    ipv6: 1
    local_ip: 128       # IPv4 in bits 31:0
    remote_ip: 128
    ttl: 8              # or hop limit
    tos: 8              # or traffic class
    ip_id: 16           # IPv4 identification (DF is always set)
    local_port: 16
    remote_port: 16
    seq: 32
    ack: 32
    flags: 8            # TcpFlags: ACK for the fast path's ACKs
    window: 16          # the field as sent (already shifted)
    timestamps: 1       # append NOP, NOP, TSopt (kind 8, length 10): TSval, TSecr
    ts_val: 32
    ts_ecr: 32


class FastPathCounters(data.Struct):
    """Fast-path statistics, global, 32-bit wrapping (GET_TCP_STATISTICS; docs/fast_path.md).
    With :class:`HostCounters` they close the accounting identity of SPEC §8."""
    fast_frames: 32         # segments placed into an RCVMDL
    fast_bytes: 32          # their payload bytes
    frame_data: 32          # segments shown with FRAME_DATA
    frame_data_bytes: 32
    pure_acks: 32           # segments without payload taken on the fast path (SND_UNA, window)
    queued: 32              # level: frames waiting in connection queues
    to_slow: 32             # frames of offloaded connections passed to the slow path by a flush
    handouts: 32            # HANDOUT2 that started the fast path
    flushes: 32             # FLUSH events, every reason
    connections: 32         # level: connections handed out (PENDING to FLUSHING)
    acks_sent: 32           # ACK frames the NIC built
    rcvmdl_done: 32
    bad_commands: 32        # fast-path commands refused (UNKNOWN_CONNECTION ... BAD_MDL)
    flush_reason: data.ArrayLayout(32, 16)   # FLUSH events by FlushReason value


def pack(layout, fields):
    """Pack a dict of field values into the integer a signal of ``layout`` holds."""
    return layout.const(fields).as_value().value


def unpack(layout, bits):
    """Unpack an integer into a :class:`amaranth.lib.data.Const` view of ``layout``."""
    return layout.from_bits(bits)
