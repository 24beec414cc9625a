"""Scoreboard: the golden NIC model (:mod:`sim.reference.nic_model`) run beside the RTL.

:class:`NicScoreboard` gives the transaction-level model what the testbench gives the RTL (every
register write, every frame on MAC RX; the model reads the same ring entries and TX frames from
the same host memory) and compares what both produce:

- **events**, entry by entry, per stream: one stream per ring for the events of that ring's
  entries (``RX``, ``TX_DONE``, ``COMMAND_DONE``, a fetch error's ``ERROR``), and one per ring for
  refused register writes. Within a stream the order is the ring's order, which timing cannot
  change; across streams the RTL interleaves by timing (round robin, latency) and the model does
  not, so streams are not compared with each other. Fields compared: :data:`EVENT_FIELDS` (not
  ``phase``, which follows the interleaving);
- the **contents of every filled RX buffer** (``RX`` event with ``OK``): the 32-byte header (the
  RxSummary) and the frame, byte for byte;
- the **frames on MAC TX**, in order, byte for byte;
- the **counters** (RxCounters and HostCounters, :meth:`check`), all but :data:`TIMED_COUNTERS`.

The model is untimed: it handles a doorbell or a frame inside the call that delivers it, so it runs
ahead of the RTL; its DMA writes (events, RX buffers) go to a private copy of host memory
(:class:`ModelMemory`), never to the memory the host and the RTL share. What depends on timing,
and how each mode deals with it:

- ``rx="exact"``: each frame is given to the model when its first beat goes out on MAC RX, and the
  model decides admission itself. Admission depends only on the host's RX producer index against
  the frames admitted before (docs/host_interface.md, "Slow-path receive"), so it is deterministic
  when the traffic does not race doorbells against frames and does not fill the packet buffer
  (``rx_drop_overflow`` and the 64-frame limit depend on how fast the RTL drains it). The smoke
  test and every bad-input test run so, and every RX event is compared.
- ``rx="follow"``: for traffic where admission races the host (RX-buffer starvation with re-posting
  while frames arrive, the end-to-end TCP test): the model counts every frame in its RxCounters
  when it goes out (exact), but takes a frame into its host side only when the RTL delivers it
  (an ``RX`` event), skipping the frames sent before it that the RTL dropped. Delivered frames
  must be the frames sent, in order; each RX event and buffer is then compared with the model's.
  The drops of frames that get no event (:data:`ADMISSION_DROPS`) are checked by the accounting
  identity instead: they sum to the frames the RTL skipped, and ``rx_frames = rx_to_host + every
  rx_drop_*``; ``rx_drop_too_small`` and ``rx_drop_dma_error`` come with an event and are compared.

``dma_errors`` is compared exactly: the model fetches ring entries as the contract says (up to 4
posted at a time), which matches the RTL when the entries are posted before the NIC looks at them,
as in the fetch-error test. ``interrupts`` is not compared (moderation by time).

The scoreboard never waits: it observes what a test does, so it adds no simulated cycles.
"""

from collections import defaultdict, deque

from amaranth.lib import data

from host_driver.bus import Bus
from hw import params
from hw.layouts import RX_SUMMARY_BYTES, Event, EventCode, EventKind, RingId, RxDescriptor, unpack

from .reference.nic_model import NicModel

__all__ = ["NicScoreboard", "ModelMemory", "MirroredBus", "EVENT_FIELDS", "TIMED_COUNTERS",
           "ADMISSION_DROPS"]

#: The Event fields compared entry by entry.
EVENT_FIELDS = ("kind", "ring", "index", "length", "code", "tag", "detail")
assert set(EVENT_FIELDS) <= set(data.Layout.cast(Event).members)
#: Counters whose value depends on timing, never compared.
TIMED_COUNTERS = frozenset({"interrupts"})
#: The drops of frames that get no RX event (refused when they arrive or cut off): in follow mode
#: their sum is checked against the frames the RTL skipped, not each against the model.
ADMISSION_DROPS = ("rx_drop_disabled", "rx_drop_no_buffer", "rx_drop_overflow",
                   "rx_drop_oversize")
_REGISTER_CODES = frozenset({EventCode.BAD_DOORBELL.value, EventCode.BAD_RING_SIZE.value})
_HEADER = RX_SUMMARY_BYTES
_ENTRY = params.RING_ENTRY_BYTES
_BEAT = params.DMA_DATA_BITS // 8        # RX buffers are aligned to the DMA beat


class ModelMemory:
    """Host memory as the model sees it beside the RTL: reads come from the memory the host and
    the RTL share (``read(addr, n)``), writes go to a private copy (read back with
    :meth:`read_written`), so the model's events and RX buffers never disturb the RTL's.

    Members
    -------
    base, size : int
        The bus addresses DMA may reach, as :class:`host_driver.memory.HostMemory` has them.
    """

    def __init__(self, read, base: int, size: int):
        self._read = read
        self.base = base
        self.size = size
        self._written = bytearray(size)

    def read(self, addr: int, n: int) -> bytes:
        return bytes(self._read(addr, n))

    def write(self, addr: int, payload: bytes) -> None:
        start = addr - self.base
        self._written[start:start + len(payload)] = payload

    def read_written(self, addr: int, n: int) -> bytes:
        """The bytes the model wrote at ``[addr, addr + n)`` (0 where it wrote nothing)."""
        start = addr - self.base
        return bytes(self._written[start:start + n])


class _ErrorRanges:
    """The model's ``dma_error_ranges``, read live from the PCI model's error list
    (``(start, end, resp, kind)``, :class:`sim.cosim.pci.LinkConfig`)."""

    def __init__(self, errors):
        self._errors = errors

    def __iter__(self):
        return iter([(start, end, kind) for start, end, _resp, kind in self._errors])


class MirroredBus(Bus):
    """A :class:`host_driver.bus.Bus` that passes everything to ``bus`` and, once a register write
    has completed on the RTL, gives it to the scoreboard's model too."""

    def __init__(self, bus: Bus, scoreboard: "NicScoreboard"):
        self.inner = bus
        self.memory = bus.memory
        self.scoreboard = scoreboard

    async def read32(self, offset: int) -> int:
        return await self.inner.read32(offset)

    async def write32(self, offset: int, value: int) -> None:
        await self.inner.write32(offset, value)
        self.scoreboard.write_register(offset, value)

    async def wait_irq(self, max_cycles: int) -> bool:
        return await self.inner.wait_irq(max_cycles)

    async def delay(self, cycles: int) -> None:
        await self.inner.delay(cycles)

    def now(self) -> int:
        return self.inner.now()


class NicScoreboard:
    """The NIC model beside the RTL, and the comparison of the two (see the module docstring).

    Parameters
    ----------
    read : Callable[[int, int], bytes]
        Reads the host memory the RTL reaches by DMA (the host's view, written by the host and by
        the RTL).
    base, size : int
        The range of bus addresses DMA may reach (outside it the model answers DECERR, as the
        PCI model does).
    errors : list or None
        The PCI model's error injection list (``LinkConfig.errors``), read live.
    rx : "exact" or "follow"
        How RX admission is compared (module docstring).
    log : logging.Logger or None
        Mismatches are logged as they are found.

    Members
    -------
    model : NicModel
    mismatches : list of str
        Every difference found so far (:meth:`check` raises when there is any).
    compared : dict
        How many events, RX buffers and MAC TX frames were compared (equal or not).
    """

    def __init__(self, read, *, base: int, size: int, errors=None, rx: str = "exact", log=None):
        if rx not in ("exact", "follow"):
            raise ValueError(f"rx must be 'exact' or 'follow', not {rx!r}")
        self.memory = ModelMemory(read, base, size)
        self.model = NicModel(self.memory)
        if errors is not None:
            self.model.dma_error_ranges = _ErrorRanges(errors)
        self.rx = rx
        self.log = log
        self.mismatches: list[str] = []
        self.compared = {"events": 0, "rx_buffers": 0, "tx_frames": 0}
        self._read = read
        self._model_events: dict[tuple, deque] = defaultdict(deque)
        self._rtl_events: dict[tuple, deque] = defaultdict(deque)
        self._events_seen = 0
        self._rtl_tx: deque[bytes] = deque()
        self._tx_seen = 0
        # follow: (frame, status word) out on MAC RX, not yet matched
        self._sent: deque[tuple[bytes, dict]] = deque()
        self._skipped = 0                        # follow: frames the RTL did not deliver

    # -- What the testbench gives both sides ----------------------------------------------------

    def write_register(self, offset: int, value: int) -> None:
        """A BAR0 write the host made (call it once the RTL has taken it)."""
        self.model.write_register(offset, value)
        self._collect()

    def receive_frame(self, frame: bytes) -> None:
        """A frame going out on MAC RX (call it when its first beat goes out)."""
        if self.rx == "exact":
            self.model.receive_frame(frame)
        else:
            self._sent.append((bytes(frame), self.model.count_frame(frame)))
        self._collect()

    def attach_mac(self, mac) -> None:
        """Observe a :class:`sim.cosim.nic_tb.MacPort`: its MAC RX frames go to the model, its
        MAC TX frames to the comparison."""
        mac.on_rx_start = self.receive_frame
        mac.tx_monitor.add_callback(self.rtl_tx_frame)

    # -- What the RTL did -------------------------------------------------------------------------

    def rtl_event(self, fields: dict) -> None:
        """An event the RTL wrote (its :class:`~hw.layouts.Event` fields, as the host took it).

        Call it before the host re-posts the event's RX buffer: for an ``RX`` event with ``OK``
        the buffer is read from host memory now.
        """
        event = {name: int(fields[name]) for name in EVENT_FIELDS}
        if event["kind"] == EventKind.RX.value and event["code"] == EventCode.OK.value:
            event["buffer"] = self._rtl_buffer(event)
            if self.rx == "follow":
                self._follow(event)
        elif event["kind"] == EventKind.RX.value and self.rx == "follow":
            self._follow(event)
        self._rtl_events[_stream(event)].append(event)
        self._collect()

    def rtl_tx_frame(self, frame: bytes) -> None:
        """A frame the RTL sent on MAC TX."""
        self._rtl_tx.append(bytes(frame))
        self._compare_tx()

    # -- Checks ---------------------------------------------------------------------------------

    def mismatch(self, message: str) -> None:
        """Record (and log) a difference; :meth:`check` reports them all."""
        self.mismatches.append(message)
        if self.log is not None:
            self.log.error("scoreboard: %s", message)

    def check(self, rtl_counters: dict | None = None) -> None:
        """The final check: nothing left on either side of any stream, then the counters
        (``rtl_counters`` as :meth:`host_driver.driver.NicDriver.counters` reads them: ``rx_``
        + RxCounters field, HostCounters field). Raises ``AssertionError`` listing every
        mismatch."""
        self._collect()
        for key in sorted(set(self._model_events) | set(self._rtl_events)):
            for side, queue in (("model", self._model_events[key]),
                                ("RTL", self._rtl_events[key])):
                for event in queue:
                    self.mismatch(f"{_stream_name(key)}: only the {side} wrote "
                                  f"{_show(event)}")
                queue.clear()
        for frame in self.model.tx_frames[self._tx_seen:]:
            self.mismatch(f"MAC TX: only the model sent a {len(frame)}-byte frame")
        self._tx_seen = len(self.model.tx_frames)
        for frame in self._rtl_tx:
            self.mismatch(f"MAC TX: only the RTL sent a {len(frame)}-byte frame")
        self._rtl_tx.clear()
        if rtl_counters is not None:
            self._check_counters(rtl_counters)
        if self.mismatches:
            raise AssertionError(f"{len(self.mismatches)} scoreboard mismatches "
                                 f"(compared {self.compared}):\n" + "\n".join(self.mismatches))

    def _check_counters(self, rtl: dict) -> None:
        model = self.model.counters()
        names = [name for name in model if name not in TIMED_COUNTERS]
        if self.rx == "follow":
            names = [name for name in names if name not in ADMISSION_DROPS]
            skipped = self._skipped + len(self._sent)
            not_admitted = sum(rtl[name] for name in ADMISSION_DROPS)
            if not_admitted != skipped:
                self.mismatch(f"counters: the RTL's {' + '.join(ADMISSION_DROPS)} = "
                              f"{not_admitted}, it gave no RX event for {skipped} frames")
            drops = sum(value for name, value in rtl.items() if name.startswith("rx_drop_"))
            if rtl["rx_frames"] != rtl["rx_to_host"] + drops:
                self.mismatch(f"counters: rx_frames {rtl['rx_frames']} != rx_to_host "
                              f"{rtl['rx_to_host']} + drops {drops}")
        for name in names:
            if rtl[name] != model[name]:
                self.mismatch(f"counter {name}: RTL {rtl[name]}, model {model[name]}"
                              + (f" (the model's failed DMA: {self.model.dma_failures})"
                                 if name == "dma_errors" else ""))

    # -- Internals --------------------------------------------------------------------------------

    def _rtl_buffer(self, event) -> bytes:
        desc = unpack(RxDescriptor, int.from_bytes(
            self._read(self.model.ring_entry_address(RingId.RX, event["index"]), _ENTRY),
            "little"))
        return bytes(self._read(int(desc.addr) & ~(_BEAT - 1), _HEADER + event["length"]))

    def _follow(self, event) -> None:
        """Follow mode: give the model the frame this RX event is about (the first frame sent
        and not yet matched that it can be: the same bytes in the buffer, or for a buffer not
        written the same length and RSS hash); the frames before it were dropped by the RTL."""
        for n, (frame, status) in enumerate(self._sent):
            if "buffer" in event:
                match = event["buffer"][_HEADER:] == frame
            else:       # not written (BUFFER_TOO_SMALL, DMA_ERROR): its length and RSS hash
                match = (len(frame), status["hash"]) == (event["length"], event["tag"])
            if match:
                for _ in range(n + 1):
                    self._sent.popleft()
                self._skipped += n
                verdict = self.model.admit_frame(frame, status=status)
                if verdict != "admitted":
                    self.mismatch(f"RX event {_show(event)}: the RTL delivered a frame the "
                                  f"model drops ({verdict})")
                return
        self.mismatch(f"RX event {_show(event)}: not a frame sent (or out of order)")

    def _collect(self) -> None:
        """Take the model's new events into their streams and compare what pairs up."""
        events = self.model.events
        for _, fields in events[self._events_seen:]:
            event = {name: fields[name] for name in EVENT_FIELDS}
            if event["kind"] == EventKind.RX.value and event["code"] == EventCode.OK.value:
                desc = unpack(RxDescriptor, int.from_bytes(self.memory.read(
                    self.model.ring_entry_address(RingId.RX, event["index"]), _ENTRY), "little"))
                event["buffer"] = self.memory.read_written(int(desc.addr) & ~(_BEAT - 1),
                                                           _HEADER + event["length"])
            self._model_events[_stream(event)].append(event)
        self._events_seen = len(events)
        for key, rtl_queue in self._rtl_events.items():
            model_queue = self._model_events[key]
            while rtl_queue and model_queue:
                self._compare_event(key, model_queue.popleft(), rtl_queue.popleft())
        self._compare_tx()

    def _compare_event(self, key, model: dict, rtl: dict) -> None:
        self.compared["events"] += 1
        differ = [name for name in EVENT_FIELDS if model[name] != rtl[name]]
        if differ:
            self.mismatch(f"{_stream_name(key)}: event differs in {', '.join(differ)}: "
                          f"RTL {_show(rtl)}, model {_show(model)}")
            return
        if "buffer" in rtl:
            self.compared["rx_buffers"] += 1
            got, want = rtl["buffer"], model["buffer"]
            if got != want:
                at = next(n for n, (a, b) in enumerate(zip(got, want)) if a != b)
                part = "header (RxSummary)" if at < _HEADER else "frame"
                self.mismatch(f"RX buffer of {_show(rtl)}: {part} differs from byte {at}")

    def _compare_tx(self) -> None:
        model = self.model.tx_frames
        while self._rtl_tx and self._tx_seen < len(model):
            rtl, want = self._rtl_tx.popleft(), model[self._tx_seen]
            self._tx_seen += 1
            self.compared["tx_frames"] += 1
            if rtl != want:
                self.mismatch(f"MAC TX frame {self._tx_seen - 1}: RTL sent {len(rtl)} bytes "
                              f"{rtl[:64].hex()}..., model {len(want)} bytes {want[:64].hex()}...")


def _stream(event) -> tuple[int, str]:
    """The stream an event belongs to: its ring's entries, or its ring's refused registers."""
    register = (event["kind"] == EventKind.ERROR.value and event["code"] in _REGISTER_CODES)
    return event["ring"], "register" if register else "entries"


def _stream_name(key) -> str:
    ring, what = key
    name = RingId(ring).name if ring in {r.value for r in RingId} else str(ring)
    return f"{name} {what}"


def _show(event) -> str:
    kind = event["kind"]
    kind = EventKind(kind).name if kind in {k.value for k in EventKind} else str(kind)
    code = event["code"]
    code = EventCode(code).name if code in {c.value for c in EventCode} else str(code)
    return (f"{kind}(ring {event['ring']}, index {event['index']}, length {event['length']}, "
            f"{code}, tag {event['tag']:#x}, detail {event['detail']:#x})")

