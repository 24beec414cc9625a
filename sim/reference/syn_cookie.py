"""Golden model of the SYN-cookie unit (SPEC §9; design: docs/syn_cookie.md).

Simpler than the hardware: one function per step, Python integers and bytes. It makes and checks
cookies, matches services and acceptance rules, keeps the token buckets, builds the SYN-ACK frame
byte for byte (without scapy: scapy is the independent checker of the tests) and decides what
happens to a whole frame: :meth:`SynCookieModel.decide`.

Ref: RFC 4987 §3.6 (SYN cookies); RFC 9293 §3.1 (TCP header, MSS option); RFC 7323 §2-3 (window
scale, timestamps); RFC 2018 (SACK-permitted); RFC 3168 §6.1.1 (ECN setup); Linux
net/ipv4/syncookies.c (``cookie_init_timestamp``: option bits in the TSval's low 6 bits).
"""

import dataclasses
import enum

from amaranth.lib import data

from hw import params
from hw.layouts import EventKind, TcpFlags, pack
from hw.syn_cookie.layouts import (
    NO_TS_OPTIONS,
    TS_WSCALE_NONE,
    RuleAction,
    ServiceMode,
    SynConnectionDetail,
    SynConnectionInfo,
    SynCounters,
    SynMatchAction,
    SynRule,
    SynService,
    VlanMatch,
)
from sim.reference.checksum import (
    ipv4_header_ok,
    l4_checksum_ok,
    ones_complement_sum,
    pseudo_header,
)
from sim.reference.siphash import siphash

__all__ = [
    "MASK32", "TS_OPTION_BITS", "TIMESTAMPS_BIT", "MAX_WSCALE",
    "Verdict", "Action", "TcpOptions", "TcpFrame", "FourTuple", "CookieConfig", "CookieCheck",
    "Service", "Rule", "TokenBucket", "Connection", "Decision", "SynCookieModel",
    "parse_tcp_frame", "mapped_address", "cookie_message", "make_isn", "split_isn",
    "mss_index_for", "ts_options_of", "options_byte", "cookie_ts_val", "encode_cookie",
    "check_cookie", "prefix_match", "syn_ack_frame", "COUNTER_NAMES",
    "make_cookie", "ack_options", "check_ack", "MatchResult",
]

MASK32 = (1 << 32) - 1
#: The low bits of the SYN-ACK's TSval that carry the options (Linux's ``TSBITS``).
TS_OPTION_BITS = 6
#: Bit of the hashed options byte that says the SYN carried timestamps.
TIMESTAMPS_BIT = 1 << TS_OPTION_BITS
#: Largest window shift (RFC 7323 §2.3): a larger one in a SYN is taken as 14, as Linux does.
MAX_WSCALE = 14
_ISN_HASH_BITS = params.SYN_ISN_HASH_BITS
_ISN_MSS_SHIFT = _ISN_HASH_BITS
_ISN_TIME_SHIFT = _ISN_MSS_SHIFT + params.SYN_ISN_MSS_BITS
_ISN_KEY_SHIFT = _ISN_TIME_SHIFT + params.SYN_ISN_TIME_BITS
_TIME_MASK = (1 << params.SYN_TIME_BITS) - 1
_ISN_TIME_MASK = (1 << params.SYN_ISN_TIME_BITS) - 1
_ETH_IPV4, _ETH_IPV6, _ETH_VLAN = 0x0800, 0x86DD, 0x8100
_IPV4_MAPPED_PREFIX = bytes(10) + b"\xff\xff"


#: The names of :class:`~hw.syn_cookie.layouts.SynCounters`, in register order.
COUNTER_NAMES = tuple(name for name, _ in data.Layout.cast(SynCounters))


class Verdict(enum.Enum):
    """The outcome of a cookie check, as the counters tell them apart."""
    VALID = "valid"
    INVALID = "invalid"     # the hash does not match (forged, other tuple, other key, too old)
    EXPIRED = "expired"     # the hash matches, but the cookie is older than the age limit


class Action(enum.Enum):
    """What the unit does with a frame."""
    PASS = "pass"               # not the unit's (no SYN / ACK for a service, unit off, bad frame)
    SLOW = "slow"               # to the slow path, counted by the unit
    DROP = "drop"               # denied by rule or capped
    SYN_ACK = "syn_ack"         # answered with a SYN-ACK (``Decision.reply``)
    ASK = "ask"                 # to the host with a SYN_ASK event
    CONNECTION = "connection"   # a valid cookie: to the host with a CONNECTION event


# --- Frames ---------------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class TcpOptions:
    """The TCP options the unit reads from a SYN or an ACK (None / False: absent)."""
    mss: int | None = None
    wscale: int | None = None
    sack_permitted: bool = False
    ts_val: int | None = None
    ts_ecr: int | None = None

    @property
    def timestamps(self) -> bool:
        return self.ts_val is not None


@dataclasses.dataclass(frozen=True)
class TcpFrame:
    """The fields of a good TCP frame the unit uses. Addresses are bytes (4 or 16)."""
    dst_mac: bytes
    src_mac: bytes
    vlan_tci: int | None
    ipv6: bool
    src_ip: bytes
    dst_ip: bytes
    sport: int
    dport: int
    seq: int
    ack: int
    flags: int
    window: int
    options: TcpOptions
    payload_len: int

    @property
    def tuple(self) -> "FourTuple":
        """The tuple as the NIC names it: the sender is the remote end."""
        return FourTuple(self.src_ip, self.dst_ip, self.sport, self.dport)


@dataclasses.dataclass(frozen=True)
class FourTuple:
    remote_ip: bytes
    local_ip: bytes
    remote_port: int
    local_port: int

    @property
    def ipv6(self) -> bool:
        return len(self.remote_ip) == 16


def _parse_tcp_options(raw: bytes, steps: int = params.SYN_OPTION_STEPS) -> TcpOptions:
    """The options of ``raw`` (the TCP header after its 20 fixed bytes). A malformed option ends
    the parse, as in Linux's ``tcp_parse_options``; options of the wrong length are ignored. The
    hardware's walker reads one option, or a run of up to 4 NOPs, per step, for ``steps`` steps;
    options after those are ignored, here too."""
    found = {}
    i = 0
    for _ in range(steps):
        if i >= len(raw) or raw[i] == 0:
            break
        kind = raw[i]
        if kind == 1:
            run = 1
            while run < 4 and i + run < len(raw) and raw[i + run] == 1:
                run += 1
            i += run
            continue
        if i + 1 >= len(raw) or raw[i + 1] < 2 or i + raw[i + 1] > len(raw):
            break
        length, body = raw[i + 1], raw[i + 2:i + raw[i + 1]]
        if kind == 2 and length == 4:
            found["mss"] = int.from_bytes(body, "big")
        elif kind == 3 and length == 3:
            found["wscale"] = min(body[0], MAX_WSCALE)
        elif kind == 4 and length == 2:
            found["sack_permitted"] = True
        elif kind == 8 and length == 10:
            found["ts_val"] = int.from_bytes(body[:4], "big")
            found["ts_ecr"] = int.from_bytes(body[4:], "big")
        i += length
    return TcpOptions(**found)


def parse_tcp_frame(frame: bytes) -> TcpFrame | None:
    """The :class:`TcpFrame` of a frame the unit may handle, else None: Ethernet II with at most
    one VLAN tag, IPv4 without options and not a fragment or IPv6 with TCP as next header, TCP,
    both checksums right, lengths consistent (the receive sequencer's verdicts, SPEC §3)."""
    if len(frame) < 14:
        return None
    offset, ethertype, vlan_tci = 14, int.from_bytes(frame[12:14], "big"), None
    if ethertype == _ETH_VLAN and len(frame) >= 18:
        vlan_tci = int.from_bytes(frame[14:16], "big")
        ethertype, offset = int.from_bytes(frame[16:18], "big"), 18
    if ethertype == _ETH_IPV4:
        ip = frame[offset:offset + 20]
        if len(ip) < 20 or ip[0] != 0x45 or ip[9] != 6 or not ipv4_header_ok(ip):
            return None
        if int.from_bytes(ip[6:8], "big") & 0x3FFF:     # MF or a fragment offset
            return None
        total = int.from_bytes(ip[2:4], "big")
        segment = frame[offset + 20:offset + total]
        src, dst, ipv6 = ip[12:16], ip[16:20], False
        if total < 40 or len(segment) != total - 20:
            return None
    elif ethertype == _ETH_IPV6:
        ip = frame[offset:offset + 40]
        if len(ip) < 40 or ip[0] >> 4 != 6 or ip[6] != 6:
            return None
        length = int.from_bytes(ip[4:6], "big")
        segment = frame[offset + 40:offset + 40 + length]
        src, dst, ipv6 = ip[8:24], ip[24:40], True
        if length < 20 or len(segment) != length:
            return None
    else:
        return None
    header_len = (segment[12] >> 4) * 4
    if header_len < 20 or header_len > len(segment) or not l4_checksum_ok(src, dst, 6, segment):
        return None
    return TcpFrame(
        dst_mac=frame[0:6], src_mac=frame[6:12], vlan_tci=vlan_tci, ipv6=ipv6,
        src_ip=src, dst_ip=dst,
        sport=int.from_bytes(segment[0:2], "big"), dport=int.from_bytes(segment[2:4], "big"),
        seq=int.from_bytes(segment[4:8], "big"), ack=int.from_bytes(segment[8:12], "big"),
        flags=segment[13], window=int.from_bytes(segment[14:16], "big"),
        options=_parse_tcp_options(segment[20:header_len]),
        payload_len=len(segment) - header_len)


# --- The cookie -------------------------------------------------------------------------------

@dataclasses.dataclass
class CookieConfig:
    """The host's settings the cookie depends on (registers, docs/syn_cookie.md).

    ``cap_interval_log2``: the token buckets' refill interval (clocks, log2); tests shorten it
    as they shorten ``tick_log2``.

    ``check_hash_bits`` is a model-only knob: how many of the ISN's hash bits the check compares
    (the hardware compares all :data:`~hw.params.SYN_ISN_HASH_BITS`); the forgery test lowers it
    to see acceptances at the predicted rate.
    """
    keys: list = dataclasses.field(default_factory=lambda: [bytes(16), bytes(16)])
    active_key: int = 0
    age_limit: int = params.SYN_AGE_LIMIT
    tick_log2: int = params.SYN_TIME_TICK_LOG2
    mss_ipv4: tuple = params.SYN_MSS_TABLE_IPV4
    mss_ipv6: tuple = params.SYN_MSS_TABLE_IPV6
    ts_offset: int = 0
    check_hash_bits: int = params.SYN_ISN_HASH_BITS
    cap_interval_log2: int = params.SYN_CAP_INTERVAL_LOG2

    def __post_init__(self):
        if not 0 <= self.age_limit <= _ISN_TIME_MASK:
            raise ValueError(f"age_limit must be 0..{_ISN_TIME_MASK}, got {self.age_limit}")
        if not 1 <= self.check_hash_bits <= params.SYN_ISN_HASH_BITS:
            raise ValueError(f"check_hash_bits must be 1..{params.SYN_ISN_HASH_BITS}")

    def time(self, now: int) -> int:
        """The time counter at clock ``now``."""
        return (now >> self.tick_log2) & _TIME_MASK

    def ts_clock(self, now: int) -> int:
        """The NIC's TCP timestamp clock (1 kHz) at clock ``now``."""
        return (self.ts_offset + now // params.SYN_TS_TICK_CYCLES) & MASK32

    def mss_table(self, ipv6: bool) -> tuple:
        return self.mss_ipv6 if ipv6 else self.mss_ipv4


def mapped_address(addr: bytes) -> bytes:
    """16 bytes: an IPv6 address as it is, an IPv4 one as IPv4-mapped IPv6 (``::ffff:a.b.c.d``,
    RFC 4291 §2.5.5.2), so that one 44-byte message format serves both families."""
    if len(addr) == 16:
        return addr
    if len(addr) == 4:
        return _IPV4_MAPPED_PREFIX + addr
    raise ValueError(f"an IP address is 4 or 16 bytes, got {len(addr)}")


def cookie_message(tuple_: FourTuple, peer_isn: int, options: int, mss_index: int,
                   time: int) -> bytes:
    """The 44 bytes SipHash-2-4 hashes for a cookie (docs/syn_cookie.md "The hashed message").

    ====== ===== =========================================================================
    bytes  size  field
    ====== ===== =========================================================================
    0-15   16    remote (peer) address, network order (IPv4: IPv4-mapped)
    16-31  16    local address, network order (IPv4: IPv4-mapped)
    32-33  2     remote port, network order
    34-35  2     local port, network order
    36-39  4     the peer's ISN (the SYN's seq; on the ACK, seq - 1), network order
    40     1     the options promised (:class:`~hw.syn_cookie.layouts.HashedOptions`)
    41     1     bit 7: IPv6; bits 1:0: MSS index; bits 6:2: 0
    42-43  2     the time counter (all 16 bits), network order
    ====== ===== =========================================================================
    """
    family_mss = (0x80 if tuple_.ipv6 else 0) | mss_index
    message = (mapped_address(tuple_.remote_ip) + mapped_address(tuple_.local_ip)
               + tuple_.remote_port.to_bytes(2, "big") + tuple_.local_port.to_bytes(2, "big")
               + (peer_isn & MASK32).to_bytes(4, "big") + bytes([options, family_mss])
               + (time & _TIME_MASK).to_bytes(2, "big"))
    assert len(message) == params.SYN_HASH_MESSAGE_BYTES
    return message


def make_isn(key_slot: int, time: int, mss_index: int, hash_: int) -> int:
    """The ISN (:class:`~hw.syn_cookie.layouts.CookieIsn`) from its fields; ``time`` may be the
    whole counter (its low bits are taken) and ``hash_`` the whole SipHash word."""
    return (key_slot << _ISN_KEY_SHIFT | (time & _ISN_TIME_MASK) << _ISN_TIME_SHIFT
            | mss_index << _ISN_MSS_SHIFT | hash_ & ((1 << _ISN_HASH_BITS) - 1))


def split_isn(isn: int) -> tuple:
    """``(key_slot, time_low_bits, mss_index, hash_bits)`` of an ISN."""
    return (isn >> _ISN_KEY_SHIFT & 1, isn >> _ISN_TIME_SHIFT & _ISN_TIME_MASK,
            isn >> _ISN_MSS_SHIFT & ((1 << params.SYN_ISN_MSS_BITS) - 1),
            isn & ((1 << _ISN_HASH_BITS) - 1))


def mss_index_for(peer_mss: int | None, table: tuple, ipv6: bool) -> int:
    """The largest table entry not above the peer's MSS (index 0 if all are, as Linux). No MSS
    option means the default MSS: 536 for IPv4 (RFC 9293 §3.7.1), 1220 for IPv6 (RFC 8200 §8.3)."""
    if peer_mss is None:
        peer_mss = 1220 if ipv6 else 536
    index = 0
    for i, mss in enumerate(table):
        if peer_mss >= mss:
            index = i
    return index


def ts_options_of(wscale: int | None, sack: bool, ecn: bool) -> int:
    """The 6 option bits of the TSval (:class:`~hw.syn_cookie.layouts.TsCookieOptions`)."""
    return (TS_WSCALE_NONE if wscale is None else wscale) | int(sack) << 4 | int(ecn) << 5


def options_byte(timestamps: bool, wscale: int | None = None, sack: bool = False,
                 ecn: bool = False) -> int:
    """Byte 40 of the message (:class:`~hw.syn_cookie.layouts.HashedOptions`). Without
    timestamps nothing but the MSS travels: always :data:`NO_TS_OPTIONS`."""
    if not timestamps:
        return NO_TS_OPTIONS
    return TIMESTAMPS_BIT | ts_options_of(wscale, sack, ecn)


def cookie_ts_val(ts_now: int, ts_options: int) -> int:
    """The SYN-ACK's TSval: the timestamp clock with its 6 low bits replaced by the options,
    moved back 64 ticks if that puts it in the future (Linux's ``cookie_init_timestamp``: later
    TSvals of the connection must not go backwards)."""
    ts = (ts_now & ~((1 << TS_OPTION_BITS) - 1) & MASK32) | ts_options
    if ts > ts_now:
        ts = (ts - (1 << TS_OPTION_BITS)) & MASK32
    return ts


def _hash(config: CookieConfig, key_slot: int, tuple_: FourTuple, peer_isn: int, options: int,
          mss_index: int, time: int) -> int:
    return siphash(config.keys[key_slot],
                   cookie_message(tuple_, peer_isn, options, mss_index, time), 2, 4)


def encode_cookie(config: CookieConfig, tuple_: FourTuple, peer_isn: int, options: int,
                  mss_index: int, time: int) -> int:
    """The ISN of the SYN-ACK for a SYN of ``tuple_`` with seq ``peer_isn``, made with the
    active key at time counter ``time``."""
    slot = config.active_key
    hash_ = _hash(config, slot, tuple_, peer_isn, options, mss_index, time)
    return make_isn(slot, time, mss_index, hash_)


@dataclasses.dataclass(frozen=True)
class CookieCheck:
    """The result of :func:`check_cookie`; the fields are the ISN's, meaningful when VALID."""
    verdict: Verdict
    key_slot: int
    mss_index: int
    age: int


def check_cookie(config: CookieConfig, tuple_: FourTuple, isn: int, peer_isn: int,
                 options: int, time_now: int) -> CookieCheck:
    """Check a returning ACK exactly: ``isn`` = ack - 1, ``peer_isn`` = seq - 1, ``options``
    from the ACK (:func:`options_byte` of its TSecr, or NO_TS_OPTIONS without timestamps).

    The ISN names its key slot, MSS index and the low bits of its time counter; the whole counter
    is the most recent one with those low bits (``age`` ticks back). Exactly one message is
    hashed and the hash bits compared: one ISN, one (time, MSS index, options) that can pass.
    A match older than the age limit is EXPIRED; any mismatch is INVALID.
    """
    key_slot, time_low, mss_index, hash_bits = split_isn(isn)
    age = (time_now - time_low) & _ISN_TIME_MASK
    time = (time_now - age) & _TIME_MASK
    expected = _hash(config, key_slot, tuple_, peer_isn, options, mss_index, time)
    compare = (1 << config.check_hash_bits) - 1
    if (expected ^ hash_bits) & compare:
        verdict = Verdict.INVALID
    elif age > config.age_limit:
        verdict = Verdict.EXPIRED
    else:
        verdict = Verdict.VALID
    return CookieCheck(verdict, key_slot, mss_index, age)


def make_cookie(config: CookieConfig, tuple_: FourTuple, peer_isn: int, options: int,
                mss_index: int, time: int, ts_clock: int, key_slot: int | None = None) -> tuple:
    """What the cookie core answers a MAKE request with, from its fields: ``(isn, ts_val)`` of
    the SYN-ACK for a SYN of ``tuple_`` with seq ``peer_isn``. ``options`` is the hashed byte
    (:func:`options_byte`), ``time`` the time counter, ``ts_clock`` the timestamp clock,
    ``key_slot`` the active key slot (default ``config.active_key``). ``ts_val`` is 0 without
    timestamps."""
    slot = config.active_key if key_slot is None else key_slot
    hash_ = _hash(config, slot, tuple_, peer_isn, options, mss_index, time)
    isn = make_isn(slot, time, mss_index, hash_)
    ts_val = (cookie_ts_val(ts_clock, options & ((1 << TS_OPTION_BITS) - 1))
              if options & TIMESTAMPS_BIT else 0)
    return isn, ts_val


def ack_options(ts_ecr: int | None) -> int:
    """Byte 40 of an ACK's message: the TSecr's option bits with the timestamps bit, or
    :data:`NO_TS_OPTIONS` for an ACK without timestamps (``ts_ecr`` None)."""
    if ts_ecr is None:
        return NO_TS_OPTIONS
    return TIMESTAMPS_BIT | ts_ecr & ((1 << TS_OPTION_BITS) - 1)


def check_ack(config: CookieConfig, tuple_: FourTuple, seq: int, ack: int, ts_ecr: int | None,
              time_now: int) -> tuple:
    """What the cookie core answers a CHECK request with, from its fields: ``(check, info)`` for
    an ACK of ``tuple_`` (``ts_ecr`` None without timestamps) at time counter ``time_now``.
    ``check`` is :func:`check_cookie`'s; ``info`` the
    :class:`~hw.syn_cookie.layouts.SynConnectionInfo` fields the cookie rebuilds (as
    :meth:`SynCookieModel.decide` puts them in a CONNECTION event; computed whatever the
    verdict, meaningful when VALID)."""
    hashed = ack_options(ts_ecr)
    isn, irs = (ack - 1) & MASK32, (seq - 1) & MASK32
    check = check_cookie(config, tuple_, isn, irs, hashed, time_now)
    info = {"mss": config.mss_table(tuple_.ipv6)[check.mss_index],
            "snd_wscale": hashed & 0xF, "sack": hashed >> 4 & 1, "ecn": hashed >> 5 & 1,
            "timestamps": int(ts_ecr is not None), "mss_index": check.mss_index,
            "key_slot": check.key_slot, "age": check.age}
    return check, info


# --- Services, rules, caps ----------------------------------------------------------------------

def prefix_match(addr: bytes, prefix: bytes, prefix_len: int) -> bool:
    """``addr`` lies in ``prefix/prefix_len`` (both of one family)."""
    if len(addr) != len(prefix):
        return False
    bits = 8 * len(addr)
    shift = bits - prefix_len
    return int.from_bytes(addr, "big") >> shift == int.from_bytes(prefix, "big") >> shift


@dataclasses.dataclass(frozen=True)
class Service:
    """A services-list entry (:class:`~hw.syn_cookie.layouts.SynService`); the address is bytes."""
    local_ip: bytes
    port: int
    prefix_len: int | None = None       # None: the whole address
    vlan: VlanMatch = VlanMatch.ANY
    vlan_id: int = 0
    mode: ServiceMode = ServiceMode.IMMEDIATE
    mss: int = 1460
    window: int = 65535
    wscale: int = 7
    sack: bool = True
    timestamps: bool = True
    ecn: bool = True

    @property
    def ipv6(self) -> bool:
        return len(self.local_ip) == 16

    def entry(self) -> int:
        """The :class:`~hw.syn_cookie.layouts.SynService` the host writes with SYN_SERVICE."""
        return pack(SynService, {
            "local_ip": int.from_bytes(self.local_ip, "big"),
            "prefix_len": 8 * len(self.local_ip) if self.prefix_len is None else self.prefix_len,
            "port": self.port, "vlan_id": self.vlan_id, "vlan": self.vlan,
            "ipv6": int(self.ipv6), "valid": 1, "mode": self.mode, "mss": self.mss,
            "window": self.window, "wscale": self.wscale, "sack": int(self.sack),
            "timestamps": int(self.timestamps), "ecn": int(self.ecn)})

    def matches(self, frame: TcpFrame) -> bool:
        prefix_len = 8 * len(self.local_ip) if self.prefix_len is None else self.prefix_len
        if frame.dport != self.port or not prefix_match(frame.dst_ip, self.local_ip, prefix_len):
            return False
        vid = None if frame.vlan_tci is None else frame.vlan_tci & 0xFFF
        if self.vlan is VlanMatch.UNTAGGED:
            return vid is None
        if self.vlan is VlanMatch.TAGGED:
            return vid == self.vlan_id
        return True


@dataclasses.dataclass(frozen=True)
class Rule:
    """An acceptance rule (:class:`~hw.syn_cookie.layouts.SynRule`)."""
    remote_ip: bytes
    prefix_len: int
    action: RuleAction = RuleAction.ALLOW
    rate: int | None = None             # tokens per cap interval; None: not capped
    burst: int = 0

    def entry(self) -> int:
        """The :class:`~hw.syn_cookie.layouts.SynRule` the host writes with SYN_RULE."""
        return pack(SynRule, {
            "remote_ip": int.from_bytes(self.remote_ip, "big"), "prefix_len": self.prefix_len,
            "ipv6": int(len(self.remote_ip) == 16), "valid": 1, "action": self.action,
            "capped": int(self.rate is not None), "rate": self.rate or 0, "burst": self.burst})

    def matches(self, frame: TcpFrame) -> bool:
        return prefix_match(frame.src_ip, self.remote_ip, self.prefix_len)


@dataclasses.dataclass
class TokenBucket:
    """``burst`` tokens at most, ``rate`` more every cap interval (2**interval_log2 clocks).
    It starts full. The hardware refills every bucket once per interval; so does :meth:`at`."""
    rate: int
    burst: int
    interval_log2: int = params.SYN_CAP_INTERVAL_LOG2
    tokens: int | None = None
    interval: int = 0

    def __post_init__(self):
        if self.tokens is None:
            self.tokens = self.burst

    def at(self, now: int) -> "TokenBucket":
        """Bring the bucket to clock ``now`` (refills of the intervals passed)."""
        interval = now >> self.interval_log2
        if interval > self.interval:
            self.tokens = min(self.burst, self.tokens + self.rate * (interval - self.interval))
            self.interval = interval
        return self


# --- Connections and decisions --------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Connection:
    """The state a valid cookie rebuilds: what the CONNECTION event tells the host (with the ACK
    frame itself). ``snd_wscale`` None: the peer does not scale, so neither side does."""
    tuple: FourTuple
    iss: int
    irs: int
    mss: int
    snd_wscale: int | None
    rcv_wscale: int
    sack: bool
    ecn: bool
    timestamps: bool
    ts_recent: int | None
    service: int
    mss_index: int
    key_slot: int
    age: int

    def event_tag(self) -> int:
        """``Event.tag``: a :class:`~hw.syn_cookie.layouts.SynConnectionInfo`."""
        return pack(SynConnectionInfo, {
            "mss": self.mss,
            "snd_wscale": TS_WSCALE_NONE if self.snd_wscale is None else self.snd_wscale,
            "sack": int(self.sack), "ecn": int(self.ecn), "timestamps": int(self.timestamps),
            "mss_index": self.mss_index, "key_slot": self.key_slot, "age": self.age})

    def event_detail(self) -> int:
        """``Event.detail``: a :class:`~hw.syn_cookie.layouts.SynConnectionDetail`."""
        return pack(SynConnectionDetail, {"service": self.service,
                                          "rcv_wscale": self.rcv_wscale})


@dataclasses.dataclass(frozen=True)
class MatchResult:
    """What :meth:`SynCookieModel.match` decided (the matcher's verdict,
    :class:`~hw.syn_cookie.layouts.SynMatchVerdict`): the action, the service slot (a SYN or
    ACK that matched one), the rule slot (a SYN with a service whose source a rule holds) and
    the counters the matcher moves."""
    action: SynMatchAction
    service: int | None = None
    rule: int | None = None
    counters: tuple = ()


@dataclasses.dataclass
class Decision:
    """What :meth:`SynCookieModel.decide` did with a frame: the action, the counters it moved
    (name -> 1), the SYN-ACK (SYN_ACK), the rebuilt connection (CONNECTION) and the event that
    goes with the frame to the host (CONNECTION, ASK: ``(EventKind, tag, detail)``)."""
    action: Action
    counters: dict = dataclasses.field(default_factory=dict)
    reply: bytes | None = None
    connection: Connection | None = None
    event: tuple | None = None


def syn_ack_frame(request: dict) -> bytes:
    """The SYN-ACK frame for a :class:`~hw.syn_cookie.layouts.SynAckRequest` (field names as
    there; addresses as numbers, IPv4 in the low 32 bits). docs/syn_cookie.md "The SYN-ACK, byte
    for byte"."""
    r = request
    ip_bytes = 16 if r["ipv6"] else 4
    local_ip = r["local_ip"].to_bytes(ip_bytes, "big")
    remote_ip = r["remote_ip"].to_bytes(ip_bytes, "big")
    options = b"\x02\x04" + r["mss"].to_bytes(2, "big")
    if r["timestamps"]:
        options += (b"\x04\x02" if r["sack"] else b"\x01\x01") + b"\x08\x0a"
        options += r["ts_val"].to_bytes(4, "big") + r["ts_ecr"].to_bytes(4, "big")
        if r["wscale_ok"]:
            options += b"\x01\x03\x03" + bytes([r["wscale"]])
    tcp_len = 20 + len(options)
    flags = TcpFlags.SYN | TcpFlags.ACK | (TcpFlags.ECE if r["ecn"] else 0)
    tcp = bytearray(
        r["local_port"].to_bytes(2, "big") + r["remote_port"].to_bytes(2, "big")
        + r["seq"].to_bytes(4, "big") + r["ack"].to_bytes(4, "big")
        + bytes([(tcp_len // 4) << 4, int(flags)]) + r["window"].to_bytes(2, "big")
        + bytes(4) + options)
    pseudo = pseudo_header(local_ip, remote_ip, 6, tcp_len)
    tcp[16:18] = (~ones_complement_sum(pseudo + bytes(tcp)) & 0xFFFF).to_bytes(2, "big")
    if r["ipv6"]:
        ethertype = _ETH_IPV6
        ip = ((6 << 28 | r["tos"] << 20).to_bytes(4, "big") + tcp_len.to_bytes(2, "big")
              + bytes([6, r["ttl"]]) + local_ip + remote_ip)
    else:
        ethertype = _ETH_IPV4
        ip = bytearray(bytes([0x45, r["tos"]]) + (20 + tcp_len).to_bytes(2, "big")
                       + bytes(2) + b"\x40\x00" + bytes([r["ttl"], 6])
                       + bytes(2) + local_ip + remote_ip)
        ip[10:12] = (~ones_complement_sum(bytes(ip)) & 0xFFFF).to_bytes(2, "big")
    vlan = _ETH_VLAN.to_bytes(2, "big") + r["vlan_tci"].to_bytes(2, "big") if r["vlan"] else b""
    frame = (r["remote_mac"].to_bytes(6, "big") + r["local_mac"].to_bytes(6, "big") + vlan
             + ethertype.to_bytes(2, "big") + bytes(ip) + bytes(tcp))
    return frame + bytes(max(0, params.MIN_TX_FRAME_BYTES - len(frame)))


def _is_syn(flags: int) -> bool:
    return flags & (TcpFlags.SYN | TcpFlags.ACK | TcpFlags.RST | TcpFlags.FIN) == TcpFlags.SYN


def _is_ack(flags: int) -> bool:
    return flags & (TcpFlags.SYN | TcpFlags.ACK | TcpFlags.RST) == TcpFlags.ACK


def _ecn_setup(flags: int) -> bool:
    """An ECN-setup SYN (RFC 3168 §6.1.1): ECE and CWR both set."""
    return flags & (TcpFlags.ECE | TcpFlags.CWR) == TcpFlags.ECE | TcpFlags.CWR


class SynCookieModel:
    """The unit: tables, buckets, counters and the decision for a frame.

    Parameters
    ----------
    config : CookieConfig
    services, rules : sequences of Service / Rule (or None for an empty slot), slot order
    default_deny : a SYN that matches no rule is denied
    global_cap : ``(rate, burst)`` of the global token bucket, or None
    enable : the unit handles frames at all
    ttl, tos : of the SYN-ACKs
    """

    def __init__(self, config: CookieConfig, services=(), rules=(), *, default_deny=False,
                 global_cap=None, enable=True, ttl=params.SYN_TTL, tos=0):
        if len(services) > params.SYN_SERVICES or len(rules) > params.SYN_RULES:
            raise ValueError("more services or rules than the tables hold")
        self.config = config
        self.services = list(services)
        self.rules = list(rules)
        self.default_deny = default_deny
        self.enable = enable
        self.ttl, self.tos = ttl, tos
        self.rule_buckets = [self._bucket(r, 0) for r in self.rules]
        self.global_bucket = (TokenBucket(*global_cap, config.cap_interval_log2) if global_cap
                              else None)
        self.counters = dict.fromkeys(COUNTER_NAMES, 0)

    def _bucket(self, rule, now: int) -> "TokenBucket | None":
        """A capped rule's bucket, full at clock ``now``."""
        if rule is None or rule.rate is None:
            return None
        log2 = self.config.cap_interval_log2
        return TokenBucket(rule.rate, rule.burst, log2, interval=now >> log2)

    # -- the tables, as the host writes them (SYN_SERVICE, SYN_RULE) --

    def set_service(self, index: int, service: "Service | None"):
        """Write services slot ``index`` (None empties it)."""
        self.services.extend([None] * (index + 1 - len(self.services)))
        self.services[index] = service

    def set_rule(self, index: int, rule: "Rule | None", now: int):
        """Write rules slot ``index`` at clock ``now`` (None empties it): its bucket is full."""
        self.rules.extend([None] * (index + 1 - len(self.rules)))
        self.rule_buckets.extend([None] * (index + 1 - len(self.rule_buckets)))
        self.rules[index] = rule
        self.rule_buckets[index] = self._bucket(rule, now)

    # -- the decision --

    def decide(self, frame: bytes, now: int) -> Decision:
        """What the unit does with ``frame`` arriving at clock ``now`` (the CCB table missed)."""
        return self.decide_fields(parse_tcp_frame(frame) if self.enable else None, now)

    def decide_fields(self, tcp: "TcpFrame | None", now: int) -> Decision:
        """:meth:`decide` on a frame's fields (None: not good TCP, or the unit is off)."""
        result = self.match(tcp, now)
        if result.action is SynMatchAction.PASS:
            decision = Decision(Action.PASS)
        elif result.action is SynMatchAction.CHECK:
            decision = self._decide_ack(tcp, now)
        else:
            decision = self._decide_syn(tcp, result, now)
        for name in decision.counters:
            self.counters[name] += 1
        return decision

    def match(self, tcp: "TcpFrame | None", now: int) -> "MatchResult":
        """The classify and match stages alone (hw/syn_cookie/match.py): the frame's kind, its
        service, the rules and the caps, at clock ``now``. Takes the tokens of an accepted SYN
        but moves no counter (:meth:`decide_fields` does; ``MatchResult.counters`` says which
        of the matcher's it moves)."""
        if tcp is None:
            return MatchResult(SynMatchAction.PASS)
        if _is_syn(tcp.flags):
            index = self._service_of(tcp)
            if index is None:
                return MatchResult(SynMatchAction.TO_SLOW, counters=("syns_seen", "syns_to_slow"))
            rule, verdict = self._screen(tcp, now)
            if verdict is not None:
                action = (SynMatchAction.DENIED if verdict == "syns_denied"
                          else SynMatchAction.CAPPED)
                return MatchResult(action, index, rule, ("syns_seen", verdict))
            if self.services[index].mode is ServiceMode.ASK:
                return MatchResult(SynMatchAction.ASK, index, rule, ("syns_seen", "syns_asked"))
            return MatchResult(SynMatchAction.MAKE, index, rule, ("syns_seen",))
        if _is_ack(tcp.flags):
            index = self._service_of(tcp)
            if index is not None:
                return MatchResult(SynMatchAction.CHECK, index)
        return MatchResult(SynMatchAction.PASS)

    def accept(self, frame: bytes, now: int) -> Decision:
        """SYN_ACCEPT of an *ask* SYN: the SYN-ACK, as the immediate mode makes it at ``now``."""
        tcp = parse_tcp_frame(frame)
        index = None if tcp is None or not _is_syn(tcp.flags) else self._service_of(tcp)
        if index is None or self.services[index].mode is not ServiceMode.ASK:
            return Decision(Action.PASS)    # not an ask SYN: the command is refused
        decision = Decision(Action.SYN_ACK, {"asks_accepted": 1, "syns_answered": 1},
                            reply=self._syn_ack(tcp, self.services[index], now))
        for name in decision.counters:
            self.counters[name] += 1
        return decision

    def deny(self) -> Decision:
        """SYN_DENY of an *ask* SYN: counted, nothing sent."""
        self.counters["asks_denied"] += 1
        return Decision(Action.DROP, {"asks_denied": 1})

    def _service_of(self, tcp: TcpFrame) -> int | None:
        for index, service in enumerate(self.services):
            if service is not None and service.ipv6 == tcp.ipv6 and service.matches(tcp):
                return index
        return None

    def _decide_syn(self, tcp: TcpFrame, result: "MatchResult", now: int) -> Decision:
        if result.action is SynMatchAction.TO_SLOW:
            return Decision(Action.SLOW, {"syns_seen": 1, "syns_to_slow": 1})
        if result.action in (SynMatchAction.DENIED, SynMatchAction.CAPPED):
            return Decision(Action.DROP, dict.fromkeys(result.counters, 1))
        index = result.service
        service = self.services[index]
        if service.mode is ServiceMode.ASK:
            detail = pack(SynConnectionDetail, {"service": index, "rcv_wscale": service.wscale})
            return Decision(Action.ASK, {"syns_seen": 1, "syns_asked": 1},
                            event=(EventKind.SYN_ASK, 0, detail))
        return Decision(Action.SYN_ACK, {"syns_seen": 1, "syns_answered": 1},
                        reply=self._syn_ack(tcp, service, now))

    def _screen(self, tcp: TcpFrame, now: int) -> tuple:
        """Acceptance rules, then caps: ``(rule index or None, the counter of the reason to
        drop or None to accept)``. Tokens are taken only when every bucket that applies has
        one."""
        rule_index = next((i for i, r in enumerate(self.rules) if r is not None and r.matches(tcp)),
                          None)
        if rule_index is None:
            action, bucket = (RuleAction.DENY if self.default_deny else RuleAction.ALLOW), None
        else:
            action, bucket = self.rules[rule_index].action, self.rule_buckets[rule_index]
        if action is RuleAction.DENY:
            return rule_index, "syns_denied"
        buckets = [b.at(now) for b in (bucket, self.global_bucket) if b is not None]
        if any(b.tokens == 0 for b in buckets):
            return rule_index, "syns_capped"
        for b in buckets:
            b.tokens -= 1
        return rule_index, None

    def syn_offer(self, tcp: TcpFrame, service: Service) -> dict:
        """What a SYN accepted for ``service`` agrees: ``timestamps``, ``wscale`` (the peer's
        shift, None: no scaling), ``sack``, ``ecn``, the hashed ``options`` byte and the peer's
        ``mss_index``."""
        opts = tcp.options
        timestamps = opts.timestamps and service.timestamps
        wscale = opts.wscale if timestamps else None
        sack = timestamps and opts.sack_permitted and service.sack
        ecn = timestamps and service.ecn and _ecn_setup(tcp.flags)
        return {"timestamps": timestamps, "wscale": wscale, "sack": sack, "ecn": ecn,
                "options": options_byte(timestamps, wscale, sack, ecn),
                "mss_index": mss_index_for(opts.mss, self.config.mss_table(tcp.ipv6),
                                           tcp.ipv6)}

    def syn_ack_request(self, tcp: TcpFrame, service: Service, now: int) -> dict:
        """The :class:`~hw.syn_cookie.layouts.SynAckRequest` fields for an accepted SYN."""
        cfg, opts = self.config, tcp.options
        offer = self.syn_offer(tcp, service)
        timestamps, wscale, sack, ecn = (offer["timestamps"], offer["wscale"], offer["sack"],
                                         offer["ecn"])
        hashed, mss_index = offer["options"], offer["mss_index"]
        isn = encode_cookie(cfg, tcp.tuple, tcp.seq, hashed, mss_index, cfg.time(now))
        ts_val = cookie_ts_val(cfg.ts_clock(now), hashed & 0x3F) if timestamps else 0
        return {
            "local_mac": int.from_bytes(tcp.dst_mac, "big"),
            "remote_mac": int.from_bytes(tcp.src_mac, "big"),
            "vlan": int(tcp.vlan_tci is not None), "vlan_tci": tcp.vlan_tci or 0,
            "ipv6": int(tcp.ipv6),
            "local_ip": int.from_bytes(tcp.dst_ip, "big"),
            "remote_ip": int.from_bytes(tcp.src_ip, "big"),
            "ttl": self.ttl, "tos": self.tos,
            "local_port": tcp.dport, "remote_port": tcp.sport,
            "seq": isn, "ack": (tcp.seq + 1) & MASK32,
            "window": service.window, "mss": service.mss,
            "wscale_ok": int(wscale is not None), "wscale": service.wscale,
            "sack": int(sack), "timestamps": int(timestamps),
            "ts_val": ts_val, "ts_ecr": opts.ts_val if timestamps else 0,
            "ecn": int(ecn),
        }

    def _syn_ack(self, tcp: TcpFrame, service: Service, now: int) -> bytes:
        return syn_ack_frame(self.syn_ack_request(tcp, service, now))

    def _decide_ack(self, tcp: TcpFrame, now: int) -> Decision:
        cfg, opts = self.config, tcp.options
        index = self._service_of(tcp)
        hashed = ack_options(opts.ts_ecr if opts.timestamps else None)
        isn, irs = (tcp.ack - 1) & MASK32, (tcp.seq - 1) & MASK32
        check = check_cookie(cfg, tcp.tuple, isn, irs, hashed, cfg.time(now))
        if check.verdict is Verdict.INVALID:
            return Decision(Action.SLOW, {"cookies_invalid": 1})
        if check.verdict is Verdict.EXPIRED:
            return Decision(Action.SLOW, {"cookies_expired": 1})
        wscale = None if not opts.timestamps or hashed & 0xF == TS_WSCALE_NONE else hashed & 0xF
        service = self.services[index]
        connection = Connection(
            tuple=tcp.tuple, iss=isn, irs=irs,
            mss=cfg.mss_table(tcp.ipv6)[check.mss_index],
            snd_wscale=wscale, rcv_wscale=service.wscale if wscale is not None else 0,
            sack=bool(hashed & 0x10), ecn=bool(hashed & 0x20), timestamps=opts.timestamps,
            ts_recent=opts.ts_val, service=index, mss_index=check.mss_index,
            key_slot=check.key_slot, age=check.age)
        return Decision(Action.CONNECTION, {"cookies_valid": 1}, connection=connection,
                        event=(EventKind.CONNECTION, connection.event_tag(),
                               connection.event_detail()))
