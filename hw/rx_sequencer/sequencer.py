"""Receive sequencer: parse, validate and summarize every frame at line rate (SPEC §3).

Ref: docs/rx_sequencer.md (architecture, latency, why the FIFOs are as deep as they are) and
docs/status_word.md (every field and flag).

Data flow::

    i ──► capture ──► beat FIFO ──────────────────────────────► frame checker ──► out FIFO ──► o
             │  first 104 bytes                                  ▲  ▲  (checksums, length,
             └──► header decoder ──► bounds FIFO ────────────────┘  │   verdicts)
                  (fields, checks) ──► header FIFO ─────────────────┤
                  Toeplitz unit ─────► hash FIFO ───────────────────┘──► status FIFO ──► status

The capture stage keeps the first 104 bytes of each frame and hands them to the header decoder at
beat 12 or at the frame's last beat, whichever comes first, so the decoder sees one window per
frame, at most one per clock. The frame checker takes a beat only when the checksum regions of its
frame are at the head of the bounds FIFO; it masks the regions of every beat and finishes the
status word, with the decoded header and hash, as the last beat leaves. The input is ready every
clock while the outputs drain.
"""

from amaranth import Cat, Module, Mux, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.fifo import SyncFIFOBuffered
from amaranth.lib.wiring import In, Out

from .. import params
from ..layouts import RxBeat, RxCounters, RxStatus
from ..lib.fifo import SlicedFIFO
from ..lib.netorder import byte_at
from .frame_checker import FrameChecker
from .header_decoder import DecodedHeader, HeaderDecoder, RegionBounds

__all__ = ["RxSequencer"]

_KEY_WORDS = params.RSS_KEY_BYTES // 4
_OUT_FIFO_DEPTH = 8


class RxSequencer(wiring.Component):
    """The NIC receive sequencer.

    Members
    -------
    i : In(stream.Signature(RxBeat))
        Frames from the MAC, 8 bytes a beat, no FCS.
    o : Out(stream.Signature(RxBeat))
        The same frames, byte for byte, for the packet buffer.
    status : Out(stream.Signature(RxStatus))
        One status word per frame, in frame order, after the frame's last beat has left on ``o``.
    counters : Out(RxCounters)
        Receive statistics, counted as status words are finished.
    counters_clear : In(1)
        Zero every counter.
    rss_key_we, rss_key_addr, rss_key_data : In
        Write port of the 40-byte RSS key: word ``n`` is key bytes ``4n..4n+3``, byte ``4n`` in bits
        31:24. The key resets to Microsoft's published key. Frames already in the decoder may be
        hashed with the old key.
    """

    i: In(stream.Signature(RxBeat))
    o: Out(stream.Signature(RxBeat))
    status: Out(stream.Signature(RxStatus))
    rss_key_we: In(1)
    rss_key_addr: In(range(16))
    rss_key_data: In(32)
    counters: Out(RxCounters)
    counters_clear: In(1)

    def elaborate(self, platform):
        m = Module()
        beat_width = data.Layout.cast(RxBeat).size

        # RSS key register.
        key = Signal(8 * params.RSS_KEY_BYTES, init=int.from_bytes(params.MS_RSS_KEY, "big"),
                     name="rss_key")
        with m.If(self.rss_key_we):
            with m.Switch(self.rss_key_addr):
                for word in range(_KEY_WORDS):
                    with m.Case(word):
                        top = 8 * params.RSS_KEY_BYTES - 32 * word
                        m.d.sync += key[top - 32:top].eq(self.rss_key_data)

        m.submodules.beat_fifo = beat_fifo = SyncFIFOBuffered(
            width=beat_width, depth=params.RX_BEAT_FIFO_DEPTH)
        m.submodules.decoder = decoder = HeaderDecoder()
        # A frame's hash must be in the hash FIFO when its status word is finished: the checker
        # reads it ``HEADER_POP_LATENCY`` clocks after taking the frame's last beat, which it takes
        # at the earliest as the frame's bounds come out of their FIFO, written with the header.
        if decoder.hash_latency - decoder.latency > FrameChecker.HEADER_POP_LATENCY:
            raise ValueError("the Toeplitz unit is too slow for the frame checker's pipeline")
        m.submodules.header_fifo = header_fifo = SlicedFIFO(
            width=data.Layout.cast(DecodedHeader).size, depth=params.RX_HEADER_FIFO_DEPTH)
        m.submodules.bounds_fifo = bounds_fifo = SyncFIFOBuffered(
            width=data.Layout.cast(RegionBounds).size, depth=params.RX_HEADER_FIFO_DEPTH)
        m.submodules.hash_fifo = hash_fifo = SyncFIFOBuffered(
            width=32, depth=params.RX_HEADER_FIFO_DEPTH)
        m.submodules.out_fifo = out_fifo = SyncFIFOBuffered(width=beat_width, depth=_OUT_FIFO_DEPTH)
        m.submodules.status_fifo = status_fifo = SlicedFIFO(
            width=data.Layout.cast(RxStatus).size, depth=params.RX_STATUS_FIFO_DEPTH,
            slice_bits=params.RX_STATUS_FIFO_SLICE_BITS)

        # Capture -- every beat into the beat FIFO; the first 104 bytes into the header window.
        # Frames in flight (launched to the decoder, status word not yet finished) are limited to
        # the header FIFOs' depth, so the decoder, which cannot stall, always finds room.
        frames_open = Signal(range(params.RX_HEADER_FIFO_DEPTH + 1))
        frame_finished = Signal()
        m.d.comb += self.i.ready.eq(beat_fifo.w_rdy
                                    & (frames_open < params.RX_HEADER_FIFO_DEPTH))
        accept = Signal()
        m.d.comb += [
            accept.eq(self.i.valid & self.i.ready),
            beat_fifo.w_data.eq(self.i.payload),
            beat_fifo.w_en.eq(accept),
        ]

        beat = self.i.payload
        in_index = Signal(range(params.HEADER_WINDOW_BEATS + 1))     # saturates past the window
        launch = Signal()
        m.d.comb += launch.eq(accept & ((in_index == params.HEADER_WINDOW_BEATS - 1)
                                        | (beat.last & (in_index < params.HEADER_WINDOW_BEATS))))
        with m.If(accept):
            with m.If(beat.last):
                m.d.sync += in_index.eq(0)
            with m.Elif(in_index != params.HEADER_WINDOW_BEATS):
                m.d.sync += in_index.eq(in_index + 1)
        window_len = Mux(beat.last, in_index * params.BEAT_BYTES + sum(beat.keep),
                         params.HEADER_WINDOW_BYTES)

        # The accepted beat is registered with a load and a zero flag per 2-byte group of the
        # window: the window's flip-flops are spread over the decoder, and one flag per 64-bit word
        # took 6 ns to reach them. Bytes past the frame's end are zeroed. Each flag reads its own
        # ``keep`` bits, so no two are the same logic and Yosys keeps them all.
        group = 2
        groups_per_beat = params.BEAT_BYTES // group
        n_groups = params.HEADER_WINDOW_BYTES // group
        keep = Mux(beat.last, beat.keep, (1 << params.BEAT_BYTES) - 1)
        beat_kept = Cat(*(byte_at(beat.data, b) & keep[b].replicate(8)
                          for b in range(params.BEAT_BYTES)))
        c_data = Signal(8 * params.BEAT_BYTES, name="capture_data", reset_less=True)
        c_load = Signal(n_groups, name="capture_load")
        c_zero = Signal(n_groups, name="capture_zero")
        c_launch = Signal(name="capture_launch")
        c_len = Signal(range(params.HEADER_WINDOW_BYTES + 1), name="capture_len")
        m.d.sync += [
            c_data.eq(beat_kept),
            c_launch.eq(launch),
            c_len.eq(window_len),
        ]
        for k in range(params.HEADER_WINDOW_BEATS):
            here = accept & (in_index == k)
            for g in range(groups_per_beat):
                # A group none of whose bytes is kept is zeroed rather than loaded (same result).
                group_kept = keep[group * g:group * (g + 1)].any()
                m.d.sync += [
                    c_load[groups_per_beat * k + g].eq(here & group_kept),
                    c_zero[groups_per_beat * k + g].eq(
                        accept & beat.last & ((in_index < k) | ((in_index == k) & ~group_kept))),
                ]
        window = Signal(8 * params.HEADER_WINDOW_BYTES, name="header_window", reset_less=True)
        for j in range(n_groups):
            bits = slice(8 * group * j, 8 * group * (j + 1))
            g = j % groups_per_beat
            with m.If(c_load[j]):
                m.d.sync += window[bits].eq(c_data[8 * group * g:8 * group * (g + 1)])
            with m.Elif(c_zero[j]):
                m.d.sync += window[bits].eq(0)
        # The window is complete a clock after its last word is captured.
        m.d.comb += decoder.window.eq(window)
        m.d.sync += [
            decoder.window_len.eq(c_len),
            decoder.valid.eq(c_launch),
        ]
        m.d.comb += [
            decoder.key.eq(key),
            header_fifo.w_data.eq(decoder.info),
            header_fifo.w_en.eq(decoder.info_valid),
            bounds_fifo.w_en.eq(decoder.info_valid),
            hash_fifo.w_data.eq(decoder.hash),
            hash_fifo.w_en.eq(decoder.hash_valid),
        ]
        bounds_in = Signal(RegionBounds)
        m.d.comb += RegionBounds.assign(bounds_in, decoder.info)
        m.d.comb += bounds_fifo.w_data.eq(bounds_in)
        m.d.sync += frames_open.eq(frames_open + launch - frame_finished)
        # Sticky: the Toeplitz unit was started too soon (impossible by construction; tests check).
        hash_overrun = Signal()
        m.d.sync += hash_overrun.eq(hash_overrun | decoder.hash_overrun)

        # Frame checker -- never stalls. It takes a beat when the checksum regions of its frame are
        # at the head of the bounds FIFO and both output FIFOs have room for everything it may
        # still emit: beats in its pipeline, status words in its pipeline, and one more clock for
        # ``checker_room`` being registered. It reads the full decoded header (the header FIFO)
        # only when it finishes the frame's status word, so the wide header never fans out to
        # the per-beat logic. The frame's hash, which the decoder delivers a few clocks after the
        # header, is in the hash FIFO by then: a status word takes longer than the hash.
        m.submodules.checker = checker = FrameChecker()
        out_threshold = _OUT_FIFO_DEPTH - 4
        status_threshold = params.RX_STATUS_FIFO_DEPTH - FrameChecker.STATUS_LATENCY - 3
        checker_room = Signal()
        m.d.sync += checker_room.eq((out_fifo.level <= out_threshold)
                                    & (status_fifo.level <= status_threshold))
        beat_pop = Signal()
        head_beat = Signal(RxBeat)
        m.d.comb += [
            head_beat.eq(beat_fifo.r_data),
            beat_pop.eq(checker_room & beat_fifo.r_rdy & bounds_fifo.r_rdy),
            beat_fifo.r_en.eq(beat_pop),
            bounds_fifo.r_en.eq(beat_pop & head_beat.last),
            checker.beat.eq(head_beat),
            checker.bounds.eq(bounds_fifo.r_data),
            checker.valid.eq(beat_pop),
            checker.header.eq(header_fifo.r_data),
            checker.header_hash.eq(hash_fifo.r_data),
            header_fifo.r_en.eq(checker.header_pop),
            hash_fifo.r_en.eq(checker.header_pop),
            frame_finished.eq(checker.header_pop),

            out_fifo.w_data.eq(checker.beat_out),
            out_fifo.w_en.eq(checker.beat_out_valid),
            status_fifo.w_data.eq(checker.status),
            status_fifo.w_en.eq(checker.status_valid),

            self.o.payload.eq(out_fifo.r_data),
            self.o.valid.eq(out_fifo.r_rdy),
            out_fifo.r_en.eq(self.o.ready),
            self.status.payload.eq(status_fifo.r_data),
            self.status.valid.eq(status_fifo.r_rdy),
            status_fifo.r_en.eq(self.status.ready),
        ]
        self._count(m, checker.status, checker.status_valid)
        return m

    def _count(self, m, status, valid):
        """Count each finished status word into ``counters``."""
        c = self.counters
        events = {
            "frames": 1,
            "candidates": status.candidate,
            "malformed": status.malformed,
            "runt": status.errors.runt,
            "truncated": status.errors.truncated,
            "bad_version": status.errors.bad_version,
            "bad_ihl": status.errors.bad_ihl,
            "bad_ip_len": status.errors.bad_ip_len,
            "bad_l4_len": status.errors.bad_l4_len,
            "oversize": status.errors.oversize,
            "ip_csum_bad": status.ip_csum_valid & ~status.ip_csum_ok,
            "l4_csum_bad": status.l4_csum_valid & ~status.l4_csum_ok,
            "fragments": status.fragment,
        }
        with m.If(self.counters_clear):
            m.d.sync += c.eq(0)
        with m.Elif(valid):
            for name, event in events.items():
                counter = getattr(c, name)
                m.d.sync += counter.eq(counter + event)
