"""``inic bench --json`` on a few frames per class: the documented keys and sane figures."""

import json

import pytest

from sim.cosim.bench import FRAMES, SLOW_FRAMES, run_bench

SLOW_KEYS = ["traffic", "frames", "delivered", "dropped", "cycles", "cycles_per_frame",
             "dma_bytes_per_cycle", "interrupts_per_1000_frames"]
KEYS = ["traffic", "frames", "cycles", "cycles_per_frame", "beats_per_cycle", "latency_cycles"]
MIN_BEATS = {"60": 8, "576": 72, "1514": 190, "imix": 8}


@pytest.mark.cosim
def test_bench_json(capsys):
    assert run_bench(json_mode=True, frames=16, slow_frames=12) == 0
    report = json.loads(capsys.readouterr().out)
    assert list(report) == ["rx", "slow_path"]
    assert [row["traffic"] for row in report["rx"]] == list(FRAMES)
    for row in report["rx"]:
        assert list(row) == KEYS
        assert row["frames"] == 16
        assert 0 < row["beats_per_cycle"] <= 1
        assert row["cycles_per_frame"] >= MIN_BEATS[row["traffic"]]
        assert row["cycles"] >= row["frames"] * MIN_BEATS[row["traffic"]]
        assert row["latency_cycles"] > 0
    assert [row["traffic"] for row in report["slow_path"]] == list(SLOW_FRAMES)
    for row in report["slow_path"]:
        assert list(row) == SLOW_KEYS
        assert row["frames"] == 12 == row["delivered"] + row["dropped"]
        size = int(row["traffic"].split()[1])
        # A frame moves over the 64-bit DMA bus at most once a beat: never faster than that.
        assert row["cycles_per_frame"] >= size / 8
        assert 0 < row["dma_bytes_per_cycle"] <= 8
        assert row["interrupts_per_1000_frames"] > 0
