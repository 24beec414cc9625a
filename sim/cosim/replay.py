"""``inic replay FILE``: every frame of a capture through the receive sequencer RTL (SPEC §5).

One JSON row per frame, in frame order (``status_to_json`` of the RTL's status word, plus
``"synthetic_l2": true`` when the capture's link layer was synthesized), then the summary.

With a handout list (``--offload``, sim/offload_replay.py) the frames then go through the whole
NIC, after those connections were handed out to its fast path, one at a time; each row gains
``path`` and ``conn`` (SPEC §5) and the summary the count by path, the handouts and the flushes by
reason. ``--waves`` then records the NIC's run. Progress
goes to stderr every 1000 frames on long captures; cocotb's and Icarus's own output goes to the
run's ``sim.log``, so the terminal shows only progress and the summary.
"""

import json
import shutil
import sys
import tempfile
import threading
from pathlib import Path

from hw.nic import Nic
from hw.rx_sequencer import RxSequencer
from sim.pcap import CaptureError, read_capture
from sim.status_json import format_summary, summarize

from . import replay_tb, runner

__all__ = ["TOPLEVEL", "NIC_TOPLEVEL", "WAVES_DIR", "replay_frames", "offload_frames",
           "run_replay"]

TOPLEVEL = "inic_rx_sequencer"
NIC_TOPLEVEL = "inic_nic"
WAVES_DIR = Path("build") / "waves"
PROGRESS_EVERY = 1000
EXIT_ERROR = 1
EXIT_BAD_CAPTURE = 2


class _Progress(threading.Thread):
    """Counts the rows the simulation has flushed and reports every :data:`PROGRESS_EVERY`."""

    def __init__(self, rows_path, total):
        super().__init__(daemon=True)
        self._rows_path = rows_path
        self._total = total
        self._done = threading.Event()

    def run(self):
        reported = 0
        while not self._done.wait(0.5):
            try:
                with open(self._rows_path, "rb") as f:
                    count = sum(chunk.count(b"\n") for chunk in iter(lambda: f.read(1 << 20), b""))
            except FileNotFoundError:
                continue
            if count // PROGRESS_EVERY > reported // PROGRESS_EVERY:
                reported = count
                print(f"replay: {count}/{self._total} frames", file=sys.stderr, flush=True)

    def stop(self):
        self._done.set()
        self.join()


def replay_frames(frames, *, synthetic_l2=False, rss_key=None, waves_path=None,
                  progress=False) -> list[dict]:
    """Run ``frames`` through the RTL; returns the JSON rows, in frame order.

    ``rss_key`` (40 bytes) is written before the first frame; ``waves_path`` writes an FST there.
    Raises :class:`sim.cosim.runner.CosimError` when the simulation fails.
    """
    sim_build = runner.build(RxSequencer, TOPLEVEL, waves=waves_path is not None)
    runs = sim_build.build_dir / "runs"
    runs.mkdir(parents=True, exist_ok=True)
    run_dir = Path(tempfile.mkdtemp(prefix="replay-", dir=runs))
    frames_path, rows_path = run_dir / "frames.bin", run_dir / "rows.jsonl"
    replay_tb.save_frames(frames_path, frames)
    env = {
        replay_tb.ENV_FRAMES: str(frames_path),
        replay_tb.ENV_ROWS: str(rows_path),
        replay_tb.ENV_SYNTHETIC: "1" if synthetic_l2 else "0",
        replay_tb.ENV_KEY: rss_key.hex() if rss_key else "",
        "COCOTB_LOG_LEVEL": "WARNING",
    }
    if waves_path is not None:
        Path(waves_path).parent.mkdir(parents=True, exist_ok=True)
    watcher = _Progress(rows_path, len(frames)) if progress else None
    if watcher:
        watcher.start()
    try:
        runner.run(sim_build, "sim.cosim.replay_tb", run_name=run_dir.name, extra_env=env,
                   testcase="replay", waves=waves_path is not None,
                   waves_path=Path(waves_path).resolve() if waves_path else None)
    finally:
        if watcher:
            watcher.stop()
    with open(rows_path) as f:
        rows = [json.loads(line) for line in f]
    shutil.rmtree(run_dir)
    return rows


def offload_frames(frames, rows, handouts, *, waves_path=None) -> dict:
    """Hand ``handouts`` (:class:`sim.offload_replay.Handout`) out to the NIC RTL, then push
    ``frames``; fills ``path`` and ``conn`` in ``rows`` (the sequencer replay's) and returns the
    summary's additions (``paths``, ``handouts``, ``flushes``). Raises
    :class:`sim.cosim.runner.CosimError` when the simulation fails."""
    sim_build = runner.build(Nic, NIC_TOPLEVEL, waves=waves_path is not None)
    runs = sim_build.build_dir / "runs"
    runs.mkdir(parents=True, exist_ok=True)
    run_dir = Path(tempfile.mkdtemp(prefix="replay-offload-", dir=runs))
    frames_path, rows_in = run_dir / "frames.bin", run_dir / "rows_in.jsonl"
    rows_out, summary_path = run_dir / "rows.jsonl", run_dir / "summary.json"
    replay_tb.save_frames(frames_path, frames)
    _write_rows_file(rows_in, rows)
    env = {
        replay_tb.ENV_FRAMES: str(frames_path),
        replay_tb.ENV_ROWS_IN: str(rows_in),
        replay_tb.ENV_ROWS: str(rows_out),
        replay_tb.ENV_SUMMARY: str(summary_path),
        replay_tb.ENV_HANDOUTS: json.dumps([str(h) for h in handouts]),
        "COCOTB_LOG_LEVEL": "WARNING",
    }
    if waves_path is not None:
        Path(waves_path).parent.mkdir(parents=True, exist_ok=True)
    runner.run(sim_build, "sim.cosim.replay_tb", run_name=run_dir.name, extra_env=env,
               testcase="replay_offload", waves=waves_path is not None,
               waves_path=Path(waves_path).resolve() if waves_path else None)
    with open(rows_out) as f:
        rows[:] = [json.loads(line) for line in f]
    summary = json.loads(summary_path.read_text())
    shutil.rmtree(run_dir)
    return summary


def run_replay(path, json_out=None, rss_key=None, waves=False, handouts=None) -> int:
    """``inic replay``: returns the exit status (0 done, 1 simulation failed, 2 bad capture).

    ``json_out`` is a file for the JSON lines, ``'-'`` for stdout (the summary then goes to
    stderr), or None for the summary only. ``waves`` writes ``build/waves/<capture>.fst``.
    ``handouts`` (a list of :class:`sim.offload_replay.Handout`): hand them out and fill
    ``path`` and ``conn``.
    """
    try:
        frames, synthetic_l2 = read_capture(path)
    except CaptureError as e:
        print(f"inic replay: {e}", file=sys.stderr)
        return EXIT_BAD_CAPTURE
    waves_path = WAVES_DIR / f"{Path(path).stem}.fst" if waves else None
    offload = {}
    try:
        rows = replay_frames(frames, synthetic_l2=synthetic_l2, rss_key=rss_key,
                             waves_path=None if handouts else waves_path,
                             progress=len(frames) > PROGRESS_EVERY)
        if handouts:
            offload = offload_frames(frames, rows, handouts, waves_path=waves_path)
    except runner.CosimError as e:
        print(f"inic replay: simulation failed: {e}", file=sys.stderr)
        return EXIT_ERROR
    summary_file = sys.stdout
    if json_out == "-":
        _write_rows(sys.stdout, rows)
        summary_file = sys.stderr
    elif json_out is not None:
        with open(json_out, "w") as f:
            _write_rows(f, rows)
    print(format_summary({**summarize(rows), **offload}), file=summary_file)
    if waves_path is not None:
        print(f"waves: {waves_path}", file=summary_file)
    return 0


def _write_rows(f, rows):
    for row in rows:
        f.write(json.dumps(row) + "\n")


def _write_rows_file(path, rows):
    with open(path, "w") as f:
        _write_rows(f, rows)
