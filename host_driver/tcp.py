"""A small TCP endpoint for the host's slow path, speaking whole Ethernet II / IPv4 frames.

`TcpStack` is one host (a MAC and an IPv4 address) running a subset of TCP, readable rather than
fast, with a sockets-like API: :meth:`TcpStack.listen` / :meth:`Listener.accept`,
:meth:`TcpStack.connect`, :meth:`Connection.send` / :meth:`Connection.recv` /
:meth:`Connection.close`. It knows nothing of the NIC: frames leave through ``send_frame`` and
arrive through :meth:`TcpStack.receive_frame`, and time is whatever ``clock()`` returns (seconds,
or simulated cycles scaled to seconds), advanced by whoever calls :meth:`TcpStack.poll`. It uses no
threads, no wall clock and no sleeping, so tests and cocotb drive it deterministically.

What it does:

- three-way handshake, active and passive, simultaneous open; MSS option (the peer's, 536 without
  one);
- in-order receive with a cumulative ACK for every segment that carries data or FIN (no delayed
  ACK); a segment after a gap is dropped and answered with a duplicate ACK (no reassembly queue);
- send within the peer's advertised window; retransmission timer after RFC 6298 (RTT estimate,
  Karn's rule, exponential backoff); go-back-N on a timeout and on the third duplicate ACK;
  a one-byte probe when the timer expires while the peer's window is zero;
- FIN close in both directions (FIN-WAIT-1/2, CLOSING, CLOSE-WAIT, LAST-ACK, TIME-WAIT shortened to
  ``time_wait``); RST received, RST sent for segments that match no connection, challenge ACKs for
  RSTs and SYNs in the window but not exactly at RCV.NXT, RSTs ignored in TIME-WAIT;
- per-stack and per-connection statistics (`TcpStats`).

What it leaves out: IPv6, IP fragments, window scaling, SACK, timestamps, urgent data, congestion
control (the send rate is bounded by the peer's window only), a reassembly queue, and a receive
buffer limit (the advertised window is the fixed ``rcv_wnd``; received data waits in the connection
until :meth:`Connection.recv` takes it). Without a persist timer, a peer whose window stays zero
through ``max_retries`` probes is given up like a dead one.
"""

# Ref: RFC 9293 (TCP); RFC 6298 (retransmission timer); RFC 5681 §2, §3.2 (duplicate ACKs, fast
# retransmit); RFC 6582 §3.2 (the "recover" point); RFC 5961 §3-4 (challenge ACKs); RFC 1337 §3
# (RST in TIME-WAIT).

import dataclasses
import enum
import random
from collections import deque
from collections.abc import Callable

from scapy.layers.inet import IP, TCP, in4_chksum
from scapy.layers.l2 import Ether
from scapy.packet import Raw
from scapy.utils import checksum

from hw.layouts import IpProto, TcpFlags

__all__ = [
    "State", "TcpStats", "Segment", "Listener", "Connection", "TcpStack",
    "seq_add", "seq_diff",
]

SEQ_MOD = 1 << 32
ETH_MIN_FRAME = 60  # IEEE 802.3 minimum frame without FCS: shorter frames are zero-padded
DEFAULT_PEER_MSS = 536  # Ref: RFC 9293 §3.7.1, the send MSS when the SYN has no MSS option
EPHEMERAL_PORTS = range(49152, 65536)  # RFC 6335 §6 dynamic ports


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
    """Counters of a stack (all its connections, plus segments that match none) or one connection.

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
    out_of_order_dropped : int
        Segments dropped because they started after RCV.NXT.
    resets_sent, resets_received : int
        RST segments.
    checksum_errors : int
        Frames dropped for a bad IPv4 header or TCP checksum.
    frames_ignored : int
        Frames that are not IPv4/TCP to this stack's address, or are IP fragments (stack only).
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
    out_of_order_dropped: int = 0
    resets_sent: int = 0
    resets_received: int = 0
    checksum_errors: int = 0
    frames_ignored: int = 0


@dataclasses.dataclass(frozen=True)
class Segment:
    """A received TCP segment with the addresses it came from."""

    src_mac: str
    src_ip: str
    sport: int
    dport: int
    seq: int
    ack: int
    flags: TcpFlags
    window: int
    payload: bytes = b""
    mss: int | None = None

    @property
    def length(self) -> int:
        """SEG.LEN: payload bytes plus one for SYN and one for FIN (RFC 9293 §3.4)."""
        return len(self.payload) + bool(self.flags & TcpFlags.SYN) + bool(self.flags & TcpFlags.FIN)


class Listener:
    """A passive open on ``port`` (RFC 9293 §3.10.1); made by :meth:`TcpStack.listen`.

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
            conn = self._stack._new_connection(self._port, seg.src_mac, seg.src_ip, seg.sport)
            conn._listener = self
            conn._passive_open(seg)


class Connection:
    """One TCP connection: the TCB of RFC 9293 §3.3.1 and its user calls.

    Made by :meth:`TcpStack.connect` or returned by :meth:`Listener.accept`. Sequence numbers are
    32-bit and compared with :func:`seq_diff`.

    Members
    -------
    local_port, remote_mac, remote_ip, remote_port : int, str, str, int
        The connection's addresses (read-only).
    state : State
        The RFC 9293 state (read-only). A connection that reached CLOSED stays CLOSED.
    error : str or None
        Why the connection closed abnormally ("connection refused", "connection reset",
        "connection timed out"), or None.
    stats : TcpStats
        This connection's counters.
    send_queue, recv_queue : int
        Bytes given to :meth:`send` and not yet acknowledged; bytes received and not yet taken by
        :meth:`recv` (read-only).
    eof : bool
        The peer's FIN arrived and :meth:`recv` has returned everything before it (read-only).
    iss, irs, snd_una, snd_nxt, snd_max, snd_wnd, rcv_nxt, send_mss, rto : int, float
        The TCB variables (RFC 9293 §3.3.1; ``snd_max`` is the highest sequence number sent, which
        go-back-N keeps apart from ``snd_nxt``). Public for statistics and for handing the
        connection to the NIC; change them only if you are the NIC's handout code.
    """

    def __init__(self, stack: "TcpStack", local_port, remote_mac, remote_ip, remote_port, iss):
        self._stack = stack
        self._local_port = local_port
        self._remote_mac = remote_mac
        self._remote_ip = remote_ip
        self._remote_port = remote_port
        self._state = State.CLOSED
        self._listener: Listener | None = None
        self.error: str | None = None
        self.stats = TcpStats()
        # Send side. Queued data starts at sequence number _tx_seq (the byte after the SYN while
        # nothing is acknowledged); the FIN, once queued, follows the last byte.
        self.iss = self.snd_una = self.snd_nxt = self.snd_max = iss
        self.snd_wnd = self.snd_wl1 = self.snd_wl2 = 0
        self.send_mss = DEFAULT_PEER_MSS
        self._tx = bytearray()
        self._tx_seq = seq_add(iss, 1)
        self._fin_queued = False
        # Receive side.
        self.irs = self.rcv_nxt = 0
        self._rx = bytearray()
        self._fin_received = False
        self._ack_now = False
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

    def __repr__(self):
        return (
            f"<Connection :{self._local_port} -> {self._remote_ip}:{self._remote_port} "
            f"{self._state.value}>"
        )

    @property
    def local_port(self) -> int:
        return self._local_port

    @property
    def remote_mac(self) -> str:
        return self._remote_mac

    @property
    def remote_ip(self) -> str:
        return self._remote_ip

    @property
    def remote_port(self) -> int:
        return self._remote_port

    @property
    def state(self) -> State:
        return self._state

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

    # -- Segment arrival (RFC 9293 §3.10.7) --------------------------------------------------

    def _passive_open(self, seg: Segment) -> None:
        # Ref: RFC 9293 §3.10.7.2, third check: a SYN on a listening port.
        self.stats.segments_received += 1
        self.irs = seg.seq
        self.rcv_nxt = seq_add(seg.seq, 1)
        self._set_peer_mss(seg)
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
        self._set_peer_mss(seg)
        self._update_window(seg)
        self._ack_now = True
        if has_ack:
            self._new_ack(seg.ack)
            self._set_state(State.ESTABLISHED)
        else:
            # Simultaneous open: answer with a SYN-ACK (sent again from the ISS).
            self.snd_nxt = self.iss
            self._set_state(State.SYN_RECEIVED)

    def _synchronized_arrives(self, seg: Segment) -> None:
        # Ref: RFC 9293 §3.10.7.4, the steps in order.
        # First: the sequence number must fall in the receive window.
        if not self._acceptable(seg):
            if not seg.flags & TcpFlags.RST:
                self._ack_now = True
                if seg.length:
                    self._count("dup_acks_sent")
                if self._state is State.TIME_WAIT and seg.flags & TcpFlags.FIN:
                    self._time_wait_deadline = self._stack._clock() + self._stack._time_wait
            return
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

    def _acceptable(self, seg: Segment) -> bool:
        # Ref: RFC 9293 §3.10.7.4, first check (the receive window is never zero here). A segment
        # without text is also accepted exactly at the right edge, as BSD and Linux do: a peer
        # that filled our window sends its pure ACKs there, and dropping them would lose the ACK.
        window = self._stack._rcv_wnd
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
        room = self._stack._rcv_wnd - seq_diff(seq, self.rcv_nxt)
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
            self._new_ack(seg.ack)
        elif (advance == 0 and self.snd_max != self.snd_una and not seg.length
              and seg.window == self.snd_wnd):
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
        if seg.seq != self.rcv_nxt:
            # A gap before this segment: drop it (no reassembly queue), send a duplicate ACK.
            self._count("out_of_order_dropped")
            self._count("dup_acks_sent")
            self._ack_now = True
            return
        self._rx += seg.payload
        self.rcv_nxt = seq_add(self.rcv_nxt, len(seg.payload))
        self._count("bytes_received", len(seg.payload))
        self._ack_now = True
        if seg.flags & TcpFlags.FIN:
            self.rcv_nxt = seq_add(self.rcv_nxt, 1)
            self._fin_received = True
            if self._state is State.ESTABLISHED:
                self._set_state(State.CLOSE_WAIT)
            elif self._state is State.FIN_WAIT_1:
                self._set_state(State.CLOSING)  # our FIN is not acknowledged yet
            else:
                self._set_state(State.TIME_WAIT)

    # -- Acknowledgements and the retransmission timer ---------------------------------------

    def _new_ack(self, ack: int) -> None:
        """SND.UNA moves to ``ack``: drop acknowledged data, sample the RTT, restart the timer."""
        acked_data = min(max(seq_diff(ack, self._tx_seq), 0), len(self._tx))
        del self._tx[:acked_data]
        self._tx_seq = seq_add(self._tx_seq, acked_data)
        self.snd_una = ack
        if seq_diff(ack, self.snd_nxt) > 0:
            self.snd_nxt = ack  # ACK of data sent before a go-back-N restart
        self._dup_acks = 0
        self._retries = 0
        now = self._stack._clock()
        if self._rtt_seq is not None and seq_diff(ack, self._rtt_seq) >= 0:
            self._rtt_sample(now - self._rtt_start)
            self._rtt_seq = None
        elif self._srtt is not None:
            # Forward progress ends the exponential backoff at once, as Linux does, instead of
            # waiting for an RTT sample (Karn's rule takes none while resent data is acknowledged).
            self._update_rto()
        # Ref: RFC 6298 §5.2-5.3.
        self._rtx_deadline = None if self.snd_una == self.snd_max else now + self.rto

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
        # the duplicates caused by one go-back-N restart do not start another.
        self._count("dup_acks_received")
        self._dup_acks += 1
        if self._dup_acks == 3 and seq_diff(self.snd_una, self._recover) >= 0:
            self._count("fast_retransmits")
            self._go_back()

    def _go_back(self) -> None:
        """Send everything again from SND.UNA (go-back-N); no RTT sample from resent data."""
        self._recover = self.snd_max
        self.snd_nxt = self.snd_una
        self._rtt_seq = None

    def _poll(self, now: float) -> None:
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

    def _output(self, probe: bool = False) -> None:
        """Send what the state and the peer's window allow, then an ACK if one is still owed.

        ``probe`` (after a timeout) sends the first segment even into a zero window, at least one
        byte of it: a window probe (RFC 9293 §3.8.6.1).
        """
        if self._state is State.CLOSED:
            return
        if self._state in (State.SYN_SENT, State.SYN_RECEIVED):
            if self.snd_nxt == self.iss or (self._ack_now and self._state is State.SYN_RECEIVED):
                flags = TcpFlags.SYN | (TcpFlags.ACK if self._state is State.SYN_RECEIVED else 0)
                self._transmit(self.iss, flags, mss=self._stack._mss)
                self.snd_nxt = seq_add(self.iss, 1)
        else:
            while True:
                offset = seq_diff(self.snd_nxt, self._tx_seq)
                window = seq_diff(seq_add(self.snd_una, self.snd_wnd), self.snd_nxt)
                if probe:
                    window, probe = max(window, 1), False
                n = max(0, min(len(self._tx) - offset, self.send_mss, window))
                rest = len(self._tx) - offset - n
                fin = self._fin_queued and rest == 0 and window > n
                if n == 0 and not fin:
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

    def _transmit(self, seq: int, flags: TcpFlags, payload: bytes = b"", mss: int | None = None):
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
        if flags & TcpFlags.ACK:
            self._ack_now = False
        self._stack._emit(
            self._remote_mac, self._remote_ip, self._local_port, self._remote_port,
            seq, self.rcv_nxt if flags & TcpFlags.ACK else 0, flags, payload, mss,
        )

    # -- Helpers -------------------------------------------------------------------------------

    def _set_peer_mss(self, seg: Segment) -> None:
        self.send_mss = min(seg.mss or DEFAULT_PEER_MSS, self._stack._mss)

    def _update_window(self, seg: Segment) -> None:
        self.snd_wnd, self.snd_wl1, self.snd_wl2 = seg.window, seg.seq, seg.ack

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
    """A host's TCP over IPv4 and Ethernet II, driven by frames in and out and by ``poll()``.

    Parameters
    ----------
    mac : str
        This host's MAC address, ``"02:00:00:00:00:01"``.
    ip : str
        This host's IPv4 address. Frames to other IPv4 addresses are ignored.
    send_frame : Callable[[bytes], None]
        Called with every frame to send (Ethernet II, no FCS, padded to 60 bytes). It must not
        call back into this stack; queue the frame instead.
    clock : Callable[[], float]
        The current time in seconds; only ever compared with itself, so any monotonic scale works.
    mss : int
        MSS announced in SYNs and the largest segment sent (default 1460: a 1500-byte MTU).
    rcv_wnd : int
        The receive window advertised in every segment, 1-65535 (no window scaling).
    rto_initial, rto_min, rto_max : float
        Retransmission timeout before the first RTT sample, and its bounds (RFC 6298 uses 1 s
        for the first two; the smaller default minimum is Linux's).
    max_retries : int
        Consecutive timeouts after which a connection gives up ("connection timed out").
    time_wait : float
        How long TIME-WAIT lasts: a short constant instead of 2 MSL, for simulations.
    isn : Callable[[], int] or None
        Gives each new connection's initial sequence number; by default a random generator seeded
        with ``mac`` and ``ip``, so runs repeat.

    Members
    -------
    mac, ip, mss, rcv_wnd : str, str, int, int
        The parameters above (read-only).
    stats : TcpStats
        Counters over all connections, plus segments that matched none.
    connections : tuple of Connection
        Connections not yet CLOSED, TIME-WAIT included (read-only).
    """

    def __init__(
        self,
        mac: str,
        ip: str,
        send_frame: Callable[[bytes], None],
        clock: Callable[[], float],
        *,
        mss: int = 1460,
        rcv_wnd: int = 65535,
        rto_initial: float = 1.0,
        rto_min: float = 0.2,
        rto_max: float = 60.0,
        max_retries: int = 8,
        time_wait: float = 1.0,
        isn: Callable[[], int] | None = None,
    ):
        if not callable(send_frame) or not callable(clock):
            raise TypeError("send_frame and clock must be callables")
        if not 1 <= mss <= 65495:
            raise ValueError(f"mss must be in 1..65495, not {mss}")
        if not 1 <= rcv_wnd <= 65535:
            raise ValueError(f"rcv_wnd must be in 1..65535 (no window scaling), not {rcv_wnd}")
        if not 0 < rto_min <= rto_initial <= rto_max:
            raise ValueError("need 0 < rto_min <= rto_initial <= rto_max")
        if max_retries < 0 or time_wait < 0:
            raise ValueError("max_retries and time_wait must be >= 0")
        self._mac = mac
        self._ip = ip
        self._send_frame = send_frame
        self._clock = clock
        self._mss = mss
        self._rcv_wnd = rcv_wnd
        self._rto_initial, self._rto_min, self._rto_max = rto_initial, rto_min, rto_max
        self._max_retries = max_retries
        self._time_wait = time_wait
        rng = random.Random(f"{mac}/{ip}")
        self._isn = isn if isn is not None else lambda: rng.getrandbits(32)
        self._ip_id = 0
        self._next_port = EPHEMERAL_PORTS.start
        self._listeners: dict[int, Listener] = {}
        self._connections: dict[tuple[int, str, int], Connection] = {}
        self.stats = TcpStats()

    @property
    def mac(self) -> str:
        return self._mac

    @property
    def ip(self) -> str:
        return self._ip

    @property
    def mss(self) -> int:
        return self._mss

    @property
    def rcv_wnd(self) -> int:
        return self._rcv_wnd

    @property
    def connections(self) -> tuple[Connection, ...]:
        return tuple(self._connections.values())

    def listen(self, port: int) -> Listener:
        """Accept connections to ``port``; `ValueError` if it is out of range or listened on."""
        if not 1 <= port <= 65535:
            raise ValueError(f"port must be in 1..65535, not {port}")
        if port in self._listeners:
            raise ValueError(f"port {port} is already listening")
        self._listeners[port] = listener = Listener(self, port)
        return listener

    def connect(
        self, remote_mac: str, remote_ip: str, remote_port: int, local_port: int | None = None
    ) -> Connection:
        """Open a connection actively (send a SYN); it is in SYN-SENT when this returns.

        ``local_port`` None takes the next free ephemeral port (49152-65535).
        """
        if not 1 <= remote_port <= 65535:
            raise ValueError(f"remote_port must be in 1..65535, not {remote_port}")
        if local_port is None:
            local_port = self._ephemeral_port()
        elif (local_port, remote_ip, remote_port) in self._connections:
            raise ValueError(f"connection :{local_port} -> {remote_ip}:{remote_port} exists")
        conn = self._new_connection(local_port, remote_mac, remote_ip, remote_port)
        conn._set_state(State.SYN_SENT)
        conn._output()
        return conn

    def receive_frame(self, frame: bytes) -> None:
        """Handle one received Ethernet frame (without FCS)."""
        seg = self._parse(frame)
        if seg is None:
            return
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

    def poll(self) -> None:
        """Run the timers that are due at ``clock()``: retransmissions and TIME-WAIT ends."""
        now = self._clock()
        for conn in self.connections:
            conn._poll(now)

    def next_deadline(self) -> float | None:
        """The earliest time at which :meth:`poll` has work, or None if no timer runs."""
        return min((c._deadline for c in self.connections if c._deadline is not None), default=None)

    # -- Internals -----------------------------------------------------------------------------

    def _new_connection(self, local_port, remote_mac, remote_ip, remote_port) -> Connection:
        conn = Connection(self, local_port, remote_mac, remote_ip, remote_port, self._isn())
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
        self._emit(seg.src_mac, seg.src_ip, seg.dport, seg.sport, seq, ack, flags, window=0)

    def _emit(self, remote_mac, remote_ip, sport, dport, seq, ack, flags, payload=b"", mss=None,
              window=None) -> None:
        """Build one frame with scapy (which computes both checksums) and send it."""
        tcp = TCP(
            sport=sport, dport=dport, seq=seq, ack=ack, flags=int(flags),
            window=self._rcv_wnd if window is None else window,
            options=[("MSS", mss)] if mss is not None else [],
        )
        ip = IP(src=self._ip, dst=remote_ip, id=self._ip_id, flags="DF", ttl=64)
        self._ip_id = (self._ip_id + 1) & 0xFFFF
        packet = Ether(src=self._mac, dst=remote_mac) / ip / tcp
        if payload:
            packet /= Raw(payload)
        self._send_frame(bytes(packet).ljust(ETH_MIN_FRAME, b"\0"))

    def _parse(self, frame: bytes) -> Segment | None:
        """The segment in ``frame`` if it is TCP/IPv4 to us with good checksums, else None."""
        packet = Ether(frame)
        if IP not in packet or TCP not in packet or packet[IP].dst != self._ip:
            self.stats.frames_ignored += 1
            return None
        ip, tcp = packet[IP], packet[TCP]
        header = ip.ihl * 4
        datagram = ip.original[: ip.len]  # without Ethernet padding
        malformed = ip.ihl < 5 or tcp.dataofs < 5 or not header + tcp.dataofs * 4 <= ip.len
        if malformed or len(datagram) < ip.len or ip.frag or ip.flags.MF:
            self.stats.frames_ignored += 1
            return None
        if checksum(datagram[:header]) or in4_chksum(IpProto.TCP.value, ip, datagram[header:]):
            self.stats.checksum_errors += 1
            return None
        return Segment(
            src_mac=packet[Ether].src, src_ip=ip.src, sport=tcp.sport, dport=tcp.dport,
            seq=tcp.seq, ack=tcp.ack, flags=TcpFlags(int(tcp.flags) & _FLAGS_HANDLED),
            window=tcp.window,
            payload=datagram[header + tcp.dataofs * 4 :],
            mss=next((value for kind, value in tcp.options if kind == "MSS"), None),
        )
