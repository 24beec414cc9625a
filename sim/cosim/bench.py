"""``inic bench``: receive throughput and latency of the RTL, in clock cycles (SPEC §6).

For each traffic class (60, 576 and 1514-byte frames, and IMIX 7:4:1 of the three), a few hundred
back-to-back frames go through the receive sequencer in Icarus with the outputs always ready:

- ``cycles``: first input beat taken to last status word out; ``cycles_per_frame`` from it;
- ``beats_per_cycle``: input beats taken per cycle while the input had data (1.0 is line rate);
- ``latency_cycles``: mean over the frames of first beat in to status word out.

The slow path (``slow_path``) is the whole NIC with the driver and the PCI model at its defaults
(sim/cosim/bench_slow_tb.py): one row per direction (rx, tx), traffic class and spacing (10GbE
wire rate, back to back): frames delivered and dropped, steady-state cycles per frame, the offered
rate in Mpps, DMA bytes per frame and the busier DMA data channel's utilisation.

The fast path (``fast_path``, ``handout``: sim/cosim/bench_fast_tb.py) is the whole NIC with the
driver handing connections out through the real commands: per traffic class (60-byte frames with 6
payload bytes, 576 and 1514-byte segments) one connection, one RCVMDL posted ahead, in-order
segments at 10GbE wire rate: frames placed, not placed (``dropped``), cycles per frame between
placements, DMA bytes written per payload byte, ACKs per segment; and the handout's latencies
(HANDOUT1 → INTERLOCK, HANDOUT2 → first placed byte, FLUSH → FLUSH event) from the command
unit's take, with the link's latencies set to 0.

The CCB table (``ccb``, hw/ccb/table.py): the load at the first failed insert of random IPv4
tuples under random keys, min and median over many seeds, at the default 4,096 entries and at 64K
(the reference model, which the RTL reproduces insert for insert: tests/unit/test_ccb_table*.py);
and, from the RTL in Amaranth's simulator, lookups accepted per clock with one offered every clock
while inserts and deletes are mixed in (one every 32 clocks), and the latency from acceptance to
result (sim/ccb_scoreboard.py, every answer checked against the model).
"""

import json
import sys
import tempfile
from pathlib import Path

from hw.nic import Nic
from hw.rx_sequencer import RxSequencer

from . import bench_fast_tb, bench_slow_tb, bench_tb, runner
from .replay import TOPLEVEL

__all__ = ["FRAMES", "SLOW_FRAMES", "FAST_FRAMES", "run_bench"]

#: Frames per traffic class: a few hundred, about 75k simulated cycles in all.
FRAMES = {"60": 600, "576": 300, "1514": 200, "imix": 240}

#: Frames per slow-path traffic class (each runs rx and tx, at wire rate and back to back).
SLOW_FRAMES = {"60": 300, "576": 150, "1514": 100, "imix": 240}

#: Segments per fast-path traffic class, at wire rate: 600 of 60 bytes is a burst longer than the
#: NIC absorbs (docs: "Figures"); about 52k simulated cycles in all, the handouts included.
FAST_FRAMES = {"60": 600, "576": 150, "1514": 100}

#: CCB table: seeds of the load measurement at each size; the table the lookup rate is measured
#: on, and how many lookups.
CCB_SEEDS = {4096: 50, 65536: 20}
CCB_RATE = {"entries": 4096, "lookups": 4000}

_SLOW_COLUMNS = [("direction", "{}"), ("traffic", "{}"), ("spacing", "{}"), ("frames", "{}"),
                 ("delivered", "{}"), ("dropped", "{}"), ("cycles_per_frame", "{:.2f}"),
                 ("offered_mpps", "{:.2f}"), ("dma_bytes_per_frame", "{:.1f}"),
                 ("dma_bus_utilisation", "{:.3f}")]

_FAST_COLUMNS = [("traffic", "{}"), ("spacing", "{}"), ("frames", "{}"), ("placed", "{}"),
                 ("dropped", "{}"), ("lost", "{}"), ("to_rx_buffers", "{}"),
                 ("cycles_per_frame", "{:.2f}"), ("dma_bytes_per_payload_byte", "{:.3f}"),
                 ("acks_per_segment", "{:.3f}")]

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


def measure_slow_path(frames=None) -> list[dict]:
    """The slow-path figures; ``frames`` (an int) overrides :data:`SLOW_FRAMES`."""
    counts = SLOW_FRAMES if frames is None else dict.fromkeys(SLOW_FRAMES, frames)
    sim_build = runner.build(Nic, "inic_nic")
    runs = sim_build.build_dir / "runs"
    runs.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="bench-", dir=runs) as run_dir:
        out = Path(run_dir) / "bench.jsonl"
        runner.run(sim_build, "sim.cosim.bench_slow_tb", run_name=Path(run_dir).name,
                   extra_env={bench_slow_tb.ENV_OUT: str(out),
                              bench_slow_tb.ENV_FRAMES: json.dumps(counts),
                              "COCOTB_LOG_LEVEL": "WARNING"})
        return [json.loads(line) for line in out.read_text().splitlines()]


def measure_fast_path(frames=None) -> tuple[list[dict], dict]:
    """The fast-path rows and the handout latencies; ``frames`` (an int) overrides
    :data:`FAST_FRAMES`."""
    counts = FAST_FRAMES if frames is None else dict.fromkeys(FAST_FRAMES, frames)
    sim_build = runner.build(Nic, "inic_nic")
    runs = sim_build.build_dir / "runs"
    runs.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="bench-", dir=runs) as run_dir:
        out = Path(run_dir) / "bench.jsonl"
        runner.run(sim_build, "sim.cosim.bench_fast_tb", run_name=Path(run_dir).name,
                   extra_env={bench_fast_tb.ENV_OUT: str(out),
                              bench_fast_tb.ENV_FRAMES: json.dumps(counts),
                              "COCOTB_LOG_LEVEL": "WARNING"})
        lines = [json.loads(line) for line in out.read_text().splitlines()]
    rows = [line["fast_path"] for line in lines if "fast_path" in line]
    (handout,) = [line["handout"] for line in lines if "handout" in line]
    return rows, handout


def measure_ccb(seeds=None, rate=None) -> dict:
    """The CCB table's figures (see the module docstring); ``seeds`` ({entries: seeds}) and
    ``rate`` ({"entries", "lookups"}) override :data:`CCB_SEEDS` and :data:`CCB_RATE`."""
    import inspect
    import statistics

    from hw.ccb import CcbTable
    from sim.ccb_scoreboard import measure_lookups
    from sim.reference.ccb_study import Organisation, fill_until_full

    default = {name: p.default for name, p in inspect.signature(CcbTable).parameters.items()}
    organisation = Organisation("default", 2, default["ways"], default["stash"],
                                default["max_kicks"])
    loads = {}
    for entries, count in (seeds or CCB_SEEDS).items():
        fills = [fill_until_full(organisation, entries, seed).load for seed in range(count)]
        loads[entries] = {"entries": entries, "seeds": count,
                          "load_at_first_failure_min": round(min(fills), 4),
                          "load_at_first_failure_median": round(statistics.median(fills), 4)}
    rate_args = rate or CCB_RATE
    rate = measure_lookups(**rate_args)
    # The same with no command in the way: what the lookup pipeline itself sustains.
    alone = measure_lookups(**rate_args, command_every=1 << 30)
    first = loads[min(loads)]
    return {
        "entries": first["entries"],
        "load_at_first_failure_min": first["load_at_first_failure_min"],
        "load_at_first_failure_median": first["load_at_first_failure_median"],
        "lookups_per_cycle": rate["lookups_per_cycle"],
        "latency_cycles": rate["latency_cycles"],
        "latency_max_cycles": rate["latency_max_cycles"],
        "lookups_per_cycle_without_commands": alone["lookups_per_cycle"],
        "loads": list(loads.values()),
        "rate_run": {k: rate[k] for k in ("entries", "lookups", "commands", "cycles")},
    }


def _print_table(columns, rows):
    header = [name for name, _ in columns]
    table = [header] + [[fmt.format(row[name]) for name, fmt in columns] for row in rows]
    widths = [max(len(line[n]) for line in table) for n in range(len(header))]
    for line in table:
        print("  ".join(cell.rjust(width) for cell, width in zip(line, widths)))


def run_bench(json_mode=False, frames=None, slow_frames=None, ccb_seeds=None,
              ccb_rate=None, fast_frames=None) -> int:
    """``inic bench``: prints tables, or with ``json_mode``
    ``{"rx": [figures, ...], "slow_path": [figures, ...], "ccb": {figures},
    "fast_path": [figures, ...], "handout": {figures}}``."""
    try:
        rows = measure(frames)
        slow = measure_slow_path(slow_frames)
        fast, handout = measure_fast_path(fast_frames)
    except runner.CosimError as e:
        print(f"inic bench: simulation failed: {e}", file=sys.stderr)
        return 1
    ccb = measure_ccb(ccb_seeds, ccb_rate)
    if json_mode:
        print(json.dumps({"rx": rows, "slow_path": slow, "ccb": ccb, "fast_path": fast,
                          "handout": handout}))
        return 0
    print("receive sequencer, back-to-back frames, outputs always ready (clock cycles)")
    _print_table(_COLUMNS, rows)
    print()
    print("slow path, whole NIC + driver, PCI model defaults (read latency 78 cycles, 16 reads "
          f"outstanding), moderation {bench_slow_tb.MODERATION['intr_mod_events']} events / "
          f"{bench_slow_tb.MODERATION['intr_mod_cycles']} cycles; cycles per frame in steady "
          "state, Mpps at 156.25 MHz (10GbE wire rate: 14.88 Mpps at 60 bytes)")
    _print_table(_SLOW_COLUMNS, slow)
    print()
    run = ccb["rate_run"]
    print("CCB table (2 banks x 4 ways, stash 8, 128 kicks): load at the first failed insert of "
          "random tuples, over seeds; lookups offered every clock with an insert or delete every "
          f"32 clocks ({run['entries']} entries, {run['lookups']} lookups, {run['commands']} "
          "commands)")
    _print_table([("entries", "{}"), ("seeds", "{}"), ("load_at_first_failure_min", "{:.4f}"),
                  ("load_at_first_failure_median", "{:.4f}")], ccb["loads"])
    print(f"lookups per cycle {ccb['lookups_per_cycle']:.4f} with commands mixed in "
          f"({ccb['lookups_per_cycle_without_commands']:.4f} without); latency "
          f"{ccb['latency_cycles']} cycles (at most {ccb['latency_max_cycles']} with commands)")
    print()
    _print_fast_path(fast, handout)
    return 0


def _print_fast_path(rows, handout):
    print("fast path, whole NIC + driver, PCI model defaults: one connection handed out, one "
          "RCVMDL posted ahead, in-order segments at 10GbE wire rate (a frame every 10.5 / 75 / "
          "192.25 cycles); dropped = not placed: lost (rx_drop_*) + written whole to RX buffers "
          "(slow path after a flush, FRAME_DATA) + still queued; cycles per frame between "
          "placements")
    _print_table(_FAST_COLUMNS, rows)
    print(f"handout, link latencies 0, from the command unit's take (cycles): HANDOUT1 -> "
          f"INTERLOCK {handout['interlock_cycles']}, HANDOUT2 -> first placed byte "
          f"{handout['first_byte_cycles']} (segment starting on the wire as HANDOUT2 is taken, "
          f"at the engine after {handout['segment_arrival_cycles']}; one waiting "
          f"since PENDING is shown with FRAME_DATA after {handout['waiting_first_byte_cycles']}), "
          f"FLUSH -> FLUSH event {handout['flush_cycles']}")
