"""The host TCP stack: two `TcpStack`s back to back through a Python wire with a fake clock.

The wire delays every frame by a fixed latency and can lose, duplicate or reorder frames from a
seeded generator; the clock jumps from one event (a frame's arrival, a timer) to the next, so every
run is deterministic and bounded in steps. A few tests talk to one stack with hand-made scapy
frames instead, to reach a rule directly.
"""

import heapq
import random

import pytest
from scapy.layers.inet import IP, TCP
from scapy.layers.l2 import Ether
from scapy.packet import Raw

from host_driver.tcp import Connection, State, TcpStack, seq_add, seq_diff

MAC_A, IP_A = "02:00:00:00:00:0a", "192.0.2.10"
MAC_B, IP_B = "02:00:00:00:00:0b", "198.51.100.20"
PORT = 5001


class Wire:
    """Stacks ``a`` (at MAC_A/IP_A) and ``b`` joined by a link with latency and seeded faults.

    Parameters
    ----------
    latency : float
        One-way delay in seconds (the RTT is twice this: well below ``rto_min``).
    loss, duplicate, reorder : float
        Probability that a frame is dropped, delivered twice, or delayed by up to two extra
        latencies (so that later frames overtake it).
    seed : int
        Seed of the fault generator.
    **stack_args
        Passed to both stacks; ``a_args`` / ``b_args`` dicts add arguments for one side.

    Members
    -------
    loss, duplicate, reorder : float
        The parameters above; tests may change them between steps.
    now : float
        The fake clock both stacks read.
    sent : dict[str, list[tuple[float, bytes]]]
        Every frame each side sent (``"a"``, ``"b"``) with its send time, lost ones included.
    steps : int
        Events handled so far.
    """

    def __init__(self, latency=1e-3, loss=0.0, duplicate=0.0, reorder=0.0, seed=0,
                 a_args=None, b_args=None, **stack_args):
        self.now = 0.0
        self.steps = 0
        self.sent: dict[str, list[tuple[float, bytes]]] = {"a": [], "b": []}
        self.latency, self.loss, self.duplicate, self.reorder = latency, loss, duplicate, reorder
        self._rng = random.Random(seed)
        self._queue: list[tuple[float, int, str, bytes]] = []
        self._order = 0

        def clock():
            return self.now

        self.a = TcpStack(MAC_A, IP_A, lambda f: self._put("a", f), clock,
                          **stack_args, **(a_args or {}))
        self.b = TcpStack(MAC_B, IP_B, lambda f: self._put("b", f), clock,
                          **stack_args, **(b_args or {}))

    def _put(self, sender: str, frame: bytes) -> None:
        self.sent[sender].append((self.now, frame))
        if self._rng.random() < self.loss:
            return
        for _ in range(2 if self._rng.random() < self.duplicate else 1):
            delay = self.latency
            if self._rng.random() < self.reorder:
                delay += self._rng.uniform(0, 2 * self.latency)
            self._order += 1
            heapq.heappush(self._queue, (self.now + delay, self._order, sender, frame))

    def step(self) -> bool:
        """Jump to the next event, deliver the frames due and poll both stacks; False if idle."""
        events = [t for t in (self.a.next_deadline(), self.b.next_deadline()) if t is not None]
        if self._queue:
            events.append(self._queue[0][0])
        if not events:
            return False
        self.now = max(self.now, min(events))
        while self._queue and self._queue[0][0] <= self.now:
            _, _, sender, frame = heapq.heappop(self._queue)
            (self.b if sender == "a" else self.a).receive_frame(frame)
        self.a.poll()
        self.b.poll()
        self.steps += 1
        return True

    def run(self, done, max_steps=10_000) -> None:
        """Step until ``done()`` (which may also act, like an application) returns True."""
        while not done():
            assert self.steps < max_steps, f"not done after {max_steps} steps"
            assert self.step(), "nothing in flight and no timer running, but not done"


def tcp_frame(seq, ack, flags, sport=40000, dport=PORT, payload=b"", window=65535, mss=None):
    """A frame from a hand-driven peer at MAC_B/IP_B to stack ``a``."""
    options = [("MSS", mss)] if mss else []
    packet = (Ether(src=MAC_B, dst=MAC_A) / IP(src=IP_B, dst=IP_A)
              / TCP(sport=sport, dport=dport, seq=seq, ack=ack, flags=flags, window=window,
                    options=options))
    return bytes(packet / Raw(payload) if payload else packet)


class Hand:
    """Stack ``a`` alone; the test plays the peer at MAC_B/IP_B with :func:`tcp_frame`.

    Members
    -------
    stack : TcpStack
    out : list[bytes]
        Every frame the stack sent.
    now : float
        The stack's clock.
    iss : int
        The stack's ISS, after :meth:`accept`.
    """

    def __init__(self, **stack_args):
        self.now = 0.0
        self.out: list[bytes] = []
        self.stack = TcpStack(MAC_A, IP_A, self.out.append, lambda: self.now, **stack_args)
        self.iss = None

    def send(self, **fields) -> None:
        """Feed the stack one frame from the peer (see :func:`tcp_frame`)."""
        self.stack.receive_frame(tcp_frame(**fields))

    @property
    def last(self):
        """The TCP layer of the last frame the stack sent."""
        return Ether(self.out[-1])[TCP]

    def accept(self, mss=None) -> Connection:
        """Handshake with a listener on PORT from peer ISN 100; the accepted connection."""
        listener = self.stack.listen(PORT)
        self.send(seq=100, ack=0, flags="S", mss=mss)
        assert self.last.flags == "SA" and self.last.ack == 101
        self.iss = self.last.seq
        self.send(seq=101, ack=self.iss + 1, flags="A")
        conn = listener.accept()
        assert conn.state is State.ESTABLISHED
        return conn


def segments(frames):
    """The TCP layers of captured ``(time, frame)`` pairs."""
    return [Ether(frame)[TCP] for _, frame in frames]


def open_pair(wire: Wire) -> tuple[Connection, Connection]:
    """Connect ``b`` (client) to ``a`` (server); returns ``(client, server)``, both ESTABLISHED."""
    listener = wire.a.listen(PORT)
    client = wire.b.connect(MAC_A, IP_A, PORT)
    accepted = []

    def established():
        if not accepted and (conn := listener.accept()) is not None:
            accepted.append(conn)
        return bool(accepted) and client.state is State.ESTABLISHED

    wire.run(established, max_steps=100)
    return client, accepted[0]


def exchange(wire: Wire, up: bytes, down: bytes, max_steps: int):
    """Client sends ``up`` while the server sends ``down``; the client closes once it has
    everything, the server when it sees the client's FIN. Returns what each side received and
    the two connections."""
    client, server = open_pair(wire)
    client.send(up)
    server.send(down)
    got_up, got_down = bytearray(), bytearray()

    def progress():
        got_up.extend(server.recv(1 << 20))
        got_down.extend(client.recv(1 << 20))
        if len(got_down) == len(down):
            client.close()
        if server.eof:
            server.close()
        return client.state is State.CLOSED and server.state is State.CLOSED

    wire.run(progress, max_steps=max_steps)
    assert client.error is None and server.error is None
    return bytes(got_up), bytes(got_down), client, server


def test_handshake_and_mss():
    wire = Wire(a_args={"mss": 1000})
    client, server = open_pair(wire)
    assert server.state is State.ESTABLISHED
    assert (server.remote_ip, server.remote_port, server.remote_mac) == (IP_B, client.local_port,
                                                                         MAC_B)
    assert client.send_mss == 1000 and server.send_mss == 1000
    syn, ack = segments(wire.sent["b"])
    (syn_ack,) = segments(wire.sent["a"])
    assert (syn.flags, syn_ack.flags, ack.flags) == ("S", "SA", "A")
    assert dict(syn.options)["MSS"] == 1460 and dict(syn_ack.options)["MSS"] == 1000
    assert syn_ack.ack == seq_add(syn.seq, 1) and ack.ack == seq_add(syn_ack.seq, 1)
    assert client.snd_una == client.snd_nxt == seq_add(client.iss, 1)
    assert server.rcv_nxt == client.snd_nxt and client.rcv_nxt == server.snd_nxt


def test_frames_are_valid_ethernet_ipv4_tcp():
    """Every frame either side sends re-parses with scapy, with both checksums right."""
    wire = Wire()
    up, down = random.Random(1).randbytes(20_000), random.Random(2).randbytes(5_000)
    got_up, got_down, _, _ = exchange(wire, up, down, max_steps=500)
    assert (got_up, got_down) == (up, down)
    for sender, (mac, ip) in {"a": (MAC_A, IP_A), "b": (MAC_B, IP_B)}.items():
        for _, frame in wire.sent[sender]:
            assert len(frame) >= 60
            packet = Ether(frame)
            assert IP in packet and TCP in packet
            assert (packet.src, packet[IP].src) == (mac, ip)
            datagram = frame[14 : 14 + packet[IP].len]
            rebuilt = IP(datagram)
            rebuilt.chksum = None
            rebuilt[TCP].chksum = None
            assert bytes(rebuilt) == datagram


def test_bulk_both_ways_byte_exact():
    """1 MB up and 256 KB down at once, then FIN close; every byte arrives, nothing is resent."""
    wire = Wire()
    up, down = random.Random(3).randbytes(1 << 20), random.Random(4).randbytes(256 << 10)
    got_up, got_down, client, server = exchange(wire, up, down, max_steps=5_000)
    assert got_up == up and got_down == down
    assert client.stats.bytes_received == len(down) and server.stats.bytes_received == len(up)
    assert wire.a.stats.retransmissions == wire.b.stats.retransmissions == 0
    assert wire.a.connections == wire.b.connections == ()


def test_five_percent_loss_both_ways():
    """With 5 % of the frames lost in each direction the same exchange completes, in bounded
    steps and simulated time, by timeouts and fast retransmits.

    The receiver queues out-of-order segments and SACKs them, so a loss costs the sender the
    holes only; a 16 KB window keeps the run short.
    """
    wire = Wire(loss=0.05, seed=11, rcv_wnd=16384)
    up, down = random.Random(5).randbytes(1 << 20), random.Random(6).randbytes(256 << 10)
    got_up, got_down, _, server = exchange(wire, up, down, max_steps=2_000)
    assert got_up == up and got_down == down
    assert wire.now < 30
    stats = [wire.a.stats, wire.b.stats]
    assert all(s.retransmissions > 0 and s.out_of_order_queued > 0 for s in stats)
    assert all(s.sack_blocks_sent > 0 and s.sacked_bytes_skipped > 0 for s in stats)
    assert sum(s.fast_retransmits for s in stats) > 0 and sum(s.timeouts for s in stats) > 0
    assert sum(s.dup_acks_received for s in stats) > 0
    assert server.stats.dup_acks_sent > 0


def test_duplication_and_reordering():
    wire = Wire(duplicate=0.05, reorder=0.1, seed=12)
    up, down = random.Random(7).randbytes(100_000), random.Random(8).randbytes(30_000)
    got_up, got_down, _, _ = exchange(wire, up, down, max_steps=5_000)
    assert got_up == up and got_down == down


def test_sequence_numbers_wrap():
    top = (1 << 32) - 30_000
    wire = Wire(a_args={"isn": lambda: top}, b_args={"isn": lambda: top + 1000})
    up, down = random.Random(9).randbytes(100_000), random.Random(10).randbytes(100_000)
    got_up, got_down, client, _ = exchange(wire, up, down, max_steps=2_000)
    assert got_up == up and got_down == down
    assert client.snd_una < client.iss  # it did wrap


def test_sender_respects_the_peer_window():
    wire = Wire(a_args={"rcv_wnd": 3000})
    client, server = open_pair(wire)
    client.send(bytes(50_000))
    in_flight = []
    got = bytearray()

    def progress():
        in_flight.append(seq_diff(client.snd_max, client.snd_una))
        got.extend(server.recv(1 << 20))
        return len(got) == 50_000

    wire.run(progress, max_steps=1_000)
    assert max(in_flight) == 3000
    assert all(seg.window == 3000 for seg in segments(wire.sent["a"]))


@pytest.mark.parametrize("first", ["client", "server"])
def test_fin_close_from_either_side(first):
    wire = Wire(time_wait=0.5)
    client, server = open_pair(wire)
    closer, other = (client, server) if first == "client" else (server, client)
    closer.send(b"last words")
    closer.close()
    assert closer.state is State.FIN_WAIT_1
    with pytest.raises(BrokenPipeError):
        closer.send(b"more")
    wire.run(lambda: closer.state is State.FIN_WAIT_2 and other.state is State.CLOSE_WAIT)
    assert other.recv(100) == b"last words" and other.eof
    other.send(b"reply")  # half-close: the other direction still carries data
    other.close()
    assert other.state is State.LAST_ACK
    wire.run(lambda: other.state is State.CLOSED)
    assert closer.state is State.TIME_WAIT and closer.recv(100) == b"reply" and closer.eof
    wire.run(lambda: closer.state is State.CLOSED)
    assert wire.now >= 0.5 and closer.error is None and other.error is None


def test_simultaneous_close():
    wire = Wire()
    client, server = open_pair(wire)
    client.close()
    server.close()
    # Each FIN reaches a peer in FIN-WAIT-1 without acknowledging that peer's FIN: CLOSING.
    wire.run(lambda: State.FIN_WAIT_1 not in (client.state, server.state))
    assert client.state is server.state is State.CLOSING
    wire.run(lambda: client.state is server.state is State.TIME_WAIT)
    wire.run(lambda: client.state is server.state is State.CLOSED)


def test_lost_fin_is_retransmitted():
    wire = Wire(rto_initial=0.2)
    client, server = open_pair(wire)
    wire.loss = 1.0
    client.close()  # this FIN is lost
    wire.loss = 0.0
    wire.run(lambda: server.state is State.CLOSE_WAIT)
    assert client.stats.retransmissions == client.stats.timeouts == 1


def test_connect_to_closed_port_is_refused():
    wire = Wire()
    conn = wire.b.connect(MAC_A, IP_A, 4444)
    wire.run(lambda: conn.state is State.CLOSED)
    assert conn.error == "connection refused"
    (rst,) = segments(wire.sent["a"])
    (syn,) = segments(wire.sent["b"])
    assert rst.flags == "RA" and rst.seq == 0 and rst.ack == seq_add(syn.seq, 1)
    assert wire.a.stats.resets_sent == 1 and wire.b.stats.resets_received == 1
    assert wire.b.connections == ()


def test_segment_to_closed_port_gets_rst():
    """Ref: RFC 9293 §3.10.7.1: an ACK is answered with <SEQ=SEG.ACK><RST>, anything else with
    <SEQ=0><ACK=SEG.SEQ+SEG.LEN><RST,ACK>; a RST is never answered."""
    hand = Hand()
    hand.send(seq=1000, ack=777, flags="PA", payload=b"hello")
    hand.send(seq=5000, ack=0, flags="F", payload=b"xy")
    hand.send(seq=1, ack=2, flags="R")
    first, second = (Ether(frame) for frame in hand.out)
    assert (first[TCP].flags, first[TCP].seq) == ("R", 777)
    assert (second[TCP].flags, second[TCP].seq, second[TCP].ack) == ("RA", 0, 5003)
    assert (first[IP].dst, first.dst, first[TCP].dport) == (IP_B, MAC_B, 40000)


def test_rst_closes_an_established_connection():
    wire = Wire()
    client, server = open_pair(wire)
    server.abort()
    assert server.state is State.CLOSED
    wire.run(lambda: client.state is State.CLOSED)
    assert client.error == "connection reset"
    with pytest.raises(BrokenPipeError, match="reset"):
        client.send(b"x")


def test_rst_with_wrong_sequence_gets_challenge_ack():
    """Ref: RFC 5961 §3.2: a RST in the window but not at RCV.NXT does not reset."""
    hand = Hand()
    conn = hand.accept(mss=1200)
    assert conn.send_mss == 1200
    hand.send(seq=150, ack=0, flags="R")
    assert conn.state is State.ESTABLISHED
    assert hand.last.flags == "A" and hand.last.ack == 101
    hand.send(seq=101, ack=0, flags="R")
    assert conn.state is State.CLOSED and conn.error == "connection reset"


def test_rst_in_time_wait_is_ignored():
    """Ref: RFC 1337 §3: TIME-WAIT ends by its timer, not by a RST."""
    hand = Hand(time_wait=0.5)
    conn = hand.accept()
    conn.close()
    fin = hand.last
    assert fin.flags == "FA" and conn.state is State.FIN_WAIT_1
    hand.send(seq=101, ack=fin.seq + 1, flags="FA")
    assert conn.state is State.TIME_WAIT and hand.last.ack == 102
    hand.send(seq=102, ack=0, flags="R")
    assert conn.state is State.TIME_WAIT
    hand.now = hand.stack.next_deadline()
    assert hand.now == 0.5
    hand.stack.poll()
    assert conn.state is State.CLOSED and conn.error is None


def test_out_of_order_segment_is_queued_with_duplicate_ack():
    """Without SACK (the hand-made SYN offers none) a segment after a gap is kept all the same,
    answered by a duplicate ACK, and delivered once the gap fills."""
    hand = Hand()
    conn = hand.accept()
    assert not conn.sack_permitted
    hand.send(seq=111, ack=hand.iss + 1, flags="PA", payload=b"later")
    assert hand.last.ack == 101 and conn.recv_queue == 0
    assert hand.last.options == []  # no SACK blocks
    hand.send(seq=101, ack=hand.iss + 1, flags="PA", payload=b"0123456789")
    assert hand.last.ack == 116 and conn.recv(100) == b"0123456789later"
    assert conn.stats.out_of_order_queued == conn.stats.dup_acks_sent == 1
    assert conn.stats.out_of_order_dropped == 0


def test_pure_ack_at_the_right_window_edge_is_accepted():
    """A peer that filled our window sends its ACKs at RCV.NXT + RCV.WND: they must count."""
    hand = Hand(rcv_wnd=1000)
    conn = hand.accept()
    conn.send(b"x" * 10)
    hand.send(seq=101 + 1000, ack=hand.iss + 11, flags="A")
    assert conn.snd_una == hand.iss + 11 and conn.send_queue == 0


def test_syn_backoff_and_give_up():
    """Ref: RFC 6298 §5.5: each timeout doubles the RTO; after max_retries the connection closes."""
    wire = Wire(loss=1.0, rto_initial=1.0, max_retries=4)
    conn = wire.b.connect(MAC_A, IP_A, PORT)
    wire.run(lambda: conn.state is State.CLOSED)
    times = [t for t, _ in wire.sent["b"]]
    assert times == [0.0, 1.0, 3.0, 7.0, 15.0]
    assert conn.error == "connection timed out" and conn.stats.retransmissions == 4


def test_zero_window_probe():
    """A peer that advertises a zero window gets no data until the timer sends a 1-byte probe."""
    hand = Hand(rto_initial=1.0)
    conn = hand.stack.connect(MAC_B, IP_B, 40000, local_port=PORT)
    iss = hand.last.seq
    hand.send(seq=500, ack=iss + 1, flags="SA", window=0)
    assert conn.state is State.ESTABLISHED and conn.send_mss == 536  # no MSS option: RFC default
    conn.send(b"abcdef")
    assert len(hand.out) == 2  # SYN and the handshake ACK only
    hand.now = hand.stack.next_deadline()
    hand.stack.poll()
    assert hand.last[Raw].load == b"a" and hand.last.seq == iss + 1
    hand.send(seq=501, ack=iss + 2, flags="A", window=100)
    assert hand.last[Raw].load == b"bcdef"


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [({"mss": 0}, ValueError), ({"rcv_wnd": 70000, "window_scaling": False}, ValueError),
     ({"rcv_wnd": (1 << 30) + 1}, ValueError), ({"ip": None}, ValueError),
     ({"ipv6": "fe80::1::2"}, ValueError), ({"ip": "10.0.0.256"}, ValueError),
     ({"rto_min": 2.0}, ValueError), ({"send_frame": None}, TypeError)],
)
def test_constructor_validates(kwargs, error):
    args = {"mac": MAC_A, "ip": IP_A, "send_frame": lambda f: None, "clock": lambda: 0.0}
    with pytest.raises(error):
        TcpStack(**(args | kwargs))


def test_listen_twice_and_ephemeral_ports():
    stack = TcpStack(MAC_A, IP_A, lambda f: None, lambda: 0.0)
    stack.listen(80)
    with pytest.raises(ValueError, match="already"):
        stack.listen(80)
    ports = {stack.connect(MAC_B, IP_B, 80).local_port for _ in range(3)}
    assert ports == {49152, 49153, 49154}
