"""The host driver model: rings, buffers, doorbells, the interrupt handler (docs/host_interface.md).

:class:`NicDriver` does what a NIC driver does, over a :class:`host_driver.bus.Bus` (the Python NIC
model or the RTL under cocotb, see docs/host_driver.md):

- :meth:`NicDriver.start`: check ID/VERSION, allocate the four rings in host memory (the event
  ring zeroed), program bases and sizes, moderation, post RX buffers, enable, unmask;
- RX: a pool of DMA buffers, posted as :class:`RxDescriptor` entries and re-posted as soon as
  their ``RX`` event is handled (``rx_target`` buffers stay posted; lower it to starve the NIC on
  purpose);
- TX: :meth:`NicDriver.send` copies a frame into a DMA buffer, posts a :class:`TxDescriptor`
  (checksum-offload flags and offsets) and rings the doorbell; ``TX_DONE`` frees the buffer;
- commands: :meth:`NicDriver.command` posts a :class:`Command`; ``COMMAND_DONE`` is recorded by tag;
- the fast path (docs/fast_path.md): :meth:`NicDriver.handout1`, :meth:`~NicDriver.handout2`,
  :meth:`~NicDriver.rcvmdl` (the RcvMdlEntry list allocated and written here),
  :meth:`~NicDriver.winupdate`, :meth:`~NicDriver.flush`, :meth:`~NicDriver.close`; its events
  become :class:`Interlock`, :class:`FrameData`, :class:`RcvMdlDone` and :class:`Flush` records,
  handed to ``on_fast_path`` or queued in ``fast_path_events``; :mod:`host_driver.ccb` builds
  the Ccb records;
- :meth:`NicDriver.service`, the interrupt handler: clear ``INTR_STATUS``, take events while their
  phase is the expected one, handle each, give the slots back with ``EVENT_CONSUMER``.

:class:`StackPort` glues a :class:`host_driver.tcp.TcpStack` to a driver: received frames go to the
stack, the stack's frames go out through :meth:`NicDriver.send` with checksum offload
(:func:`offload_frame` turns a finished frame into a CHECKSUM_PARTIAL one).

Every ring entry is packed and unpacked with the Structs of :mod:`hw.layouts`; every register
offset comes from :mod:`hw.host.regmap`.
"""

import dataclasses
from collections import Counter, deque
from collections.abc import Callable

from amaranth.lib import data

from hw import params
from hw.host import regmap
from hw.layouts import (
    CCB_ALIGN,
    ETH_HEADER_BYTES,
    IPV4_CHECKSUM_OFFSET,
    IPV4_DST_OFFSET,
    IPV4_FLAGS_FRAGMENT_OFFSET,
    IPV4_MIN_HEADER_BYTES,
    IPV4_PROTOCOL_OFFSET,
    IPV4_SRC_OFFSET,
    IPV4_TOTAL_LENGTH_OFFSET,
    IPV6_DST_OFFSET,
    IPV6_HEADER_BYTES,
    IPV6_NEXT_HEADER_OFFSET,
    IPV6_PAYLOAD_LENGTH_OFFSET,
    IPV6_SRC_OFFSET,
    L4_CHECKSUM_OFFSET,
    RX_SUMMARY_BYTES,
    VLAN_TAG_BYTES,
    Command,
    CommandOpcode,
    ConnArg,
    EtherType,
    Event,
    EventCode,
    EventKind,
    FlushReason,
    HostCounters,
    RcvMdlEntry,
    RingId,
    RxCounters,
    RxDescriptor,
    RxSummary,
    TxDescriptor,
    pack,
    unpack,
)

from .bus import Bus
from .checksum import csum_ipv6_magic, csum_tcpudp_magic

__all__ = ["NicDriver", "DriverStats", "DriverError", "StackPort", "offload_frame",
           "Interlock", "FrameData", "RcvMdlDone", "Flush"]

_ENTRY = params.RING_ENTRY_BYTES
_HEADER = RX_SUMMARY_BYTES         # the RxSummary before each received frame
_EVENT_FIELDS = tuple(name for name, _ in data.Layout.cast(Event))
_RING_ALIGN = 4096      # a page, as a real driver allocates rings
_BUFFER_ALIGN = 64      # a cache line (the contract needs 8)
_L4_CHECKSUM_OFFSET = {proto.value: at for proto, at in L4_CHECKSUM_OFFSET.items()}
_IPV4_MF_AND_OFFSET = 0x3FFF     # more-fragments flag and fragment offset: a fragment if nonzero


#: How long :meth:`NicDriver.command` waits for the NIC to take commands from a full ring, and
#: how often it looks.
_COMMAND_RING_WAIT_CYCLES = 100_000
_COMMAND_RING_POLL_CYCLES = 32


def _reg(name: str) -> int:
    return regmap.BY_NAME[name].offset


def _ring_reg(ring: RingId, what: str) -> int:
    return regmap.ring_register(ring, what).offset


class DriverError(RuntimeError):
    """The NIC did not answer as the contract says (wrong ID, a timeout)."""


@dataclasses.dataclass
class DriverStats:
    """What the driver counted.

    Members
    -------
    rx_frames, rx_bytes : int
        Frames (and their bytes) delivered to ``on_rx``.
    rx_errors : Counter
        RX events with a code other than OK, by code name.
    tx_frames, tx_bytes : int
        Frames posted to the TX ring; ``tx_offload`` of them asked for checksum offload.
    tx_done : int
        TX_DONE events with OK; ``tx_errors`` counts the others by code name.
    events : Counter
        Events taken, by kind name.
    interrupts : int
        Calls of :meth:`NicDriver.service` that found ``INTR_STATUS`` set.
    errors : list of dict
        Every ERROR event's fields.
    """
    rx_frames: int = 0
    rx_bytes: int = 0
    rx_errors: Counter = dataclasses.field(default_factory=Counter)
    tx_frames: int = 0
    tx_bytes: int = 0
    tx_offload: int = 0
    tx_done: int = 0
    tx_errors: Counter = dataclasses.field(default_factory=Counter)
    events: Counter = dataclasses.field(default_factory=Counter)
    interrupts: int = 0
    errors: list = dataclasses.field(default_factory=list)


@dataclasses.dataclass(frozen=True)
class Interlock:
    """HANDOUT1 took effect: the connection is pending as ``conn_nbr`` (``tag``: HANDOUT1's)."""
    conn_nbr: int
    host_context: int
    tag: int


@dataclasses.dataclass(frozen=True)
class FrameData:
    """A fast-path segment shown whole (``frame``, its ``summary``) with sequence number ``seq``;
    ``code`` other than OK: the RX buffer write failed and ``frame`` is empty."""
    conn_nbr: int
    seq: int
    frame: bytes
    summary: object
    code: EventCode = EventCode.OK


@dataclasses.dataclass(frozen=True)
class RcvMdlDone:
    """The RCVMDL ``handle`` completed with ``placed`` bytes: full, or ended by a PSH."""
    conn_nbr: int
    handle: int
    placed: int
    pushed: bool


@dataclasses.dataclass(frozen=True)
class Flush:
    """The connection is the host's again: ``frames`` of it passed to the slow path before this
    record; the RCVMDL ``handle`` posted then (0: none) got ``placed`` bytes."""
    conn_nbr: int
    reason: FlushReason
    handle: int
    placed: int
    frames: int


class _Ring:
    """The driver's side of one ring: where it is, how big, the driver's index."""

    def __init__(self, ring: RingId, log2: int, addr: int):
        self.ring = ring
        self.log2 = log2
        self.size = 1 << log2
        self.addr = addr
        self.index = 0      # producer (host rings) or consumer (event ring)

    def entry(self, index: int) -> int:
        return self.addr + _ENTRY * index

    def next(self, index: int) -> int:
        return (index + 1) % self.size


class NicDriver:
    """The driver of one NIC behind ``bus``.

    Parameters
    ----------
    bus : Bus
        The NIC.
    on_rx : Callable[[bytes, RxSummary view], None] or None
        Called for every frame received whole, with the frame and its unpacked ``RxSummary``
        (checksum verdicts, classification, RSS hash, offsets: the frame needs no parsing to be
        steered).
        It must not call back into the driver (queue work instead, as :class:`StackPort` does).

    Members
    -------
    stats : DriverStats
    rx_target : int
        Buffers the driver keeps posted (at most the RX ring size - 1); lower it to starve the
        NIC, raise it again and call :meth:`refill`.
    command_done : dict
        ``tag -> fields`` of every COMMAND_DONE event.
    on_event : Callable[[dict], None] or None
        Called with every event's fields as it is taken, before it is handled (so an RX buffer
        still holds what the NIC wrote): a tap for tests and scoreboards.
    on_fast_path : Callable[[record], None] or None
        Called with every fast-path event as an :class:`Interlock`, :class:`FrameData`,
        :class:`RcvMdlDone` or :class:`Flush` record, in event order; when None the records go
        to ``fast_path_events``. Like ``on_rx`` it must not call back into the driver.
    fast_path_events : deque
        The fast-path records nobody took (``on_fast_path`` None), oldest first.
    """

    def __init__(self, bus: Bus, on_rx: Callable | None = None):
        self.bus = bus
        self.memory = bus.memory
        self.on_rx = on_rx
        self.stats = DriverStats()
        self.rx_target = 0
        self.command_done: dict[int, dict] = {}
        self.on_event: Callable[[dict], None] | None = None
        self.on_fast_path: Callable | None = None
        self.fast_path_events: deque = deque()
        self._rings: dict[RingId, _Ring] = {}
        self._phase = 1
        self._rx_free: list[int] = []
        self._rx_posted: dict[int, int] = {}      # RX ring index -> buffer address
        self._tx_posted: dict[int, int] = {}      # TX ring index -> buffer address
        self._commands_posted: dict[int, int] = {}   # command ring index -> tag
        # Command ring index -> tags of the HANDOUT1s posted there whose INTERLOCK or refusal has
        # not come yet, oldest first (INTERLOCK names the index, not the tag). Not "the last
        # command posted there": an INTERLOCK waits for its fence after the NIC took the
        # HANDOUT1, and the host may reuse the slot meanwhile.
        self._handout1_tags: dict[int, deque[int]] = {}
        self._mdl_lists: list[tuple[int, int, int]] = []   # (conn_nbr, command index, address)
        self._rx_buffer_size = 0
        self._next_tag = 0
        self.started = False

    # -- Set-up ----------------------------------------------------------------------------------

    async def start(self, *, command_log2: int = 4, event_log2: int = 9, rx_log2: int = 8,
                    tx_log2: int = 8, rx_buffer_size: int = 2048, rx_post: int | None = None,
                    intr_mod_events: int = 1, intr_mod_cycles: int = 0,
                    clear_counters: bool = True) -> None:
        """Bring the NIC up.

        Ring sizes are log2 entries; ``rx_buffer_size`` is the size of each RX buffer (the 32-byte
        summary included); ``rx_post`` buffers are posted (default: the ring's capacity, size - 1);
        ``intr_mod_events``/``intr_mod_cycles`` program interrupt moderation.
        """
        nic_id = await self.bus.read32(_reg("ID"))
        if nic_id != params.NIC_ID:
            raise DriverError(f"ID reads {nic_id:#010x}, expected {params.NIC_ID:#010x}")
        version = await self.bus.read32(_reg("VERSION"))
        if version >> 16 != params.NIC_VERSION >> 16:
            raise DriverError(f"host-interface version {version:#010x} is not "
                              f"{params.NIC_VERSION:#010x}'s major")
        await self.bus.write32(_reg("CONTROL"),
                               regmap.CONTROL_COUNTERS_CLEAR if clear_counters else 0)
        for ring, log2 in ((RingId.COMMAND, command_log2), (RingId.EVENT, event_log2),
                           (RingId.RX, rx_log2), (RingId.TX, tx_log2)):
            if not params.RING_LOG2_SIZE_MIN <= log2 <= params.RING_LOG2_SIZE_MAX:
                raise ValueError(f"{ring.name} ring log2 size {log2} out of range")
            size = _ENTRY << log2
            addr = self.memory.alloc(size, _RING_ALIGN)
            self.memory.write(addr, bytes(size))
            self._rings[ring] = _Ring(ring, log2, addr)
            await self.bus.write32(_ring_reg(ring, "BASE_LO"), addr & 0xFFFF_FFFF)
            await self.bus.write32(_ring_reg(ring, "BASE_HI"), addr >> 32)
            await self.bus.write32(_ring_reg(ring, "LOG2_SIZE"), log2)
        self._phase = 1
        await self.bus.write32(_reg("INTR_MOD_EVENTS"), intr_mod_events)
        await self.bus.write32(_reg("INTR_MOD_CYCLES"), intr_mod_cycles)
        self._rx_buffer_size = rx_buffer_size
        capacity = self._rings[RingId.RX].size - 1
        self._rx_free = [self.memory.alloc(rx_buffer_size, _BUFFER_ALIGN) for _ in range(capacity)]
        self.rx_target = capacity if rx_post is None else min(rx_post, capacity)
        await self.refill()
        await self.bus.write32(_reg("CONTROL"), regmap.CONTROL_ENABLE)
        await self.bus.write32(_reg("INTR_STATUS"), regmap.INTR_EVENTS | regmap.INTR_FATAL)
        await self.bus.write32(_reg("INTR_MASK"), regmap.INTR_EVENTS | regmap.INTR_FATAL)
        self.started = True

    def ring_span(self, ring: RingId | str) -> tuple[int, int]:
        """``(start, end)`` bus addresses of a ring's entries (for bus traces and benchmarks)."""
        ring = self._rings[RingId[ring] if isinstance(ring, str) else ring]
        return ring.addr, ring.addr + _ENTRY * ring.size

    async def stop(self) -> None:
        """Mask the interrupt, disable the NIC, turn the rings off and free every allocation."""
        await self.bus.write32(_reg("INTR_MASK"), 0)
        await self.bus.write32(_reg("CONTROL"), 0)
        for ring in self._rings.values():
            await self.bus.write32(_ring_reg(ring.ring, "LOG2_SIZE"), 0)
            self.memory.free(ring.addr)
        for addr in [*self._rx_free, *self._rx_posted.values(), *self._tx_posted.values(),
                     *(addr for _, _, addr in self._mdl_lists)]:
            self.memory.free(addr)
        self._mdl_lists.clear()
        self._rings.clear()
        self._rx_free.clear()
        self._rx_posted.clear()
        self._tx_posted.clear()
        self.started = False

    # -- RX buffers ------------------------------------------------------------------------------

    @property
    def rx_posted(self) -> int:
        """Buffers posted and not yet returned by an RX event."""
        return len(self._rx_posted)

    async def post_rx_buffers(self, count: int) -> int:
        """Post up to ``count`` free buffers (one doorbell); returns how many were posted."""
        ring = self._rings[RingId.RX]
        count = min(count, len(self._rx_free), ring.size - 1 - len(self._rx_posted))
        for _ in range(count):
            addr = self._rx_free.pop()
            desc = pack(RxDescriptor, {"addr": addr, "size": self._rx_buffer_size})
            self.memory.write(ring.entry(ring.index), desc.to_bytes(_ENTRY, "little"))
            self._rx_posted[ring.index] = addr
            ring.index = ring.next(ring.index)
        if count:
            await self.bus.write32(_ring_reg(RingId.RX, "PRODUCER"), ring.index)
        return count

    async def refill(self) -> int:
        """Post buffers until ``rx_target`` are posted."""
        return await self.post_rx_buffers(self.rx_target - len(self._rx_posted))

    # -- TX --------------------------------------------------------------------------------------

    @property
    def tx_pending(self) -> int:
        """Frames posted to the TX ring whose TX_DONE has not come back yet."""
        return len(self._tx_posted)

    @property
    def tx_space(self) -> int:
        """Free TX ring entries."""
        return self._rings[RingId.TX].size - 1 - len(self._tx_posted)

    async def send(self, frame: bytes, *, ip_csum: bool = False, l4_csum: bool = False,
                   ip_offset: int = 0, csum_start: int = 0, csum_offset: int = 0,
                   max_cycles: int = 1_000_000, doorbell: bool = True) -> int:
        """Post ``frame`` for transmission and ring the doorbell; returns its TX ring index.

        With ``doorbell=False`` the descriptor is written but the NIC is not told (as Linux's
        ``xmit_more``): several frames go out behind one :meth:`tx_doorbell`.

        With ``ip_csum`` the NIC fills the IPv4 header checksum at ``ip_offset`` (leave it 0);
        with ``l4_csum`` it completes the checksum at ``csum_start + csum_offset`` over
        ``[csum_start, end)``, seeded with the pseudo-header sum the frame holds there. When the TX
        ring is full the driver services events (polling) until an entry frees, at most
        ``max_cycles`` (then `DriverError`).
        """
        ring = self._rings[RingId.TX]
        waited = 0
        while self.tx_space == 0:
            if waited >= max_cycles:
                raise DriverError(f"TX ring still full after {max_cycles} cycles")
            await self.bus.delay(16)
            waited += 16
            await self.service()
        addr = self.memory.alloc(max(1, len(frame)), _BUFFER_ALIGN)
        self.memory.write(addr, bytes(frame))
        desc = pack(TxDescriptor, {
            "addr": addr, "length": len(frame), "ip_csum": int(ip_csum),
            "l4_csum": int(l4_csum), "ip_offset": ip_offset, "csum_start": csum_start,
            "csum_offset": csum_offset,
        })
        index = ring.index
        self.memory.write(ring.entry(index), desc.to_bytes(_ENTRY, "little"))
        self._tx_posted[index] = addr
        ring.index = ring.next(index)
        self.stats.tx_frames += 1
        self.stats.tx_bytes += len(frame)
        self.stats.tx_offload += bool(ip_csum or l4_csum)
        if doorbell:
            await self.tx_doorbell()
        return index

    async def tx_doorbell(self) -> None:
        """Tell the NIC about every TX descriptor written so far."""
        await self.bus.write32(_ring_reg(RingId.TX, "PRODUCER"), self._rings[RingId.TX].index)

    # -- Commands --------------------------------------------------------------------------------

    async def command(self, opcode: CommandOpcode | int, ring: RingId | int = 0,
                      tag: int | None = None, arg: int = 0, addr: int = 0) -> int:
        """Post one command and ring the doorbell; returns its tag (``command_done[tag]`` gets
        the COMMAND_DONE fields). Unknown opcodes and rings are passed through unchecked."""
        if tag is None:
            tag = self._next_tag
            self._next_tag = (self._next_tag + 1) & 0xFFFF
        cmd_ring = self._rings[RingId.COMMAND]
        # A full ring (a burst of handouts: the NIC takes a HANDOUT2 in a Ccb read): wait for the
        # NIC to take some, as a kernel driver would wait for ring space.
        waited = 0
        while len(self._commands_posted) >= cmd_ring.size - 1:
            await self._forget_taken_commands()
            if len(self._commands_posted) < cmd_ring.size - 1:
                break
            if waited >= _COMMAND_RING_WAIT_CYCLES:
                raise DriverError("command ring full")
            await self.bus.delay(_COMMAND_RING_POLL_CYCLES)
            waited += _COMMAND_RING_POLL_CYCLES
        entry = pack(Command, {"opcode": int(getattr(opcode, "value", opcode)),
                               "ring": int(getattr(ring, "value", ring)), "tag": tag,
                               "arg": arg, "addr": addr})
        self.memory.write(cmd_ring.entry(cmd_ring.index), entry.to_bytes(_ENTRY, "little"))
        self._commands_posted[cmd_ring.index] = tag
        if int(getattr(opcode, "value", opcode)) == CommandOpcode.HANDOUT1.value:
            self._handout1_tags.setdefault(cmd_ring.index, deque()).append(tag)
        cmd_ring.index = cmd_ring.next(cmd_ring.index)
        await self.bus.write32(_ring_reg(RingId.COMMAND, "PRODUCER"), cmd_ring.index)
        return tag

    async def _forget_taken_commands(self) -> None:
        """Free the slots of the commands the NIC has taken (COMMAND_CONSUMER): fast-path
        commands that succeed answer with no event at their index."""
        ring = self._rings[RingId.COMMAND]
        consumer = await self.bus.read32(_ring_reg(RingId.COMMAND, "CONSUMER"))
        outstanding = (ring.index - consumer) % ring.size
        for index in list(self._commands_posted):
            if (index - consumer) % ring.size >= outstanding:
                del self._commands_posted[index]

    # -- The fast path (docs/fast_path.md "Commands") ---------------------------------------------

    async def handout1(self, ccb_addr: int, host_context: int) -> int:
        """Hand out the connection of the Ccb at ``ccb_addr`` (its tuple is read); returns the
        command's tag: :meth:`wait_command` gives the INTERLOCK's fields (``detail``: the
        conn_nbr) or a refusing COMMAND_DONE's."""
        return await self.command(CommandOpcode.HANDOUT1, arg=host_context, addr=ccb_addr)

    async def handout2(self, conn_nbr: int, ccb_addr: int) -> int:
        """Start the fast path of ``conn_nbr`` from the whole Ccb at ``ccb_addr``; the tag of its
        COMMAND_DONE."""
        return await self.command(CommandOpcode.HANDOUT2, arg=_conn_arg(conn_nbr), addr=ccb_addr)

    async def rcvmdl(self, conn_nbr: int, handle: int, entries: list[tuple[int, int]],
                     push: bool = False) -> int:
        """Post the host buffers ``entries`` (``(address, length)`` each) for the connection's
        payload, under ``handle`` (the command's tag); ``push``: complete on a PSH. The entry
        list is allocated here and freed when the RCVMDL is answered."""
        size = max(1, len(entries)) * _ENTRY
        addr = self.memory.alloc(size, CCB_ALIGN)
        self.memory.write(addr, b"".join(
            pack(RcvMdlEntry, {"addr": a, "length": n}).to_bytes(_ENTRY, "little")
            for a, n in entries))
        # Known before the doorbell: its answer may be handled before command() returns.
        self._mdl_lists.append((conn_nbr, self._rings[RingId.COMMAND].index, addr))
        return await self.command(CommandOpcode.RCVMDL, tag=handle, addr=addr,
                                  arg=_conn_arg(conn_nbr, entries=len(entries), push=push))

    async def winupdate(self, conn_nbr: int, consumed: int) -> int:
        """Give back ``consumed`` bytes of what FRAME_DATA showed; the command's tag."""
        return await self.command(CommandOpcode.WINUPDATE, arg=_conn_arg(conn_nbr),
                                  addr=consumed)

    async def flush(self, conn_nbr: int) -> int:
        """Take the connection back (answered by its :class:`Flush`); the command's tag."""
        return await self.command(CommandOpcode.FLUSH, arg=_conn_arg(conn_nbr))

    async def close(self, conn_nbr: int) -> int:
        """Take the connection back to close it in software; the command's tag."""
        return await self.command(CommandOpcode.CLOSE, arg=_conn_arg(conn_nbr))

    async def wait_command(self, tag: int, max_cycles: int = 100_000) -> dict:
        """Service events until the COMMAND_DONE of ``tag`` arrives; its fields."""
        waited = 0
        while tag not in self.command_done:
            if waited >= max_cycles:
                raise DriverError(f"no COMMAND_DONE for tag {tag} after {max_cycles} cycles")
            start = self.bus.now()
            await self.bus.wait_irq(256)
            await self.service()
            waited += max(1, self.bus.now() - start)
        return self.command_done[tag]

    # -- Events ----------------------------------------------------------------------------------

    async def service(self) -> int:
        """The interrupt handler: clear INTR_STATUS, handle every new event, give the slots back,
        re-post RX buffers. Returns the number of events handled."""
        status = await self.bus.read32(_reg("INTR_STATUS"))
        if status:
            self.stats.interrupts += 1
            await self.bus.write32(_reg("INTR_STATUS"), status)
        if status & regmap.INTR_FATAL:
            self.stats.errors.append({"fatal": True, "status": status})
        ring = self._rings[RingId.EVENT]
        handled = 0
        while True:
            raw = self.memory.read(ring.entry(ring.index), _ENTRY)
            event = unpack(Event, int.from_bytes(raw, "little"))
            if event.phase != self._phase:
                break
            fields = {name: int(getattr(event, name)) for name in _EVENT_FIELDS}
            if self.on_event is not None:
                self.on_event(fields)
            self._handle(event, fields)
            ring.index = ring.next(ring.index)
            if ring.index == 0:
                self._phase ^= 1
            handled += 1
        if handled:
            await self.bus.write32(_ring_reg(RingId.EVENT, "CONSUMER"), ring.index)
        await self.refill()
        return handled

    async def poll(self, max_cycles: int) -> int:
        """Wait for the interrupt (at most ``max_cycles``), then service; events handled."""
        await self.bus.wait_irq(max_cycles)
        return await self.service()

    def _handle(self, event, fields: dict) -> None:
        kind = EventKind(event.kind)
        self.stats.events[kind.name] += 1
        # FLUSH and RCVMDL_DONE carry their own codes (a FlushReason, "ended by PSH").
        code = EventCode(event.code) if kind not in (EventKind.FLUSH,
                                                     EventKind.RCVMDL_DONE) else None
        if kind is EventKind.RX:
            addr = self._rx_posted.pop(event.index)
            if code is EventCode.OK:
                raw = self.memory.read(addr, _HEADER + event.length)
                summary = unpack(RxSummary, int.from_bytes(raw[:_HEADER], "little"))
                frame = raw[_HEADER:]
                self.stats.rx_frames += 1
                self.stats.rx_bytes += len(frame)
                if self.on_rx is not None:
                    self.on_rx(frame, summary)
            else:
                self.stats.rx_errors[code.name] += 1
            self._rx_free.append(addr)
        elif kind is EventKind.TX_DONE:
            self.memory.free(self._tx_posted.pop(event.index))
            if code is EventCode.OK:
                self.stats.tx_done += 1
            else:
                self.stats.tx_errors[code.name] += 1
        elif kind is EventKind.COMMAND_DONE:
            self._answered(event.index, event.tag)
            if event.detail == CommandOpcode.HANDOUT1.value:
                self._handout1_tag(event.index)
            if code is not EventCode.OK:
                self._free_mdl_list(lambda conn, index: index == event.index)
            self.command_done[event.tag] = fields
        elif kind is EventKind.INTERLOCK:
            tag = self._handout1_tag(event.index)
            self._answered(event.index, tag)
            self.command_done[tag] = fields
            self._fast_path(Interlock(event.detail, event.tag, tag))
        elif kind is EventKind.FRAME_DATA:
            self._fast_path(self._frame_data(event, code))
        elif kind is EventKind.RCVMDL_DONE:
            self._free_mdl_list(lambda conn, index: conn == event.detail)
            self._fast_path(RcvMdlDone(event.detail, event.index, event.tag,
                                       event.code != EventCode.OK.value))
        elif kind is EventKind.FLUSH:
            self._free_mdl_list(lambda conn, index: conn == event.detail, every=True)
            self._fast_path(Flush(event.detail, FlushReason(event.code), event.index, event.tag,
                                  event.length))
        else:
            self.stats.errors.append(fields)

    def _answered(self, index: int, tag: int | None) -> None:
        """The command ``tag`` at ring ``index`` was answered: its slot is free, unless the slot
        already holds a later command (an answer may come after the NIC took the command and the
        host reused the slot: an INTERLOCK waits for its fence)."""
        if self._commands_posted.get(index) == tag:
            del self._commands_posted[index]

    def _handout1_tag(self, index: int) -> int | None:
        """The tag of the oldest HANDOUT1 at command ring ``index`` not answered yet."""
        tags = self._handout1_tags.get(index)
        if not tags:
            return None
        tag = tags.popleft()
        if not tags:
            del self._handout1_tags[index]
        return tag

    def _frame_data(self, event, code: EventCode) -> FrameData:
        """The FRAME_DATA's frame, read from its RX buffer (given back to the pool)."""
        addr = self._rx_posted.pop(event.index)
        self._rx_free.append(addr)
        if code is not EventCode.OK:
            self.stats.rx_errors[code.name] += 1
            return FrameData(event.detail, event.tag, b"", None, code)
        raw = self.memory.read(addr, _HEADER + event.length)
        summary = unpack(RxSummary, int.from_bytes(raw[:_HEADER], "little"))
        return FrameData(event.detail, event.tag, raw[_HEADER:], summary)

    def _fast_path(self, record) -> None:
        if self.on_fast_path is not None:
            self.on_fast_path(record)
        else:
            self.fast_path_events.append(record)

    def _free_mdl_list(self, match, every: bool = False) -> None:
        """Free the first RCVMDL list that ``match(conn_nbr, command index)`` names (``every``:
        all of them)."""
        for entry in list(self._mdl_lists):
            if match(entry[0], entry[1]):
                self._mdl_lists.remove(entry)
                self.memory.free(entry[2])
                if not every:
                    return

    # -- Counters --------------------------------------------------------------------------------

    async def counters(self) -> dict:
        """Every NIC counter, read through the register map: ``rx_<field>`` for RxCounters,
        the field name for HostCounters."""
        names = [f"rx_{name}" for name, _ in data.Layout.cast(RxCounters)]
        names += [name for name, _ in data.Layout.cast(HostCounters)]
        return {name: await self.bus.read32(regmap.counter_register(name).offset)
                for name in names}

    async def fast_path_counters(self) -> dict:
        """The FastPathCounters, read through the register map, by
        :data:`hw.host.regmap.FAST_PATH_COUNTER_NAMES` (``fp_fast_frames``, ...,
        ``fp_flush_out_of_order``, ...)."""
        return {name: await self.bus.read32(regmap.counter_register(name).offset)
                for name in regmap.FAST_PATH_COUNTER_NAMES}


def _conn_arg(conn_nbr: int, entries: int = 0, push: bool = False) -> int:
    return pack(ConnArg, {"conn_nbr": conn_nbr, "entries": entries, "push": int(push)})


def offload_frame(frame: bytes) -> tuple[bytes, dict]:
    """Turn a finished Ethernet TCP or UDP frame, over IPv4 or IPv6, into a CHECKSUM_PARTIAL one.

    Returns the frame with its L4 checksum field holding the pseudo-header sum and, for IPv4, its
    header checksum 0 (as Linux leaves them for the NIC), and the :meth:`NicDriver.send` keyword
    arguments that ask the NIC to fill them. Other frames come back unchanged with no offload:
    not TCP or UDP right after the IP header, an IPv4 fragment, a datagram cut short.
    """
    offset = ETH_HEADER_BYTES           # the byte after the EtherType (the innermost so far)
    ethertype = _be16(frame, offset - 2)
    while (ethertype in (EtherType.VLAN.value, EtherType.QINQ.value)
           and len(frame) >= offset + VLAN_TAG_BYTES):
        offset += VLAN_TAG_BYTES
        ethertype = _be16(frame, offset - 2)
    if ethertype == EtherType.IPV4.value and len(frame) >= offset + IPV4_MIN_HEADER_BYTES:
        start = offset + 4 * (frame[offset] & 0xF)              # IHL counts 32-bit words
        end = offset + _be16(frame, offset + IPV4_TOTAL_LENGTH_OFFSET)
        proto = frame[offset + IPV4_PROTOCOL_OFFSET]
        src = frame[offset + IPV4_SRC_OFFSET:][:4]
        dst = frame[offset + IPV4_DST_OFFSET:][:4]
        magic = csum_tcpudp_magic
        ip_offload = {"ip_csum": True, "ip_offset": offset}
        whole = (start >= offset + IPV4_MIN_HEADER_BYTES
                 and not _be16(frame, offset + IPV4_FLAGS_FRAGMENT_OFFSET) & _IPV4_MF_AND_OFFSET)
    elif ethertype == EtherType.IPV6.value and len(frame) >= offset + IPV6_HEADER_BYTES:
        start = offset + IPV6_HEADER_BYTES
        end = start + _be16(frame, offset + IPV6_PAYLOAD_LENGTH_OFFSET)
        proto = frame[offset + IPV6_NEXT_HEADER_OFFSET]         # an extension header: no offload
        src = frame[offset + IPV6_SRC_OFFSET:][:16]
        dst = frame[offset + IPV6_DST_OFFSET:][:16]
        magic = csum_ipv6_magic
        ip_offload = {}
        whole = True
    else:
        return bytes(frame), {}
    field = _L4_CHECKSUM_OFFSET.get(proto)
    if not whole or field is None or not start + field + 2 <= end <= len(frame):
        return bytes(frame), {}
    out = bytearray(frame)
    if ip_offload:
        ip_csum = offset + IPV4_CHECKSUM_OFFSET
        out[ip_csum:ip_csum + 2] = b"\0\0"
    seed = ~magic(bytes(src), bytes(dst), end - start, proto) & 0xFFFF
    out[start + field:start + field + 2] = seed.to_bytes(2, "big")
    return bytes(out), {**ip_offload, "l4_csum": True, "csum_start": start, "csum_offset": field}


def _be16(frame: bytes, offset: int) -> int:
    return int.from_bytes(frame[offset:offset + 2], "big")


class StackPort:
    """Glue between a :class:`host_driver.tcp.TcpStack` and a :class:`NicDriver`.

    Give :meth:`send_frame` to the stack as its ``send_frame``, then :meth:`attach` the stack:
    frames the driver receives go to ``stack.receive_frame``; frames the stack sends wait in a
    queue (the stack must not be re-entered) until :meth:`flush` posts them, with checksum
    offload when ``offload`` (the default) and the frame is TCP/UDP over IPv4 or IPv6.
    """

    def __init__(self, driver: NicDriver, offload: bool = True):
        self.driver = driver
        self.offload = offload
        self.stack = None
        self._queue: deque[bytes] = deque()

    def send_frame(self, frame: bytes) -> None:
        self._queue.append(bytes(frame))

    def attach(self, stack) -> None:
        self.stack = stack
        self.driver.on_rx = lambda frame, summary: stack.receive_frame(frame)

    @property
    def pending(self) -> int:
        return len(self._queue)

    async def flush(self) -> int:
        """Send every queued frame; returns how many."""
        sent = 0
        while self._queue:
            frame = self._queue.popleft()
            if self.offload:
                frame, options = offload_frame(frame)
                await self.driver.send(frame, **options)
            else:
                await self.driver.send(frame)
            sent += 1
        return sent
