"""ACK builder: one TCP segment without payload per :class:`~hw.layouts.AckRequest`, as MAC TX
beats, both checksums computed.

Ref: docs/fast_path.md ("ACK frames, byte for byte"); RFC 791 §3.1 (IPv4 header), RFC 8200 §3
and §8.1 (IPv6 header, upper-layer checksum), RFC 9293 §3.1 (TCP header, pseudo-header),
RFC 7323 §3 (timestamps option), IEEE 802.1Q §9 (VLAN tag), RFC 1071 (the checksum).

::

    requests ─► request register ─┬─► checksum tree: 5 registered stages ──┐
                                  │   (16-bit words summed 4 at a time,      │
                                  │    then the two folds, then complement)  │
                                  ├─► word selects (registered, per word)    │
                                  │        │                                 │
                                  └─► frame: 12 words, each one of its few ◄─┘
                                      patterns (fields, checksums, constants)
                                          │ load
                                          ▼
                                      frame shift register (96 bytes) ─► skid output ─► o

Why so: the shortest ACK is 8 beats, so a new frame is needed only every 8 clocks, never every
clock. The request register therefore holds one request while the frame before it leaves, and the
checksum stages run free from it, without valid bits of their own: a chain of flip-flops counting
clocks since the request arrived says when the sums are complete (:data:`CHECKSUM_STAGES`). Each
stage adds at most four 16-bit words, so no carry chain is longer than about 20 bits.

The frame has 8 variants (IPv4/IPv6 × VLAN × timestamps), each a fixed byte pattern of request
fields, checksums and constants. Word by word (8 bytes) the variants give 1 to 8 distinct
patterns, so each word has its own select register, decoded from the variant bits a clock after
the request arrives: no variant bit fans out to the whole frame, and the word is a small mux of
registers. The frame is loaded into a 96-byte shift register as the previous frame's last beat
leaves; the output takes the shift register's low word each clock, so the per-beat path is a
shift, never a wide beat-select mux. The shift register's controls (load, push, enable) reach 768
flip-flops each, so they are flip-flops themselves, computed a clock ahead from the next state of
what they depend on. The output leaves from registers with a skid register
(:class:`~hw.lib.skid.SkidOutput`), so ``o.ready`` reaches only those registers and the flip-flops
that compute the controls.

Timing of one request: taken on clock edge 0, checksums complete after edge 5, frame loaded on
edge 6, first beat on ``o`` after edge 7. The next request is taken on the edge after a load, so
with requests waiting and ``o.ready`` high the frames leave back to back (one ACK per 8 clocks for
the shortest ones, 60 bytes).
"""

from amaranth import Cat, Const, Module, Mux
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from .. import params
from ..layouts import (
    ETH_HEADER_BYTES,
    IPV4_MIN_HEADER_BYTES,
    IPV6_HEADER_BYTES,
    TCP_MIN_HEADER_BYTES,
    VLAN_TAG_BYTES,
    AckRequest,
    EtherType,
    IpProto,
    RxBeat,
)
from ..lib.header_frame import (
    CHECKSUM_STAGES,
    FrameSender,
    header_checksums,
    request_register,
    variant_frame,
    words16,
)
from ..lib.header_frame import be_bytes as _be

__all__ = ["AckBuilder", "CHECKSUM_STAGES", "FRAME_BEATS_MAX", "ack_frame_length", "frame_beats"]

_BEAT = params.BEAT_BYTES
_TS_OPTION_BYTES = 12               # NOP, NOP, kind 8, length 10, TSval, TSecr
_TS_OPTION_WORDS = (0x0101, 0x080A)
_IPV4_DF = 0x4000
_TCP = IpProto.TCP.value

def ack_frame_length(ipv6, vlan, timestamps):
    """Bytes of an ACK frame of this variant on MAC TX, padding included."""
    length = (ETH_HEADER_BYTES + VLAN_TAG_BYTES * vlan
              + (IPV6_HEADER_BYTES if ipv6 else IPV4_MIN_HEADER_BYTES)
              + TCP_MIN_HEADER_BYTES + _TS_OPTION_BYTES * timestamps)
    return max(length, params.MIN_TX_FRAME_BYTES)


def frame_beats(ipv6, vlan, timestamps):
    """MAC beats of an ACK frame of this variant."""
    return -(-ack_frame_length(ipv6, vlan, timestamps) // _BEAT)


#: Beats of the longest ACK frame (IPv6, VLAN, timestamps: 90 bytes).
FRAME_BEATS_MAX = frame_beats(1, 1, 1)

_VARIANTS = [(ipv6, vlan, ts) for ipv6 in (0, 1) for vlan in (0, 1) for ts in (0, 1)]


def _tcp_length(ts):
    return TCP_MIN_HEADER_BYTES + _TS_OPTION_BYTES * ts


def _data_offset_byte(ts):
    return (_tcp_length(ts) // 4) << 4


def _tcp_constant(ts):
    """The constant words of the TCP checksum: the pseudo-header's protocol and length (the same
    sum for IPv4 and IPv6), the data offset, the timestamps option's kind bytes."""
    return (_TCP + _tcp_length(ts) + (_data_offset_byte(ts) << 8)
            + (sum(_TS_OPTION_WORDS) if ts else 0))


def _ipv4_constant(ts):
    """The constant words of the IPv4 header checksum: version/IHL, total length, DF, protocol."""
    return (0x4500 + IPV4_MIN_HEADER_BYTES + _tcp_length(ts) + _IPV4_DF + _TCP)


def _frame_bytes(req, ip_csum, tcp_csum, ipv6, vlan, ts):
    """The frame of one variant, as a list of byte Values and ints (docs/fast_path.md)."""
    out = _be(req.remote_mac, 6) + _be(req.local_mac, 6)
    if vlan:
        out += _be(EtherType.VLAN.value, 2) + _be(req.vlan_tci, 2)
    out += _be((EtherType.IPV6 if ipv6 else EtherType.IPV4).value, 2)
    tcp_length = _tcp_length(ts)
    if ipv6:
        out += [Cat(req.tos[4:8], Const(6, 4)), Cat(Const(0, 4), req.tos[0:4]), 0, 0]
        out += _be(tcp_length, 2) + [_TCP, req.ttl]
        out += _be(req.local_ip, 16) + _be(req.remote_ip, 16)
    else:
        out += [0x45, req.tos] + _be(IPV4_MIN_HEADER_BYTES + tcp_length, 2) + _be(req.ip_id, 2)
        out += _be(_IPV4_DF, 2) + [req.ttl, _TCP] + _be(ip_csum, 2)
        out += _be(req.local_ip[:32], 4) + _be(req.remote_ip[:32], 4)
    out += _be(req.local_port, 2) + _be(req.remote_port, 2) + _be(req.seq, 4) + _be(req.ack, 4)
    out += [_data_offset_byte(ts), req.flags] + _be(req.window, 2) + _be(tcp_csum, 2) + [0, 0]
    if ts:
        out += [0x01, 0x01, 0x08, 0x0A] + _be(req.ts_val, 4) + _be(req.ts_ecr, 4)
    return out


class AckBuilder(wiring.Component):
    """TCP ACK frames from :class:`~hw.layouts.AckRequest` s, one frame per request, in order.

    Members
    -------
    requests : In(stream.Signature(AckRequest))
        One segment without payload each (docs/fast_path.md, "ACK frames, byte for byte"). Taken
        when the request register is empty: ``ready`` is a flip-flop.
    o : Out(stream.Signature(RxBeat))
        The frames, 8 bytes a beat as MAC TX takes them (no FCS), padded with zeros to
        ``MIN_TX_FRAME_BYTES``; back to back while requests wait and ``o.ready`` is high.
        ``valid`` and ``payload`` are flip-flops.
    """

    requests: In(stream.Signature(AckRequest))
    o: Out(stream.Signature(RxBeat))

    def elaborate(self, platform):
        m = Module()

        # --- Request register: holds the next frame's request until the frame is loaded --------
        sender = FrameSender(m, self.o, FRAME_BEATS_MAX)
        load = sender.load
        req, aged = request_register(m, self.requests, AckRequest, load)

        # --- Checksums: five registered stages, running free from the request register ----------
        # IPv4 keeps only the low 32 bits of each address: the others count as zero.
        def addr_words(addr):
            return [w if k < 2 else w & req.ipv6.replicate(16)
                    for k, w in enumerate(words16(addr, 8))]

        ts_terms = [w & req.timestamps.replicate(16)
                    for w in words16(req.ts_val, 2) + words16(req.ts_ecr, 2)]
        ip_csum, tcp_csum = header_checksums(
            m,
            address_terms=addr_words(req.local_ip) + addr_words(req.remote_ip),
            tcp_terms=([req.local_port, req.remote_port] + words16(req.seq, 2)
                       + words16(req.ack, 2) + [req.flags, req.window] + ts_terms),
            ip_terms=[req.tos, req.ip_id, Cat(Const(0, 8), req.ttl),
                      Mux(req.timestamps, _ipv4_constant(1), _ipv4_constant(0))],
            tcp_late_terms=[Mux(req.timestamps, _tcp_constant(1), _tcp_constant(0))])

        # --- The frame of the request's variant, word by word (registered selects) -------------
        variant = Cat(req.timestamps, req.vlan, req.ipv6)
        built, built_beats_m1, built_keep_last = variant_frame(m, variant, {
            ts | vlan << 1 | ipv6 << 2: (_frame_bytes(req, ip_csum, tcp_csum, ipv6, vlan, ts),
                                         ack_frame_length(ipv6, vlan, ts))
            for ipv6, vlan, ts in _VARIANTS}, FRAME_BEATS_MAX)

        # --- Sender: the frame shift register, one beat a clock --------------------------------
        sender.send(built, built_beats_m1, built_keep_last, complete_next=aged[-2])
        return m
