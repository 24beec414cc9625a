"""``inic bench --json`` on a few frames per class: the documented keys and sane figures."""

import json

import pytest

from sim.cosim import bench_fast_tb
from sim.cosim.bench import FRAMES, run_bench
from sim.cosim.bench_slow_tb import DIRECTIONS, ROW_KEYS, SPACINGS, TRAFFIC

KEYS = ["traffic", "frames", "cycles", "cycles_per_frame", "beats_per_cycle", "latency_cycles"]
MIN_BEATS = {"60": 8, "576": 72, "1514": 190, "imix": 8}


@pytest.mark.cosim
def test_bench_json(capsys):
    assert run_bench(json_mode=True, frames=16, slow_frames=12, ccb_seeds={256: 3},
                     ccb_rate={"entries": 64, "lookups": 200}, fast_frames=12) == 0
    report = json.loads(capsys.readouterr().out)
    assert list(report) == ["rx", "slow_path", "ccb", "fast_path", "handout"]
    check_fast_path(report["fast_path"], 12)
    check_handout(report["handout"])
    ccb = report["ccb"]
    for key in ("entries", "load_at_first_failure_min", "load_at_first_failure_median",
                "lookups_per_cycle", "latency_cycles"):
        assert key in ccb
    assert ccb["entries"] == 256
    assert 0.5 < ccb["load_at_first_failure_min"] <= ccb["load_at_first_failure_median"] <= 1
    assert 0.9 < ccb["lookups_per_cycle"] <= 1 and ccb["latency_cycles"] > 10
    assert [row["traffic"] for row in report["rx"]] == list(FRAMES)
    for row in report["rx"]:
        assert list(row) == KEYS
        assert row["frames"] == 16
        assert 0 < row["beats_per_cycle"] <= 1
        assert row["cycles_per_frame"] >= MIN_BEATS[row["traffic"]]
        assert row["cycles"] >= row["frames"] * MIN_BEATS[row["traffic"]]
        assert row["latency_cycles"] > 0
    rows = report["slow_path"]
    assert [(r["direction"], r["traffic"], r["spacing"]) for r in rows] == [
        (d, t, s) for d in DIRECTIONS for t in TRAFFIC for s in SPACINGS]
    wire_cycles = {"60": 10.5, "576": 75, "1514": 192.25}
    for row in rows:
        assert list(row) == ROW_KEYS
        assert row["frames"] == 12 == row["delivered"] + row["dropped"]
        assert row["dma_bytes_per_frame"] > 0
        assert 0 < row["dma_bus_utilisation"] <= 1
        if row["traffic"] in wire_cycles and row["spacing"] == "wire":
            # Frames are never offered (rx) nor taken (tx) faster than the wire carries them.
            assert row["offered_mpps"] <= 156.25 / wire_cycles[row["traffic"]] * 1.02


#: Clocks a 10GbE wire spends on a frame of each class (bytes + 24, at 8 bytes a clock).
WIRE_CYCLES = {"60": 10.5, "576": 75, "1514": 192.25}


def check_fast_path(rows, frames):
    """The ``fast_path`` rows of a run with ``frames`` segments per class."""
    assert [row["traffic"] for row in rows] == list(bench_fast_tb.TRAFFIC)
    for row in rows:
        assert list(row) == bench_fast_tb.FAST_KEYS
        assert row["spacing"] == "wire" and row["frames"] == frames
        assert row["placed"] + row["dropped"] == frames
        assert 0 <= row["lost"] + row["to_rx_buffers"] <= row["dropped"]
        assert row["placed"] > 1
        # Placements come no faster than the wire brings the segments (give or take a clock of
        # jitter over a few segments).
        assert row["cycles_per_frame"] >= 0.9 * WIRE_CYCLES[row["traffic"]]
        assert 0 <= row["acks_per_segment"] <= 1
        if row["placed"] == frames:
            # Every payload byte written once, little else (no event per segment).
            assert 1 <= row["dma_bytes_per_payload_byte"] < 1.5
    full_sized = [row for row in rows if row["traffic"] != "60"]
    for row in full_sized:
        # A short burst of full-sized segments at wire rate is placed whole, an ACK every
        # second segment or so.
        assert row["placed"] == frames and row["dropped"] == 0
        assert row["acks_per_segment"] > 0


def check_handout(handout):
    assert list(handout)[:3] == ["interlock_cycles", "first_byte_cycles", "flush_cycles"]
    for value in handout.values():
        # Clocks from a command's take to its effect: positive, far below a timeout.
        assert isinstance(value, int) and 0 < value < 5000
    # The segment reaches the engine before its first byte is placed.
    assert handout["segment_arrival_cycles"] < handout["first_byte_cycles"]
