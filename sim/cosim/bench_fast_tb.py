"""cocotb side of ``inic bench``'s fast-path figures: the whole NIC (``inic_nic``) with the driver
handing connections out through the real commands (HANDOUT1 → INTERLOCK → HANDOUT2, RCVMDL,
FLUSH: host_driver/driver.py, a Ccb built with host_driver/ccb.py).

Two cocotb tests, each on a freshly reset NIC:

- ``bench_fast_path``, the PCI model at its defaults (as the slow-path bench): for each traffic
  class one connection is handed out, one RCVMDL big enough for the whole run is posted before the
  first segment (placement never waits for the host), then the MAC sends ``frames`` in-order
  segments at 10GbE wire spacing (each frame takes its bytes + 24, at 8 bytes a clock), flags ACK
  only. Then the connection is flushed. Figures:

  - ``placed``: ``fp_fast_frames`` (segments placed into the RCVMDL); ``dropped``: every other
    frame (``frames - placed``: rx_drop_*, slow path, FRAME_DATA, still queued);
  - ``cycles_per_frame``: from the first segment's placement done to the last one's (the B
    handshake of the DMA write that carried its last payload byte, as the slow-path bench takes
    its events' writes), over ``placed - 1``;
  - ``dma_bytes_per_payload_byte``: bytes the NIC wrote to host memory (every DMA write whose
    address phase fell between the first frame offered and the last placement done: placement,
    events, RX buffers) over the payload bytes offered;
  - ``acks_per_segment``: ``fp_acks_sent`` over the segments offered.

  The connection's ``rcv_mss`` is the segments' payload for 576 and 1514 (a bulk sender sends
  full-sized segments: an ACK every second one), 1460 for the 6-byte segments (small messages:
  the delayed-ACK timer); its window (``rcv_buf``, window scale 7) covers the whole run.

- ``bench_handout``: the handout's own latencies with the link's latencies set to 0
  (``LinkConfig(read_latency=0, write_latency=0)``, the bandwidth as by default), from the clock
  the command unit takes the command from the COMMAND ring fetcher (``command_unit.commands``
  valid and ready: the command ring's read is not counted either) to the B handshake of the DMA
  write that finished what is measured:

  - ``interlock_cycles``: HANDOUT1 taken → the INTERLOCK event written;
  - ``first_byte_cycles``: HANDOUT2 taken → the first payload byte of a segment placed into the
    RCVMDL, the segment starting on MAC RX at the clock HANDOUT2 is taken (the RCVMDL is posted
    right behind HANDOUT2, as host_driver/offload.py does; the command unit passes it on once
    HANDOUT2 is answered);
  - ``waiting_first_byte_cycles``: the same for a segment that arrived while the connection was
    PENDING: HANDOUT2 drains the queue before the RCVMDL is taken, so that segment is shown with
    FRAME_DATA (written whole into an RX buffer), not placed;
  - ``flush_cycles``: FLUSH taken → the FLUSH event written (the Ccb written back before it);
  - ``segment_arrival_cycles``: for ``first_byte_cycles``' segment, HANDOUT2 taken → the receive
    engine takes the segment (its own way in: the wire, the sequencer, the packet buffer, the CCB
    table's lookup). The engine is done with HANDOUT2 and the RCVMDL before that.

  The first of two handouts (the segment arriving) gives the interlock and flush figures.

Each result is appended to the JSON-lines file ``INIC_BENCH_OUT`` as ``{"fast_path": row}`` or
``{"handout": figures}``; ``INIC_BENCH_FRAMES`` (JSON) maps each traffic class to its frame count.
"""

import ipaddress
import json
import os
from bisect import bisect_left
from itertools import accumulate

import cocotb
from cocotb.triggers import ClockCycles, RisingEdge
from scapy.layers.inet import IP, TCP
from scapy.layers.l2 import Ether

from host_driver.ccb import CCB_ALIGN, make_ccb, write_ccb
from host_driver.driver import DriverError, NicDriver
from host_driver.driver import Flush as FlushRecord
from hw.layouts import (
    CCB_BYTES,
    Command,
    CommandOpcode,
    Event,
    EventCode,
    EventKind,
    RingEntry,
    unpack,
)
from hw.params import RING_ENTRY_BYTES

from .bench_slow_tb import MODERATION
from .nic_tb import NicTb
from .pci import LinkConfig

__all__ = ["TRAFFIC", "FAST_KEYS", "HANDOUT_KEYS", "ENV_OUT", "ENV_FRAMES"]

ENV_OUT = "INIC_BENCH_OUT"
ENV_FRAMES = "INIC_BENCH_FRAMES"

#: Payload bytes of a segment of each traffic class (the frame less 54 bytes of Ethernet, IPv4
#: and TCP headers, no options).
TRAFFIC = {"60": 6, "576": 522, "1514": 1460}
FAST_KEYS = ["traffic", "spacing", "frames", "placed", "dropped", "cycles_per_frame",
             "dma_bytes_per_payload_byte", "acks_per_segment", "lost", "to_rx_buffers"]
HANDOUT_KEYS = ["interlock_cycles", "first_byte_cycles", "flush_cycles",
                "waiting_first_byte_cycles", "segment_arrival_cycles"]

NIC_MAC, PEER_MAC = "02:00:00:00:00:01", "02:00:00:00:00:02"
NIC_IP, PEER_IP = "10.1.0.1", "10.1.0.2"
ISS, IRS = 5000, 1000           # the host's and the peer's initial sequence numbers
RCV_WSCALE = 7
#: Window granted: more than any run sends, so only the NIC can hold the peer back.
RCV_BUF = 1 << 22
#: Clocks between the driver's start and the first handout measured.
SETTLE_CYCLES = 2000
#: ``rcv_mss`` for classes whose segments are not full-sized (the small-message traffic).
DEFAULT_MSS = 1460


class Connection:
    """One connection as the wire sees it (the peer's next sequence number, its segments) and the
    Ccb the host hands out for it; ``n`` makes the tuple unique."""

    def __init__(self, n: int, rcv_mss: int):
        self.sport, self.dport = 40000 + n, 80
        self.rcv_mss = rcv_mss
        self.seq = IRS + 1
        self.ccb_addr = None
        self.conn_nbr = None
        self.handout2_tag = None

    def ccb(self) -> dict:
        rcv_nxt = IRS + 1
        return make_ccb(
            {"remote_ip": int(ipaddress.ip_address(PEER_IP)),
             "local_ip": int(ipaddress.ip_address(NIC_IP)), "remote_port": self.sport,
             "local_port": self.dport, "ipv6": 0},
            {"local_mac": _mac(NIC_MAC), "remote_mac": _mac(PEER_MAC), "ttl": 64, "tos": 0,
             "rcv_mss": self.rcv_mss, "snd_wscale": 0, "rcv_wscale": RCV_WSCALE, "iss": ISS,
             "irs": IRS, "timestamps": 0, "vlan": 0, "vlan_tci": 0},
            {"rcv_nxt": rcv_nxt, "rcv_buf": RCV_BUF,
             "rcv_adv": rcv_nxt + min(RCV_BUF, 0xFFFF << RCV_WSCALE),
             "snd_una": ISS + 1, "snd_nxt": ISS + 1, "snd_wnd": 65535, "snd_wl1": rcv_nxt,
             "snd_wl2": ISS + 1, "ts_recent": 0, "ts_val": 0, "ip_id": 1})

    def segment(self, payload: bytes) -> bytes:
        """The next in-order segment from the peer carrying ``payload`` (flags ACK)."""
        frame = (Ether(src=PEER_MAC, dst=NIC_MAC) / IP(src=PEER_IP, dst=NIC_IP)
                 / TCP(sport=self.sport, dport=self.dport, seq=self.seq, ack=ISS + 1, flags="A",
                       window=65535) / payload)
        self.seq += len(payload)
        return bytes(frame)


def _mac(text: str) -> int:
    return int(text.replace(":", ""), 16)


def _payload(n: int, seed: int) -> bytes:
    """``n`` bytes that differ from segment to segment (so misplaced bytes show)."""
    return bytes((seed * 131 + i * 7) & 0xFF for i in range(n))


async def _answer(driver: NicDriver, tag: int) -> dict:
    return await driver.wait_command(tag, max_cycles=50_000)


async def _handout(tb: NicTb, driver: NicDriver, conn: Connection, host_context: int,
                   after_interlock=None) -> None:
    """HANDOUT1, wait for the INTERLOCK, ``await after_interlock()`` if given, HANDOUT2; the
    HANDOUT2's COMMAND_DONE is awaited by the caller through ``conn.handout2_tag``."""
    conn.ccb_addr = tb.memory.alloc(CCB_BYTES, CCB_ALIGN)
    write_ccb(tb.memory, conn.ccb_addr, conn.ccb())
    interlock = await _answer(driver, await driver.handout1(conn.ccb_addr, host_context))
    if interlock["kind"] != EventKind.INTERLOCK.value:
        raise DriverError(f"HANDOUT1 answered {interlock}")
    conn.conn_nbr = interlock["detail"]
    if after_interlock is not None:
        await after_interlock()
    conn.handout2_tag = await driver.handout2(conn.conn_nbr, conn.ccb_addr)


async def _check_ok(driver: NicDriver, tag: int, what: str) -> None:
    done = await _answer(driver, tag)
    if done["code"] != EventCode.OK.value:
        raise DriverError(f"{what} answered {done}")


async def _flush(driver: NicDriver, conn: Connection) -> FlushRecord:
    """FLUSH the connection and wait for its FLUSH record."""
    await driver.flush(conn.conn_nbr)
    for _ in range(200):
        await driver.poll(250)
        for record in driver.fast_path_events:
            if isinstance(record, FlushRecord) and record.conn_nbr == conn.conn_nbr:
                driver.fast_path_events.clear()
                return record
    raise DriverError(f"no FLUSH for connection {conn.conn_nbr}")


def _counter_deltas(before: dict, after: dict) -> dict:
    return {k: after[k] - before[k] for k in after}


async def _all_counters(driver: NicDriver) -> dict:
    return {**await driver.counters(), **await driver.fast_path_counters()}


def _placement_done(writes, placed_bytes: int, ends: list[int]) -> list[int]:
    """The B-handshake cycle of the write that carried each payload end ``ends[k]`` (bytes placed
    up to and including a segment's last one), from the RCVMDL buffer's ``writes`` in issue order.

    Placement fills the buffer in order from its start, so each write carries the strobed bytes
    that follow the previous write's (a write's address is beat-aligned: it does not say where
    its bytes begin)."""
    carried = list(accumulate(t.bytes for t in writes))
    if not carried or carried[-1] != placed_bytes:
        raise AssertionError(f"writes into the RCVMDL carry {carried[-1:]} bytes, "
                             f"{placed_bytes} placed")
    return [writes[bisect_left(carried, end)].done for end in ends]


async def _fast_row(tb: NicTb, driver: NicDriver, n: int, traffic: str, count: int) -> dict:
    """One traffic class (see the module docstring)."""
    size = TRAFFIC[traffic]
    conn = Connection(n, size if size >= 500 else DEFAULT_MSS)
    await _handout(tb, driver, conn, host_context=0x100 + n)
    await _check_ok(driver, conn.handout2_tag, "HANDOUT2")
    payloads = [_payload(size, k) for k in range(count)]
    total = size * count
    # One RCVMDL (one at a time per connection) with room to spare: it never completes here.
    buffer = tb.memory.alloc(total + size, 4096)
    await driver.rcvmdl(conn.conn_nbr, 0x40 + n, [(buffer, total + size)])
    frames = [conn.segment(p) for p in payloads]
    await ClockCycles(tb.dut.clk, 200)      # the RCVMDL's list read, behind its doorbell
    before = await _all_counters(driver)
    seen = len(tb.bus.dma.transactions)
    tb.mac.wire_spacing = True
    offer_start = tb.mac.cycle
    for frame in frames:
        tb.mac.send(frame)
    while not tb.mac.idle:
        await ClockCycles(tb.dut.clk, 64)
    while True:
        await driver.poll(500)
        delta = _counter_deltas(before, await _all_counters(driver))
        drops = sum(v for k, v in delta.items() if k.startswith("rx_drop_"))
        accounted = (delta["rx_to_host"] + delta["fp_fast_frames"] + delta["fp_frame_data"]
                     + delta["fp_pure_acks"] + delta["fp_queued"] + drops)
        if accounted >= count:
            break
    # Counted at the decision: let the last writes complete.
    while any(t.done is None for t in tb.bus.dma.transactions[seen:]):
        await ClockCycles(tb.dut.clk, 16)
    end = tb.cycle
    placed = delta["fp_fast_frames"]
    placed_bytes = delta["fp_fast_bytes"]
    if tb.memory.read(buffer, placed_bytes) != b"".join(payloads)[:placed_bytes]:
        raise AssertionError(f"{traffic}: the placed bytes are not the segments' payload")
    writes = [t for t in tb.bus.dma.transactions[seen:] if t.kind == "write"]
    into_buffer = [t for t in writes if buffer <= t.addr < buffer + total + size]
    done = _placement_done(into_buffer, placed_bytes,
                           [size * (k + 1) for k in range(placed)]) if placed else [0]
    first, last = done[0], done[-1]
    dma_bytes = sum(t.bytes for t in writes if offer_start <= t.cycle <= end)
    tb.mac.wire_spacing = False
    tb.dut._log.info("fast path %s: counters %s", traffic,
                     {k: v for k, v in delta.items() if v})
    await _flush(driver, conn)
    return {"traffic": traffic, "spacing": "wire", "frames": count, "placed": placed,
            "dropped": count - placed,
            "cycles_per_frame": round((last - first) / max(placed - 1, 1), 2),
            "dma_bytes_per_payload_byte": round(dma_bytes / total, 3),
            "acks_per_segment": round(delta["fp_acks_sent"] / count, 3),
            "lost": drops, "to_rx_buffers": delta["rx_to_host"] + delta["fp_frame_data"]}


async def _start(dut, link: LinkConfig | None = None) -> tuple[NicTb, NicDriver]:
    tb = NicTb(dut, link)
    await tb.reset()
    driver = NicDriver(tb.bus)
    await driver.start(command_log2=6, event_log2=10, **MODERATION)
    return tb, driver


def _write(key: str, value) -> None:
    with open(os.environ[ENV_OUT], "a") as out:
        out.write(json.dumps({key: value}) + "\n")


@cocotb.test()
async def bench_fast_path(dut):
    counts = json.loads(os.environ[ENV_FRAMES])
    tb, driver = await _start(dut)
    for n, traffic in enumerate(TRAFFIC):
        row = await _fast_row(tb, driver, n, traffic, counts[traffic])
        _write("fast_path", {key: row[key] for key in FAST_KEYS})


class CommandTakes:
    """The clock of every command the command unit takes from the COMMAND ring fetcher
    (``command_unit.commands`` valid and ready at a rising edge), by opcode, in the DMA model's
    clock (``tb.cycle``); ``on_take[opcode]()`` is called at that clock if set. Also the clock of
    every frame the receive engine takes (``frames``)."""

    def __init__(self, tb: NicTb):
        self.tb = tb
        self.taken: list[tuple[int, CommandOpcode]] = []
        self.frames: list[int] = []     # the clocks the receive engine took a frame
        self.on_take: dict = {}
        self._task = cocotb.start_soon(self._watch())

    async def _watch(self):
        unit = self.tb.dut.command_unit
        edge = RisingEdge(self.tb.dut.clk)
        while True:
            await edge
            engine = self.tb.dut.receive_engine
            if int(engine.frames__valid.value) and int(engine.frames__ready.value):
                self.frames.append(self.tb.cycle)
            if int(unit.commands__valid.value) and int(unit.commands__ready.value):
                entry = unpack(RingEntry, int(unit.commands__payload.value))
                opcode = CommandOpcode(int(unpack(Command, int(entry.entry)).opcode))
                self.taken.append((self.tb.cycle, opcode))
                if opcode in self.on_take:
                    self.on_take.pop(opcode)()

    def last(self, opcode: CommandOpcode) -> int:
        return max(cycle for cycle, op in self.taken if op is opcode)

    def stop(self):
        self._task.cancel()


def _event_written(tb: NicTb, driver: NicDriver, kind: EventKind, after: int) -> int:
    """The B-handshake cycle of the first event-ring write from ``after`` on holding an event of
    ``kind`` (read back from host memory)."""
    start, end = driver.ring_span("EVENT")
    for t in tb.bus.dma.transactions:
        if t.kind != "write" or t.cycle < after or not start <= t.addr < end:
            continue
        for slot in range(t.addr, t.addr + t.bytes, RING_ENTRY_BYTES):
            raw = tb.memory.read(slot, RING_ENTRY_BYTES)
            if unpack(Event, int.from_bytes(raw, "little")).kind == kind.value:
                return t.done
    raise AssertionError(f"no {kind.name} event written after cycle {after}")


def _first_payload_write(tb: NicTb, payload: bytes, after: int, within=None) -> int:
    """The B-handshake cycle of the first DMA write from ``after`` on that wrote the first bytes
    of ``payload`` (read back from host memory; ``within``: only into ``(start, end)``)."""
    head = payload[:8]
    for t in tb.bus.dma.transactions:
        if t.kind != "write" or t.cycle < after:
            continue
        if within is not None and not within[0] <= t.addr < within[1]:
            continue
        if head in tb.memory.read(t.addr, t.bytes):
            return t.done
    raise AssertionError(f"no write of the payload after cycle {after}")


async def _handout_latency(tb: NicTb, driver: NicDriver, takes: CommandTakes, n: int,
                           waiting: bool) -> dict:
    """Hand out a connection with a segment waiting (queued while PENDING) or arriving as
    HANDOUT2 is taken, the RCVMDL right behind HANDOUT2; flush it. The latencies from each
    command's take (see the module docstring)."""
    conn = Connection(n, DEFAULT_MSS)
    data = _payload(64, 17 + n)
    buffer = tb.memory.alloc(4096, 4096)
    segment = conn.segment(data)

    async def segment_waiting():
        tb.mac.send(segment)
        while not tb.mac.idle:
            await ClockCycles(tb.dut.clk, 8)
        await ClockCycles(tb.dut.clk, 100)

    if not waiting:
        takes.on_take[CommandOpcode.HANDOUT2] = lambda: tb.mac.send(segment)
    await _handout(tb, driver, conn, host_context=0x70 + n,
                   after_interlock=segment_waiting if waiting else None)
    await driver.rcvmdl(conn.conn_nbr, 0x50 + n, [(buffer, 4096)])
    await _check_ok(driver, conn.handout2_tag, "HANDOUT2")
    await ClockCycles(tb.dut.clk, 300)
    await driver.service()
    handout1, handout2 = takes.last(CommandOpcode.HANDOUT1), takes.last(CommandOpcode.HANDOUT2)
    placed = tb.memory.read(buffer, len(data)) == data
    tb.dut._log.info("commands taken (clock after HANDOUT2's): %s",
                     [(op.name, cycle - handout2) for cycle, op in takes.taken])
    await _flush(driver, conn)
    flush = takes.last(CommandOpcode.FLUSH)
    return {"interlock_cycles": _event_written(tb, driver, EventKind.INTERLOCK, handout1)
            - handout1,
            "first_byte_cycles": _first_payload_write(
                tb, data, handout2, None if waiting else (buffer, buffer + 4096)) - handout2,
            "flush_cycles": _event_written(tb, driver, EventKind.FLUSH, flush) - flush,
            "arrival_cycles": (None if waiting
                               else min(t for t in takes.frames if t >= handout2) - handout2),
            "placed": placed}


@cocotb.test()
async def bench_handout(dut):
    tb, driver = await _start(dut, LinkConfig(read_latency=0, write_latency=0))
    # Let the RX ring fetcher read the descriptors just posted: their reads would share the DMA
    # read channel with the handout's.
    await ClockCycles(tb.dut.clk, SETTLE_CYCLES)
    takes = CommandTakes(tb)
    arriving = await _handout_latency(tb, driver, takes, 0, waiting=False)
    waiting = await _handout_latency(tb, driver, takes, 1, waiting=True)
    takes.stop()
    dut._log.info("handout: segment arriving %s, waiting %s", arriving, waiting)
    if not arriving["placed"]:
        raise AssertionError("the segment arriving at HANDOUT2 was not placed")
    _write("handout", {"interlock_cycles": arriving["interlock_cycles"],
                       "first_byte_cycles": arriving["first_byte_cycles"],
                       "flush_cycles": arriving["flush_cycles"],
                       "waiting_first_byte_cycles": waiting["first_byte_cycles"],
                       "segment_arrival_cycles": arriving["arrival_cycles"]})
