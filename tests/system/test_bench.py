"""``inic bench --json`` on a few frames per class: the documented keys and sane figures."""

import json

import pytest

from sim.cosim.bench import FRAMES, run_bench

KEYS = ["traffic", "frames", "cycles", "cycles_per_frame", "beats_per_cycle", "latency_cycles"]
MIN_BEATS = {"60": 8, "576": 72, "1514": 190, "imix": 8}


@pytest.mark.cosim
def test_bench_json(capsys):
    assert run_bench(json_mode=True, frames=16) == 0
    report = json.loads(capsys.readouterr().out)
    assert list(report) == ["rx"]
    assert [row["traffic"] for row in report["rx"]] == list(FRAMES)
    for row in report["rx"]:
        assert list(row) == KEYS
        assert row["frames"] == 16
        assert 0 < row["beats_per_cycle"] <= 1
        assert row["cycles_per_frame"] >= MIN_BEATS[row["traffic"]]
        assert row["cycles"] >= row["frames"] * MIN_BEATS[row["traffic"]]
        assert row["latency_cycles"] > 0
