"""Frame checker: checksums, frame length and the final verdicts of each frame.

Beats arrive together with the checksum regions of their frame (the head of the sequencer's bounds
FIFO). The checker measures the frame, verifies the IPv4 header checksum and the TCP/UDP checksum
(pseudo-header addresses are taken from the frame bytes; the protocol and length words come from the
decoder), and completes the status word: length, oversize, IP datagram past the frame end, checksum
verdicts, ``malformed``, ``candidate``.

The checker never stalls: the sequencer presents a beat only when the output FIFOs have room for
everything the checker may still emit.
"""

from amaranth import Module, Mux, Signal, signed
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from .. import params
from ..layouts import L3Type, L4Type, RxBeat, RxStatus
from ..lib.checksum import ChecksumAccumulator, bytes_from, ones_complement_fold
from .header_decoder import DecodedHeader, RegionBounds

__all__ = ["FrameChecker"]

#: Frame beats are counted up to this many; longer frames report a saturated length.
_BEAT_INDEX_BITS = 14
_LENGTH_MAX = 2 ** 17 - 1


class FrameChecker(wiring.Component):
    """Checksum and finalize stage of the receive sequencer.

    Members
    -------
    beat : In(RxBeat)
        A frame beat.
    bounds : In(RegionBounds)
        Checksum regions of the frame ``beat`` belongs to, held for all its beats.
    valid : In(1)
        ``beat`` and ``bounds`` are presented this clock.
    header : In(DecodedHeader)
        Decoded header of the next frame to finish: the head of the sequencer's header FIFO.
    header_hash : In(32)
        Its Toeplitz hash (the head of the sequencer's hash FIFO).
    header_pop : Out(1)
        ``header`` and ``header_hash`` have been used (a status word is being finished).
    beat_out : Out(RxBeat)
        The beat, unchanged, one clock later.
    beat_out_valid : Out(1)
    status : Out(RxStatus)
        The frame's status word, ``STATUS_LATENCY`` clocks after its last beat came in.
    status_valid : Out(1)
    """

    #: Clocks from a frame's last beat in to ``header_pop``, and to its status word out.
    HEADER_POP_LATENCY = 2 + ChecksumAccumulator.LATENCY
    STATUS_LATENCY = HEADER_POP_LATENCY + 3

    beat: In(RxBeat)
    bounds: In(RegionBounds)
    valid: In(1)
    header: In(DecodedHeader)
    header_hash: In(32)
    header_pop: Out(1)
    beat_out: Out(RxBeat)
    beat_out_valid: Out(1)
    status: Out(RxStatus)
    status_valid: Out(1)

    def elaborate(self, platform):
        m = Module()
        m.submodules.ip_csum = ip_csum = ChecksumAccumulator()
        m.submodules.l4_csum = l4_csum = ChecksumAccumulator()
        b = self.bounds

        # Stage 1 -- where the beat lies in its frame; which bytes are past each region bound.
        # For each region bound the checker keeps ``bound - offset of the current beat``; a bound
        # then splits a beat with a few small comparisons instead of an adder and a comparator.
        first = Signal(init=1)          # the beat presented is the first of its frame
        beat_index = Signal(_BEAT_INDEX_BITS)
        with m.If(self.valid):
            m.d.sync += first.eq(self.beat.last)
            with m.If(self.beat.last):
                m.d.sync += beat_index.eq(0)
            with m.Elif(beat_index != 2 ** _BEAT_INDEX_BITS - 1):
                m.d.sync += beat_index.eq(beat_index + 1)

        bounds = {"l3_offset": b.l3_offset, "l4_offset": b.l4_offset, "addr_lo": b.addr_lo,
                  "addr_hi": b.addr_hi, "ip_end": b.ip_end}
        past = {}       # per bound, the bytes of the beat at or past it (registered)
        for name, bound in bounds.items():
            remaining = Signal(signed(19), name=f"{name}_ahead")
            at_first = Signal(signed(19), name=f"{name}_ahead_first")
            current = Signal(signed(19), name=f"{name}_ahead_now")
            m.d.comb += [
                at_first.eq(bound),
                current.eq(Mux(first, at_first, remaining)),
            ]
            with m.If(self.valid & ~current[-1]):     # once past the bound, stay there
                m.d.sync += remaining.eq(current - params.BEAT_BYTES)
            # Both cases split, then one picked: ``first`` comes last, not before the compares.
            past[name] = Signal(params.BEAT_BYTES, name=f"past_{name}")
            m.d.sync += past[name].eq(Mux(first, bytes_from(at_first), bytes_from(remaining)))

        beat_bytes = sum(self.beat.keep)    # keep is a run from bit 0 on the last beat
        length = Signal(_BEAT_INDEX_BITS + 4)
        m.d.comb += length.eq(beat_index * params.BEAT_BYTES
                              + Mux(self.beat.last, beat_bytes, params.BEAT_BYTES))
        c1_keep = Signal(params.BEAT_BYTES)
        c1_ip_check = Signal()
        c1_l4_check = Signal()
        m.d.sync += [
            self.beat_out.eq(self.beat),
            self.beat_out_valid.eq(self.valid),
            c1_keep.eq(Mux(self.beat.last, self.beat.keep, (1 << params.BEAT_BYTES) - 1)),
            c1_ip_check.eq(b.ip_csum_check),
            c1_l4_check.eq(b.l4_csum_check),
        ]

        # Stage 2 -- the checksum regions' byte masks, into the accumulators.
        ip_mask = past["l3_offset"] & ~past["l4_offset"]
        l4_mask = ((past["addr_lo"] & ~past["addr_hi"]) | (past["l4_offset"] & ~past["ip_end"]))
        c1 = self.beat_out
        m.d.sync += [
            ip_csum.data.eq(c1.data),
            ip_csum.mask.eq(Mux(c1_ip_check, ip_mask & c1_keep, 0)),
            ip_csum.last.eq(c1.last),
            ip_csum.valid.eq(self.beat_out_valid),
            l4_csum.data.eq(c1.data),
            l4_csum.mask.eq(Mux(c1_l4_check, l4_mask & c1_keep, 0)),
            l4_csum.last.eq(c1.last),
            l4_csum.valid.eq(self.beat_out_valid),
        ]

        # The length of each frame waits for its checksums, in a delay line fed by the last beat
        # (frames can end on consecutive clocks). Its decoded header waits in the sequencer's
        # header FIFO and is read when the checksums are out.
        pending_len = Signal(17, name="pending_length")
        m.d.sync += pending_len.eq(Mux(length > _LENGTH_MAX, _LENGTH_MAX, length))
        for stage in range(1 + ChecksumAccumulator.LATENCY):
            delayed_len = Signal(17, name=f"pending_length_d{stage + 1}")
            m.d.sync += delayed_len.eq(pending_len)
            pending_len = delayed_len
        m.d.comb += self.header_pop.eq(l4_csum.sum_valid)

        # Stage F0 -- the frame's decoded header and hash, its checksums and length, registered
        # before any logic: the header FIFO is block RAM, whose read data is slow to appear.
        pending = Signal(DecodedHeader, name="final_header_in")
        pending_hash = Signal(32, name="final_hash_in")
        f0_len = Signal(17, name="final_length_in")
        f0_valid = Signal()
        f0_l4_sum = Signal(16)
        f0_ip_sum = Signal(16)
        m.d.sync += [
            pending.eq(self.header),
            pending_hash.eq(self.header_hash),
            f0_len.eq(pending_len),
            f0_valid.eq(l4_csum.sum_valid),
            f0_l4_sum.eq(l4_csum.sum),
            f0_ip_sum.eq(ip_csum.sum),
        ]
        pending_len = f0_len

        # Stage F1 -- pseudo-header words into the TCP/UDP sum; length checks.
        f1 = Signal(DecodedHeader, name="final_header")
        f1_len = Signal(17, name="final_length")
        f1_valid = Signal()
        f1_l4_sum = Signal(18)
        f1_ip_ok = Signal()
        f1_ip_past_end = Signal()
        f1_oversize = Signal()
        m.d.sync += [
            f1.eq(pending),
            f1.status.hash.eq(pending_hash),
            f1_len.eq(pending_len),
            f1_valid.eq(f0_valid),
            f1_l4_sum.eq(f0_l4_sum + pending.pseudo_sum),
            f1_ip_ok.eq(f0_ip_sum == 0xFFFF),
            f1_ip_past_end.eq(pending.status.addr_valid & (pending.ip_end > pending_len)),
            f1_oversize.eq(pending_len > params.MAX_FRAME_BYTES),
        ]

        # Stage F2 -- verdicts, and the status word out.
        fs = f1.status
        errors = Signal.like(fs.errors, name="final_errors")
        m.d.comb += [
            errors.eq(fs.errors),
            errors.truncated.eq(fs.errors.truncated | f1_ip_past_end),
            errors.oversize.eq(f1_oversize),
        ]
        malformed = errors.as_value().any()
        l4_csum_valid = f1.l4_csum_check & ~malformed
        l4_csum_ok = (l4_csum_valid & ~f1.l4_csum_force_bad
                      & (ones_complement_fold(f1_l4_sum) == 0xFFFF))
        ip_csum_ok = fs.ip_csum_valid & f1_ip_ok
        candidate = ((fs.l4 == L4Type.TCP) & ~malformed & ~fs.fragment & ~fs.ip_options
                     & ((fs.l3 == L3Type.IPV6) | ip_csum_ok) & l4_csum_ok)
        m.d.sync += [
            self.status.eq(fs),
            self.status.length.eq(f1_len),
            self.status.errors.eq(errors),
            self.status.malformed.eq(malformed),
            self.status.ip_csum_ok.eq(ip_csum_ok),
            self.status.l4_csum_valid.eq(l4_csum_valid),
            self.status.l4_csum_ok.eq(l4_csum_ok),
            self.status.candidate.eq(candidate),
            self.status_valid.eq(f1_valid),
        ]
        return m
