"""``inic replay --offload``: hand connections of a capture out to the NIC's fast path, then push
the capture's frames and tell, frame by frame, which path each took (SPEC §5 ``path``, ``conn``).

Bus-agnostic: :func:`replay_offloaded` drives a :class:`host_driver.driver.NicDriver` over any
bus — the NIC RTL under cocotb (sim/cosim/replay_tb.py) or the NIC model
(tests/system/test_replay_offload.py, which compares the two).

The handout list names connections by the frames the NIC receives: ``SRC:SPORT-DST:DPORT``, SRC
the remote peer, DST the host (IPv6 in brackets: ``[fd00::2]:1234-[fd00::1]:80``); on the command
line comma-separated, or in a JSON file as a list of such strings or of objects with ``src``,
``sport``, ``dst``, ``dport``.

Before the first frame each connection is handed out as the host stack does it (HANDOUT1, wait for
INTERLOCK, HANDOUT2) with a Ccb built from the capture's frames of that connection
(:func:`ccb_from_capture`), and one RCVMDL posted that holds all the data the capture sends on
it. Then the frames go in one at a time: each when the NIC has finished with the one before
(every frame accounted for in the counters, every FLUSH event taken), so the counters' changes
say what became of it (:func:`classify`):

- ``fast``: placed into the RCVMDL, or a pure ACK taken by the fast path;
- ``frame_data``: shown to the host with FRAME_DATA;
- ``queued``: waiting in the connection's queue (after FRAME_DATA, until the host answers);
- ``drop``: dropped (no buffer, overflow...; HostCounters ``rx_drop_*``);
- ``slow``: passed to the host's slow path.

``conn`` is the connection number on the first three, and on a ``slow`` frame that flushed its
connection (out of order, FIN, bad checksum...: it went to the slow path with the frames queued
before it; the FLUSH's reason is in the summary); null otherwise — a flushed connection stays on
the slow path for the rest of the replay (nobody hands it out again).
"""

import dataclasses
import ipaddress
import json
import re
from collections import Counter
from pathlib import Path

from scapy.layers.inet import IP, TCP
from scapy.layers.inet6 import IPv6
from scapy.layers.l2 import Dot1Q, Ether

from host_driver.ccb import CCB_ALIGN, make_ccb, write_ccb
from host_driver.driver import Flush
from host_driver.tcp import seq_diff
from hw.layouts import CCB_BYTES, EventKind, TcpFlags

__all__ = ["Handout", "HandoutError", "parse_handouts", "load_handouts", "handouts_argument",
           "ccb_from_capture", "classify", "replay_offloaded", "PATHS", "RCVMDL_MAX_BYTES"]

#: The ``path`` values of SPEC §5 this replay gives (``syn``: no SYN unit yet).
PATHS = ("slow", "fast", "frame_data", "queued", "drop")
#: The largest RCVMDL posted for one connection (the rest of a longer capture: FRAME_DATA).
RCVMDL_MAX_BYTES = 4 << 20
#: Cycles the NIC may take over one frame (or the handouts) before the replay gives up.
SETTLE_CYCLES = 200_000
#: Cycles to wait for an interrupt between two looks at the counters.
POLL_CYCLES = 64
_MSS_IPV4, _MSS_IPV6 = 1460, 1440
_TSOPT_BYTES = 12
_ENDPOINT = re.compile(r"^\s*(?:\[(?P<v6>[0-9A-Fa-f:.]+)\]|(?P<v4>[0-9.]+)):(?P<port>\d+)\s*$")


class HandoutError(ValueError):
    """A handout list that cannot be read; the message is one line for the user."""


@dataclasses.dataclass(frozen=True)
class Handout:
    """One connection to hand out, named by the frames the NIC receives on it."""
    src: ipaddress.IPv4Address | ipaddress.IPv6Address     # the remote peer
    sport: int
    dst: ipaddress.IPv4Address | ipaddress.IPv6Address     # the host
    dport: int

    @property
    def ipv6(self) -> bool:
        return self.src.version == 6

    def __str__(self):
        def end(ip, port):
            return f"[{ip}]:{port}" if ip.version == 6 else f"{ip}:{port}"
        return f"{end(self.src, self.sport)}-{end(self.dst, self.dport)}"

    def matches(self, row: dict) -> bool:
        """``row`` (a replay JSON row) is a TCP frame of this connection towards the host."""
        if row.get("l4") != "tcp" or row.get("src") is None or row.get("sport") is None:
            return False
        return (ipaddress.ip_address(row["src"]) == self.src and row["sport"] == self.sport
                and ipaddress.ip_address(row["dst"]) == self.dst and row["dport"] == self.dport)


def _endpoint(text: str, whole: str):
    m = _ENDPOINT.match(text)
    if not m:
        raise HandoutError(f"bad endpoint {text!r} in {whole!r} "
                           "(ADDRESS:PORT, IPv6 as [ADDRESS]:PORT)")
    try:
        ip = ipaddress.ip_address(m["v6"] or m["v4"])
    except ValueError:
        raise HandoutError(f"bad address in {text!r}") from None
    port = int(m["port"])
    if not 0 <= port <= 0xFFFF:
        raise HandoutError(f"bad port in {text!r}")
    return ip, port


def _handout(text: str) -> Handout:
    """``SRC:SPORT-DST:DPORT``; the ``-`` between the endpoints is the one after the first port."""
    m = re.match(r"^\s*((?:\[[^\]]*\]|[^-\[]*):\d+)\s*-\s*(.+)$", text)
    if not m:
        raise HandoutError(f"bad connection {text!r}: SRC:SPORT-DST:DPORT expected")
    (src, sport), (dst, dport) = _endpoint(m[1], text), _endpoint(m[2], text)
    if src.version != dst.version:
        raise HandoutError(f"{text!r} mixes IPv4 and IPv6")
    return Handout(src, sport, dst, dport)


def parse_handouts(text: str) -> list[Handout]:
    """The comma-separated ``SRC:SPORT-DST:DPORT`` list of ``--offload``."""
    items = [item for item in text.split(",") if item.strip()]
    if not items:
        raise HandoutError("empty handout list")
    return _unique([_handout(item) for item in items])


def load_handouts(path) -> list[Handout]:
    """A JSON handout file: a list of ``"SRC:SPORT-DST:DPORT"`` strings or of objects with
    ``src``, ``sport``, ``dst``, ``dport``."""
    try:
        items = json.loads(Path(path).read_text())
    except (OSError, ValueError) as e:
        raise HandoutError(f"{path}: {e}") from None
    if not isinstance(items, list) or not items:
        raise HandoutError(f"{path}: a non-empty JSON list of connections expected")
    out = []
    for item in items:
        if isinstance(item, str):
            out.append(_handout(item))
        elif isinstance(item, dict) and {"src", "sport", "dst", "dport"} <= item.keys():
            try:
                src, dst = ipaddress.ip_address(item["src"]), ipaddress.ip_address(item["dst"])
                sport, dport = int(item["sport"]), int(item["dport"])
            except (TypeError, ValueError):
                raise HandoutError(f"{path}: bad connection {item!r}") from None
            if src.version != dst.version or not (0 <= sport <= 0xFFFF and 0 <= dport <= 0xFFFF):
                raise HandoutError(f"{path}: bad connection {item!r}")
            out.append(Handout(src, sport, dst, dport))
        else:
            raise HandoutError(f"{path}: bad connection {item!r}")
    return _unique(out)


def handouts_argument(value: str) -> list[Handout]:
    """``--offload``'s value: a JSON file when one exists by that name, else the list itself."""
    if Path(value).is_file():
        return load_handouts(value)
    return parse_handouts(value)


def _unique(handouts: list[Handout]) -> list[Handout]:
    seen = set()
    for h in handouts:
        if h in seen:
            raise HandoutError(f"{h} is named twice")
        seen.add(h)
    return handouts


# -- The Ccb -------------------------------------------------------------------------------------

def _tcp_segments(frames, handout: Handout, towards_host: bool):
    """``(Ether, TCP)`` of the capture's frames of ``handout`` in one direction, in order."""
    ip_layer = IPv6 if handout.ipv6 else IP
    if towards_host:
        want = (handout.src, handout.sport, handout.dst, handout.dport)
    else:
        want = (handout.dst, handout.dport, handout.src, handout.sport)
    for frame in frames:
        try:
            eth = Ether(frame)
        except Exception:       # a runt or a mangled frame is no one's segment
            continue
        if ip_layer not in eth or TCP not in eth:
            continue
        ip, tcp = eth[ip_layer], eth[TCP]
        if (ipaddress.ip_address(ip.src), tcp.sport, ipaddress.ip_address(ip.dst),
                tcp.dport) == want:
            yield eth, tcp


def _option(tcp, name):
    return next((value for kind, value in tcp.options if kind == name), None)


def ccb_from_capture(frames, handout: Handout) -> tuple[dict, int] | None:
    """The Ccb the host would hand out for ``handout`` just before the capture's first frame of
    it, and the RCVMDL bytes to post (the data the capture sends on it, at most
    :data:`RCVMDL_MAX_BYTES`); None when the capture has no frame of it towards the host.

    From the first such frame: the MACs (its destination is the host's), a VLAN tag, RCV.NXT (its
    seq, + 1 on a SYN), SND.UNA = SND.NXT (its ack), the peer's window, TS.Recent. From the
    handshake when the capture has it: the MSS and window shifts; else the MSS of a 1500-byte MTU
    and no shift. The receive window covers all the capture's data, so a replay is not flushed for
    a window the capture's real host advertised but this Ccb does not know.
    """
    inbound = list(_tcp_segments(frames, handout, towards_host=True))
    if not inbound:
        return None
    eth, tcp = inbound[0]
    syn = next((t for _, t in inbound if t.flags & TcpFlags.SYN.value), None)
    syn_ack = next((t for _, t in _tcp_segments(frames, handout, towards_host=False)
                    if t.flags & TcpFlags.SYN.value), None)
    timestamps = _option(tcp, "Timestamp") is not None
    snd_wscale = rcv_wscale = 0
    if (syn is not None and syn_ack is not None and _option(syn, "WScale") is not None
            and _option(syn_ack, "WScale") is not None):
        snd_wscale, rcv_wscale = _option(syn, "WScale"), _option(syn_ack, "WScale")
    mss = _option(syn, "MSS") if syn is not None else None
    rcv_mss = (mss or (_MSS_IPV6 if handout.ipv6 else _MSS_IPV4)) - _TSOPT_BYTES * timestamps
    rcv_nxt = (tcp.seq + (1 if tcp.flags & TcpFlags.SYN.value else 0)) & 0xFFFF_FFFF
    span = max((seq_diff((t.seq + len(bytes(t.payload))) & 0xFFFF_FFFF, rcv_nxt)
                for _, t in inbound), default=0)
    mdl_bytes = min(max(span, 1), RCVMDL_MAX_BYTES)
    ack = tcp.ack if tcp.flags & TcpFlags.ACK.value else 0
    vlan = eth.getlayer(Dot1Q)
    route = {"local_mac": int(eth.dst.replace(":", ""), 16),
             "remote_mac": int(eth.src.replace(":", ""), 16),
             "vlan": int(vlan is not None),
             "vlan_tci": (vlan.prio << 13 | vlan.dei << 12 | vlan.vlan) if vlan else 0,
             "timestamps": int(timestamps), "ttl": 64, "tos": 0, "rcv_mss": rcv_mss,
             "snd_wscale": snd_wscale, "rcv_wscale": rcv_wscale,
             "iss": (ack - 1) & 0xFFFF_FFFF, "irs": (rcv_nxt - 1) & 0xFFFF_FFFF}
    ts = _option(tcp, "Timestamp")
    state = {"rcv_nxt": rcv_nxt, "rcv_buf": mdl_bytes, "rcv_unconsumed": 0,
             "rcv_adv": (rcv_nxt + mdl_bytes) & 0xFFFF_FFFF,
             "snd_una": ack, "snd_nxt": ack, "snd_wnd": tcp.window << snd_wscale,
             "snd_wl1": tcp.seq, "snd_wl2": ack, "ts_recent": ts[0] if ts else 0,
             "ts_val": ts[1] if ts else 0, "ip_id": 1}
    tuple_fields = {"remote_ip": int(handout.src), "local_ip": int(handout.dst),
                    "remote_port": handout.sport, "local_port": handout.dport,
                    "ipv6": int(handout.ipv6)}
    return make_ccb(tuple_fields, route, state), mdl_bytes


# -- The run -------------------------------------------------------------------------------------

def classify(before: dict, after: dict) -> str:
    """The path of one frame from the counters (``NicDriver.counters`` and
    ``fast_path_counters`` names, in one dict) before it went in and after the NIC finished with
    it."""
    def grew(name):
        return after[name] - before[name] > 0
    if any(grew(name) for name in after if name.startswith("rx_drop_")):
        return "drop"
    if grew("fp_fast_frames") or grew("fp_pure_acks"):
        return "fast"
    if grew("fp_frame_data"):
        return "frame_data"
    if grew("fp_queued"):
        return "queued"
    return "slow"


def accounted(c: dict) -> int:
    """Frames the NIC has finished with (SPEC §8's accounting identity, its right side)."""
    drops = sum(v for k, v in c.items() if k.startswith("rx_drop_"))
    return (c["rx_to_host"] + c["fp_fast_frames"] + c["fp_frame_data"] + c["fp_pure_acks"]
            + c["fp_queued"] + drops)


class _Recorder:
    """Takes the driver's fast-path records and keeps the FLUSHes, in order (INTERLOCKs are
    answered through ``NicDriver.wait_command``; FRAME_DATA and RCVMDL_DONE records say nothing
    the counters do not)."""

    def __init__(self):
        self.flushes: list[Flush] = []

    def __call__(self, record):
        if isinstance(record, Flush):
            self.flushes.append(record)


async def _settle(driver, peek, recorder, frames_in: int, started) -> dict:
    """Service the driver until the NIC has finished with ``frames_in`` frames, every FLUSH it
    counted was taken, and ``started(counters)`` holds; the counters then."""
    start = driver.bus.now()
    while True:
        c = peek()
        if (c["rx_frames"] == frames_in and accounted(c) == frames_in
                and c["fp_flushes"] == len(recorder.flushes) and started(c)):
            return c
        if driver.bus.now() - start > SETTLE_CYCLES:
            raise TimeoutError(f"the NIC did not settle after {SETTLE_CYCLES} cycles "
                               f"({frames_in} frames in)")
        await driver.poll(POLL_CYCLES)


async def replay_offloaded(driver, push, peek, frames, rows, handouts, *, log=None) -> dict:
    """Hand ``handouts`` out, push ``frames`` one at a time, fill ``path`` and ``conn`` in
    ``rows`` (the frames' JSON rows, in order). Returns the summary's additions: ``paths`` (count
    by path), ``flushes`` (by reason), ``handouts`` (``"SRC:SPORT-DST:DPORT" -> conn_nbr`` or the
    reason it was not handed out).

    ``driver`` is a started :class:`~host_driver.driver.NicDriver` with RX buffers posted;
    ``push(frame)`` puts a frame on MAC RX; ``peek()`` returns every counter (the driver's
    ``counters()`` and ``fast_path_counters()`` names) without using the bus; ``log(text)`` tells
    about a connection that is not handed out.
    """
    recorder = _Recorder()
    driver.on_fast_path = recorder
    offloaded: dict[Handout, int] = {}
    outcome: dict[str, int | str] = {}
    for context, handout in enumerate(handouts, start=1):
        conn_nbr = await _hand_out(driver, frames, handout, context)
        if isinstance(conn_nbr, str):
            outcome[str(handout)] = conn_nbr
            if log is not None:
                log(f"{handout}: not handed out: {conn_nbr}")
            continue
        offloaded[handout] = outcome[str(handout)] = conn_nbr
    # Every HANDOUT2 either started its connection or was refused, with a flush (bad Ccb).
    before = await _settle(driver, peek, recorder, 0,
                           lambda c: c["fp_handouts"] + len(recorder.flushes) == len(offloaded))
    paths, flush_reasons = Counter(), Counter()
    _take_flushes(recorder.flushes, offloaded, flush_reasons)
    handouts_done = before["fp_handouts"]
    for index, (frame, row) in enumerate(zip(frames, rows, strict=True)):
        owner = next((h for h in offloaded if h.matches(row)), None)
        conn_nbr = offloaded.get(owner)
        flushes_before = len(recorder.flushes)
        await push(frame)
        after = await _settle(driver, peek, recorder, index + 1,
                              lambda c: c["fp_handouts"] == handouts_done)
        path = classify(before, after)
        flushed = _take_flushes(recorder.flushes[flushes_before:], offloaded, flush_reasons)
        synthetic_l2 = row.pop("synthetic_l2", None)     # stays the last key
        row["path"] = path
        taken = path in ("fast", "frame_data", "queued")
        row["conn"] = conn_nbr if taken or (path == "slow" and conn_nbr in flushed) else None
        if synthetic_l2 is not None:
            row["synthetic_l2"] = synthetic_l2
        paths[path] += 1
        before = after
    return {"paths": dict(paths), "flushes": dict(flush_reasons), "handouts": outcome}


def _take_flushes(flushes, offloaded: dict, reasons: Counter) -> set[int]:
    """Count ``flushes`` by reason and forget their connections; their conn_nbrs."""
    gone = set()
    for flush in flushes:
        reasons[flush.reason.name] += 1
        gone.add(flush.conn_nbr)
        for handout, nbr in list(offloaded.items()):
            if nbr == flush.conn_nbr:
                del offloaded[handout]
    return gone


async def _hand_out(driver, frames, handout: Handout, context: int) -> int | str:
    """HANDOUT1, INTERLOCK, HANDOUT2 and one RCVMDL for ``handout``: its conn_nbr, or why not."""
    built = ccb_from_capture(frames, handout)
    if built is None:
        return "no frame of it in the capture"
    ccb, mdl_bytes = built
    memory = driver.memory
    ccb_addr = memory.alloc(CCB_BYTES, CCB_ALIGN)
    write_ccb(memory, ccb_addr, ccb)
    answer = await driver.wait_command(await driver.handout1(ccb_addr, context))
    if answer["kind"] != EventKind.INTERLOCK.value:
        return f"HANDOUT1 refused (code {answer['code']})"
    conn_nbr = answer["detail"]
    await driver.handout2(conn_nbr, ccb_addr)
    buffer = memory.alloc(mdl_bytes, 16)
    await driver.rcvmdl(conn_nbr, 0x8000 | conn_nbr, [(buffer, mdl_bytes)], push=False)
    return conn_nbr


#: NicDriver.start options of an offloaded replay: room for a FLUSH's frames and the handouts'
#: commands.
DRIVER_START = {"command_log2": 6, "event_log2": 10}


def replay_on_model(frames, handouts, *, rss_key=None) -> tuple[list[dict], dict]:
    """The same replay on the NIC model (:mod:`sim.reference.nic_model`), rows from the
    reference status (:func:`sim.reference.rx_status.expected_status`, hashes under ``rss_key``;
    the fast path's lookups do not use it): what the RTL's rows and summary must be."""
    import asyncio

    from host_driver.driver import NicDriver
    from host_driver.memory import HostMemory
    from hw import params
    from sim.reference.nic_model import ModelBus, NicModel
    from sim.reference.rx_status import expected_status

    key = rss_key or params.MS_RSS_KEY
    rows = [expected_status(frame, index, key) for index, frame in enumerate(frames)]
    model = NicModel(HostMemory(1 << 25))
    driver = NicDriver(ModelBus(model))

    def peek():
        return {**model.counters(), **model.fast_path_counters()}

    async def push(frame):
        model.receive_frame(frame)

    async def main():
        await driver.start(**DRIVER_START)
        return await replay_offloaded(driver, push, peek, frames, rows, handouts)

    return rows, asyncio.run(main())
