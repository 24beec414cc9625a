"""SipHash-c-d of fixed-length messages, fully pipelined: one hash accepted per clock.

Ref: J.-P. Aumasson, D. J. Bernstein, "SipHash: a fast short-input PRF" (INDOCRYPT 2012), §2.
Golden model: sim/reference/siphash.py. Design notes and measured figures: docs/siphash.md.

The CCB table hashes the TCP 4-tuple with it (SPEC §3) and the SYN-cookie unit computes its ISN
with it (SPEC §9); each instantiates its own core for its message length.

Pipeline. A request is registered at the input stage, where the key is mixed into the initial
state and the first message word into ``v3``. Then every SipRound of the ``n_words * c + d``
rounds is cut into ``stages_per_round`` register stages: with 2, a stage is half a SipRound,
two 64-bit additions side by side (the rotations are wiring). No LUT follows a carry chain on the
critical path: a state word is kept as the XOR of up to two registers (:class:`_Word`), and the
XOR of a sum's high bits (the last out of its chain) into the next word is left to the next
stage's carry chain, whose cells take it as one more LUT input (on ECP5 the core instantiates the
``CCU2C`` chains itself: Yosys would put the XOR in a LUT before the chain). The low bits, early
out of the chain, are XORed by a LUT after it. The message XORs between words (``v0 ^= m``, then
``v3 ^= m'``) and the ``v2 ^= 0xff`` of the finalisation fold in the same way, so no stage is
longer than the others. The last stage computes the hash ``v0 ^ v1 ^ v2 ^ v3`` from the inputs of
its additions (``v0`` cancels out): 128 bits are registered and XORed into the 64-bit result.

Only what a later stage needs travels down the pipe: the state, the message words not yet
consumed (a word is dropped after the stage whose chain takes ``v0 ^ m``; the length byte and the
zero padding are constants) and a valid bit. The key is used at the input stage only, and the tag
never enters the pipe (see below).

Backpressure. The pipeline has no enable: it moves every clock, so ``o.ready`` never fans out to
its thousands of registers and costs no Fmax. Results are written into an output FIFO; tags are
written into a tag FIFO when their request is accepted, and both are read together. A credit
counter of requests accepted and not yet delivered keeps ``i.ready`` low when every FIFO entry is
spoken for, so nothing can be lost. With ``latency + 1`` entries the core sustains one request per
clock while ``o.ready`` stays high. ``i.ready`` depends on registers only, never on ``o.ready``
or ``i.valid``.
"""

from amaranth import C, Cat, Const, Instance, Module, Shape, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.fifo import SyncFIFO, SyncFIFOBuffered
from amaranth.lib.wiring import In, Out

__all__ = ["SipHash", "SIPHASH_INIT"]

#: ``v0..v3`` before the key is mixed in ("somepseudorandomlygeneratedbytes" in ASCII).
SIPHASH_INIT = (0x736F6D6570736575, 0x646F72616E646F6D, 0x6C7967656E657261, 0x7465646279746573)

#: Clocks the output FIFO adds: a write is readable two clocks later (SyncFIFOBuffered).
_FIFO_LATENCY = 2


#: ``INIT`` of both halves of an ECP5 ``CCU2C`` that adds ``A ^ B`` to ``C ^ D``: the LUT4 gives the
#: propagate ``A ^ B ^ C ^ D``, and its low nibble, the LUT2 of ``A`` and ``B`` that the carry takes
#: when the propagate is 0 (both operands equal), gives ``A ^ B``.
_CCU2C_XOR_ADD_INIT = 0x6996
#: The same for ``A ^ B`` plus ``C``, with ``D`` tied high as Yosys ties it (a tie-high costs no
#: routing; a LUT input of a carry cell has a fixed pin, so each one used is a net to route).
_CCU2C_XOR_ADD_INIT_3 = 0x9696
#: Bits of a sum XORed into the next word in the stage that computes it (by a LUT after the carry
#: chain: these bits are early); the higher bits are XORed by the consumers (in their carry chains).
#: Fewer bits left to the chains means fewer LUT inputs of carry cells to route.
_EARLY_BITS = 48


def _xor(terms):
    value = terms[0]
    for term in terms[1:]:
        value = value ^ term
    return value


class _MessageWord:
    """A :class:`_Word` term: message word ``index``, from the registers of the stage using it."""

    def __init__(self, index):
        self.index = index


class _High:
    """A :class:`_Word` term: the bits from ``_EARLY_BITS`` up of a sum, zero below."""

    def __init__(self, signal):
        self.signal = signal

    def value(self):
        return Cat(C(0, _EARLY_BITS), self.signal[_EARLY_BITS:])


def _low(signal):
    """The bits of a sum below ``_EARLY_BITS``, zero above."""
    return Cat(signal[:_EARLY_BITS], C(0, 64 - _EARLY_BITS))


class _Word:
    """A 64-bit state word kept as the XOR of terms, computed only where it is used.

    A term is ``(base, rotation)``: ``base`` a state signal (a sum, or a register the next stage
    gets), a :class:`_High` part of a sum, the index of a message word (whose register depends on
    the stage), or a constant. The XOR of the terms is folded into the LUTs that consume the word
    (the carry chain of an addition, the LUT that collapses a word into one signal).
    """

    def __init__(self, *terms):
        self.terms = [term if isinstance(term, tuple) else (term, 0) for term in terms]

    def rotate_left(self, amount):
        return _Word(*((base, (rotation + amount) % 64) for base, rotation in self.terms))

    def __xor__(self, base):
        return _Word(*self.terms, (base, 0))


def _add(m, x, y, ecp5):
    """``x + y`` (mod 2**64), ``x`` and ``y`` lists of up to two 64-bit terms XORed together.

    On ECP5 a chain of 32 ``CCU2C`` whose LUTs take the terms: ``y`` (the second operand, the
    one with the :class:`_High` term when there is one) on ``A``/``B``, ``x`` on ``C``/``D``.
    Zero bits on ``A``/``B`` and a tied-high ``D`` cost nextpnr no routing (it folds them into the
    ``INIT``); a constant term of a one-term ``x`` is folded into the ``INIT`` here."""
    assert 1 <= len(x) <= 2 and 1 <= len(y) <= 2
    if not ecp5:
        return (_xor(x) + _xor(y))[:64]
    if len(y) < len(x):
        x, y = y, x
    a, b = (list(y) + [C(0, 64)])[:2]
    constant = 0
    if len(x) == 2 and isinstance(x[1], Const):
        x, constant = x[:1], x[1].value
    four = len(x) == 2
    c, d = (list(x) + [C(2**64 - 1, 64)])[:2]
    total = Signal(64)
    carry = C(0, 1)
    for i in range(0, 64, 2):
        cout = Signal()
        ports = {}
        for half in (0, 1):
            bit = i + half
            if four:
                init = _CCU2C_XOR_ADD_INIT
            else:     # D tied high: A ^ B ^ C, or A ^ B ^ ~C for a one in the constant
                init = _CCU2C_XOR_ADD_INIT if (constant >> bit) & 1 else _CCU2C_XOR_ADD_INIT_3
            ports.update({f"i_A{half}": a[bit], f"i_B{half}": b[bit], f"i_C{half}": c[bit],
                          f"i_D{half}": d[bit], f"o_S{half}": total[bit],
                          f"p_INIT{half}": C(init, 16)})
        m.submodules += Instance("CCU2C", p_INJECT1_0="NO", p_INJECT1_1="NO",
                                 i_CIN=carry, o_COUT=cout, **ports)
        carry = cout
    return total


def _mix(collapse, word, amount, total):
    """``(word <<< amount) ^ total`` as two terms: the low bits of ``total`` (a sum, early from its
    carry chain) collapsed with the word into one signal, its high bits left to the consumers."""
    return _Word(collapse(word.rotate_left(amount) ^ _LowOf(total)), _High(total))


class _LowOf:
    """A :class:`_Word` term: the low bits of a sum, used in the stage that computes it."""

    def __init__(self, signal):
        self.signal = signal

    def value(self):
        return _low(self.signal)


def _half_round_a(v0, v1, v2, v3, add, collapse):
    """First half of a SipRound: ``v0 += v1; v2 += v3``, rotate, XOR. The XORs with the high
    bits of the sums are left to the consumers."""
    s0, s2 = add(v0, v1), add(v2, v3)
    return (_Word((s0, 32)), _mix(collapse, v1, 13, s0), _Word(s2), _mix(collapse, v3, 16, s2))


def _half_round_b(v0, v1, v2, v3, add, collapse):
    """Second half of a SipRound: ``v2 += v1; v0 += v3``, rotate, XOR (partly left to the
    consumers)."""
    s2, s0 = add(v2, v1), add(v0, v3)
    return (_Word(s0), _mix(collapse, v1, 17, s2), _Word((s2, 32)), _mix(collapse, v3, 21, s0))


class SipHash(wiring.Component):
    """SipHash-c-d (64-bit output) of ``message_bytes``-byte messages, one request per clock.

    Byte order is SipHash's own: message byte ``k`` is at bits ``[8k, 8k+8)`` of ``message``
    (byte 0 of a 4-tuple first, as it comes off the wire; no byte swap), key byte ``k`` at bits
    ``[8k, 8k+8)`` of ``key``, and ``hash`` is the 64-bit result word whose little-endian bytes
    are the reference implementation's output.

    Parameters
    ----------
    message_bytes : int
        Length of every message this instance hashes (the length byte of the last word is a
        constant): 12 for an IPv4 4-tuple, 36 for an IPv6 one. At least 0.
    c_rounds : int
        SipRounds per message word (2 for SipHash-2-4).
    d_rounds : int
        SipRounds of finalisation (4 for SipHash-2-4).
    stages_per_round : int
        Register stages per SipRound: 2 (half a SipRound per stage, for Fmax) or 1 (half the
        registers, about 125 MHz on ECP5).
    tag_shape : shape-castable or None
        A payload that comes out with the hash of its request (a request id, the rest of a lookup
        request). ``None`` for no tag.
    buffered_output : bool
        True (default): the output FIFO is ``SyncFIFOBuffered``, ``o.payload`` a register (whose
        load enable follows ``o.ready``). False: ``SyncFIFO``, ``o.payload`` read from its
        distributed RAM at a pointer register, one clock less latency, and ``o.ready`` drives
        only the pointer: for a consumer that registers ``o.payload`` itself.

    Members
    -------
    key : In(128)
        The key, ``k0`` in bits 63:0. Sampled with each request as it is accepted: a change
        applies to the requests accepted from the next clock on, never to one already inside.
    i : In(stream.Signature(request_layout))
        Requests: ``message`` and ``tag``. Accepted when ``valid & ready``.
    o : Out(stream.Signature(response_layout))
        Results in request order: ``hash`` and the request's ``tag``. ``valid`` does not wait
        for ``ready``; a result stays until taken.

    Attributes
    ----------
    latency : int
        Clocks from a request accepted to its result valid, with no stall.
    fifo_depth : int
        Requests the core holds (accepted, not yet delivered) before ``i.ready`` falls:
        ``latency + 1``, so that it never falls while ``o.ready`` is held high.

    Elaborated for a platform whose ``family`` is ``"ecp5"`` (Amaranth's ``LatticePlatform`` for
    an ECP5, or ``inic synth``), the additions are ``CCU2C`` chains that take the XORs in their
    LUTs; for any other platform, or none (the simulator), plain ``+`` and ``^``.
    """

    def __init__(self, *, message_bytes, c_rounds=2, d_rounds=4, stages_per_round=2,
                 tag_shape=None, buffered_output=True):
        for name, value, low in (("message_bytes", message_bytes, 0), ("c_rounds", c_rounds, 1),
                                 ("d_rounds", d_rounds, 1)):
            if not isinstance(value, int) or isinstance(value, bool) or value < low:
                raise ValueError(f"{name} must be an integer >= {low}, not {value!r}")
        if stages_per_round not in (1, 2):
            raise ValueError(f"stages_per_round must be 1 or 2, not {stages_per_round!r}")
        if tag_shape is not None and Shape.cast(tag_shape).width == 0:
            raise ValueError("tag_shape has no bits: pass tag_shape=None for no tag")
        self._message_bytes = message_bytes
        self._c_rounds = c_rounds
        self._d_rounds = d_rounds
        self._stages_per_round = stages_per_round
        self._tag_shape = tag_shape
        self._buffered_output = bool(buffered_output)
        tag = {} if tag_shape is None else {"tag": tag_shape}
        self._request_layout = data.StructLayout({"message": 8 * message_bytes, **tag})
        self._response_layout = data.StructLayout({"hash": 64, **tag})
        super().__init__({
            "key": In(128),
            "i": In(stream.Signature(self._request_layout)),
            "o": Out(stream.Signature(self._response_layout)),
        })

    @property
    def message_bytes(self):
        return self._message_bytes

    @property
    def c_rounds(self):
        return self._c_rounds

    @property
    def d_rounds(self):
        return self._d_rounds

    @property
    def stages_per_round(self):
        return self._stages_per_round

    @property
    def tag_shape(self):
        return self._tag_shape

    @property
    def request_layout(self):
        """Payload of ``i``: ``message`` and, with a tag, ``tag``."""
        return self._request_layout

    @property
    def response_layout(self):
        """Payload of ``o``: ``hash`` and, with a tag, ``tag``."""
        return self._response_layout

    @property
    def message_words(self):
        """64-bit words SipHash compresses: ``message_bytes // 8 + 1`` (the last one padded)."""
        return self._message_bytes // 8 + 1

    @property
    def pipeline_stages(self):
        """Register stages after the input stage, one per ``1 / stages_per_round`` SipRound."""
        rounds = self.message_words * self._c_rounds + self._d_rounds
        return rounds * self._stages_per_round

    @property
    def latency(self):
        """The input stage, the pipeline stages, and the output FIFO."""
        return 1 + self.pipeline_stages + (_FIFO_LATENCY if self._buffered_output else 1)

    @property
    def fifo_depth(self):
        return self.latency + 1

    def _term(self, term, words):
        """The 64-bit value of a :class:`_Word` term, message words from the registers ``words``."""
        base, rotation = term
        if isinstance(base, _MessageWord):
            j = base.index
            base = words[j] if j < self.message_words - 1 else self._last_word(words.get(j))
        elif isinstance(base, (_High, _LowOf)):
            base = base.value()
        return base.rotate_left(rotation) if rotation else base

    def _last_word(self, tail):
        """The padded last word: ``tail`` (the ``message_bytes % 8`` last bytes, or None), zeros,
        and the length mod 256 in the top byte."""
        tail_bits = 8 * (self._message_bytes % 8)
        parts = [] if tail is None else [tail]
        return Cat(*parts, C(0, 56 - tail_bits), C(self._message_bytes & 0xFF, 8))

    def elaborate(self, platform):
        m = Module()
        n_words = self.message_words
        half_rounds = 2 * (n_words * self._c_rounds + self._d_rounds)
        per_stage = 2 // self._stages_per_round      # half-rounds per register stage
        n_stages = self.pipeline_stages
        # Half-round that ends the compression of word j: v0 ^= m_j (and v3 ^= m_j+1) follow it.
        word_end = {2 * self._c_rounds * (j + 1) - 1: j for j in range(n_words)}
        # A word's bits travel through the registers that feed the stages up to its last use:
        # the stage after the one that ends its compression, whose addition takes ``v0 ^ m_j``.
        last_stage = [(2 * self._c_rounds * (j + 1) - 1) // per_stage + 1 for j in range(n_words)]
        ecp5 = getattr(platform, "family", None) == "ecp5"

        accept = Signal()
        deliver = Signal()
        m.d.comb += [
            accept.eq(self.i.valid & self.i.ready),
            deliver.eq(self.o.valid & self.o.ready),
        ]

        # Input stage -- the key into the initial state, the first word into v3. The data
        # registers load every clock (no enable, no reset); only the valid bits matter.
        message = self.i.payload.message
        full_bytes = self._message_bytes // 8 * 8

        def stored_words(r):
            """Registers for the words still needed by the stages fed by register ``r``."""
            words = {}
            for j in range(n_words):
                if last_stage[j] < r:
                    continue
                width = 64 if j < n_words - 1 else 8 * (self._message_bytes % 8)
                if width:
                    words[j] = Signal(width, name=f"m{j}_{r}", reset_less=True)
            return words

        def word(words, j):
            return words[j] if j < n_words - 1 else self._last_word(words.get(j))

        state = [Signal(64, name=f"v{k}_0", reset_less=True) for k in range(4)]
        words = stored_words(0)
        valid = Signal(name="valid_0")
        for j, reg in words.items():
            m.d.sync += reg.eq(message[64 * j:64 * j + len(reg)])
        first_word = (message[:64] if n_words > 1
                      else self._last_word(message[full_bytes:] if self._message_bytes else None))
        k0, k1 = self.key[:64], self.key[64:]
        m.d.sync += [
            state[0].eq(k0 ^ SIPHASH_INIT[0]),
            state[1].eq(k1 ^ SIPHASH_INIT[1]),
            state[2].eq(k0 ^ SIPHASH_INIT[2]),
            state[3].eq(k1 ^ SIPHASH_INIT[3] ^ first_word),
            valid.eq(accept),
        ]

        # Stages 1..n_stages -- ``per_stage`` half-rounds each, in order. A state word is up to
        # two terms (see _Word); a stage registers each distinct term once.
        v = [_Word(reg) for reg in state]
        result_sum = Signal(64, name="result_sum", reset_less=True)
        result_mix = Signal(64, name="result_mix", reset_less=True)
        for s in range(n_stages):
            def value(w, words=words):
                return [self._term(term, words) for term in w.terms]

            def add(x, y, value=value):
                return _add(m, value(x), value(y), ecp5)

            def collapse(w, value=value):
                return _xor(value(w))

            folded = None
            for h in range(s * per_stage, (s + 1) * per_stage):
                if h == half_rounds - 1:      # the last stage ends in the hash itself
                    # Of v0 ^ v1 ^ v2 ^ v3 after the half-round, v0 + v3 enters twice and
                    # cancels: s ^ (s <<< 32) ^ t is left, s = v2 + v1 and
                    # t = (v1 <<< 17) ^ (v3 <<< 21), registered apart.
                    folded = (add(v[2], v[1]),
                              _xor(value(v[1].rotate_left(17)) + value(v[3].rotate_left(21))))
                    break
                v = list((_half_round_a if h % 2 == 0 else _half_round_b)(*v, add, collapse))
                if h in word_end:
                    j = word_end[h]
                    v[0] = v[0] ^ _MessageWord(j)
                    if j + 1 < n_words:
                        (mixed, _), rest = v[3].terms
                        v[3] = _Word(mixed ^ word(words, j + 1), rest)
                    else:
                        v[2] = v[2] ^ C(0xFF, 64)      # finalisation starts
            next_valid = Signal(name=f"valid_{s + 1}")
            m.d.sync += next_valid.eq(valid)
            valid = next_valid
            if folded is not None:
                m.d.sync += [result_sum.eq(folded[0]), result_mix.eq(folded[1])]
                break
            registers = {}
            for k, w in enumerate(v):
                terms = []
                for base, rotation in w.terms:
                    if not isinstance(base, (_MessageWord, Const)):
                        high = isinstance(base, _High)
                        signal = base.signal if high else base
                        if id(signal) not in registers:
                            reg = Signal(64, name=f"v{k}{'ab'[len(terms)]}_{s + 1}",
                                         reset_less=True)
                            m.d.sync += reg.eq(signal)
                            registers[id(signal)] = reg
                        base = _High(registers[id(signal)]) if high else registers[id(signal)]
                    terms.append((base, rotation))
                v[k] = _Word(*terms)
            next_words = stored_words(s + 1)
            m.d.sync += [reg.eq(words[j]) for j, reg in next_words.items()]
            words = next_words

        # Output -- results and tags queue in FIFOs with room for every request in flight.
        fifo = SyncFIFOBuffered if self._buffered_output else SyncFIFO
        m.submodules.hashes = hashes = fifo(width=64, depth=self.fifo_depth)
        m.d.comb += [
            hashes.w_data.eq(result_sum ^ result_sum.rotate_left(32) ^ result_mix),
            hashes.w_en.eq(valid),
            self.o.valid.eq(hashes.r_rdy),
            self.o.payload.hash.eq(hashes.r_data),
            hashes.r_en.eq(self.o.ready),
        ]
        if self._tag_shape is not None:
            width = Shape.cast(self._tag_shape).width
            m.submodules.tags = tags = fifo(width=width, depth=self.fifo_depth)
            m.d.comb += [
                tags.w_data.eq(self.i.payload.tag),
                tags.w_en.eq(accept),
                # A tag was queued ``latency`` clocks before its hash: it is there when it is.
                self.o.payload.tag.eq(tags.r_data),
                tags.r_en.eq(deliver),
            ]

        # Credits -- requests accepted and not yet delivered.
        in_flight = Signal(range(self.fifo_depth + 1))
        m.d.sync += in_flight.eq(in_flight + accept - deliver)
        m.d.comb += self.i.ready.eq(in_flight != self.fifo_depth)
        return m
