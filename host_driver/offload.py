"""The host stack's side of the fast path (SPEC §8 "Host side"; docs/host_driver.md "Offload").

:class:`HostOffload` sits between a :class:`~host_driver.driver.NicDriver` and a
:class:`~host_driver.tcp.TcpStack` (it replaces :meth:`StackPort.attach`'s glue). It

- decides when a connection goes to the NIC (:class:`OffloadPolicy`) and hands it out in two
  phases: HANDOUT1 with the tuple, then, on INTERLOCK, after every slow-path frame the host
  already received for it, HANDOUT2 with the whole Ccb built from the TCB (or a FLUSH when a frame
  processed in between made the connection ineligible);
- while the connection is offloaded, holds every slow-path frame of its tuple (they are the
  frames a flush passes back, and the FLUSH follows them), posts the application's receive
  buffers as RCVMDLs, takes FRAME_DATA segments into the socket's receive queue and gives the
  window back with WINUPDATE as the application consumes them;
- on FLUSH reads the Ccb back, restores the TCB (:meth:`Connection.offload_restore`), completes
  the application's posted receive with the bytes the NIC placed, then feeds the held frames to
  the stack in order: nothing lost, nothing duplicated;
- flushes a connection the application sends on (or CLOSEs it when the application closes), and
  hands it out again once it is eligible;
- counts (:class:`OffloadStats`, :meth:`HostOffload.statistics`).

The driver's callbacks only queue (they must not call back into the driver); :meth:`pump`, called
after :meth:`NicDriver.service`, does the work in event order. The application receives with
:meth:`HostOffload.recv_into` (buffers in host memory, :class:`RecvRequest`), on an offloaded
connection or not; :meth:`Connection.recv` keeps working (FRAME_DATA bytes and slow-path bytes
land in the same receive queue).
"""

import dataclasses
import enum
import ipaddress
from collections import Counter, deque

from hw.layouts import CCB_BYTES, CommandOpcode, ConnState, EventCode, EventKind, FlushReason

from .ccb import CCB_ALIGN, make_ccb, read_ccb, write_ccb
from .driver import Flush, FrameData, Interlock, NicDriver, RcvMdlDone
from .tcp import Connection, State, TcpStack, seq_diff

__all__ = ["OffloadPolicy", "OffloadStats", "RecvRequest", "HostOffload", "Phase", "per_second"]

#: RCVMDL entries at most (hw/params.RCVMDL_MAX_ENTRIES).
MAX_ENTRIES = 8
_TIMESTAMP_OPTION_BYTES = 12
#: RCVMDL handles come from this range (the driver's own tags count up from 0); never 0.
_HANDLE_BASE = 0x8000
#: Flushes the NIC starts (the others are the host's own).
_HOST_REASONS = (FlushReason.HOST, FlushReason.CLOSE)


@dataclasses.dataclass
class OffloadPolicy:
    """When the host hands a connection out (docs/host_driver.md "Offload policy").

    A connection is handed out when ``enabled``, its local port is in ``ports`` (None: any), it
    is :attr:`Connection.quiescent` (established, nothing unacknowledged or queued to send, no
    FIN, no out-of-order data), its receive queue fits its window, and it is not on probation.
    More than ``max_flushes`` NIC-initiated flushes within ``flush_window`` seconds put it on
    probation (the slow path) for ``probation`` seconds; a refused HANDOUT1 (table full...) waits
    ``retry_delay`` seconds. Times are the stack's clock.
    """
    enabled: bool = True
    ports: frozenset | None = None
    max_flushes: int = 4
    flush_window: float = 0.01
    probation: float = 0.05
    retry_delay: float = 0.001


@dataclasses.dataclass
class OffloadStats:
    """What the host side of the offload counted (seed 003's GET_TCP_STATISTICS list).

    Members
    -------
    rx_fast_bytes : int
        Bytes the NIC placed into RCVMDLs (from RCVMDL_DONE and FLUSH events).
    rx_fast_segments : int
        Segments the NIC placed (the Ccbs' ``fast_segments`` written back on flush).
    rx_frame_data_bytes, rx_frame_data_segments : int
        Segments the NIC showed with FRAME_DATA (from the events).
    rx_slow_bytes, rx_slow_segments : int
        In-order bytes the stack took from slow-path frames of these connections; data segments
        it was given.
    tx_slow_bytes, tx_slow_segments : int
        What the stack sent (the fast path sends no data).
    handout_attempts, handouts, handouts_abandoned : int
        HANDOUT1s; HANDOUT2s the NIC took; handouts given up at INTERLOCK (the connection
        changed: a FLUSH instead of HANDOUT2).
    refused : Counter
        Refused commands, ``"HANDOUT1/TABLE_FULL"`` ...
    flushes : Counter
        FLUSH events by :class:`FlushReason` name.
    host_flushes : Counter
        FLUSH/CLOSE commands the host issued, by why (``send``, ``close``, ``changed``,
        ``application``, ``fragment``...).
    probations : int
        Times a connection was kept on the slow path for flushing too often.
    rcvmdls, rcvmdl_done, rcvmdl_short : int
        RCVMDLs posted, completed by RCVMDL_DONE, completed short by a flush.
    frame_data_before_rcvmdl : int
        FRAME_DATA segments the NIC showed after the host posted an RCVMDL but before the NIC
        took it (the host moved the placed bytes behind them).
    winupdates, winupdate_bytes : int
    nic_acks : int
        ACKs the NIC sent (the Ccbs' ``acks``).
    """
    rx_fast_bytes: int = 0
    rx_fast_segments: int = 0
    rx_frame_data_bytes: int = 0
    rx_frame_data_segments: int = 0
    rx_slow_bytes: int = 0
    rx_slow_segments: int = 0
    tx_slow_bytes: int = 0
    tx_slow_segments: int = 0
    handout_attempts: int = 0
    handouts: int = 0
    handouts_abandoned: int = 0
    refused: Counter = dataclasses.field(default_factory=Counter)
    flushes: Counter = dataclasses.field(default_factory=Counter)
    host_flushes: Counter = dataclasses.field(default_factory=Counter)
    probations: int = 0
    rcvmdls: int = 0
    rcvmdl_done: int = 0
    rcvmdl_short: int = 0
    frame_data_before_rcvmdl: int = 0
    winupdates: int = 0
    winupdate_bytes: int = 0
    nic_acks: int = 0


class Phase(enum.Enum):
    """Where a connection is, as the host sees it."""
    SOFT = "soft"               # the stack's (slow path)
    HANDOUT1 = "handout1"       # HANDOUT1 posted, waiting for INTERLOCK
    OFFLOADED = "offloaded"     # HANDOUT2 posted: the NIC's
    FLUSHING = "flushing"       # a FLUSH or CLOSE posted, waiting for the FLUSH event


class RecvRequest:
    """One receive the application posted (:meth:`HostOffload.recv_into`): host buffers
    ``entries`` (``(address, length)``), filled in order.

    It completes (``done``) when full; with ``push`` when a PSH ends the data (the NIC's
    RCVMDL_DONE code, or a slow-path fill that emptied the receive queue); short when a flush took
    the connection back while its RCVMDL was posted and partly filled (``reason`` ``"flush"``);
    at the end of the stream (``"eof"``) or when the connection closed (``"closed"``).

    Members
    -------
    filled : int
        Bytes written so far (from the first entry on).
    residual : int
        ``length - filled``: what a short completion left empty.
    reason : str or None
        ``"full"``, ``"push"``, ``"flush"``, ``"eof"``, ``"closed"``.
    placed : int
        Of ``filled``, the bytes the NIC placed (the rest the host copied).
    """

    def __init__(self, conn: Connection, entries, push: bool):
        self.conn = conn
        self.entries = [(int(a), int(n)) for a, n in entries]
        if not 1 <= len(self.entries) <= MAX_ENTRIES or any(n <= 0 for _, n in self.entries):
            raise ValueError(f"need 1..{MAX_ENTRIES} entries of at least one byte")
        self.push = push
        self.filled = 0
        self.placed = 0
        self.done = False
        self.reason: str | None = None

    @property
    def length(self) -> int:
        return sum(n for _, n in self.entries)

    @property
    def residual(self) -> int:
        return self.length - self.filled

    def remaining_entries(self) -> list[tuple[int, int]]:
        """The entries from ``filled`` on (the first one cut)."""
        out, skip = [], self.filled
        for addr, n in self.entries:
            if skip >= n:
                skip -= n
                continue
            out.append((addr + skip, n - skip))
            skip = 0
        return out

    def write(self, memory, data: bytes) -> None:
        """Copy ``data`` at ``filled`` (the host's copy)."""
        for addr, n in self.remaining_entries():
            if not data:
                break
            chunk = data[:n]
            memory.write(addr, chunk)
            data = data[len(chunk):]
            self.filled += len(chunk)
        assert not data, "more bytes than the request holds"

    def data(self, memory) -> bytes:
        """The ``filled`` bytes."""
        out, left = bytearray(), self.filled
        for addr, n in self.entries:
            take = min(n, left)
            out += memory.read(addr, take) if take else b""
            left -= take
        return bytes(out)

    def _complete(self, reason: str) -> None:
        self.done, self.reason = True, reason

    def __repr__(self):
        return (f"<RecvRequest {self.filled}/{self.length} "
                f"{self.reason if self.done else 'pending'}>")


class _Record:
    """The host's state of one connection's offload."""

    def __init__(self, conn: Connection, context: int):
        self.conn = conn
        self.context = context
        self.phase = Phase.SOFT
        self.conn_nbr: int | None = None
        self.ccb_addr: int | None = None
        self.handed_out = False         # HANDOUT2 posted since the last FLUSH
        self.tag: int | None = None     # HANDOUT1's
        self.handout2_tag: int | None = None
        self.flush_wanted: str | None = None
        self.mdl_base = 0               # the request's bytes before its RCVMDL
        # FRAME_DATA bytes the NIC showed before it took the RCVMDL posted (they precede what
        # it places there): see _settle.
        self.mdl_shift = bytearray()
        self.ip_id = 0                  # the Ccb's at HANDOUT2
        self.held: deque[bytes] = deque()
        self.requests: deque[RecvRequest] = deque()
        self.mdl_handle: int | None = None
        self.nic_unconsumed = 0         # the NIC's rcv_unconsumed, as the host knows it
        self.flush_times: deque[float] = deque()
        self.not_before = 0.0
        self.stats = OffloadStats()


def _tcp_of(frame: bytes):
    """``(local_port, remote_ip, remote_port, payload_len)`` of an Ethernet TCP frame over IPv4
    or IPv6; ``("fragment", remote_ip)`` for an IPv4 fragment; None otherwise."""
    offset = 14
    ethertype = int.from_bytes(frame[12:14], "big")
    while ethertype in (0x8100, 0x88A8) and len(frame) >= offset + 4:
        ethertype = int.from_bytes(frame[offset + 2:offset + 4], "big")
        offset += 4
    if ethertype == 0x0800 and len(frame) >= offset + 20:
        ip = frame[offset:]
        header, total = (ip[0] & 0xF) * 4, int.from_bytes(ip[2:4], "big")
        remote = str(ipaddress.IPv4Address(ip[12:16]))
        if int.from_bytes(ip[6:8], "big") & 0x3FFF:
            return ("fragment", remote)
        if ip[9] != 6:
            return None
        body = ip[header:total]
    elif ethertype == 0x86DD and len(frame) >= offset + 40:
        ip = frame[offset:]
        if ip[6] != 6:
            return None
        remote = str(ipaddress.IPv6Address(ip[8:24]))
        body = ip[40:40 + int.from_bytes(ip[4:6], "big")]
    else:
        return None
    if len(body) < 20:
        return None
    data_offset = (body[12] >> 4) * 4
    return (int.from_bytes(body[2:4], "big"), remote, int.from_bytes(body[0:2], "big"),
            max(0, len(body) - data_offset))


def _payload_of(frame: bytes) -> bytes:
    """The TCP payload of a FRAME_DATA frame (checked by the NIC: a good TCP segment)."""
    offset = 14
    ethertype = int.from_bytes(frame[12:14], "big")
    while ethertype in (0x8100, 0x88A8):
        ethertype = int.from_bytes(frame[offset + 2:offset + 4], "big")
        offset += 4
    ip = frame[offset:]
    if ethertype == 0x0800:
        body = ip[(ip[0] & 0xF) * 4:int.from_bytes(ip[2:4], "big")]
    else:
        body = ip[40:40 + int.from_bytes(ip[4:6], "big")]
    return bytes(body[(body[12] >> 4) * 4:])


def per_second(before: dict, after: dict, seconds: float) -> dict:
    """Rates (seed 003's "per second") from two :meth:`HostOffload.statistics` snapshots taken
    ``seconds`` apart: every number that counts, as a difference over the time (levels such as
    ``current_offloaded`` and ``fp_connections`` are left out; the NIC's 32-bit counters wrap)."""
    levels = {"current_offloaded", "current_slow", "fp_connections", "fp_queued"}
    out = {}
    for name, value in after.items():
        if name in levels or not isinstance(value, int) or name not in before:
            continue
        delta = value - before[name]
        if name.startswith("fp_"):
            delta &= 0xFFFF_FFFF
        out[name] = delta / seconds
    return out


def _mac(text: str) -> int:
    return int(text.replace(":", ""), 16)


class HostOffload:
    """The offload of one :class:`TcpStack`'s connections to the NIC behind ``driver``.

    Parameters
    ----------
    driver : NicDriver
    stack : TcpStack
        Its frames must reach the driver (a :class:`StackPort`'s ``send_frame``); the driver's
        received frames go through this object (do not :meth:`StackPort.attach` the stack).
    policy : OffloadPolicy
        ``OffloadPolicy(enabled=False)``: every connection stays on the slow path (receive
        requests still work, filled by the host).

    Members
    -------
    stats : OffloadStats
        For every connection, since the start.
    """

    def __init__(self, driver: NicDriver, stack: TcpStack, policy: OffloadPolicy | None = None):
        self.driver = driver
        self.stack = stack
        self.memory = driver.memory
        self.policy = policy or OffloadPolicy()
        self.stats = OffloadStats()
        self._inbox: deque = deque()
        self._records: dict[Connection, _Record] = {}
        self._by_context: dict[int, _Record] = {}
        self._by_nbr: dict[int, _Record] = {}
        self._next_context = 1
        self._next_handle = 0
        self._chained_on_event = driver.on_event
        driver.on_rx = lambda frame, summary: self._inbox.append(bytes(frame))
        driver.on_fast_path = self._inbox.append
        driver.on_event = self._on_event

    # -- The application's side ------------------------------------------------------------------

    def recv_into(self, conn: Connection, entries, push: bool = False) -> RecvRequest:
        """Post a receive into host buffers ``entries`` (``(address, length)``, 1..8 of them)
        for ``conn``; requests are filled in the order they were posted. Offloaded, the NIC
        places into them (RCVMDL); else the host copies into them."""
        request = RecvRequest(conn, entries, push)
        self._record(conn).requests.append(request)
        return request

    def alloc_buffers(self, sizes, align: int = 1) -> list[tuple[int, int]]:
        """Host buffers of ``sizes`` bytes for :meth:`recv_into`."""
        return [(self.memory.alloc(n, align), n) for n in sizes]

    def phase(self, conn: Connection) -> Phase:
        record = self._records.get(conn)
        return Phase.SOFT if record is None else record.phase

    def offloaded(self, conn: Connection) -> bool:
        return self.phase(conn) is Phase.OFFLOADED

    def connection_stats(self, conn: Connection) -> OffloadStats:
        return self._record(conn).stats

    async def flush(self, conn: Connection, why: str = "application") -> bool:
        """Take ``conn`` back from the NIC now (FLUSH); False when it is not handed out."""
        record = self._records.get(conn)
        if record is None or record.phase is not Phase.OFFLOADED:
            return False
        await self._flush(record, why)
        return True

    # -- The driver's side -----------------------------------------------------------------------

    def _on_event(self, fields: dict) -> None:
        if self._chained_on_event is not None:
            self._chained_on_event(fields)
        if fields["kind"] == EventKind.COMMAND_DONE.value:
            self._inbox.append(dict(fields))

    async def pump(self) -> int:
        """Handle everything the driver queued (frames, fast-path events, command answers), in
        event order, then run the policy over every connection. Call it after every
        :meth:`NicDriver.service`. Returns the items handled."""
        handled = 0
        while self._inbox:
            item = self._inbox.popleft()
            handled += 1
            if isinstance(item, bytes):
                self._frame(item)
            elif isinstance(item, dict):
                await self._command_done(item)
            elif isinstance(item, Interlock):
                await self._interlock(item)
            elif isinstance(item, FrameData):
                await self._frame_data(item)
            elif isinstance(item, RcvMdlDone):
                self._rcvmdl_done(item)
            elif isinstance(item, Flush):
                self._flushed(item)
        for conn in self.stack.connections:
            await self._tend(self._record(conn))
        for record in list(self._records.values()):
            if record.conn.state is State.CLOSED:
                await self._tend(record)
        return handled

    # -- Per connection --------------------------------------------------------------------------

    def _record(self, conn: Connection) -> _Record:
        record = self._records.get(conn)
        if record is None:
            record = _Record(conn, self._next_context)
            self._next_context += 1
            self._records[conn] = record
            self._by_context[record.context] = record
        return record

    def _count(self, record: _Record, name: str, n: int = 1) -> None:
        for stats in (self.stats, record.stats):
            setattr(stats, name, getattr(stats, name) + n)

    def _count_in(self, record: _Record, name: str, key: str) -> None:
        for stats in (self.stats, record.stats):
            getattr(stats, name)[key] += 1

    def _eligible(self, record: _Record) -> bool:
        conn, policy = record.conn, self.policy
        return (policy.enabled and (policy.ports is None or conn.local_port in policy.ports)
                and conn.quiescent and conn.recv_queue <= conn.rcv_buffer
                and self.stack._clock() >= record.not_before)

    async def _tend(self, record: _Record) -> None:
        """Policy and bookkeeping for one connection after the events."""
        conn = record.conn
        self._feed(record)
        if conn.state is State.CLOSED:
            if record.phase is Phase.OFFLOADED:
                await self._flush(record, "closed", close=True)
            if record.phase is Phase.SOFT:
                for request in record.requests:
                    request._complete("closed")
                self._forget(record)
            return
        if record.phase is Phase.OFFLOADED:
            if record.flush_wanted:
                why, record.flush_wanted = record.flush_wanted, None
                await self._flush(record, why)
                return
            if conn.send_queue or conn._fin_queued:
                await self._flush(record, "close" if conn._fin_queued else "send",
                                  close=conn._fin_queued)
                return
            consumed = record.nic_unconsumed - conn.recv_queue
            if consumed > 0:
                record.nic_unconsumed -= consumed
                self._count(record, "winupdates")
                self._count(record, "winupdate_bytes", consumed)
                await self.driver.winupdate(record.conn_nbr, consumed)
            await self._post_rcvmdl(record)
        elif record.phase is Phase.SOFT and self._eligible(record):
            await self._handout1(record)

    def _feed(self, record: _Record) -> None:
        """Copy the receive queue into the posted requests (the host's copy), complete them."""
        conn = record.conn
        while record.requests:
            request = record.requests[0]
            if record.mdl_handle is not None:
                return          # the NIC fills it: the queue is empty then
            if conn.recv_queue:
                request.write(self.memory, conn.offload_take(request.residual))
            if request.residual == 0:
                request._complete("full")
            elif conn.eof:
                request._complete("eof")
            elif conn.state is State.CLOSED:
                request._complete("closed")
            elif request.push and request.filled and not conn.recv_queue:
                request._complete("push")
            if not request.done:
                return
            record.requests.popleft()

    async def _post_rcvmdl(self, record: _Record) -> None:
        if record.mdl_handle is not None or not record.requests or record.conn.recv_queue:
            return
        request = record.requests[0]
        handle = _HANDLE_BASE | self._next_handle
        self._next_handle = (self._next_handle + 1) % _HANDLE_BASE
        record.mdl_handle = handle
        record.mdl_base = request.filled
        self._count(record, "rcvmdls")
        await self.driver.rcvmdl(record.conn_nbr, handle, request.remaining_entries(),
                                 push=request.push)

    async def _handout1(self, record: _Record) -> None:
        conn = record.conn
        record.ccb_addr = self.memory.alloc(CCB_BYTES, CCB_ALIGN)
        write_ccb(self.memory, record.ccb_addr, make_ccb(self._tuple(conn), {}, {}))
        record.phase = Phase.HANDOUT1
        self._count(record, "handout_attempts")
        record.tag = await self.driver.handout1(record.ccb_addr, record.context)

    def _tuple(self, conn: Connection) -> dict:
        return {"remote_ip": int(ipaddress.ip_address(conn.remote_ip)),
                "local_ip": int(ipaddress.ip_address(conn.local_ip)),
                "remote_port": conn.remote_port, "local_port": conn.local_port,
                "ipv6": int(conn.family == 6)}

    def _ccb(self, record: _Record) -> dict:
        """The Ccb of the connection's TCB as it stands (docs/host_driver.md "Handout")."""
        conn, stack = record.conn, self.stack
        rcv_mss = stack._mss_for(conn.family) - _TIMESTAMP_OPTION_BYTES * conn.timestamps
        rcv_adv = conn.rcv_adv
        if seq_diff(rcv_adv, conn.rcv_nxt) < 0:
            rcv_adv = conn.rcv_nxt
        route = {"local_mac": _mac(stack.mac), "remote_mac": _mac(conn.remote_mac),
                 "ttl": 64, "tos": 0, "timestamps": int(conn.timestamps), "rcv_mss": rcv_mss,
                 "snd_wscale": conn.snd_wscale or 0, "rcv_wscale": conn.rcv_wscale or 0,
                 "iss": conn.iss, "irs": conn.irs}
        tcp = {"rcv_nxt": conn.rcv_nxt, "rcv_buf": conn.rcv_buffer,
               "rcv_unconsumed": conn.recv_queue, "rcv_adv": rcv_adv,
               "snd_una": conn.snd_una, "snd_nxt": conn.snd_nxt, "snd_wnd": conn.snd_wnd,
               "snd_wl1": conn.snd_wl1, "snd_wl2": conn.snd_wl2, "ts_recent": conn.ts_recent,
               "ts_val": stack._ts_now(), "ip_id": stack._ip_id}
        return make_ccb(self._tuple(conn), route, tcp)

    async def _interlock(self, item: Interlock) -> None:
        record = self._by_context.get(item.host_context)
        if record is None or record.phase is not Phase.HANDOUT1 or record.tag != item.tag:
            self.stats.host_flushes["stray"] += 1
            await self.driver.flush(item.conn_nbr)
            return
        record.conn_nbr = item.conn_nbr
        self._by_nbr[item.conn_nbr] = record
        self._feed(record)
        if not self._eligible(record):
            self._count(record, "handouts_abandoned")
            await self._flush(record, "changed")
            return
        ccb = self._ccb(record)
        write_ccb(self.memory, record.ccb_addr, ccb)
        record.ip_id = ccb["tcp"]["ip_id"]
        record.phase = Phase.OFFLOADED
        record.handed_out = True
        record.conn.held = True
        record.nic_unconsumed = record.conn.recv_queue
        record.handout2_tag = await self.driver.handout2(item.conn_nbr, record.ccb_addr)
        await self._post_rcvmdl(record)

    async def _flush(self, record: _Record, why: str, close: bool = False) -> None:
        record.phase = Phase.FLUSHING
        self._count_in(record, "host_flushes", why)
        if close:
            await self.driver.close(record.conn_nbr)
        else:
            await self.driver.flush(record.conn_nbr)

    async def _command_done(self, fields: dict) -> None:
        opcode, code, tag = fields["detail"], EventCode(fields["code"]), fields["tag"]
        try:
            name = CommandOpcode(opcode).name
        except ValueError:
            return
        if opcode == CommandOpcode.HANDOUT2.value:
            record = next((r for r in self._records.values() if r.handout2_tag == tag), None)
            if record is not None:
                record.handout2_tag = None
                if code is EventCode.OK:
                    self._count(record, "handouts")
        if code is EventCode.OK:
            return
        self.stats.refused[f"{name}/{code.name}"] += 1
        if opcode == CommandOpcode.HANDOUT1.value:
            record = next((r for r in self._records.values()
                           if r.phase is Phase.HANDOUT1 and r.tag == tag), None)
            if record is not None:
                record.stats.refused[f"{name}/{code.name}"] += 1
                record.phase = Phase.SOFT
                self.memory.free(record.ccb_addr)
                record.ccb_addr = None
                record.not_before = self.stack._clock() + self.policy.retry_delay
        elif opcode == CommandOpcode.RCVMDL.value:
            record = next((r for r in self._records.values() if r.mdl_handle == tag), None)
            if record is not None:
                record.mdl_handle = None
                self._unshift(record)
                if record.phase is Phase.OFFLOADED:
                    await self._flush(record, "rcvmdl_refused")

    async def _frame_data(self, item: FrameData) -> None:
        record = self._by_nbr.get(item.conn_nbr)
        if record is None:
            return
        if item.code is not EventCode.OK:
            # The segment is lost while the NIC counted it: take the connection back.
            if record.phase is Phase.OFFLOADED:
                await self._flush(record, "frame_data_error")
            return
        payload = _payload_of(item.frame)
        record.nic_unconsumed += len(payload)
        if record.mdl_handle is not None:
            # Shown before the NIC took the RCVMDL (a segment queued while PENDING, drained by
            # HANDOUT2 before the RCVMDL came): it precedes the RCVMDL's bytes.
            record.mdl_shift += payload
            self._count(record, "frame_data_before_rcvmdl")
        else:
            record.conn.offload_deliver(payload)
        self._count(record, "rx_frame_data_segments")
        self._count(record, "rx_frame_data_bytes", len(payload))

    def _rcvmdl_done(self, item: RcvMdlDone) -> None:
        record = self._by_nbr.get(item.conn_nbr)
        if record is None or record.mdl_handle != item.handle:
            return
        request = record.requests.popleft()
        self._settle(record, request, item.placed)
        request._complete("full" if request.residual == 0 else "push")
        record.mdl_handle = None
        self._count(record, "rcvmdl_done")
        self._count(record, "rx_fast_bytes", item.placed)

    def _settle(self, record: _Record, request: RecvRequest, placed: int) -> None:
        """The RCVMDL of ``request`` ended with ``placed`` bytes placed from ``mdl_base`` on;
        FRAME_DATA bytes shown before the NIC took it go first (the host moves the placed bytes
        behind them; what no longer fits goes back to the front of the receive queue)."""
        base, shift = record.mdl_base, bytes(record.mdl_shift)
        record.mdl_shift.clear()
        request.placed += placed
        if not shift:
            request.filled = base + placed
            return
        request.filled = base + placed
        combined = shift + request.data(self.memory)[base:]
        request.filled = base
        room = request.length - base
        request.write(self.memory, combined[:room])
        record.conn.offload_unread(combined[room:])

    def _unshift(self, record: _Record) -> None:
        """The RCVMDL was never taken: the bytes shown before it go to the receive queue."""
        record.conn.offload_unread(bytes(record.mdl_shift))
        record.mdl_shift.clear()

    def _flushed(self, item: Flush) -> None:
        record = self._by_nbr.pop(item.conn_nbr, None)
        if record is None:
            return
        conn = record.conn
        self._count_in(record, "flushes", item.reason.name)
        ccb = read_ccb(self.memory, record.ccb_addr)
        if (record.handed_out and ccb["state"] == ConnState.FLUSHING.value
                and ccb["conn_nbr"] == item.conn_nbr):
            tcp = ccb["tcp"]
            conn.offload_restore(
                rcv_nxt=tcp["rcv_nxt"], snd_una=tcp["snd_una"], snd_nxt=tcp["snd_nxt"],
                snd_wnd=tcp["snd_wnd"], snd_wl1=tcp["snd_wl1"], snd_wl2=tcp["snd_wl2"],
                ts_recent=tcp["ts_recent"], ack_owed=tcp["unacked"] > 0)
            if conn.family == 4:
                self.stack._ip_id = (self.stack._ip_id + tcp["ip_id"] - record.ip_id) & 0xFFFF
            stats = ccb["stats"]
            self._count(record, "rx_fast_segments", stats["fast_segments"])
            self._count(record, "nic_acks", stats["acks"])
        if record.mdl_handle is not None:
            if item.handle == record.mdl_handle:
                request = record.requests[0]
                self._settle(record, request, item.placed)
                self._count(record, "rx_fast_bytes", item.placed)
                self._count(record, "rcvmdl_short")
                if request.filled:
                    request._complete("full" if request.residual == 0 else "flush")
                    record.requests.popleft()
            record.mdl_handle = None
        self._unshift(record)
        self.memory.free(record.ccb_addr)
        record.ccb_addr = record.conn_nbr = None
        record.handed_out = False
        record.flush_wanted = None
        record.phase = Phase.SOFT
        record.nic_unconsumed = 0
        conn.held = False
        now = self.stack._clock()
        if item.reason not in _HOST_REASONS:
            record.flush_times.append(now)
            while record.flush_times and record.flush_times[0] < now - self.policy.flush_window:
                record.flush_times.popleft()
            if len(record.flush_times) > self.policy.max_flushes:
                record.flush_times.clear()
                record.not_before = now + self.policy.probation
                self._count(record, "probations")
        while record.held:
            self._to_stack(record.held.popleft(), record)
        conn._output()

    # -- Slow-path frames ------------------------------------------------------------------------

    def _frame(self, frame: bytes) -> None:
        """A slow-path frame: held while its connection is the NIC's, else to the stack."""
        parsed = _tcp_of(frame)
        record = None
        if parsed is not None and parsed[0] == "fragment":
            # No ports: every offloaded connection of that peer goes back (docs/fast_path.md).
            for other in self._records.values():
                if other.phase is Phase.OFFLOADED and other.conn.remote_ip == parsed[1]:
                    other.flush_wanted = "fragment"
        elif parsed is not None:
            conn = self.stack._connections.get(parsed[:3])
            record = self._records.get(conn) if conn is not None else None
            if record is not None and record.phase in (Phase.OFFLOADED, Phase.FLUSHING):
                record.held.append(frame)
                return
        self._to_stack(frame, record, parsed)

    def _to_stack(self, frame: bytes, record: _Record | None, parsed=None) -> None:
        if record is None:
            self.stack.receive_frame(frame)
            return
        parsed = parsed or _tcp_of(frame)
        before = record.conn.stats.bytes_received
        self.stack.receive_frame(frame)
        if parsed is not None and parsed[3]:
            self._count(record, "rx_slow_segments")
        self._count(record, "rx_slow_bytes", record.conn.stats.bytes_received - before)

    def _forget(self, record: _Record) -> None:
        self._records.pop(record.conn, None)
        self._by_context.pop(record.context, None)

    # -- Statistics ------------------------------------------------------------------------------

    @property
    def current(self) -> dict:
        """Connections now: ``offloaded`` (handed out, HANDOUT2 posted), ``slow`` (the others
        the stack has)."""
        offloaded = sum(r.phase is Phase.OFFLOADED for r in self._records.values())
        return {"offloaded": offloaded, "slow": len(self.stack.connections) - offloaded}

    async def statistics(self) -> dict:
        """GET_TCP_STATISTICS: this object's counters, the current connections, the stack's
        send counters and the NIC's FastPathCounters (``fp_...``), in one dict."""
        out = {name: getattr(self.stats, name) for name in
               (f.name for f in dataclasses.fields(OffloadStats))}
        out["flushes"] = dict(self.stats.flushes)
        out["refused"] = dict(self.stats.refused)
        out["host_flushes"] = dict(self.stats.host_flushes)
        out["tx_slow_bytes"] = self.stack.stats.bytes_sent
        out["tx_slow_segments"] = self.stack.stats.segments_sent
        out.update({f"current_{k}": v for k, v in self.current.items()})
        out.update(await self.driver.fast_path_counters())
        return out

