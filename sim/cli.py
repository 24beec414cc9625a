"""The ``inic`` command (SPEC §5): Verilog, replay, demo, synthesis, benchmarks, waveforms.

Each subcommand is a thin layer over a function of :mod:`sim`; the simulation-backed ones import
their module only when run, so ``inic verilog`` and ``inic synth`` start without cocotb. Errors a
user can cause (a missing file, a bad key) print one line on stderr and exit with 2.
"""

import argparse
import importlib
import sys
from pathlib import Path

from hw import params

__all__ = ["main", "parse_rss_key"]

#: Exit status for errors in the command line or its arguments (argparse uses the same).
EXIT_USAGE = 2


class UsageError(Exception):
    """An error in what the user asked for; its message is printed as is."""


def parse_rss_key(text):
    """Parse the 40-byte RSS key from hex; ``:``, ``-``, spaces and a ``0x`` prefix may appear."""
    digits = text.strip().removeprefix("0x").removeprefix("0X")
    for separator in ":- \t":
        digits = digits.replace(separator, "")
    try:
        key = bytes.fromhex(digits)
    except ValueError:
        raise UsageError(f"--rss-key: {text!r} is not a hex string") from None
    if len(key) != params.RSS_KEY_BYTES:
        raise UsageError(f"--rss-key: {len(key)} bytes given, the key is "
                         f"{params.RSS_KEY_BYTES} bytes ({2 * params.RSS_KEY_BYTES} hex digits)")
    return key


def _existing_file(path):
    path = Path(path)
    if not path.exists():
        raise UsageError(f"{path}: no such file")
    if not path.is_file():
        raise UsageError(f"{path}: not a file")
    return path


def _call(command, module, function, **kwargs):
    """Import ``module`` now and return the exit status of ``module.function(**kwargs)``."""
    try:
        target = importlib.import_module(module)
    except ModuleNotFoundError as e:
        if e.name and (module == e.name or module.startswith(e.name + ".")):
            print(f"inic {command}: not available in this version ({module} is missing)",
                  file=sys.stderr)
        else:
            print(f"inic {command}: Python module '{e.name}' is missing: run `make setup`",
                  file=sys.stderr)
        return 1
    return int(getattr(target, function)(**kwargs) or 0)


def _cmd_verilog(args):
    from sim.verilog import generate_all

    for path in generate_all(args.out):
        print(f"wrote {path}")
    return 0


def _cmd_replay(args):
    path = _existing_file(args.file)
    rss_key = parse_rss_key(args.rss_key) if args.rss_key is not None else None
    handouts = None
    if args.offload is not None:
        from sim.offload_replay import HandoutError, handouts_argument

        try:
            handouts = handouts_argument(args.offload)
        except HandoutError as e:
            raise UsageError(f"--offload: {e}") from None
    return _call("replay", "sim.cosim.replay", "run_replay", path=str(path), json_out=args.json,
                 rss_key=rss_key, waves=args.waves, handouts=handouts)


def _cmd_demo(args):
    return _call("demo", "sim.cosim.demo", "run_demo", json_mode=args.json, waves=args.waves,
                 down=args.down, up=args.up)


def _cmd_peer(args):
    from sim.peer.netns import TcpOptions

    options = TcpOptions(timestamps=not args.no_timestamps, sack=not args.no_sack,
                         window_scaling=not args.no_window_scaling)
    return _call("peer", "sim.peer.run", "run_peer", service=args.service, port=args.port,
                 connect=args.connect, ipv6=args.ipv6, run=args.run, pcap=args.pcap,
                 waves=args.waves, json_mode=args.json, namespace=args.netns, options=options,
                 timeout=args.timeout, offload=not args.no_offload)


def _cmd_synth(args):
    from sim import synth

    return synth.main(json_mode=args.json, top=args.top, out_dir=args.out, seed=args.seed,
                      router=args.router, list_blocks=args.list, paths=args.paths)


def _cmd_bench(args):
    return _call("bench", "sim.cosim.bench", "run_bench", json_mode=args.json)


def _cmd_waves(args):
    return _call("waves", "sim.cosim.waves", "run_waves")


def _parser():
    from sim.synth import DEFAULT_ROUTER, DEFAULT_TOP, ROUTERS, SEED

    parser = argparse.ArgumentParser(
        prog="inic", description="inic: an open, synthesizable intelligent-NIC model.")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    p = commands.add_parser("verilog", help="write Verilog for every block")
    p.add_argument("--out", metavar="DIR", default="build/verilog",
                   help="output directory (default: %(default)s)")
    p.set_defaults(handler=_cmd_verilog)

    p = commands.add_parser("replay", help="push every frame of a pcap through the RTL")
    p.add_argument("file", metavar="FILE", help="capture (pcap or pcapng)")
    p.add_argument("--json", metavar="OUT",
                   help="write the JSON lines (one per frame) to the file OUT")
    p.add_argument("--rss-key", metavar="HEX",
                   help=f"Toeplitz key, {params.RSS_KEY_BYTES} bytes in hex "
                        "(default: Microsoft's published key)")
    p.add_argument("--waves", action="store_true", help="also write an FST waveform")
    p.add_argument("--offload", metavar="TUPLES",
                   help="hand these connections out to the fast path first and fill 'path' and "
                        "'conn': SRC:SPORT-DST:DPORT[,...] as the NIC receives them (IPv6 in "
                        "brackets), or a JSON file listing them")
    p.set_defaults(handler=_cmd_replay)

    p = commands.add_parser("demo", help="scripted end-to-end scenario on the RTL")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.add_argument("--waves", action=argparse.BooleanOptionalAction, default=True,
                   help="write an FST waveform (default: yes)")
    p.add_argument("--down", type=int, default=1 << 20, metavar="BYTES",
                   help="bytes the remote peer sends to the host (default: %(default)s)")
    p.add_argument("--up", type=int, default=256 << 10, metavar="BYTES",
                   help="bytes the host sends back (default: %(default)s)")
    p.set_defaults(handler=_cmd_demo)

    p = commands.add_parser("peer", help="the real Linux TCP stack as the NIC's remote peer (root)")
    p.add_argument("--service", default="echo", metavar="NAME",
                   help="what the host stack does with a connection: echo (send back every byte, "
                        "close when the peer closes), discard, or reply:N (read until the peer "
                        "closes its side, send N bytes, close) (default: %(default)s)")
    p.add_argument("--port", type=int, default=7000,
                   help="port the host stack listens on (default: %(default)s)")
    p.add_argument("--connect", type=int, metavar="PORT",
                   help="the host stack connects to this port of the kernel instead of listening "
                        "(run the kernel's listener with --run)")
    p.add_argument("--ipv6", action="store_true", help="with --connect: over IPv6")
    p.add_argument("--run", metavar="CMD",
                   help="run CMD in the namespace (INIC_HOST_IPV4, INIC_HOST_IPV6, INIC_PORT set), "
                        "stop when it exits and exit with its status")
    p.add_argument("--pcap", metavar="FILE", help="write every frame that crossed the TAP")
    p.add_argument("--waves", action="store_true", help="also write an FST waveform")
    p.add_argument("--json", action="store_true", help="print one JSON object at exit")
    p.add_argument("--netns", default="inic-peer", metavar="NAME",
                   help="network namespace to create (default: %(default)s)")
    p.add_argument("--timeout", type=float, metavar="SECONDS",
                   help="stop after this many wall seconds")
    for option in ("timestamps", "sack", "window-scaling"):
        p.add_argument(f"--no-{option}", action="store_true",
                       help=f"turn TCP {option.replace('-', ' ')} off in the namespace's kernel")
    p.add_argument("--no-offload", action="store_true",
                   help="keep every connection on the slow path (default: the host stack hands "
                        "established connections to the NIC's fast path)")
    p.set_defaults(handler=_cmd_peer)

    p = commands.add_parser("synth", help="ECP5 synthesis and place-and-route: LUT/FF/BRAM, Fmax")
    p.add_argument("--json", action="store_true",
                   help="print one JSON object (device, top, router, fmax_mhz, placed_fmax_mhz, "
                        "target_mhz, lut, ff, bram, seconds, critical_path)")
    p.add_argument("--top", metavar="NAME", default=DEFAULT_TOP,
                   help="block to place, or inic_nic for the whole NIC: a name or class name "
                        "from --list (default: %(default)s)")
    p.add_argument("--list", action="store_true", help="list the blocks --top takes and exit")
    p.add_argument("--router", choices=ROUTERS, default=DEFAULT_ROUTER,
                   help="nextpnr's router (default: %(default)s)")
    p.add_argument("--seed", type=int, default=SEED,
                   help="nextpnr placement seed (default: %(default)s)")
    p.add_argument("--out", metavar="DIR", default="build/synth",
                   help="build directory (default: %(default)s)")
    p.add_argument("--paths", type=int, metavar="N",
                   help="also list every failing path from nextpnr's SDF, grouped by start and "
                        "end register, the N worst hop by hop (on stderr)")
    p.set_defaults(handler=_cmd_synth)

    p = commands.add_parser("bench", help="throughput and latency in clock cycles")
    p.add_argument("--json", action="store_true", help="print the figures as JSON")
    p.set_defaults(handler=_cmd_bench)

    p = commands.add_parser("waves", help="write waveforms and GTKWave save files")
    p.set_defaults(handler=_cmd_waves)
    return parser


def main(argv=None):
    """Entry point of the ``inic`` console script; returns the exit status."""
    args = _parser().parse_args(argv)
    try:
        return args.handler(args)
    except UsageError as e:
        print(f"inic {args.command}: {e}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
