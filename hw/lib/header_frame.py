"""Parts of the blocks that build whole header-only frames in hardware (the ACK builder
hw/fast_path/ack_builder.py, the SYN-ACK builder hw/syn_cookie/synack_builder.py): the two
checksums as a tree of registered stages, the frame as per-word patterns with registered selects,
and the frame shift register that sends it one beat a clock.

Ref: RFC 1071 (the checksum); docs/tx_path.md ("ACK builder": why the structure is so).

A builder of this kind holds one request in a register while the frame before it leaves. The
checksum stages run free from that register, without valid bits of their own (the builder counts
the clocks since the request arrived, :data:`CHECKSUM_STAGES`); the frame is a fixed byte pattern
per variant (IPv4/IPv6, VLAN, options), assembled word by word; it is loaded into a shift register
as the previous frame's last beat leaves, so frames leave back to back, one beat a clock, as long
as a frame has more beats than the request takes clocks to become a frame.
"""

from amaranth import Cat, Const, Mux, Signal

from .. import params
from .skid import SkidOutput

__all__ = ["CHECKSUM_STAGES", "request_register",
           "be_bytes", "words16", "tree_sum", "header_checksums",
           "variant_frame", "FrameSender"]

_BEAT = params.BEAT_BYTES

#: Registered stages of :func:`header_checksums`, from its terms to the finished checksums.
CHECKSUM_STAGES = 5


def be_bytes(value, nbytes):
    """The bytes of ``value`` (a Value or an int) as sent, most significant first."""
    if isinstance(value, int):
        return [(value >> 8 * (nbytes - 1 - k)) & 0xFF for k in range(nbytes)]
    return [value[8 * (nbytes - 1 - k):8 * (nbytes - k)] for k in range(nbytes)]


def words16(value, nwords):
    """The 16-bit words of ``value`` (as the checksum sums them: order does not matter)."""
    return [value[16 * k:16 * k + 16] for k in range(nwords)]


def tree_sum(terms):
    """The sum of ``terms`` as a balanced tree of adders (two levels for four terms)."""
    while len(terms) > 1:
        terms = [a + b for a, b in zip(terms[0::2], terms[1::2])] + terms[len(terms) & ~1:]
    return terms[0]



def request_register(m, requests, shape, load):
    """The builders' request register: takes a request from ``requests`` while empty and holds it
    until the frame is loaded (``load``). Returns ``(req, aged)``: ``aged[k]`` says
    the request has been here ``k + 1`` clocks (cleared by the load), the last bit that the
    checksums are complete. Data registers have no reset (their valid flags do): fewer control
    sets to pack."""
    req = Signal(shape, name="req", reset_less=True)
    req_valid = Signal(name="req_valid")
    m.d.comb += requests.ready.eq(~req_valid)
    with m.If(requests.valid & ~req_valid):
        m.d.sync += [req.eq(requests.payload), req_valid.eq(1)]
    with m.Elif(load):
        m.d.sync += req_valid.eq(0)
    aged = Signal(CHECKSUM_STAGES, name="aged")
    m.d.sync += aged.eq(Cat(req_valid, aged[:-1]) & (~load).replicate(CHECKSUM_STAGES))
    return req, aged

def header_checksums(m, address_terms, tcp_terms, ip_terms, tcp_late_terms=()):
    """The TCP checksum (pseudo-header included) and the IPv4 header checksum of one frame, in
    :data:`CHECKSUM_STAGES` registered stages built into ``m``. Every adder takes at most four
    terms, so no carry chain is longer than about 20 bits.

    Parameters
    ----------
    address_terms : 16 Values of 16 bits
        The words of both addresses (counted in both sums; IPv4's upper words masked to zero).
    tcp_terms : at most 16 Values of up to 16 bits
        The rest of the TCP sum, summed four at a time in stage 1.
    ip_terms : at most 4 Values of up to 16 bits
        The rest of the IPv4 header's sum.
    tcp_late_terms : Values of up to 16 bits
        Added to the TCP sum in stage 2 (a variant's constant: its select has a clock more); the
        stage-1 groups of ``tcp_terms`` and these are at most four.

    Returns
    -------
    (ip_csum, tcp_csum) : 16-bit Signals, the complemented sums of the terms as they were
    :data:`CHECKSUM_STAGES` clocks earlier.
    """
    tcp_groups = -(-len(tcp_terms) // 4)
    if len(address_terms) != 16 or len(ip_terms) > 4 or tcp_groups + len(tcp_late_terms) > 4:
        raise ValueError("header_checksums: 16 address words, at most 4 IP terms, at most 4 "
                         "TCP groups and late terms")
    # Stage 1: sums of four words.
    s1_addr = [Signal(18, name=f"s1_addr{g}", reset_less=True) for g in range(4)]
    s1_tcp = [Signal(18, name=f"s1_tcp{g}", reset_less=True) for g in range(tcp_groups)]
    s1_ip = Signal(18, reset_less=True)
    for g, s in enumerate(s1_addr):
        m.d.sync += s.eq(tree_sum(address_terms[4 * g:4 * g + 4]))
    for g, s in enumerate(s1_tcp):
        m.d.sync += s.eq(tree_sum(tcp_terms[4 * g:4 * g + 4]))
    m.d.sync += s1_ip.eq(tree_sum(list(ip_terms)))
    # Stage 2: the addresses; the rest of the TCP segment (and its late terms); IPv4's header.
    s2_addr = Signal(20, reset_less=True)
    s2_tcp = Signal(20, reset_less=True)
    s2_ip = Signal(18, reset_less=True)
    m.d.sync += [
        s2_addr.eq(tree_sum(s1_addr)),
        s2_tcp.eq(tree_sum(s1_tcp + list(tcp_late_terms))),
        s2_ip.eq(s1_ip),
    ]
    # Stage 3: both sums whole (the addresses count in both).
    s3_tcp = Signal(21, reset_less=True)
    s3_ip = Signal(21, reset_less=True)
    m.d.sync += [s3_tcp.eq(s2_addr + s2_tcp), s3_ip.eq(s2_addr + s2_ip)]
    # Stages 4, 5: fold to 17 bits, then to 16 (no carry out of 21 bits after two), complement.
    s4_tcp = Signal(17, reset_less=True)
    s4_ip = Signal(17, reset_less=True)
    m.d.sync += [s4_tcp.eq(s3_tcp[:16] + s3_tcp[16:]), s4_ip.eq(s3_ip[:16] + s3_ip[16:])]
    tcp_csum = Signal(16, reset_less=True)
    ip_csum = Signal(16, reset_less=True)
    m.d.sync += [
        tcp_csum.eq(~(s4_tcp[:16] + s4_tcp[16])),
        ip_csum.eq(~(s4_ip[:16] + s4_ip[16])),
    ]
    return ip_csum, tcp_csum


def variant_frame(m, variant, frames, beats_max):
    """The frame of the variant in ``variant``, word by word, built into ``m``.

    Each 8-byte word has 1 to a few distinct patterns across the variants, and its own select
    register among them, decoded from ``variant`` a clock after it is set (so no variant bit fans
    out to the whole frame, and a word is a small mux of registers).

    Parameters
    ----------
    variant : Value
        The variant's code (a request register's bits).
    frames : dict
        ``{code: (bytes, length)}``: the bytes of each variant (Values of 8 bits and ints, up to
        ``beats_max`` words; zeros follow) and its length on the wire in bytes.
    beats_max : int

    Returns
    -------
    (built, beats_m1, keep_last) : Values
        The frame (``8 * beats_max`` bytes, byte 0 in the low bits; valid a clock after
        ``variant``), its beats less one and its last beat's ``keep`` (both of ``variant`` now).
    """
    built = Signal(8 * _BEAT * beats_max)
    padded = {code: list(frame) + [0] * (_BEAT * beats_max - len(frame))
              for code, (frame, _) in frames.items()}
    for k in range(beats_max):
        patterns = {}       # byte sources (by their repr) -> the bytes
        index = {}          # variant code -> pattern number
        for code, frame in padded.items():
            word = frame[_BEAT * k:_BEAT * (k + 1)]
            key = tuple(repr(b) for b in word)
            patterns.setdefault(key, Cat(*(Const(b, 8) if isinstance(b, int) else b
                                           for b in word)))
            index[code] = list(patterns).index(key)
        lane = built[8 * _BEAT * k:8 * _BEAT * (k + 1)]
        if len(patterns) == 1:
            m.d.comb += lane.eq(next(iter(patterns.values())))
            continue
        word_sel = Signal(range(len(patterns)), name=f"word{k}_sel", reset_less=True)
        with m.Switch(variant):
            for code, number in index.items():
                with m.Case(code):
                    m.d.sync += word_sel.eq(number)
        with m.Switch(word_sel):
            for number, value in enumerate(patterns.values()):
                with m.Case(number) if number < len(patterns) - 1 else m.Default():
                    m.d.comb += lane.eq(value)
    beats_m1 = Signal(range(beats_max), name="built_beats_m1")
    keep_last = Signal(_BEAT, name="built_keep_last")
    with m.Switch(variant):
        for code, (_, length) in frames.items():
            with m.Case(code):
                beats = -(-length // _BEAT)
                m.d.comb += [
                    beats_m1.eq(beats - 1),
                    keep_last.eq((1 << (length - _BEAT * (beats - 1))) - 1),
                ]
    return built, beats_m1, keep_last


class FrameSender:
    """The frame shift register and its controls, built into module ``m``, sending frames of up
    to ``beats_max`` beats on stream ``o`` (of :class:`~hw.layouts.RxBeat`) one beat a clock.

    ``push`` (a beat to the output) and ``load`` (the next frame into the shift register) drive
    every bit of it, so both are flip-flops, computed a clock ahead from the next state of what
    they depend on, and so is the enable ``shift_en``: always equal to
    ``push = busy & out.ready`` and ``load = complete & (~busy | (push & is_last))``. The output
    leaves from registers with a skid register (:class:`~hw.lib.skid.SkidOutput`), so
    ``o.ready`` reaches only those registers and the flip-flops that compute the controls.

    Attributes
    ----------
    load : Signal, out
        A flip-flop: the frame is loaded on this clock's edge (the builder takes its next request
        after it).

    Call :meth:`send` once with the frame and when it is complete.
    """

    def __init__(self, m, o, beats_max):
        self._m = m
        self._o = o
        self._beats_max = beats_max
        self.load = Signal()

    def send(self, built, beats_m1, keep_last, complete_next):
        """Sends ``built`` (``beats_m1 + 1`` beats, the last one's ``keep_last``), loaded when
        ``complete_next`` held on the clock before; ``complete_next`` must fall on the clock after
        :attr:`load`."""
        m, load = self._m, self.load
        out = SkidOutput(m, "out", self._o)
        shift = Signal(len(built), reset_less=True)
        busy = Signal(name="busy")              # shift holds a frame with beats still to send
        # beats after the one in shift's low word
        left = Signal(range(self._beats_max), reset_less=True)
        is_last = Signal()                      # left == 0
        keep_last_r = Signal(_BEAT, name="keep_last", reset_less=True)
        push = Signal()
        shift_en = Signal()                     # load | push: the shift register's enable
        busy_next = Signal()
        is_last_next = Signal()
        push_next = Signal()
        load_next = Signal()
        m.d.comb += [
            busy_next.eq(Mux(load, 1, busy & ~(push & is_last))),
            is_last_next.eq(Mux(load, beats_m1 == 0, Mux(push, left == 1, is_last))),
            push_next.eq(busy_next & out.ready_next),
            load_next.eq(complete_next & ~load & (~busy_next | (push_next & is_last_next))),
        ]
        m.d.sync += [
            busy.eq(busy_next),
            is_last.eq(is_last_next),
            push.eq(push_next),
            load.eq(load_next),
            shift_en.eq(push_next | load_next),
        ]
        m.d.comb += [
            out.valid.eq(push),
            out.payload.data.eq(shift[:8 * _BEAT]),
            out.payload.keep.eq(Mux(is_last, keep_last_r, (1 << _BEAT) - 1)),
            out.payload.last.eq(is_last),
        ]
        with m.If(shift_en):
            m.d.sync += shift.eq(Mux(load, built, shift[8 * _BEAT:]))
        with m.If(load):
            m.d.sync += [left.eq(beats_m1), keep_last_r.eq(keep_last)]
        with m.Elif(push):
            m.d.sync += left.eq(left - 1)
