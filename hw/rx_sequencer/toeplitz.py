"""Toeplitz hash for receive-side scaling, fully pipelined (one input per clock).

Ref: Microsoft, "RSS Hashing Functions" and "Verifying the RSS Hash Calculation" (NDIS).

For every input bit ``i`` that is set (bit 0 = MSB of the first input byte), the 32-bit window of
the key starting at key bit ``i`` is XORed into the result. The input is a fixed 36 bytes (an IPv6
4-tuple), left-aligned and zero-padded: zero bits contribute nothing, so shorter inputs (IPv4,
2-tuples) hash exactly as the definition says. Each output bit is an XOR of 288 AND terms; the terms
are split into groups that are XOR-reduced and registered first, then combined, so the hash takes
two clocks.
"""

from amaranth import Cat, Module, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from .. import params

__all__ = ["ToeplitzHash"]

#: Bytes of the longest hash input: IPv6 source and destination address and two ports.
TOEPLITZ_INPUT_BYTES = 36


class ToeplitzHash(wiring.Component):
    """Pipelined Toeplitz hash.

    Members
    -------
    data : In(288)
        Hash input, byte 0 in bits 287:280 (left-aligned, zero-padded).
    key : In(320)
        Hash key, key byte 0 in bits 319:312.
    valid : In(1)
        ``data`` holds an input this clock.
    hash : Out(32)
        Hash of the input presented ``LATENCY`` clocks earlier.
    hash_valid : Out(1)
        ``valid`` delayed by ``LATENCY`` clocks.
    """

    LATENCY = 2

    def __init__(self, *, groups=8):
        if (TOEPLITZ_INPUT_BYTES * 8) % groups:
            raise ValueError(f"groups must divide {TOEPLITZ_INPUT_BYTES * 8}, not {groups}")
        self._groups = groups
        super().__init__({
            "data": In(TOEPLITZ_INPUT_BYTES * 8),
            "key": In(params.RSS_KEY_BYTES * 8),
            "valid": In(1),
            "hash": Out(32),
            "hash_valid": Out(1),
        })

    @property
    def groups(self):
        return self._groups

    def elaborate(self, platform):
        m = Module()
        n_in = TOEPLITZ_INPUT_BYTES * 8
        n_key = params.RSS_KEY_BYTES * 8
        per_group = n_in // self._groups

        # Stage 1: partial[g] bit (31 - b) = XOR over the group's input bits i of in(i) & key(i + b)
        # (MSB-first bit numbering). In signal indices both runs are contiguous slices that line up
        # bit for bit, so each output bit is one AND of two slices, XOR-reduced.
        partials = []
        for g in range(self._groups):
            data_lo = n_in - (g + 1) * per_group
            data_slice = self.data[data_lo:data_lo + per_group]
            bits = []
            for b in range(32):
                key_lo = n_key - (g + 1) * per_group - b
                bits.append((data_slice & self.key[key_lo:key_lo + per_group]).xor())
            partial = Signal(32, name=f"partial{g}")
            m.d.sync += partial.eq(Cat(*reversed(bits)))
            partials.append(partial)
        stage1_valid = Signal()
        m.d.sync += stage1_valid.eq(self.valid)

        # Stage 2: combine the groups.
        combined = 0
        for partial in partials:
            combined = combined ^ partial
        m.d.sync += [
            self.hash.eq(combined),
            self.hash_valid.eq(stage1_valid),
        ]
        return m
