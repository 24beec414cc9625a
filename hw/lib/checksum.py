"""Internet checksum over selected bytes of a frame stream.

Ref: RFC 1071 (computing the Internet checksum), RFC 9293 §3.1 (TCP pseudo-header).

The sum is the ones' complement sum of big-endian 16-bit words. The receive sequencer's frame
checker verifies with it, the TX reader's checksum offload computes with it. Every region summed
(the IPv4 header, the pseudo-header addresses, the TCP/UDP segment) starts at an even frame
offset, so word boundaries are the even bytes of each beat, and a masked-out byte simply counts as
zero: that also pads an odd-length region with the zero byte RFC 1071 asks for.
"""

from amaranth import Cat, Module, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from .. import params
from .netorder import be_field

__all__ = ["ChecksumAccumulator", "bytes_from", "ones_complement_fold"]


def bytes_from(ahead, nbytes=params.BEAT_BYTES):
    """Bit ``i`` set when byte ``i`` of a beat is at or past a bound ``ahead`` bytes into the beat.

    ``ahead`` is a signed value: ``bound - offset of the beat``. Written out as a sign test, a
    zero test of the high bits and a 3-bit comparison, so it maps to a few LUTs, no carry chain.
    """
    index_bits = (nbytes - 1).bit_length()
    negative = ahead[-1]
    within = ahead[index_bits:] == 0
    return Cat(*(negative | (within & (ahead[:index_bits] <= i)) for i in range(nbytes)))


def ones_complement_fold(value):
    """One end-around-carry step: the low 16 bits plus the bits above them."""
    return value[:16] + value[16:]


class ChecksumAccumulator(wiring.Component):
    """Ones' complement sum of the masked bytes of each frame.

    Members
    -------
    data : In(64)
        A beat, frame byte ``base + i`` at bits ``[8i, 8i+8)``; beats are even-aligned.
    mask : In(8)
        Bytes of the beat that count.
    last : In(1)
        Last beat of a frame.
    valid : In(1)
        ``data``, ``mask`` and ``last`` hold a beat this clock.
    sum : Out(16)
        Folded 16-bit sum of the frame whose last beat came ``LATENCY`` clocks earlier; 0xFFFF when
        the region including its checksum field is intact.
    sum_valid : Out(1)
    """

    LATENCY = 4

    def __init__(self, *, beat_bytes=params.BEAT_BYTES):
        if beat_bytes % 2:
            raise ValueError(f"beat_bytes must be even, not {beat_bytes}")
        self._beat_bytes = beat_bytes
        super().__init__({
            "data": In(8 * beat_bytes),
            "mask": In(beat_bytes),
            "last": In(1),
            "valid": In(1),
            "sum": Out(16),
            "sum_valid": Out(1),
        })

    @property
    def beat_bytes(self):
        return self._beat_bytes

    def elaborate(self, platform):
        m = Module()
        n = self._beat_bytes

        # Stage 1 -- masked words of the beat, added up.
        masked = Cat(*(self.data[8 * i:8 * i + 8] & self.mask[i].replicate(8) for i in range(n)))
        beat_sum = Signal(16 + (n // 2 - 1).bit_length(), name="beat_sum")
        beat_sum_last = Signal()
        beat_sum_valid = Signal()
        m.d.sync += [
            beat_sum.eq(sum(be_field(masked, 2 * w, 2) for w in range(n // 2))),
            beat_sum_last.eq(self.last),
            beat_sum_valid.eq(self.valid),
        ]

        # Stage 2 -- accumulate the frame. 32 bits hold the sum of any frame under 64 KiB words
        # without carry-out; the end-around carries are folded in afterwards, off the loop.
        acc = Signal(32, name="acc")
        frame_sum = Signal(32, name="frame_sum")
        frame_sum_valid = Signal()
        acc_first = Signal(init=1)      # the next beat starts a frame
        acc_next = Signal(32)
        m.d.comb += acc_next.eq(beat_sum + (acc & (~acc_first).replicate(32)))
        m.d.sync += frame_sum_valid.eq(0)
        with m.If(beat_sum_valid):
            m.d.sync += [
                acc.eq(acc_next),
                acc_first.eq(beat_sum_last),
            ]
            with m.If(beat_sum_last):
                m.d.sync += [frame_sum.eq(acc_next), frame_sum_valid.eq(1)]

        # Stages 3, 4 -- fold 32 bits to 17, then to 16.
        fold1 = Signal(17, name="fold1")
        fold1_valid = Signal()
        m.d.sync += [fold1.eq(ones_complement_fold(frame_sum)), fold1_valid.eq(frame_sum_valid)]
        m.d.sync += [
            self.sum.eq(ones_complement_fold(fold1)),
            self.sum_valid.eq(fold1_valid),
        ]
        return m
