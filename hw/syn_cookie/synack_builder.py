"""SYN-ACK builder: the SYN-ACK frame of a :class:`~hw.syn_cookie.layouts.SynAckRequest` as MAC TX
beats, both checksums computed.

Ref: docs/syn_cookie.md §4 ("The SYN-ACK, byte for byte"), the golden model
``sim.reference.syn_cookie.syn_ack_frame``; RFC 791 §3.1 (IPv4 header), RFC 8200 §3 and §8.1
(IPv6 header, upper-layer checksum), RFC 9293 §3.1-3.2 (TCP header, MSS option), RFC 7323 §2-3
(window scale, timestamps), RFC 2018 §2 (SACK-permitted), RFC 3168 §6.1.1 (ECE on the SYN-ACK),
IEEE 802.1Q §9 (VLAN tag), RFC 1071 (the checksum).

The ACK builder's structure (hw/fast_path/ack_builder.py, its parts in hw/lib/header_frame.py)::

    requests ─► request register ─┬─► checksum tree: 5 registered stages ──┐
                                  ├─► word selects (registered, per word)    │
                                  └─► frame: 13 words, each one of its few ◄─┘
                                      patterns (fields, checksums, constants)
                                          │ load
                                          ▼
                                      frame shift register (104 bytes) ─► skid output ─► o

The frame has 12 variants: IPv4/IPv6 × VLAN × options (MSS only; MSS, timestamps; MSS,
timestamps, window scale). SACK-permitted and ECN do not change the layout: SACK picks the two
bytes before TSopt (``04 02`` or ``01 01``), ECN one bit of the flags byte, both wired from the
request into the frame's patterns. As the model, the builder sends SACK-permitted and window
scale only with timestamps (``sack`` and ``wscale_ok`` are ignored without them).

Frame lengths (bytes / beats): IPv4 60 / 8 (MSS only), 70 / 9 (timestamps), 74 / 10 (and window
scale); with a VLAN tag 62 / 8, 74 / 10, 78 / 10; IPv6 78 / 10, 90 / 12, 94 / 12; IPv6 with a VLAN
tag 82 / 11, 94 / 12, 98 / 13.

Timing of one request: taken on clock edge 0, checksums complete after edge 5, frame loaded on
edge 6, first beat on ``o`` after edge 7 (:data:`LATENCY`). The next request is taken on the edge
after a load, so with requests waiting and ``o.ready`` high the frames leave back to back, one
beat a clock, whatever their sizes (the shortest frame, 8 beats, is longer than the 7 clocks a
request takes to become a loaded frame).
"""

import itertools

from amaranth import Cat, Const, Module, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from .. import params
from ..layouts import (
    ETH_HEADER_BYTES,
    IPV4_MIN_HEADER_BYTES,
    IPV6_HEADER_BYTES,
    TCP_MIN_HEADER_BYTES,
    VLAN_TAG_BYTES,
    EtherType,
    IpProto,
    RxBeat,
    TcpFlags,
)
from ..lib.header_frame import (
    CHECKSUM_STAGES,
    FrameSender,
    be_bytes,
    header_checksums,
    request_register,
    variant_frame,
    words16,
)
from .layouts import SynAckRequest

__all__ = ["SynAckBuilder", "LATENCY", "FRAME_BEATS_MAX", "syn_ack_frame_length",
           "syn_ack_frame_beats"]

_BEAT = params.BEAT_BYTES
_TCP = IpProto.TCP.value
_IPV4_DF = 0x4000
_MSS_OPTION_BYTES = 4               # kind 2, length 4, MSS
_TS_OPTION_BYTES = 12               # SACK-permitted (kind 4, length 2) or NOP, NOP; TSopt
_WS_OPTION_BYTES = 4                # NOP, kind 3, length 3, shift
_MSS_KIND_WORD = 0x0204
_SACK_PERMITTED_WORD = 0x0402
_NOP_NOP_WORD = 0x0101
_TS_KIND_WORD = 0x080A
_WS_KIND_WORDS = (0x0103, 0x0300)   # the shift itself is the low byte of the second word
_SYN_ACK = TcpFlags.SYN | TcpFlags.ACK

#: Clocks from the edge that takes a request to the first beat of its frame on ``o`` (valid after
#: that many edges), with the builder idle and ``o.ready`` high.
LATENCY = CHECKSUM_STAGES + 2


def _tcp_length(ts, ws):
    return TCP_MIN_HEADER_BYTES + _MSS_OPTION_BYTES + _TS_OPTION_BYTES * ts + _WS_OPTION_BYTES * ws


def syn_ack_frame_length(ipv6, vlan, timestamps, wscale):
    """Bytes of a SYN-ACK of this variant on MAC TX, padding included (``wscale``: the window
    scale option is sent, which needs ``timestamps``)."""
    length = (ETH_HEADER_BYTES + VLAN_TAG_BYTES * vlan
              + (IPV6_HEADER_BYTES if ipv6 else IPV4_MIN_HEADER_BYTES)
              + _tcp_length(timestamps, wscale))
    return max(length, params.MIN_TX_FRAME_BYTES)


def syn_ack_frame_beats(ipv6, vlan, timestamps, wscale):
    """MAC beats of a SYN-ACK of this variant: the clocks it takes on ``o``."""
    return -(-syn_ack_frame_length(ipv6, vlan, timestamps, wscale) // _BEAT)


#: (ipv6, vlan, timestamps, window scale) of every frame layout.
VARIANTS = [(ipv6, vlan, ts, ws) for ipv6 in (0, 1) for vlan in (0, 1)
            for ts, ws in ((0, 0), (1, 0), (1, 1))]

#: Beats of the longest SYN-ACK (IPv6, VLAN, timestamps and window scale: 98 bytes).
FRAME_BEATS_MAX = syn_ack_frame_beats(1, 1, 1, 1)


def _variant_code(ipv6, vlan, ts, ws):
    return ts | ws << 1 | vlan << 2 | ipv6 << 3


def _data_offset_byte(ts, ws):
    return (_tcp_length(ts, ws) // 4) << 4


def _tcp_constant(ts, ws, sack, ecn):
    """The constant words of the TCP checksum for these options: the pseudo-header's protocol
    and length (the same sum for IPv4 and IPv6), data offset and flags, the options' kind bytes."""
    flags = int(_SYN_ACK | (TcpFlags.ECE if ecn else 0))
    total = _TCP + _tcp_length(ts, ws) + (_data_offset_byte(ts, ws) << 8 | flags) + _MSS_KIND_WORD
    if ts:
        total += (_SACK_PERMITTED_WORD if sack else _NOP_NOP_WORD) + _TS_KIND_WORD
    if ws:
        total += sum(_WS_KIND_WORDS)
    return total


def _ipv4_constant(ts, ws):
    """The constant words of the IPv4 header checksum: version/IHL, total length, DF, protocol."""
    return 0x4500 + IPV4_MIN_HEADER_BYTES + _tcp_length(ts, ws) + _IPV4_DF + _TCP


def _frame_bytes(req, sack, ecn, ip_csum, tcp_csum, ipv6, vlan, ts, ws):
    """The frame of one variant, as a list of byte Values and ints (docs/syn_cookie.md §4)."""
    out = be_bytes(req.remote_mac, 6) + be_bytes(req.local_mac, 6)
    if vlan:
        out += be_bytes(EtherType.VLAN.value, 2) + be_bytes(req.vlan_tci, 2)
    out += be_bytes((EtherType.IPV6 if ipv6 else EtherType.IPV4).value, 2)
    tcp_length = _tcp_length(ts, ws)
    if ipv6:
        out += [Cat(req.tos[4:8], Const(6, 4)), Cat(Const(0, 4), req.tos[0:4]), 0, 0]
        out += be_bytes(tcp_length, 2) + [_TCP, req.ttl]
        out += be_bytes(req.local_ip, 16) + be_bytes(req.remote_ip, 16)
    else:
        out += [0x45, req.tos] + be_bytes(IPV4_MIN_HEADER_BYTES + tcp_length, 2) + [0, 0]
        out += be_bytes(_IPV4_DF, 2) + [req.ttl, _TCP] + be_bytes(ip_csum, 2)
        out += be_bytes(req.local_ip[:32], 4) + be_bytes(req.remote_ip[:32], 4)
    flags = Cat(Const(int(_SYN_ACK), 6), ecn, Const(0, 1))     # ECE is bit 6
    out += be_bytes(req.local_port, 2) + be_bytes(req.remote_port, 2)
    out += be_bytes(req.seq, 4) + be_bytes(req.ack, 4)
    out += [_data_offset_byte(ts, ws), flags] + be_bytes(req.window, 2)
    out += be_bytes(tcp_csum, 2) + [0, 0]
    out += be_bytes(_MSS_KIND_WORD, 2) + be_bytes(req.mss, 2)
    if ts:
        # SACK-permitted (04 02) or NOP, NOP (01 01), as wires from the sack bit.
        out += [Cat(~sack, Const(0, 1), sack, Const(0, 5)), Cat(~sack, sack, Const(0, 6))]
        out += be_bytes(_TS_KIND_WORD, 2) + be_bytes(req.ts_val, 4) + be_bytes(req.ts_ecr, 4)
    if ws:
        out += be_bytes(_WS_KIND_WORDS[0], 2) + [_WS_KIND_WORDS[1] >> 8]
        out += [Cat(req.wscale, Const(0, 4))]
    return out


class SynAckBuilder(wiring.Component):
    """SYN-ACK frames from :class:`~hw.syn_cookie.layouts.SynAckRequest` s, one frame per
    request, in order.

    Members
    -------
    requests : In(stream.Signature(SynAckRequest))
        One SYN-ACK each (docs/syn_cookie.md §4). Taken when the request register is empty:
        ``ready`` is a flip-flop.
    o : Out(stream.Signature(RxBeat))
        The frames, 8 bytes a beat as MAC TX takes them (no FCS), padded with zeros to
        ``MIN_TX_FRAME_BYTES``; back to back while requests wait and ``o.ready`` is high (the
        same beats as the ACK builder's, for an input of the TX arbiter). ``valid`` and
        ``payload`` are flip-flops.
    """

    requests: In(stream.Signature(SynAckRequest))
    o: Out(stream.Signature(RxBeat))

    def elaborate(self, platform):
        m = Module()

        # --- Request register: holds the next frame's request until the frame is loaded --------
        sender = FrameSender(m, self.o, FRAME_BEATS_MAX)
        load = sender.load
        req, aged = request_register(m, self.requests, SynAckRequest, load)

        # The options sent: SACK-permitted and window scale only with timestamps (as the model).
        ts = req.timestamps
        ws = req.timestamps & req.wscale_ok
        sack = req.sack & req.timestamps
        ecn = req.ecn

        # --- Checksums: five registered stages, running free from the request register ----------
        # IPv4 keeps only the low 32 bits of each address: the others count as zero.
        def addr_words(addr):
            return [w if k < 2 else w & req.ipv6.replicate(16)
                    for k, w in enumerate(words16(addr, 8))]

        ts_terms = [w & ts.replicate(16) for w in words16(req.ts_val, 2) + words16(req.ts_ecr, 2)]
        # Each bit of a constant is a LUT of the few request bits it depends on.
        tcp_constant = Signal(20)
        with m.Switch(Cat(ecn, sack, ws, ts)):
            # window scale and SACK only with timestamps
            for t, w, s, e in sorted({(t, w & t, s & t, e)
                                      for t, w, s, e in itertools.product((0, 1), repeat=4)}):
                with m.Case(e | s << 1 | w << 2 | t << 3):
                    m.d.comb += tcp_constant.eq(_tcp_constant(t, w, s, e))
        ipv4_constant = Signal(17)
        with m.Switch(Cat(ws, ts)):
            for t, w in ((0, 0), (1, 0), (1, 1)):
                with m.Case(w | t << 1):
                    m.d.comb += ipv4_constant.eq(_ipv4_constant(t, w))
        ip_csum, tcp_csum = header_checksums(
            m,
            address_terms=addr_words(req.local_ip) + addr_words(req.remote_ip),
            tcp_terms=([req.local_port, req.remote_port] + words16(req.seq, 2)
                       + words16(req.ack, 2) + [req.window, req.mss] + ts_terms
                       + [req.wscale & ws.replicate(4), tcp_constant]),
            ip_terms=[req.tos, Cat(Const(0, 8), req.ttl), ipv4_constant])

        # --- The frame of the request's variant, word by word (registered selects) -------------
        variant = Cat(ts, ws, req.vlan, req.ipv6)
        built, built_beats_m1, built_keep_last = variant_frame(m, variant, {
            _variant_code(*v): (_frame_bytes(req, sack, ecn, ip_csum, tcp_csum, *v),
                                syn_ack_frame_length(*v))
            for v in VARIANTS}, FRAME_BEATS_MAX)

        # --- Sender: the frame shift register, one beat a clock --------------------------------
        sender.send(built, built_beats_m1, built_keep_last, complete_next=aged[-2])
        return m
