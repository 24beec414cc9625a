"""A small TCP endpoint for the host's slow path, speaking whole Ethernet II frames, IPv4 and IPv6.

`TcpStack` is one host (a MAC, an IPv4 address, an IPv6 address) running a subset of TCP, readable
rather than fast, with a sockets-like API: :meth:`TcpStack.listen` / :meth:`Listener.accept`,
:meth:`TcpStack.connect`, :meth:`Connection.send` / :meth:`Connection.recv` /
:meth:`Connection.close`. It knows nothing of the NIC: frames leave through ``send_frame`` and
arrive through :meth:`TcpStack.receive_frame`, and time is whatever ``clock()`` returns (seconds,
or simulated cycles scaled to seconds), advanced by whoever calls :meth:`TcpStack.poll`. It uses no
threads, no wall clock and no sleeping, so tests and cocotb drive it deterministically. It is meant
to be a peer a Linux kernel accepts with its default settings.

What it does:

- IPv4 and IPv6 (hop limit 64, no extension headers), each optional; the IPv6 stack also owns the
  link-local address of its MAC (EUI-64). It takes frames to its MAC, to broadcast and to its IPv6
  multicast groups (all-nodes, solicited-node), IPv4 datagrams to its address and IPv6 packets to
  its addresses; it answers ARP and Neighbour Solicitations for them, ICMP and ICMPv6 echo
  requests, and resolves neighbours' MACs itself (`host_driver.neighbours`); everything else
  (other protocols, router and MLD messages, DAD probes for other addresses) is counted in
  ``frames_ignored`` and never answered;
- three-way handshake, active and passive, simultaneous open; the options Linux sends in its SYN,
  each agreed only when both SYNs carry it and each switchable off: MSS (the peer's; 536 over IPv4
  and 1220 over IPv6 without one), window scaling, SACK-permitted, timestamps (RFC 7323);
- in-order delivery with a cumulative ACK for every segment that carries data or FIN (no delayed
  ACK); a reassembly queue for segments after a gap (bounded by the receive window), answered by a
  duplicate ACK with SACK blocks when SACK was agreed (most recent block first, up to 3 with
  timestamps, 4 without; no D-SACK);
- send within the peer's advertised window and the congestion window (RFC 5681 slow start and
  congestion avoidance from RFC 6928's initial window; half the flight after a loss, one segment
  after a timeout; switchable off); retransmission timer after RFC 6298 (RTT estimate from
  timestamps when agreed, else with Karn's rule; exponential backoff); go-back-N on a timeout and on
  the third duplicate ACK, skipping what the peer SACKed (and, on a duplicate ACK, resending only
  the holes below the highest SACKed byte; the SACK scoreboard is forgotten after a second timeout
  in a row, in case the peer reneged); a one-byte probe when the timer expires while the
  peer's window is zero; PAWS (RFC 7323 §5) drops segments with an old timestamp;
- FIN close in both directions (FIN-WAIT-1/2, CLOSING, CLOSE-WAIT, LAST-ACK, TIME-WAIT shortened to
  ``time_wait``); RST received, RST sent for segments that match no connection, challenge ACKs for
  RSTs and SYNs in the window but not exactly at RCV.NXT, RSTs ignored in TIME-WAIT;
- per-stack and per-connection statistics (`TcpStats`). Malformed frames are ignored and counted,
  never raise.

What it leaves out: IP fragments and IPv6 extension headers (ignored), ICMP errors (no path MTU
discovery: the MSS stays what the SYNs agreed), urgent data, D-SACK, a receive buffer limit (the
advertised window is the fixed ``rcv_wnd``; received data waits in the connection until
:meth:`Connection.recv` takes it),
neighbour reachability states (cache entries never age), router discovery (every address is
on-link) and DAD of its own addresses. Without a persist timer, a peer whose window stays zero
through ``max_retries`` probes is given up like a dead one.
"""

# Ref: RFC 9293 (TCP); RFC 6298 (retransmission timer); RFC 5681 §2, §3.2 (duplicate ACKs, fast
# retransmit); RFC 6582 §3.2 (the "recover" point); RFC 5961 §3-4 (challenge ACKs); RFC 1337 §3
# (RST in TIME-WAIT); RFC 7323 (window scale, timestamps, PAWS); RFC 2018 (SACK); RFC 6675 §4
# (which holes to resend); RFC 8200 (IPv6), RFC 6691 (MSS and options); RFC 792, RFC 4443 §4
# (echo).

import dataclasses
import enum
import ipaddress
import random
import struct
from collections import deque
from collections.abc import Callable

from scapy.layers.inet import ICMP, IP, TCP
from scapy.layers.inet6 import ICMPv6EchoReply, IPv6
from scapy.layers.l2 import Ether
from scapy.packet import Raw
from scapy.utils import checksum

from host_driver.checksum import csum_ipv6_magic, csum_partial, csum_tcpudp_magic
from host_driver.neighbours import ETH_MIN_FRAME, Neighbours, link_local_address
from hw.layouts import IpProto, TcpFlags

__all__ = [
    "State", "TcpStats", "Segment", "Listener", "Connection", "TcpStack",
    "seq_add", "seq_diff",
]

SEQ_MOD = 1 << 32
#: The send MSS when the SYN has no MSS option. Ref: RFC 9293 §3.7.1; RFC 8200 §5 (1280 - 60).
DEFAULT_PEER_MSS = {4: 536, 6: 1220}
IPV6_EXTRA_HEADER = 20  # an IPv6 header is 20 bytes longer than IPv4's: the MSS is that much less
EPHEMERAL_PORTS = range(49152, 65536)  # RFC 6335 §6 dynamic ports
MAX_WSCALE = 14  # RFC 7323 §2.3
MAX_WINDOW = 0xFFFF
MAX_RCV_WND = 1 << 30  # RFC 7323 §2.3: 2**14 * 65535 ~ 1 GiB
ETHERTYPE_IPV4, ETHERTYPE_ARP, ETHERTYPE_IPV6 = 0x0800, 0x0806, 0x86DD
ICMPV4, ICMPV6 = 1, 58
HOP_LIMIT = 64  # IPv4 TTL and IPv6 hop limit of what we send (Linux's default)

# TCP option kinds. Ref: RFC 9293 §3.2, RFC 7323 §2-3, RFC 2018 §2-3.
OPT_END, OPT_NOP, OPT_MSS, OPT_WSCALE = 0, 1, 2, 3
OPT_SACK_PERMITTED, OPT_SACK, OPT_TIMESTAMP = 4, 5, 8
NOP = ("NOP", None)


def seq_add(seq: int, n: int) -> int:
    """``seq + n`` in the 32-bit sequence space."""
    return (seq + n) % SEQ_MOD


def seq_diff(a: int, b: int) -> int:
    """``a - b`` in the sequence space, as a signed number (RFC 9293 §3.4 comparisons)."""
    d = (a - b) % SEQ_MOD
    return d - SEQ_MOD if d >= SEQ_MOD // 2 else d


class State(enum.Enum):
    """Connection states. Ref: RFC 9293 §3.3.2."""

    CLOSED = "CLOSED"
    LISTEN = "LISTEN"
    SYN_SENT = "SYN-SENT"
    SYN_RECEIVED = "SYN-RECEIVED"
    ESTABLISHED = "ESTABLISHED"
    FIN_WAIT_1 = "FIN-WAIT-1"
    FIN_WAIT_2 = "FIN-WAIT-2"
    CLOSE_WAIT = "CLOSE-WAIT"
    CLOSING = "CLOSING"
    LAST_ACK = "LAST-ACK"
    TIME_WAIT = "TIME-WAIT"


#: States in which received text is delivered (RFC 9293 §3.10.7.4, seventh step).
RECEIVING = (State.ESTABLISHED, State.FIN_WAIT_1, State.FIN_WAIT_2)
#: States in which :meth:`Connection.send` queues data.
SENDING = (State.SYN_SENT, State.SYN_RECEIVED, State.ESTABLISHED, State.CLOSE_WAIT)


#: The control bits the stack acts on; URG, ECE and CWR are ignored on receipt.
_FLAGS_HANDLED = TcpFlags.FIN | TcpFlags.SYN | TcpFlags.RST | TcpFlags.PSH | TcpFlags.ACK


@dataclasses.dataclass
class TcpStats:
    """Counters of a stack (all its connections, plus what matches none) or one connection.

    Members
    -------
    segments_sent, segments_received : int
        TCP segments, retransmissions, pure ACKs and RSTs included.
    bytes_sent : int
        Payload bytes sent, retransmitted bytes included.
    bytes_received : int
        Payload bytes accepted in order (each byte counted once).
    retransmissions : int
        Segments sent again (data, SYN or FIN below the highest sequence number sent).
    timeouts, fast_retransmits : int
        Retransmission-timer expiries; go-back-N restarts on a third duplicate ACK.
    dup_acks_received : int
        Duplicate ACKs in the sense of RFC 5681 §2.
    dup_acks_sent : int
        ACKs sent for a data/FIN segment that was out of order or already received.
    dup_segments_received : int
        Data segments that carried only bytes already received (delivered or queued): one per
        segment the peer resent needlessly.
    out_of_order_queued : int
        Segments after a gap whose bytes went into the reassembly queue.
    out_of_order_dropped : int
        Data segments dropped because they started beyond the receive window.
    sack_blocks_sent : int
        SACK blocks in the ACKs sent.
    sacked_bytes_skipped : int
        Bytes a retransmission did not send again because the peer had SACKed them.
    paws_drops : int
        Segments dropped by PAWS (RFC 7323 §5: a timestamp older than TS.Recent).
    resets_sent, resets_received : int
        RST segments.
    checksum_errors : int
        Frames dropped for a bad IPv4 header, TCP, ICMP or ICMPv6 checksum.
    frames_ignored : int
        Frames not for this host (another MAC or address), of an unknown kind (not ARP, IPv4 or
        IPv6; IP protocols other than TCP and ICMP), IP fragments, malformed frames, and ICMP /
        neighbour-discovery messages the stack does not answer (stack only).
    arp_replies_sent, neighbour_adverts_sent : int
        ARP replies and Neighbour Advertisements for our addresses (stack only).
    neighbour_requests_sent : int
        ARP requests and Neighbour Solicitations of our own resolutions, retries included (stack
        only).
    neighbour_drops : int
        Frames dropped while waiting for a neighbour's MAC: the queue overflowed or the
        resolution gave up (stack only).
    resolution_failures : int
        Resolutions that got no answer after every try (stack only).
    pings, echo_replies_sent : int
        ICMP and ICMPv6 echo requests received for our addresses; replies sent (stack only).
    """

    segments_sent: int = 0
    segments_received: int = 0
    bytes_sent: int = 0
    bytes_received: int = 0
    retransmissions: int = 0
    timeouts: int = 0
    fast_retransmits: int = 0
    dup_acks_received: int = 0
    dup_acks_sent: int = 0
    dup_segments_received: int = 0
    out_of_order_queued: int = 0
    out_of_order_dropped: int = 0
    sack_blocks_sent: int = 0
    sacked_bytes_skipped: int = 0
    paws_drops: int = 0
    resets_sent: int = 0
    resets_received: int = 0
    checksum_errors: int = 0
    frames_ignored: int = 0
    arp_replies_sent: int = 0
    neighbour_adverts_sent: int = 0
    neighbour_requests_sent: int = 0
    neighbour_drops: int = 0
    resolution_failures: int = 0
    pings: int = 0
    echo_replies_sent: int = 0


@dataclasses.dataclass(frozen=True)
class Segment:
    """A received TCP segment with the addresses it came from and the options it carried.

    ``wscale``, ``sack_permitted`` and ``mss`` are read only from SYNs; ``tsval``/``tsecr`` are
    None without a timestamp option; ``sack_blocks`` are ``(left, right)`` pairs.
    """

    src_mac: str
    src_ip: str
    dst_ip: str
    sport: int
    dport: int
    seq: int
    ack: int
    flags: TcpFlags
    window: int
    payload: bytes = b""
    mss: int | None = None
    wscale: int | None = None
    sack_permitted: bool = False
    tsval: int | None = None
    tsecr: int | None = None
    sack_blocks: tuple[tuple[int, int], ...] = ()

    @property
    def length(self) -> int:
        """SEG.LEN: payload bytes plus one for SYN and one for FIN (RFC 9293 §3.4)."""
        return len(self.payload) + bool(self.flags & TcpFlags.SYN) + bool(self.flags & TcpFlags.FIN)


class Listener:
    """A passive open on ``port`` (RFC 9293 §3.10.1), for IPv4 and IPv6; made by
    :meth:`TcpStack.listen`.

    Members
    -------
    port : int
        The local port (read-only).
    """

    def __init__(self, stack: "TcpStack", port: int):
        self._stack = stack
        self._port = port
        self._ready: deque[Connection] = deque()

    @property
    def port(self) -> int:
        return self._port

    def accept(self) -> "Connection | None":
        """The oldest connection that completed its handshake and is not yet accepted, or None."""
        if not self._ready:
            return None
        conn = self._ready.popleft()
        conn._listener = None
        return conn

    def close(self) -> None:
        """Stop listening; connections not yet accepted are aborted (RST)."""
        self._stack._listeners.pop(self._port, None)
        self._ready.clear()
        for conn in self._stack.connections:
            if conn._listener is self:
                conn.abort()

    def _segment_arrives(self, seg: Segment) -> None:
        # Ref: RFC 9293 §3.10.7.2 (LISTEN). Data on the SYN is not kept: the peer sends it again.
        if seg.flags & TcpFlags.RST:
            return
        if seg.flags & TcpFlags.ACK:
            self._stack._send_reset(seg)
            return
        if seg.flags & TcpFlags.SYN:
            self._stack._neighbours.learn(seg.src_ip, seg.src_mac)
            conn = self._stack._new_connection(self._port, seg.src_mac, seg.src_ip, seg.sport,
                                               seg.dst_ip)
            conn._listener = self
            conn._passive_open(seg)


class Connection:
    """One TCP connection: the TCB of RFC 9293 §3.3.1 and its user calls.

    Made by :meth:`TcpStack.connect` or returned by :meth:`Listener.accept`. Sequence numbers are
    32-bit and compared with :func:`seq_diff`.

    Members
    -------
    local_port, local_ip, remote_mac, remote_ip, remote_port : int, str, str, str, int
        The connection's addresses (read-only; IP addresses normalised). ``remote_mac`` is None
        until the neighbour's MAC is resolved.
    family : int
        4 or 6 (read-only).
    state : State
        The RFC 9293 state (read-only). A connection that reached CLOSED stays CLOSED.
    error : str or None
        Why the connection closed abnormally ("connection refused", "connection reset",
        "connection timed out", "host unreachable"), or None.
    stats : TcpStats
        This connection's counters.
    send_queue, recv_queue : int
        Bytes given to :meth:`send` and not yet acknowledged; bytes received and not yet taken by
        :meth:`recv` (read-only).
    eof : bool
        The peer's FIN arrived and :meth:`recv` has returned everything before it (read-only).
    snd_wscale, rcv_wscale : int or None
        The agreed window shifts (the peer's, applied to the windows it sends; ours), or None
        when window scaling was not agreed.
    sack_permitted, timestamps : bool
        Whether SACK and timestamps were agreed.
    iss, irs, snd_una, snd_nxt, snd_max, snd_wnd, rcv_nxt, send_mss, rto : int, float
        The TCB variables (RFC 9293 §3.3.1; ``snd_max`` is the highest sequence number sent, which
        go-back-N keeps apart from ``snd_nxt``; ``snd_wnd`` is scaled). ``send_mss`` is the
        agreed MSS; a segment's payload is that minus its TCP option bytes (RFC 6691). Public for
        statistics and for handing the connection to the NIC; change them only if you are the
        NIC's handout code.
    ts_recent : int
        TS.Recent (RFC 7323 §4.3), when timestamps were agreed.
    cwnd, ssthresh : int
        The congestion window (None until the first segment is sent) and the slow-start
        threshold, in bytes (RFC 5681).
    srtt : float or None
        The smoothed RTT (RFC 6298), None before the first sample (read-only).
    held : bool
        The NIC has the connection (host_driver/offload.py): the stack sends nothing and runs no
        timer for it until :meth:`offload_restore`; :attr:`quiescent`, :attr:`rcv_adv`,
        :attr:`rcv_buffer`, :meth:`offload_deliver`, :meth:`offload_unread` and
        :meth:`offload_take` are the offload's other hooks.
    """

    def __init__(self, stack: "TcpStack", local_port, remote_mac, remote_ip, remote_port, iss,
                 local_ip):
        self._stack = stack
        self._local_port = local_port
        self._local_ip = local_ip
        self._remote_mac = remote_mac
        self._remote_ip = remote_ip
        self._remote_port = remote_port
        self._family = 6 if ":" in remote_ip else 4
        self._state = State.CLOSED
        self._listener: Listener | None = None
        self.error: str | None = None
        self.stats = TcpStats()
        # Options (RFC 7323, RFC 2018): offered in our SYN, agreed once the peer's SYN arrives.
        self._agreed = False
        self.snd_wscale: int | None = None
        self.rcv_wscale: int | None = None
        self.sack_permitted = False
        self.timestamps = False
        self.ts_recent = 0
        self._last_ack_sent = 0
        # Send side. Queued data starts at sequence number _tx_seq (the byte after the SYN while
        # nothing is acknowledged); the FIN, once queued, follows the last byte.
        self.iss = self.snd_una = self.snd_nxt = self.snd_max = iss
        self.snd_wnd = self.snd_wl1 = self.snd_wl2 = 0
        self.send_mss = DEFAULT_PEER_MSS[self._family]
        self._tx = bytearray()
        self._tx_seq = seq_add(iss, 1)
        self._fin_queued = False
        self._sacked: list[tuple[int, int]] = []  # SACK scoreboard: [left, right) above SND.UNA
        self._rtx_limit: int | None = None  # a SACK recovery resends holes below this only
        self._rtx_high = iss  # what a SACK recovery resent up to (RFC 6675 HighRxt)
        # Receive side. The reassembly queue holds [seq, data, stamp] blocks after RCV.NXT,
        # disjoint and not touching; the stamp orders them by the latest segment they took.
        self.irs = self.rcv_nxt = 0
        self._rx = bytearray()
        self._fin_received = False
        self._ack_now = False
        self._ooo: list[list] = []
        self._ooo_fin: int | None = None
        self._ooo_stamp = 0
        # Timers (RFC 6298) and loss recovery (RFC 5681, RFC 6582).
        self.rto = stack._rto_initial
        self._srtt: float | None = None
        self._rttvar = 0.0
        self._rtt_seq: int | None = None
        self._rtt_start = 0.0
        self._rtx_deadline: float | None = None
        self._time_wait_deadline: float | None = None
        self._retries = 0
        self._dup_acks = 0
        self._recover = iss
        # Congestion control (RFC 5681): the congestion window in bytes, starting at RFC 6928's
        # initial window once the MSS is known (see _max_payload), and the slow-start threshold.
        self.cwnd: int | None = None
        self.ssthresh = 1 << 30
        # Offload (host_driver/offload.py): while True the NIC owns the receive side; the stack
        # sends nothing and runs no timer for the connection (see :meth:`offload_restore`).
        self.held = False

    def __repr__(self):
        return (
            f"<Connection :{self._local_port} -> {self._remote_ip}:{self._remote_port} "
            f"{self._state.value}>"
        )

    @property
    def local_port(self) -> int:
        return self._local_port

    @property
    def local_ip(self) -> str:
        return self._local_ip

    @property
    def remote_mac(self) -> str | None:
        return self._remote_mac

    @property
    def remote_ip(self) -> str:
        return self._remote_ip

    @property
    def remote_port(self) -> int:
        return self._remote_port

    @property
    def family(self) -> int:
        return self._family

    @property
    def state(self) -> State:
        return self._state

    @property
    def srtt(self) -> float | None:
        return self._srtt

    @property
    def send_queue(self) -> int:
        return len(self._tx)

    @property
    def recv_queue(self) -> int:
        return len(self._rx)

    @property
    def eof(self) -> bool:
        return self._fin_received and not self._rx

    # -- User calls (RFC 9293 §3.10.2-3.10.5) ------------------------------------------------

    def send(self, data: bytes) -> int:
        """Queue ``data`` for sending and send what the window allows; returns ``len(data)``.

        Raises `BrokenPipeError` once :meth:`close` was called or the connection closed.
        """
        if self._state not in SENDING or self._fin_queued:
            reason = self.error or f"closed, in {self._state.value}"
            raise BrokenPipeError(f"cannot send: connection {reason}")
        self._tx += data
        self._output()
        return len(data)

    def recv(self, max_bytes: int) -> bytes:
        """Up to ``max_bytes`` received bytes, in order; ``b""`` when none are waiting."""
        if max_bytes <= 0:
            raise ValueError(f"max_bytes must be positive, not {max_bytes}")
        data = bytes(self._rx[:max_bytes])
        del self._rx[:max_bytes]
        return data

    def close(self) -> None:
        """Send a FIN after the queued data (RFC 9293 §3.10.4); later calls do nothing."""
        if self._state is State.SYN_SENT:
            self._set_state(State.CLOSED)
        elif self._state in SENDING and not self._fin_queued:
            # In SYN-RECEIVED the FIN waits for the handshake (see _ack_arrives).
            self._fin_queued = True
            if self._state is State.ESTABLISHED:
                self._set_state(State.FIN_WAIT_1)
            elif self._state is State.CLOSE_WAIT:
                self._set_state(State.LAST_ACK)
            self._output()

    def abort(self) -> None:
        """Send a RST if synchronized and go to CLOSED at once (RFC 9293 §3.10.5)."""
        if self._state not in (State.CLOSED, State.SYN_SENT, State.TIME_WAIT):
            self._transmit(self.snd_nxt, TcpFlags.RST)
            self._count("resets_sent")
        self._set_state(State.CLOSED)

    # -- Offload (host_driver/offload.py, docs/host_driver.md "Offload") ------------------------

    @property
    def rcv_adv(self) -> int:
        """The right edge of the receive window advertised by the last ACK sent (RCV.NXT then
        plus the window, which is fixed here)."""
        return seq_add(self._last_ack_sent, self._rcv_window)

    @property
    def rcv_buffer(self) -> int:
        """The receive window this connection grants, in bytes (the scaled window field)."""
        return self._rcv_window

    @property
    def quiescent(self) -> bool:
        """Established, nothing unacknowledged or waiting to be sent, no FIN either way, nothing
        in the reassembly queue, no ACK owed: what a handout to the NIC needs."""
        return (self._state is State.ESTABLISHED and self.snd_una == self.snd_nxt == self.snd_max
                and not self._tx and not self._fin_queued and not self._fin_received
                and not self._ooo and self._ooo_fin is None and not self._ack_now
                and self._rtx_deadline is None and self._remote_mac is not None)

    def offload_deliver(self, data: bytes) -> None:
        """Bytes the NIC received for the connection into the receive queue (:meth:`recv` returns
        them); RCV.NXT is the NIC's until :meth:`offload_restore`."""
        self._rx += data

    def offload_unread(self, data: bytes) -> None:
        """Put ``data`` back at the front of the receive queue."""
        self._rx[:0] = data

    def offload_take(self, max_bytes: int) -> bytes:
        """Take up to ``max_bytes`` from the receive queue (as :meth:`recv`)."""
        return self.recv(max_bytes)

    def offload_restore(self, *, rcv_nxt: int, snd_una: int, snd_nxt: int, snd_wnd: int,
                        snd_wl1: int, snd_wl2: int, ts_recent: int, ack_owed: bool) -> None:
        """Take the connection back from the NIC (a flush): its TCB variables as the NIC left
        them. The stack's next segment carries the NIC's RCV.NXT; ``ack_owed``: the NIC had
        taken data it had not acknowledged yet."""
        self.rcv_nxt = self._last_ack_sent = rcv_nxt
        if seq_diff(snd_una, self.snd_una) > 0:
            self._new_ack(snd_una)
        if seq_diff(snd_nxt, self.snd_nxt) > 0:
            self.snd_nxt = snd_nxt
        self.snd_wnd, self.snd_wl1, self.snd_wl2 = snd_wnd, snd_wl1, snd_wl2
        if self.timestamps:
            self.ts_recent = ts_recent
        self._ack_now = self._ack_now or ack_owed

    # -- Segment arrival (RFC 9293 §3.10.7) --------------------------------------------------

    def _passive_open(self, seg: Segment) -> None:
        # Ref: RFC 9293 §3.10.7.2, third check: a SYN on a listening port.
        self.stats.segments_received += 1
        self.irs = seg.seq
        self.rcv_nxt = seq_add(seg.seq, 1)
        self._agree_options(seg)
        self._update_window(seg)
        self._set_state(State.SYN_RECEIVED)
        self._output()

    def _segment_arrives(self, seg: Segment) -> None:
        self.stats.segments_received += 1
        self.stats.resets_received += bool(seg.flags & TcpFlags.RST)
        if self._state is State.SYN_SENT:
            self._syn_sent_arrives(seg)
        else:
            self._synchronized_arrives(seg)
        self._output()

    def _syn_sent_arrives(self, seg: Segment) -> None:
        # Ref: RFC 9293 §3.10.7.3.
        has_ack = bool(seg.flags & TcpFlags.ACK)
        ack_ok = seq_diff(seg.ack, self.iss) > 0 and seq_diff(seg.ack, self.snd_nxt) <= 0
        if has_ack and not ack_ok:
            self._stack._send_reset(seg)
            return
        if seg.flags & TcpFlags.RST:
            if has_ack:
                self._closed_by_peer("connection refused")
            return
        if not seg.flags & TcpFlags.SYN:
            return
        self.irs = seg.seq
        self.rcv_nxt = seq_add(seg.seq, 1)
        self._agree_options(seg)
        self._update_window(seg)
        self._ack_now = True
        if has_ack:
            self._new_ack(seg.ack, seg.tsecr)
            self._set_state(State.ESTABLISHED)
        else:
            # Simultaneous open: answer with a SYN-ACK (sent again from the ISS).
            self.snd_nxt = self.iss
            self._set_state(State.SYN_RECEIVED)

    def _synchronized_arrives(self, seg: Segment) -> None:
        # Ref: RFC 9293 §3.10.7.4, the steps in order, with RFC 7323 §5.3 R1-R3 (PAWS, then
        # TS.Recent) around the first.
        if (self.timestamps and seg.tsval is not None and not seg.flags & TcpFlags.RST
                and seq_diff(seg.tsval, self.ts_recent) < 0):
            self._count("paws_drops")
            self._ack_now = True
            return
        # First: the sequence number must fall in the receive window.
        if not self._acceptable(seg):
            if not seg.flags & TcpFlags.RST:
                self._ack_now = True
                if seg.length:
                    self._count("dup_acks_sent")
                    self._count_unacceptable(seg)
                if self._state is State.TIME_WAIT and seg.flags & TcpFlags.FIN:
                    self._time_wait_deadline = self._stack._clock() + self._stack._time_wait
            return
        if (self.timestamps and seg.tsval is not None
                and seq_diff(seg.seq, self._last_ack_sent) <= 0
                and seq_diff(seg.tsval, self.ts_recent) >= 0):
            self.ts_recent = seg.tsval
        seg = self._trim(seg)
        # Second: RST. Only one exactly at RCV.NXT resets; others get a challenge ACK
        # (Ref: RFC 5961 §3.2). In TIME-WAIT, where both FINs are acknowledged, RSTs are ignored
        # (Ref: RFC 1337 §3): one there is the answer to a stray duplicate, not an error.
        if seg.flags & TcpFlags.RST:
            if self._state is State.TIME_WAIT:
                return
            if seg.seq == self.rcv_nxt:
                self._closed_by_peer("connection reset")
            else:
                self._ack_now = True
            return
        # Fourth: a SYN in a synchronized state gets a challenge ACK (Ref: RFC 5961 §4.2).
        if seg.flags & TcpFlags.SYN:
            self._ack_now = True
            return
        # Fifth: ACK.
        if not seg.flags & TcpFlags.ACK or not self._ack_arrives(seg):
            return
        # Seventh and eighth: text and FIN.
        self._text_arrives(seg)

    def _count_unacceptable(self, seg: Segment) -> None:
        if not seg.payload:
            return
        if seq_diff(seq_add(seg.seq, seg.length), self.rcv_nxt) <= 0:
            self._count("dup_segments_received")
        elif seq_diff(seg.seq, self.rcv_nxt) >= self._rcv_window:
            self._count("out_of_order_dropped")

    @property
    def _rcv_window(self) -> int:
        """The receive window as the peer sees it: the window field we send, scaled."""
        return self._window_field() << (self.rcv_wscale or 0)

    def _window_field(self, syn: bool = False) -> int:
        # Ref: RFC 7323 §2.2: the window in a SYN is never scaled.
        shift = 0 if syn else self.rcv_wscale or 0
        return min(self._stack._rcv_wnd >> shift, MAX_WINDOW)

    def _acceptable(self, seg: Segment) -> bool:
        # Ref: RFC 9293 §3.10.7.4, first check (the receive window is never zero here). A segment
        # without text is also accepted exactly at the right edge, as BSD and Linux do: a peer
        # that filled our window sends its pure ACKs there, and dropping them would lose the ACK.
        window = self._rcv_window
        start = seq_diff(seg.seq, self.rcv_nxt)
        if seg.length == 0:
            return 0 <= start <= window
        end = start + seg.length - 1
        return 0 <= start < window or 0 <= end < window

    def _trim(self, seg: Segment) -> Segment:
        """``seg`` without what precedes RCV.NXT or lies beyond the window (RFC 9293 §3.10.7.4)."""
        flags, payload, seq = seg.flags, seg.payload, seg.seq
        before = seq_diff(self.rcv_nxt, seq)
        if before > 0:
            if flags & TcpFlags.SYN:
                flags &= ~TcpFlags.SYN
                before -= 1
            payload = payload[before:]
            seq = self.rcv_nxt
        room = self._rcv_window - seq_diff(seq, self.rcv_nxt)
        if len(payload) >= room and flags & TcpFlags.FIN:
            flags &= ~TcpFlags.FIN
        payload = payload[:room]
        return dataclasses.replace(seg, seq=seq, flags=flags, payload=payload)

    def _ack_arrives(self, seg: Segment) -> bool:
        """Process SEG.ACK (RFC 9293 §3.10.7.4, fifth step); False if the segment is done with."""
        if self._state is State.SYN_RECEIVED:
            if seq_diff(seg.ack, self.snd_una) <= 0 or seq_diff(seg.ack, self.snd_max) > 0:
                self._stack._send_reset(seg)
                return False
            self._set_state(State.FIN_WAIT_1 if self._fin_queued else State.ESTABLISHED)
        if seq_diff(seg.ack, self.snd_max) > 0:
            self._ack_now = True  # acknowledges something not yet sent
            return False
        advance = seq_diff(seg.ack, self.snd_una)
        if advance > 0:
            self._new_ack(seg.ack, seg.tsecr)
        if self.sack_permitted and seg.sack_blocks:
            self._sack_arrives(seg.sack_blocks)
        if (advance == 0 and self.snd_max != self.snd_una and not seg.length
                and self._scaled_window(seg) == self.snd_wnd):
            self._duplicate_ack()
        if advance >= 0 and (seq_diff(seg.seq, self.snd_wl1) > 0
                             or (seg.seq == self.snd_wl1 and seq_diff(seg.ack, self.snd_wl2) >= 0)):
            self._update_window(seg)
        fin_acked = self._fin_queued and self.snd_una == self._send_end
        if fin_acked and self._state is State.FIN_WAIT_1:
            self._set_state(State.FIN_WAIT_2)
        elif fin_acked and self._state is State.CLOSING:
            self._set_state(State.TIME_WAIT)
        elif fin_acked and self._state is State.LAST_ACK:
            self._set_state(State.CLOSED)
            return False
        return True

    def _text_arrives(self, seg: Segment) -> None:
        # Ref: RFC 9293 §3.10.7.4, seventh (text) and eighth (FIN) steps.
        if self._state not in RECEIVING or not seg.length:
            return
        self._ack_now = True
        if seg.seq != self.rcv_nxt:
            # A gap before this segment: keep it for later, send a duplicate ACK (with SACK).
            self._count("dup_acks_sent")
            if self._queue_out_of_order(seg):
                self._count("out_of_order_queued")
            else:
                self._count("dup_segments_received")
            return
        fin = bool(seg.flags & TcpFlags.FIN)
        self._deliver(seg.payload)
        fin = self._pull_reassembled() or fin
        if fin:
            self.rcv_nxt = seq_add(self.rcv_nxt, 1)
            self._fin_received = True
            self._ooo.clear()
            if self._state is State.ESTABLISHED:
                self._set_state(State.CLOSE_WAIT)
            elif self._state is State.FIN_WAIT_1:
                self._set_state(State.CLOSING)  # our FIN is not acknowledged yet
            else:
                self._set_state(State.TIME_WAIT)

    def _deliver(self, data: bytes) -> None:
        self._rx += data
        self.rcv_nxt = seq_add(self.rcv_nxt, len(data))
        self._count("bytes_received", len(data))

    # -- Reassembly queue (RFC 9293 §3.10.7.4 "segments ... held for later processing") -----

    def _queue_out_of_order(self, seg: Segment) -> bool:
        """Merge ``seg`` (after RCV.NXT) into the reassembly queue; False if it brought no new
        byte."""
        start = seq_diff(seg.seq, self.rcv_nxt)
        data = bytearray(seg.payload)
        end = start + len(data)
        new = False
        if seg.flags & TcpFlags.FIN and self._ooo_fin is None:
            self._ooo_fin, new = seq_add(seg.seq, len(data)), True
        if not data:
            return new
        self._ooo_stamp += 1
        kept = []
        for block in self._ooo:
            lo = seq_diff(block[0], self.rcv_nxt)
            hi = lo + len(block[1])
            if hi < start or lo > end:
                kept.append(block)
                continue
            # Blocks are disjoint and do not touch: bytes all held already lie in one block.
            new = new or lo > start or hi < end
            base = min(lo, start)
            merged = bytearray(max(hi, end) - base)
            merged[lo - base:hi - base] = block[1]
            merged[start - base:end - base] = data
            start, end, data = base, max(hi, end), merged
        if len(kept) == len(self._ooo):
            new = True  # it touched no block
        kept.append([seq_add(self.rcv_nxt, start), data, self._ooo_stamp])
        kept.sort(key=lambda b: seq_diff(b[0], self.rcv_nxt))
        self._ooo = kept
        return new

    def _pull_reassembled(self) -> bool:
        """Deliver the queued bytes that now follow RCV.NXT; True if the FIN was reached."""
        while self._ooo and seq_diff(self._ooo[0][0], self.rcv_nxt) <= 0:
            seq, data, _ = self._ooo.pop(0)
            self._deliver(bytes(data[seq_diff(self.rcv_nxt, seq):]))
        return self._ooo_fin is not None and self._ooo_fin == self.rcv_nxt

    def _sack_blocks(self) -> list[tuple[int, int]]:
        """The SACK blocks for an ACK: the queued blocks, most recently changed first."""
        if not self.sack_permitted or not self._ooo:
            return []
        newest = sorted(self._ooo, key=lambda b: -b[2])[: 3 if self.timestamps else 4]
        return [(b[0], seq_add(b[0], len(b[1]))) for b in newest]

    # -- Acknowledgements and the retransmission timer ---------------------------------------

    def _new_ack(self, ack: int, tsecr: int | None = None) -> None:
        """SND.UNA moves to ``ack``: drop acknowledged data, sample the RTT, restart the timer,
        open the congestion window."""
        self._grow_cwnd(seq_diff(ack, self.snd_una))
        acked_data = min(max(seq_diff(ack, self._tx_seq), 0), len(self._tx))
        del self._tx[:acked_data]
        self._tx_seq = seq_add(self._tx_seq, acked_data)
        self.snd_una = ack
        if seq_diff(ack, self.snd_nxt) > 0:
            self.snd_nxt = ack  # ACK of data sent before a go-back-N restart
        self._sacked = [(max(lo, ack, key=lambda s: seq_diff(s, ack)), hi)
                        for lo, hi in self._sacked if seq_diff(hi, ack) > 0]
        if self._rtx_limit is not None and seq_diff(ack, self._rtx_limit) >= 0:
            self._rtx_limit = None
        self._dup_acks = 0
        self._retries = 0
        now = self._stack._clock()
        if self.timestamps and tsecr:
            # Ref: RFC 7323 §4.1: the echoed timestamp times the segment it came back for, even a
            # retransmitted one, so Karn's rule is not needed.
            self._rtt_sample(((self._stack._ts_now() - tsecr) % SEQ_MOD) / 1000)
            self._rtt_seq = None
        elif self._rtt_seq is not None and seq_diff(ack, self._rtt_seq) >= 0:
            self._rtt_sample(now - self._rtt_start)
            self._rtt_seq = None
        elif self._srtt is not None:
            # Forward progress ends the exponential backoff at once, as Linux does, instead of
            # waiting for an RTT sample (Karn's rule takes none while resent data is acknowledged).
            self._update_rto()
        # Ref: RFC 6298 §5.2-5.3.
        self._rtx_deadline = None if self.snd_una == self.snd_max else now + self.rto

    # -- Congestion control (RFC 5681) ---------------------------------------------------------

    @property
    def _max_payload(self) -> int:
        """SMSS: the largest payload a segment carries (the MSS less our options)."""
        return max(1, self.send_mss - self._option_bytes())

    def _congestion_window(self) -> int:
        """The congestion window in bytes (unbounded without congestion control)."""
        if not self._stack._congestion_control:
            return 1 << 31
        if self.cwnd is None:
            # Ref: RFC 6928 §2: IW = min(10 * SMSS, max(2 * SMSS, 14600)).
            smss = self._max_payload
            self.cwnd = min(10 * smss, max(2 * smss, 14600))
        return self.cwnd

    def _grow_cwnd(self, acked: int) -> None:
        # Ref: RFC 5681 §3.1: slow start adds up to SMSS per ACK (RFC 3465's L = 1), congestion
        # avoidance about SMSS per round trip.
        if acked <= 0 or not self._stack._congestion_control:
            return
        cwnd, smss = self._congestion_window(), self._max_payload
        if cwnd < self.ssthresh:
            self.cwnd = cwnd + min(acked, smss)
        else:
            self.cwnd = cwnd + max(1, smss * smss // cwnd)

    def _congestion_event(self, timeout: bool) -> None:
        # Ref: RFC 5681 §3.1 equation (4) and §3.2: half the flight size, at least 2 SMSS; the
        # loss window (1 SMSS) after a timeout, ssthresh after a fast retransmit (no inflation:
        # the recovery below resends from SND.UNA).
        if not self._stack._congestion_control:
            return
        smss = self._max_payload
        self.ssthresh = max(seq_diff(self.snd_max, self.snd_una) // 2, 2 * smss)
        self.cwnd = smss if timeout else self.ssthresh

    def _sack_arrives(self, blocks) -> None:
        """Add the peer's SACK blocks to the scoreboard (RFC 2018 §5: only as hints; the data
        stays queued until cumulatively acknowledged)."""
        ranges = list(self._sacked)
        data_end = seq_add(self._tx_seq, len(self._tx))  # a FIN is never taken as SACKed
        for lo, hi in blocks:
            if (seq_diff(hi, lo) > 0 and seq_diff(lo, self.snd_una) >= 0
                    and seq_diff(hi, self.snd_max) <= 0 and seq_diff(hi, data_end) <= 0):
                ranges.append((lo, hi))
        ranges.sort(key=lambda r: seq_diff(r[0], self.snd_una))
        merged: list[tuple[int, int]] = []
        for lo, hi in ranges:
            if merged and seq_diff(lo, merged[-1][1]) <= 0:
                if seq_diff(hi, merged[-1][1]) > 0:
                    merged[-1] = (merged[-1][0], hi)
            else:
                merged.append((lo, hi))
        self._sacked = merged

    def _rtt_sample(self, rtt: float) -> None:
        # Ref: RFC 6298 §2.2-2.4 (alpha 1/8, beta 1/4, K 4), bounded by rto_min and rto_max.
        if self._srtt is None:
            self._srtt, self._rttvar = rtt, rtt / 2
        else:
            self._rttvar = 0.75 * self._rttvar + 0.25 * abs(self._srtt - rtt)
            self._srtt = 0.875 * self._srtt + 0.125 * rtt
        self._update_rto()

    def _update_rto(self) -> None:
        stack = self._stack
        self.rto = min(max(self._srtt + 4 * self._rttvar, stack._rto_min), stack._rto_max)

    def _duplicate_ack(self) -> None:
        # Ref: RFC 5681 §3.2 (third duplicate ACK) with RFC 6582 §3.2's "recover" point, so that
        # the duplicates caused by one go-back-N restart do not start another. With a SACK
        # scoreboard only the holes below the highest SACKed byte are resent (RFC 6675 §4: the
        # data above it may still be in flight), then sending resumes at SND.MAX.
        self._count("dup_acks_received")
        self._dup_acks += 1
        if self._dup_acks == 3 and seq_diff(self.snd_una, self._recover) >= 0:
            self._count("fast_retransmits")
            self._congestion_event(timeout=False)
            self._go_back()
            if self._sacked:
                self._rtx_limit = self._sacked[-1][1]
        elif (self._dup_acks > 3 and self._sacked and self._rtx_limit is None
              and self.snd_nxt == self.snd_max and seq_diff(self._rtx_high, self.snd_una) >= 0
              and seq_diff(self._sacked[-1][1], self._rtx_high) > 0):
            # Later duplicates SACK more: the new holes below the highest SACKed byte go too.
            self.snd_nxt = self._rtx_high
            self._rtx_limit = self._sacked[-1][1]

    def _go_back(self) -> None:
        """Send everything again from SND.UNA (go-back-N); no RTT sample from resent data."""
        self._recover = self.snd_max
        self.snd_nxt = self._rtx_high = self.snd_una
        self._rtt_seq = None
        self._rtx_limit = None

    def _poll(self, now: float) -> None:
        if self.held:
            return
        if self._time_wait_deadline is not None and now >= self._time_wait_deadline:
            self._set_state(State.CLOSED)
        elif self._rtx_deadline is not None and now >= self._rtx_deadline:
            self._timeout()

    def _timeout(self) -> None:
        # Ref: RFC 6298 §5.4-5.6 and RFC 9293 §3.8.3 (give up after max_retries).
        self._count("timeouts")
        self._retries += 1
        if self._retries > self._stack._max_retries:
            self.error = "connection timed out"
            self._set_state(State.CLOSED)
            return
        self.rto = min(self.rto * 2, self._stack._rto_max)
        self._rtx_deadline = None
        self._congestion_event(timeout=True)
        if self._retries > 1:
            # Ref: RFC 2018 §8: a peer that lets the timer expire twice may have reneged on
            # what it SACKed; resend everything from now on.
            self._sacked = []
        self._go_back()
        self._output(probe=True)

    @property
    def _deadline(self) -> float | None:
        deadlines = [d for d in (self._rtx_deadline, self._time_wait_deadline) if d is not None]
        return min(deadlines, default=None)

    # -- Output --------------------------------------------------------------------------------

    @property
    def _send_end(self) -> int:
        """The sequence number after the last queued byte, and after the FIN once queued."""
        return seq_add(self._tx_seq, len(self._tx) + self._fin_queued)

    def _skip_sacked(self) -> int | None:
        """Move SND.NXT, while it resends, past what the peer SACKed (and to SND.MAX once past a
        SACK recovery's limit); the bytes up to the next SACKed block, or None if unbounded."""
        if seq_diff(self.snd_nxt, self.snd_max) >= 0:
            return None
        for lo, hi in self._sacked:
            if seq_diff(self.snd_nxt, lo) >= 0 and seq_diff(self.snd_nxt, hi) < 0:
                self._count("sacked_bytes_skipped", seq_diff(hi, self.snd_nxt))
                self.snd_nxt = hi
        if self._rtx_limit is not None and seq_diff(self.snd_nxt, self._rtx_limit) >= 0:
            self._rtx_high, self._rtx_limit = self._rtx_limit, None
            self.snd_nxt = self.snd_max
            return None
        ahead = [seq_diff(lo, self.snd_nxt) for lo, _ in self._sacked
                 if seq_diff(lo, self.snd_nxt) > 0]
        return min(ahead, default=None)

    def _output(self, probe: bool = False) -> None:
        """Send what the state and the peer's window allow, then an ACK if one is still owed.

        ``probe`` (after a timeout) sends the first segment even into a zero window, at least one
        byte of it: a window probe (RFC 9293 §3.8.6.1).
        """
        if self._state is State.CLOSED or self.held:
            return
        if self._state in (State.SYN_SENT, State.SYN_RECEIVED):
            if self.snd_nxt == self.iss or (self._ack_now and self._state is State.SYN_RECEIVED):
                flags = TcpFlags.SYN | (TcpFlags.ACK if self._state is State.SYN_RECEIVED else 0)
                self._transmit(self.iss, flags)
                self.snd_nxt = seq_add(self.iss, 1)
        else:
            max_payload = self._max_payload
            while True:
                gap = self._skip_sacked()
                offset = seq_diff(self.snd_nxt, self._tx_seq)
                # Ref: RFC 5681 §2: send within min(cwnd, rwnd) of SND.UNA.
                limit = min(self.snd_wnd, self._congestion_window())
                window = seq_diff(seq_add(self.snd_una, limit), self.snd_nxt)
                probe_sent = probe
                if probe:
                    window, probe = max(window, 1), False
                n = max(0, min(len(self._tx) - offset, max_payload, window))
                if gap is not None:
                    n = min(n, gap)
                rest = len(self._tx) - offset - n
                fin = self._fin_queued and rest == 0 and window > n
                if n == 0 and not fin:
                    break
                if (0 < n < max_payload and rest and gap is None and not probe_sent
                        and self.snd_nxt != self.snd_una):
                    # Ref: RFC 1122 §4.2.3.4 (sender silly-window avoidance): no short segment
                    # while more data waits and some is in flight; its ACK will open the window.
                    break
                flags = TcpFlags.ACK | (TcpFlags.PSH if n and rest == 0 else 0)
                flags |= TcpFlags.FIN if fin else 0
                self._transmit(self.snd_nxt, flags, bytes(self._tx[offset : offset + n]))
                self.snd_nxt = seq_add(self.snd_nxt, n + fin)
                if fin:
                    break
            if self._ack_now:
                self._transmit(self.snd_nxt, TcpFlags.ACK)
        # Ref: RFC 6298 §5.1: the timer runs while data is outstanding, and here also while data
        # waits for a zero window to open.
        if self.snd_max == self.snd_una and self.snd_nxt == self._send_end:
            self._rtx_deadline = None
        elif self._rtx_deadline is None:
            self._rtx_deadline = self._stack._clock() + self.rto

    def _option_bytes(self) -> int:
        """The TCP option bytes of a segment sent now (not a SYN)."""
        blocks = len(self._sack_blocks())
        return 12 * self.timestamps + (4 + 8 * blocks if blocks else 0)

    def _options(self, flags: TcpFlags) -> list:
        """The TCP options of a segment with ``flags``, in Linux's order and padding."""
        stack = self._stack
        options: list = []
        if flags & TcpFlags.SYN:
            # Our SYN offers what the stack enables; a SYN-ACK carries only what was agreed.
            offer = not self._agreed
            options.append(("MSS", stack._mss_for(self._family)))
            sack = stack._sack if offer else self.sack_permitted
            timestamps = stack._timestamps if offer else self.timestamps
            wscale = stack._wscale_shift if offer and stack._window_scaling else self.rcv_wscale
            if sack:
                options += [("SAckOK", b"")] if timestamps else [NOP, NOP, ("SAckOK", b"")]
            if timestamps:
                options += [] if sack else [NOP, NOP]
                options.append(("Timestamp", (stack._ts_now(), self.ts_recent)))
            if wscale is not None:
                options += [NOP, ("WScale", wscale)]
            return options
        if self.timestamps:
            options += [NOP, NOP, ("Timestamp", (stack._ts_now(), self.ts_recent))]
        if flags & TcpFlags.ACK and (blocks := self._sack_blocks()):
            options += [NOP, NOP, ("SAck", tuple(s for block in blocks for s in block))]
            self._count("sack_blocks_sent", len(blocks))
        return options

    def _transmit(self, seq: int, flags: TcpFlags, payload: bytes = b""):
        """Send one segment from this connection and account for it."""
        length = len(payload) + bool(flags & TcpFlags.SYN) + bool(flags & TcpFlags.FIN)
        end = seq_add(seq, length)
        if length and seq_diff(seq, self.snd_max) < 0:
            self._count("retransmissions")
        elif length and self._rtt_seq is None:
            self._rtt_seq, self._rtt_start = end, self._stack._clock()
        if seq_diff(end, self.snd_max) > 0:
            self.snd_max = end
        self._count("segments_sent")
        self._count("bytes_sent", len(payload))
        options = self._options(flags)
        if flags & TcpFlags.ACK:
            self._ack_now = False
            self._last_ack_sent = self.rcv_nxt
        self._stack._emit(
            self, self._local_ip, self._remote_ip, self._local_port, self._remote_port,
            seq, self.rcv_nxt if flags & TcpFlags.ACK else 0, flags, payload, options,
            self._window_field(syn=bool(flags & TcpFlags.SYN)),
        )

    # -- Helpers -------------------------------------------------------------------------------

    def _agree_options(self, seg: Segment) -> None:
        """The options both SYNs carry (RFC 7323 §2.2, §3.2; RFC 2018 §2), and the peer's MSS."""
        stack = self._stack
        self._agreed = True
        self.send_mss = min(seg.mss or DEFAULT_PEER_MSS[self._family],
                            stack._mss_for(self._family))
        if stack._window_scaling and seg.wscale is not None:
            self.snd_wscale, self.rcv_wscale = seg.wscale, stack._wscale_shift
        self.sack_permitted = stack._sack and seg.sack_permitted
        self.timestamps = stack._timestamps and seg.tsval is not None
        if self.timestamps:
            self.ts_recent = seg.tsval

    def _scaled_window(self, seg: Segment) -> int:
        # Ref: RFC 7323 §2.3: the window of a SYN is never scaled.
        shift = 0 if seg.flags & TcpFlags.SYN else self.snd_wscale or 0
        return seg.window << shift

    def _update_window(self, seg: Segment) -> None:
        self.snd_wnd, self.snd_wl1, self.snd_wl2 = self._scaled_window(seg), seg.seq, seg.ack

    def _closed_by_peer(self, error: str) -> None:
        self.error = error
        self._set_state(State.CLOSED)

    def _set_state(self, state: State) -> None:
        self._state = state
        if state is State.ESTABLISHED and self._listener is not None:
            self._listener._ready.append(self)
        elif state is State.TIME_WAIT:
            self._rtx_deadline = None
            self._time_wait_deadline = self._stack._clock() + self._stack._time_wait
        elif state is State.CLOSED:
            self._rtx_deadline = self._time_wait_deadline = None
            self._stack._forget(self)

    def _count(self, name: str, n: int = 1) -> None:
        for stats in (self.stats, self._stack.stats):
            setattr(stats, name, getattr(stats, name) + n)


class TcpStack:
    """A host's TCP over IPv4 and/or IPv6 and Ethernet II, driven by frames in and out and by
    ``poll()``.

    Parameters
    ----------
    mac : str
        This host's MAC address, ``"02:00:00:00:00:01"``.
    ip : str or None
        This host's IPv4 address, or None for an IPv6-only host.
    send_frame : Callable[[bytes], None]
        Called with every frame to send (Ethernet II, no FCS, padded to 60 bytes). It must not
        call back into this stack; queue the frame instead.
    clock : Callable[[], float]
        The current time in seconds; only ever compared with itself, so any monotonic scale works.
        TCP timestamps are its milliseconds.
    ipv6 : str or None
        This host's IPv6 address. When given, the host also owns the link-local address of
        ``mac``; when None the host does no IPv6.
    mss : int
        MSS announced in IPv4 SYNs and the largest segment sent over IPv4 (default 1460: a
        1500-byte MTU); over IPv6 both are 20 bytes less, the same MTU.
    rcv_wnd : int
        The receive window offered to every connection: 1-65535, or up to 2**30 with
        ``window_scaling`` (a connection that does not agree to scaling gets 65535 at most).
    window_scaling, sack, timestamps : bool
        Offer (and accept) the window scale, SACK-permitted and timestamp options.
    congestion_control : bool
        Limit what is in flight by the congestion window (RFC 5681); off, only the peer's
        window limits it.
    rto_initial, rto_min, rto_max : float
        Retransmission timeout before the first RTT sample, and its bounds (RFC 6298 uses 1 s
        for the first two; the smaller default minimum is Linux's).
    max_retries : int
        Consecutive timeouts after which a connection gives up ("connection timed out").
    time_wait : float
        How long TIME-WAIT lasts: a short constant instead of 2 MSL, for simulations.
    isn : Callable[[], int] or None
        Gives each new connection's initial sequence number; by default a random generator seeded
        with ``mac`` and the addresses, so runs repeat.
    resolve_timeout, resolve_tries, resolve_queue : float, int, int
        Neighbour resolution: seconds between two ARP requests or Neighbour Solicitations, how
        many are sent before giving up, and how many frames wait for one neighbour (Linux: 1 s,
        3, and a queue in bytes).

    Members
    -------
    mac, ip, ipv6, link_local, mss, rcv_wnd : str, str, str, str, int, int
        The parameters above, addresses normalised, and the link-local address (read-only).
    wscale : int
        The window shift we announce: the smallest that fits ``rcv_wnd`` in 16 bits, at most 14.
    stats : TcpStats
        Counters over all connections, plus what matched none.
    connections : tuple of Connection
        Connections not yet CLOSED, TIME-WAIT included (read-only).
    neighbours : dict[str, str]
        The neighbour cache, address to MAC (read-only view).
    """

    def __init__(
        self,
        mac: str,
        ip: str | None,
        send_frame: Callable[[bytes], None],
        clock: Callable[[], float],
        *,
        ipv6: str | None = None,
        mss: int = 1460,
        rcv_wnd: int = 65535,
        window_scaling: bool = True,
        sack: bool = True,
        timestamps: bool = True,
        congestion_control: bool = True,
        rto_initial: float = 1.0,
        rto_min: float = 0.2,
        rto_max: float = 60.0,
        max_retries: int = 8,
        time_wait: float = 1.0,
        isn: Callable[[], int] | None = None,
        resolve_timeout: float = 1.0,
        resolve_tries: int = 3,
        resolve_queue: int = 16,
    ):
        if not callable(send_frame) or not callable(clock):
            raise TypeError("send_frame and clock must be callables")
        if ip is None and ipv6 is None:
            raise ValueError("need an IPv4 address, an IPv6 address or both")
        try:
            ip = None if ip is None else str(ipaddress.IPv4Address(ip))
            ipv6 = None if ipv6 is None else str(ipaddress.IPv6Address(ipv6))
        except ValueError as e:
            raise ValueError(f"bad address: {e}") from None
        mac = mac.lower()
        if len(bytes.fromhex(mac.replace(":", ""))) != 6:
            raise ValueError(f"bad MAC address {mac!r}")
        if not IPV6_EXTRA_HEADER < mss <= 65495:
            raise ValueError(f"mss must be in 21..65495, not {mss}")
        top = MAX_RCV_WND if window_scaling else MAX_WINDOW
        if not 1 <= rcv_wnd <= top:
            raise ValueError(f"rcv_wnd must be in 1..{top}, not {rcv_wnd}")
        if not 0 < rto_min <= rto_initial <= rto_max:
            raise ValueError("need 0 < rto_min <= rto_initial <= rto_max")
        if max_retries < 0 or time_wait < 0:
            raise ValueError("max_retries and time_wait must be >= 0")
        if resolve_timeout <= 0 or resolve_tries < 1 or resolve_queue < 1:
            raise ValueError("need resolve_timeout > 0, resolve_tries >= 1, resolve_queue >= 1")
        self._mac = mac
        self._ip = ip
        self._ipv6 = ipv6
        self._link_local = None if ipv6 is None else link_local_address(mac)
        self._send_frame = send_frame
        self._clock = clock
        self._mss = mss
        self._rcv_wnd = rcv_wnd
        self._window_scaling, self._sack, self._timestamps = window_scaling, sack, timestamps
        self._congestion_control = congestion_control
        self._wscale_shift = next(s for s in range(MAX_WSCALE + 1)
                                  if rcv_wnd >> s <= MAX_WINDOW or s == MAX_WSCALE)
        self._rto_initial, self._rto_min, self._rto_max = rto_initial, rto_min, rto_max
        self._max_retries = max_retries
        self._time_wait = time_wait
        seed = f"{mac}/{ip}" if ipv6 is None else f"{mac}/{ip}/{ipv6}"
        rng = random.Random(seed)
        self._isn = isn if isn is not None else lambda: rng.getrandbits(32)
        self._ip_id = 0
        self._next_port = EPHEMERAL_PORTS.start
        self._listeners: dict[int, Listener] = {}
        self._connections: dict[tuple[int, str, int], Connection] = {}
        self.stats = TcpStats()
        self._v6_addresses = () if ipv6 is None else tuple(dict.fromkeys([self._link_local, ipv6]))
        self._v6_packed = {ipaddress.IPv6Address(a).packed: a for a in self._v6_addresses}
        self._v4_packed = None if ip is None else ipaddress.IPv4Address(ip).packed
        self._neighbours = Neighbours(
            mac, ip, self._v6_addresses, send_frame, clock, self._count_stack,
            timeout=resolve_timeout, tries=resolve_tries, queue_len=resolve_queue,
            on_resolved=self._resolved, on_failed=self._unreachable,
        )
        self._link_macs = {bytes.fromhex(m.replace(":", "")) for m in self._neighbours.link_macs}

    @property
    def mac(self) -> str:
        return self._mac

    @property
    def ip(self) -> str | None:
        return self._ip

    @property
    def ipv6(self) -> str | None:
        return self._ipv6

    @property
    def link_local(self) -> str | None:
        return self._link_local

    @property
    def mss(self) -> int:
        return self._mss

    @property
    def rcv_wnd(self) -> int:
        return self._rcv_wnd

    @property
    def wscale(self) -> int:
        return self._wscale_shift

    @property
    def connections(self) -> tuple[Connection, ...]:
        return tuple(self._connections.values())

    @property
    def neighbours(self) -> dict[str, str]:
        return dict(self._neighbours.cache)

    def listen(self, port: int) -> Listener:
        """Accept connections to ``port`` on every address; `ValueError` if it is out of range or
        listened on."""
        if not 1 <= port <= 65535:
            raise ValueError(f"port must be in 1..65535, not {port}")
        if port in self._listeners:
            raise ValueError(f"port {port} is already listening")
        self._listeners[port] = listener = Listener(self, port)
        return listener

    def connect(
        self, remote_mac: str | None, remote_ip: str, remote_port: int,
        local_port: int | None = None,
    ) -> Connection:
        """Open a connection actively (send a SYN); it is in SYN-SENT when this returns.

        The family follows ``remote_ip`` (IPv4 or IPv6 text). ``remote_mac`` None resolves the
        neighbour's MAC first (ARP or neighbour discovery); the SYN waits for it. ``local_port``
        None takes the next free ephemeral port (49152-65535).
        """
        if not 1 <= remote_port <= 65535:
            raise ValueError(f"remote_port must be in 1..65535, not {remote_port}")
        address = ipaddress.ip_address(remote_ip)
        remote_ip = str(address)
        if address.version == 4 and self._ip is None:
            raise ValueError("this stack has no IPv4 address")
        if address.version == 6 and self._ipv6 is None:
            raise ValueError("this stack has no IPv6 address")
        if address.is_multicast or address.is_unspecified or remote_ip == "255.255.255.255":
            raise ValueError(f"cannot connect to {remote_ip}")
        if address.version == 4:
            local_ip = self._ip
        else:
            local_ip = self._link_local if address.is_link_local else self._ipv6
        if local_port is None:
            local_port = self._ephemeral_port()
        elif (local_port, remote_ip, remote_port) in self._connections:
            raise ValueError(f"connection :{local_port} -> {remote_ip}:{remote_port} exists")
        if remote_mac is not None:
            remote_mac = remote_mac.lower()
        conn = self._new_connection(local_port, remote_mac, remote_ip, remote_port, local_ip)
        conn._set_state(State.SYN_SENT)
        conn._output()
        return conn

    def receive_frame(self, frame: bytes) -> None:
        """Handle one received Ethernet frame (without FCS); anything malformed is ignored."""
        frame = bytes(frame)
        if len(frame) < 14 or frame[:6] not in self._link_macs:
            self.stats.frames_ignored += 1
            return
        src_mac = ":".join(f"{b:02x}" for b in frame[6:12])
        ethertype = int.from_bytes(frame[12:14], "big")
        if ethertype == ETHERTYPE_ARP:
            handled = self._neighbours.arp_arrives(src_mac, frame[14:])
        elif ethertype == ETHERTYPE_IPV4 and self._ip is not None:
            handled = self._ipv4_arrives(src_mac, frame[14:])
        elif ethertype == ETHERTYPE_IPV6 and self._ipv6 is not None:
            handled = self._ipv6_arrives(src_mac, frame[14:])
        else:
            handled = False
        if not handled:
            self.stats.frames_ignored += 1

    def poll(self) -> None:
        """Run the timers that are due at ``clock()``: retransmissions, TIME-WAIT ends,
        neighbour resolution retries."""
        now = self._clock()
        self._neighbours.poll(now)
        for conn in self.connections:
            conn._poll(now)

    def next_deadline(self) -> float | None:
        """The earliest time at which :meth:`poll` has work, or None if no timer runs."""
        deadlines = [c._deadline for c in self.connections if c._deadline is not None]
        if (resolving := self._neighbours.next_deadline()) is not None:
            deadlines.append(resolving)
        return min(deadlines, default=None)

    # -- Internals: connections ------------------------------------------------------------

    def _mss_for(self, family: int) -> int:
        return self._mss - (IPV6_EXTRA_HEADER if family == 6 else 0)

    def _ts_now(self) -> int:
        """TSval: the clock in milliseconds, modulo 2**32 (RFC 7323 §5.4 allows 1 ms-1 s)."""
        return int(self._clock() * 1000) % SEQ_MOD

    def _new_connection(self, local_port, remote_mac, remote_ip, remote_port,
                        local_ip) -> Connection:
        conn = Connection(self, local_port, remote_mac, remote_ip, remote_port, self._isn(),
                          local_ip)
        self._connections[(local_port, remote_ip, remote_port)] = conn
        return conn

    def _forget(self, conn: Connection) -> None:
        key = (conn.local_port, conn.remote_ip, conn.remote_port)
        if self._connections.get(key) is conn:
            del self._connections[key]

    def _ephemeral_port(self) -> int:
        in_use = {port for port, _, _ in self._connections} | set(self._listeners)
        for _ in EPHEMERAL_PORTS:
            port = self._next_port
            self._next_port = port + 1 if port + 1 in EPHEMERAL_PORTS else EPHEMERAL_PORTS.start
            if port not in in_use:
                return port
        raise OSError("no free ephemeral port")

    def _resolved(self, address: str, mac: str) -> None:
        for conn in self.connections:
            if conn.remote_ip == address and conn._remote_mac is None:
                conn._remote_mac = mac

    def _unreachable(self, address: str) -> None:
        """No answer from ``address``: connections still opening to it fail, as Linux reports
        EHOSTUNREACH; the others keep retransmitting (which resolves again)."""
        for conn in self.connections:
            if conn.remote_ip == address and conn.state is State.SYN_SENT:
                conn._closed_by_peer("host unreachable")

    def _count_stack(self, name: str, n: int) -> None:
        setattr(self.stats, name, getattr(self.stats, name) + n)

    def _send_reset(self, seg: Segment) -> None:
        """Answer ``seg`` with a RST (RFC 9293 §3.10.7.1); never answer a RST."""
        if seg.flags & TcpFlags.RST:
            return
        if seg.flags & TcpFlags.ACK:
            seq, ack, flags = seg.ack, 0, TcpFlags.RST
        else:
            seq, ack, flags = 0, seq_add(seg.seq, seg.length), TcpFlags.RST | TcpFlags.ACK
        self.stats.segments_sent += 1
        self.stats.resets_sent += 1
        self._emit(seg.src_mac, seg.dst_ip, seg.src_ip, seg.dport, seg.sport, seq, ack, flags)

    def _emit(self, to, local_ip, remote_ip, sport, dport, seq, ack, flags, payload=b"",
              options=(), window=0) -> None:
        """Build one TCP frame with scapy (which computes the checksums) and send it to ``to``:
        a MAC, or a connection whose MAC may still need resolving."""
        tcp = TCP(sport=sport, dport=dport, seq=seq, ack=ack, flags=int(flags), window=window,
                  options=list(options))
        self._send_ip(to, local_ip, remote_ip, IpProto.TCP.value, tcp / Raw(payload) if payload
                      else tcp)

    def _send_ip(self, to, local_ip, remote_ip, proto, l4) -> None:
        if ":" in remote_ip:
            ip = IPv6(src=local_ip, dst=remote_ip, nh=proto, hlim=HOP_LIMIT)
        else:
            ip = IP(src=local_ip, dst=remote_ip, id=self._ip_id, flags="DF", ttl=HOP_LIMIT,
                    proto=proto)
            self._ip_id = (self._ip_id + 1) & 0xFFFF
        conn = to if isinstance(to, Connection) else None
        mac = conn._remote_mac if conn is not None else to
        if mac is None:
            mac = self._neighbours.cache.get(remote_ip)
            if mac is not None:
                conn._remote_mac = mac
        frame = bytes(Ether(src=self._mac, dst=mac or "00:00:00:00:00:00") / ip / l4)
        frame = frame.ljust(ETH_MIN_FRAME, b"\0")
        if mac is None:
            self._neighbours.send(remote_ip, frame)
        else:
            self._send_frame(frame)

    # -- Internals: receiving --------------------------------------------------------------

    def _ipv4_arrives(self, src_mac: str, packet: bytes) -> bool:
        """An IPv4 datagram: TCP and ICMP to our address; False if ignored."""
        if len(packet) < 20 or packet[0] >> 4 != 4:
            return False
        header = (packet[0] & 0xF) * 4
        total = int.from_bytes(packet[2:4], "big")
        fragment = int.from_bytes(packet[6:8], "big") & 0x3FFF  # MF and the offset
        if header < 20 or not header <= total <= len(packet) or fragment:
            return False
        if packet[16:20] != self._v4_packed or packet[12] >= 224 or not any(packet[12:16]):
            return False  # not to us, or from a multicast, broadcast or unspecified source
        if checksum(packet[:header]):
            self.stats.checksum_errors += 1
            return False
        src, dst, proto = packet[12:16], packet[16:20], packet[9]
        body = packet[header:total]
        if proto == IpProto.TCP.value:
            if csum_tcpudp_magic(src, dst, len(body), proto, csum_partial(body)):
                self.stats.checksum_errors += 1
                return False
            return self._tcp_arrives(src_mac, str(ipaddress.IPv4Address(src)), self._ip, body)
        if proto == ICMPV4 and len(body) >= 8 and body[0] == 8 and body[1] == 0:
            # Ref: RFC 792, Echo: the reply carries the identifier, sequence and data back.
            if checksum(body):
                self.stats.checksum_errors += 1
                return False
            self.stats.pings += 1
            reply = ICMP(type=0, code=0, id=int.from_bytes(body[4:6], "big"),
                         seq=int.from_bytes(body[6:8], "big")) / Raw(body[8:])
            self._send_ip(src_mac, self._ip, str(ipaddress.IPv4Address(src)), ICMPV4, reply)
            self.stats.echo_replies_sent += 1
            return True
        return False

    def _ipv6_arrives(self, src_mac: str, packet: bytes) -> bool:
        """An IPv6 packet: TCP and ICMPv6 (echo, neighbour discovery) to one of our addresses
        or groups; False if ignored."""
        if len(packet) < 40 or packet[0] >> 4 != 6:
            return False
        length, next_header, hop_limit = int.from_bytes(packet[4:6], "big"), packet[6], packet[7]
        src, dst = packet[8:24], packet[24:40]
        if len(packet) < 40 + length or src[0] == 0xFF:
            return False
        body = packet[40:40 + length]
        unicast = self._v6_packed.get(dst)
        if unicast is None and not (self._neighbours.is_solicited_node(dst)
                                    and next_header == ICMPV6):
            return False
        source = str(ipaddress.IPv6Address(src))
        if next_header == IpProto.TCP.value and unicast is not None and any(src):
            if csum_ipv6_magic(src, dst, len(body), next_header, csum_partial(body)):
                self.stats.checksum_errors += 1
                return False
            return self._tcp_arrives(src_mac, source, unicast, body)
        if next_header != ICMPV6 or len(body) < 8:
            return False
        if body[0] in (135, 136):
            return self._neighbours.ndisc_arrives(src_mac, src, dst, hop_limit, body)
        if body[0] == 128 and body[1] == 0 and unicast is not None:
            # Ref: RFC 4443 §4.1-4.2.
            if csum_ipv6_magic(src, dst, len(body), ICMPV6, csum_partial(body)):
                self.stats.checksum_errors += 1
                return False
            self.stats.pings += 1
            reply = ICMPv6EchoReply(id=int.from_bytes(body[4:6], "big"),
                                    seq=int.from_bytes(body[6:8], "big"), data=body[8:])
            self._send_ip(src_mac, unicast, source, ICMPV6, reply)
            self.stats.echo_replies_sent += 1
            return True
        return False

    def _tcp_arrives(self, src_mac: str, src_ip: str, dst_ip: str, body: bytes) -> bool:
        seg = self._parse_tcp(src_mac, src_ip, dst_ip, body)
        if seg is None:
            return False
        self.stats.segments_received += 1
        self.stats.resets_received += bool(seg.flags & TcpFlags.RST)
        conn = self._connections.get((seg.dport, seg.src_ip, seg.sport))
        if conn is not None:
            conn._segment_arrives(seg)
        elif seg.dport in self._listeners:
            self._listeners[seg.dport]._segment_arrives(seg)
        else:
            # Ref: RFC 9293 §3.10.7.1: no connection (CLOSED).
            self._send_reset(seg)
        return True

    @staticmethod
    def _parse_tcp(src_mac: str, src_ip: str, dst_ip: str, body: bytes) -> Segment | None:
        """The segment in ``body`` (checksum already verified), or None if malformed."""
        if len(body) < 20:
            return None
        sport, dport, seq, ack, offset_flags, window = struct.unpack("!HHIIHH", body[:16])
        header = (offset_flags >> 12) * 4
        if header < 20 or header > len(body) or sport == 0 or dport == 0:
            return None
        flags = TcpFlags(offset_flags & int(_FLAGS_HANDLED))
        options = _parse_options(body[20:header], bool(flags & TcpFlags.SYN))
        return Segment(src_mac=src_mac, src_ip=src_ip, dst_ip=dst_ip, sport=sport, dport=dport,
                       seq=seq, ack=ack, flags=flags, window=window, payload=body[header:],
                       **options)


def _parse_options(raw: bytes, syn: bool) -> dict:
    """The TCP options the stack uses, as `Segment` fields. A malformed option ends the list
    (what was read before it counts); MSS, window scale and SACK-permitted count only in a SYN.
    Ref: RFC 9293 §3.2, RFC 7323 §2.2-3.2, RFC 2018 §2-3."""
    found: dict = {}
    i = 0
    while i < len(raw):
        kind = raw[i]
        if kind == OPT_END:
            break
        if kind == OPT_NOP:
            i += 1
            continue
        if i + 1 >= len(raw) or raw[i + 1] < 2 or i + raw[i + 1] > len(raw):
            break
        size, value = raw[i + 1], raw[i + 2:i + raw[i + 1]]
        if kind == OPT_MSS and size == 4 and syn:
            found["mss"] = int.from_bytes(value, "big") or None
        elif kind == OPT_WSCALE and size == 3 and syn:
            found["wscale"] = min(value[0], MAX_WSCALE)  # RFC 7323 §2.3: more is taken as 14
        elif kind == OPT_SACK_PERMITTED and size == 2 and syn:
            found["sack_permitted"] = True
        elif kind == OPT_TIMESTAMP and size == 10:
            found["tsval"], found["tsecr"] = struct.unpack("!II", value)
        elif kind == OPT_SACK and size in (10, 18, 26, 34):
            edges = struct.unpack(f"!{(size - 2) // 4}I", value)
            found["sack_blocks"] = tuple(zip(edges[::2], edges[1::2], strict=True))
        i += size
    return found
