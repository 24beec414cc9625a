"""Transaction-level model of the NIC's host interface (docs/host_interface.md), in plain Python.

:class:`NicModel` is written from the contract, not from the gateware: registers (values, W1C,
doorbell checks), the four rings in a :class:`~host_driver.memory.HostMemory`, slow-path receive
(admission, drop reasons, the RxSummary and the frame in the buffer, the RX event), transmit
with checksum offload, commands, events with the phase bit, interrupt moderation and every
counter. It serves two purposes:

- the driver (:mod:`host_driver.driver`) runs against it through :class:`ModelBus`, so the driver
  and whole TCP transfers are tested in seconds under :mod:`asyncio`;
- it is the golden model for the RTL: :mod:`sim.scoreboard` feeds it the same frames, doorbells
  and commands as the RTL in the NIC cosimulation tests and compares its event log
  (:attr:`NicModel.events`), RX buffers, MAC TX frames and counters (:meth:`NicModel.counters`).

The fast path (docs/fast_path.md: commands, CCB table, queues, placement, FRAME_DATA, flushes,
ACKs, FastPathCounters) is :class:`sim.reference.fast_path.FastPath`, :attr:`NicModel.fast_path`;
its decisions are in docs/fast_path.md "Model". Every admitted frame is decided by it; the
receive side's writes and events (RX and FRAME_DATA fills, the fast path's events) are jobs done
in order.

Simplifications (all deliberate; the contract leaves them to the implementation):

- Zero latency: a doorbell, a command, a frame is processed completely inside the call that
  caused it. Only moderation by time needs the clock (:meth:`NicModel.advance`).
- Work order when several rings have work: commands, then TX, then RX; a refused register write's
  event is posted at once. When the event ring is full (or off) events wait inside the NIC, in
  order, and the units go on (the RTL's units each queue at least 16 events; the tests stay
  within that): descriptors are taken and buffers filled while posted ones last.
- The packet buffer holds whole frames, each taking its length rounded up to a DMA beat (a frame
  starts a beat). Checks when a frame arrives, in order: disabled, no buffer (RX ring stopped, no
  posted buffer that is not promised to a frame already waiting, or ``RX_PACKET_BUFFER_FRAMES``
  frames waiting), oversize, overflow.
- DMA is split in AXI bursts as the RTL does (at most ``DMA_MAX_BURST_BYTES``, never across a 4 KB
  boundary), in beats of ``DMA_DATA_BITS``. With error injection
  (:attr:`NicModel.dma_error_ranges`), ``dma_errors`` counts one per failed read beat and one
  per failed write burst (each is one AXI response). A ``DMA_ERROR`` event's ``detail`` is bits
  30:0 of an address: the first failing beat of a TX frame read, the RX buffer's (beat-aligned)
  address for a buffer write, the entry's for a ring-entry fetch.
- Ring entries are prefetched as the ring fetchers do (hw/host/rings.py): while the NIC is enabled
  and the ring not stopped, posted entries are read ahead, in requests of at most 16 entries that
  never pass the ring's end, each only when the 32-entry cache has room for all of it; each entry
  is read once. An entry that fails is skipped with a ``DMA_ERROR`` event, as
  docs/host_interface.md says: ``ERROR`` for an RX descriptor (at once, without waiting for a
  frame), ``TX_DONE`` for a TX descriptor (length 0, counted in ``tx_bad_descriptor``),
  ``COMMAND_DONE`` for a command (tag 0); ``detail`` is the entry's address.
- A refused register write gives an ``ERROR`` event with index 0 (docs/host_interface.md, events
  table).
- A TX descriptor is refused (``BAD_DESCRIPTOR``) when its length is 0 or above
  ``MAX_FRAME_BYTES``, or when an offload it asks for has an odd offset or a field that does not
  lie in the frame (the IPv4 header's first 20 bytes, the two L4 checksum bytes), as the RTL does.
- An event write that fails sets ``STATUS.EVENT_WRITE_FAILED`` (until the event ring is
  reconfigured) and ``INTR_STATUS.FATAL``; the event is lost, but it was posted like any other (as
  the RTL does): the producer index moves past its slot, ``events`` and the moderation count it,
  and the NIC goes on writing the next events. It is not in :attr:`NicModel.events`.
- The L4 checksum: the NIC sums the frame from ``csum_start`` to its end, the field included (the
  host put the pseudo-header sum there); a result of 0 is sent as 0xFFFF (RFC 768). The IPv4
  header checksum sums the header with its field (which the host leaves 0), as far as its IHL says
  and the frame goes, and is stored as computed (0 stays 0), as the RTL does. Offsets are checked
  only when their offload is asked for. An IHL below 5 is the host's error and the checksum the
  NIC then writes is not specified: the model leaves the field as it is, and the scoreboard cannot
  compare such frames.
"""

import dataclasses
from collections import deque
from collections.abc import Callable

from amaranth.lib import data

from host_driver.bus import Bus
from host_driver.memory import HostMemory
from hw import params
from hw.host import regmap
from hw.layouts import (
    IPV4_CHECKSUM_OFFSET,
    IPV4_MIN_HEADER_BYTES,
    RX_SUMMARY_BYTES,
    Command,
    CommandOpcode,
    Event,
    EventCode,
    EventKind,
    HostCounters,
    RingId,
    RxCounters,
    RxDescriptor,
    RxErrors,
    RxSummary,
    TxDescriptor,
    pack,
    unpack,
)

from .checksum import ones_complement_sum
from .fast_path import FastPath, Frame
from .rx_status import expected_fields

__all__ = ["NicModel", "ModelBus", "rx_summary_header", "summary_fields", "fields_of",
           "HOST_COUNTER_NAMES", "RX_COUNTER_NAMES"]

HOST_COUNTER_NAMES = tuple(name for name, _ in data.Layout.cast(HostCounters))
RX_COUNTER_NAMES = tuple(name for name, _ in data.Layout.cast(RxCounters))
_RX_ERROR_NAMES = tuple(name for name, _ in data.Layout.cast(RxErrors))
_ENTRY = params.RING_ENTRY_BYTES
#: A ring fetcher's cache and its largest request, in entries (hw/host/rings.py defaults).
_CACHE_ENTRIES = 32
_MAX_FETCH = 16
#: Bytes of a DMA beat: the unit of reads, of the packet buffer's words and of alignment.
_BEAT = params.DMA_DATA_BITS // 8
_MASK32 = 0xFFFF_FFFF
#: Event.detail keeps the low bits of the value written / the failing address.
_DETAIL_MASK = (1 << data.Layout.cast(Event)["detail"].width) - 1
#: Register name -> (RingId, what), for the registers in each ring's block of the register map.
_RING_REGISTERS = {
    reg.name: (ring, reg.name.removeprefix(ring.name + "_"))
    for reg in regmap.REGISTERS for ring in RingId
    if 0 <= reg.offset - (regmap.RING_BLOCK + regmap.RING_STRIDE * ring.value) < regmap.RING_STRIDE
}


def fields_of(layout, bits) -> dict:
    """The fields of ``layout`` in the integer ``bits``, as a dict of ints (via :func:`unpack`)."""
    view = unpack(layout, bits)
    return {name: int(getattr(view, name)) for name, _ in data.Layout.cast(layout)}


def summary_fields(status: dict) -> dict:
    """The :class:`RxSummary` fields of a status word's fields: those of the same name (the frame
    length saturated to the summary's 16 bits)."""
    names = {name for name, _ in data.Layout.cast(RxSummary)}
    fields = {name: value for name, value in status.items() if name in names}
    fields["length"] = min(status["length"], 0xFFFF)
    return fields


def rx_summary_header(frame: bytes, key: bytes = params.MS_RSS_KEY) -> bytes:
    """The ``RX_SUMMARY_BYTES`` that precede ``frame`` in its RX buffer: its RxSummary, little
    endian."""
    bits = pack(RxSummary, summary_fields(expected_fields(frame, key)))
    return bits.to_bytes(RX_SUMMARY_BYTES, "little")


def _fold_complement(total: int) -> int:
    """The L4 checksum to store for a ones' complement sum: its complement, 0 sent as 0xFFFF."""
    value = ~total & 0xFFFF
    return value or 0xFFFF


def _bursts(addr: int, n: int):
    """``(address, bytes)`` of the AXI bursts a transfer of ``n`` bytes at ``addr`` takes."""
    max_bytes = params.DMA_MAX_BURST_BYTES
    end = addr + n
    while addr < end:
        step = min(end - addr, max_bytes, 0x1000 - (addr & 0xFFF))
        yield addr, step
        addr += step


@dataclasses.dataclass
class _RxJob:
    """One job of the receive side's writer, in order: a frame into an RX buffer (``frame`` set:
    ``RX`` or ``FRAME_DATA``, the descriptor's index added to ``event``), or an event alone."""
    event: dict
    frame: Frame | None = None


_FAST_PATH_OPCODES = frozenset(op.value for op in (
    CommandOpcode.HANDOUT1, CommandOpcode.HANDOUT2, CommandOpcode.RCVMDL,
    CommandOpcode.WINUPDATE, CommandOpcode.FLUSH, CommandOpcode.CLOSE))


class _Ring:
    def __init__(self):
        self.base_lo = self.base_hi = 0
        self.log2 = 0
        self.producer = self.consumer = 0
        self.fetch = 0          # the next entry the ring fetcher reads (host-produced rings)

    @property
    def size(self) -> int:
        return 1 << self.log2 if self.log2 else 0

    @property
    def base(self) -> int:
        return (self.base_hi << 32 | self.base_lo) & ~0xF

    @property
    def count(self) -> int:
        """Entries between consumer and producer."""
        return (self.producer - self.consumer) % self.size if self.size else 0

    def entry(self, index: int) -> int:
        return self.base + _ENTRY * index


class NicModel:
    """The NIC's host interface as a Python object.

    Parameters
    ----------
    memory : HostMemory
        The host memory DMA reaches.
    on_tx : Callable[[bytes], None] or None
        Called with every frame sent on MAC TX (also appended to :attr:`tx_frames`): the host's
        and the fast path's ACKs.
    fast_path_connections : int
        Entries of the CCB table (``conn_nbr`` 0 .. n-1).

    Members
    -------
    cycle : int
        Model time in NIC clock cycles (advanced by :meth:`advance`).
    tx_frames : list of bytes
        Frames sent on MAC TX, in order (clear it at will).
    events : list of (int, dict)
        Every event written: the cycle and its :class:`Event` fields (not the ones whose write
        failed).
    dma_error_ranges : list of (int, int, str)
        ``(start, end, kind)``: DMA to ``[start, end)`` is answered with an error
        (``kind`` "read", "write" or "both").
    dma_log : list of (str, int, int, int)
        Every DMA burst: ``(kind, address, bytes, cycle)``.
    dma_failures : list of (str, int, int)
        Every response with an error: ``(kind, address, cycle)`` of the read beat / write burst.
    irq : bool
        The interrupt line.
    fast_path : FastPath
        The fast path: its connections, counters and the ACKs it sent.
    """

    def __init__(self, memory: HostMemory, on_tx: Callable[[bytes], None] | None = None,
                 fast_path_connections: int = params.FAST_PATH_CONNECTIONS):
        self.memory = memory
        self.on_tx = on_tx
        self.cycle = 0
        self.tx_frames: list[bytes] = []
        self.events: list[tuple[int, dict]] = []
        self.dma_error_ranges: list[tuple[int, int, str]] = []
        self.dma_log: list[tuple[str, int, int, int]] = []
        self.dma_failures: list[tuple[str, int, int]] = []
        self._by_offset = {reg.offset: reg for reg in regmap.REGISTERS}
        self._values = {reg.name: reg.reset for reg in regmap.REGISTERS}
        self._rings = {ring: _Ring() for ring in RingId}
        self._stopped = {RingId.RX: False, RingId.TX: False}
        self._phase = 1
        self._event_failed = False
        self._intr_status = 0
        self._mod_count = 0
        self._mod_deadline: int | None = None
        self.irq = False
        #: The receive side's jobs, in order (frames for RX buffers, events).
        self._rx_jobs: deque[_RxJob] = deque()
        #: Prefetched entries of each host-produced ring: the entry's integer, None if its read
        #: failed.
        self._cache: dict[RingId, deque[int | None]] = {ring: deque() for ring in RingId}
        #: Frames in the packet buffer (each with a claim on a posted RX buffer) and their
        #: bytes; frames admitted so far (their arrival numbers).
        self._buffer_frames = 0
        self._buffer_bytes = 0
        self._arrivals = 0
        #: Events made and not yet written (the event ring full or off): they wait in the NIC.
        self._event_queue: deque[dict] = deque()
        self.host_counters = dict.fromkeys(HOST_COUNTER_NAMES, 0)
        self.rx_counters = dict.fromkeys(RX_COUNTER_NAMES, 0)
        self.fast_path = FastPath(self, fast_path_connections)

    # -- MMIO ------------------------------------------------------------------------------------

    @property
    def enabled(self) -> bool:
        return bool(self._values["CONTROL"] & regmap.CONTROL_ENABLE)

    def read_register(self, offset: int) -> int:
        """The value a BAR0 read of ``offset`` returns (0 for unmapped offsets)."""
        reg = self._by_offset.get(offset)
        if reg is None:
            return 0
        name = reg.name
        if name == "STATUS":
            return ((regmap.STATUS_ENABLED if self.enabled else 0)
                    | (regmap.STATUS_EVENT_WRITE_FAILED if self._event_failed else 0))
        if name == "INTR_STATUS":
            return self._intr_status
        if reg.offset >= regmap.FAST_PATH_COUNTERS_BASE:
            return self._fast_path_counter(reg.offset)
        if reg.offset >= regmap.HOST_COUNTERS_BASE:
            return self.host_counters[name.lower()] & _MASK32
        if reg.offset >= regmap.RX_COUNTERS_BASE:
            return self.rx_counters[name.lower().removeprefix("rx_")] & _MASK32
        ring_what = self._ring_field(name)
        if ring_what is not None:
            ring, what = ring_what
            r = self._rings[ring]
            return {"BASE_LO": r.base_lo, "BASE_HI": r.base_hi, "LOG2_SIZE": r.log2,
                    "PRODUCER": r.producer, "CONSUMER": r.consumer}[what]
        return self._values[name]

    def write_register(self, offset: int, value: int) -> None:
        """A BAR0 write of ``value`` to ``offset`` (ignored when unmapped or read-only)."""
        value &= _MASK32
        reg = self._by_offset.get(offset)
        if reg is None or reg.access == "ro":
            return
        name = reg.name
        ring_what = self._ring_field(name)
        if name == "CONTROL":
            if value & regmap.CONTROL_COUNTERS_CLEAR:
                self.clear_counters()
            self._values[name] = value & regmap.CONTROL_ENABLE
        elif name == "INTR_STATUS":
            self._intr_status &= ~value
            self._update_irq()
        elif name == "INTR_MASK":
            self._values[name] = value & (regmap.INTR_EVENTS | regmap.INTR_FATAL)
            self._update_irq()
        elif ring_what is not None:
            self._write_ring(*ring_what, value)
        else:
            self._values[name] = value
        self._run()

    @staticmethod
    def _ring_field(name):
        """``(RingId, "PRODUCER")`` for a ring register's name, else None."""
        return _RING_REGISTERS.get(name)

    def _write_ring(self, ring: RingId, what: str, value: int) -> None:
        r = self._rings[ring]
        if what == "BASE_LO":
            r.base_lo = value
        elif what == "BASE_HI":
            r.base_hi = value
        elif what == "LOG2_SIZE":
            ok = value == 0 or params.RING_LOG2_SIZE_MIN <= value <= params.RING_LOG2_SIZE_MAX
            r.log2 = value if ok else 0
            r.producer = r.consumer = r.fetch = 0
            self._cache[ring].clear()
            if ring is RingId.EVENT:
                self._phase = 1
                self._event_failed = False
            if not ok:
                self._register_error(EventCode.BAD_RING_SIZE, ring, value)
        else:
            host_produces = ring is not RingId.EVENT
            old = r.producer if host_produces else r.consumer
            if value >= r.size:
                good = False
            elif host_produces:
                good = (value - r.consumer) % r.size >= (old - r.consumer) % r.size
            else:
                good = (value - old) % r.size <= (r.producer - old) % r.size
            if not good:
                self._register_error(EventCode.BAD_DOORBELL, ring, value)
            elif host_produces:
                r.producer = value
            else:
                r.consumer = value

    def _register_error(self, code, ring, value):
        self._count("bad_doorbells")
        self._write_event(kind=EventKind.ERROR.value, ring=ring.value, index=0, code=code.value,
                          detail=value & _DETAIL_MASK)

    def clear_counters(self) -> None:
        """What CONTROL.COUNTERS_CLEAR does."""
        for counters in (self.host_counters, self.rx_counters):
            for name in counters:
                counters[name] = 0
        self.fast_path.clear_counters()

    def counters(self) -> dict:
        """Every counter, named as :func:`hw.host.regmap.counter_register` takes them
        (``rx_frames`` for RxCounters.frames, ``rx_to_host`` for HostCounters.rx_to_host)."""
        out = {f"rx_{name}": value & _MASK32 for name, value in self.rx_counters.items()}
        out.update({name: value & _MASK32 for name, value in self.host_counters.items()})
        return out

    def fast_path_counters(self) -> dict:
        """The FastPathCounters, named as :func:`hw.host.regmap.counter_register` takes them
        (``fp_`` and the field name; ``fp_flush_<reason>`` for ``flush_reason``)."""
        return {name: self._fast_path_counter(regmap.counter_register(name).offset)
                for name in regmap.FAST_PATH_COUNTER_NAMES}

    def _fast_path_counter(self, offset: int) -> int:
        _, field, element = regmap.FAST_PATH_COUNTER_FIELDS[
            (offset - regmap.FAST_PATH_COUNTERS_BASE) // 4]
        value = self.fast_path.counters[field]
        return (value if element is None else value[element]) & _MASK32

    def _count(self, name: str, n: int = 1) -> None:
        self.host_counters[name] += n

    @property
    def rss_key(self) -> bytes:
        return b"".join(self._values[f"RSS_KEY{n}"].to_bytes(4, "big")
                        for n in range(params.RSS_KEY_BYTES // 4))

    # -- Time and interrupts ---------------------------------------------------------------------

    def advance(self, cycles: int) -> None:
        """Let ``cycles`` clocks pass: fire the moderation and delayed-ACK timers when due, in
        time order."""
        target = self.cycle + max(0, cycles)
        while True:
            ack = self.fast_path.next_ack_deadline()
            due = [t for t in (self._mod_deadline, ack) if t is not None and t <= target]
            if not due:
                break
            self.cycle = max(self.cycle, min(due))
            if self._mod_deadline is not None and self._mod_deadline <= self.cycle:
                self._signal_events()
            if ack is not None and ack <= self.cycle:
                self.fast_path.fire_ack_timers(self.cycle)
        self.cycle = target

    def cycles_to_timer(self) -> int | None:
        """Clocks until the moderation timer fires, or None if it does not run."""
        return None if self._mod_deadline is None else max(0, self._mod_deadline - self.cycle)

    def _signal_events(self) -> None:
        self._intr_status |= regmap.INTR_EVENTS
        self._mod_count = 0
        self._mod_deadline = None
        self._update_irq()

    def _event_written(self) -> None:
        self._mod_count += 1
        if self._mod_count >= max(1, self._values["INTR_MOD_EVENTS"]):
            self._signal_events()
        elif self._mod_deadline is None and self._values["INTR_MOD_CYCLES"]:
            self._mod_deadline = self.cycle + self._values["INTR_MOD_CYCLES"]

    def _update_irq(self) -> None:
        irq = bool(self._intr_status & self._values["INTR_MASK"])
        if irq and not self.irq:
            self._count("interrupts")
        self.irq = irq

    # -- DMA -------------------------------------------------------------------------------------

    def _faulty(self, addr, n, kind):
        if addr < self.memory.base or addr + n > self.memory.base + self.memory.size:
            return True
        return any(start < addr + n and addr < end and k in (kind, "both")
                   for start, end, k in self.dma_error_ranges)

    def _dma_read(self, addr: int, n: int) -> tuple[bytes, list[int]]:
        """Read ``n`` bytes at ``addr`` (beat-aligned) by DMA: the bytes, and the addresses of
        the beats answered with an error (whose bytes are not to be used)."""
        failed = []
        for burst, length in _bursts(addr, n):
            self.dma_log.append(("read", burst, length, self.cycle))
            failed += [beat for beat in range(burst, burst + length, _BEAT)
                       if self._faulty(beat, _BEAT, "read")]
        self._count("dma_errors", len(failed))
        self.dma_failures += [("read", beat, self.cycle) for beat in failed]
        return self.memory.read(addr, n), failed

    def _dma_write(self, addr: int, payload: bytes) -> int | None:
        """Write ``payload`` at ``addr`` by DMA; the address of the first burst answered with an
        error, or None (the bursts that got OKAY are written)."""
        failed = None
        for burst, length in _bursts(addr, len(payload)):
            self.dma_log.append(("write", burst, length, self.cycle))
            if self._faulty(burst, length, "write"):
                self._count("dma_errors")
                self.dma_failures.append(("write", burst, self.cycle))
                failed = burst if failed is None else failed
            else:
                self.memory.write(burst, payload[burst - addr:burst - addr + length])
        return failed

    def _prefetch(self) -> None:
        """Read ahead the posted entries of the host-produced rings, as the ring fetchers do."""
        for ring in (RingId.COMMAND, RingId.RX, RingId.TX):
            r = self._rings[ring]
            cache = self._cache[ring]
            if not self.enabled or self._stopped.get(ring, False) or not r.size:
                continue
            while True:
                n = min((r.producer - r.fetch) % r.size, r.size - r.fetch, _MAX_FETCH)
                if n == 0 or len(cache) + n > _CACHE_ENTRIES:
                    break
                base = r.entry(r.fetch)
                raw, failed = self._dma_read(base, n * _ENTRY)
                bad = {beat // _BEAT for beat in failed}
                for i in range(n):
                    addr = base + _ENTRY * i
                    spans = {b // _BEAT for b in range(addr, addr + _ENTRY, min(_BEAT, _ENTRY))}
                    cache.append(None if spans & bad
                                 else int.from_bytes(raw[_ENTRY * i:_ENTRY * (i + 1)], "little"))
                r.fetch = (r.fetch + n) % r.size

    def _fetch(self, ring: RingId, layout):
        """The prefetched entry at the consumer index of ``ring`` (None when its read failed);
        the consumer index moves past it."""
        r = self._rings[ring]
        entry = self._cache[ring].popleft()
        r.consumer = (r.consumer + 1) % r.size
        return None if entry is None else unpack(layout, entry)

    def ring_entry_address(self, ring: RingId, index: int) -> int:
        """The bus address of entry ``index`` of ``ring``, as configured."""
        return self._rings[ring].entry(index)

    # -- Events ----------------------------------------------------------------------------------

    def _event_slot(self) -> bool:
        r = self._rings[RingId.EVENT]
        return bool(r.size) and r.count < r.size - 1

    def _write_event(self, **fields) -> None:
        """Post an event: written at once while the ring has a free slot, else it waits in the
        NIC (in order) and the units go on (hw/host/event_writer.py)."""
        self._event_queue.append(fields)
        self._flush_events()

    def _flush_events(self) -> None:
        while self._event_queue and self._event_slot():
            self._write_slot(self._event_queue.popleft())

    def _write_slot(self, fields: dict) -> None:
        r = self._rings[RingId.EVENT]
        fields["phase"] = self._phase
        bits = pack(Event, fields)
        failed = self._dma_write(r.entry(r.producer), bits.to_bytes(_ENTRY, "little"))
        if failed is None:
            self.events.append((self.cycle, fields_of(Event, bits)))
        r.producer = (r.producer + 1) % r.size
        if r.producer == 0:
            self._phase ^= 1
        self._count("events")
        self._event_written()
        if failed is not None:
            self._event_failed = True
            self._intr_status |= regmap.INTR_FATAL
            self._update_irq()

    # -- Processing ------------------------------------------------------------------------------

    def _run(self) -> None:
        self._flush_events()
        self._prefetch()
        while self.enabled and (self._step_command() or self._step_tx() or self._step_rx()):
            self._prefetch()

    def _step_command(self) -> bool:
        r = self._rings[RingId.COMMAND]
        if not self._cache[RingId.COMMAND]:
            return False
        index = r.consumer
        entry = r.entry(index)
        command = self._fetch(RingId.COMMAND, Command)
        self._count("commands")
        event = {"kind": EventKind.COMMAND_DONE.value, "ring": RingId.COMMAND.value,
                 "index": index}
        if command is None:
            self._write_event(**event, code=EventCode.DMA_ERROR.value,
                              detail=entry & _DETAIL_MASK)
            return True
        if command.opcode in _FAST_PATH_OPCODES:
            self.fast_path.command(index, command)
            return True
        code = EventCode.OK
        if command.opcode in (CommandOpcode.RING_STOP.value, CommandOpcode.RING_START.value):
            if command.ring in (RingId.RX.value, RingId.TX.value):
                stop = command.opcode == CommandOpcode.RING_STOP.value
                self._stopped[RingId(command.ring)] = stop
            else:
                code = EventCode.BAD_RING
        elif command.opcode != CommandOpcode.NOP.value:
            code = EventCode.UNKNOWN_OPCODE
        if code is not EventCode.OK:
            self._count("bad_commands")
        self._write_event(**event, code=code.value, tag=command.tag, detail=command.opcode)
        return True

    def _step_tx(self) -> bool:
        r = self._rings[RingId.TX]
        if self._stopped[RingId.TX] or not self._cache[RingId.TX]:
            return False
        index = r.consumer
        entry = r.entry(index)
        desc = self._fetch(RingId.TX, TxDescriptor)
        event = {"kind": EventKind.TX_DONE.value, "ring": RingId.TX.value, "index": index}
        if desc is None:
            self._count("tx_bad_descriptor")
            self._write_event(**event, code=EventCode.DMA_ERROR.value,
                              detail=entry & _DETAIL_MASK)
            return True
        event["length"] = desc.length
        length = desc.length
        ip_bad = desc.ip_csum and (desc.ip_offset & 1
                                   or desc.ip_offset + IPV4_MIN_HEADER_BYTES > length)
        l4_bad = desc.l4_csum and ((desc.csum_start | desc.csum_offset) & 1
                                   or desc.csum_start + desc.csum_offset + 2 > length)
        if not 0 < length <= params.MAX_FRAME_BYTES or ip_bad or l4_bad:
            self._count("tx_bad_descriptor")
            self._write_event(**event, code=EventCode.BAD_DESCRIPTOR.value)
            return True
        addr = desc.addr & ~(_BEAT - 1)
        raw, failed = self._dma_read(addr, -(-desc.length // _BEAT) * _BEAT)
        if failed:
            self._count("tx_bad_descriptor")
            self._write_event(**event, code=EventCode.DMA_ERROR.value,
                              detail=failed[0] & _DETAIL_MASK)
            return True
        frame = bytearray(raw[:desc.length])
        if desc.ip_csum:
            self._ip_checksum(frame, desc.ip_offset)
        if desc.l4_csum:
            field = desc.csum_start + desc.csum_offset
            total = ones_complement_sum(bytes(frame[desc.csum_start:]))
            frame[field:field + 2] = _fold_complement(total).to_bytes(2, "big")
        self._write_event(**event, code=EventCode.OK.value)
        self._count("tx_frames")
        self.send_frame(bytes(frame))
        return True

    @staticmethod
    def _ip_checksum(frame: bytearray, offset: int) -> None:
        end = offset + 4 * (frame[offset] & 0xF)
        if end < offset + IPV4_MIN_HEADER_BYTES:
            return
        total = ones_complement_sum(bytes(frame[offset:min(end, len(frame))]))
        field = offset + IPV4_CHECKSUM_OFFSET
        frame[field:field + 2] = (~total & 0xFFFF).to_bytes(2, "big")

    def _step_rx(self) -> bool:
        job = self._rx_jobs[0] if self._rx_jobs else None
        if job is not None and job.frame is None:
            self._rx_jobs.popleft()
            self._write_event(**job.event)
            return True
        r = self._rings[RingId.RX]
        cache = self._cache[RingId.RX]
        # A fetch-error entry is skipped at once; a good one waits for a frame.
        if self._stopped[RingId.RX] or not cache or (cache[0] is not None and job is None):
            return False
        index = r.consumer
        entry = r.entry(index)
        desc = self._fetch(RingId.RX, RxDescriptor)
        if desc is None:
            self._write_event(kind=EventKind.ERROR.value, ring=RingId.RX.value, index=index,
                              code=EventCode.DMA_ERROR.value, detail=entry & _DETAIL_MASK)
            return True
        self._rx_jobs.popleft()
        frame = job.frame
        self.release(frame)
        event = {**job.event, "index": index}
        if desc.size < RX_SUMMARY_BYTES + len(frame.data):
            self._count("rx_drop_too_small")
            self._write_event(**event, code=EventCode.BUFFER_TOO_SMALL.value)
            return True
        addr = desc.addr & ~(_BEAT - 1)
        if self._dma_write(addr, frame.header + frame.data) is not None:
            self._count("rx_drop_dma_error")
            if event["kind"] == EventKind.RX.value:     # FRAME_DATA keeps its conn_nbr
                event["detail"] = addr & _DETAIL_MASK
            self._write_event(**event, code=EventCode.DMA_ERROR.value)
        else:
            if event["kind"] == EventKind.FRAME_DATA.value:
                self.fast_path.counters["frame_data"] += 1
                self.fast_path.counters["frame_data_bytes"] += frame.field("payload_len")
            else:
                self._count("rx_to_host")
            self._write_event(**event, code=EventCode.OK.value)
        return True

    # -- The fast path's hooks (sim/reference/fast_path.py) ----------------------------------------

    def dma_read(self, addr: int, n: int) -> tuple[bytes, list[int]]:
        return self._dma_read(addr, n)

    def dma_write(self, addr: int, payload: bytes) -> int | None:
        return self._dma_write(addr, payload)

    def post_rx_event(self, **fields) -> None:
        """An event of the receive side, posted after the jobs before it."""
        self._rx_jobs.append(_RxJob(fields))

    def to_host(self, frame: Frame, kind: EventKind, tag: int, detail: int = 0) -> None:
        """``frame`` into the next RX buffer, with an event of ``kind`` (RX or FRAME_DATA)."""
        self._rx_jobs.append(_RxJob({"kind": kind.value, "ring": RingId.RX.value,
                                     "length": len(frame.data), "tag": tag, "detail": detail},
                                    frame))

    def to_slow_path(self, frame: Frame) -> None:
        self.to_host(frame, EventKind.RX, frame.field("hash"))

    def release(self, frame: Frame) -> None:
        """``frame`` leaves the packet buffer (written to the host, or taken by the fast path)."""
        self._buffer_frames -= 1
        self._buffer_bytes -= _beats_bytes(len(frame.data))

    def send_frame(self, frame: bytes) -> None:
        """A frame built by the NIC onto MAC TX (the ACK builder's, through the TX arbiter)."""
        self.tx_frames.append(frame)
        if self.on_tx is not None:
            self.on_tx(frame)

    # -- MAC -------------------------------------------------------------------------------------

    def receive_frame(self, frame: bytes) -> str:
        """A frame from the MAC (no FCS): :meth:`count_frame`, then :meth:`admit_frame`. Returns
        what became of it: ``"admitted"`` or the name of the HostCounters drop counter that
        counted it."""
        return self.admit_frame(frame, status=self.count_frame(frame))

    def count_frame(self, frame: bytes) -> dict:
        """What the receive sequencer does with ``frame``: its status word
        (:func:`sim.reference.rx_status.expected_fields`, returned), counted in the RxCounters."""
        status = expected_fields(frame, self.rss_key)
        errors = status["errors"]
        counts = {"frames": 1, "candidates": status["candidate"],
                  "malformed": status["malformed"],
                  "ip_csum_bad": status.get("ip_csum_valid", 0) and 1 - status["ip_csum_ok"],
                  "l4_csum_bad": status.get("l4_csum_valid", 0) and 1 - status["l4_csum_ok"],
                  "fragments": status.get("fragment", 0), **errors}
        for name, n in counts.items():
            self.rx_counters[name] += n
        return status

    def admit_frame(self, frame: bytes, *, status: dict | None = None) -> str:
        """What the host interface does with a frame the sequencer passed on (see
        :meth:`receive_frame`); ``status`` is its status word as :meth:`count_frame` returns it."""
        frame = bytes(frame)
        if status is None:
            status = expected_fields(frame, self.rss_key)
        r = self._rings[RingId.RX]
        if not self.enabled:
            verdict = "rx_drop_disabled"
        elif (self._stopped[RingId.RX] or r.count <= self._buffer_frames
              or self._buffer_frames >= params.RX_PACKET_BUFFER_FRAMES):
            verdict = "rx_drop_no_buffer"
        elif len(frame) > params.MAX_FRAME_BYTES:
            verdict = "rx_drop_oversize"
        elif self._buffer_bytes + _beats_bytes(len(frame)) > params.RX_PACKET_BUFFER_BYTES:
            verdict = "rx_drop_overflow"
        else:
            header = pack(RxSummary, summary_fields(status)).to_bytes(RX_SUMMARY_BYTES, "little")
            self._buffer_frames += 1
            self._buffer_bytes += _beats_bytes(len(frame))
            self._arrivals += 1
            self.fast_path.receive(Frame(frame, status, header, self._arrivals))
            self._relieve_packet_buffer()
            self._run()
            return "admitted"
        self._count(verdict)
        return verdict

    def _relieve_packet_buffer(self) -> None:
        """Flush the connection whose queue holds the packet buffer's oldest frame while fewer
        than a quarter of its bytes or frame slots are free (docs/fast_path.md "Queues")."""
        while True:
            oldest = self.fast_path.oldest_queued()
            if oldest is None:
                return
            nbr, conn = oldest
            slow = next((job.frame.nbr for job in self._rx_jobs if job.frame is not None), None)
            short = (4 * (params.RX_PACKET_BUFFER_BYTES - self._buffer_bytes)
                     < params.RX_PACKET_BUFFER_BYTES
                     or 4 * (params.RX_PACKET_BUFFER_FRAMES - self._buffer_frames)
                     < params.RX_PACKET_BUFFER_FRAMES)
            if not short or (slow is not None and slow < nbr):
                return
            self.fast_path.flush_for_space(conn)

    @property
    def frames_inside(self) -> int:
        """Admitted frames not yet written to the host (waiting for an event slot or a buffer),
        but those waiting in a fast-path connection's queue (``FastPathCounters.queued``)."""
        return self._buffer_frames - self.fast_path.queued


def _beats_bytes(n: int) -> int:
    return max(1, -(-n // _BEAT)) * _BEAT


class ModelBus(Bus):
    """:class:`host_driver.bus.Bus` over a :class:`NicModel`: register accesses are immediate,
    time is the model's cycle counter, advanced by :meth:`delay` and :meth:`wait_irq` (so a single
    task drives time; run the driver and the traffic from one coroutine).

    ``access_cycles`` is added to the clock by every register access (0: free).
    """

    def __init__(self, model: NicModel, access_cycles: int = 0):
        self.model = model
        self.memory = model.memory
        self.access_cycles = access_cycles
        self.reads = self.writes = 0

    async def read32(self, offset: int) -> int:
        self.reads += 1
        self.model.advance(self.access_cycles)
        return self.model.read_register(offset)

    async def write32(self, offset: int, value: int) -> None:
        self.writes += 1
        self.model.advance(self.access_cycles)
        self.model.write_register(offset, value)

    async def wait_irq(self, max_cycles: int) -> bool:
        if not self.model.irq:
            timer = self.model.cycles_to_timer()
            if timer is not None and timer <= max_cycles:
                self.model.advance(timer)
            else:
                self.model.advance(max_cycles)
        return self.model.irq

    async def delay(self, cycles: int) -> None:
        self.model.advance(cycles)

    def now(self) -> int:
        return self.model.cycle
