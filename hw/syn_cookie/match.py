"""The classifier and matcher of the SYN-cookie unit: for each frame the dispatcher missed in the
CCB table, the unit's verdict (docs/syn_cookie.md §2.3, in the model's order): not the unit's
(PASS), a SYN for no service (TO_SLOW), denied by a rule (DENIED), capped by a token bucket
(CAPPED), for an *ask* service (ASK), accepted (MAKE: the cookie core's request), or an ACK for a
service (CHECK: the cookie core's request), with a counter pulse for every SYN decision.

Design: docs/syn_cookie.md §2 (tables, acceptance, caps) and §5.3 (this block's figures). Golden
model: ``sim.reference.syn_cookie.SynCookieModel.match``. Formats: ``hw.syn_cookie.layouts``
(``SynMatchInput``, ``SynMatchVerdict``, ``SynService``, ``SynRule``, ``SynCounterPulses``).

Pipeline, one frame a clock, no stall once a frame is accepted::

    i ─► S0 (registers) ─► S1a compare (16 services, 16 rules: 16-bit chunks of the prefix,
      port, VLAN; MSS index) ─► S1b AND ─► S2a first match (one-hot) ─► S2b the entries'
      fields (offer, DENY)
      ─► S3 DENY, caps (token buckets), verdict ─► FIFO (6) ─► o

- The tables are flip-flops. A write (``service_write``, ``rule_write``: slot, entry, enable) is
  registered, its prefix decoded into a mask (registered), then each stage's part of the entry
  is written from a delay chain: what S1 compares (valid, family, port, VLAN, the mask and the
  address already masked), what S2b selects (the offer, DENY) and what S3 keeps (a rule's
  bucket, refilled full), each in the clock the first frame that sees the write reaches that
  stage (``WRITE_DELAY`` clocks after the write): a write takes effect between two frames.
- No stage waits on another: a frame accepted in clock ``a`` meets the caps in clock
  ``a + CAPS_CLOCK``. So it takes its tokens in a known clock (the global token is applied to
  its count a clock later), and the buckets refill in one clock per interval
  (``interval_log2``) in which, and in the clock before which, no frame is in S3: ``i.ready``
  falls for two clocks per interval. A credit counter of the frames in S0..S3 and in the output FIFO keeps
  ``i.ready`` a function of registers and the FIFO from overflowing.
"""

from amaranth import Cat, Const, Module, Mux, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.fifo import SyncFIFO
from amaranth.lib.wiring import In, Out

from .. import params
from ..layouts import L3Type, TcpFlags
from .cookie import MssTable
from .layouts import (
    TS_WSCALE_NONE,
    CookieOp,
    RuleAction,
    ServiceMode,
    SynControl,
    SynCounterPulses,
    SynGlobalCap,
    SynMatchAction,
    SynMatchInput,
    SynMatchVerdict,
    SynOptions,
    SynRule,
    SynService,
    VlanMatch,
)

__all__ = ["SynMatcher", "table_write_signature"]

#: Largest window shift (RFC 7323 §2.3): a larger one in a SYN counts as 14.
_MAX_WSCALE = 14
#: The MSS of a SYN without the option (RFC 9293 §3.7.1; RFC 8200 §8.3 less 60).
_DEFAULT_MSS_IPV4 = 536
_DEFAULT_MSS_IPV6 = 1220
#: Verdicts the FIFO holds: the frames in S0..S3 and in the FIFO are at most this many (one
#: more than the latency, for one frame a clock).
_FIFO_DEPTH = 8
#: The clock (after the frame's acceptance) in which each stage that reads the tables runs.
_S1, _S2B, _S3 = 1, 4, 5
#: Address bits compared per S1a register.
_CHUNK_BITS = 16
_SERVICE_BITS = (params.SYN_SERVICES - 1).bit_length()
_RULE_BITS = (params.SYN_RULES - 1).bit_length()


def table_write_signature(entry, entries):
    """A table's write port, as the command unit drives it: ``enable`` for one clock writes
    ``entry`` (a :class:`SynService` or :class:`SynRule`; ``valid`` 0 empties the slot) into
    slot ``index``."""
    return wiring.Signature({
        "enable": Out(1),
        "index": Out(range(entries)),
        "entry": Out(entry),
    })


class _ServiceOffer(data.Struct):
    """What S2 reads of a service: its mode and what its SYN-ACK offers."""
    mode: ServiceMode
    mss: 16
    window: 16
    wscale: 4
    sack: 1
    timestamps: 1
    ecn: 1


class _Frame(data.Struct):
    """The frame's fields the later stages carry (S1 → S2 → S3)."""
    ipv6: 1
    src: 128
    dst: 128
    sport: 16
    dport: 16
    seq: 32
    ack: 32
    ecn_setup: 1        # ECE and CWR: an ECN-setup SYN (RFC 3168 §6.1.1)
    options: SynOptions
    wscale: 4           # the SYN's window shift, at most 14
    mss_index: params.SYN_ISN_MSS_BITS


class _Kind(data.Struct):
    """S1's classification."""
    syn: 1              # a SYN (SYN; no ACK, RST, FIN) of the unit
    ack: 1              # an ACK (ACK; no SYN, RST) of the unit


class _Decided(data.Struct):
    """What S2 registers for S3."""
    action: SynMatchAction  # S3 turns MAKE into DENIED, CAPPED or ASK
    deny: 1                 # the first rule that matched denies (none: ``default_deny``)
    service_matched: 1
    service: _SERVICE_BITS
    rule_matched: 1
    rule: _RULE_BITS
    offer: _ServiceOffer
    frame: _Frame


def _prefix_mask(m, prefix_len, ipv6):
    """The mask of a prefix of ``prefix_len`` bits: IPv6 from bit 127 down, IPv4 from bit 31
    down (addresses are numbers, IPv4 in the low 32 bits). A length above the family's width
    is the whole address."""
    mask = Signal(128)
    for bit in range(128):
        v6 = prefix_len > 127 - bit
        v4 = prefix_len > 31 - bit if bit < 32 else Const(0)
        m.d.comb += mask[bit].eq(Mux(ipv6, v6, v4))
    return mask


def _first(m, name, bits):
    """The lowest set bit of ``bits`` (the first match in slot order): ``(one_hot, index,
    any)``."""
    one_hot = Signal(len(bits), name=f"{name}_first")
    index = Signal(range(len(bits)), name=f"{name}_index")
    below = Const(0)
    for n in range(len(bits)):
        m.d.comb += one_hot[n].eq(bits[n] & ~below)
        below = below | bits[n]
    for b in range(len(index)):
        m.d.comb += index[b].eq(Cat(one_hot[n] for n in range(len(bits)) if n >> b & 1).any())
    return one_hot, index, bits.any()


def _select(one_hot, values):
    """The value whose ``one_hot`` bit is set (AND-OR: no priority chain)."""
    width = len(values[0])
    result = Const(0, width)
    for n, value in enumerate(values):
        result = result | (value & one_hot[n].replicate(width))
    return result


class SynMatcher(wiring.Component):
    """The classifier and matcher (docs/syn_cookie.md §2.3): one frame a clock, verdicts in
    frame order.

    A frame is the unit's when the unit is on (``control.enable``), the dispatcher looked it up
    and missed, and the sequencer found it good TCP (``candidate``: TCP, not malformed, no
    fragment, no IP options / extension headers, checksums right) with at most one VLAN tag.
    Then a SYN is matched against the services (first valid slot whose family, ``local_ip /
    prefix_len`` holding the destination, port and VLAN fit), the rules (first valid slot whose
    family and ``remote_ip / prefix_len`` hold the source; none: ``default_deny``), and the
    token buckets (its rule's if capped, the global one if ``global_capped``: a token from
    each, or CAPPED and none taken); an ACK is CHECK when it matches a service.

    Members
    -------
    i : In(stream.Signature(SynMatchInput))
        The frames' descriptors and TCP options.
    o : Out(stream.Signature(SynMatchVerdict))
        The verdicts, one per frame, in order.
    service_write, rule_write : In(table_write_signature(...))
        The tables' write ports (SYN_SERVICE, SYN_RULE). A write in clock ``w`` applies from the
        frame accepted in clock ``w + WRITE_DELAY`` (2) on; a rule written is refilled full.
    control : In(SynControl)
        ``enable``, ``active_key`` and ``age_limit`` (into the cookie requests),
        ``default_deny``, ``global_capped``.
    global_cap : In(SynGlobalCap)
        The global bucket's rate and burst.
    global_cap_written : In(1)
        One clock when the host writes SYN_GLOBAL_CAP: the global bucket refills full.
    time : In(SYN_TIME_BITS)
        The time counter; ``ts_clock``: the TSval clock. Into the cookie requests.
    mss_ipv4, mss_ipv6 : In(MssTable)
        The MSS tables: a SYN's MSS index (the largest entry not above its MSS option).
    counts : Out(SynCounterPulses)
        One clock per SYN decision: ``syns_seen`` and one of ``syns_to_slow``, ``syns_denied``,
        ``syns_capped``, ``syns_asked`` (a MAKE is counted downstream: answered or tx_full).

    Parameters
    ----------
    interval_log2 : int
        The buckets refill every ``2**interval_log2`` clocks (tests shorten it).

    Attributes
    ----------
    latency : int
        Clocks from a frame accepted to its verdict valid (``o.ready`` high).
    """

    i: In(stream.Signature(SynMatchInput))
    o: Out(stream.Signature(SynMatchVerdict))
    service_write: In(table_write_signature(SynService, params.SYN_SERVICES))
    rule_write: In(table_write_signature(SynRule, params.SYN_RULES))
    control: In(SynControl)
    global_cap: In(SynGlobalCap)
    global_cap_written: In(1)
    time: In(params.SYN_TIME_BITS)
    ts_clock: In(32)
    mss_ipv4: In(MssTable)
    mss_ipv6: In(MssTable)
    counts: Out(SynCounterPulses)

    latency = 7
    #: Clocks from a frame accepted to the clock it meets the caps (S3).
    CAPS_CLOCK = _S3
    #: Clocks from a table write to the first frame accepted that sees it.
    WRITE_DELAY = 2

    def __init__(self, interval_log2=params.SYN_CAP_INTERVAL_LOG2):
        if interval_log2 < 3:
            raise ValueError("the refill interval must be at least 8 clocks")
        self._interval_log2 = interval_log2
        super().__init__()

    def elaborate(self, platform):
        m = Module()
        self._elaborate_tables(m)
        self._elaborate_compare(m)
        self._elaborate_first_match(m)
        self._elaborate_caps(m)
        return m

    # -- Tables --------------------------------------------------------------------------------

    def _elaborate_tables(self, m):
        """The entries, split by the stage that reads them; the writes delayed to match.

        A write is registered (``d[0]``, as a frame is in S0), its prefix decoded into a mask
        registered beside ``d[1]``; the stage that runs in clock ``accepted + k`` reads the part
        written from ``d[WRITE_DELAY + k - 2]``, so that it sees the write exactly from the frame
        accepted ``WRITE_DELAY`` clocks after it."""
        data_reg = dict(reset_less=True)
        self._svc = [dict(valid=Signal(name=f"svc{n}_valid"),
                          ipv6=Signal(name=f"svc{n}_ipv6", **data_reg),
                          port=Signal(16, name=f"svc{n}_port", **data_reg),
                          vlan=Signal(VlanMatch, name=f"svc{n}_vlan", **data_reg),
                          vlan_id=Signal(12, name=f"svc{n}_vlan_id", **data_reg),
                          mask=Signal(128, name=f"svc{n}_mask", **data_reg),
                          ip=Signal(128, name=f"svc{n}_ip", **data_reg),
                          offer=Signal(_ServiceOffer, name=f"svc{n}_offer", **data_reg))
                     for n in range(params.SYN_SERVICES)]
        self._rule = [dict(valid=Signal(name=f"rule{n}_valid"),
                           ipv6=Signal(name=f"rule{n}_ipv6", **data_reg),
                           mask=Signal(128, name=f"rule{n}_mask", **data_reg),
                           ip=Signal(128, name=f"rule{n}_ip", **data_reg),
                           deny=Signal(name=f"rule{n}_deny", **data_reg),
                           capped=Signal(name=f"rule{n}_capped"),
                           rate=Signal(16, name=f"rule{n}_rate", **data_reg),
                           burst=Signal(16, name=f"rule{n}_burst", **data_reg),
                           tokens=Signal(16, name=f"rule{n}_tokens", **data_reg),
                           empty=Signal(init=1, name=f"rule{n}_empty"),
                           # capped & empty, kept as a flip-flop: S3's verdict starts from it
                           blocked=Signal(name=f"rule{n}_blocked"),
                           # burst - rate (0 when the rate is not below the burst): a refill
                           # saturates when tokens >= headroom, a compare beside the adder,
                           # not after it
                           headroom=Signal(16, name=f"rule{n}_headroom", **data_reg))
                      for n in range(params.SYN_RULES)]

        def part(k):
            return self.WRITE_DELAY + k - 2

        # The delay chains: d[j] holds the write of clock w in clock w + 1 + j.
        sw = self._write_chain(m, "service_write", self.service_write, part(_S3) + 1)
        rw = self._write_chain(m, "rule_write", self.rule_write, part(_S3) + 1)
        svc_mask = Signal(128, name="service_write_mask", reset_less=True)
        rule_mask = Signal(128, name="rule_write_mask", reset_less=True)
        m.d.sync += [
            svc_mask.eq(_prefix_mask(m, sw[0].entry.prefix_len, sw[0].entry.ipv6)),
            rule_mask.eq(_prefix_mask(m, rw[0].entry.prefix_len, rw[0].entry.ipv6)),
        ]

        # S1's part.
        assert part(_S1) == 1       # the masks are registered beside d[1]
        s, r = sw[part(_S1)], rw[part(_S1)]
        for n, e in enumerate(self._svc):
            with m.If(s.enable & (s.index == n)):
                m.d.sync += [
                    e["valid"].eq(s.entry.valid), e["ipv6"].eq(s.entry.ipv6),
                    e["port"].eq(s.entry.port), e["vlan"].eq(s.entry.vlan),
                    e["vlan_id"].eq(s.entry.vlan_id), e["mask"].eq(svc_mask),
                    e["ip"].eq(s.entry.local_ip & svc_mask),
                ]
        for n, e in enumerate(self._rule):
            with m.If(r.enable & (r.index == n)):
                m.d.sync += [
                    e["valid"].eq(r.entry.valid), e["ipv6"].eq(r.entry.ipv6),
                    e["mask"].eq(rule_mask), e["ip"].eq(r.entry.remote_ip & rule_mask),
                ]

        # S2b's part: the offers and the rules' DENY.
        s, r = sw[part(_S2B)], rw[part(_S2B)]
        for n, e in enumerate(self._svc):
            with m.If(s.enable & (s.index == n)):
                m.d.sync += [
                    e["offer"].mode.eq(s.entry.mode), e["offer"].mss.eq(s.entry.mss),
                    e["offer"].window.eq(s.entry.window), e["offer"].wscale.eq(s.entry.wscale),
                    e["offer"].sack.eq(s.entry.sack),
                    e["offer"].timestamps.eq(s.entry.timestamps),
                    e["offer"].ecn.eq(s.entry.ecn),
                ]
        for n, e in enumerate(self._rule):
            with m.If(r.enable & (r.index == n)):
                m.d.sync += e["deny"].eq(r.entry.action == RuleAction.DENY)

        # S3's part (the buckets): written in _elaborate_caps.
        self._bucket_write = rw[part(_S3)]

    @staticmethod
    def _write_chain(m, name, port, depth):
        """A write port's signals delayed 1 .. ``depth`` clocks (``enable`` reset, the rest
        not)."""
        chain = []
        previous = port
        for j in range(depth):
            delayed = wiring.Signature({
                "enable": Out(1), "index": Out(len(port.index)),
                "entry": Out(port.entry.shape()),
            }).create(path=(name, f"d{j}"))
            m.d.sync += [delayed.enable.eq(previous.enable), delayed.index.eq(previous.index),
                         delayed.entry.eq(previous.entry)]
            chain.append(delayed)
            previous = delayed
        return chain

    # -- S1: classify and compare ----------------------------------------------------------------

    def _elaborate_compare(self, m):
        """Every entry against the frame, in parallel; the frame's kind and MSS index."""
        # S0: the frame into flip-flops (the compares fan every address bit out to 16 entries).
        frame_in = Signal(SynMatchInput, reset_less=True)
        s0_valid = Signal()
        f = frame_in.frame
        summary, tcp = f.frame.summary, f.frame.tcp
        opts = frame_in.options

        # Flow control: the frames in S0..S3 and the FIFO never exceed its depth, and none is
        # accepted whose S3 clock (accepted + CAPS_CLOCK) would be the buckets' refill clock (the last of
        # an interval).
        self._interval_clock = clock = Signal(self._interval_log2)
        self._in_flight = in_flight = Signal(range(_FIFO_DEPTH + 1))
        accept = Signal()
        refill_gap = Signal()   # this clock's frame would meet the refill in S3 (a flip-flop)
        m.d.sync += [
            clock.eq(clock + 1),
            # Two clocks: no frame in S3 in the refill clock, nor in the one before it (whose
            # global take, applied a clock late, would meet the refill).
            refill_gap.eq((clock == (1 << self._interval_log2) - self.CAPS_CLOCK - 3)
                          | (clock == (1 << self._interval_log2) - self.CAPS_CLOCK - 2)),
        ]
        m.d.comb += [
            self.i.ready.eq((in_flight != _FIFO_DEPTH) & ~refill_gap),
            accept.eq(self.i.valid & self.i.ready),
        ]
        m.d.sync += [frame_in.eq(self.i.payload), s0_valid.eq(accept)]

        unit = Signal()
        m.d.comb += unit.eq(self.control.enable & f.looked_up & ~f.hit & summary.candidate
                            & (summary.vlan_count <= 1))
        flags = summary.tcp_flags
        syn_bits = TcpFlags.SYN | TcpFlags.ACK | TcpFlags.RST | TcpFlags.FIN
        ack_bits = TcpFlags.SYN | TcpFlags.ACK | TcpFlags.RST
        kind = Signal(_Kind)
        m.d.comb += [
            kind.syn.eq(unit & ((flags & syn_bits) == TcpFlags.SYN)),
            kind.ack.eq(unit & ((flags & ack_bits) == TcpFlags.ACK)),
        ]

        ipv6 = Signal()
        tagged = Signal()
        m.d.comb += [ipv6.eq(summary.l3 == L3Type.IPV6), tagged.eq(summary.vlan_count == 1)]
        # S1a registers, per entry, the match of each 16-bit chunk of the address and of the
        # rest (valid, family, port, VLAN), next to the entry; S1b ANDs them. The address bits
        # reach all 16 entries of a table: their long routes get a clock of their own.
        svc_parts = []
        for n, e in enumerate(self._svc):
            vlan_ok = Signal(name=f"svc{n}_vlan_ok")
            with m.Switch(e["vlan"]):
                with m.Case(VlanMatch.ANY):
                    m.d.comb += vlan_ok.eq(1)
                with m.Case(VlanMatch.UNTAGGED):
                    m.d.comb += vlan_ok.eq(~tagged)
                with m.Case(VlanMatch.TAGGED):
                    m.d.comb += vlan_ok.eq(tagged & (summary.vlan0 == e["vlan_id"]))
            svc_parts.append(self._chunk_matches(
                m, f"svc{n}", tcp.dst, e,
                e["valid"] & (e["ipv6"] == ipv6) & (summary.dport == e["port"]) & vlan_ok))
        rule_parts = [self._chunk_matches(m, f"rule{n}", tcp.src, e,
                                          e["valid"] & (e["ipv6"] == ipv6))
                      for n, e in enumerate(self._rule)]

        # The peer's MSS index: the last table entry not above its MSS (entry 0 if none is).
        peer_mss = Signal(16)
        mss_index = Signal(params.SYN_ISN_MSS_BITS)
        table = Mux(ipv6, self.mss_ipv6.as_value(), self.mss_ipv4.as_value())
        m.d.comb += peer_mss.eq(Mux(opts.mss_present, opts.mss,
                                    Mux(ipv6, _DEFAULT_MSS_IPV6, _DEFAULT_MSS_IPV4)))
        for n in range(1, 1 << params.SYN_ISN_MSS_BITS):
            with m.If(peer_mss >= table.word_select(n, 16)):
                m.d.comb += mss_index.eq(n)

        frame = Signal(_Frame)
        m.d.comb += [
            frame.ipv6.eq(ipv6), frame.src.eq(tcp.src), frame.dst.eq(tcp.dst),
            frame.sport.eq(summary.sport), frame.dport.eq(summary.dport),
            frame.seq.eq(tcp.seq), frame.ack.eq(tcp.ack),
            frame.ecn_setup.eq((flags & (TcpFlags.ECE | TcpFlags.CWR))
                               == (TcpFlags.ECE | TcpFlags.CWR)),
            frame.options.eq(opts),
            frame.wscale.eq(Mux(opts.wscale > _MAX_WSCALE, _MAX_WSCALE, opts.wscale)),
            frame.mss_index.eq(mss_index),
        ]

        s1a_valid = Signal()
        s1a_kind = Signal(_Kind, reset_less=True)
        s1a_frame = Signal(_Frame, reset_less=True)
        m.d.sync += [s1a_valid.eq(s0_valid), s1a_kind.eq(kind), s1a_frame.eq(frame)]

        self._s1_valid = Signal()
        self._s1_kind = Signal(_Kind, reset_less=True)
        self._s1_svc_match = Signal(params.SYN_SERVICES, reset_less=True)
        self._s1_rule_match = Signal(params.SYN_RULES, reset_less=True)
        self._s1_frame = Signal(_Frame, reset_less=True)
        m.d.sync += [
            self._s1_valid.eq(s1a_valid),
            self._s1_kind.eq(s1a_kind),
            self._s1_svc_match.eq(Cat(parts.all() for parts in svc_parts)),
            self._s1_rule_match.eq(Cat(parts.all() for parts in rule_parts)),
            self._s1_frame.eq(s1a_frame),
        ]
        self._accept = accept

    @staticmethod
    def _chunk_matches(m, name, addr, entry, rest):
        """S1a's registers for one entry: ``addr`` under its mask equals its address, chunk by
        chunk, and ``rest`` (the other conditions), as a Signal of the chunks' bits and rest."""
        chunks = len(addr) // _CHUNK_BITS
        parts = Signal(chunks + 1, name=f"{name}_s1a_parts", reset_less=True)
        for k in range(chunks):
            bits = slice(k * _CHUNK_BITS, (k + 1) * _CHUNK_BITS)
            m.d.sync += parts[k].eq((addr[bits] & entry["mask"][bits]) == entry["ip"][bits])
        m.d.sync += parts[chunks].eq(rest)
        return parts

    # -- S2: first match ---------------------------------------------------------------------------

    def _elaborate_first_match(self, m):
        """The first service and the first rule that matched, and their fields. Whether the rule
        denies is registered beside the action, not folded into it: S3 applies it."""
        # S2a: the first match of each table, as a one-hot, its index and whether any matched.
        first = {}
        for name, bits in (("svc", self._s1_svc_match), ("rule", self._s1_rule_match)):
            one_hot, _, found = _first(m, name, bits)
            registered = (Signal(len(one_hot), name=f"s2a_{name}_one_hot", reset_less=True),
                          Signal(name=f"s2a_{name}_any", reset_less=True))
            m.d.sync += [registered[0].eq(one_hot), registered[1].eq(found)]
            # The index is encoded in S2b from the registered one-hot (an OR of 8 bits per
            # index bit): encoded in S2a it followed the priority chain (a critical path).
            index = Signal(range(len(bits)), name=f"s2b_{name}_index")
            for b in range(len(index)):
                m.d.comb += index[b].eq(
                    Cat(registered[0][n] for n in range(len(bits)) if n >> b & 1).any())
            first[name] = (registered[0], index, registered[1])
        kind = Signal(_Kind, reset_less=True)
        frame = Signal(_Frame, reset_less=True)
        s2a_valid = Signal()
        m.d.sync += [kind.eq(self._s1_kind), frame.eq(self._s1_frame),
                     s2a_valid.eq(self._s1_valid)]

        # S2b: the entries' fields, selected by the one-hots (AND-OR, no priority chain).
        svc_one_hot, svc_index, svc_any = first["svc"]
        rule_one_hot, rule_index, rule_any = first["rule"]
        offer = Signal(_ServiceOffer)
        deny = Signal()
        m.d.comb += [
            offer.eq(_select(svc_one_hot, [e["offer"].as_value() for e in self._svc])),
            deny.eq(Mux(rule_any, (rule_one_hot & Cat(e["deny"] for e in self._rule)).any(),
                        self.control.default_deny)),
        ]
        screened = kind.syn & svc_any       # a SYN for a service meets the rules
        decided = Signal(_Decided)
        m.d.comb += [
            decided.deny.eq(deny),
            decided.service_matched.eq((kind.syn | kind.ack) & svc_any),
            decided.service.eq(Mux(decided.service_matched, svc_index, 0)),
            decided.rule_matched.eq(screened & rule_any),
            decided.rule.eq(Mux(decided.rule_matched, rule_index, 0)),
            decided.offer.eq(offer),
            decided.frame.eq(frame),
        ]
        with m.If(kind.syn & ~svc_any):
            m.d.comb += decided.action.eq(SynMatchAction.TO_SLOW)
        with m.Elif(screened):
            m.d.comb += decided.action.eq(SynMatchAction.MAKE)     # rules' verdict, caps: S3
        with m.Elif(kind.ack & svc_any):
            m.d.comb += decided.action.eq(SynMatchAction.CHECK)
        with m.Else():
            m.d.comb += decided.action.eq(SynMatchAction.PASS)

        self._s2_valid = Signal()
        self._s2 = Signal(_Decided, reset_less=True)
        # The rule's one-hot, for S3's buckets (used only for a SYN the rules allow).
        self._s2_rule_one_hot = Signal(params.SYN_RULES, reset_less=True)
        m.d.sync += [
            self._s2_valid.eq(s2a_valid),
            self._s2.eq(decided),
            self._s2_rule_one_hot.eq(rule_one_hot),
        ]

    # -- S3: caps and the verdict ----------------------------------------------------------------

    def _elaborate_caps(self, m):
        """The token buckets, the verdict into the FIFO, the counter pulses."""
        d = self._s2
        refill = Signal()       # the interval's last clock, from a flip-flop
        m.d.sync += refill.eq(self._interval_clock == (1 << self._interval_log2) - 2)

        pending = Signal()      # a SYN the rules allowed: the caps decide
        rule_blocked = Signal()
        global_blocked = Signal()
        take = Signal()
        global_tokens = Signal(16)
        global_empty = Signal(init=1)
        global_take = Signal()  # a token taken in the previous clock, applied in this one
        global_one = Signal()   # global_tokens == 1, kept as a flip-flop
        m.d.comb += [
            pending.eq(self._s2_valid & (d.action == SynMatchAction.MAKE) & ~d.deny),
            rule_blocked.eq((self._s2_rule_one_hot
                             & Cat(e["blocked"] for e in self._rule)).any()),
            # The global token is taken a clock late (``global_take``, a flip-flop: the OR of
            # the 16 buckets feeds its D alone, not the count's enables); until then a bucket
            # of one token with a take pending counts as empty.
            global_blocked.eq(self.control.global_capped
                              & (global_empty | (global_take & global_one))),
            take.eq(pending & ~rule_blocked & ~global_blocked),
        ]

        # The buckets: written full with their rule, refilled in the interval's last clock (no
        # frame is in S3 then), one token taken by a SYN that passes both. Each keeps an
        # ``empty`` flip-flop beside its count, so that the take decision starts from registers
        # (the next count's zero test is done on the way in: a take empties a bucket of 1).
        written = self._bucket_write.entry
        for n, e in enumerate(self._rule):
            refilled = (e["tokens"] + e["rate"])[:16]
            saturates = e["tokens"] >= e["headroom"]
            refill_empty = (e["burst"] == 0) | (e["empty"] & (e["rate"] == 0))
            with m.If(self._bucket_write.enable & (self._bucket_write.index == n)):
                m.d.sync += [
                    e["capped"].eq(written.valid & written.capped),
                    e["rate"].eq(written.rate),
                    e["burst"].eq(written.burst),
                    e["headroom"].eq(Mux(written.rate < written.burst,
                                         written.burst - written.rate, 0)),
                    e["tokens"].eq(written.burst),
                    e["empty"].eq(written.burst == 0),
                    e["blocked"].eq(written.valid & written.capped & (written.burst == 0)),
                ]
            with m.Elif(refill):
                m.d.sync += [
                    e["tokens"].eq(Mux(saturates, e["burst"], refilled)),
                    e["empty"].eq(refill_empty),
                    e["blocked"].eq(e["capped"] & refill_empty),
                ]
            # One-hot: for the selected bucket ``rule_blocked`` is its own ``empty``, so each
            # bucket decides its take from its own flip-flops (no OR over the 16 buckets).
            with m.Elif(pending & self._s2_rule_one_hot[n] & e["capped"] & ~e["empty"]
                        & ~global_blocked):
                m.d.sync += [
                    e["tokens"].eq(e["tokens"] - 1),
                    e["empty"].eq(e["tokens"] == 1),
                    e["blocked"].eq(e["tokens"] == 1),     # capped, or it would not take
                ]
        cap = self.global_cap
        global_refilled = (global_tokens + cap.rate)[:16]
        # As the rules' buckets: saturation by a compare with burst - rate, registered from the
        # register's value (a clock late: in the clock after a write the bucket is full, which
        # saturates anyway).
        global_headroom = Signal(16, reset_less=True)
        global_written = Signal()
        m.d.sync += [global_headroom.eq(Mux(cap.rate < cap.burst, cap.burst - cap.rate, 0)),
                     global_written.eq(self.global_cap_written)]
        global_saturates = (global_tokens >= global_headroom) | global_written
        with m.If(self.global_cap_written):
            m.d.sync += [global_tokens.eq(cap.burst), global_empty.eq(cap.burst == 0),
                         global_one.eq(cap.burst == 1)]
        with m.Elif(refill):
            m.d.sync += [
                global_tokens.eq(Mux(global_saturates, cap.burst, global_refilled)),
                global_empty.eq((cap.burst == 0) | (global_empty & (cap.rate == 0))),
                # tokens + rate == 1 without the adder
                global_one.eq(Mux(global_saturates, cap.burst == 1,
                                  (global_one & (cap.rate == 0))
                                  | (global_empty & (cap.rate == 1)))),
            ]
        with m.Elif(global_take):
            m.d.sync += [global_tokens.eq(global_tokens - 1), global_empty.eq(global_one),
                         global_one.eq(global_tokens == 2)]
        # A write in the take's clock refills the bucket full and drops the take (as when the
        # take applied at once and the write overrode it); no take is pending at a refill (the
        # refill gap's second clock).
        m.d.sync += global_take.eq(take & self.control.global_capped & ~self.global_cap_written)

        action = Signal(SynMatchAction)
        with m.If((d.action == SynMatchAction.MAKE) & d.deny):
            m.d.comb += action.eq(SynMatchAction.DENIED)
        with m.Elif(pending & (rule_blocked | global_blocked)):
            m.d.comb += action.eq(SynMatchAction.CAPPED)
        with m.Elif(pending & (d.offer.mode == ServiceMode.ASK)):
            m.d.comb += action.eq(SynMatchAction.ASK)
        with m.Else():
            m.d.comb += action.eq(d.action)

        verdict = Signal(SynMatchVerdict)
        f, opts, offer = d.frame, d.frame.options, d.offer
        timestamps = Signal()       # the SYN-ACK carries timestamps
        # The cookie request is read only with a MAKE or CHECK verdict, and S3 turns a MAKE
        # into another action, never another into MAKE: so its MAKE/CHECK choice is S2's action
        # (off the caps' path into the verdict register).
        make = Signal()
        m.d.comb += [
            make.eq(d.action == SynMatchAction.MAKE),
            timestamps.eq(opts.timestamps & offer.timestamps),
            verdict.action.eq(action),
            verdict.service_matched.eq(d.service_matched),
            verdict.service.eq(d.service),
            verdict.rule_matched.eq(d.rule_matched),
            verdict.rule.eq(d.rule),
            verdict.rcv_wscale.eq(offer.wscale),
            verdict.offer.window.eq(offer.window),
            verdict.offer.mss.eq(offer.mss),
            verdict.offer.wscale_ok.eq(timestamps & opts.wscale_present),
            verdict.offer.wscale.eq(offer.wscale),
            verdict.offer.sack.eq(timestamps & opts.sack_permitted & offer.sack),
            verdict.offer.timestamps.eq(timestamps),
            verdict.offer.ecn.eq(timestamps & offer.ecn & f.ecn_setup),
            verdict.offer.ts_ecr.eq(Mux(timestamps, opts.ts_val, 0)),
        ]
        req = verdict.cookie
        m.d.comb += [
            req.op.eq(Mux(make, CookieOp.MAKE, CookieOp.CHECK)),
            req.ipv6.eq(f.ipv6),
            req.remote_ip.eq(f.src),
            req.local_ip.eq(f.dst),
            req.remote_port.eq(f.sport),
            req.local_port.eq(f.dport),
            req.seq.eq(f.seq),
            req.ack.eq(f.ack),
            req.timestamps.eq(Mux(make, timestamps, opts.timestamps)),
            req.ts.eq(Mux(make, self.ts_clock, opts.ts_ecr)),
            req.ts_options.wscale.eq(Mux(opts.wscale_present, f.wscale, TS_WSCALE_NONE)),
            req.ts_options.sack.eq(verdict.offer.sack),
            req.ts_options.ecn.eq(verdict.offer.ecn),
            req.mss_index.eq(f.mss_index),
            req.key_slot.eq(self.control.active_key),
            req.time.eq(self.time),
            req.age_limit.eq(self.control.age_limit),
        ]

        # The verdict into a register, then the FIFO (the FIFO's LUT RAM is far from the buckets).
        verdict_reg = Signal(SynMatchVerdict, reset_less=True)
        verdict_valid = Signal()
        m.d.sync += [verdict_reg.eq(verdict), verdict_valid.eq(self._s2_valid)]

        # Counters: a pulse per SYN decision, registered with the verdict.
        syn = Signal()
        # (S3 turns a MAKE into DENIED, CAPPED or ASK, never into PASS or CHECK: S2's action.)
        m.d.comb += syn.eq(self._s2_valid & (d.action != SynMatchAction.PASS)
                           & (d.action != SynMatchAction.CHECK))
        m.d.sync += [
            self.counts.syns_seen.eq(syn),
            # S3 never makes a TO_SLOW nor turns one into another action: S2's action, off
            # the caps' path.
            self.counts.syns_to_slow.eq(self._s2_valid & (d.action == SynMatchAction.TO_SLOW)),
            self.counts.syns_denied.eq(self._s2_valid & (action == SynMatchAction.DENIED)),
            self.counts.syns_capped.eq(self._s2_valid & (action == SynMatchAction.CAPPED)),
            self.counts.syns_asked.eq(self._s2_valid & (action == SynMatchAction.ASK)),
        ]

        # The output FIFO (read ahead); the credits guarantee room for every frame in flight.
        m.submodules.verdicts = fifo = SyncFIFO(
            width=data.Layout.cast(SynMatchVerdict).size, depth=_FIFO_DEPTH)
        deliver = Signal()
        m.d.comb += [
            fifo.w_en.eq(verdict_valid),
            fifo.w_data.eq(verdict_reg.as_value()),
            self.o.valid.eq(fifo.r_rdy),
            self.o.payload.eq(fifo.r_data),
            fifo.r_en.eq(self.o.ready),
            deliver.eq(fifo.r_rdy & self.o.ready),
        ]
        m.d.sync += self._in_flight.eq(self._in_flight + self._accept - deliver)
