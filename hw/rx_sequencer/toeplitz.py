"""Toeplitz hash for receive-side scaling.

Ref: Microsoft, "RSS Hashing Functions" and "Verifying the RSS Hash Calculation" (NDIS).

For every input bit ``i`` that is set (bit 0 = MSB of the first input byte), the 32-bit window of
the key starting at key bit ``i`` is XORed into the result. The input is a fixed 36 bytes (an IPv6
4-tuple), left-aligned and zero-padded: zero bits contribute nothing, so shorter inputs (IPv4,
2-tuples) hash exactly as the definition says.

Each output bit is an XOR of 288 AND terms, 9216 in all, with every input bit and every key bit
wired to 32 of them: fully parallel that is about 4,600 LUTs and a routing hot spot. The unit
therefore takes ``passes`` clocks per input, hashing ``288 / passes`` input bits a clock while the
input and the key shift past (4 passes: about a quarter of the logic). It accepts a new input every
``passes + 1`` clocks; ``passes=1`` is the fully parallel, one-per-clock version.
"""

from amaranth import Cat, Module, Mux, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from .. import params

__all__ = ["ToeplitzHash", "TOEPLITZ_INPUT_BYTES"]

#: Bytes of the longest hash input: IPv6 source and destination address and two ports.
TOEPLITZ_INPUT_BYTES = 36
_INPUT_BITS = 8 * TOEPLITZ_INPUT_BYTES
_KEY_BITS = 8 * params.RSS_KEY_BYTES


class ToeplitzHash(wiring.Component):
    """Toeplitz hash, ``passes`` clocks per input, fixed latency.

    Members
    -------
    data : In(288)
        Hash input, byte 0 in bits 287:280 (left-aligned, zero-padded).
    key : In(320)
        Hash key, key byte 0 in bits 319:312.
    valid : In(1)
        Start hashing ``data`` under ``key``. At most once every ``passes + 1`` clocks.
    hash : Out(32)
        Hash of the input started ``latency`` clocks earlier.
    hash_valid : Out(1)
        ``valid`` delayed by ``latency`` clocks.
    overrun : Out(1)
        ``valid`` came while an input was still being hashed (its hash is then wrong).
    """

    def __init__(self, *, passes=4):
        if passes < 1 or _INPUT_BITS % passes:
            raise ValueError(f"passes must be a positive divisor of {_INPUT_BITS}, not {passes}")
        self._passes = passes
        super().__init__({
            "data": In(_INPUT_BITS),
            "key": In(_KEY_BITS),
            "valid": In(1),
            "hash": Out(32),
            "hash_valid": Out(1),
            "overrun": Out(1),
        })

    @property
    def passes(self):
        return self._passes

    @staticmethod
    def latency_for(passes):
        """Clocks from ``valid`` to ``hash_valid`` of a unit with ``passes`` passes."""
        return 2 if passes == 1 else 2 + passes

    @property
    def latency(self):
        """Clocks from ``valid`` to ``hash_valid``."""
        return self.latency_for(self._passes)

    def elaborate(self, platform):
        m = Module()
        if self._passes == 1:
            self._elaborate_parallel(m)
        else:
            self._elaborate_serial(m)
        return m

    @staticmethod
    def _partial(data_slice, key, key_top):
        """32 bits: bit (31 - b) is the XOR over the slice's bits of ``in(i) & key(i + b)``.

        ``data_slice`` holds input bits MSB-first from its top bit down; ``key_top`` is the index
        in ``key`` of the key bit that lines up with the slice's top bit. In signal indices both
        runs are contiguous slices that line up bit for bit.
        """
        n = len(data_slice)
        bits = []
        for b in range(32):
            key_lo = key_top + 1 - n - b
            bits.append((data_slice & key[key_lo:key_lo + n]).xor())
        return Cat(*reversed(bits))

    def _elaborate_parallel(self, m):
        # Stage 1: eight groups of 36 input bits, XOR-reduced and registered; stage 2: combined.
        groups = 8
        per_group = _INPUT_BITS // groups
        partials = []
        for g in range(groups):
            data_lo = _INPUT_BITS - (g + 1) * per_group
            partial = Signal(32, name=f"partial{g}")
            m.d.sync += partial.eq(self._partial(self.data[data_lo:data_lo + per_group], self.key,
                                                 _KEY_BITS - 1 - g * per_group))
            partials.append(partial)
        stage1_valid = Signal()
        m.d.sync += stage1_valid.eq(self.valid)
        combined = 0
        for partial in partials:
            combined = combined ^ partial
        m.d.sync += [self.hash.eq(combined), self.hash_valid.eq(stage1_valid)]

    def _elaborate_serial(self, m):
        # The input and the key are loaded into shift registers; each clock hashes the top
        # ``chunk`` input bits against the top of the key, then both shift up by ``chunk``.
        # The chunk is hashed in groups whose partial results are registered, then folded into
        # the accumulator a clock later: each group needs only its own input and key bits, which
        # keeps the XOR network local enough for the router.
        chunk = _INPUT_BITS // self._passes
        groups = 8 if chunk % 8 == 0 else 1
        per_group = chunk // groups
        data_sr = Signal(_INPUT_BITS, name="data_shift")
        key_sr = Signal(_KEY_BITS, name="key_shift")
        passes_left = Signal(range(self._passes + 1))
        partials = [Signal(32, name=f"partial{g}") for g in range(groups)]
        partial_valid = Signal()
        partial_first = Signal()        # the partials are a frame's first pass
        first_pass = Signal()
        acc = Signal(32)
        m.d.sync += partial_valid.eq(0)
        with m.If(self.valid):
            m.d.sync += [
                data_sr.eq(self.data),
                key_sr.eq(self.key),
                passes_left.eq(self._passes),
                first_pass.eq(1),
            ]
        with m.Elif(passes_left != 0):
            for g, partial in enumerate(partials):
                data_lo = _INPUT_BITS - (g + 1) * per_group
                m.d.sync += partial.eq(self._partial(data_sr[data_lo:data_lo + per_group], key_sr,
                                                     _KEY_BITS - 1 - g * per_group))
            m.d.sync += [
                data_sr.eq(data_sr << chunk),
                key_sr.eq(key_sr << chunk),
                passes_left.eq(passes_left - 1),
                first_pass.eq(0),
                partial_valid.eq(1),
                partial_first.eq(first_pass),
            ]
        # A frame's first fold replaces the accumulator, so the next input may load while the
        # last partials of the previous one are still being folded.
        folded = Mux(partial_first, 0, acc)
        for partial in partials:
            folded = folded ^ partial
        with m.If(partial_valid):
            m.d.sync += acc.eq(folded)
        m.d.comb += [
            self.hash.eq(acc),
            self.overrun.eq(self.valid & (passes_left != 0)),
        ]
        valid_delay = Signal(self.latency)
        m.d.sync += valid_delay.eq(Cat(self.valid, valid_delay))
        m.d.comb += self.hash_valid.eq(valid_delay[-1])
