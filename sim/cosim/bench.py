"""``inic bench``: receive throughput and latency of the RTL, in clock cycles (SPEC §6).

For each traffic class (60, 576 and 1514-byte frames, and IMIX 7:4:1 of the three), a few hundred
back-to-back frames go through the receive sequencer in Icarus with the outputs always ready:

- ``cycles``: first input beat taken to last status word out; ``cycles_per_frame`` from it;
- ``beats_per_cycle``: input beats taken per cycle while the input had data (1.0 is line rate);
- ``latency_cycles``: mean over the frames of first beat in to status word out.
"""

import json
import sys
import tempfile
from pathlib import Path

from hw.rx_sequencer import RxSequencer

from . import bench_tb, runner
from .replay import TOPLEVEL

__all__ = ["FRAMES", "run_bench"]

#: Frames per traffic class: a few hundred, about 75k simulated cycles in all.
FRAMES = {"60": 600, "576": 300, "1514": 200, "imix": 240}

_COLUMNS = [("traffic", "{}"), ("frames", "{}"), ("cycles", "{}"), ("cycles_per_frame", "{:.2f}"),
            ("beats_per_cycle", "{:.3f}"), ("latency_cycles", "{:.1f}")]


def measure(frames=None) -> list[dict]:
    """The figures of every traffic class; ``frames`` (an int) overrides :data:`FRAMES`."""
    counts = FRAMES if frames is None else dict.fromkeys(FRAMES, frames)
    sim_build = runner.build(RxSequencer, TOPLEVEL)
    runs = sim_build.build_dir / "runs"
    runs.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="bench-", dir=runs) as run_dir:
        out = Path(run_dir) / "bench.jsonl"
        runner.run(sim_build, "sim.cosim.bench_tb", run_name=Path(run_dir).name,
                   extra_env={bench_tb.ENV_OUT: str(out), bench_tb.ENV_FRAMES: json.dumps(counts),
                              "COCOTB_LOG_LEVEL": "WARNING"})
        return [json.loads(line) for line in out.read_text().splitlines()]


def run_bench(json_mode=False, frames=None) -> int:
    """``inic bench``: prints a table, or with ``json_mode`` ``{"rx": [figures, ...]}``."""
    try:
        rows = measure(frames)
    except runner.CosimError as e:
        print(f"inic bench: simulation failed: {e}", file=sys.stderr)
        return 1
    if json_mode:
        print(json.dumps({"rx": rows}))
        return 0
    print("receive sequencer, back-to-back frames, outputs always ready (clock cycles)")
    header = [name for name, _ in _COLUMNS]
    table = [header] + [[fmt.format(row[name]) for name, fmt in _COLUMNS] for row in rows]
    widths = [max(len(line[n]) for line in table) for n in range(len(header))]
    for line in table:
        print("  ".join(cell.rjust(width) for cell, width in zip(line, widths)))
    return 0
