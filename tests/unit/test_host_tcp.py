"""The host TCP stack: two `TcpStack`s back to back through a Python wire with a fake clock.

The wire delays every frame by a fixed latency and can lose, duplicate or reorder frames from a
seeded generator; the clock jumps from one event (a frame's arrival, a timer) to the next, so every
run is deterministic and bounded in steps. Both stacks have IPv4 and IPv6 addresses; tests marked
with ``family`` run over each. A few tests talk to one stack with hand-made scapy frames instead, to
reach a rule directly. Frames are checked by parsing them with scapy, not with the stack's parser.
The link-layer side (ARP, neighbour discovery, echo, malformed frames) is in
``test_host_neighbours.py``.
"""

import heapq
import random

import pytest
from scapy.layers.inet import IP, TCP
from scapy.layers.inet6 import IPv6
from scapy.layers.l2 import ARP, Ether
from scapy.packet import Raw

from host_driver.driver import offload_frame
from host_driver.tcp import Connection, State, TcpStack, seq_add, seq_diff
from sim.reference.checksum import ones_complement_sum

MAC_A, IP_A, IP6_A = "02:00:00:00:00:0a", "192.0.2.10", "2001:db8::a"
MAC_B, IP_B, IP6_B = "02:00:00:00:00:0b", "198.51.100.20", "2001:db8:1::b"
ADDRESS_A = {4: IP_A, 6: IP6_A}
PORT = 5001
both_families = pytest.mark.parametrize("family", [4, 6])


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
    ipv4 : bool
        False makes both stacks IPv6-only.
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
    drop : Callable[[str, bytes], bool] or None
        Drops the frames (sender, frame) for which it returns True, besides the random losses.
    steps : int
        Events handled so far.
    """

    def __init__(self, latency=1e-3, loss=0.0, duplicate=0.0, reorder=0.0, seed=0,
                 a_args=None, b_args=None, ipv4=True, **stack_args):
        self.now = 0.0
        self.steps = 0
        self.sent: dict[str, list[tuple[float, bytes]]] = {"a": [], "b": []}
        self.latency, self.loss, self.duplicate, self.reorder = latency, loss, duplicate, reorder
        self.drop = None
        self._rng = random.Random(seed)
        self._queue: list[tuple[float, int, str, bytes]] = []
        self._order = 0

        def clock():
            return self.now

        self.a = TcpStack(MAC_A, IP_A if ipv4 else None, lambda f: self._put("a", f), clock,
                          ipv6=IP6_A, **stack_args | (a_args or {}))
        self.b = TcpStack(MAC_B, IP_B if ipv4 else None, lambda f: self._put("b", f), clock,
                          ipv6=IP6_B, **stack_args | (b_args or {}))

    def _put(self, sender: str, frame: bytes) -> None:
        self.sent[sender].append((self.now, frame))
        if self.drop is not None and self.drop(sender, frame):
            return
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


def tcp_frame(seq, ack, flags, sport=40000, dport=PORT, payload=b"", window=65535, mss=None,
              options=None, family=4):
    """A frame from a hand-driven peer at MAC_B/IP_B (or IP6_B) to stack ``a``."""
    options = ([("MSS", mss)] if mss else []) + (options or [])
    ip = IP(src=IP_B, dst=IP_A) if family == 4 else IPv6(src=IP6_B, dst=IP6_A)
    packet = (Ether(src=MAC_B, dst=MAC_A) / ip
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
        self.stack = TcpStack(MAC_A, IP_A, self.out.append, lambda: self.now, ipv6=IP6_A,
                              **stack_args)
        self.iss = None

    def send(self, **fields) -> None:
        """Feed the stack one frame from the peer (see :func:`tcp_frame`)."""
        self.stack.receive_frame(tcp_frame(**fields))

    @property
    def last(self):
        """The TCP layer of the last frame the stack sent."""
        return Ether(self.out[-1])[TCP]

    def accept(self, mss=None, options=None, ack_options=None) -> Connection:
        """Handshake with a listener on PORT from peer ISN 100; the accepted connection.
        ``options`` go in the peer's SYN, ``ack_options`` in its ACK."""
        listener = self.stack.listen(PORT)
        self.send(seq=100, ack=0, flags="S", mss=mss, options=options)
        assert self.last.flags == "SA" and self.last.ack == 101
        self.iss = self.last.seq
        self.send(seq=101, ack=self.iss + 1, flags="A", options=ack_options)
        conn = listener.accept()
        assert conn.state is State.ESTABLISHED
        return conn


def segments(frames):
    """The TCP layers of captured ``(time, frame)`` pairs (frames that are not TCP left out)."""
    return [packet[TCP] for _, frame in frames if TCP in (packet := Ether(frame))]


def payload_length(tcp) -> int:
    """The TCP payload bytes of a scapy TCP layer, from the IP length (not the frame padding)."""
    ip = tcp.underlayer
    total = ip.len - 4 * ip.ihl if IP in ip else ip.plen
    return total - 4 * tcp.dataofs


def data_segments(frames):
    """The TCP layers that carry payload."""
    return [tcp for tcp in segments(frames) if payload_length(tcp)]


def options(tcp) -> dict:
    """A scapy TCP layer's options by name (NOPs left out)."""
    return {name: value for name, value in tcp.options if name != "NOP"}


def open_pair(wire: Wire, family: int = 4) -> tuple[Connection, Connection]:
    """Connect ``b`` (client) to ``a`` (server); returns ``(client, server)``, both ESTABLISHED."""
    listener = wire.a.listen(PORT)
    client = wire.b.connect(MAC_A, ADDRESS_A[family], PORT)
    accepted = []

    def established():
        if not accepted and (conn := listener.accept()) is not None:
            accepted.append(conn)
        return bool(accepted) and client.state is State.ESTABLISHED

    wire.run(established, max_steps=100)
    return client, accepted[0]


def exchange(wire: Wire, up: bytes, down: bytes, max_steps: int, family: int = 4):
    """Client sends ``up`` while the server sends ``down``; the client closes once it has
    everything, the server when it sees the client's FIN. Returns what each side received and
    the two connections."""
    client, server = open_pair(wire, family)
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
    wire = Wire(a_args={"rcv_wnd": 3000}, congestion_control=False)   # the peer window alone
    client, server = open_pair(wire)
    client.send(bytes(50_000))
    in_flight = []
    got = bytearray()

    def progress():
        in_flight.append(seq_diff(client.snd_max, client.snd_una))
        got.extend(server.recv(1 << 20))
        return len(got) == 50_000

    wire.run(progress, max_steps=1_000)
    # Full 1448-byte segments only (sender silly-window avoidance holds the 104 bytes left over).
    assert max(in_flight) == 2 * 1448
    assert all(seg.window == 3000 for seg in segments(wire.sent["a"]))


def test_congestion_window_slow_start_and_loss():
    """RFC 5681 on a 1 GiB peer window: the first flight is RFC 6928's ten segments, slow start
    doubles each round trip, a timeout halves ssthresh to half the flight and restarts from one
    segment; every byte still arrives."""
    wire = Wire(a_args={"rcv_wnd": 1 << 30})
    client, server = open_pair(wire)
    smss = client.send_mss - 12
    data = random.Random(2).randbytes(400 * smss)
    client.send(data)
    flights = []
    got = bytearray()

    def progress():
        flights.append(seq_diff(client.snd_max, client.snd_una))
        got.extend(server.recv(1 << 20))
        return len(got) >= 150 * smss

    wire.run(progress, max_steps=5_000)
    assert flights[0] == 10 * smss
    assert max(flights) >= 80 * smss                # it grew: 10, 20, 40, 80 segments a round trip
    assert client.cwnd >= 80 * smss and client.ssthresh == 1 << 30
    # Black-hole the link until the timer fires: the flight halves into ssthresh, cwnd is 1 SMSS.
    wire.loss = 1.0
    wire.run(lambda: client.stats.timeouts == 1, max_steps=50_000)
    flight = seq_diff(client.snd_max, client.snd_una)     # what was in flight when it fired
    assert flight > 80 * smss
    assert client.ssthresh == flight // 2 and client.cwnd == smss
    wire.loss = 0.0
    wire.run(lambda: got.extend(server.recv(1 << 20)) or len(got) == len(data), max_steps=50_000)
    assert bytes(got) == data


def test_congestion_control_off_fills_the_peer_window_at_once():
    wire = Wire(congestion_control=False)
    client, _ = open_pair(wire)
    client.send(bytes(60_000))      # four times the initial window, within the 65535 of the SYN
    assert seq_diff(client.snd_max, client.snd_una) == 60_000


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
    hand = Hand(rto_initial=1.0, congestion_control=False)
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


# -- IPv6 ------------------------------------------------------------------------------------


def test_ipv6_handshake_and_mss():
    """Over IPv6 the MSS announced is 20 bytes less than over IPv4 (1440 for a 1500-byte MTU);
    every frame is Ethernet / IPv6 (hop limit 64, next header TCP, no extension header)."""
    wire = Wire(a_args={"mss": 1000})
    client, server = open_pair(wire, family=6)
    assert (client.family, server.family) == (6, 6)
    assert (server.remote_ip, server.local_ip, server.remote_mac) == (IP6_B, IP6_A, MAC_B)
    assert (client.remote_ip, client.local_ip) == (IP6_A, IP6_B)
    assert client.send_mss == server.send_mss == 980
    syn, _ = segments(wire.sent["b"])
    (syn_ack,) = segments(wire.sent["a"])
    assert options(syn)["MSS"] == 1440 and options(syn_ack)["MSS"] == 980
    for _, frame in wire.sent["a"] + wire.sent["b"]:
        packet = Ether(frame)
        assert packet.type == 0x86DD and packet[IPv6].hlim == 64 and packet[IPv6].nh == 6
        assert packet[IPv6].fl == 0 and packet[IPv6].tc == 0


def test_ipv6_only_stacks_over_link_local():
    """Two IPv6-only stacks, the client knowing only the server's link-local address: it
    resolves the MAC, connects from its own link-local address, and data flows."""
    wire = Wire(ipv4=False)
    assert wire.a.ip is None and wire.a.link_local == "fe80::ff:fe00:a"
    listener = wire.a.listen(PORT)
    conn = wire.b.connect(None, "FE80::00ff:fe00:a", PORT)
    assert (conn.remote_ip, conn.local_ip) == ("fe80::ff:fe00:a", "fe80::ff:fe00:b")
    conn.send(b"hello over link-local")
    accepted = []

    def done():
        if not accepted and (server := listener.accept()) is not None:
            accepted.append(server)
        return bool(accepted) and accepted[0].recv_queue == 21

    wire.run(done, max_steps=100)
    assert accepted[0].recv(100) == b"hello over link-local"
    assert accepted[0].local_ip == "fe80::ff:fe00:a" and conn.remote_mac == MAC_A


def test_ipv6_key_is_normalised():
    """Addresses are kept in their normal form, whatever text the caller gave."""
    wire = Wire()
    wire.a.listen(PORT)
    conn = wire.b.connect(MAC_A, "2001:0DB8:0000::000A", PORT)
    assert conn.remote_ip == IP6_A
    with pytest.raises(ValueError, match="exists"):
        wire.b.connect(MAC_A, "2001:db8::a", PORT, local_port=conn.local_port)
    wire.run(lambda: conn.state is State.ESTABLISHED, max_steps=100)
    (server,) = wire.a.connections
    assert (server.local_port, server.remote_ip, server.remote_port) == (PORT, IP6_B,
                                                                        conn.local_port)


@both_families
def test_frames_are_valid_ethernet_ip_tcp(family):
    """Every frame either side sends re-parses with scapy, with every checksum right."""
    wire = Wire()
    up, down = random.Random(1).randbytes(20_000), random.Random(2).randbytes(5_000)
    got_up, got_down, _, _ = exchange(wire, up, down, max_steps=500, family=family)
    assert (got_up, got_down) == (up, down)
    addresses = {"a": (MAC_A, IP_A, IP6_A), "b": (MAC_B, IP_B, IP6_B)}
    for sender, (mac, ip4, ip6) in addresses.items():
        for _, frame in wire.sent[sender]:
            assert len(frame) >= 60
            packet = Ether(frame)
            layer = IP if family == 4 else IPv6
            assert layer in packet and TCP in packet
            assert (packet.src, packet[layer].src) == (mac, ip4 if family == 4 else ip6)
            length = packet[IP].len if family == 4 else 40 + packet[IPv6].plen
            datagram = frame[14 : 14 + length]
            rebuilt = layer(datagram)
            if family == 4:
                rebuilt.chksum = None
            rebuilt[TCP].chksum = None
            assert bytes(rebuilt) == datagram


@both_families
def test_ipv6_frames_survive_checksum_offload(family):
    """``offload_frame`` (what the driver hands the NIC) plus the NIC's fill, computed with the
    reference checksum model, gives back frames with the same meaning: every checksum right."""
    wire = Wire()
    exchange(wire, random.Random(1).randbytes(9_000), b"ok", max_steps=500, family=family)
    for _, frame in wire.sent["a"] + wire.sent["b"]:
        partial, args = offload_frame(frame)
        assert args["l4_csum"] and args.get("ip_csum", False) == (family == 4)
        out = bytearray(partial)
        if family == 4:
            start, end = args["ip_offset"], args["ip_offset"] + 20
            out[start + 10:start + 12] = (~ones_complement_sum(bytes(out[start:end])) & 0xFFFF
                                          ).to_bytes(2, "big")
        field = args["csum_start"] + args["csum_offset"]
        total = ones_complement_sum(bytes(out[args["csum_start"]:]))
        out[field:field + 2] = (~total & 0xFFFF or 0xFFFF).to_bytes(2, "big")
        # The same frame; where the NIC's sum is 0xFFFF for scapy's 0 (both mean "correct").
        if out[field:field + 2] != frame[field:field + 2]:
            assert {bytes(out[field:field + 2]), frame[field:field + 2]} == {b"\0\0", b"\xff\xff"}
        assert out[:field] == frame[:field] and out[field + 2:] == frame[field + 2:]


@both_families
def test_bulk_both_ways_byte_exact_each_family(family):
    wire = Wire()
    up, down = random.Random(3).randbytes(512 << 10), random.Random(4).randbytes(128 << 10)
    got_up, got_down, _, _ = exchange(wire, up, down, max_steps=5_000, family=family)
    assert got_up == up and got_down == down
    assert wire.a.stats.retransmissions == wire.b.stats.retransmissions == 0
    # Payload per segment: the MSS less the 12 bytes of the timestamp option (RFC 6691).
    sizes = {payload_length(tcp) for tcp in data_segments(wire.sent["b"])}
    assert max(sizes) == (1460 if family == 4 else 1440) - 12


@both_families
def test_loss_duplication_and_reordering_each_family(family):
    wire = Wire(loss=0.03, duplicate=0.03, reorder=0.1, seed=21 + family, rcv_wnd=32768)
    up, down = random.Random(7).randbytes(200_000), random.Random(8).randbytes(60_000)
    got_up, got_down, _, _ = exchange(wire, up, down, max_steps=5_000, family=family)
    assert got_up == up and got_down == down
    stats = [wire.a.stats, wire.b.stats]
    assert sum(s.retransmissions for s in stats) > 0
    assert sum(s.dup_segments_received for s in stats) > 0
    assert sum(s.out_of_order_queued for s in stats) > 0


# -- Options: window scaling, SACK, timestamps -------------------------------------------------

OPTION_NAME = {"window_scaling": "WScale", "sack": "SAckOK", "timestamps": "Timestamp"}


@pytest.mark.parametrize("option", list(OPTION_NAME))
@pytest.mark.parametrize(("a_on", "b_on"), [(True, True), (True, False), (False, True),
                                            (False, False)])
def test_option_negotiation(option, a_on, b_on):
    """Each option, switched off on either side, is agreed only when both SYNs carry it; the
    others still are. Windows on the wire are scaled by the agreed shift, never in a SYN."""
    big = 1 << 20  # shift 5: 1 MiB >> 5 = 32768
    a_args = {option: a_on, "rcv_wnd": big if option != "window_scaling" or a_on else 65535}
    b_args = {option: b_on, "rcv_wnd": big if option != "window_scaling" or b_on else 65535}
    wire = Wire(a_args=a_args, b_args=b_args)
    client, server = open_pair(wire)
    # A loss, so that the receiver has a gap to SACK (or not).
    first = []
    wire.drop = lambda sender, frame: (sender == "b" and not first and TCP in Ether(frame)
                                       and payload_length(Ether(frame)[TCP]) > 0
                                       and not first.append(frame))
    client.send(random.Random(1).randbytes(30_000))
    server.send(random.Random(2).randbytes(30_000))
    wire.run(lambda: server.recv_queue == client.recv_queue == 30_000, max_steps=1_000)
    agreed = a_on and b_on
    syn, *rest_b = segments(wire.sent["b"])
    syn_ack, *rest_a = segments(wire.sent["a"])
    assert (OPTION_NAME[option] in options(syn)) == b_on
    assert (OPTION_NAME[option] in options(syn_ack)) == agreed
    for conn in (client, server):
        assert conn.sack_permitted == (option != "sack" or agreed)
        assert conn.timestamps == (option != "timestamps" or agreed)
        scaled = option != "window_scaling" or agreed
        assert (conn.snd_wscale is not None) == (conn.rcv_wscale is not None) == scaled
    # SYN windows unscaled; later windows the receive window shifted by the agreed shift.
    assert syn.window == syn_ack.window == 65535
    scaled = option != "window_scaling" or agreed
    if scaled:
        assert options(syn)["WScale"] == 5 and server.rcv_wscale == client.snd_wscale == 5
        assert client.snd_wnd == server.snd_wnd == big
    for tcp in rest_a + rest_b:
        assert tcp.window == (big >> 5 if scaled else 65535)
        assert ("Timestamp" in options(tcp)) == (option != "timestamps" or agreed)
    sack_blocks = [options(tcp)["SAck"] for tcp in rest_a if "SAck" in options(tcp)]
    assert bool(sack_blocks) == (option != "sack" or agreed)
    assert all("SAck" not in options(tcp) for tcp in rest_b)  # b saw no gap
    assert server.stats.out_of_order_queued > 0


def test_syn_options_in_linux_order():
    """Our SYN carries MSS, SACK-permitted, timestamps and window scale, as Linux orders them,
    padded with NOPs to whole words only."""
    wire = Wire()
    wire.b.connect(MAC_A, IP_A, PORT)
    (syn,) = segments(wire.sent["b"])
    assert [name for name, _ in syn.options] == ["MSS", "SAckOK", "Timestamp", "NOP", "WScale"]
    assert syn.dataofs == 10 and options(syn)["Timestamp"] == (0, 0)


def drop_data_segments(wire: Wire, sender: str, numbers: set[int]) -> list[int]:
    """Make the wire drop the first transmission of the ``numbers``-th data segments (counted
    from 1) ``sender`` sends; returns the list their sequence numbers go into."""
    seen, dropped = [], []

    def drop(who, frame):
        packet = Ether(frame)
        if who != sender or TCP not in packet or not payload_length(packet[TCP]):
            return False
        seq = packet[TCP].seq
        if seq in seen:
            return False
        seen.append(seq)
        if len(seen) in numbers:
            dropped.append(seq)
            return True
        return False

    wire.drop = drop
    return dropped


@both_families
def test_sack_blocks_and_retransmission_of_the_hole_only(family):
    """One data segment in 30 is lost: every later ACK carries one SACK block from the segment
    after the hole to the last one received; the sender resends the hole alone (without
    congestion control, so that all 30 are in flight at once)."""
    wire = Wire(congestion_control=False)
    client, server = open_pair(wire, family)
    data = random.Random(5).randbytes(30 * 1000)
    client.send_mss = 1000 + 12  # 1000-byte segments
    dropped = drop_data_segments(wire, "b", {5})
    client.send(data)
    wire.run(lambda: server.recv_queue == len(data), max_steps=1_000)
    assert server.recv(1 << 20) == data
    (hole,) = dropped
    sent = data_segments(wire.sent["b"])
    assert [tcp.seq for tcp in sent].count(hole) == 2 and len(sent) == 31
    assert client.stats.retransmissions == client.stats.fast_retransmits == 1
    assert client.stats.timeouts == 0
    acks = [tcp for tcp in segments(wire.sent["a"])[1:] if tcp.ack == hole]
    assert len(acks) == 26 and "SAck" not in options(acks.pop(0))  # the ACK before the hole
    # then one duplicate ACK per segment after the hole
    for k, tcp in enumerate(acks, start=1):
        assert options(tcp)["SAck"] == (seq_add(hole, 1000), seq_add(hole, 1000 * (k + 1)))
    assert server.stats.sack_blocks_sent == 25 and server.stats.out_of_order_queued == 25
    final = segments(wire.sent["a"])[-1]
    assert final.ack == seq_add(hole, 26_000) and "SAck" not in options(final)


def test_sack_two_holes_most_recent_block_first():
    """Two holes: the ACKs list the block of the latest segment first; both holes, and nothing
    else, are resent, without waiting for a timeout."""
    wire = Wire()
    client, server = open_pair(wire)
    data = random.Random(6).randbytes(30 * 1000)
    client.send_mss = 1000 + 12
    dropped = drop_data_segments(wire, "b", {5, 10})
    client.send(data)
    wire.run(lambda: server.recv_queue == len(data), max_steps=1_000)
    assert server.recv(1 << 20) == data
    first, second = dropped
    acks = [options(tcp)["SAck"] for tcp in segments(wire.sent["a"]) if "SAck" in options(tcp)]
    # After segment 11: its block (11..11) first, then the older one (6..9).
    after_11 = (seq_add(second, 1000), seq_add(second, 2000), seq_add(first, 1000), second)
    assert after_11 in acks
    assert all(len(blocks) <= 6 for blocks in acks)  # at most 3 blocks with timestamps
    resent = [tcp.seq for tcp in data_segments(wire.sent["b"])]
    assert sorted(seq for seq in set(resent) if resent.count(seq) > 1) == sorted(dropped)
    assert client.stats.retransmissions == 2 and client.stats.timeouts == 0


def test_go_back_n_without_sack_resends_more():
    """The same loss with SACK off: the sender goes back N, resending segments that arrived."""
    wire = Wire(sack=False)
    client, server = open_pair(wire)
    data = random.Random(5).randbytes(30 * 1000)
    client.send_mss = 1000 + 12
    drop_data_segments(wire, "b", {5})
    client.send(data)
    wire.run(lambda: server.recv_queue == len(data), max_steps=1_000)
    assert server.recv(1 << 20) == data
    assert client.stats.retransmissions > 1 and server.stats.dup_segments_received > 0
    assert server.stats.sack_blocks_sent == 0


def test_timeout_skips_sacked_data():
    """After a timeout, go-back-N resends only what the peer has not SACKed."""
    hand = Hand(rto_initial=1.0, congestion_control=False)
    conn = hand.accept(options=[("SAckOK", b"")])
    assert conn.sack_permitted and not conn.timestamps
    conn.send_mss = 100
    conn.send(bytes(range(250)) * 2)  # 5 segments of 100
    first = hand.iss + 1
    hand.send(seq=101, ack=first, flags="A",
              options=[("SAck", (first + 100, first + 200, first + 300, first + 500))])
    before = len(hand.out)
    hand.now = hand.stack.next_deadline()
    hand.stack.poll()
    resent = [Ether(frame)[TCP].seq for frame in hand.out[before:]]
    assert resent == [first, first + 200]
    assert conn.stats.sacked_bytes_skipped == 100 + 200
    # The last SACKed bytes end the data: nothing after them is resent.


def ts_option(tsval, tsecr):
    return [("NOP", None), ("NOP", None), ("Timestamp", (tsval, tsecr))]


def test_timestamps_are_echoed():
    """TSval is the clock in milliseconds; TSecr echoes TS.Recent, the peer's latest TSval on a
    segment at the left window edge (RFC 7323 §4.3); the RTT comes from the echo."""
    wire = Wire(latency=5e-3)
    client, server = open_pair(wire)
    client.send(bytes(5000))
    wire.run(lambda: server.recv_queue == 5000)
    for sender in "ab":
        for t, frame in wire.sent[sender]:
            tsval, _ = options(Ether(frame)[TCP])["Timestamp"]
            assert tsval == int(t * 1000)
    syn, ack, *_ = segments(wire.sent["b"])
    syn_ack, *from_a = segments(wire.sent["a"])
    assert options(syn)["Timestamp"][1] == 0
    assert options(syn_ack)["Timestamp"][1] == options(syn)["Timestamp"][0]
    assert options(ack)["Timestamp"][1] == options(syn_ack)["Timestamp"][0]
    # Every ACK from a echoes the TSval of the data segments just received (sent 5 ms earlier).
    for tcp in from_a:
        tsval, tsecr = options(tcp)["Timestamp"]
        assert tsecr == tsval - 5
    assert client.srtt == pytest.approx(0.010)


def test_paws_drops_an_old_segment():
    """Ref: RFC 7323 §5.3: a segment whose TSval is older than TS.Recent is dropped with an ACK;
    a RST is not subject to the check."""
    hand = Hand()
    conn = hand.accept(options=[("Timestamp", (1000, 0))],
                       ack_options=ts_option(1001, 0))
    assert conn.timestamps and conn.ts_recent == 1001
    hand.send(seq=101, ack=hand.iss + 1, flags="PA", payload=b"new", options=ts_option(1005, 0))
    assert conn.recv(10) == b"new" and conn.ts_recent == 1005
    hand.send(seq=104, ack=hand.iss + 1, flags="PA", payload=b"old", options=ts_option(900, 0))
    assert conn.recv_queue == 0 and conn.stats.paws_drops == 1
    assert hand.last.ack == 104 and options(hand.last)["Timestamp"][1] == 1005
    hand.send(seq=104, ack=hand.iss + 1, flags="PA", payload=b"ok", options=ts_option(1006, 0))
    assert conn.recv(10) == b"ok"
    hand.send(seq=106, ack=0, flags="R", options=ts_option(1, 0))
    assert conn.state is State.CLOSED and conn.error == "connection reset"


def test_rtt_from_timestamps_despite_retransmission():
    """Ref: RFC 7323 §4.1: the echoed TSval times a retransmitted segment too, where Karn's rule
    would take no sample."""
    hand = Hand(rto_initial=1.0, congestion_control=False)
    hand.now = 10.0
    conn = hand.accept(options=[("Timestamp", (1000, 0))], ack_options=ts_option(1001, 0))
    assert conn.srtt == 0.0  # the handshake's sample (no time passed)
    conn.send(b"x" * 10)
    assert options(hand.last)["Timestamp"] == (10_000, 1001)
    hand.now = hand.stack.next_deadline()
    hand.stack.poll()
    assert conn.stats.retransmissions == 1 and options(hand.last)["Timestamp"][0] == 10_200
    hand.now = 10.3
    hand.send(seq=101, ack=hand.iss + 11, flags="A", options=ts_option(1002, 10_000))
    assert conn.snd_una == hand.iss + 11
    assert conn.srtt == pytest.approx(0.3 / 8)  # RFC 6298 §2.3 with the 0.3 s sample


def test_gigabyte_window_moves_more_than_64k_in_flight():
    """With a 1 GiB receive window (shift 14) the sender has far more than 64 KB in flight."""
    wire = Wire(a_args={"rcv_wnd": 1 << 30}, congestion_control=False)
    client, server = open_pair(wire)
    assert wire.a.wscale == 14 and server.rcv_wscale == client.snd_wscale == 14
    data = random.Random(9).randbytes(512 << 10)
    client.send(data)
    in_flight, got = [], bytearray()

    def progress():
        in_flight.append(seq_diff(client.snd_max, client.snd_una))
        got.extend(server.recv(1 << 20))
        return len(got) == len(data)

    wire.run(progress, max_steps=1_000)
    assert got == data and max(in_flight) > 4 * 65535
    assert client.snd_wnd == 65535 << 14
    (syn_ack, *rest) = segments(wire.sent["a"])
    assert syn_ack.window == 65535 and options(syn_ack)["WScale"] == 14
    assert {tcp.window for tcp in rest} == {65535}  # 2**30 >> 14 does not fit 16 bits


# -- Neighbour resolution in front of TCP ------------------------------------------------------


@both_families
def test_connect_with_unknown_mac_resolves_first(family):
    """connect(None, ...): the SYN waits for an ARP reply / Neighbour Advertisement, then goes
    out to the right MAC; the connection learns the MAC."""
    wire = Wire()
    listener = wire.a.listen(PORT)
    conn = wire.b.connect(None, ADDRESS_A[family], PORT)
    assert conn.remote_mac is None
    accepted = []

    def both_open():
        if not accepted and (server := listener.accept()) is not None:
            accepted.append(server)
        return conn.state is State.ESTABLISHED and bool(accepted)

    wire.run(both_open, max_steps=100)
    assert conn.remote_mac == MAC_A and accepted[0].remote_mac == MAC_B
    request, syn, *_ = (Ether(frame) for _, frame in wire.sent["b"])
    if family == 4:
        assert ARP in request and request.dst == "ff:ff:ff:ff:ff:ff"
    else:
        assert request[IPv6].dst == "ff02::1:ff00:a" and request.dst == "33:33:ff:00:00:0a"
    assert syn.dst == MAC_A and syn[TCP].flags == "S"
    # The SYN left as soon as the answer came back (one round trip), not at its retransmission.
    assert [t for t, _ in wire.sent["b"][:2]] == [0.0, 2 * wire.latency]
    assert wire.b.stats.neighbour_drops == 0 and wire.b.stats.retransmissions == 0
    assert wire.b.stats.neighbour_requests_sent == 1 and wire.b.neighbours[ADDRESS_A[family]]
    answer = Ether(wire.sent["a"][0][1])
    assert ARP in answer if family == 4 else answer[IPv6].nh == 58


@both_families
def test_resolution_without_answer_gives_up(family):
    """Nobody answers: three requests one resolve_timeout apart, then the waiting frames (the
    SYN and its retransmissions) are dropped and counted, and the connection fails."""
    wire = Wire(rto_initial=0.4, rto_min=0.2, resolve_queue=2)
    wire.a.receive_frame = lambda frame: None  # a host that answers nothing
    conn = wire.b.connect(None, ADDRESS_A[family], PORT)
    wire.run(lambda: conn.state is State.CLOSED)
    assert conn.error == "host unreachable"
    times = [t for t, _ in wire.sent["b"]]
    assert times == [0.0, 1.0, 2.0]  # only requests: no frame left without a MAC
    stats = wire.b.stats
    assert stats.neighbour_requests_sent == 3 and stats.resolution_failures == 1
    # SYN at 0, retransmitted at 0.4, 1.2, 2.8: two overflow the queue of 2, two wait in it.
    assert stats.neighbour_drops == 4
    assert wire.b.connections == () and wire.b.next_deadline() is None
