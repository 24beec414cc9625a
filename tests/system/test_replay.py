"""``inic replay`` end to end on the RTL: capture in, one JSON line per frame out, each equal to the
reference model's row; synthetic L2 for raw-IP (101 and 228) and Linux-cooked captures; one-line
errors."""

import json
import re
from pathlib import Path

import pytest
from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.inet6 import IPv6
from scapy.layers.l2 import CookedLinux

from sim.cosim.replay import run_replay
from sim.frames import directed_frames, random_mix
from sim.pcap import read_capture, write_capture
from sim.reference.rx_status import expected_status

STATUS_WORD_DOC = Path(__file__).resolve().parents[2] / "docs" / "status_word.md"


def documented_keys() -> list[str]:
    """The keys docs/status_word.md lists under "JSON keys" (``synthetic_l2`` aside)."""
    section = STATUS_WORD_DOC.read_text().split("## JSON keys", 1)[1]
    return re.findall(r"`(\w+)`", section.split("; plus", 1)[0])


def replay_rows(capture, tmp_path, **options):
    out = tmp_path / "rows.jsonl"
    assert run_replay(str(capture), json_out=str(out), **options) == 0
    return [json.loads(line) for line in out.read_text().splitlines()]


def assert_rows_match(rows, frames, synthetic_l2=False):
    keys = documented_keys() + (["synthetic_l2"] if synthetic_l2 else [])
    assert len(rows) == len(frames)
    for index, (row, frame) in enumerate(zip(rows, frames)):
        assert list(row) == keys, f"frame {index}: keys {list(row)}"
        want = {**expected_status(frame, index), **({"synthetic_l2": True} if synthetic_l2 else {})}
        diff = {key: (row[key], want[key]) for key in keys if row[key] != want[key]}
        assert not diff, f"frame {index} ({frame.hex()}): got/expected {diff}"


@pytest.mark.cosim
def test_replay_matches_reference(tmp_path, capsys):
    frames = directed_frames() + random_mix(100, seed=7)
    write_capture(tmp_path / "mix.pcap", frames)
    rows = replay_rows(tmp_path / "mix.pcap", tmp_path)
    assert_rows_match(rows, frames)
    out = capsys.readouterr().out
    assert f"frames       {len(frames)}" in out


def write_linktype(path, linktype, records):
    write_capture(path, records, linktype)
    return path


PACKETS = [
    bytes(IP(src="192.0.2.1", dst="192.0.2.2") / TCP(sport=1000, dport=80, flags="S")),
    bytes(IPv6(src="2001:db8::1", dst="2001:db8::2") / UDP(sport=53, dport=5353) / b"dns"),
    bytes(IP(src="192.0.2.3", dst="192.0.2.4") / UDP(sport=7, dport=7) / (b"x" * 300)),
]


@pytest.mark.cosim
@pytest.mark.parametrize("linktype, records", [
    (101, PACKETS),
    (113, [bytes(CookedLinux(proto=0x86DD if p[0] >> 4 == 6 else 0x0800) / p) for p in PACKETS]),
    (228, [p for p in PACKETS if p[0] >> 4 == 4]),
], ids=["raw-ip", "linux-cooked", "raw-ipv4"])
def test_replay_synthetic_l2(tmp_path, linktype, records):
    capture = write_linktype(tmp_path / "capture.pcap", linktype, records)
    frames, synthetic_l2 = read_capture(capture)
    assert synthetic_l2
    assert_rows_match(replay_rows(capture, tmp_path), frames, synthetic_l2=True)


@pytest.mark.cosim
def test_replay_json_to_stdout(tmp_path, capsys):
    """With ``json_out='-'`` stdout carries only the JSON lines; the summary goes to stderr."""
    frames = directed_frames()[:3]
    write_capture(tmp_path / "three.pcap", frames)
    assert run_replay(str(tmp_path / "three.pcap"), json_out="-") == 0
    captured = capsys.readouterr()
    assert [json.loads(line)["frame"] for line in captured.out.splitlines()] == [0, 1, 2]
    assert "frames       3" in captured.err


def test_replay_rejects_non_capture(tmp_path, capsys):
    bogus = tmp_path / "notes.pcap"
    bogus.write_text("this is not a capture\n")
    assert run_replay(str(bogus)) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("inic replay: "), err
