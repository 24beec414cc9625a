"""cocotb testbench for the receive sequencer (``hw.rx_sequencer.RxSequencer``, SPEC §3).

:class:`RxTb` owns the DUT, the clock (``TARGET_CLOCK_MHZ``), reset and the bus models:

- :class:`FrameSource` drives frames on ``i`` as :class:`~hw.layouts.RxBeat` beats, one per clock
  unless a pause generator inserts idle cycles;
- :class:`FrameSink` collects the frames on ``o``, :class:`StatusSink` the
  :class:`~hw.layouts.RxStatus` words on ``status``, each with an optional backpressure generator;
- :class:`RssKeyWriter` writes the Toeplitz key register;
- :class:`RxScoreboard` checks, in frame order, that each frame leaves ``o`` unchanged and that its
  status word equals the reference model's (``sim/reference/rx_status.py``) field by field: the
  JSON row, then every field of :class:`~hw.layouts.RxStatus` (``ip_proto``, ``hash_type``, the
  offsets, the ``*_valid`` bits, and 0 in every field that does not apply).

One coroutine steps all bus models on every rising edge (a third of the scheduler work of one
coroutine per model: Python acting every cycle is what limits simulation speed). Each model samples
the DUT's outputs as they were at the edge and sets its inputs for the next one. Every transfer is
stamped with its cycle, the number of rising edges since reset was released, so tests and the
bench measure rates and latencies in cycles. The clock is cocotb's C implementation
(``impl="gpi"``), nearly twice as fast as the Python one here; inputs change only right after a
rising edge, so the clock's write mode cannot race them.
"""

import logging
import random
from collections import Counter, deque
from dataclasses import dataclass

import cocotb
from amaranth.lib import data
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, RisingEdge

from hw.layouts import RxBeat, RxCounters, RxStatus, pack, unpack
from hw.params import BEAT_BYTES, CLOCK_PERIOD_NS, MS_RSS_KEY, RSS_KEY_BYTES
from sim.reference.rx_status import expected_errors, expected_fields, expected_status
from sim.status_json import status_to_json

__all__ = [
    "RxTb", "FrameSource", "FrameSink", "StatusSink", "RssKeyWriter", "RxScoreboard",
    "FrameTiming", "random_pauses", "frame_beats", "beat_count", "budget",
]

_FULL_KEEP = (1 << BEAT_BYTES) - 1


class _BeatCodec:
    """:class:`RxBeat` words, fast: every beat goes through it, so it avoids building an Amaranth
    ``Const`` per beat. The field positions come from the ``RxBeat`` layout and the control bits of
    each possible (keep, last) are packed once with :func:`hw.layouts.pack`; nothing is retyped."""

    def __init__(self):
        fields = data.Layout.cast(RxBeat)
        self.data_shift = fields["data"].offset
        self.keep_shift = fields["keep"].offset
        self.last_shift = fields["last"].offset
        self.control = {(n, last): pack(RxBeat, {"data": 0, "keep": (1 << n) - 1, "last": last})
                        for n in range(BEAT_BYTES + 1) for last in (0, 1)}

    def word(self, chunk: bytes, last: int) -> int:
        return (self.control[len(chunk), last]
                | int.from_bytes(chunk, "little") << self.data_shift)

    def fields(self, word: int) -> tuple[bytes, int, int]:
        """``(8 data bytes, keep, last)`` of a beat word."""
        data_bits = (word >> self.data_shift) & ((1 << 8 * BEAT_BYTES) - 1)
        return (data_bits.to_bytes(BEAT_BYTES, "little"), (word >> self.keep_shift) & _FULL_KEEP,
                (word >> self.last_shift) & 1)


_BEAT = _BeatCodec()


def beat_count(frame: bytes) -> int:
    """Beats ``frame`` takes on the stream (a zero-length frame takes one)."""
    return max(1, -(-len(frame) // BEAT_BYTES))


def frame_beats(frame: bytes) -> list[int]:
    """The :class:`RxBeat` words of ``frame``: full beats, the last one with a run of ``keep`` bits.

    A zero-length frame is one beat with ``keep`` 0 and ``last`` set.
    """
    count = beat_count(frame)
    return [_BEAT.word(frame[n * BEAT_BYTES:(n + 1) * BEAT_BYTES], int(n == count - 1))
            for n in range(count)]


def budget(frames, slack=2000, factor=4) -> int:
    """A generous cycle limit for draining ``frames``: ``factor`` cycles per beat plus ``slack``."""
    return slack + factor * sum(beat_count(frame) for frame in frames)


def random_pauses(rng: random.Random, probability: float):
    """Endless generator of booleans, each ``True`` (pause / not ready) with ``probability``."""
    while True:
        yield rng.random() < probability


class FrameSource:
    """Drives queued frames on stream ``i`` at up to one beat per clock.

    ``pause`` (a generator of booleans) may hold ``valid`` low for a cycle between beats; a beat
    once offered stays offered until it is taken (Amaranth stream rules). ``accepted`` records per
    frame the cycles its first and last beats were taken; ``stalls`` counts the cycles a beat was
    offered and ``i.ready`` was low.
    """

    def __init__(self, dut, pause=None):
        self._valid = dut.i__valid
        self._ready = dut.i__ready
        self._payload = dut.i__payload
        self._pause = pause
        self._queue = deque()
        self._beats: list[int] = []
        self._pos = 0
        self._first = 0
        self._offered = False
        self.sent = 0
        self.accepted: list[tuple[int, int]] = []
        self.beats_accepted = 0
        self.stalls = 0
        self._valid.value = 0

    def send(self, frame: bytes):
        self._queue.append(frame)
        self.sent += 1

    @property
    def idle(self) -> bool:
        """Every frame sent was taken."""
        return len(self.accepted) == self.sent

    def step(self, cycle: int):
        if self._offered:
            if not int(self._ready.value):
                self.stalls += 1
                return
            self.beats_accepted += 1
            if self._pos == 0:
                self._first = cycle
            self._pos += 1
            if self._pos == len(self._beats):
                self.accepted.append((self._first, cycle))
                self._beats, self._pos = [], 0
        if not self._beats and self._queue:
            self._beats = frame_beats(self._queue.popleft())
        offer = bool(self._beats) and not (self._pause and next(self._pause))
        if offer:
            self._payload.value = self._beats[self._pos]
        if offer != self._offered:
            self._valid.value = int(offer)
            self._offered = offer


class _Sink:
    """A stream sink: ``ready`` from an optional backpressure generator, ``_take(bits, cycle)``
    per transfer."""

    def __init__(self, dut, name, backpressure=None):
        self._valid = getattr(dut, f"{name}__valid")
        self._ready_sig = getattr(dut, f"{name}__ready")
        self._payload = getattr(dut, f"{name}__payload")
        self._backpressure = backpressure
        self._ready = True
        self._ready_sig.value = 1
        self.callback = None

    def step(self, cycle: int):
        if self._ready and int(self._valid.value):
            self._take(int(self._payload.value), cycle)
        if self._backpressure is not None:
            ready = not next(self._backpressure)
            if ready != self._ready:
                self._ready_sig.value = int(ready)
                self._ready = ready

    def _take(self, bits: int, cycle: int):
        raise NotImplementedError


class FrameSink(_Sink):
    """Reassembles frames from stream ``o``: ``callback(frame: bytes)`` per frame. A ``keep`` that
    is not a full beat (or, on the last beat, a run from bit 0) is recorded in ``keep_errors``."""

    def __init__(self, dut, backpressure=None):
        super().__init__(dut, "o", backpressure)
        self._data = bytearray()
        self.keep_errors: list[str] = []

    def _take(self, bits, cycle):
        chunk, keep, last = _BEAT.fields(bits)
        if (keep & (keep + 1)) or (not last and keep != _FULL_KEEP):
            self.keep_errors.append(f"cycle {cycle}: keep {keep:#04x} last {last}")
        self._data += chunk[:keep.bit_length()]
        if last:
            frame = bytes(self._data)
            self._data.clear()
            self.callback(frame)


class StatusSink(_Sink):
    """Collects status words from ``status``: ``callback(status, cycle)`` with the
    :class:`RxStatus` view (:func:`hw.layouts.unpack`)."""

    def __init__(self, dut, backpressure=None):
        super().__init__(dut, "status", backpressure)

    def _take(self, bits, cycle):
        self.callback(unpack(RxStatus, bits), cycle)


class RssKeyWriter:
    """Writes the 40-byte Toeplitz key through ``rss_key_we/addr/data``: word ``n`` holds key
    bytes ``4n..4n+3``, byte ``4n`` in bits 31:24."""

    def __init__(self, dut):
        self._dut = dut
        dut.rss_key_we.value = 0
        dut.rss_key_addr.value = 0
        dut.rss_key_data.value = 0

    async def write(self, key: bytes):
        if len(key) != RSS_KEY_BYTES:
            raise ValueError(f"the RSS key is {RSS_KEY_BYTES} bytes, got {len(key)}")
        dut = self._dut
        for n in range(RSS_KEY_BYTES // 4):
            await RisingEdge(dut.clk)
            dut.rss_key_we.value = 1
            dut.rss_key_addr.value = n
            dut.rss_key_data.value = int.from_bytes(key[4 * n:4 * n + 4], "big")
        await RisingEdge(dut.clk)
        dut.rss_key_we.value = 0


@dataclass
class FrameTiming:
    """Cycles of one frame: first and last input beat taken, status word out."""
    first_in: int
    last_in: int
    status_out: int

    @property
    def latency(self) -> int:
        """First beat in to status word out."""
        return self.status_out - self.first_in


_STATUS_FIELDS = tuple(data.Layout.cast(RxStatus))


def _field(bits: int, field) -> int:
    """The bits of one :class:`amaranth.lib.data.Field` in a packed value."""
    return (bits >> field.offset) & ((1 << field.width) - 1)


class RxScoreboard:
    """Checks the DUT's outputs against the frames sent, in order.

    ``on_frame`` compares each output frame with the input frame of the same index byte for byte;
    ``on_status`` compares each status word, as :func:`sim.status_json.status_to_json` renders it,
    with :func:`sim.reference.rx_status.expected_status` (under the RSS key in force when the frame
    was sent) key by key, then every :class:`~hw.layouts.RxStatus` field, bits as they are, with
    :func:`~sim.reference.rx_status.expected_fields` (which has the fields the JSON row leaves
    out, and 0 where a field does not apply). Mismatches are collected (the first
    ``max_reports`` in detail); :meth:`check` raises if any occurred or if frames or status
    words are missing or extra.
    """

    def __init__(self, log, max_reports=10):
        self.log = log
        self.key = MS_RSS_KEY
        self.max_reports = max_reports
        self.frames: list[bytes] = []
        self.keys: list[bytes] = []
        self.out_frames = 0
        self.statuses = 0
        self.errors: list[str] = []
        self.mismatches = 0
        self.expected_counters: Counter = Counter()

    def expect(self, frame: bytes):
        self.frames.append(frame)
        self.keys.append(self.key)

    def _error(self, message):
        self.mismatches += 1
        if len(self.errors) < self.max_reports:
            self.errors.append(message)
            self.log.error("%s", message)

    def on_frame(self, frame: bytes):
        index = self.out_frames
        self.out_frames += 1
        if index >= len(self.frames):
            self._error(f"extra frame {index} on o: {len(frame)} bytes")
        elif frame != self.frames[index]:
            sent = self.frames[index]
            at = next((n for n, (a, b) in enumerate(zip(frame, sent)) if a != b),
                      min(len(frame), len(sent)))
            self._error(f"frame {index}: o carries {len(frame)} bytes, {len(sent)} were sent; "
                        f"first difference at byte {at}")

    def on_status(self, status):
        index = self.statuses
        self.statuses += 1
        got = status_to_json(status, index)
        if index >= len(self.frames):
            self._error(f"extra status word {index}: {got}")
            return
        frame = self.frames[index]
        want = expected_status(frame, index, self.keys[index])
        self._count(frame, want)
        diff = [key for key in want if got.get(key) != want[key]]
        diff += [key for key in got if key not in want]
        shown = frame[:64].hex() + ("..." if len(frame) > 64 else "")
        if diff:
            self._error(f"frame {index} ({len(frame)} bytes: {shown}): status differs in "
                        f"{', '.join(diff)}: "
                        + "; ".join(f"{key} got {got.get(key)!r} expected {want.get(key)!r}"
                                    for key in diff))
            return
        bits = status.as_value().value
        want_bits = pack(RxStatus, expected_fields(frame, self.keys[index]))
        if bits != want_bits:
            diff = [(name, field) for name, field in _STATUS_FIELDS
                    if _field(bits, field) != _field(want_bits, field)]
            self._error(f"frame {index} ({len(frame)} bytes: {shown}): status word differs in "
                        + "; ".join(f"{name} got {_field(bits, field):#x} expected "
                                    f"{_field(want_bits, field):#x}" for name, field in diff))

    def _count(self, frame, want):
        """What the DUT's :class:`~hw.layouts.RxCounters` must have counted for this frame."""
        counts = self.expected_counters
        counts["frames"] += 1
        counts["candidates"] += want["candidate"]
        counts["malformed"] += want["malformed"]
        counts["ip_csum_bad"] += want["ip_csum_ok"] is False
        counts["l4_csum_bad"] += want["l4_csum_ok"] is False
        counts["fragments"] += bool(want["fragment"])
        counts.update(expected_errors(frame))

    def check_counters(self, counters):
        """Compare the DUT's counters (an ``RxCounters`` value) with the frames seen so far."""
        wrong = {name: (getattr(counters, name), self.expected_counters[name])
                 for name in data.Layout.cast(RxCounters).members
                 if getattr(counters, name) != self.expected_counters[name]}
        assert not wrong, f"counters (got, expected): {wrong}"

    def check(self):
        """Raise ``AssertionError`` unless every frame and status word matched and none is missing
        or extra."""
        problems = list(self.errors)
        if self.mismatches > len(self.errors):
            problems.append(f"... and {self.mismatches - len(self.errors)} more")
        sent = len(self.frames)
        if self.out_frames != sent:
            problems.append(f"{sent} frames sent, {self.out_frames} came out of o")
        if self.statuses != sent:
            problems.append(f"{sent} frames sent, {self.statuses} status words came out")
        if problems:
            raise AssertionError(f"{self.mismatches} mismatches in {sent} frames:\n"
                                 + "\n".join(problems))


class RxTb:
    """The receive sequencer testbench: DUT, clock, reset, bus models and scoreboard.

    ``pause``, ``o_backpressure`` and ``status_backpressure`` are optional boolean generators
    (:func:`random_pauses`). With ``check=False`` nothing is compared: frames on ``o`` are counted
    and each status word goes to ``on_status(status, index)`` only (the replay flow).
    """

    def __init__(self, dut, *, pause=None, o_backpressure=None, status_backpressure=None,
                 check=True, on_status=None):
        self.dut = dut
        self.log = logging.getLogger("cocotb.tb")
        self.checking = check
        self.on_status = on_status
        self.source = FrameSource(dut, pause)
        self.sink = FrameSink(dut, o_backpressure)
        self.status = StatusSink(dut, status_backpressure)
        self.rss_key = RssKeyWriter(dut)
        self.scoreboard = RxScoreboard(self.log)
        self.cycle = 0
        self.frames_out = 0
        self.status_cycles: list[int] = []
        self.sink.callback = self._on_frame
        self.status.callback = self._on_status
        dut.counters_clear.value = 0
        dut.rst.value = 1
        Clock(dut.clk, CLOCK_PERIOD_NS, unit="ns", impl="gpi").start()

    async def reset(self, cycles=4):
        """Hold reset for ``cycles`` clocks, then start the bus models."""
        self.dut.rst.value = 1
        await ClockCycles(self.dut.clk, cycles)
        self.dut.rst.value = 0
        cocotb.start_soon(self._step_models())

    async def _step_models(self):
        edge = RisingEdge(self.dut.clk)
        models = (self.source, self.sink, self.status)
        while True:
            await edge
            self.cycle += 1
            for model in models:
                model.step(self.cycle)

    async def set_rss_key(self, key: bytes):
        """Write ``key`` into the DUT and expect it for the frames sent from now on."""
        await self.rss_key.write(key)
        self.scoreboard.key = key

    def send(self, frame: bytes):
        self.source.send(frame)
        if self.checking:
            self.scoreboard.expect(frame)

    def _on_frame(self, frame):
        self.frames_out += 1
        if self.checking:
            self.scoreboard.on_frame(frame)

    def _on_status(self, status, cycle):
        index = len(self.status_cycles)
        self.status_cycles.append(cycle)
        if self.checking:
            self.scoreboard.on_status(status)
        if self.on_status is not None:
            self.on_status(status, index)

    @property
    def complete(self) -> bool:
        """Every frame sent was taken and came out of ``o`` and ``status``."""
        sent = self.source.sent
        return (self.source.idle and self.frames_out >= sent
                and len(self.status_cycles) >= sent)

    async def drain(self, max_cycles: int, poll=64):
        """Wait until every frame sent came out with its status word; raise ``TimeoutError``
        naming what is missing after ``max_cycles``."""
        waited = 0
        while not self.complete:
            if waited >= max_cycles:
                raise TimeoutError(
                    f"stalled after {max_cycles} cycles: {len(self.source.accepted)} of "
                    f"{self.source.sent} frames taken by i, {self.frames_out} out of o, "
                    f"{len(self.status_cycles)} status words")
            await ClockCycles(self.dut.clk, poll)
            waited += poll

    def check(self):
        """Final checks: well-formed ``keep`` on ``o``, the Toeplitz unit never started too soon
        (sticky ``hash_overrun``), then the scoreboard (counts included)."""
        assert not self.sink.keep_errors, f"bad keep on o: {self.sink.keep_errors[:5]}"
        assert not int(self.dut.hash_overrun.value), "Toeplitz unit started while busy"
        self.scoreboard.check()
        if self.checking:
            self.scoreboard.check_counters(self.counters())

    def counters(self):
        """The DUT's receive counters, unpacked."""
        return unpack(RxCounters, int(self.dut.counters.value))

    async def clear_counters(self):
        """Pulse ``counters_clear`` for one clock and forget the expected counts."""
        self.dut.counters_clear.value = 1
        await RisingEdge(self.dut.clk)
        self.dut.counters_clear.value = 0
        await RisingEdge(self.dut.clk)
        self.scoreboard.expected_counters.clear()

    def timing(self) -> list[FrameTiming]:
        """Per-frame cycles, for the frames that completed."""
        return [FrameTiming(first, last, out) for (first, last), out
                in zip(self.source.accepted, self.status_cycles)]
