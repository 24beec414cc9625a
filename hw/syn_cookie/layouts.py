"""Formats of the SYN-cookie unit, in one place (docs/syn_cookie.md).

The gateware, the golden model (sim/reference/syn_cookie.py) and the host driver all use these
Structs; none of them is typed twice. Structs pack LSB-first; protocol numbers (addresses, ports)
are numbers as in :class:`hw.layouts.RxStatus` (IPv4 in the low 32 bits of a 128-bit field).

New values in shared enums (hw/layouts.py, additive): ``CommandOpcode.SYN_SERVICE``,
``SYN_RULE``, ``SYN_ACCEPT``, ``SYN_DENY``; ``EventKind.CONNECTION``, ``SYN_ASK``.
"""

from amaranth.lib import data, enum

from .. import params
from ..layouts import DispatchedFrame

__all__ = [
    "TS_WSCALE_NONE", "NO_TS_OPTIONS",
    "CookieIsn", "TsCookieOptions", "HashedOptions",
    "ServiceMode", "VlanMatch", "SynService", "RuleAction", "SynRule", "SynTableArg",
    "SynControl", "SynGlobalCap", "SynAckRequest", "SynConnectionInfo", "SynConnectionDetail",
    "SynCounters",
    "SYN_TABLE_ENTRY_BYTES",
    "CookieFamilyMss", "CookieMessage", "CookieOp", "CookieVerdict", "CookieRequest",
    "CookieResponse",
    "SynCounterPulses", "SynOptions", "TCP_OPTION_BYTES", "OptionWalkInput", "SynMatchInput",
    "SynMatchAction", "SynOffer",
    "SynMatchVerdict",
]

#: ``TsCookieOptions.wscale`` when the SYN carried no window-scale option (as Linux's
#: ``TS_OPT_WSCALE_MASK``: 15 is no valid shift, RFC 7323 §2.3 caps it at 14).
TS_WSCALE_NONE = 0xF


class CookieIsn(data.Struct):
    """The initial sequence number of a SYN-ACK the unit sends: its cookie.

    Members
    -------
    hash : 27 bits
        Bits 26:0 of the SipHash-2-4 result over the cookie message (docs/syn_cookie.md).
    mss_index : 2 bits
        Index of the peer's MSS in the family's MSS table (rounded down).
    time : 2 bits
        The time counter's low bits when the cookie was made: the checker rebuilds the whole
        counter as the most recent value with these low bits.
    key_slot : 1 bit
        Which of the two host keys made the cookie.
    """
    hash: params.SYN_ISN_HASH_BITS
    mss_index: params.SYN_ISN_MSS_BITS
    time: params.SYN_ISN_TIME_BITS
    key_slot: params.SYN_ISN_KEY_BITS


class TsCookieOptions(data.Struct):
    """The 6 low bits of the SYN-ACK's TSval, echoed in the ACK's TSecr (as Linux's
    ``cookie_init_timestamp``): the peer's window shift (``TS_WSCALE_NONE``: no option),
    SACK-permitted, ECN-setup. Only sent when the SYN carried timestamps."""
    wscale: 4
    sack: 1
    ecn: 1


class HashedOptions(data.Struct):
    """Byte 40 of the cookie message: the options the cookie promises, authenticated by the hash.
    Without timestamps it is always :data:`NO_TS_OPTIONS` (MSS only)."""
    ts_options: TsCookieOptions
    timestamps: 1
    reserved: 1


#: :class:`HashedOptions` of a cookie made for a SYN without timestamps.
NO_TS_OPTIONS = TS_WSCALE_NONE


class ServiceMode(enum.Enum, shape=1):
    """How the unit answers an accepted SYN for a service (SPEC §9)."""
    IMMEDIATE = 0   # SYN-ACK at once; the host hears of the connection at its ACK (CONNECTION)
    ASK = 1         # the SYN goes to the host (SYN_ASK); SYN_ACCEPT / SYN_DENY decide


class VlanMatch(enum.Enum, shape=2):
    """Which frames a service's VLAN field admits."""
    ANY = 0         # untagged or one tag, any VID
    UNTAGGED = 1
    TAGGED = 2      # one tag with ``vlan_id``


class SynService(data.Struct):
    """One entry of the services list (32 bytes in host memory, written by SYN_SERVICE).

    A TCP frame matches when its destination address is in ``local_ip/prefix_len`` of the same
    family, its destination port is ``port`` and its VLAN fits ``vlan``. The first valid match
    in slot order wins. The rest says what the SYN-ACK offers.

    Members
    -------
    local_ip : 128 bits
        IPv4 in bits 31:0.
    prefix_len : 8 bits
        0..32 (IPv4) or 0..128 (IPv6); 32/128 = one address, 0 = any.
    port : 16 bits
    vlan_id : 12 bits
    vlan : VlanMatch
    ipv6, valid : 1 bit
    mode : ServiceMode
    mss : 16 bits
        The MSS the SYN-ACK advertises (the host's receive MSS, ``CcbRoute.rcv_mss``).
    window : 16 bits
        The SYN-ACK's window field (never scaled, RFC 7323 §2.2).
    wscale : 4 bits
        The window shift the SYN-ACK offers (``CcbRoute.rcv_wscale``), 0..14.
    sack, timestamps, ecn : 1 bit
        The options the host allows (each also needs the SYN to ask for it; SACK, window scale
        and ECN also need timestamps to travel).
    """
    local_ip: 128
    prefix_len: 8
    port: 16
    vlan_id: 12
    vlan: VlanMatch
    ipv6: 1
    valid: 1
    mode: ServiceMode
    mss: 16
    window: 16
    wscale: 4
    sack: 1
    timestamps: 1
    ecn: 1
    reserved: 48


class RuleAction(enum.Enum, shape=2):
    """What an acceptance rule does with a SYN whose source it matches."""
    ALLOW = 0       # accepted (subject to the rule's cap if ``capped``, and to the global cap)
    DENY = 1        # dropped, counted in ``syns_denied``


class SynRule(data.Struct):
    """One acceptance rule (32 bytes in host memory, written by SYN_RULE). A SYN that matched a
    service is checked against the rules in slot order; the first valid rule whose
    ``remote_ip/prefix_len`` (same family) holds the SYN's source decides. No match: the
    ``SynControl.default_deny`` bit decides.

    ``capped``: the rule owns a token bucket of ``burst`` tokens, refilled by ``rate`` tokens
    every 2**SYN_CAP_INTERVAL_LOG2 clocks; a SYN takes one, or is dropped (``syns_capped``) when
    there is none. The bucket is the prefix's as a whole (every source inside shares it).
    """
    remote_ip: 128
    prefix_len: 8
    ipv6: 1
    valid: 1
    action: RuleAction
    capped: 1
    rate: 16
    burst: 16
    reserved: 83


#: Bytes of a SynService or SynRule entry in host memory (two beats of the 128-bit DMA bus).
SYN_TABLE_ENTRY_BYTES = 32


class SynTableArg(data.Struct):
    """``Command.arg`` of SYN_SERVICE and SYN_RULE: the slot written (an entry with ``valid`` 0
    empties it)."""
    index: 8
    reserved: 24


class SynControl(data.Struct):
    """The SYN_CONTROL register (docs/syn_cookie.md "Registers")."""
    enable: 1           # 0: every SYN and ACK passes to the slow path, uncounted by the unit
    active_key: 1       # the key slot new cookies are made with
    age_limit: 2        # ticks a cookie stays valid after the tick it was made in
    default_deny: 1     # a SYN that matches no rule is denied (else allowed)
    global_capped: 1    # the global token bucket (SYN_GLOBAL_CAP) applies to every SYN
    reserved: 26


class SynGlobalCap(data.Struct):
    """The SYN_GLOBAL_CAP register: the token bucket every accepted SYN also takes a token from
    (with ``SynControl.global_capped``), refilled as a rule's (:class:`SynRule`)."""
    rate: 16
    burst: 16


class SynAckRequest(data.Struct):
    """What the SYN-ACK builder needs for one frame, every header field (docs/syn_cookie.md
    "The SYN-ACK, byte for byte"); numbers as in :class:`hw.layouts.AckRequest`.

    The options: MSS always; with ``timestamps`` SACK-permitted (if ``sack``) and TSopt; with
    ``wscale_ok`` (only with timestamps) the window scale ``wscale``. ``ecn``: ECE is set.
    """
    local_mac: 48
    remote_mac: 48
    vlan: 1
    vlan_tci: 16
    ipv6: 1
    local_ip: 128
    remote_ip: 128
    ttl: 8
    tos: 8
    local_port: 16
    remote_port: 16
    seq: 32             # the cookie
    ack: 32             # the SYN's seq + 1
    window: 16
    mss: 16
    wscale_ok: 1
    wscale: 4
    sack: 1
    timestamps: 1
    ts_val: 32
    ts_ecr: 32
    ecn: 1


class SynConnectionInfo(data.Struct):
    """``Event.tag`` of a CONNECTION event: what the cookie rebuilt and the frame does not show.
    The ISNs are in the frame (ISS = ack - 1, IRS = seq - 1), and so are the tuple, the MACs, the
    VLAN and the timestamps (TSval: ``ts_recent``)."""
    mss: 16             # the peer's MSS (the table entry of ``mss_index``): what the host sends
    snd_wscale: 4       # the peer's window shift; TS_WSCALE_NONE: none (no scaling either way)
    sack: 1             # SACK-permitted agreed
    ecn: 1              # ECN agreed (RFC 3168)
    timestamps: 1       # timestamps agreed (the ACK carries them)
    mss_index: 2
    key_slot: 1
    age: 2              # ticks since the cookie was made
    reserved: 4


class SynConnectionDetail(data.Struct):
    """``Event.detail`` of CONNECTION and SYN_ASK events (31 bits): the service the frame
    matched, and the window shift that service offered (``CcbRoute.rcv_wscale`` when the peer
    scales)."""
    service: 8
    rcv_wscale: 4
    reserved: 19


class SynCounters(data.Struct):
    """The unit's counters, 32-bit wrapping (SPEC §9). Every SYN the unit sees ends in exactly
    one of to_slow, denied, capped, tx_full, asked, or a SYN-ACK of the immediate mode, so
    ``syns_seen = syns_to_slow + syns_denied + syns_capped + syns_tx_full + syns_asked
    + (syns_answered - asks_accepted)``; every ACK checked ends in exactly one of
    cookies_valid, cookies_invalid, cookies_expired."""
    syns_seen: 32       # SYNs (SYN set; ACK, RST, FIN clear) of good TCP frames, unit enabled
    syns_answered: 32   # SYN-ACKs sent (immediate mode and SYN_ACCEPT)
    syns_to_slow: 32    # matched no service: passed to the slow path
    syns_denied: 32     # dropped by a DENY rule (or default_deny)
    syns_capped: 32     # dropped: the rule's or the global token bucket was empty
    syns_tx_full: 32    # dropped: the SYN-ACK queue to the TX arbiter was full (a SYN-ACK
                        # may be longer than its SYN, and the arbiter shares MAC TX)
    syns_asked: 32      # sent to the host with SYN_ASK
    asks_accepted: 32   # SYN_ACCEPT commands
    asks_denied: 32     # SYN_DENY commands
    cookies_valid: 32   # ACKs whose cookie passed: CONNECTION events
    cookies_invalid: 32 # ACKs to a service whose cookie failed the hash: slow path
    cookies_expired: 32 # ACKs whose cookie hashed right but is older than the age limit


# --- The cookie core (hw/syn_cookie/cookie.py) ----------------------------------------------------

class CookieFamilyMss(data.Struct):
    """Byte 41 of the cookie message: the family and the MSS index (docs/syn_cookie.md §1.2)."""
    mss_index: params.SYN_ISN_MSS_BITS
    reserved: 7 - params.SYN_ISN_MSS_BITS
    ipv6: 1


class CookieMessage(data.Struct):
    """The 44 bytes SipHash-2-4 hashes for a cookie (docs/syn_cookie.md §1.2), as the SipHash core
    takes them: message byte ``k`` at bits ``[8k, 8k+8)``. Multi-byte fields hold their bytes in
    network order (first byte in the low bits: the number byte-swapped), addresses IPv4-mapped
    for IPv4 (``sim.reference.syn_cookie.cookie_message`` builds the same bytes)."""
    remote_ip: 128
    local_ip: 128
    remote_port: 16
    local_port: 16
    peer_isn: 32        # the SYN's seq; on the ACK, seq - 1
    options: HashedOptions
    family_mss: CookieFamilyMss
    time: params.SYN_TIME_BITS


assert data.Layout.cast(CookieMessage).size == 8 * params.SYN_HASH_MESSAGE_BYTES


class CookieOp(enum.Enum, shape=1):
    """What a request to the cookie core asks."""
    MAKE = 0        # the ISN (and TSval) of a SYN-ACK, for a SYN
    CHECK = 1       # the verdict on an ACK's cookie, and what it rebuilds


class CookieVerdict(enum.Enum, shape=2):
    """The outcome of a CHECK (``sim.reference.syn_cookie.Verdict``)."""
    INVALID = 0     # the hash differs: forged, another tuple / peer ISN / options / key, too old
    VALID = 1
    EXPIRED = 2     # the hash matches, the cookie is older than the age limit


class CookieRequest(data.Struct):
    """A request to the cookie core (:class:`hw.syn_cookie.cookie.SynCookieCore`), MAKE or CHECK.
    Numbers as in :class:`hw.layouts.RxStatus` (IPv4 addresses in the low 32 bits). Fields one
    kind does not use are ignored.

    Members
    -------
    op : CookieOp
    ipv6 : 1 bit
        The tuple's family.
    remote_ip, local_ip, remote_port, local_port
        The tuple; remote is the peer (the frame's source).
    seq : 32 bits
        The frame's seq: MAKE, the SYN's (the peer's ISN); CHECK, the ACK's (the peer's ISN + 1).
    ack : 32 bits
        CHECK: the ACK's ack (the cookie + 1).
    timestamps : 1 bit
        MAKE: the SYN-ACK carries timestamps (the SYN offered them, the service allows them);
        CHECK: the ACK carries the timestamps option.
    ts : 32 bits
        MAKE: the NIC's timestamp clock now; CHECK: the ACK's TSecr.
    ts_options : TsCookieOptions
        MAKE with timestamps: the options the SYN-ACK promises (peer's window shift, SACK, ECN).
    mss_index : 2 bits
        MAKE: the peer's MSS index in the family's table.
    key_slot : 1 bit
        MAKE: the key slot new cookies use (``SynControl.active_key``).
    time : 16 bits
        The time counter now.
    age_limit : 2 bits
        CHECK: ``SynControl.age_limit``.
    """
    op: CookieOp
    ipv6: 1
    remote_ip: 128
    local_ip: 128
    remote_port: 16
    local_port: 16
    seq: 32
    ack: 32
    timestamps: 1
    ts: 32
    ts_options: TsCookieOptions
    mss_index: params.SYN_ISN_MSS_BITS
    key_slot: params.SYN_ISN_KEY_BITS
    time: params.SYN_TIME_BITS
    age_limit: params.SYN_ISN_TIME_BITS


class CookieResponse(data.Struct):
    """The cookie core's answer to one request, in request order.

    Members
    -------
    op : CookieOp
        The request's.
    isn : CookieIsn
        MAKE: the cookie, the SYN-ACK's seq. CHECK: the ACK's ack - 1 (the connection's ISS).
    ts_val : 32 bits
        MAKE with timestamps: the SYN-ACK's TSval (the clock, its low bits the options, never
        ahead of the clock); 0 without.
    verdict : CookieVerdict
        CHECK only.
    info : SynConnectionInfo
        CHECK: what the cookie rebuilds (MSS from the host's table, the peer's window shift, SACK,
        ECN, timestamps, and the diagnostics); meaningful when ``verdict`` is VALID.
    """
    op: CookieOp
    isn: CookieIsn
    ts_val: 32
    verdict: CookieVerdict
    info: SynConnectionInfo


# --- The classifier and matcher (hw/syn_cookie/match.py) ----------------------------------------

#: One bit per :class:`SynCounters` field: the unit's stages pulse a bit to count one (as
#: :data:`hw.layouts.HostCounterPulses`).
SynCounterPulses = data.StructLayout({name: 1 for name, _ in data.Layout.cast(SynCounters)})


class SynOptions(data.Struct):
    """The TCP options of a frame as the option walker finds them (docs/syn_cookie.md §2.3: at
    most ``SYN_OPTION_STEPS`` steps, a step one option or a run of up to 4 NOPs; a malformed
    option ends the walk; an option of the wrong length is ignored), as
    ``sim.reference.syn_cookie.TcpOptions``. Not in the status word: the walker reads them from
    the packet buffer's header bytes (the receive sequencer or the packet buffer, to come).

    Members
    -------
    mss_present, mss : 1, 16 bits
        Kind 2, length 4.
    wscale_present, wscale : 1, 8 bits
        Kind 3, length 3: the shift as sent (the matcher takes one above 14 as 14).
    sack_permitted : 1 bit
        Kind 4, length 2.
    timestamps, ts_val, ts_ecr : 1, 32, 32 bits
        Kind 8, length 10.
    """
    mss_present: 1
    mss: 16
    wscale_present: 1
    wscale: 8
    sack_permitted: 1
    timestamps: 1
    ts_val: 32
    ts_ecr: 32


#: Bytes of the TCP options area: a data offset of 15 words less the 20 fixed bytes.
TCP_OPTION_BYTES = 40


class OptionWalkInput(data.Struct):
    """What the option walker (:class:`hw.syn_cookie.option_walker.OptionWalker`) takes per frame.

    Members
    -------
    options : 320 bits
        The TCP options area as received: option byte ``k`` (the TCP header's byte ``20 + k``) at
        bits ``[8k, 8k+8)``. Bytes at ``length`` and beyond are ignored (any value).
    length : 6 bits
        How many of those bytes are options, 0..40: the data offset · 4 - 20, clipped by the
        caller to what it captured.
    """
    options: 8 * TCP_OPTION_BYTES
    length: range(TCP_OPTION_BYTES + 1)


class SynMatchInput(data.Struct):
    """What the matcher takes per frame: the dispatcher's descriptor (its status summary, TCP
    fields and CCB-table answer) and the frame's TCP options."""
    frame: DispatchedFrame
    options: SynOptions


class SynMatchAction(enum.Enum, shape=3):
    """The matcher's verdict on a frame (docs/syn_cookie.md §2.3, in the model's order)."""
    PASS = 0        # not the unit's: on untouched and uncounted (no SYN / ACK for a service,
                    # the unit off, a table hit, not good TCP, two VLAN tags)
    TO_SLOW = 1     # a SYN for no service: slow path (``syns_to_slow``)
    DENIED = 2      # a SYN denied by a rule or ``default_deny``: dropped (``syns_denied``)
    CAPPED = 3      # a SYN whose rule's or the global bucket was empty: dropped (``syns_capped``)
    ASK = 4         # a SYN for an *ask* service: to the host with SYN_ASK (``syns_asked``)
    MAKE = 5        # a SYN accepted for an *immediate* service: the cookie core's MAKE, then
                    # the SYN-ACK (``syns_answered`` or ``syns_tx_full`` downstream)
    CHECK = 6       # an ACK for a service (any mode): the cookie core's CHECK (``cookies_*``)


class SynOffer(data.Struct):
    """What the SYN-ACK of a MAKE carries beyond the frame's own fields and the cookie core's
    answer (the :class:`SynAckRequest` fields of the same names): the service's window and MSS,
    and the options both sides agreed (``SynCookieModel.syn_ack_request``)."""
    window: 16
    mss: 16
    wscale_ok: 1        # timestamps, and the SYN has a window-scale option
    wscale: 4           # the service's shift
    sack: 1
    timestamps: 1
    ecn: 1
    ts_ecr: 32          # with timestamps: the SYN's TSval, echoed; else 0


class SynMatchVerdict(data.Struct):
    """The matcher's answer for one frame, in frame order.

    Members
    -------
    action : SynMatchAction
    service_matched, service : 1, 4 bits
        A SYN or ACK of the unit (not PASS for its kind) that matched a service: the first
        valid slot that did (0 / 0 otherwise).
    rule_matched, rule : 1, 4 bits
        A SYN with a service: the first valid rule holding its source (0 / 0: none matched, or
        not evaluated).
    rcv_wscale : 4 bits
        The service's window shift (``SynConnectionDetail.rcv_wscale`` of SYN_ASK and, when the
        peer scales, of CONNECTION).
    offer : SynOffer
        MAKE: for the SYN-ACK builder.
    cookie : CookieRequest
        MAKE and CHECK: the cookie core's request (tuple, seq, ack, options, MSS index, the key
        slot, time counter, timestamp clock and age limit of the decision's clock).
    """
    action: SynMatchAction
    service_matched: 1
    service: (params.SYN_SERVICES - 1).bit_length()
    rule_matched: 1
    rule: (params.SYN_RULES - 1).bit_length()
    rcv_wscale: 4
    offer: SynOffer
    cookie: CookieRequest
