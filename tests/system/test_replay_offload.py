"""``inic replay --offload``: the handout list, and each frame's ``path`` and ``conn`` (SPEC §5) on
the RTL equal to what the NIC model decides for the same handouts and frames
(sim/offload_replay.py); the capture is built so that the model's answer can be told apart from a
wrong one (in-order segments, a pure ACK, an out-of-order segment that flushes, a FIN, frames of
connections not handed out)."""

import json

import pytest
from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.inet6 import IPv6
from scapy.layers.l2 import Ether

from sim.cli import main
from sim.cosim.replay import run_replay
from sim.offload_replay import (
    HandoutError,
    load_handouts,
    parse_handouts,
    replay_on_model,
)
from sim.pcap import write_capture
from sim.reference.rx_status import expected_status

HOST_MAC, REMOTE_MAC = "02:00:00:00:00:01", "02:00:00:00:00:02"
A = {"src": "10.0.0.2", "dst": "10.0.0.1", "sport": 1234, "dport": 80}
B = {"src": "fd00::2", "dst": "fd00::1", "sport": 5555, "dport": 443}
C = {"src": "10.0.0.3", "dst": "10.0.0.1", "sport": 999, "dport": 80}
HANDOUTS = "10.0.0.2:1234-10.0.0.1:80,[fd00::2]:5555-[fd00::1]:443,10.0.0.9:1-10.0.0.1:2"
SEQ_A, SEQ_B, SEQ_C = 1000, 0xFFFF_FF00, 5


def segment(conn, seq, payload=b"", flags="A", ts=None):
    ip = (IPv6 if ":" in conn["src"] else IP)(src=conn["src"], dst=conn["dst"])
    options = [("NOP", None), ("NOP", None), ("Timestamp", ts)] if ts else []
    return bytes(Ether(src=REMOTE_MAC, dst=HOST_MAC) / ip
                 / TCP(sport=conn["sport"], dport=conn["dport"], seq=seq, ack=77, flags=flags,
                       window=4096, options=options) / payload)


def capture():
    """Frames and, for a few of them, what they are (index -> label)."""
    frames, labels = [], {}

    def add(frame, label=None):
        if label:
            labels[label] = len(frames)
        frames.append(frame)

    for i in range(3):      # A in order (with timestamps), B in order (its seq wraps)
        add(segment(A, SEQ_A + 100 * i, bytes([i]) * 100, ts=(10 + i, 5)))
        add(segment(B, (SEQ_B + 200 * i) & 0xFFFF_FFFF, b"b" * 200, flags="PA"))
    add(segment(A, SEQ_A + 300, ts=(13, 5)), "pure ack")
    add(segment(C, SEQ_C, b"c" * 10), "not handed out")
    add(bytes(Ether(src=REMOTE_MAC, dst=HOST_MAC) / IP(src=A["src"], dst=A["dst"])
              / UDP(sport=1, dport=2) / b"u"), "udp")
    add(segment(A, SEQ_A + 400, b"z" * 100, ts=(14, 5)), "out of order")
    add(segment(A, SEQ_A + 300, b"y" * 100, ts=(15, 5)), "after the flush")
    add(segment(B, (SEQ_B + 600) & 0xFFFF_FFFF, flags="FA"), "fin")
    add(segment(B, (SEQ_B + 601) & 0xFFFF_FFFF), "after the fin")
    return frames, labels


def test_handout_lists(tmp_path):
    a, b, _ = parse_handouts(HANDOUTS)
    assert (str(a.src), a.sport, str(a.dst), a.dport) == ("10.0.0.2", 1234, "10.0.0.1", 80)
    assert b.ipv6 and str(b) == "[fd00::2]:5555-[fd00::1]:443"
    path = tmp_path / "handouts.json"
    path.write_text(json.dumps([str(a), {"src": "fd00::2", "sport": 5555, "dst": "fd00::1",
                                         "dport": 443}]))
    assert load_handouts(path) == [a, b]
    for bad in ("10.0.0.2:1234", "10.0.0.2:1234-fd00::1:80", "10.0.0.2:99999-10.0.0.1:80",
                "x:1-y:2", f"{a},{a}", ""):
        with pytest.raises(HandoutError):
            parse_handouts(bad)


def test_bad_offload_argument_is_one_line(tmp_path, capsys):
    write_capture(tmp_path / "one.pcap", capture()[0][:1])
    assert main(["replay", str(tmp_path / "one.pcap"), "--offload", "10.0.0.2-10.0.0.1"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("inic replay: --offload:") and err.count("\n") == 1


def test_the_model_decides_as_the_capture_was_built():
    """The model's paths, checked against how the capture was built (what the RTL is then
    compared with)."""
    frames, at = capture()
    rows, summary = replay_on_model(frames, parse_handouts(HANDOUTS))
    conn_a, conn_b = rows[0]["conn"], rows[1]["conn"]
    assert conn_a is not None and conn_b is not None and conn_a != conn_b
    assert [(r["path"], r["conn"]) for r in rows[:6]] == [("fast", conn_a), ("fast", conn_b)] * 3
    assert (rows[at["pure ack"]]["path"], rows[at["pure ack"]]["conn"]) == ("fast", conn_a)
    for label in ("not handed out", "udp", "after the flush", "after the fin"):
        assert (rows[at[label]]["path"], rows[at[label]]["conn"]) == ("slow", None), label
    assert (rows[at["out of order"]]["path"], rows[at["out of order"]]["conn"]) == ("slow", conn_a)
    assert (rows[at["fin"]]["path"], rows[at["fin"]]["conn"]) == ("slow", conn_b)
    assert summary["flushes"] == {"OUT_OF_ORDER": 1, "FIN": 1}
    assert summary["handouts"]["10.0.0.9:1-10.0.0.1:2"] == "no frame of it in the capture"


@pytest.mark.cosim
@pytest.mark.system
def test_replay_offload_on_the_rtl_matches_the_model(tmp_path, capsys):
    frames, _ = capture()
    write_capture(tmp_path / "offload.pcap", frames)
    out = tmp_path / "rows.jsonl"
    assert run_replay(str(tmp_path / "offload.pcap"), json_out=str(out),
                      handouts=parse_handouts(HANDOUTS)) == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    want, summary = replay_on_model(frames, parse_handouts(HANDOUTS))
    assert [(r["path"], r["conn"]) for r in rows] == [(r["path"], r["conn"]) for r in want]
    for index, (row, frame) in enumerate(zip(rows, frames, strict=True)):
        assert list(row)[-2:] == ["path", "conn"]
        assert {k: v for k, v in row.items() if k not in ("path", "conn")} \
            == expected_status(frame, index)
    printed = capsys.readouterr().out
    paths = "  ".join(f"{path} {n}" for path, n in summary["paths"].items())
    assert f"by path      {paths}" in printed
    assert "flushes      OUT_OF_ORDER 1  FIN 1" in printed
