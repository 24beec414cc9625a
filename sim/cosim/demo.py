"""``inic demo``: the bundled capture (``sim/data/demo.pcap``) through the receive sequencer RTL,
with a summary table and, by default, an FST waveform and its GTKWave view in ``build/demo/``."""

import json
import sys
from pathlib import Path

from sim.pcap import read_capture
from sim.status_json import format_summary, summarize

from . import runner
from .replay import replay_frames
from .waves import DEMO_CAPTURE, record

__all__ = ["DEMO_DIR", "run_demo"]

DEMO_DIR = Path("build") / "demo"


def run_demo(json_mode=False, waves=True) -> int:
    """Run the demo; prints the summary (a JSON object with ``json_mode``) and where the
    waveform and the GTKWave save file are. Returns the exit status."""
    try:
        if waves:
            rows, fst_path, gtkw_path = record(DEMO_CAPTURE, DEMO_DIR, "demo")
        else:
            frames, synthetic_l2 = read_capture(DEMO_CAPTURE)
            rows = replay_frames(frames, synthetic_l2=synthetic_l2)
            fst_path = gtkw_path = None
    except runner.CosimError as e:
        print(f"inic demo: simulation failed: {e}", file=sys.stderr)
        return 1
    summary = summarize(rows)
    if json_mode:
        print(json.dumps({**summary, "fst": fst_path and str(fst_path),
                          "gtkw": gtkw_path and str(gtkw_path)}))
        return 0
    print(f"inic demo: {DEMO_CAPTURE.name} through the receive sequencer RTL (Icarus)")
    print(format_summary(summary))
    if waves:
        print(f"waveform     {fst_path}")
        print(f"gtkwave view {gtkw_path}  (gtkwave {gtkw_path})")
    return 0
