"""The real Linux TCP stack as the NIC's remote peer (``inic peer``, sim/peer/).

Each test creates its own network namespace (named after this process, so parallel workers never
share one), runs the NIC RTL in Icarus between the namespace kernel's TAP and the host stack, and
runs ``sim.peer.kernel_client`` in the namespace as the kernel-side program. The kernel's own view
of each connection (TCP_INFO) is checked against what the host stack negotiated. Skipped, with the
reason, where root or /dev/net/tun is missing; CI runs as root.

The tests of TCP itself run with ``offload=False`` (every frame on the slow path, the NIC model
beside the RTL as the scoreboard); ``test_kernel_upload_1mb_through_the_fast_path`` runs as
``inic peer`` does by default: the kernel's connection handed out to the NIC's fast path.
"""

import json
import signal
import subprocess
import sys
import time

import pytest

from hw.params import CLOCK_PERIOD_NS
from sim.peer.netns import (
    NETNS_DIR,
    PEER,
    TcpOptions,
    missing_requirement,
    remove_stale_test_namespaces,
    unique_namespace_name,
)
from sim.peer.pattern import CLIENT_SEED, REPLY_SEED, digest, pattern
from sim.peer.run import run_peer

pytestmark = [
    pytest.mark.cosim, pytest.mark.peer, pytest.mark.slow,
    pytest.mark.skipif(missing_requirement() is not None,
                       reason=f"kernel peer: {missing_requirement()}"),
]

#: Wall-clock limit of one run (a hang must fail, not stall CI).
TIMEOUT = 900
MSS = {4: 1460, 6: 1440}       # what the host stack announces on a 1500-byte MTU
TS_OPTION_BYTES = 12


@pytest.fixture(scope="module", autouse=True)
def _sweep():
    remove_stale_test_namespaces()


def client(mode, out, *, ipv6=False, port=None, send=0, echo=False, reply=None):
    argv = [sys.executable, "-m", "sim.peer.kernel_client", mode, "--json", str(out)]
    argv += ["--ipv6"] * ipv6 + ["--send", str(send)]
    argv += ["--port", str(port)] if port else []
    argv += ["--echo"] * echo + (["--expect-reply", str(reply)] if reply is not None else [])
    return " ".join(argv)


def peer(tmp_path, tag, command, offload=False, **kwargs):
    """Run ``inic peer`` with ``command`` (the slow path only unless ``offload``); returns (exit
    status, simulation result, kernel result). Checks the namespace is gone afterwards."""
    name = unique_namespace_name(tag)
    status = run_peer(run=command, namespace=name, out_dir=tmp_path / "peer", quiet=True,
                      timeout=TIMEOUT, offload=offload, **kwargs)
    assert not (NETNS_DIR / name).exists(), "the namespace outlived the run"
    result = json.loads((tmp_path / "peer" / "result.json").read_text())
    kernel = json.loads((tmp_path / "kernel.json").read_text())
    return status, result, kernel


def check_negotiation(served, kernel_info, family, options=None):
    """The kernel's TCP_INFO against the host stack's view of the same connection."""
    options = options or TcpOptions()
    host = served["options"]
    assert kernel_info["sack"] is host["sack"] is options.sack
    assert kernel_info["timestamps"] is host["timestamps"] is options.timestamps
    assert kernel_info["window_scaling"] is options.window_scaling
    # Each side's receive shift is the other's send shift.
    assert kernel_info["snd_wscale"] == host["rcv_wscale"]
    assert kernel_info["rcv_wscale"] == host["snd_wscale"]
    if options.window_scaling:
        assert host["rcv_wscale"] is not None and host["snd_wscale"] is not None
    else:
        assert host["rcv_wscale"] is None and host["snd_wscale"] is None
    # Both announce the MSS of a 1500-byte MTU; each sends segments of that less the timestamp
    # option when timestamps are on (the kernel's snd_mss; its advmss is what it expects to get).
    options_bytes = TS_OPTION_BYTES if options.timestamps else 0
    assert kernel_info["snd_mss"] == MSS[family] - options_bytes
    assert host["send_mss"] == MSS[family]
    assert kernel_info["advmss"] == host["send_mss"] - options_bytes


def data_retransmissions(kernel, served):
    """The kernel's data segments sent again, from its namespace's own counters (the namespace
    is the run's: they count this connection); checks the host retransmitted nothing but SYN-ACKs.

    A SYN sent again is the simulation's pace, not a fault: the kernel's 1 s SYN timer runs on wall
    time, and on a busy machine the ARP exchange and the SYN-ACK can take longer than that (the
    host answers the repeated SYN with its SYN-ACK again). ``tcpi_total_retrans`` counts both."""
    netstat = kernel["netstat"]
    assert kernel["tcp_info"]["total_retrans"] == netstat["RetransSegs"], netstat
    assert served["stats"]["retransmissions"] <= netstat["TCPSynRetrans"], netstat
    return netstat["RetransSegs"] - netstat["TCPSynRetrans"]


def check_accounting(result):
    # The NIC model ran beside the RTL on the kernel's traffic: every event, buffer and MAC TX frame
    # agreed (sim/scoreboard.py).
    scoreboard = result["scoreboard"]
    assert scoreboard["mismatches"] == [] and scoreboard["compared"]["events"] > 0
    assert scoreboard["compared"]["tx_frames"] == result["frames_out"]
    assert all(result["accounting"].values()), result["accounting"]
    counters = result["counters"]
    assert counters["rx_frames"] == counters["rx_to_host"] + sum(
        v for k, v in counters.items() if k.startswith("rx_drop_"))
    assert result["frames_out"] == counters["tx_frames"]
    assert counters["dma_errors"] == 0 and counters["bad_doorbells"] == 0


@pytest.mark.parametrize("family", [4, 6])
def test_kernel_connects_sends_1mb_gets_256kb(tmp_path, family):
    """The kernel connects, sends 1 MB, half-closes, receives 256 KB, both close; byte-exact both
    ways, options as both sides see them, retransmissions as both sides count them."""
    down, up = 1 << 20, 256 << 10
    command = client("connect", tmp_path / "kernel.json", ipv6=family == 6, send=down, reply=up)
    status, result, kernel = peer(tmp_path, f"c{family}", command, service=f"reply:{up}")
    assert status == 0, kernel.get("error")
    assert kernel["ok"] and result["ok"], (kernel.get("error"), result.get("error"))
    assert kernel["bytes_received"] == up
    [served] = result["served"]
    assert served["remote"] == (PEER.ipv4 if family == 4 else PEER.ipv6)
    assert served["bytes_in"] == down and served["sha256_in"] == digest(pattern(down, CLIENT_SEED))
    assert served["bytes_out"] == up and kernel["sha256_received"] == digest(
        pattern(up, REPLY_SEED))
    assert result["bytes_in"] == down and result["bytes_out"] == up
    assert result["connections"] == 1
    assert result["slow_path_bytes"] == down and result["fast_path_bytes"] == 0
    # The kernel found the host's MAC itself: the host stack answered its ARP request / neighbour
    # solicitation (the namespace has no static entry).
    stack = result["host_stack"]
    assert stack["arp_replies_sent" if family == 4 else "neighbour_adverts_sent"] >= 1
    check_negotiation(served, kernel["tcp_info"], family)
    check_accounting(result)
    # Nothing was dropped on our side, so every data segment the kernel sent again reached the
    # host a second time: its retransmission count is the host stack's count of duplicates. No
    # loss, so no retransmission storm on the host side either (its timers run on simulated time,
    # the kernel's on wall time: docs/kernel_peer.md).
    assert result["frames_dropped"] == 0
    assert data_retransmissions(kernel, served) == served["stats"]["dup_segments_received"]


def test_kernel_upload_1mb_through_the_fast_path(tmp_path):
    """The kernel connects and sends 1 MB to ``discard``, whose connection the host stack hands
    out to the NIC and reads through RCVMDLs: after the handout the NIC places every byte (the
    segment carrying the kernel's FIN excepted: a FIN flushes), byte-exact; the kernel
    retransmits no data segment (a wrong ACK or window from the NIC would make it)."""
    size = 1 << 20
    command = client("connect", tmp_path / "kernel.json", send=size)
    status, result, kernel = peer(tmp_path, "fp", command, offload=True, service="discard")
    assert status == 0, kernel.get("error")
    assert kernel["ok"] and result["ok"], (kernel.get("error"), result.get("error"))
    [served] = result["served"]
    assert served["bytes_in"] == size and served["sha256_in"] == digest(pattern(size, CLIENT_SEED))
    stats = result["offload"]
    # One handout; one flush, by the kernel's FIN at the end (any other flush is an exception).
    assert result["handouts"] == stats["handouts"] == 1
    assert result["flushes"] == 1 and result["flushes_by_reason"] == {"FIN": 1}
    assert stats["fp_flush_fin"] == 1
    # The NIC's counters and the host's view of them agree; every byte took one path or the
    # other; after the handout only the FIN's segment took the slow path.
    assert stats["rx_fast_bytes"] == stats["fp_fast_bytes"] > 0
    assert stats["rx_frame_data_bytes"] == stats["fp_frame_data_bytes"]
    assert result["fast_path_bytes"] + result["slow_path_bytes"] == size
    assert result["slow_path_bytes_after_handout"] <= kernel["tcp_info"]["snd_mss"]
    # Before the handout: at most the kernel's initial window (RFC 6928: ten segments).
    slow_before = result["slow_path_bytes"] - result["slow_path_bytes_after_handout"]
    assert slow_before <= 10 * kernel["tcp_info"]["snd_mss"]
    assert stats["nic_acks"] == stats["fp_acks_sent"] > 0
    # Every frame accounted for: to the host, placed, shown, pure ACKs, or a counted drop (the
    # run ended once the NIC had settled: no frame or event in flight).
    assert result["settled"]["ok"], result["settled"]
    assert all(result["accounting"].values()), result["accounting"]
    assert result["frames_dropped"] == 0 and stats["fp_queued"] == 0
    counters = result["counters"]
    assert counters["dma_errors"] == 0 and counters["bad_doorbells"] == 0
    assert stats["fp_bad_commands"] == 0 and stats["refused"] == {}
    # The kernel sent no data segment twice (a wrong ACK or window from the NIC would make it).
    assert data_retransmissions(kernel, served) == 0, kernel["netstat"]
    assert stats["fp_flush_out_of_order"] == 0 == served["stats"]["dup_segments_received"]


@pytest.mark.parametrize("family", [4, 6])
def test_host_connects_to_kernel_listener(tmp_path, family):
    """The host stack opens the connection (resolving the kernel's MAC by ARP / neighbour
    discovery); the kernel listens, sends 128 KB and gets it echoed."""
    size = 128 << 10
    command = client("listen", tmp_path / "kernel.json", ipv6=family == 6, port=7001, send=size,
                     echo=True)
    status, result, kernel = peer(tmp_path, f"l{family}", command, connect=7001,
                                  ipv6=family == 6)
    assert status == 0, kernel.get("error")
    assert kernel["ok"] and result["ok"], (kernel.get("error"), result.get("error"))
    [served] = result["served"]
    assert served["bytes_in"] == size == served["bytes_out"]
    check_negotiation(served, kernel["tcp_info"], family)
    check_accounting(result)
    stats = result["host_stack"]
    assert stats["neighbour_requests_sent"] >= 1     # ARP request / neighbour solicitation


def test_starved_rx_buffers_kernel_retransmits(tmp_path):
    """The driver stops re-posting RX buffers for 20k cycles once 64 KB arrived: the NIC drops
    frames (counted), the kernel retransmits them, and nothing is lost."""
    size = 384 << 10
    command = client("connect", tmp_path / "kernel.json", send=size, echo=True)
    status, result, kernel = peer(
        tmp_path, "st", command, service="echo", driver={"rx_log2": 5},
        starve={"after_bytes": 64 << 10, "cycles": 20_000})
    assert status == 0, kernel.get("error")
    assert kernel["ok"] and result["ok"], (kernel.get("error"), result.get("error"))
    assert result["starved"]["end"] is not None
    assert result["counters"]["rx_drop_no_buffer"] > 0
    assert result["frames_dropped"] == result["counters"]["rx_drop_no_buffer"]
    assert kernel["tcp_info"]["total_retrans"] > 0
    [served] = result["served"]
    assert served["bytes_in"] == size and served["sha256_in"] == digest(pattern(size, CLIENT_SEED))
    check_accounting(result)


def test_kernel_without_timestamps_sack_window_scaling(tmp_path):
    """A namespace whose kernel has timestamps, SACK and window scaling off: the host stack
    agrees to none of them and the transfer still completes."""
    options = TcpOptions(timestamps=False, sack=False, window_scaling=False)
    size = 256 << 10
    command = client("connect", tmp_path / "kernel.json", ipv6=True, send=size, echo=True)
    status, result, kernel = peer(tmp_path, "odd", command, options=options)
    assert status == 0, kernel.get("error")
    assert kernel["ok"] and result["ok"], (kernel.get("error"), result.get("error"))
    [served] = result["served"]
    check_negotiation(served, kernel["tcp_info"], 6, options)
    check_accounting(result)
    assert result["frames_dropped"] == 0
    assert data_retransmissions(kernel, served) == 0


@pytest.mark.parametrize("signum, status", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_ctrl_c_stops_the_run_and_deletes_the_namespace(tmp_path, signum, status):
    """``inic peer`` without --run serves until Ctrl-C (or SIGTERM), then stops the simulation in
    order, deletes its namespace and exits 130 (143)."""
    name = unique_namespace_name(f"s{signum}")
    # SIGINT as at a terminal even when the test run itself was started in the background of a
    # non-interactive shell (which starts its children with SIGINT ignored).
    process = subprocess.Popen(
        [sys.executable, "-m", "sim.cli", "peer", "--netns", name, "--timeout", str(TIMEOUT)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    lines = []
    for line in process.stdout:
        lines.append(line)
        if "Ctrl-C stops it" in line:
            break
    assert (NETNS_DIR / name).exists(), "".join(lines)
    time.sleep(1)
    process.send_signal(signum)
    process.wait(300)
    output = "".join(lines) + process.stdout.read()
    assert process.returncode == status, output
    assert "Traceback" not in output
    assert not (NETNS_DIR / name).exists()


def test_pcap_and_waves(tmp_path):
    """``--pcap`` holds every frame that crossed the TAP, both ways, in simulated time; ``--waves``
    leaves an FST with the NIC's named signals and its GTKWave view."""
    from scapy.utils import rdpcap

    from sim.cosim.demo import NIC_SIGNALS
    from sim.cosim.waves import missing_signals

    command = client("connect", tmp_path / "kernel.json", send=20_000, echo=True)
    pcap = tmp_path / "wire.pcap"
    status, result, kernel = peer(tmp_path, "pw", command, pcap=pcap, waves=True)
    assert status == 0 and kernel["ok"] and result["ok"]
    frames = rdpcap(str(pcap))
    assert len(frames) == result["frames_in"] + result["frames_out"]
    times = [float(frame.time) for frame in frames]
    assert times == sorted(times) and times[0] > 0
    assert times[-1] <= result["cycles"] * CLOCK_PERIOD_NS * 1e-9    # stamped in simulated time
    fst = tmp_path / "peer" / "peer.fst"
    assert missing_signals(fst, NIC_SIGNALS, toplevel="inic_nic") == []
    assert fst.with_suffix(".gtkw").is_file()
