"""``inic peer``: the real Linux TCP stack as the remote peer of the simulated NIC.

:func:`run_peer` creates the namespace (:class:`sim.peer.netns.PeerNamespace`), starts the NIC
simulation (:mod:`sim.peer.peer_tb`) in a process of its own session (so Ctrl-C reaches this
process, which then stops the simulation in order, rather than Icarus, which would drop into its
interactive prompt), waits until the host stack serves, then either runs the user's command in
the namespace or waits for Ctrl-C. It always stops the simulation and deletes the namespace, and
prints what crossed (``--json``: one object).

``python -m sim.peer.run --simulate CONFIG`` is that simulation process.
"""

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from hw.nic import Nic

from ..cosim import runner
from ..cosim.demo import NIC_SIGNALS
from ..cosim.waves import write_gtkw
from .netns import (
    DEFAULT_NAMESPACE,
    TAP_NAME,
    Interrupted,
    NamespaceError,
    PeerNamespace,
    TcpOptions,
    missing_requirement,
)
from .services import parse_service

__all__ = ["PEER_DIR", "TOPLEVEL", "PeerRun", "run_peer", "format_summary"]

PEER_DIR = Path("build") / "peer"
TOPLEVEL = "inic_nic"
#: Host TCP seconds per simulated cycle: 10 µs, so the host stack's 200 ms minimum RTO is 20,000
#: cycles, the time the simulated 10GbE wire takes for about 100 full-size frames (a real 10GbE
#: sender's minimum RTO covers far more, but a test must also recover in minutes of wall time).
#: See docs/kernel_peer.md ("Two clocks").
TCP_SECONDS_PER_CYCLE = 10e-6
#: The host stack's settings against the kernel: Linux's minimum RTO; a shorter initial RTO and
#: neighbour-resolution timeout than RFC 6298's 1 s (50,000 and 20,000 cycles); a 256 KB window.
HOST_STACK = {"rcv_wnd": 256 << 10, "rto_initial": 0.5, "rto_min": 0.2, "rto_max": 60.0,
              "max_retries": 15, "time_wait": 0.1, "resolve_timeout": 0.2}
#: The driver's rings and interrupt moderation.
DRIVER = {"rx_log2": 8, "intr_mod_events": 8, "intr_mod_cycles": 300}
#: With the offload, rings for its commands and events (as tests/cosim/nic_fast_path_tests.py):
#: RCVMDLs and WINUPDATEs go through the command ring, RCVMDL_DONE and FRAME_DATA through the
#: event ring.
OFFLOAD_DRIVER = {"command_log2": 6, "event_log2": 10}
#: Wall seconds to wait for the simulation to come up (it compiles first if it must).
READY_TIMEOUT = 600
#: Wall seconds the simulation gets to finish after being told to stop.
STOP_TIMEOUT = 120


class PeerRun:
    """One ``inic peer`` run's files, in ``build/peer/<namespace>/``."""

    def __init__(self, out_dir: Path):
        self.dir = Path(out_dir).resolve()
        self.config = self.dir / "config.json"
        self.ready = self.dir / "ready"
        self.stop = self.dir / "stop"
        self.result = self.dir / "result.json"
        self.log = self.dir / "simulation.log"
        self.fst = self.dir / "peer.fst"

    def clear(self):
        self.dir.mkdir(parents=True, exist_ok=True)
        for path in (self.ready, self.stop, self.result, self.config):
            path.unlink(missing_ok=True)


def _config(ns: PeerNamespace, files: PeerRun, sim_build, *, service, port, connect, pcap,
            starve, max_cycles, waves, driver, offload) -> dict:
    kind, reply_bytes = parse_service(service)
    endpoint = lambda e: {"mac": e.mac, "ipv4": e.ipv4, "ipv6": e.ipv6}   # noqa: E731
    return {
        "netns": str(ns.path), "tap": TAP_NAME, "host": endpoint(ns.host),
        "peer": endpoint(ns.peer), "service": kind, "reply_bytes": reply_bytes, "port": port,
        "connect": connect, "pcap": str(Path(pcap).resolve()) if pcap else None,
        "starve": starve, "max_cycles": max_cycles, "grace_cycles": 200_000,
        "tcp_seconds_per_cycle": TCP_SECONDS_PER_CYCLE, "stack": HOST_STACK,
        "driver": {**DRIVER, **(OFFLOAD_DRIVER if offload else {}), **(driver or {})},
        "offload": offload,
        "ready_file": str(files.ready), "stop_file": str(files.stop),
        "result_file": str(files.result), "watch_pid": os.getpid(),
        "build": {"toplevel": sim_build.toplevel, "dir": str(sim_build.build_dir),
                  "waves": sim_build.waves},
        "run_name": f"peer-{ns.name}", "waves_path": str(files.fst) if waves else None,
    }


def _simulate(config_path: str) -> int:
    """The simulation process: run the cocotb module on the prebuilt NIC."""
    config = json.loads(Path(config_path).read_text())
    build = runner.SimBuild(config["build"]["toplevel"], Path(config["build"]["dir"]),
                            config["build"]["waves"])
    try:
        runner.run(build, "sim.peer.peer_tb", run_name=config["run_name"],
                   extra_env={"INIC_PEER_CONFIG": config_path}, waves=build.waves,
                   waves_path=config["waves_path"])
    except runner.CosimError as error:
        print(f"simulation: {error}", file=sys.stderr)
        return 1
    return 0


def _wait_ready(files: PeerRun, simulation: subprocess.Popen, deadline: float) -> None:
    while not files.ready.exists():
        if simulation.poll() is not None:
            raise NamespaceError(f"the simulation ended before serving (see {files.log})")
        if time.monotonic() > deadline:
            raise NamespaceError(f"the simulation did not come up in time (see {files.log})")
        time.sleep(0.1)


def _stop(files: PeerRun, simulation: subprocess.Popen) -> None:
    """Ask the simulation to finish (it lets connections close, then writes its result); kill it
    if it does not."""
    files.stop.touch()
    try:
        simulation.wait(STOP_TIMEOUT)
    except subprocess.TimeoutExpired:
        os.killpg(simulation.pid, signal.SIGKILL)
        simulation.wait()


def _command_environment(ns: PeerNamespace, port: int) -> dict:
    env = dict(os.environ)
    repo = str(runner.REPO_ROOT)
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    env["PYTHONPATH"] = os.pathsep.join(p for p in (repo, env.get("PYTHONPATH")) if p)
    env.update(ns.environment(port))
    return env


def run_peer(*, service: str = "echo", port: int = 7000, connect: int | None = None,
             ipv6: bool = False, run: str | None = None, pcap=None, waves: bool = False,
             json_mode: bool = False, namespace: str = DEFAULT_NAMESPACE,
             options: TcpOptions | None = None, starve: dict | None = None,
             max_cycles: int = 0, timeout: float | None = None, out_dir=None,
             quiet: bool = False, driver: dict | None = None, offload: bool = True) -> int:
    """``inic peer``. Returns the exit status: CMD's with ``run``, else 0 when the run was ok.

    ``connect``: the host stack connects to the kernel's port ``connect`` (IPv6 with ``ipv6``)
    instead of listening on ``port``. ``starve``: ``{"after_bytes", "cycles"}``, the driver stops
    re-posting RX buffers for a while. ``timeout``: wall seconds after which the command is killed
    and the run stopped. ``driver``: :meth:`host_driver.driver.NicDriver.start` arguments over
    ``DRIVER``. ``offload``: the host stack hands established connections to the NIC's fast path
    (:class:`host_driver.offload.OffloadPolicy`) and the service reads through RCVMDLs; False:
    everything takes the slow path (and the NIC model runs beside the RTL as the scoreboard). The
    simulation's figures stay in ``<out_dir>/result.json``.
    """
    def say(*lines):
        if not json_mode and not quiet:
            print("\n".join(lines), flush=True)

    problem = missing_requirement()
    if problem:
        print(f"inic peer: {problem}", file=sys.stderr)
        return 1
    try:
        parse_service(service)
    except ValueError as error:
        print(f"inic peer: {error}", file=sys.stderr)
        return 2
    files = PeerRun(out_dir or PEER_DIR / namespace)
    files.clear()
    say("inic peer: building the NIC simulation ...")
    sim_build = runner.build(Nic, TOPLEVEL, waves=waves)
    status = 0
    cmd_status = None
    simulation = None
    deadline = time.monotonic() + timeout if timeout else None
    try:
        with PeerNamespace(namespace, options=options or TcpOptions()) as ns:
            client = {"port": connect, "ipv6": ipv6, "attempts": 20} if connect else None
            config = _config(ns, files, sim_build, service=service, port=port, connect=client,
                             pcap=pcap, starve=starve, max_cycles=max_cycles, waves=waves,
                             driver=driver, offload=offload)
            files.config.write_text(json.dumps(config, indent=1))
            with open(files.log, "w") as log:
                simulation = subprocess.Popen(
                    [sys.executable, "-m", "sim.peer.run", "--simulate", str(files.config)],
                    stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                    cwd=runner.REPO_ROOT)
            try:
                _wait_ready(files, simulation, time.monotonic() + READY_TIMEOUT)
                where = (f"connects to the kernel's port {connect}" if connect else
                         f"serves {service} on port {port}")
                say(f"inic peer: the host stack behind the simulated NIC {where}",
                    f"  host stack   {ns.host.ipv4}  {ns.host.ipv6}  ({ns.host.mac})",
                    f"  kernel       {ns.peer.ipv4}  {ns.peer.ipv6}  (TAP {TAP_NAME} in "
                    f"network namespace {ns.name})")
                if not connect:
                    say(f"  reach it     ip netns exec {ns.name} python3 -m "
                        f"sim.peer.kernel_client connect --port {port} --send 64K --echo"
                        "   (from the repository)",
                        f"               ip netns exec {ns.name} nc {ns.host.ipv4} {port}"
                        "   (if netcat is installed)")
                if run is not None:
                    cmd_status = _run_command(ns, run, port, simulation, deadline)
                else:
                    say("  Ctrl-C stops it.")
                    while simulation.poll() is None:
                        if deadline and time.monotonic() > deadline:
                            break
                        time.sleep(0.2)
            finally:
                _stop(files, simulation)
    except NamespaceError as error:
        print(f"inic peer: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        status = 130
    except Interrupted:
        status = 143            # SIGTERM or SIGHUP: stopped in order all the same
    result = json.loads(files.result.read_text()) if files.result.is_file() else None
    if result is None:
        print(f"inic peer: the simulation left no result (see {files.log})", file=sys.stderr)
        return status or 1
    if waves and files.fst.is_file():
        write_gtkw(files.fst, files.fst.with_suffix(".gtkw"), NIC_SIGNALS, toplevel=TOPLEVEL)
        result["fst"] = str(files.fst)
    if cmd_status is not None:
        result["command_status"] = cmd_status
    if json_mode:
        keys = ("ok", "connections", "bytes_in", "bytes_out", "frames_in", "frames_out",
                "frames_dropped", "cycles", "fast_path_bytes", "slow_path_bytes", "handouts",
                "flushes")
        print(json.dumps({**{k: result[k] for k in keys},
                          **{k: v for k, v in result.items() if k not in keys}}))
    elif not quiet:
        print(format_summary(result))
    if status:
        return status
    if cmd_status is not None:
        return cmd_status
    return 0 if result["ok"] else 1


def _run_command(ns, command, port, simulation, deadline) -> int:
    """Run ``command`` in the namespace until it exits (its status), the simulation ends (1) or
    the deadline passes (124, as timeout(1))."""
    process = subprocess.Popen(ns.command(["sh", "-c", command]),
                               env=_command_environment(ns, port))
    try:
        while True:
            try:
                return process.wait(0.2)
            except subprocess.TimeoutExpired:
                pass
            if simulation.poll() is not None:
                print("inic peer: the simulation ended while the command ran", file=sys.stderr)
                return 1
            if deadline and time.monotonic() > deadline:
                print("inic peer: --timeout reached; the command is stopped", file=sys.stderr)
                return 124
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def format_summary(r: dict) -> str:
    rows = [
        ("result", "OK" if r["ok"] else f"FAILED: {r.get('error') or 'see the JSON'}"),
        ("connections", f"{r['connections']}"),
        ("payload", f"{r['bytes_in']:,} bytes from the kernel, {r['bytes_out']:,} to it"),
        ("frames", f"{r['frames_in']:,} from the kernel, {r['frames_out']:,} to it, "
                   f"{r['frames_dropped']:,} dropped"),
        ("fast path", _fast_path_line(r)),
        ("cycles", f"{r['cycles']:,} ({r['simulated_seconds'] * 1e3:,.3f} ms simulated)"),
        ("wall time", f"{r['wall_seconds']:,.1f} s: the simulation ran {r['slowdown']:,.0f}x "
                      f"slower than real time ({r['cycles_per_wall_second']:,} cycles/s)"),
    ]
    width = max(len(name) for name, _ in rows)
    return "\n".join(f"{name:<{width}}  {value}" for name, value in rows)


def _fast_path_line(r: dict) -> str:
    if not r.get("offload_on"):
        return f"off: {r['slow_path_bytes']:,} bytes from the kernel took the slow path"
    if r.get("offload") is None:
        return "on, not measured (the run failed)"
    reasons = ", ".join(f"{n} {k}" for k, n in sorted(r["flushes_by_reason"].items()))
    stats = r["offload"]
    return (f"{r['fast_path_bytes']:,} bytes on the fast path ({stats['fp_fast_bytes']:,} placed "
            f"into RCVMDLs, {stats['fp_frame_data_bytes']:,} shown with FRAME_DATA), "
            f"{r['slow_path_bytes']:,} on the slow path ({r['slow_path_bytes_after_handout']:,} "
            f"after a handout); {r['handouts']} handouts, {r['flushes']} flushes"
            + (f" ({reasons})" if reasons else ""))


def _main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sim.peer.run")
    parser.add_argument("--simulate", metavar="CONFIG", required=True)
    args = parser.parse_args(argv)
    return _simulate(args.simulate)


if __name__ == "__main__":
    sys.exit(_main())
