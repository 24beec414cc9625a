"""Build and run cocotb testbenches on Icarus (``cocotb_tools.runner``).

One build directory per component and parameter set, ``build/sim/<name>[-k=v...][-waves]`` under
the current directory (like the other ``inic`` outputs). The Verilog is regenerated on every call
and Icarus recompiles only when it changed, under a file lock, so parallel pytest-xdist workers
share one build. Each run gets its own directory (results XML, simulator log, waveform), so runs
of one build may proceed in parallel.
"""

import fcntl
import hashlib
import sys
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from xml.etree import ElementTree

from cocotb_tools.check_results import get_results
from cocotb_tools.runner import get_runner

from sim.verilog import convert, for_icarus

__all__ = ["REPO_ROOT", "SIM_BUILD", "SimBuild", "build", "run", "assert_passed", "CosimError"]

REPO_ROOT = Path(__file__).resolve().parents[2]
SIM_BUILD = Path("build") / "sim"
TIMESCALE = ("1ns", "1ps")


class CosimError(AssertionError):
    """A cocotb run ended with failing tests or without results."""


@dataclass(frozen=True)
class SimBuild:
    """A compiled simulation: the Icarus image in ``build_dir`` for the HDL top ``toplevel``."""
    toplevel: str
    build_dir: Path
    waves: bool

    def waves_path(self, test_dir):
        """Where a run in ``test_dir`` writes its FST."""
        return Path(test_dir) / f"{self.toplevel}.fst"


@contextmanager
def _locked(directory):
    directory.mkdir(parents=True, exist_ok=True)
    with open(directory / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def _dir_name(name, params, waves):
    parts = [name, *(f"{key}={value}" for key, value in sorted(params.items()))]
    if waves:
        parts.append("waves")
    return "-".join(parts)


@cache
def _verilog(factory, name, params):
    """The Verilog of ``factory(**dict(params))``, generated once per process (Amaranth and Yosys
    take seconds on the sequencer; the gateware does not change while a process runs)."""
    return for_icarus(convert(factory(**dict(params)), name))


def build(factory, name, *, params=None, waves=False, build_root=SIM_BUILD):
    """Generate ``factory(**params)`` as Verilog top ``name`` and compile it with Icarus.

    ``waves`` compiles in the FST dump module (a separate build directory, since the image differs).
    Returns a :class:`SimBuild`.
    """
    params = dict(params or {})
    build_dir = Path(build_root).resolve() / _dir_name(name, params, waves)
    verilog = _verilog(factory, name, tuple(sorted(params.items())))
    digest = hashlib.sha256(verilog.encode()).hexdigest()
    with _locked(build_dir):
        source = build_dir / f"{name}.v"
        stamp = build_dir / "build.stamp"
        image = build_dir / "sim.vvp"
        if not (image.is_file() and stamp.is_file() and stamp.read_text() == digest):
            source.write_text(verilog)
            # The Icarus runner compiles with -g2012 itself.
            get_runner("icarus").build(
                sources=[source], hdl_toplevel=name, build_dir=build_dir, always=True,
                timescale=TIMESCALE, waves=waves, log_file=build_dir / "build.log",
            )
            stamp.write_text(digest)
    return SimBuild(name, build_dir, waves)


def run(sim_build, test_module, *, run_name, testcase=None, extra_env=None, waves=False,
        waves_path=None):
    """Run cocotb ``test_module`` (a dotted module name) on ``sim_build``; returns the results XML.

    The run happens in ``<build_dir>/runs/<run_name>``, which also receives the simulator's output
    (``sim.log``). With ``waves`` (which needs a waves build) the FST goes to ``waves_path``,
    by default ``sim_build.waves_path(<run dir>)``. The repository root is put on the simulator's
    ``PYTHONPATH`` so ``hw``, ``sim`` and ``tests`` import there. Raises :class:`CosimError`
    naming the failed tests when any failed.
    """
    if waves and not sim_build.waves:
        raise ValueError("waves=True needs a build made with waves=True")
    test_dir = sim_build.build_dir / "runs" / run_name
    test_dir.mkdir(parents=True, exist_ok=True)
    results = test_dir / "results.xml"
    log = test_dir / "sim.log"
    plusargs = []
    if waves:
        plusargs.append(f"+dumpfile_path={waves_path or sim_build.waves_path(test_dir)}")
    if str(REPO_ROOT) not in sys.path:
        # The runner hands the simulator this process's sys.path as PYTHONPATH.
        sys.path.insert(0, str(REPO_ROOT))
    try:
        get_runner("icarus").test(
            test_module=test_module, hdl_toplevel=sim_build.toplevel,
            hdl_toplevel_lang="verilog", build_dir=sim_build.build_dir, test_dir=test_dir,
            testcase=testcase, extra_env=dict(extra_env or {}), waves=waves, plusargs=plusargs,
            timescale=TIMESCALE, results_xml=str(results), log_file=log,
        )
    except (SystemExit, RuntimeError) as exc:
        # The runner exits (under pytest) or raises when tests fail or the simulator does.
        assert_passed(results, log)
        raise CosimError(f"simulator failed ({exc}); see {log}") from exc
    assert_passed(results, log)
    return results


def assert_passed(results, log=None):
    """Raise :class:`CosimError` unless ``results`` (a cocotb results XML) has no failures;
    the message names each failed test with its message, and the simulator ``log``."""
    results = Path(results)
    where = f"see {log}" if log else str(results)
    try:
        tests, failed = get_results(results)
    except RuntimeError as exc:
        raise CosimError(f"{exc}; {where}") from None
    if tests == 0:
        raise CosimError(f"no test ran; {where}")
    if failed:
        raise CosimError(f"{failed} of {tests} cocotb tests failed; {where}\n"
                         + "\n".join(_failures(results)))


def _failures(results):
    for case in ElementTree.parse(results).getroot().iter("testcase"):
        for problem in [*case.findall("failure"), *case.findall("error")]:
            yield f"  {case.get('name')}: {problem.get('message', '')}"
