"""The fast path of the NIC model (docs/fast_path.md): commands, the receive engine, ACK frames.

:class:`FastPath` is the part of :class:`sim.reference.nic_model.NicModel` that the receive
engine, the CCB store, the CCB mover and the ACK builder will be in the RTL. It is untimed like
the rest of the model: a command takes effect when the model runs its command ring, a frame is
decided when it is admitted, and every fence of docs/fast_path.md "Numbering and the fence" has
passed at once. Connections live in the CCB table's reference model
(:class:`sim.reference.ccb_table.CcbTable`, the RTL's parameters), which hands out ``conn_nbr``.

The model's decisions beyond docs/fast_path.md are listed in its "Model" section.
"""

import dataclasses
from collections import deque

from amaranth.lib import data

from host_driver.ccb import record_fields
from hw import params
from hw.ccb.layouts import CcbState
from hw.layouts import (
    CCB_ALIGN,
    CCB_BYTES,
    CCB_TUPLE_BYTES,
    CCB_VERSION,
    IPV4_MIN_HEADER_BYTES,
    MAX_RCV_MSS,
    MAX_WSCALE,
    RCVMDL_ENDED_BY_PSH,
    TCP_MIN_HEADER_BYTES,
    AckRequest,
    Ccb,
    CcbTupleHost,
    CommandOpcode,
    ConnArg,
    ConnState,
    EventCode,
    EventKind,
    FastPathCounters,
    FlushReason,
    L3Type,
    L4Type,
    RcvMdlEntry,
    RingId,
    TcpFlags,
    pack,
)

from .ccb_table import CcbTable, FourTuple, Status
from .checksum import ones_complement_sum

__all__ = ["FastPath", "ack_frame", "FAST_PATH_COUNTER_NAMES"]

FAST_PATH_COUNTER_NAMES = tuple(name for name, _ in data.Layout.cast(FastPathCounters))
_MASK32 = 0xFFFF_FFFF
_HALF = 1 << 31
_MDL_ENTRY = data.Layout.cast(RcvMdlEntry).size // 8
#: Exceptions a segment's flags raise, in the order they are checked (ECE and CWR pass: RFC 3168
#: §6.1).
_FLAG_REASONS = ((TcpFlags.SYN, FlushReason.SYN), (TcpFlags.RST, FlushReason.RST),
                 (TcpFlags.FIN, FlushReason.FIN), (TcpFlags.URG, FlushReason.URG))
_TSOPT_KIND, _TSOPT_LENGTH = 8, 10
_FLUSH_REASON_SLOTS = data.Layout.cast(FastPathCounters)["flush_reason"].shape.length


def _after(a: int, b: int) -> bool:
    """``a`` is later than ``b`` in sequence space (RFC 9293 §3.4)."""
    return 0 < (a - b) & _MASK32 < _HALF


@dataclasses.dataclass
class Frame:
    """A frame in the packet buffer: its bytes, status word, RxSummary header, arrival number."""
    data: bytes
    status: dict
    header: bytes
    nbr: int

    def field(self, name: str) -> int:
        return self.status.get(name, 0)

    @property
    def flags(self) -> int:
        return self.field("tcp_flags")

    @property
    def payload(self) -> bytes:
        start = self.field("payload_offset")
        return self.data[start:start + self.field("payload_len")]


@dataclasses.dataclass
class Connection:
    """One record of the CCB store (the NIC's copy of a Ccb, while handed out)."""
    conn_nbr: int
    key: FourTuple
    tuple: dict                 # CcbTupleHost as HANDOUT1 read it
    host_context: int
    state: ConnState = ConnState.PENDING
    ccb_addr: int = 0           # HANDOUT2's: where the flush writes the Ccb back
    ccb: dict | None = None     # the Ccb's parts, from HANDOUT2 on
    mdl: list = dataclasses.field(default_factory=list)     # (addr, length) of the RCVMDL
    queue: deque = dataclasses.field(default_factory=deque)
    ack_deadline: int | None = None     # the delayed-ACK timer

    @property
    def tcp(self) -> dict:
        return self.ccb["tcp"]

    @property
    def transfer(self) -> dict:
        return self.ccb["transfer"]


def _tsval(frame: Frame) -> int | None:
    """The TSval of the segment's timestamps option (RFC 7323 §3), or None."""
    options = frame.data[frame.field("l4_offset") + TCP_MIN_HEADER_BYTES:
                         frame.field("payload_offset")]
    i = 0
    while i < len(options):
        kind = options[i]
        if kind == 0:
            break
        if kind == 1:
            i += 1
            continue
        if i + 1 >= len(options) or options[i + 1] < 2:
            break
        if kind == _TSOPT_KIND and options[i + 1] == _TSOPT_LENGTH and i + 10 <= len(options):
            return int.from_bytes(options[i + 2:i + 6], "big")
        i += options[i + 1]
    return None


def ack_frame(request: dict) -> bytes:
    """The frame the ACK builder sends for an :class:`AckRequest` (docs/fast_path.md "ACK frames,
    byte for byte"). ``request`` holds AckRequest fields (missing ones are 0)."""
    r = dict.fromkeys((name for name, _ in data.Layout.cast(AckRequest)), 0) | request
    ip_bytes = 16 if r["ipv6"] else 4
    local_ip = r["local_ip"].to_bytes(ip_bytes, "big")
    remote_ip = r["remote_ip"].to_bytes(ip_bytes, "big")
    options = (b"\x01\x01\x08\x0a" + r["ts_val"].to_bytes(4, "big")
               + r["ts_ecr"].to_bytes(4, "big")) if r["timestamps"] else b""
    tcp_len = TCP_MIN_HEADER_BYTES + len(options)
    tcp = bytearray(
        r["local_port"].to_bytes(2, "big") + r["remote_port"].to_bytes(2, "big")
        + r["seq"].to_bytes(4, "big") + r["ack"].to_bytes(4, "big")
        + bytes([(tcp_len // 4) << 4, r["flags"]]) + r["window"].to_bytes(2, "big")
        + bytes(4) + options)
    pseudo = local_ip + remote_ip + (bytes(3) + b"\x06" if r["ipv6"] else b"\x00\x06")
    pseudo += tcp_len.to_bytes(4 if r["ipv6"] else 2, "big")
    tcp[16:18] = (~ones_complement_sum(pseudo + bytes(tcp)) & 0xFFFF).to_bytes(2, "big")
    if r["ipv6"]:
        ethertype = 0x86DD
        ip = ((6 << 28 | r["tos"] << 20).to_bytes(4, "big") + tcp_len.to_bytes(2, "big")
              + bytes([6, r["ttl"]]) + local_ip + remote_ip)
    else:
        ethertype = 0x0800
        total_length = IPV4_MIN_HEADER_BYTES + tcp_len
        ip = bytearray(bytes([0x45, r["tos"]]) + total_length.to_bytes(2, "big")
                       + r["ip_id"].to_bytes(2, "big") + b"\x40\x00" + bytes([r["ttl"], 6])
                       + bytes(2) + local_ip + remote_ip)
        ip[10:12] = (~ones_complement_sum(bytes(ip)) & 0xFFFF).to_bytes(2, "big")
    vlan = (0x8100.to_bytes(2, "big") + r["vlan_tci"].to_bytes(2, "big")) if r["vlan"] else b""
    frame = (r["remote_mac"].to_bytes(6, "big") + r["local_mac"].to_bytes(6, "big") + vlan
             + ethertype.to_bytes(2, "big") + bytes(ip) + bytes(tcp))
    return frame + bytes(max(0, params.MIN_TX_FRAME_BYTES - len(frame)))


class FastPath:
    """The fast path of one :class:`~sim.reference.nic_model.NicModel` (``nic``).

    Members
    -------
    table : CcbTable
        The CCB table's reference model: ``connections`` entries, the RTL's other parameters,
        the table key :data:`~sim.reference.ccb_table.DEFAULT_KEY` (no register sets it yet).
    connections : dict
        ``conn_nbr -> Connection``: the CCB store's records in use.
    counters : dict
        The :class:`FastPathCounters` fields (``flush_reason`` a list).
    ack_requests : list of dict
        Every :class:`AckRequest` sent, in order (its frame went to the model's MAC TX).
    """

    def __init__(self, nic, connections: int = params.FAST_PATH_CONNECTIONS):
        self.nic = nic
        self.table = CcbTable(connections)
        self.connections: dict[int, Connection] = {}
        self.counters: dict = {}
        self.ack_requests: list[dict] = []
        self.clear_counters()

    def clear_counters(self) -> None:
        """Zero the counters but the levels (``queued``, ``connections``), which stay true."""
        queued = sum(len(conn.queue) for conn in self.connections.values())
        self.counters = dict.fromkeys(FAST_PATH_COUNTER_NAMES, 0)
        self.counters["flush_reason"] = [0] * _FLUSH_REASON_SLOTS
        self.counters.update(queued=queued, connections=len(self.connections))

    def _count(self, name: str, n: int = 1) -> None:
        self.counters[name] = self.counters[name] + n

    @property
    def queued(self) -> int:
        return self.counters["queued"]

    # -- Commands --------------------------------------------------------------------------------

    def command(self, index: int, command) -> None:
        """Run a fast-path command taken from the command ring at ``index``; its answer is posted
        in the receive side's order."""
        opcode = CommandOpcode(command.opcode)
        handler = {
            CommandOpcode.HANDOUT1: self._handout1, CommandOpcode.HANDOUT2: self._handout2,
            CommandOpcode.RCVMDL: self._rcvmdl, CommandOpcode.WINUPDATE: self._winupdate,
            CommandOpcode.FLUSH: self._host_flush, CommandOpcode.CLOSE: self._host_flush,
        }[opcode]
        code = handler(index, command, record_fields(ConnArg, int(command.arg)))
        if code is not None:
            self._answer(index, command, code)

    def _answer(self, index: int, command, code: EventCode) -> None:
        """COMMAND_DONE for a command; a refusal (or a bad Ccb) counts as a bad command."""
        if code not in (EventCode.OK, EventCode.DMA_ERROR):
            self._count("bad_commands")
            self.nic._count("bad_commands")
        self.nic.post_rx_event(kind=EventKind.COMMAND_DONE.value, ring=RingId.COMMAND.value,
                               index=index, code=code.value, tag=command.tag,
                               detail=command.opcode)

    def _connection(self, arg: dict) -> Connection | None:
        return self.connections.get(arg["conn_nbr"])

    def _handout1(self, index, command, arg):
        raw, failed = self.nic.dma_read(int(command.addr) & ~(CCB_ALIGN - 1), CCB_TUPLE_BYTES)
        if failed:
            return EventCode.DMA_ERROR
        tuple_fields = record_fields(CcbTupleHost, int.from_bytes(raw, "little"))
        key = _key_of(tuple_fields)
        status, conn_nbr = self.table.insert(key, CcbState.PENDING.value)
        if status is Status.EXISTS:
            return EventCode.TUPLE_EXISTS
        if status is Status.FULL:
            return EventCode.TABLE_FULL
        self.connections[conn_nbr] = Connection(conn_nbr, key, tuple_fields, int(command.arg))
        self._count("connections")
        self.nic.post_rx_event(kind=EventKind.INTERLOCK.value, ring=RingId.COMMAND.value,
                               index=index, code=EventCode.OK.value, tag=int(command.arg),
                               detail=conn_nbr)
        return None

    def _handout2(self, index, command, arg):
        conn = self._connection(arg)
        if conn is None:
            return EventCode.UNKNOWN_CONNECTION
        if conn.state is not ConnState.PENDING:
            return EventCode.WRONG_STATE
        addr = int(command.addr) & ~(CCB_ALIGN - 1)
        raw, failed = self.nic.dma_read(addr, CCB_BYTES)
        if failed:
            self._answer(index, command, EventCode.DMA_ERROR)
            self._flush(conn, FlushReason.DMA_ERROR, [])
            return None
        ccb = record_fields(Ccb, int.from_bytes(raw, "little"))
        if not _ccb_good(ccb, conn.key):
            self._answer(index, command, EventCode.BAD_CCB)
            self._flush(conn, FlushReason.BAD_CCB, [])
            return None
        ccb["route"]["host_context"] = conn.host_context
        ccb["transfer"] = dict.fromkeys(ccb["transfer"], 0)
        ccb["stats"] = dict.fromkeys(ccb["stats"], 0)
        conn.ccb, conn.ccb_addr, conn.state = ccb, addr, ConnState.FAST
        self.table.set_state(conn.key, CcbState.OFFLOADED.value)
        self._count("handouts")
        self._answer(index, command, EventCode.OK)
        self._drain(conn)
        return None

    def _rcvmdl(self, index, command, arg):
        conn = self._connection(arg)
        if conn is None:
            return EventCode.UNKNOWN_CONNECTION
        if conn.state not in (ConnState.FAST, ConnState.INDICATED) or conn.transfer["posted"]:
            return EventCode.WRONG_STATE
        if not 1 <= arg["entries"] <= params.RCVMDL_MAX_ENTRIES:
            return EventCode.BAD_MDL
        addr = int(command.addr) & ~(CCB_ALIGN - 1)
        raw, failed = self.nic.dma_read(addr, _MDL_ENTRY * arg["entries"])
        if failed:
            self._flush(conn, FlushReason.DMA_ERROR, [])
            return None
        entries = [record_fields(RcvMdlEntry, int.from_bytes(raw[i:i + _MDL_ENTRY], "little"))
                   for i in range(0, len(raw), _MDL_ENTRY)]
        if any(entry["length"] == 0 for entry in entries):
            return EventCode.BAD_MDL
        conn.mdl = [(entry["addr"], entry["length"]) for entry in entries]
        conn.transfer.update(addr=addr, handle=command.tag, entries=arg["entries"], entry=0,
                             offset=0, placed=0, posted=1, push=arg["push"])
        self._window_opened(conn)
        if conn.state is ConnState.INDICATED:
            conn.state = ConnState.FAST
            self._drain(conn)
        return None

    def _winupdate(self, index, command, arg):
        conn = self._connection(arg)
        if conn is None:
            return EventCode.UNKNOWN_CONNECTION
        consumed = int(command.addr) & _MASK32
        unconsumed = conn.tcp["rcv_unconsumed"] if conn.ccb else 0
        if consumed > unconsumed:
            return EventCode.WRONG_STATE
        if conn.ccb:
            conn.tcp["rcv_unconsumed"] = unconsumed - consumed
            self._window_opened(conn)
            if conn.state is ConnState.INDICATED and conn.tcp["rcv_unconsumed"] == 0:
                conn.state = ConnState.FAST
                self._drain(conn)
        return None

    def _host_flush(self, index, command, arg):
        conn = self._connection(arg)
        if conn is None:
            return EventCode.UNKNOWN_CONNECTION
        close = command.opcode == CommandOpcode.CLOSE.value
        self._flush(conn, FlushReason.CLOSE if close else FlushReason.HOST, [])
        return None

    # -- Frames ----------------------------------------------------------------------------------

    def receive(self, frame: Frame) -> None:
        """Decide an admitted frame: the slow path (no connection), a queue, or the engine."""
        conn = self._lookup(frame)
        if conn is None:
            self.nic.to_slow_path(frame)
        elif conn.queue or conn.state in (ConnState.PENDING, ConnState.INDICATED):
            self._enqueue(conn, frame)
        else:
            self._take(conn, frame)

    def _lookup(self, frame: Frame) -> Connection | None:
        """The connection of a TCP frame that names a tuple (docs/fast_path.md "Blocks")."""
        if not (frame.field("l4") == L4Type.TCP.value and frame.field("addr_valid")
                and frame.field("l4_valid")):
            return None
        key = FourTuple(frame.field("src"), frame.field("dst"), frame.field("sport"),
                        frame.field("dport"), frame.field("l3") == L3Type.IPV6.value)
        hit, conn_nbr, _ = self.table.lookup(key)
        return self.connections[conn_nbr] if hit else None

    def _enqueue(self, conn: Connection, frame: Frame) -> None:
        if len(conn.queue) >= params.QUEUE_MAX_FRAMES:
            self._flush(conn, FlushReason.QUEUE_FULL, [*self._unqueue_all(conn), frame])
            return
        conn.queue.append(frame)
        self._count("queued")

    def _unqueue_all(self, conn: Connection) -> list[Frame]:
        frames = list(conn.queue)
        conn.queue.clear()
        self._count("queued", -len(frames))
        return frames

    def _drain(self, conn: Connection) -> None:
        """Take queued frames in order while the connection takes them (FAST)."""
        while conn.queue and conn.state is ConnState.FAST:
            frame = conn.queue.popleft()
            self._count("queued", -1)
            self._take(conn, frame)

    def oldest_queued(self) -> tuple[int, Connection] | None:
        """``(arrival number, connection)`` of the oldest queued frame, or None."""
        heads = [(conn.queue[0].nbr, conn) for conn in self.connections.values() if conn.queue]
        return min(heads, key=lambda head: head[0], default=None)

    def flush_for_space(self, conn: Connection) -> None:
        """The packet buffer ran short behind ``conn``'s queue (docs/fast_path.md "Queues")."""
        self._flush(conn, FlushReason.QUEUE_FULL, [])

    def _exception(self, conn: Connection, frame: Frame) -> FlushReason | None:
        """Why ``frame`` is not an in-order segment of ``conn`` (docs/fast_path.md "Fast-path
        receive: the rules"), in the order the checks are made; None when it is one."""
        tcp = conn.tcp
        if (frame.field("malformed")
                or (frame.field("ip_csum_valid") and not frame.field("ip_csum_ok"))
                or (frame.field("l4_csum_valid") and not frame.field("l4_csum_ok"))):
            return FlushReason.BAD_CHECKSUM
        if frame.field("ip_options"):
            return FlushReason.IP_OPTIONS
        for flag, reason in _FLAG_REASONS:
            if frame.flags & flag.value:
                return reason
        if not frame.flags & TcpFlags.ACK.value:
            return FlushReason.BAD_ACK
        if frame.field("seq") != tcp["rcv_nxt"]:
            return FlushReason.OUT_OF_ORDER
        end = (frame.field("seq") + frame.field("payload_len")) & _MASK32
        if _after(end, tcp["rcv_adv"]):
            return FlushReason.OUT_OF_WINDOW
        ack = frame.field("ack")
        if _after(ack, tcp["snd_nxt"]) or _after((tcp["snd_una"] - _HALF) & _MASK32, ack):
            return FlushReason.BAD_ACK
        return None

    def _take(self, conn: Connection, frame: Frame) -> None:
        """An in-order segment on a FAST connection: placed, shown, or a pure ACK; anything else
        flushes the connection."""
        reason = self._exception(conn, frame)
        if reason is not None:
            self._flush(conn, reason, [frame])
            return
        self._update_send_side(conn, frame)
        if not frame.field("payload_len"):
            self._count("pure_acks")
            self.nic.release(frame)
            return
        if conn.transfer["posted"]:
            self._place(conn, frame)
        else:
            self._show(conn, frame)

    def _update_send_side(self, conn: Connection, frame: Frame) -> None:
        """SND_UNA, the peer's window (RFC 9293 §3.10.7.4) and TS.Recent from an in-order
        segment."""
        tcp, seq, ack = conn.tcp, frame.field("seq"), frame.field("ack")
        if _after(ack, tcp["snd_una"]):
            tcp["snd_una"] = ack
        if _after(seq, tcp["snd_wl1"]) or (seq == tcp["snd_wl1"]
                                           and not _after(tcp["snd_wl2"], ack)):
            tcp["snd_wnd"] = frame.field("window") << conn.ccb["route"]["snd_wscale"]
            tcp["snd_wl1"], tcp["snd_wl2"] = seq, ack
        tsval = _tsval(frame) if conn.ccb["route"]["timestamps"] else None
        if tsval is not None:
            tcp["ts_recent"] = tsval

    def _place(self, conn: Connection, frame: Frame) -> None:
        """Write the payload into the RCVMDL from its entry and offset on; complete it when full
        or on PSH; a segment longer than the space left fills it and flushes."""
        transfer, payload = conn.transfer, frame.payload
        total = sum(length for _, length in conn.mdl)
        placed = payload[:total - transfer["placed"]]
        if not self._write_mdl(conn, placed):
            self._flush(conn, FlushReason.DMA_ERROR, [frame])
            return
        conn.tcp["rcv_nxt"] = (conn.tcp["rcv_nxt"] + len(placed)) & _MASK32
        conn.ccb["stats"]["fast_bytes"] += len(placed)
        self._count("fast_bytes", len(placed))
        full = transfer["placed"] == total
        if len(placed) < len(payload):
            self._complete_mdl(conn, EventCode.OK.value)
            self._flush(conn, FlushReason.OUT_OF_WINDOW, [frame])
            return
        conn.ccb["stats"]["fast_segments"] += 1
        self._count("fast_frames")
        self.nic.release(frame)
        psh = bool(frame.flags & TcpFlags.PSH.value)
        if full or (psh and transfer["push"]):
            self._complete_mdl(conn, EventCode.OK.value if full else RCVMDL_ENDED_BY_PSH)
        self._segment_taken(conn, frame, ack_now=full or psh)

    def _write_mdl(self, conn: Connection, payload: bytes) -> bool:
        """DMA ``payload`` at the RCVMDL's current position, across entries; False on an error
        response."""
        transfer = conn.transfer
        while payload:
            addr, length = conn.mdl[transfer["entry"]]
            chunk = payload[:length - transfer["offset"]]
            if self.nic.dma_write(addr + transfer["offset"], chunk) is not None:
                return False
            payload = payload[len(chunk):]
            transfer["placed"] += len(chunk)
            transfer["offset"] += len(chunk)
            if transfer["offset"] == length and transfer["entry"] + 1 < len(conn.mdl):
                transfer["entry"] += 1
                transfer["offset"] = 0
        return True

    def _complete_mdl(self, conn: Connection, code: int) -> None:
        transfer = conn.transfer
        self.nic.post_rx_event(kind=EventKind.RCVMDL_DONE.value, ring=RingId.COMMAND.value,
                               index=transfer["handle"], code=code, tag=transfer["placed"],
                               detail=conn.conn_nbr)
        self._count("rcvmdl_done")
        conn.ccb["transfer"] = dict.fromkeys(transfer, 0)
        conn.mdl = []

    def _show(self, conn: Connection, frame: Frame) -> None:
        """No RCVMDL: the segment goes whole into an RX buffer with FRAME_DATA; the connection
        queues until the host answers."""
        length = frame.field("payload_len")
        conn.tcp["rcv_nxt"] = (conn.tcp["rcv_nxt"] + length) & _MASK32
        conn.tcp["rcv_unconsumed"] += length
        conn.ccb["stats"]["frame_data"] += 1
        conn.state = ConnState.INDICATED
        self.nic.to_host(frame, kind=EventKind.FRAME_DATA, tag=frame.field("seq"),
                         detail=conn.conn_nbr)
        self._segment_taken(conn, frame, ack_now=bool(frame.flags & TcpFlags.PSH.value))

    # -- ACKs ------------------------------------------------------------------------------------

    def _segment_taken(self, conn: Connection, frame: Frame, ack_now: bool) -> None:
        """The ACK rules for a data segment taken: at once on PSH / RCVMDL completion / every
        second segment when it is full-sized, else the delayed-ACK timer."""
        tcp = conn.tcp
        tcp["unacked"] = min(tcp["unacked"] + 1, 0xFF)
        full_sized = frame.field("payload_len") >= conn.ccb["route"]["rcv_mss"]
        if ack_now or (full_sized and tcp["unacked"] >= 2):
            self._send_ack(conn)
        elif conn.ack_deadline is None:
            conn.ack_deadline = self.nic.cycle + params.DELAYED_ACK_CYCLES

    def _window(self, conn: Connection) -> int:
        tcp = conn.tcp
        if conn.transfer["posted"]:
            return tcp["rcv_buf"]
        return tcp["rcv_buf"] - tcp["rcv_unconsumed"]

    def _window_opened(self, conn: Connection) -> None:
        """An ACK at once when the right edge would move by rcv_mss, or half of rcv_buf."""
        if conn.ccb is None:
            return
        tcp = conn.tcp
        edge = (tcp["rcv_nxt"] + self._window(conn)) & _MASK32
        opening = (edge - tcp["rcv_adv"]) & _MASK32
        threshold = min(conn.ccb["route"]["rcv_mss"], tcp["rcv_buf"] // 2)
        if _after(edge, tcp["rcv_adv"]) and opening >= max(1, threshold):
            self._send_ack(conn)

    def _send_ack(self, conn: Connection) -> None:
        tcp, route, tuple_fields = conn.tcp, conn.ccb["route"], conn.tuple
        edge = (tcp["rcv_nxt"] + self._window(conn)) & _MASK32
        if _after(edge, tcp["rcv_adv"]):
            tcp["rcv_adv"] = edge
        window = min(((tcp["rcv_adv"] - tcp["rcv_nxt"]) & _MASK32) >> route["rcv_wscale"],
                     0xFFFF)
        ipv6 = tuple_fields["ipv6"]
        address_mask = (1 << (128 if ipv6 else 32)) - 1
        request = {
            "local_mac": route["local_mac"], "remote_mac": route["remote_mac"],
            "vlan": route["vlan"], "vlan_tci": route["vlan_tci"], "ipv6": ipv6,
            "local_ip": tuple_fields["local_ip"] & address_mask,
            "remote_ip": tuple_fields["remote_ip"] & address_mask,
            "ttl": route["ttl"], "tos": route["tos"], "ip_id": tcp["ip_id"],
            "local_port": tuple_fields["local_port"], "remote_port": tuple_fields["remote_port"],
            "seq": tcp["snd_nxt"], "ack": tcp["rcv_nxt"], "flags": TcpFlags.ACK.value,
            "window": window, "timestamps": route["timestamps"], "ts_val": tcp["ts_val"],
            "ts_ecr": tcp["ts_recent"],
        }
        if not ipv6:
            tcp["ip_id"] = (tcp["ip_id"] + 1) & 0xFFFF
        tcp["unacked"] = tcp["ack_now"] = 0
        conn.ack_deadline = None
        conn.ccb["stats"]["acks"] += 1
        self._count("acks_sent")
        self.ack_requests.append(request)
        self.nic.send_frame(ack_frame(request))

    def next_ack_deadline(self) -> int | None:
        return min((conn.ack_deadline for conn in self.connections.values()
                    if conn.ack_deadline is not None), default=None)

    def fire_ack_timers(self, cycle: int) -> None:
        """Send the ACK of every connection whose delayed-ACK timer ran out by ``cycle``."""
        for conn in list(self.connections.values()):
            if conn.ack_deadline is not None and conn.ack_deadline <= cycle:
                self._send_ack(conn)

    # -- Flush -----------------------------------------------------------------------------------

    def _flush(self, conn: Connection, reason: FlushReason, frames: list[Frame]) -> None:
        """Return ``conn`` to the host: write its Ccb back, pass ``frames`` (in arrival order)
        and its queue to the slow path, delete its table entry, post FLUSH."""
        frames = [*frames, *self._unqueue_all(conn)]
        handle = placed = 0
        conn.state = ConnState.FLUSHING
        if conn.ccb is not None:
            if conn.transfer["posted"]:
                handle, placed = conn.transfer["handle"], conn.transfer["placed"]
            self._write_back(conn)
        for frame in frames:
            self.nic.to_slow_path(frame)
        self._count("to_slow", len(frames))
        self.table.delete(conn.key)
        del self.connections[conn.conn_nbr]
        self._count("connections", -1)
        self._count("flushes")
        self.counters["flush_reason"][reason.value] += 1
        self.nic.post_rx_event(kind=EventKind.FLUSH.value, ring=RingId.COMMAND.value,
                               index=handle, length=len(frames), code=reason.value, tag=placed,
                               detail=conn.conn_nbr)

    def _write_back(self, conn: Connection) -> None:
        ccb = conn.ccb
        ccb.update(tuple=conn.tuple, version=CCB_VERSION, state=ConnState.FLUSHING.value,
                   conn_nbr=conn.conn_nbr)
        ccb["transfer"]["queued"] = 0
        ccb["tcp"]["ack_now"] = 0
        self.nic.dma_write(conn.ccb_addr, pack(Ccb, ccb).to_bytes(CCB_BYTES, "little"))


def _key_of(tuple_fields: dict) -> FourTuple:
    """The table key of a Ccb's tuple (an IPv4 address in the low 32 bits)."""
    ipv6 = bool(tuple_fields["ipv6"])
    mask = (1 << (128 if ipv6 else 32)) - 1
    return FourTuple(tuple_fields["remote_ip"] & mask, tuple_fields["local_ip"] & mask,
                     tuple_fields["remote_port"], tuple_fields["local_port"], ipv6)


def _ccb_good(ccb: dict, key: FourTuple) -> bool:
    """HANDOUT2's checks of a Ccb (docs/fast_path.md "Model")."""
    route, tcp = ccb["route"], ccb["tcp"]
    return (ccb["version"] == CCB_VERSION
            and _key_of(ccb["tuple"]) == key
            and route["snd_wscale"] <= MAX_WSCALE and route["rcv_wscale"] <= MAX_WSCALE
            and 1 <= route["rcv_mss"] <= MAX_RCV_MSS
            and tcp["snd_una"] == tcp["snd_nxt"]
            and tcp["rcv_unconsumed"] <= tcp["rcv_buf"])
