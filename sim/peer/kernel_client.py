"""The kernel's end of a transfer: a small socket program run inside the peer namespace.

    inic peer --run 'python -m sim.peer.kernel_client connect --send 1M --expect-reply 256K'
    inic peer --connect 7000 --run 'python -m sim.peer.kernel_client listen --port 7000 ...'

``connect`` opens a TCP connection to the host stack (``$INIC_HOST_IPV4`` or, with ``--ipv6``,
``$INIC_HOST_IPV6``, port ``$INIC_PORT``); ``listen`` waits for the host stack to connect. Either
way it then sends ``--send`` bytes of :func:`sim.peer.pattern.pattern` (``CLIENT_SEED``), reading
at the same time; half-closes; reads until the host closes; checks what came back (``--echo``: the
bytes sent; ``--expect-reply N``: N bytes of the ``REPLY_SEED`` pattern); and writes one JSON
object (``--json FILE``, else stdout) with the kernel's own view of the connection from
``TCP_INFO`` (negotiated MSS, window scales, SACK, timestamps, retransmissions) and the namespace's
TCP counters (``netstat``: ``/proc/net/snmp`` and ``/proc/net/netstat``, as ``nstat`` shows them;
the namespace is the run's own, so they count this program's connection). The exit status is 0
when what came back is right.

Standard library only: it runs under whatever Python the namespace finds.
"""

import argparse
import json
import os
import selectors
import socket
import struct
import sys
import time

from sim.peer.pattern import CLIENT_SEED, REPLY_SEED, digest, pattern

__all__ = ["main", "tcp_info", "parse_size", "namespace_counters", "NETSTAT_COUNTERS"]

# struct tcp_info (include/uapi/linux/tcp.h): 8 bytes of u8 fields, then u32 fields.
_TCPI_U8 = ("state", "ca_state", "retransmits", "probes", "backoff", "options", "wscale",
            "delivery_rate_app_limited")
_TCPI_U32 = ("rto", "ato", "snd_mss", "rcv_mss", "unacked", "sacked", "lost", "retrans",
             "fackets", "last_data_sent", "last_ack_sent", "last_data_recv", "last_ack_recv",
             "pmtu", "rcv_ssthresh", "rtt", "rttvar", "snd_ssthresh", "snd_cwnd", "advmss",
             "reordering", "rcv_rtt", "rcv_space", "total_retrans")
TCPI_OPT_TIMESTAMPS, TCPI_OPT_SACK, TCPI_OPT_WSCALE = 1, 2, 4


def tcp_info(sock: socket.socket) -> dict:
    """The fields of ``TCP_INFO`` this project checks, decoded; window scales as shifts, None
    when window scaling is off."""
    raw = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 256)
    fields = dict(zip(_TCPI_U8, raw[:8]))
    fields.update(zip(_TCPI_U32, struct.unpack_from(f"<{len(_TCPI_U32)}I", raw, 8)))
    options = fields.pop("options")
    wscale = fields.pop("wscale")
    scaling = bool(options & TCPI_OPT_WSCALE)
    fields.update(
        timestamps=bool(options & TCPI_OPT_TIMESTAMPS), sack=bool(options & TCPI_OPT_SACK),
        window_scaling=scaling,
        # tcpi_snd_wscale:4 (the shift applied to windows the peer sends), tcpi_rcv_wscale:4.
        snd_wscale=wscale & 0xF if scaling else None,
        rcv_wscale=wscale >> 4 if scaling else None)
    return fields


#: The namespace's TCP counters reported (``nstat`` names without their ``Tcp``/``TcpExt``
#: prefix): segments retransmitted, of them SYNs, tail-loss probes, timeouts, fast retransmits.
NETSTAT_COUNTERS = {"Tcp": ("RetransSegs",),
                    "TcpExt": ("TCPSynRetrans", "TCPLossProbes", "TCPTimeouts",
                               "TCPFastRetrans", "TCPSpuriousRTOs")}


def namespace_counters(paths=("/proc/net/snmp", "/proc/net/netstat")) -> dict:
    """:data:`NETSTAT_COUNTERS` of this network namespace (each file holds header/value line
    pairs, ``Tcp: RetransSegs ...`` then ``Tcp: 0 ...``); a counter the kernel lacks is left out."""
    out = {}
    for path in paths:
        try:
            with open(path) as f:
                lines = f.read().splitlines()
        except OSError:
            continue
        for header, values in zip(lines[::2], lines[1::2]):
            group, _, names = header.partition(":")
            wanted = NETSTAT_COUNTERS.get(group, ())
            for name, value in zip(names.split(), values.partition(":")[2].split()):
                if name in wanted:
                    out[name] = int(value)
    return out


def parse_size(text: str) -> int:
    """``1M`` = 1 MiB, ``256K`` = 256 KiB, or a plain number of bytes."""
    scale = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}.get(text[-1:].upper(), 1)
    return int(text[:-1] if scale > 1 else text) * scale


def _exchange(sock: socket.socket, outgoing: bytes, deadline: float) -> tuple[bytes, dict]:
    """Send ``outgoing`` while reading; half-close; read until EOF. Returns what arrived and
    TCP_INFO taken once everything arrived (before the close)."""
    sock.setblocking(False)
    selector = selectors.DefaultSelector()
    received = bytearray()
    sent = 0
    eof = False
    if outgoing:
        selector.register(sock, selectors.EVENT_READ | selectors.EVENT_WRITE)
    else:
        sock.shutdown(socket.SHUT_WR)
        selector.register(sock, selectors.EVENT_READ)
    while not eof:
        if time.monotonic() > deadline:
            raise TimeoutError(f"exchange not done: {sent} bytes sent, {len(received)} received")
        for _, events in selector.select(timeout=1.0):
            if events & selectors.EVENT_READ:
                chunk = sock.recv(1 << 16)
                if chunk:
                    received += chunk
                else:
                    eof = True
            if events & selectors.EVENT_WRITE and sent < len(outgoing):
                sent += sock.send(outgoing[sent:sent + (1 << 16)])
                if sent == len(outgoing):
                    sock.shutdown(socket.SHUT_WR)
                    selector.modify(sock, selectors.EVENT_READ)
    info = tcp_info(sock)
    selector.close()
    return bytes(received), info


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="kernel_client", description=__doc__.split("\n")[0])
    parser.add_argument("mode", choices=("connect", "listen"))
    parser.add_argument("--ipv6", action="store_true", help="IPv6 (default IPv4)")
    parser.add_argument("--host", help="address to connect to (default $INIC_HOST_IPV4/6)")
    parser.add_argument("--port", type=int, default=None, help="default $INIC_PORT")
    parser.add_argument("--send", type=parse_size, default=0, metavar="BYTES")
    checks = parser.add_mutually_exclusive_group()
    checks.add_argument("--echo", action="store_true", help="expect the bytes sent back")
    checks.add_argument("--expect-reply", type=parse_size, metavar="BYTES",
                        help="expect BYTES of the reply pattern")
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds (wall)")
    parser.add_argument("--json", metavar="FILE", help="write the result here (default stdout)")
    args = parser.parse_args(argv)

    family = socket.AF_INET6 if args.ipv6 else socket.AF_INET
    port = args.port if args.port is not None else int(os.environ["INIC_PORT"])
    deadline = time.monotonic() + args.timeout
    start = time.monotonic()
    outgoing = pattern(args.send, CLIENT_SEED)
    result = {"ok": False, "mode": args.mode, "family": 6 if args.ipv6 else 4}
    try:
        if args.mode == "connect":
            host = args.host or os.environ["INIC_HOST_IPV6" if args.ipv6 else "INIC_HOST_IPV4"]
            sock = socket.create_connection((host, port), timeout=args.timeout)
        else:
            server = socket.socket(family, socket.SOCK_STREAM)
            server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            server.bind(("::" if args.ipv6 else "0.0.0.0", port))
            server.listen(1)
            server.settimeout(args.timeout)
            sock, _ = server.accept()
            server.close()
        with sock:
            received, info = _exchange(sock, outgoing, deadline)
        if args.echo:
            expected = outgoing
        elif args.expect_reply is not None:
            expected = pattern(args.expect_reply, REPLY_SEED)
        else:
            expected = None
        result.update(
            ok=expected is None or received == expected, bytes_sent=len(outgoing),
            bytes_received=len(received), sha256_sent=digest(outgoing),
            sha256_received=digest(received), tcp_info=info, netstat=namespace_counters(),
            wall_seconds=round(time.monotonic() - start, 3))
        if expected is not None and received != expected:
            result["error"] = (f"received {len(received)} bytes, expected {len(expected)}"
                               + ("" if len(received) != len(expected) else ", contents differ"))
    except (OSError, TimeoutError) as error:
        result["error"] = f"{type(error).__name__}: {error}"
    text = json.dumps(result)
    if args.json:
        with open(args.json, "w") as out:
            out.write(text)
    else:
        print(text)
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
