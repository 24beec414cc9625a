"""The receive engine (hw/fast_path/engine.py) against the golden model's fast path
(sim/reference/fast_path.py), step by step.

The harness is the dispatcher, a CCB table and the engine, as the NIC wires them, with host
memory behind the engine's DMA ports (tests/unit/dma_model.py). Each step is one command or one
frame, given to the RTL and then to the model (the model is untimed: the RTL is let settle before
the next step). Everything each side produced is compared, stream by stream: the RX writer's jobs
(frames to the slow path, FRAME_DATA, events), the host-memory writes (payload placements and Ccb
write-backs), the answers that become COMMAND_DONE events, the ACK frames, the claims released.
"""

import random

import pytest
from amaranth import Elaboratable, Module
from amaranth.lib import data, wiring
from scapy.layers.inet import IP, TCP
from scapy.layers.inet6 import IPv6
from scapy.layers.l2 import Ether

from host_driver.ccb import ccb_bytes, make_ccb
from hw.ccb.table import CcbTable
from hw.dispatch.dispatcher import Dispatcher
from hw.fast_path.engine import ReceiveEngine
from hw.layouts import (
    CCB_ALIGN,
    CCB_BYTES,
    AckRequest,
    Command,
    CommandOpcode,
    EventKind,
    FlushReason,
    RxJobKind,
    RxStagedFrame,
    RxSummary,
    pack,
    unpack,
)
from sim.reference.fast_path import FastPath, Frame, ack_frame
from sim.reference.rx_status import expected_fields

from .amaranth_sim import run_testbenches
from .dma_model import ReadServer, WriteServer

CONNECTIONS = 16
BEAT = 16                       # the NIC's DMA width (params.DMA_DATA_BITS) in bytes
CCB_REGION = 0x10000            # Ccbs and RCVMDL lists live here; payload buffers above
BUFFERS = 0x40000
MEMORY = 0x80000
LOCAL_MAC, REMOTE_MAC = 0x020000000001, 0x020000000002
_SUMMARY_NAMES = [name for name, _ in data.Layout.cast(RxSummary)]


class _Harness(Elaboratable):
    def __init__(self, delayed_ack_cycles, connections=CONNECTIONS, data_bits=8 * BEAT):
        self.dispatcher = Dispatcher()
        self.table = CcbTable(connections)
        self.engine = ReceiveEngine(connections, delayed_ack_cycles=delayed_ack_cycles,
                                    data_bits=data_bits)

    def elaborate(self, platform):
        m = Module()
        m.submodules.dispatcher = d = self.dispatcher
        m.submodules.table = t = self.table
        m.submodules.engine = e = self.engine
        wiring.connect(m, d.lookup, t.lookup)
        wiring.connect(m, t.result, d.result)
        wiring.connect(m, d.o, e.frames)
        wiring.connect(m, e.table_command, t.command)
        wiring.connect(m, t.response, e.table_response)
        m.d.comb += e.frames_in.eq(d.frames_in)
        return m


class _ModelNic:
    """What :class:`FastPath` asks of its NIC, recorded as the RTL's outputs are."""

    def __init__(self, memory):
        self.memory = memory
        self.cycle = 0
        self.jobs, self.writes, self.answers, self.acks = [], [], [], []
        self.released = 0

    def dma_read(self, addr, n):
        return bytes(self.memory[addr:addr + n]), False

    def dma_write(self, addr, payload):
        self.writes.append((addr, bytes(payload)))
        return None

    def post_rx_event(self, **fields):
        if fields["kind"] == EventKind.COMMAND_DONE.value:
            self.answers.append(fields["code"])
        else:
            self.jobs.append(("EVENT", fields["kind"], fields.get("index", 0),
                              fields.get("length", 0), fields["code"], fields.get("tag", 0),
                              fields.get("detail", 0)))

    def to_slow_path(self, frame):
        self.jobs.append(("SLOW", frame.nbr))

    def to_host(self, frame, kind, tag, detail):
        self.jobs.append(("FRAME_DATA", frame.nbr, detail))

    def release(self, frame):
        self.released += 1

    def send_frame(self, frame):
        self.acks.append(bytes(frame))

    def _count(self, name, n=1):
        pass


class _Bench:
    """Drives both sides; the RTL's outputs are gathered by the monitor processes."""

    def __init__(self, seed, delayed_ack_cycles=1 << 30, connections=CONNECTIONS, memory=MEMORY,
                 beat=BEAT):
        self.rng = random.Random(seed)
        self.connections = connections
        self.beat = beat                # bytes of a DMA beat
        self.memory = bytearray(memory)
        self.harness = _Harness(delayed_ack_cycles, connections, 8 * beat)
        self.model_nic = _ModelNic(self.memory)
        self.model = FastPath(self.model_nic, connections)
        self.rtl = {"jobs": [], "writes": [], "answers": [], "acks": [], "released": 0,
                    "freed": []}
        self.frames = {}            # frame number -> bytes
        self.nbr = 0
        self.steps = []             # ("command", fields) / ("frame", bytes)
        self.ccb_next = CCB_REGION
        self.buffer_next = BUFFERS

    # -- Stimulus --------------------------------------------------------------------------------

    def _out(self):
        return self.steps_out if getattr(self, "steps_out", None) is not None else self.steps

    def command(self, opcode, *, arg=0, addr=0, tag=0):
        self._out().append(("burst", [{"opcode": opcode.value, "ring": 0, "tag": tag,
                                        "arg": arg, "addr": addr}]))

    def dynamic(self, choose):
        """A step chosen when it runs: ``choose(bench)`` appends steps to a fresh list."""
        def expand(bench):
            saved, bench.steps_out = getattr(bench, "steps_out", None), []
            choose(bench)
            out, bench.steps_out = bench.steps_out, saved
            return out
        self.steps.append(("dynamic", expand))

    def last_conn(self):
        """The conn_nbr of the model's last INTERLOCK."""
        return next(job[6] for job in reversed(self.model_nic.jobs)
                    if job[0] == "EVENT" and job[1] == EventKind.INTERLOCK.value)

    def frame(self, frame):
        self._out().append(("frames", [bytes(frame)]))

    def burst(self, *commands):
        """Commands back to back, each offered as soon as the last was taken (``commands``:
        ``(opcode, fields)`` pairs)."""
        self._out().append(("burst", [{"opcode": opcode.value, "ring": 0, "tag": 0, "arg": 0,
                                       "addr": 0, **fields} for opcode, fields in commands]))

    def pressure(self, nbr):
        """The packet buffer runs short with frame ``nbr`` the oldest in it (for a while)."""
        self._out().append(("pressure", nbr))

    def frames_burst(self, frames):
        """Frames back to back into the dispatcher, the RTL let settle after the last only."""
        self._out().append(("frames", [bytes(frame) for frame in frames]))

    def race(self, opcode, frame, *, arg=0, addr=0, tag=0):
        """A command and a frame offered in the same clock: the engine takes the command first,
        the dispatcher looks the frame up meanwhile (before the command changes the table), so
        the frame counts as earlier than the command (the model takes it first)."""
        self._out().append(("race", ({"opcode": opcode.value, "ring": 0, "tag": tag,
                                      "arg": arg, "addr": addr}, bytes(frame))))

    def ccb(self, **fields):
        """A Ccb in host memory; its address."""
        addr = self.ccb_next
        self.ccb_next += -(-CCB_BYTES // CCB_ALIGN) * CCB_ALIGN
        self.memory[addr:addr + CCB_BYTES] = ccb_bytes(
            make_ccb(fields["tuple"], fields["route"], fields["tcp"]))
        return addr

    def mdl(self, lengths):
        """An RCVMDL list in host memory for buffers of ``lengths``: (list address, buffers)."""
        addr = self.ccb_next
        self.ccb_next += -(-16 * len(lengths) // CCB_ALIGN) * CCB_ALIGN
        buffers = []
        for k, length in enumerate(lengths):
            buffer = self.buffer_next + self.rng.randrange(16)
            self.buffer_next += length + 64
            buffers.append((buffer, length))
            entry = buffer.to_bytes(8, "little") + length.to_bytes(4, "little") + bytes(4)
            self.memory[addr + 16 * k:addr + 16 * k + 16] = entry
        return addr, buffers

    # -- Run ---------------------------------------------------------------------------------

    def run(self):
        h = self.harness
        e, d = h.engine, h.dispatcher
        reads = ReadServer(e.dma_read, self.memory, self.beat, seed=1, latency=(2, 10))
        writes = WriteServer(e.dma_write, self.memory, self.beat, seed=2, latency=(2, 10))
        done = {"steps": False}

        async def driver(ctx):
            ctx.set(e.answers.ready, 1)
            for _ in range(80):                 # the table clears itself after reset
                await ctx.tick()
            index = 0
            while index < len(self.steps):
                kind, value = self.steps[index]
                if kind == "dynamic":       # steps chosen from the model's state now
                    self.steps[index:index + 1] = value(self)
                    continue
                index += 1
                if kind == "frames":
                    received = []
                    for frame in value:
                        received.append(self._stage(ctx, frame))
                        await ctx.tick().until(d.frames.ready)
                        ctx.set(d.frames.valid, 0)
                    await self._settle(ctx, 20)
                    for frame in received:
                        self.model.receive(frame)
                elif kind == "pressure":
                    ctx.set(e.buffer_oldest, value % 64)
                    ctx.set(e.buffer_short, 1)
                    await self._settle(ctx, 20)
                    ctx.set(e.buffer_short, 0)
                    oldest = self.model.oldest_queued()
                    if oldest is not None and oldest[0] == value:
                        self.model.flush_for_space(oldest[1])
                elif kind == "burst":
                    taken = []
                    for fields in value:
                        taken.append(self._offer(ctx, fields, index))
                        await ctx.tick().until(e.commands.ready)
                        ctx.set(e.commands.valid, 0)
                    await self._settle(ctx, 20)
                    for payload in taken:
                        self.model.command(index, unpack(Command, payload))
                else:   # "race"
                    fields, frame = value
                    payload = self._offer(ctx, fields, index)
                    received = self._stage(ctx, frame)
                    command_taken = frame_taken = False
                    while not (command_taken and frame_taken):
                        _, _, command_ready, frame_ready = await ctx.tick().sample(
                            e.commands.ready, d.frames.ready)
                        if command_ready:
                            ctx.set(e.commands.valid, 0)
                            command_taken = True
                        if frame_ready:
                            ctx.set(d.frames.valid, 0)
                            frame_taken = True
                    await self._settle(ctx, 20)
                    self.model.receive(received)
                    self.model.command(index, unpack(Command, payload))
            done["steps"] = True

        async def monitor(ctx):
            ctx.set(e.jobs.ready, 1)
            ctx.set(e.acks.ready, 1)
            while True:
                (_, _, job_valid, job, ack_valid, ack, ans_valid, ans, release,
                 free_valid, free) = await ctx.tick().sample(
                    e.jobs.valid, e.jobs.payload, e.acks.valid, e.acks.payload,
                    e.answers.valid, e.answers.payload, e.release, e.free.valid, e.free.payload)
                if job_valid:
                    self._rtl_job(job)
                if ack_valid:
                    fields = {name: int(getattr(ack, name))
                              for name, _ in data.Layout.cast(AckRequest)}
                    self.rtl["acks"].append(ack_frame(fields))
                if ans_valid and ans.event:
                    self.rtl["answers"].append(int(ans.code))
                self.rtl["released"] += release
                if free_valid:
                    self.rtl["freed"].append(int(free))

        run_testbenches(h, driver, processes=[monitor, reads.run, writes.run])
        self.dma_writes = writes
        return self

    def _offer(self, ctx, fields, index):
        """Offer a command to the engine (``valid`` set; ``arg`` may be a callable of the bench,
        resolved now); its packed :class:`Command` for the model."""
        fields = {**fields, "arg": fields["arg"](self) if callable(fields["arg"])
                  else fields["arg"]}
        ctx.set(self.harness.engine.commands.payload, {
            "opcode": fields["opcode"], "index": index, "tag": fields["tag"],
            "arg": fields["arg"], "addr": fields["addr"]})
        ctx.set(self.harness.engine.commands.valid, 1)
        return pack(Command, fields)

    def _stage(self, ctx, frame):
        """Offer the next frame to the dispatcher (``valid`` set); the model's :class:`Frame`."""
        self.nbr += 1
        self.frames[self.nbr] = frame
        status = expected_fields(frame)
        d = self.harness.dispatcher
        ctx.set(d.frames.payload.as_value(), _staged(status, self.nbr, self.beat))
        ctx.set(d.frames.valid, 1)
        return Frame(frame, status, b"", self.nbr)

    async def _settle(self, ctx, cycles):
        """Let the RTL finish the step: the engine idle for a few clocks in a row (at least
        ``cycles`` clocks; the dispatcher's pipeline is in them)."""
        quiet = 0
        for _ in range(cycles):
            await ctx.tick()
        while quiet < 40:
            _, _, idle = await ctx.tick().sample(self.harness.engine.idle)
            quiet = quiet + 1 if idle else 0

    def _rtl_job(self, job):
        kind = job.kind
        if kind != RxJobKind.EVENT:
            slot = int(job.frame.slot)
            nbr = next(n for n in sorted(self.frames, reverse=True) if n % 64 == slot)
        if kind == RxJobKind.SLOW:
            self.rtl["jobs"].append(("SLOW", nbr))
        elif kind == RxJobKind.FRAME_DATA:
            self.rtl["jobs"].append(("FRAME_DATA", nbr, int(job.conn_nbr)))
        elif kind == RxJobKind.PLACE:
            offset, length = int(job.offset), int(job.length)
            self.rtl["writes"].append((int(job.addr), self.frames[nbr][offset:offset + length]))
        else:
            ev = job.event
            self.rtl["jobs"].append(("EVENT", int(ev.kind), int(ev.index), int(ev.length),
                                     int(ev.code), int(ev.tag), int(ev.detail)))

    def check(self):
        m = self.model_nic
        rtl_writes = self.rtl["writes"] + [
            (addr, bytes(self.memory[addr:addr + beats * self.beat]))
            for addr, beats in self.dma_writes.requests]
        assert self.rtl["jobs"] == m.jobs
        assert self.rtl["answers"] == m.answers
        assert self.rtl["acks"] == m.acks
        assert sorted(w[0] for w in rtl_writes) == sorted(w[0] for w in m.writes)
        model_writes = dict(m.writes)
        for addr, payload in self.rtl["writes"]:
            assert payload == model_writes[addr], hex(addr)
        for addr, _ in self.dma_writes.requests:
            assert bytes(self.memory[addr:addr + CCB_BYTES]) == model_writes[addr]
        assert self.rtl["released"] == m.released


def _staged(status, nbr, beat):
    """The packet buffer's record of a frame: its summary, TCP fields, words, start, slot."""
    summary = {name: status.get(name, 0) for name in _SUMMARY_NAMES if name != "reserved"}
    summary["length"] &= 0xFFFF
    return pack(RxStagedFrame, {
        "summary": summary,
        "tcp": {name: status.get(name, 0) for name in ("src", "dst", "seq", "ack", "window")},
        "words": max(1, -(-status["length"] // beat)), "start": 0, "slot": nbr % 64,
    })


def _segment(seq, payload=b"", flags="A", ack=5000, window=1000, sport=40000, dport=80,
             src="10.0.0.2", dst="10.0.0.1"):
    return (Ether(src="02:00:00:00:00:02", dst="02:00:00:00:00:01")
            / IP(src=src, dst=dst) / TCP(sport=sport, dport=dport, seq=seq, ack=ack,
                                         flags=flags, window=window) / payload)


def _ccb_fields(rcv_nxt, *, rcv_buf=65535, src="10.0.0.2", dst="10.0.0.1", sport=40000,
                dport=80, rcv_mss=1460):
    import ipaddress
    return {
        "tuple": {"remote_ip": int(ipaddress.ip_address(src)),
                  "local_ip": int(ipaddress.ip_address(dst)), "remote_port": sport,
                  "local_port": dport, "ipv6": 0},
        "route": {"local_mac": LOCAL_MAC, "remote_mac": REMOTE_MAC, "ttl": 64,
                  "rcv_mss": rcv_mss},
        "tcp": {"rcv_nxt": rcv_nxt, "rcv_buf": rcv_buf, "rcv_adv": rcv_nxt + rcv_buf,
                "snd_una": 5000, "snd_nxt": 5000, "snd_wl1": rcv_nxt, "snd_wl2": 5000,
                "ip_id": 7},
    }


def _handout(bench, rcv_nxt, **kwargs):
    fields = _ccb_fields(rcv_nxt, **kwargs)
    addr = bench.ccb(**fields)
    bench.command(CommandOpcode.HANDOUT1, addr=addr, arg=0x1234)
    bench.command(CommandOpcode.HANDOUT2, addr=addr, arg=lambda b: b.last_conn())
    return addr


def test_slow_path_without_connections():
    bench = _Bench(1)
    for k in range(4):
        bench.frame(_segment(100 + k, b"x" * 10))
    bench.run().check()


def test_handout_placement_and_flush():
    bench = _Bench(2)
    _handout(bench, 1000)
    list_addr, _ = bench.mdl([40, 100])
    bench.command(CommandOpcode.RCVMDL, arg=lambda b: b.last_conn() | (2 << 16), addr=list_addr,
                  tag=0x55)
    bench.frame(_segment(1000, b"a" * 30))
    bench.frame(_segment(1030, b"b" * 30))              # straddles the two entries
    bench.frame(_segment(1060, b"", flags="A"))          # a pure ACK
    bench.frame(_segment(1060, b"c" * 80, flags="PA"))   # fills the list: RCVMDL_DONE
    bench.frame(_segment(1200, b"d" * 10))               # out of order: flush
    bench.frame(_segment(1140, b"e" * 10))               # slow path now
    bench.run().check()


def test_handout1_waits_for_a_frame_looked_up_before_it():
    """A frame of the tuple looked up while HANDOUT1 reads its Ccb missed the table: it takes
    the slow path, and the INTERLOCK comes after it (the host's Ccb counts its bytes)."""
    bench = _Bench(3)
    fields = _ccb_fields(1000)
    addr = bench.ccb(**fields)
    bench.race(CommandOpcode.HANDOUT1, _segment(1000, b"a" * 30), addr=addr, arg=0x1234)
    bench.command(CommandOpcode.HANDOUT2, addr=addr, arg=lambda b: b.last_conn())
    bench.frame(_segment(1030, b"b" * 30))
    bench.run().check()
    kinds = [job[0] if job[0] != "EVENT" else job[1] for job in bench.rtl["jobs"]]
    assert kinds[:2] == ["SLOW", EventKind.INTERLOCK.value], bench.rtl["jobs"]


def test_flush_right_after_handout2():
    """HANDOUT2 does not wait for the table's SET_STATE: a FLUSH right behind it has its DELETE
    wait until the table took the SET_STATE, and takes the DELETE's answer, not the
    SET_STATE's. A HANDOUT1 right behind that one inserts the tuple again."""
    bench = _Bench(4)
    fields = _ccb_fields(1000)
    addr = bench.ccb(**fields)
    bench.command(CommandOpcode.HANDOUT1, addr=addr, arg=0x1234)
    bench.burst((CommandOpcode.HANDOUT2, {"addr": addr, "arg": lambda b: b.last_conn()}),
                (CommandOpcode.FLUSH, {"arg": lambda b: b.last_conn()}),
                (CommandOpcode.HANDOUT1, {"addr": addr, "arg": 0x99}))
    bench.command(CommandOpcode.HANDOUT2, addr=addr, arg=lambda b: b.last_conn())
    bench.frame(_segment(1000, b"a" * 30))
    bench.run().check()
    interlocks = [job for job in bench.rtl["jobs"]
                  if job[0] == "EVENT" and job[1] == EventKind.INTERLOCK.value]
    assert len(interlocks) == 2, bench.rtl["jobs"]


@pytest.mark.parametrize("handout2", [False, True])
def test_buffer_pressure_flushes_the_queue_holding_the_oldest_frame(handout2):
    """While the packet buffer runs short and its oldest frame is in a connection's queue (queued
    while the connection waits for HANDOUT2, or after it with no RCVMDL posted), that connection
    is flushed QUEUE_FULL and its queue goes to the slow path in order. Pressure whose oldest
    frame is in no queue flushes nothing."""
    bench = _Bench(5)
    addr = bench.ccb(**_ccb_fields(1000))
    bench.command(CommandOpcode.HANDOUT1, addr=addr, arg=0x1234)
    if handout2:
        # No RCVMDL: the first segment is shown (FRAME_DATA), the next ones queue.
        bench.command(CommandOpcode.HANDOUT2, addr=addr, arg=lambda b: b.last_conn())
    bench.frame(_segment(1000, b"a" * 30))          # frame 1
    bench.frame(_segment(1030, b"b" * 30))          # frame 2
    bench.frame(_segment(1060, b"c" * 30))          # frame 3
    bench.frame(_segment(100, b"x" * 10, sport=41000))     # frame 4: no connection
    bench.pressure(4)                               # the oldest is in no queue: nothing
    bench.pressure(2 if handout2 else 1)            # the oldest is queued: QUEUE_FULL
    bench.frame(_segment(1090, b"d" * 30))          # slow path now
    bench.run().check()
    events = [job for job in bench.rtl["jobs"] if job[0] == "EVENT"]
    flushes = [job for job in events if job[1] == EventKind.FLUSH.value]
    assert [job[4] for job in flushes] == [FlushReason.QUEUE_FULL.value], bench.rtl["jobs"]
    slow = [job[1] for job in bench.rtl["jobs"] if job[0] == "SLOW"]
    assert slow == ([4, 2, 3, 5] if handout2 else [4, 1, 2, 3, 5]), bench.rtl["jobs"]


class _Peer:
    """One remote endpoint of the random test: its tuple and the next sequence number it sends."""

    def __init__(self, index, ipv6):
        self.ipv6 = ipv6
        self.src = f"2001:db8::{index + 2:x}" if ipv6 else f"10.0.0.{index + 2}"
        self.dst = "2001:db8::1" if ipv6 else "10.0.0.1"
        self.sport, self.dport = 40000 + index, 80
        self.next = 1000 * (index + 1)

    def segment(self, seq, payload, flags="A", chksum=None):
        ip = (IPv6(src=self.src, dst=self.dst) if self.ipv6
              else IP(src=self.src, dst=self.dst))
        tcp = TCP(sport=self.sport, dport=self.dport, seq=seq, ack=5000, flags=flags,
                  window=1000)
        if chksum is not None:
            tcp.chksum = chksum
        return (Ether(src="02:00:00:00:00:02", dst="02:00:00:00:00:01") / ip / tcp / payload)

    def key(self):
        import ipaddress
        return (int(ipaddress.ip_address(self.src)), int(ipaddress.ip_address(self.dst)),
                self.sport, self.dport)


def _conn_of(bench, peer):
    """The conn_nbr the model holds for ``peer``'s tuple, or one no connection has."""
    src, dst, sport, dport = peer.key()
    for nbr, conn in bench.model.connections.items():
        key = conn.key
        if (key.src_ip, key.dst_ip, key.src_port, key.dst_port) == (src, dst, sport, dport):
            return nbr
    last = bench.connections - 1
    return last if last not in bench.model.connections else 0


@pytest.mark.parametrize("seed, data_bits", [(11, 128), (12, 64), (13, 256)])
def test_random_traffic_and_commands(seed, data_bits):
    """Random frames (in order, out of order, flags, bad checksums, pure ACKs) and commands
    (handouts with frames between the phases, RCVMDLs, WINUPDATEs, flushes, closes, refused
    ones) on a few connections, each step chosen from the model's state as it runs; one run at
    each DMA width (at 256 bits a beat carries two RCVMDL entries)."""
    bench = _Bench(seed, beat=data_bits // 8)
    rng = bench.rng
    peers = [_Peer(k, ipv6=(k == 3)) for k in range(4)]
    step = _random_step(rng, peers, handout=0.4, command=0.35, refusal=0.03)
    for _ in range(90):
        bench.dynamic(step)
    bench.run().check()
    counters = bench.model.counters
    assert counters["fast_frames"] and counters["flushes"], counters


#: The store and table of the many-connections test (the NIC's default, params.FAST_PATH_...).
MANY = 256


@pytest.mark.slow
def test_hundreds_of_connections_against_the_model():
    """200 connections at once in a 256-connection store and table, against the model: handed
    out 25 at a time (HANDOUT1s back to back, then the HANDOUT2s, then an RCVMDL each), two
    rounds of a segment each with the connections' frames interleaved, then random frames and
    commands (flushes, closes, re-handouts, RCVMDLs, WINUPDATEs) on all of them."""
    bench = _Bench(31, connections=MANY, memory=0x200000)
    rng = bench.rng
    peers = [_Peer(k, ipv6=(k % 10 == 3)) for k in range(200)]
    seen = []

    def count(b):
        seen.append(len(b.model.connections))

    for first in range(0, len(peers), 25):
        group = peers[first:first + 25]
        ccbs = []
        for peer in group:
            fields = _ccb_fields(peer.next, src=peer.src, dst=peer.dst, sport=peer.sport,
                                 dport=peer.dport)
            fields["tuple"]["ipv6"] = int(peer.ipv6)
            ccbs.append(bench.ccb(**fields))
        bench.burst(*[(CommandOpcode.HANDOUT1, {"addr": addr, "arg": rng.getrandbits(32)})
                      for addr in ccbs])
        bench.burst(*[(CommandOpcode.HANDOUT2,
                       {"addr": addr, "arg": lambda b, p=peer: _conn_of(b, p)})
                      for peer, addr in zip(group, ccbs, strict=True)])
        mdls = []
        for peer in group:
            list_addr, _ = bench.mdl([rng.choice([200, 1000]), 1000])
            mdls.append((CommandOpcode.RCVMDL, {
                "addr": list_addr, "tag": rng.getrandbits(16),
                "arg": lambda b, p=peer: _conn_of(b, p) | 2 << 16 | 1 << 24}))
        bench.burst(*mdls)
    bench.dynamic(count)
    for _ in range(2):
        frames = []
        for peer in rng.sample(peers, len(peers)):
            data = bytes(rng.randrange(256) for _ in range(rng.choice([0, 60, 300])))
            frames.append(peer.segment(peer.next, data, rng.choice(["A", "PA"])))
            peer.next += len(data)
        bench.frames_burst(frames)

    step = _random_step(rng, peers, handout=0.5, command=0.4, refusal=0)
    for _ in range(80):
        bench.dynamic(step)
    bench.dynamic(count)
    bench.run().check()
    assert seen[0] == len(peers), seen
    counters = bench.model.counters
    assert counters["fast_frames"] >= 200 and counters["flushes"] >= 5, counters


def _random_step(rng, peers, *, handout, command, refusal):
    """A dynamic step: for a random peer, a handout (no connection), a command on its
    connection, a refused command, or a frame, with these chances."""
    def step(b):
        peer = rng.choice(peers)
        conn = b.model.connections.get(_conn_of(b, peer))
        if conn is None and rng.random() < handout:
            _random_handout(b, rng, peer)
        elif conn is not None and conn.ccb is not None and rng.random() < command:
            _random_command(b, rng, peer, conn)
        elif rng.random() < refusal:
            _random_refusal(b, rng, peer)
        else:
            _random_frame(b, rng, peer)
    return step


def _random_frame(b, rng, peer):
    payload = bytes(rng.randrange(256) for _ in range(rng.choice([0, 5, 60, 300, 300])))
    kind = rng.random()
    if kind < 0.85:
        b.frame(peer.segment(peer.next, payload, rng.choice(["A", "A", "PA"])))
        peer.next += len(payload)
    elif kind < 0.9:
        b.frame(peer.segment(peer.next + 500, payload))
    elif kind < 0.95:
        b.frame(peer.segment(peer.next, payload, rng.choice(["FA", "RA", "UA", "SA"])))
    else:
        b.frame(peer.segment(peer.next, payload or b"z", chksum=0x1234))


def _random_handout(b, rng, peer):
    fields = _ccb_fields(peer.next, src=peer.src, dst=peer.dst, sport=peer.sport,
                         dport=peer.dport, rcv_buf=rng.choice([600, 65535]))
    fields["tuple"]["ipv6"] = int(peer.ipv6)
    if rng.random() < 0.1:
        fields["route"]["rcv_mss"] = 0                      # a bad Ccb
    addr = b.ccb(**fields)
    b.command(CommandOpcode.HANDOUT1, addr=addr, arg=rng.getrandbits(32))
    for _ in range(rng.choice([0, 0, 1, 3])):                # the handout race
        payload = bytes(40)
        b.frame(peer.segment(peer.next, payload))
        peer.next += len(payload)
    b.command(CommandOpcode.HANDOUT2, addr=addr, arg=lambda bb, p=peer: _conn_of(bb, p))


def _random_command(b, rng, peer, conn):
    nbr = conn.conn_nbr
    r = rng.random()
    if r < 0.5:
        count = rng.choice([1, 1, 2, 3])
        list_addr, _ = b.mdl([rng.choice([50, 200, 1000]) for _ in range(count)])
        push = int(rng.random() < 0.5)
        b.command(CommandOpcode.RCVMDL, addr=list_addr, tag=rng.getrandbits(16),
                  arg=nbr | count << 16 | push << 24)
    elif r < 0.85:
        unconsumed = conn.tcp["rcv_unconsumed"]
        amount = unconsumed if rng.random() < 0.8 else rng.choice([0, unconsumed + 1])
        b.command(CommandOpcode.WINUPDATE, addr=amount, arg=nbr)
    else:
        b.command(rng.choice([CommandOpcode.FLUSH, CommandOpcode.CLOSE]), arg=nbr)


def _random_refusal(b, rng, peer):
    """A command the NIC refuses: an unknown conn_nbr, a bad RCVMDL list, a second HANDOUT1."""
    r = rng.random()
    if r < 0.4:
        b.command(CommandOpcode.FLUSH, arg=lambda bb, p=peer: _conn_of(bb, p) ^ (CONNECTIONS - 1))
    elif r < 0.7:
        list_addr, _ = b.mdl([0, 100])
        b.command(CommandOpcode.RCVMDL, addr=list_addr,
                  arg=lambda bb, p=peer: _conn_of(bb, p) | rng.choice([0, 2, 9]) << 16)
    else:
        fields = _ccb_fields(peer.next, src=peer.src, dst=peer.dst, sport=peer.sport,
                             dport=peer.dport)
        fields["tuple"]["ipv6"] = int(peer.ipv6)
        b.command(CommandOpcode.HANDOUT1, addr=b.ccb(**fields))
