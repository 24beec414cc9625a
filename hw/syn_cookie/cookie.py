"""The cookie core of the SYN-cookie unit: makes a SYN-ACK's ISN (and TSval) for a SYN, checks an
ACK's cookie, with one SipHash-2-4 of the 44-byte cookie message per request.

Design: docs/syn_cookie.md (§1 the cookie, "The cookie core" for this block's figures). Golden
model: ``sim.reference.syn_cookie`` (``make_cookie``, ``check_ack``). Formats:
``hw.syn_cookie.layouts`` (``CookieRequest``, ``CookieResponse``, ``CookieMessage``).
Ref: RFC 4987 §3.6 (SYN cookies); Linux net/ipv4/syncookies.c (``cookie_init_timestamp``).

Pipeline, one request a clock::

    i ─► prepare (1 clk) ─► SipHash-2-4, 44 B (35 clk) ─► verdict (+ skid output, 1 clk) ─► o

- *prepare* registers what the message needs and takes the 32-bit subtractions off the SipHash
  input stage: ``seq - 1`` (the peer's ISN on an ACK), ``ack - 1`` (the cookie), the TSval of a
  SYN-ACK and the options byte. The message itself (the cookie's whole time counter, ``now - age``,
  is a 16-bit subtraction of two bits), the key slot's key and the MSS table entry are built
  from these registers in the SipHash core's input clock.
- The SipHash core takes a request a clock and carries what the answer needs in its tag.
- *verdict* compares the 27 hash bits (CHECK) or puts them into the ISN (MAKE), then the
  response leaves from registers (:class:`hw.lib.skid.SkidOutput`): ``o.ready`` reaches no
  further than the skid and the SipHash core's output FIFO.

Flow control: a credit counter of requests in the prepare register and the SipHash core (whose
output FIFO holds every one of them): ``i.ready`` comes from registers only, and a request
accepted always enters the SipHash core in the next clock. Nothing is dropped; answers come out in
request order.
"""

from amaranth import Module, Mux, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from .. import params
from ..lib.netorder import be_field
from ..lib.siphash import SipHash
from ..lib.skid import SkidOutput
from .layouts import (
    NO_TS_OPTIONS,
    CookieIsn,
    CookieMessage,
    CookieOp,
    CookieRequest,
    CookieResponse,
    CookieVerdict,
    HashedOptions,
)

__all__ = ["SynCookieCore", "KeySlots", "MssTable"]

#: The low bits of the TSval that carry the options (Linux's ``TSBITS``).
_TS_OPTION_BITS = 6
#: IPv4-mapped IPv6 (RFC 4291 §2.5.5.2): ``::ffff:a.b.c.d`` as a number.
_IPV4_MAPPED = 0xFFFF << 32

#: The 128-bit keys of the two slots, key byte ``k`` at bits ``[8k, 8k+8)``.
KeySlots = data.ArrayLayout(128, 1 << params.SYN_ISN_KEY_BITS)
#: An MSS table: entry ``i`` for MSS index ``i``.
MssTable = data.ArrayLayout(16, 1 << params.SYN_ISN_MSS_BITS)


class _Prepared(data.Struct):
    """What the prepare stage registers."""
    op: CookieOp
    ipv6: 1
    remote_ip: 128
    local_ip: 128
    remote_port: 16
    local_port: 16
    peer_isn: 32
    isn: CookieIsn          # CHECK: ack - 1; MAKE: key slot, time and MSS bits (hash: don't care)
    options: HashedOptions
    ts_val: 32
    time: params.SYN_TIME_BITS
    age_limit: params.SYN_ISN_TIME_BITS


class _Tag(data.Struct):
    """What travels beside the hash through the SipHash core."""
    op: CookieOp
    isn: CookieIsn
    ts_val: 32
    options: HashedOptions
    age: params.SYN_ISN_TIME_BITS
    age_ok: 1               # age <= age limit
    mss: 16                 # the table entry of the ISN's MSS index


def _network_order(number):
    """A number as its bytes in network order, first byte in the low bits (a byte swap)."""
    return be_field(number, 0, len(number) // 8)


def _mapped(ip, ipv6):
    """A 128-bit address number: as it is for IPv6, IPv4-mapped for IPv4 (the low 32 bits)."""
    return Mux(ipv6, ip, ip[:32] | _IPV4_MAPPED)


class SynCookieCore(wiring.Component):
    """Makes and checks SYN cookies (docs/syn_cookie.md §1): a request a clock, answers in order.

    MAKE (a SYN): the ISN ``CookieIsn`` = key slot, time counter bits 1:0, MSS index, and 27
    bits of SipHash-2-4(key[slot], message); with timestamps, the TSval = the timestamp clock with
    its 6 low bits the promised options, moved back 64 when that would be ahead of the clock.

    CHECK (an ACK): ISN = ack - 1, peer ISN = seq - 1, options from the TSecr's low 6 bits (or
    0x0F without timestamps); the cookie's time counter is the latest with the ISN's low bits,
    ``age`` ticks back; one hash. Hash bits differ: INVALID; else ``age > age_limit``: EXPIRED;
    else VALID, with the rebuilt parameters in ``info``.

    Members
    -------
    i : In(stream.Signature(CookieRequest))
        Requests.
    o : Out(stream.Signature(CookieResponse))
        Answers, in request order; ``valid`` and ``payload`` from registers.
    keys : In(KeySlots)
        The two key slots (registers of the host). A request uses the key present when it enters
        the SipHash core, the clock after it is accepted.
    mss_ipv4, mss_ipv6 : In(MssTable)
        The MSS tables (registers of the host), read at the same clock as the key.

    Attributes
    ----------
    latency : int
        Clocks from a request accepted to its answer valid, with ``o.ready`` high.
    """

    i: In(stream.Signature(CookieRequest))
    o: Out(stream.Signature(CookieResponse))
    keys: In(KeySlots)
    mss_ipv4: In(MssTable)
    mss_ipv6: In(MssTable)

    def __init__(self):
        super().__init__()
        self._siphash = SipHash(message_bytes=params.SYN_HASH_MESSAGE_BYTES, c_rounds=2,
                                d_rounds=4, tag_shape=_Tag)

    @property
    def latency(self):
        """Prepare (1), the SipHash core, the output register (1)."""
        return 1 + self._siphash.latency + 1

    def elaborate(self, platform):
        m = Module()
        m.submodules.siphash = siphash = self._siphash

        # Prepare -- the 32-bit subtractions, the options byte and the TSval, registered.
        req = self.i.payload
        check = req.op == CookieOp.CHECK
        prepared = Signal(_Prepared, reset_less=True)
        prepared_valid = Signal()
        preparing = Signal(_Prepared)      # what the prepare registers load
        ack_isn = Signal(CookieIsn)
        ts_options = Signal(_TS_OPTION_BITS)
        # The options' bits above the clock's low bits would put the TSval ahead: one 64 back.
        ts_ahead = Signal()
        m.d.comb += [
            ack_isn.eq(req.ack - 1),
            ts_options.eq(Mux(check, req.ts[:_TS_OPTION_BITS], req.ts_options)),
            ts_ahead.eq(ts_options > req.ts[:_TS_OPTION_BITS]),
            preparing.op.eq(req.op),
            preparing.ipv6.eq(req.ipv6),
            preparing.remote_ip.eq(req.remote_ip),
            preparing.local_ip.eq(req.local_ip),
            preparing.remote_port.eq(req.remote_port),
            preparing.local_port.eq(req.local_port),
            preparing.peer_isn.eq(Mux(check, req.seq - 1, req.seq)),
            preparing.time.eq(req.time),
            preparing.age_limit.eq(req.age_limit),
        ]
        with m.If(check):
            m.d.comb += preparing.isn.eq(ack_isn)
        with m.Else():
            m.d.comb += [
                preparing.isn.key_slot.eq(req.key_slot),
                preparing.isn.time.eq(req.time),
                preparing.isn.mss_index.eq(req.mss_index),
            ]
        with m.If(req.timestamps):
            m.d.comb += [
                preparing.options.ts_options.eq(ts_options),
                preparing.options.timestamps.eq(1),
            ]
            with m.If(~check):
                m.d.comb += preparing.ts_val.eq(
                    ((req.ts[_TS_OPTION_BITS:] - ts_ahead) << _TS_OPTION_BITS) | ts_options)
        with m.Else():
            m.d.comb += preparing.options.eq(NO_TS_OPTIONS)

        # Credits -- requests in the prepare register or in the SipHash core. Counted against the
        # core's depth, so that a prepared request always finds ``siphash.i.ready`` high in the
        # next clock: the prepare registers then load every clock, with no enable (an enable
        # from the core's credit counter fanned out to ~600 flip-flops limited Fmax to 127 MHz).
        # A request may come in as one leaves (``deliver``): one a clock when nothing stalls.
        accept = Signal()
        deliver = Signal()
        in_core = Signal(range(siphash.fifo_depth + 1))
        m.d.comb += [
            deliver.eq(siphash.o.valid & siphash.o.ready),
            self.i.ready.eq((in_core != siphash.fifo_depth) | deliver),
            accept.eq(self.i.valid & self.i.ready),
        ]
        m.d.sync += [
            in_core.eq(in_core + accept - deliver),
            prepared.eq(preparing),
            prepared_valid.eq(accept),
        ]

        # Hash -- the message, the key and the MSS entry from the prepare registers.
        p = prepared
        age = Signal(params.SYN_ISN_TIME_BITS)
        time = Signal(params.SYN_TIME_BITS)
        message = Signal(CookieMessage)
        tag = Signal(_Tag)
        mss_table = Mux(p.ipv6, self.mss_ipv6.as_value(), self.mss_ipv4.as_value())
        m.d.comb += [
            # The cookie's time counter: the latest value with the ISN's low bits (MAKE: now).
            age.eq(Mux(p.op == CookieOp.CHECK, p.time - p.isn.time, 0)),
            time.eq(p.time - age),
            message.remote_ip.eq(_network_order(_mapped(p.remote_ip, p.ipv6))),
            message.local_ip.eq(_network_order(_mapped(p.local_ip, p.ipv6))),
            message.remote_port.eq(_network_order(p.remote_port)),
            message.local_port.eq(_network_order(p.local_port)),
            message.peer_isn.eq(_network_order(p.peer_isn)),
            message.options.eq(p.options),
            message.family_mss.ipv6.eq(p.ipv6),
            message.family_mss.mss_index.eq(p.isn.mss_index),
            message.time.eq(_network_order(time)),
            tag.op.eq(p.op),
            tag.isn.eq(p.isn),
            tag.ts_val.eq(p.ts_val),
            tag.options.eq(p.options),
            tag.age.eq(age),
            tag.age_ok.eq(age <= p.age_limit),
            tag.mss.eq(mss_table.word_select(p.isn.mss_index, 16)),
            siphash.key.eq(self.keys[p.isn.key_slot]),
            siphash.i.valid.eq(prepared_valid),
            siphash.i.payload.message.eq(message),
            siphash.i.payload.tag.eq(tag),
        ]

        # Verdict -- compare or fill in the hash bits, out through the skid registers.
        out = SkidOutput(m, "out", self.o)
        done = siphash.o.payload.tag
        hash_bits = siphash.o.payload.hash[:params.SYN_ISN_HASH_BITS]
        answer = out.payload
        m.d.comb += [
            siphash.o.ready.eq(out.ready),
            out.valid.eq(siphash.o.valid & out.ready),
            answer.op.eq(done.op),
            answer.isn.eq(done.isn),
            answer.ts_val.eq(done.ts_val),
            answer.info.mss.eq(done.mss),
            answer.info.snd_wscale.eq(done.options.ts_options.wscale),
            answer.info.sack.eq(done.options.ts_options.sack),
            answer.info.ecn.eq(done.options.ts_options.ecn),
            answer.info.timestamps.eq(done.options.timestamps),
            answer.info.mss_index.eq(done.isn.mss_index),
            answer.info.key_slot.eq(done.isn.key_slot),
            answer.info.age.eq(done.age),
        ]
        with m.If(done.op == CookieOp.MAKE):
            m.d.comb += answer.isn.hash.eq(hash_bits)
        with m.Elif(hash_bits != done.isn.hash):
            m.d.comb += answer.verdict.eq(CookieVerdict.INVALID)
        with m.Elif(~done.age_ok):
            m.d.comb += answer.verdict.eq(CookieVerdict.EXPIRED)
        with m.Else():
            m.d.comb += answer.verdict.eq(CookieVerdict.VALID)
        return m
