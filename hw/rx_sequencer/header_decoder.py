"""Header decoder: the first 104 bytes of a frame in, every header field and header check out.

Ref: IEEE 802.3 §3.2 and IEEE 802.1Q §9 (Ethernet II, VLAN tags); RFC 791 (IPv4); RFC 8200 (IPv6);
RFC 9293 §3.1 (TCP); RFC 768 (UDP). The rules, field by field, are in docs/status_word.md.

The decoder is a fixed-latency pipeline that accepts one header window per clock, so a frame of any
length, runts included, can be decoded at line rate. It cannot know the length of a frame longer
than the window; every check that needs it (the IP datagram running past the frame, oversize) and
the checksums are left to the sequencer's finalize stage, which gets the ``ip_end`` and
checksum-region offsets decoded here.

Stages: 1 VLAN tags -- 2 EtherType, select the IP header -- 3 IP fields and checks, L4 header
to 16 bytes -- 4 L4 header to 4 bytes -- 5 L4 fields and checks, hash input; then the Toeplitz
hash, which follows the decoded header on an output of its own.
"""

from amaranth import Array, Cat, Const, Module, Mux, Signal, Value
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from .. import params
from ..layouts import (
    ETH_HEADER_BYTES,
    IPV4_DST_OFFSET,
    IPV4_FLAGS_FRAGMENT_OFFSET,
    IPV4_MIN_HEADER_BYTES,
    IPV4_PROTOCOL_OFFSET,
    IPV4_SRC_OFFSET,
    IPV4_TOTAL_LENGTH_OFFSET,
    IPV6_DST_OFFSET,
    IPV6_EXTENSION_HEADERS,
    IPV6_FRAGMENT_HEADER,
    IPV6_HEADER_BYTES,
    IPV6_NEXT_HEADER_OFFSET,
    IPV6_PAYLOAD_LENGTH_OFFSET,
    IPV6_SRC_OFFSET,
    TCP_MIN_HEADER_BYTES,
    VLAN_TAG_BYTES,
    EtherType,
    HashType,
    IpProto,
    L3Type,
    L4Type,
    RxStatus,
)
from ..lib.netorder import be_field, byte_at
from .toeplitz import ToeplitzHash

__all__ = ["DecodedHeader", "RegionBounds", "HeaderDecoder"]

#: Bytes of the IP header the decoder looks at (the IPv6 fixed header; IPv4 needs 20).
L3_WINDOW_BYTES = IPV6_HEADER_BYTES
#: Bytes of the L4 header the decoder looks at (the fixed TCP header; UDP needs 8).
L4_WINDOW_BYTES = TCP_MIN_HEADER_BYTES
#: Possible IP header offsets: 14 + 4 x VLAN tags.
L3_OFFSETS = tuple(ETH_HEADER_BYTES + VLAN_TAG_BYTES * tags for tags in range(3))
#: Possible L4 offsets: IP offset (2 mod 4) + 4 x IHL or + 40, so 2 mod 4, from 34 up to 22 + 60.
L4_OFFSETS = tuple(range(34, 22 + 60 + 1, 4))


class DecodedHeader(data.Struct):
    """What the decoder knows of a frame, handed to the finalize stage through the header FIFO.

    Members
    -------
    status : RxStatus
        Every status field the header determines; ``length``, the checksum verdicts, ``candidate``,
        ``malformed``, ``errors.oversize`` and the ``ip_end > length`` truncation are filled in
        later.
    ip_end : 17 bits
        Offset of the end of the IP datagram (Ethernet padding starts here).
    addr_lo, addr_hi : 8 bits
        The IP addresses' byte range, which is the address part of the TCP/UDP pseudo-header.
    pseudo_sum : 17 bits
        The pseudo-header's protocol and TCP/UDP length words, added (its addresses are summed
        from the frame bytes).
    l4_csum_check : 1 bit
        Verify the TCP/UDP checksum (if the frame turns out not malformed).
    l4_csum_force_bad : 1 bit
        UDP over IPv6 with checksum 0: wrong whatever the sum (RFC 8200 §8.1).
    """
    status: RxStatus
    ip_end: 17
    addr_lo: 8
    addr_hi: 8
    pseudo_sum: 17
    l4_csum_check: 1
    l4_csum_force_bad: 1


class RegionBounds(data.Struct):
    """What the frame checker needs of a decoded header for every beat: the checksum regions.

    Members
    -------
    l3_offset, l4_offset, addr_lo, addr_hi : 8 bits
        IPv4 header ``[l3_offset, l4_offset)``; pseudo-header addresses ``[addr_lo, addr_hi)``.
    ip_end : 17 bits
        The TCP/UDP segment is ``[l4_offset, ip_end)``.
    ip_csum_check, l4_csum_check : 1 bit
        Sum the IPv4 header / the TCP/UDP segment at all.
    """
    l3_offset: 8
    l4_offset: 8
    addr_lo: 8
    addr_hi: 8
    ip_end: 17
    ip_csum_check: 1
    l4_csum_check: 1

    @staticmethod
    def assign(bounds, header):
        """Statements setting ``bounds`` (a RegionBounds view) from ``header`` (DecodedHeader)."""
        return [
            bounds.l3_offset.eq(header.status.l3_offset),
            bounds.l4_offset.eq(header.status.l4_offset),
            bounds.addr_lo.eq(header.addr_lo),
            bounds.addr_hi.eq(header.addr_hi),
            bounds.ip_end.eq(header.ip_end),
            bounds.ip_csum_check.eq(header.status.ip_csum_valid),
            bounds.l4_csum_check.eq(header.l4_csum_check),
        ]


class HeaderDecoder(wiring.Component):
    """Decode the header window of one frame per clock.

    Members
    -------
    window : In(8 * HEADER_WINDOW_BYTES)
        The first bytes of the frame, byte ``k`` at bits ``[8k, 8k+8)``; bytes past the frame are 0.
    window_len : In(7)
        Bytes of the frame in the window: the frame length, or the window size for longer frames.
    valid : In(1)
        ``window`` holds a frame this clock.
    key : In(320)
        RSS key, byte 0 in the top bits.
    info : Out(DecodedHeader)
        Decoded header, ``latency`` clocks after its window; ``status.hash`` reads 0.
    info_valid : Out(1)
    hash : Out(32)
        The frame's Toeplitz hash (0 if it has none), ``hash_latency`` clocks after its window:
        one per decoded header, in the same order.
    hash_valid : Out(1)
    hash_overrun : Out(1)
        Two frames needing a hash came closer than the Toeplitz unit allows. Cannot happen with
        ``RSS_HASH_PASSES`` = 4 (see docs/rx_sequencer.md); brought out so tests can prove it.
    """

    window: In(8 * params.HEADER_WINDOW_BYTES)
    window_len: In(range(params.HEADER_WINDOW_BYTES + 1))
    valid: In(1)
    key: In(8 * params.RSS_KEY_BYTES)
    info: Out(DecodedHeader)
    info_valid: Out(1)
    hash: Out(32)
    hash_valid: Out(1)
    hash_overrun: Out(1)

    def __init__(self, *, toeplitz_passes=params.RSS_HASH_PASSES):
        self._toeplitz_passes = toeplitz_passes
        super().__init__()

    #: Clocks from a window in to its decoded header out.
    latency = 5

    @property
    def hash_latency(self):
        """Clocks from a window in to its hash out."""
        return self.latency + ToeplitzHash.latency_for(self._toeplitz_passes)

    def elaborate(self, platform):
        m = Module()
        m.submodules.toeplitz = toeplitz = ToeplitzHash(passes=self._toeplitz_passes)
        window_bits = 8 * params.HEADER_WINDOW_BYTES
        len_shape = range(params.HEADER_WINDOW_BYTES + 1)

        # Stage 1 -- layer 2: up to two VLAN tags; the frame-length tests layer 2 needs.
        s1_valid = Signal()
        s1_window = Signal(window_bits)
        s1_len = Signal(len_shape)
        s1_tags = Signal(2)
        s1_vlan0 = Signal(12)
        s1_vlan1 = Signal(12)
        s1_ethertypes = Signal(48)      # the EtherType fields at 12, 16 and 20
        s1_runt = Signal()
        s1_len_ge = Signal(3)           # frame reaches byte 14, 18, 22 (end of 0, 1, 2 tags)

        win = self.window

        def is_tag(ethertype):
            return (ethertype == EtherType.VLAN.value) | (ethertype == EtherType.QINQ.value)

        # The EtherType that ends the Ethernet header with 0, 1 and 2 tags: the two bytes before
        # the IP header would start.
        ethertype0, ethertype1, ethertype2 = (be_field(win, off - 2, 2) for off in L3_OFFSETS)
        tag1 = is_tag(ethertype0)
        tag2 = tag1 & is_tag(ethertype1)
        # Index in L4_OFFSETS of the L4 header for 0, 1 and 2 tags (tags + IHL - 5 for IPv4, tags
        # + 5 otherwise; only used for IP), so stage 2 just picks one and stage 3 starts selecting.
        s1_l4_select = Signal(12)
        l4_select = []
        # Likewise, for each tag count: the frame ends before the IPv4 header's options do.
        s1_short_ip4 = Signal(3)
        short_ip4 = []
        for tags, (off, ethertype) in enumerate(zip(L3_OFFSETS,
                                                    (ethertype0, ethertype1, ethertype2))):
            ihl_at = byte_at(win, off)[0:4]
            l4_select.append(Mux(ethertype == EtherType.IPV4.value, tags + ihl_at - 5,
                                 tags + 5)[:4])
            short_ip4.append(self.window_len < off + 4 * ihl_at)
        m.d.sync += [
            s1_valid.eq(self.valid),
            s1_window.eq(win),
            s1_len.eq(self.window_len),
            s1_tags.eq(tag1 + tag2),
            s1_vlan0.eq(be_field(win, 14, 2)[:12]),
            s1_vlan1.eq(be_field(win, 18, 2)[:12]),
            s1_ethertypes.eq(Cat(ethertype0, ethertype1, ethertype2)),
            s1_runt.eq(self.window_len < params.MIN_FRAME_BYTES),
            s1_len_ge.eq(Cat(*(self.window_len >= off for off in L3_OFFSETS))),
            s1_l4_select.eq(Cat(*l4_select)),
            s1_short_ip4.eq(Cat(*short_ip4)),
        ]

        # Stage 2 -- the innermost EtherType and the network layer; select the IP header (40 bytes
        # at 14, 18 or 22).
        s2 = _delayed(m, "s2", s1_valid, s1_window, s1_len, s1_tags, s1_vlan0, s1_vlan1, s1_runt)
        s2_ethertype = Signal(16)
        s2_l2_valid = Signal()
        s2_l3 = Signal(L3Type)
        innermost = s1_ethertypes.word_select(s1_tags, 16)
        l2_valid = ~s1_runt & s1_len_ge.bit_select(s1_tags, 1)
        m.d.sync += [
            s2_ethertype.eq(innermost),
            s2_l2_valid.eq(l2_valid),
            s2_l3.eq(L3Type.OTHER),
        ]
        with m.If(l2_valid):
            with m.Switch(innermost):
                with m.Case(EtherType.IPV4.value):
                    m.d.sync += s2_l3.eq(L3Type.IPV4)
                with m.Case(EtherType.IPV6.value):
                    m.d.sync += s2_l3.eq(L3Type.IPV6)
                with m.Case(EtherType.ARP.value):
                    m.d.sync += s2_l3.eq(L3Type.ARP)
        # Room in the frame for an IPv4 (20 bytes) / IPv6 (40 bytes) header after the tags.
        s2_room_ip4 = Signal()
        s2_room_ip6 = Signal()
        l3_offset = Signal(8, name="s1_l3_offset")
        m.d.comb += l3_offset.eq(ETH_HEADER_BYTES + VLAN_TAG_BYTES * s1_tags)
        m.d.sync += [
            s2_room_ip4.eq(s1_len >= l3_offset + IPV4_MIN_HEADER_BYTES),
            s2_room_ip6.eq(s1_len >= l3_offset + IPV6_HEADER_BYTES),
        ]
        s2_l3w = Signal(8 * L3_WINDOW_BYTES)
        l3_windows = Array(s1_window[8 * off:8 * (off + L3_WINDOW_BYTES)] for off in L3_OFFSETS)
        m.d.sync += s2_l3w.eq(l3_windows[s1_tags])
        s2_l4_select = Signal(4)
        s2_short_ip4 = Signal()
        m.d.sync += [
            s2_l4_select.eq(s1_l4_select.word_select(s1_tags, 4)),
            s2_short_ip4.eq(s1_short_ip4.bit_select(s1_tags, 1)),
        ]
        # The IP header's version, IHL and IPv6 next-header classes, tested from the byte each
        # sits in at the three possible offsets, so stage 3 starts from flags.
        first_byte = Array(byte_at(s1_window, off) for off in L3_OFFSETS)[s1_tags]
        next_header = Array(byte_at(s1_window, off + IPV6_NEXT_HEADER_OFFSET)
                            for off in L3_OFFSETS)[s1_tags]
        s2_version4 = Signal()
        s2_version6 = Signal()
        s2_ihl_ok = Signal()            # IHL >= 5
        s2_ihl_options = Signal()       # IHL > 5
        s2_ip6_ext = Signal()
        m.d.sync += [
            s2_version4.eq(first_byte[4:8] == 4),
            s2_version6.eq(first_byte[4:8] == 6),
            s2_ihl_ok.eq(first_byte[0:4] >= 5),
            s2_ihl_options.eq(first_byte[0:4] > 5),
            s2_ip6_ext.eq(0),
        ]
        with m.Switch(next_header):
            with m.Case(*IPV6_EXTENSION_HEADERS):
                m.d.sync += s2_ip6_ext.eq(1)
        s2 = (*s2, s2_ethertype, s2_l2_valid, s2_l3)

        # Stage 3 -- IP fields and header checks.
        s3 = _delayed(m, "s3", s2[0], *s2[2:])
        (s3_valid, s3_len, s3_tags, s3_vlan0, s3_vlan1, s3_runt, s3_ethertype,
         s3_l2_valid, s3_l3) = s3
        s2_window, s2_tags = s2[1], s2[3]
        l3w = s2_l3w
        is4 = s2_l3 == L3Type.IPV4
        is6 = s2_l3 == L3Type.IPV6
        l3_off = Signal(8, name="s2_l3_offset")
        m.d.comb += l3_off.eq(ETH_HEADER_BYTES + VLAN_TAG_BYTES * s2_tags)
        ihl = byte_at(l3w, 0)[0:4]
        total_len = be_field(l3w, IPV4_TOTAL_LENGTH_OFFSET, 2)
        frag_word = be_field(l3w, IPV4_FLAGS_FRAGMENT_OFFSET, 2)
        payload_len6 = be_field(l3w, IPV6_PAYLOAD_LENGTH_OFFSET, 2)
        proto = Mux(is4, byte_at(l3w, IPV4_PROTOCOL_OFFSET), byte_at(l3w, IPV6_NEXT_HEADER_OFFSET))

        trunc_iphdr = (is4 & ~s2_room_ip4) | (is6 & ~s2_room_ip6)
        bad_version = ~trunc_iphdr & ((is4 & ~s2_version4) | (is6 & ~s2_version6))
        bad_ihl = is4 & ~trunc_iphdr & s2_version4 & ~s2_ihl_ok
        addr_valid = ((is4 & s2_room_ip4 & s2_version4 & s2_ihl_ok)
                      | (is6 & s2_room_ip6 & s2_version6))
        ip6_ext = s2_ip6_ext

        s3_addr_valid = Signal()
        s3_l4 = Signal(L4Type)
        s3_proto = Signal(8)
        s3_fragment = Signal()
        s3_ip_options = Signal()
        s3_src = Signal(128)
        s3_dst = Signal(128)
        s3_l3_offset = Signal(8)
        s3_l4_offset = Signal(8)
        s3_ip_end = Signal(17)
        s3_l4_len = Signal(17)
        s3_addr_lo = Signal(8)
        s3_addr_hi = Signal(8)
        s3_ip_csum_valid = Signal()
        s3_bad_version = Signal()
        s3_bad_ihl = Signal()
        s3_bad_ip_len = Signal()
        s3_truncated = Signal()
        s3_is6 = Signal()

        header_len = Mux(is4, ihl * 4, IPV6_HEADER_BYTES)
        l4_offset = l3_off + header_len
        trunc_options = is4 & addr_valid & s2_short_ip4
        m.d.sync += [
            s3_addr_valid.eq(addr_valid),
            s3_proto.eq(Mux(addr_valid, proto, 0)),
            s3_fragment.eq(addr_valid & Mux(is4, frag_word[13] | (frag_word[:13] != 0),
                                            proto == IPV6_FRAGMENT_HEADER)),
            s3_ip_options.eq(addr_valid & Mux(is4, s2_ihl_options, ip6_ext)),
            s3_src.eq(Mux(is4, be_field(l3w, IPV4_SRC_OFFSET, 4),
                          be_field(l3w, IPV6_SRC_OFFSET, 16))),
            s3_dst.eq(Mux(is4, be_field(l3w, IPV4_DST_OFFSET, 4),
                          be_field(l3w, IPV6_DST_OFFSET, 16))),
            s3_l3_offset.eq(l3_off),
            s3_l4_offset.eq(l4_offset),
            s3_ip_end.eq(l3_off + Mux(is4, total_len, IPV6_HEADER_BYTES + payload_len6)),
            # The L4 length (IP payload) straight from the IP lengths; wraps when the IPv4 total
            # length is shorter than the header (bad_ip_len), which leaves no room for an L4 header.
            s3_l4_len.eq(Mux(is4, total_len - header_len, payload_len6)),
            s3_addr_lo.eq(l3_off + Mux(is4, IPV4_SRC_OFFSET, IPV6_SRC_OFFSET)),
            s3_addr_hi.eq(l3_off + Mux(is4, IPV4_DST_OFFSET + 4, IPV6_DST_OFFSET + 16)),
            s3_ip_csum_valid.eq(is4 & addr_valid & ~trunc_options),
            s3_bad_version.eq(bad_version),
            s3_bad_ihl.eq(bad_ihl),
            s3_bad_ip_len.eq(is4 & addr_valid & (total_len < header_len)),
            s3_truncated.eq(trunc_iphdr | trunc_options),
            s3_is6.eq(is6),
            s3_l4.eq(L4Type.NONE),
        ]
        # The L4 header is selected in two steps of a 4-way mux: to 16 bytes here, to 4 in stage 4
        # (one 13-way mux had a select fanning out over all 128 bits of its output).
        coarse_bytes = L4_WINDOW_BYTES + 12
        coarse_end = L4_OFFSETS[0] + 48 + coarse_bytes
        padded = Cat(s2_window, Const(0, 8 * (coarse_end - params.HEADER_WINDOW_BYTES)))
        coarse = Array(padded[8 * off:8 * (off + coarse_bytes)]
                       for off in range(L4_OFFSETS[0], L4_OFFSETS[0] + 64, 16))
        s3_l4_coarse = Signal(8 * coarse_bytes)
        s3_l4_fine = Signal(2)
        m.d.sync += [
            s3_l4_coarse.eq(coarse[s2_l4_select[2:4]]),
            s3_l4_fine.eq(s2_l4_select[0:2]),
        ]
        with m.If(addr_valid):
            m.d.sync += s3_l4.eq(L4Type.OTHER)
            with m.If(is4 | ~ip6_ext):
                with m.Switch(proto):
                    with m.Case(IpProto.TCP.value):
                        m.d.sync += s3_l4.eq(L4Type.TCP)
                    with m.Case(IpProto.UDP.value):
                        m.d.sync += s3_l4.eq(L4Type.UDP)
                    with m.Case(IpProto.ICMP.value):
                        m.d.sync += s3_l4.eq(Mux(is4, L4Type.ICMP, L4Type.OTHER))
                    with m.Case(IpProto.ICMPV6.value):
                        m.d.sync += s3_l4.eq(Mux(is6, L4Type.ICMP, L4Type.OTHER))

        # Stage 4 -- select the L4 header (20 bytes at 34, 38, ... 82).
        ip_fields = (s3_addr_valid, s3_l4, s3_proto, s3_fragment, s3_ip_options, s3_src, s3_dst,
                     s3_l3_offset, s3_l4_offset, s3_ip_end, s3_l4_len, s3_addr_lo, s3_addr_hi,
                     s3_ip_csum_valid, s3_bad_version, s3_bad_ihl, s3_bad_ip_len, s3_truncated,
                     s3_is6)
        s4 = _delayed(m, "s4", s3_valid, s3_tags, s3_vlan0, s3_vlan1, s3_ethertype,
                      s3_runt, s3_l2_valid, s3_l3, *ip_fields)
        s4_l4w = Signal(8 * L4_WINDOW_BYTES)
        # Room for a TCP (20 bytes) / UDP (8 bytes) header, in the frame and in the IP payload.
        s4_room_tcp = Signal()
        s4_room_udp = Signal()
        m.d.sync += [
            s4_room_tcp.eq((s3_l4_offset + 20 <= s3_len) & ~s3_l4_len[16] & (s3_l4_len >= 20)),
            s4_room_udp.eq((s3_l4_offset + 8 <= s3_len) & ~s3_l4_len[16] & (s3_l4_len >= 8)),
        ]
        l4_windows = Array(s3_l4_coarse[8 * off:8 * (off + L4_WINDOW_BYTES)]
                           for off in range(0, 16, 4))
        m.d.sync += s4_l4w.eq(l4_windows[s3_l4_fine])

        # Stage 5 -- L4 fields and checks, hash input.
        (s4_valid, s4_tags, s4_vlan0, s4_vlan1, s4_ethertype, s4_runt, s4_l2_valid, s4_l3,
         s4_addr_valid, s4_l4, s4_proto, s4_fragment, s4_ip_options, s4_src, s4_dst,
         s4_l3_offset, s4_l4_offset, s4_ip_end, s4_l4_len, s4_addr_lo, s4_addr_hi, s4_ip_csum_valid,
         s4_bad_version, s4_bad_ihl, s4_bad_ip_len, s4_truncated, s4_is6) = s4
        l4w = s4_l4w
        is_tcp = s4_l4 == L4Type.TCP
        is_udp = s4_l4 == L4Type.UDP
        ports_apply = (is_tcp | is_udp) & ~s4_fragment       # l4 TCP/UDP implies addr_valid
        l4_len = s4_l4_len
        l4_valid = ports_apply & Mux(is_tcp, s4_room_tcp, s4_room_udp)
        data_offset = byte_at(l4w, 12)[4:8]
        tcp_header_len = data_offset * 4
        udp_len = be_field(l4w, 4, 2)
        udp_csum = be_field(l4w, 6, 2)
        bad_doff = is_tcp & ((data_offset < 5) | (tcp_header_len > l4_len))
        bad_udp_len = is_udp & ((udp_len < 8) | (udp_len > l4_len))
        bad_l4_len = ports_apply & (~l4_valid | bad_doff | bad_udp_len)
        l4_header_len = Mux(is_tcp, tcp_header_len, 8)
        sport = be_field(l4w, 0, 2)
        dport = be_field(l4w, 2, 2)

        s5 = Signal(DecodedHeader)
        s5_valid = Signal()
        st = s5.status
        m.d.sync += [
            s5_valid.eq(s4_valid),
            s5.eq(0),
            st.l2_valid.eq(s4_l2_valid),
            st.vlan_count.eq(Mux(s4_l2_valid, s4_tags, 0)),
            st.vlan0.eq(Mux(s4_l2_valid & (s4_tags > 0), s4_vlan0, 0)),
            st.vlan1.eq(Mux(s4_l2_valid & (s4_tags > 1), s4_vlan1, 0)),
            st.ethertype.eq(Mux(s4_l2_valid, s4_ethertype, 0)),
            st.l3.eq(s4_l3),
            st.l4.eq(s4_l4),
            st.ip_proto.eq(s4_proto),
            st.addr_valid.eq(s4_addr_valid),
            st.l4_valid.eq(l4_valid),
            st.fragment.eq(s4_fragment),
            st.ip_options.eq(s4_ip_options),
            st.ip_csum_valid.eq(s4_ip_csum_valid),
            st.errors.runt.eq(s4_runt),
            st.errors.truncated.eq(~s4_runt & ~s4_l2_valid | s4_truncated),
            st.errors.bad_version.eq(s4_bad_version),
            st.errors.bad_ihl.eq(s4_bad_ihl),
            st.errors.bad_ip_len.eq(s4_bad_ip_len),
            st.errors.bad_l4_len.eq(bad_l4_len),
            st.hash_type.eq(Mux(l4_valid, HashType.IP_4TUPLE,
                                Mux(s4_addr_valid, HashType.IP_2TUPLE, HashType.NONE))),
            st.src.eq(Mux(s4_addr_valid, s4_src, 0)),
            st.dst.eq(Mux(s4_addr_valid, s4_dst, 0)),
            st.l3_offset.eq(Mux(s4_l2_valid, s4_l3_offset, 0)),
            st.l4_offset.eq(Mux(s4_addr_valid, s4_l4_offset, 0)),
            s5.ip_end.eq(s4_ip_end),
            s5.addr_lo.eq(s4_addr_lo),
            s5.addr_hi.eq(s4_addr_hi),
            s5.pseudo_sum.eq(s4_proto + l4_len[:16]),
            s5.l4_csum_check.eq(l4_valid & ~bad_l4_len & ~(is_udp & ~s4_is6 & (udp_csum == 0))),
            s5.l4_csum_force_bad.eq(is_udp & s4_is6 & (udp_csum == 0)),
        ]
        with m.If(l4_valid):
            m.d.sync += [
                st.sport.eq(sport),
                st.dport.eq(dport),
                st.payload_offset.eq(s4_l4_offset + l4_header_len),
            ]
            with m.If(~bad_l4_len):
                m.d.sync += st.payload_len.eq(l4_len - l4_header_len)
            with m.If(is_tcp):
                m.d.sync += [
                    st.seq.eq(be_field(l4w, 4, 4)),
                    st.ack.eq(be_field(l4w, 8, 4)),
                    st.tcp_flags.eq(byte_at(l4w, 13)),
                    st.window.eq(be_field(l4w, 14, 2)),
                ]

        # The hash input is the RSS byte string src | dst | sport | dport, left-aligned in 36 bytes;
        # ports are zero (contribute nothing) for a 2-tuple.
        ports = Mux(l4_valid, Cat(dport, sport), 0)
        hash_input = Mux(s4_is6,
                         Cat(ports, s4_dst, s4_src),
                         Cat(Const(0, 192), ports, s4_dst[:32], s4_src[:32]))
        m.d.sync += [
            toeplitz.data.eq(hash_input),
            toeplitz.valid.eq(s4_valid & s4_addr_valid),
        ]
        m.d.comb += toeplitz.key.eq(self.key)

        # The decoded header leaves now (its hash field 0); the hash follows ``toeplitz.latency``
        # clocks later on its own output, one per decoded header, in the same order.
        hash_needed = Signal(HashType)
        m.d.comb += [
            self.info.eq(s5),
            self.info_valid.eq(s5_valid),
            hash_needed.eq(s5.status.hash_type),
        ]
        waiting_type, waiting_valid = hash_needed, s5_valid
        for stage in range(toeplitz.latency):
            delayed_type = Signal(HashType, name=f"hash_type_d{stage + 1}")
            delayed_valid = Signal(name=f"hash_valid_d{stage + 1}")
            m.d.sync += [delayed_type.eq(waiting_type), delayed_valid.eq(waiting_valid)]
            waiting_type, waiting_valid = delayed_type, delayed_valid
        m.d.comb += [
            self.hash.eq(Mux(waiting_type == HashType.NONE, 0, toeplitz.hash)),
            self.hash_valid.eq(waiting_valid),
            self.hash_overrun.eq(toeplitz.overrun),
        ]
        return m


def _delayed(m, prefix, *signals):
    """Register each signal once; the copies are named ``<prefix>_<name without stage prefix>``."""
    copies = []
    for signal in signals:
        base = Value.cast(signal).name.split("_", 1)[1]
        copy = Signal.like(signal, name=f"{prefix}_{base}")
        m.d.sync += copy.eq(signal)
        copies.append(copy)
    return tuple(copies)
