"""The parts of ``inic peer`` that need neither root nor a simulator: the services between two
host stacks, the wire bridge's accounting, the kernel client's TCP_INFO decoding (on a loopback
socket of this process's own kernel) and the user-facing errors."""

import json
import socket
import threading
from collections import deque
from pathlib import Path

import pytest

from host_driver.tcp import State, TcpStack
from sim import cli
from sim.peer import netns
from sim.peer.bridge import ETH_MIN_FRAME, WireBridge
from sim.peer.kernel_client import namespace_counters, parse_size, tcp_info
from sim.peer.pattern import REPLY_SEED, digest, pattern
from sim.peer.services import Service, parse_service


class Link:
    """Two stacks whose frames reach each other on the next step; time advances 1 ms a step."""

    def __init__(self):
        self.now = 0.0
        self.queues = {"a": deque(), "b": deque()}
        self.a = TcpStack("02:00:00:00:00:0a", "10.0.0.10", self.queues["b"].append,
                          lambda: self.now)
        self.b = TcpStack("02:00:00:00:00:0b", "10.0.0.11", self.queues["a"].append,
                          lambda: self.now)

    def step(self):
        self.now += 1e-3
        for name, stack in (("a", self.a), ("b", self.b)):
            queue = self.queues[name]
            while queue:
                stack.receive_frame(queue.popleft())
            stack.poll()


def serve(kind, send, reply_bytes=0, half_close=True, steps=3000):
    """The client on stack a sends ``send`` to ``kind`` on stack b and closes; returns (bytes
    the client got back, the served connection)."""
    link = Link()
    service = Service(kind, reply_bytes)
    listener = link.b.listen(7000)
    conn = link.a.connect(link.b.mac, link.b.ip, 7000)
    conn.send(send)
    got = bytearray()
    for _ in range(steps):
        link.step()
        if half_close and conn.state.value == "ESTABLISHED":
            conn.close()    # (a close in SYN-SENT would abandon the connection)
        while accepted := listener.accept():
            service.serve(accepted)
        service.poll()
        got += conn.recv(1 << 20) if conn.recv_queue else b""
        if service.connections and service.done and conn.state.value in ("CLOSED", "TIME-WAIT"):
            break
    return bytes(got), service.connections[0]


def test_echo_sends_everything_back_and_closes():
    data = pattern(50_000, 7)
    got, served = serve("echo", data)
    assert got == data
    assert served.bytes_in == served.bytes_out == len(data)
    assert served.summary()["sha256_in"] == digest(data)
    assert served.done and served.summary()["state"] in ("CLOSED", "TIME-WAIT")


def test_discard_reads_and_sends_nothing():
    got, served = serve("discard", pattern(20_000, 3))
    assert got == b"" and served.bytes_in == 20_000 and served.bytes_out == 0
    assert served.done


def test_reply_waits_for_the_half_close():
    got, served = serve("reply", pattern(10_000, 1), reply_bytes=30_000)
    assert got == pattern(30_000, REPLY_SEED)
    assert served.bytes_in == 10_000 and served.bytes_out == 30_000


def test_reply_sends_nothing_while_the_peer_still_sends():
    got, served = serve("reply", b"x" * 1000, reply_bytes=500, half_close=False, steps=200)
    assert got == b"" and not served.replied and not served.done


@pytest.mark.parametrize("text, parsed", [("echo", ("echo", 0)), ("discard", ("discard", 0)),
                                          ("reply:262144", ("reply", 262144))])
def test_parse_service(text, parsed):
    assert parse_service(text) == parsed


@pytest.mark.parametrize("text", ["", "chargen", "reply", "reply:", "reply:-1", "echo:3"])
def test_parse_service_rejects(text):
    with pytest.raises(ValueError, match="expected one of"):
        parse_service(text)


def test_parse_size():
    assert parse_size("1M") == 1 << 20 and parse_size("256k") == 256 << 10
    assert parse_size("1000") == 1000


def test_namespace_counters_read_snmp_and_netstat(tmp_path):
    snmp, netstat = tmp_path / "snmp", tmp_path / "netstat"
    snmp.write_text("Ip: Forwarding DefaultTTL\nIp: 1 64\n"
                    "Tcp: RtoAlgorithm OutSegs RetransSegs InErrs\nTcp: 1 900 3 0\n")
    netstat.write_text("TcpExt: SyncookiesSent TCPSynRetrans TCPLossProbes\n"
                        "TcpExt: 0 1 2\nIpExt: InNoRoutes\nIpExt: 0\n")
    assert namespace_counters((snmp, netstat, tmp_path / "missing")) == {
        "RetransSegs": 3, "TCPSynRetrans": 1, "TCPLossProbes": 2}


class FakeTap:
    def __init__(self, frames):
        self.frames, self.written, self.write_drops = list(frames), [], 0

    def read_frames(self, limit):
        out, self.frames = self.frames[:limit], self.frames[limit:]
        return out

    def write_frame(self, frame):
        self.written.append(frame)
        return True


class FakeMac:
    def __init__(self):
        self.sent, self.cycle = [], 100

    @property
    def queued(self):
        return len(self.sent)

    def send(self, frame):
        self.sent.append(frame)


def test_bridge_pads_counts_and_drops_beyond_its_queue(tmp_path):
    arp = bytes(42)
    frames = [arp] + [bytes(range(100))] * 5
    tap, mac = FakeTap(frames), FakeMac()
    bridge = WireBridge(tap, mac, clk=None, queue_limit=4, pcap=tmp_path / "x.pcap")
    assert bridge.poll() == 6
    assert len(mac.sent[0]) == ETH_MIN_FRAME and mac.sent[0][:42] == arp
    assert len(mac.sent) == 4 and bridge.queue_drops == 2
    assert bridge.frames_in == 6 and bridge.bytes_in == 42 + 500
    bridge.to_kernel(b"\1" * 64)
    assert tap.written == [b"\1" * 64] and bridge.frames_out == 1 and bridge.bytes_out == 64
    bridge.close()
    from scapy.utils import rdpcap
    assert len(rdpcap(str(tmp_path / "x.pcap"))) == 7     # all 6 read (2 dropped), 1 sent


def test_tcp_info_of_a_loopback_connection():
    """Decoded against what this machine's kernel must report for a loopback connection: a
    loopback MTU of 65536 (MSS 65483), and the options the namespace's sysctls enable."""
    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]
    accepted = []
    thread = threading.Thread(target=lambda: accepted.append(server.accept()[0]))
    thread.start()
    with socket.create_connection(("127.0.0.1", port)) as sock:
        thread.join()
        sock.sendall(b"x" * 1000)
        accepted[0].recv(1000)
        info = tcp_info(sock)
    accepted[0].close()
    server.close()
    def read(key):
        return Path(f"/proc/sys/net/ipv4/{key}").read_text().strip() != "0"

    assert info["state"] == 1                               # TCP_ESTABLISHED
    assert info["advmss"] == 65483
    assert info["sack"] is read("tcp_sack")
    assert info["timestamps"] is read("tcp_timestamps")
    assert info["window_scaling"] is read("tcp_window_scaling")
    if info["window_scaling"]:
        assert 0 <= info["snd_wscale"] <= 14 and 0 <= info["rcv_wscale"] <= 14
    assert info["total_retrans"] == 0 and json.dumps(info)


def test_missing_root_is_one_clear_line(monkeypatch, capsys):
    monkeypatch.setattr(netns.os, "geteuid", lambda: 1000)
    assert "needs root" in netns.missing_requirement()
    assert cli.main(["peer", "--run", "true"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("inic peer: needs root")


def test_missing_tun_is_one_clear_line(monkeypatch):
    monkeypatch.setattr(netns.os, "geteuid", lambda: 0)
    monkeypatch.setattr(netns.os.path, "exists", lambda path: path != "/dev/net/tun")
    assert "/dev/net/tun" in netns.missing_requirement()


def test_bad_service_is_a_usage_error(monkeypatch, capsys):
    monkeypatch.setattr(netns.os, "geteuid", lambda: 0)
    monkeypatch.setattr("sim.peer.run.missing_requirement", lambda: None)
    assert cli.main(["peer", "--service", "chargen"]) == 2
    assert "expected one of" in capsys.readouterr().err


@pytest.mark.parametrize("name", ["", "x" * 16, "a/b", "a b"])
def test_namespace_names_are_checked(name):
    with pytest.raises(ValueError):
        netns.PeerNamespace(name)


def _summary_result(**fast):
    return {"ok": True, "connections": 1, "bytes_in": 4000, "bytes_out": 0, "frames_in": 9,
            "frames_out": 5, "frames_dropped": 0, "cycles": 1000, "simulated_seconds": 6.4e-6,
            "wall_seconds": 1.0, "slowdown": 156250.0, "cycles_per_wall_second": 1000, **fast}


def test_summary_line_of_the_fast_path():
    from sim.peer.run import format_summary

    off = format_summary(_summary_result(fast_path_bytes=0, slow_path_bytes=4000,
                                         offload_on=False, offload=None))
    assert "fast path    off: 4,000 bytes from the kernel took the slow path" in off
    on = format_summary(_summary_result(
        fast_path_bytes=3500, slow_path_bytes=500, slow_path_bytes_after_handout=100,
        handouts=1, flushes=1, flushes_by_reason={"FIN": 1}, offload_on=True,
        offload={"fp_fast_bytes": 3000, "fp_frame_data_bytes": 500}))
    assert ("3,500 bytes on the fast path (3,000 placed into RCVMDLs, 500 shown with "
            "FRAME_DATA), 500 on the slow path (100 after a handout); 1 handouts, 1 flushes "
            "(1 FIN)") in on


@pytest.mark.parametrize("kind", ["discard", "reply"])
def test_services_read_through_rcvmdls_on_the_model(kind):
    """With an offload the services read through posted receives: on the NIC model (the host
    offload tests' setup) the NIC places the upload into them; ``reply`` answers after the FIN."""
    import asyncio

    from sim.offload_app import SEGMENT
    from sim.peer.pattern import CLIENT_SEED
    from tests.unit.test_host_offload import Setup

    size, reply = 192 << 10, 10_000

    async def main():
        setup = Setup()
        await setup.start()
        (remote, conn), = await setup.connect()
        service = Service(kind, reply, offload=setup.offload)
        served = service.serve(conn)
        remote.send(pattern(size, CLIENT_SEED))
        remote.close()
        got = bytearray()

        def done():
            service.poll()
            got.extend(remote.recv(1 << 20) if remote.recv_queue else b"")
            return service.done and remote.state in (State.CLOSED, State.TIME_WAIT)

        await setup.run_until(done, "served")
        return served, bytes(got), await setup.offload.statistics()

    served, got, stats = asyncio.run(main())
    assert served.bytes_in == size and served._hash.hexdigest() == digest(
        pattern(size, CLIENT_SEED))
    assert served.reader is not None and served.reader.completed[-1].reason == "eof"
    assert stats["handouts"] == 1 and stats["flushes"] == {"FIN": 1}
    # All placed or shown by the NIC but the last segment, which carries the FIN (a FIN flushes).
    assert stats["rx_fast_bytes"] > size * 0.9 and stats["rx_slow_bytes"] <= SEGMENT
    assert stats["rx_fast_bytes"] + stats["rx_frame_data_bytes"] + stats["rx_slow_bytes"] == size
    assert got == (pattern(reply, REPLY_SEED) if kind == "reply" else b"")
