"""EventWriter (hw/host/event_writer.py) against a host consuming the EVENT ring.

Three event sources and the register-error stream send numbered events with random pauses; a
``WriteServer`` is host memory (random backpressure and latency, error pages); the host testbench
takes events by their phase with random delays and gives slots back through ``config.host_index``,
and sometimes reconfigures the ring (a reset, to a new size and place). Ring sizes 2..16, so the
ring fills and wraps many times. Checked:

- every event the host takes is the one its source sent (the writer only sets ``phase``), each
  source's events in order, none twice; the only ones missing were sent before a reset (or, in the
  error test, were written into an error page);
- every slot is written in order, with the expected phase, never while the host has not taken its
  previous event, and never the slot before the host's index (one slot stays empty); nothing is
  written outside the current ring after a reset;
- ``config.nic_index`` already counts every event the host can see, and ends where the host is;
- ``written`` and ``count.events`` pulse once per event written, ``write_failed`` once per event
  written into an error page.
"""

import random
from collections import deque

import pytest
from amaranth import Elaboratable, Module
from amaranth.lib import wiring

from hw.host.dma import DmaManager
from hw.host.event_writer import EventWriter
from hw.layouts import Event, EventKind, RegisterError, pack, unpack

from .amaranth_sim import run_testbenches
from .dma_model import WriteServer

SOURCES = 3
REG = SOURCES                   # the register errors' number in the tests' bookkeeping
PHASE_BIT = 127
MEMORY_BYTES = 0x8000


def _event_id(bits):
    """(source, sequence number) of an event the test made."""
    ev = unpack(Event, bits)
    if ev.kind == EventKind.ERROR.value:
        return REG, int(ev.detail) & 0xFFFFFF
    return int(ev.tag) >> 24, int(ev.tag) & 0xFFFFFF


class _Ring:
    """One configuration of the ring, as the memory checker sees it."""

    def __init__(self, edge, base, log2_size):
        self.edge = edge            # active for beats taken after this clock edge
        self.base = base
        self.size = 1 << log2_size
        self.next_slot = 0
        self.phase = 1
        self.occupied = set()       # slots written, not yet given back by the host


class _Env:
    def __init__(self, dut, rng, events_per_source, error_pages=()):
        self.dut = dut
        self.rng = rng
        self.n = events_per_source
        self.error_pages = set(error_pages)
        self.sent = [[] for _ in range(SOURCES + 1)]        # expected event bits, in order
        self.handshakes = [0] * (SOURCES + 1)
        self.received = [[] for _ in range(SOURCES + 1)]    # (seq, bits) the host took
        self.failed = []                                    # event bits written to error pages
        self.lost_below = [0] * (SOURCES + 1)               # seqs below may be lost to a reset
        self.rings = []
        self.producers_left = SOURCES + 1
        self.slot_bytes = {}
        self.phase_writes = 0
        self.violations = []
        self.written_pulses = self.failed_pulses = self.count_pulses = 0
        self.written_cycles = []
        self.expected_failed_pulses = 0
        self.order = []                                     # sources of the events taken

    def ring_at(self, cycle):
        ring = None
        for r in self.rings:
            if r.edge < cycle:
                ring = r
        return ring

    # Called by the memory for every data beat it takes (before it is applied).
    def on_beat(self, cycle, addr, word, strb, beat_bytes, error):
        """Check a beat; True if it completed an event into an error page."""
        ring = self.ring_at(cycle)
        failed = False
        for off in range(0, beat_bytes, 16 if beat_bytes >= 16 else beat_bytes):
            part = min(16, beat_bytes)
            mask = (strb >> off) & ((1 << part) - 1)
            if not mask:
                continue
            slot_addr = addr + off - (addr + off) % 16
            if mask != (1 << part) - 1:
                self.violations.append(f"partial strobes {mask:#x} at {addr + off:#x}")
            if ring is None or not ring.base <= slot_addr < ring.base + 16 * ring.size:
                self.violations.append(f"write at {slot_addr:#x} outside the ring at cycle {cycle}")
                continue
            buf = self.slot_bytes.setdefault((id(ring), slot_addr), bytearray(16))
            first = (addr + off) % 16
            buf[first:first + part] = ((word >> (8 * off)) & ((1 << (8 * part)) - 1)).to_bytes(
                part, "little")
            if first + part < 16:
                continue            # the phase byte is in the next beat
            bits = int.from_bytes(self.slot_bytes.pop((id(ring), slot_addr)), "little")
            slot = (slot_addr - ring.base) // 16
            if slot != ring.next_slot:
                self.violations.append(f"slot {slot} written, expected {ring.next_slot}")
            if bits >> PHASE_BIT != ring.phase:
                self.violations.append(f"slot {slot}: phase {bits >> PHASE_BIT}")
            if ring is self.rings[-1]:
                if slot in ring.occupied:
                    self.violations.append(f"slot {slot} overwritten before the host took it")
                if len(ring.occupied) >= ring.size - 1:
                    self.violations.append(f"slot {slot} written into a full ring")
                ring.occupied.add(slot)
            ring.next_slot = (slot + 1) % ring.size
            if ring.next_slot == 0:
                ring.phase ^= 1
            self.phase_writes += 1
            if error:
                self.failed.append(bits & ~(1 << PHASE_BIT))
                failed = True
        return failed


class _Memory(WriteServer):
    def __init__(self, env, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.env = env

    def _take_beat(self, word, strb):
        addr = self.open[0][0] + self.open[0][2] * self.beat
        failed = self.env.on_beat(self.cycle, addr, word, strb, self.beat, self._error(addr))
        answers = len(self.done)
        super()._take_beat(word, strb)
        if len(self.done) > answers:    # the request's last beat: remember for its completion
            self.done[-1].append((self.cycle, failed))

    async def run(self, ctx):
        self.done = _Answers(self)
        await super().run(ctx)


class _Answers(deque):
    """The memory's completions; counts those that must pulse ``write_failed``: of an event
    written into an error page, with no reset between its last beat and its completion."""

    def __init__(self, memory):
        super().__init__()
        self.memory = memory

    def popleft(self):
        answer = super().popleft()
        written, failed = answer[2]
        done = self.memory.cycle
        env = self.memory.env
        if failed and not any(written <= ring.edge <= done for ring in env.rings):
            env.expected_failed_pulses += 1
        return answer


def _data_checker(env, dma):
    """The data of a request the memory took is offered at once (no event waits in the writer
    for a flag that is late)."""
    async def run(ctx):
        owed = 0
        async for _, _, req_valid, req_ready, req_beats, valid, ready in ctx.tick().sample(
                dma.req.valid, dma.req.ready, dma.req.payload.beats, dma.data.valid,
                dma.data.ready):
            if owed and not valid:
                env.violations.append(f"{owed} beats owed, data not valid")
            owed += (req_beats if req_valid and req_ready else 0) - (valid and ready)
    return run


def _make_source_event(rng, src, seq):
    return pack(Event, {
        "kind": rng.choice([EventKind.RX, EventKind.TX_DONE, EventKind.COMMAND_DONE]).value,
        "reserved0": rng.getrandbits(4),
        "ring": rng.getrandbits(8),
        "index": rng.getrandbits(16),
        "length": rng.getrandbits(16),
        "code": rng.getrandbits(8),
        "reserved1": rng.getrandbits(8),
        "tag": src << 24 | seq,
        "detail": rng.getrandbits(31),
        "phase": rng.getrandbits(1),        # ignored by the writer
    })


def _producer(env, src, p_idle):
    dut, rng = env.dut, random.Random(env.rng.random())
    port = dut.sources[src] if src < SOURCES else dut.reg_error

    async def run(ctx):
        for seq in range(env.n):
            if src < SOURCES:
                bits = _make_source_event(rng, src, seq)
                payload = unpack(Event, bits)
                expected = bits & ~(1 << PHASE_BIT)
            else:
                code, ring, value = rng.getrandbits(8), rng.getrandbits(8), rng.getrandbits(32)
                value = (value & ~0x7FFFFFFF) | (REG << 24 | seq)
                payload = RegisterError.const({"code": code, "ring": ring, "detail": value})
                expected = pack(Event, {"kind": EventKind.ERROR.value, "ring": ring,
                                        "code": code, "detail": value & 0x7FFFFFFF})
            env.sent[src].append(expected)
            while rng.random() < p_idle:
                await ctx.tick()
            ctx.set(port.valid, 1)
            ctx.set(port.payload, payload)
            while True:
                _, _, ready = await ctx.tick().sample(port.ready)
                if ready:
                    break
            env.handshakes[src] += 1
            ctx.set(port.valid, 0)
        env.producers_left -= 1
    return run


def _host(env, memory, *, sizes, bases, p_read, p_give, resets, p_reset, max_cycles):
    dut, rng = env.dut, random.Random(env.rng.random())
    cfg = dut.config

    async def run(ctx):
        cycle = 0
        ring = None
        host_index = read_index = 0
        phase = 1
        resets_left = resets
        idle = 0
        nic = 0

        async def tick():
            nonlocal cycle, nic
            _, _, nic, written, failed, counted = await ctx.tick().sample(
                cfg.nic_index, dut.written, dut.write_failed, dut.count.events)
            env.written_pulses += written
            if written:
                env.written_cycles.append(cycle)
            env.failed_pulses += failed
            env.count_pulses += counted
            cycle += 1

        async def configure():
            nonlocal ring, host_index, read_index, phase
            base = rng.choice([b for b in bases if ring is None or b != ring.base] or bases)
            log2 = rng.choice(sizes)
            memory.memory[base:base + (16 << log2)] = bytes(16 << log2)
            ring = _Ring(cycle + 1, base, log2)
            env.rings.append(ring)
            host_index = read_index = 0
            phase = 1
            ctx.set(cfg.base, base)
            ctx.set(cfg.log2_size, log2)
            ctx.set(cfg.host_index, 0)
            ctx.set(cfg.reset, 1)
            await tick()
            ctx.set(cfg.reset, 0)
            await tick()
            await tick()
            for src in range(SOURCES + 1):
                env.lost_below[src] = env.handshakes[src]

        for _ in range(rng.randint(0, 30)):     # not configured yet: the writer waits
            await tick()
        await configure()
        while True:
            assert cycle < max_cycles, "timeout"
            if resets_left and rng.random() < p_reset:
                resets_left -= 1
                await configure()
                continue
            size = ring.size
            if rng.random() < p_read:
                addr = ring.base + 16 * read_index
                bits = int.from_bytes(bytes(memory.memory[addr:addr + 16]), "little")
                seen = (nic - host_index) % size > (read_index - host_index) % size
                if memory._error(addr):
                    take = seen             # lost in an error page: skip once the NIC is past
                    bits = None
                else:
                    take = bits >> PHASE_BIT == phase
                    if take and not seen:
                        env.violations.append(
                            f"event in slot {read_index} before nic_index ({nic}) counts it")
                if take:
                    if bits is not None:
                        bits &= ~(1 << PHASE_BIT)
                        src, seq = _event_id(bits)
                        env.received[src].append((seq, bits))
                        env.order.append(src)
                    read_index = (read_index + 1) % size
                    if read_index == 0:
                        phase ^= 1
            if read_index != host_index and rng.random() < p_give:
                while host_index != read_index:
                    ring.occupied.discard(host_index)
                    host_index = (host_index + 1) % size
                ctx.set(cfg.host_index, host_index)
            busy = (env.producers_left or memory.open or memory.done
                    or read_index != nic or host_index != read_index)
            idle = 0 if busy else idle + 1
            if idle > 60:
                break
            await tick()
    return run


def _check(env, memory, *, lossless):
    assert not env.violations, env.violations[:5]
    assert not memory.violations, memory.violations[:5]
    # (Only an event cut by a reset may have its first beat written and not its last.)
    assert not [k for k in env.slot_bytes if k[0] == id(env.rings[-1])], "first beat, no last"
    failed = {_event_id(bits): bits for bits in env.failed}
    for src in range(SOURCES + 1):
        seqs = [seq for seq, _ in env.received[src]]
        assert seqs == sorted(set(seqs)), f"source {src}: out of order or twice"
        for seq, bits in env.received[src]:
            assert bits == env.sent[src][seq], f"source {src} event {seq} differs"
        got = set(seqs)
        for seq in range(env.n):
            if seq in got:
                continue
            if (src, seq) in failed:
                assert failed[(src, seq)] == env.sent[src][seq]
                continue
            assert not lossless and seq < env.lost_below[src], f"source {src} event {seq} lost"
    assert env.written_pulses == env.count_pulses == env.phase_writes
    assert env.failed_pulses == env.expected_failed_pulses
    if lossless:
        assert sum(len(r) for r in env.received) + len(env.failed) == (SOURCES + 1) * env.n
        assert env.failed_pulses == len(env.failed)


class _AxiMemory:
    """Host memory behind the DMA manager's AXI port (writes only): always ready, each burst
    answered OKAY a fixed latency after its last beat. Looks like ``_Memory`` to the host."""

    def __init__(self, env, axi, memory, beat_bytes, latency):
        self.env, self.axi, self.memory, self.beat = env, axi, memory, beat_bytes
        self.latency = latency
        self.open = deque()         # [addr, beats left]
        self.done = deque()         # [due, id]
        self.violations = []
        self.cycle = 0

    def _error(self, addr):
        return False

    async def run(self, ctx):
        axi = self.axi
        ctx.set(axi.awready, 1)
        ctx.set(axi.wready, 1)
        while True:
            answer = self.done[0] if self.done and self.done[0][0] <= self.cycle else None
            ctx.set(axi.bvalid, int(answer is not None))
            ctx.set(axi.bid, answer[1] if answer else 0)
            (_, _, awvalid, awaddr, awlen, awid, wvalid, wdata, wstrb, bready
             ) = await ctx.tick().sample(axi.awvalid, axi.awaddr, axi.awlen, axi.awid,
                                         axi.wvalid, axi.wdata, axi.wstrb, axi.bready)
            self.cycle += 1
            if answer is not None and bready:
                self.done.popleft()
            if awvalid:
                self.open.append([awaddr, awlen + 1, awid])
            if wvalid:
                burst = self.open[0]
                self.env.on_beat(self.cycle, burst[0], wdata, wstrb, self.beat, False)
                for k in range(self.beat):
                    if wstrb >> k & 1:
                        self.memory[burst[0] + k] = wdata >> (8 * k) & 0xFF
                burst[0] += self.beat
                burst[1] -= 1
                if not burst[1]:
                    self.open.popleft()
                    self.done.append([self.cycle + self.latency, burst[2]])


class _WithManager(Elaboratable):
    """The event writer as the NIC uses it: a write client of the DMA manager."""

    def __init__(self, data_bits):
        self.writer = EventWriter(SOURCES, data_bits=data_bits)
        self.manager = DmaManager(read_clients=1, write_clients=1, data_bits=data_bits)

    def elaborate(self, platform):
        m = Module()
        m.submodules.writer = self.writer
        m.submodules.manager = self.manager
        wiring.connect(m, self.writer.dma, self.manager.write[0])
        return m


def _run(data_bits, seed, *, events, sizes, bases, resets, p_idle=0.5, p_read=0.5,
         p_give=0.3, p_reset=0.003, error_pages=(), p_ready=0.7, latency=(1, 20),
         max_cycles=12000, manager=False):
    rng = random.Random(seed)
    if manager:
        top = _WithManager(data_bits)
        dut = top.writer
    else:
        top = dut = EventWriter(SOURCES, data_bits=data_bits)
    env = _Env(dut, rng, events, error_pages)
    if manager:
        memory = _AxiMemory(env, top.manager.axi, bytearray(MEMORY_BYTES), data_bits // 8,
                            latency[1])
    else:
        memory = _Memory(env, dut.dma, bytearray(MEMORY_BYTES), data_bits // 8, seed=seed,
                         p_ready=p_ready, latency=latency, error_pages=error_pages)
    producers = [_producer(env, src, p_idle) for src in range(SOURCES + 1)]
    host = _host(env, memory, sizes=sizes, bases=bases, p_read=p_read, p_give=p_give,
                 resets=resets, p_reset=p_reset, max_cycles=max_cycles)
    run_testbenches(top, host, *producers, processes=[memory.run, _data_checker(env, dut.dma)])
    return env, memory


@pytest.mark.parametrize("data_bits", [64, 128, 256])
def test_random_traffic_with_resets(data_bits):
    bases = [0x1000, 0x1410, 0x2000, 0x2530, 0x4000]
    env, memory = _run(data_bits, data_bits, events=150, sizes=[1, 2, 3, 4], bases=bases,
                       resets=6)
    _check(env, memory, lossless=False)
    assert len(env.rings) >= 3


@pytest.mark.parametrize("data_bits", [64, 128, 256])
def test_resets_and_error_pages(data_bits):
    # Some places of the ring are across a 4 KB boundary into a page answered with errors:
    # completions with an error pulse write_failed unless a reset came after the event's write.
    bases = [0x2F80, 0x2FC0, 0x1000, 0x5F00]
    env, memory = _run(data_bits, data_bits + 3, events=120, sizes=[2, 3, 4], bases=bases,
                       resets=8, p_reset=0.006, error_pages={0x3000, 0x6000})
    _check(env, memory, lossless=False)
    assert env.failed and env.expected_failed_pulses


@pytest.mark.parametrize("data_bits", [64, 128, 256])
def test_no_reset_nothing_lost(data_bits):
    env, memory = _run(data_bits, data_bits + 1, events=100, sizes=[1, 2, 3], bases=[0x1010],
                       resets=0)
    _check(env, memory, lossless=True)


@pytest.mark.parametrize("data_bits", [64, 128, 256])
def test_error_pages(data_bits):
    # A 16-slot ring across a 4 KB boundary: slots 8..15 are in a page answered with errors.
    env, memory = _run(data_bits, data_bits + 2, events=60, sizes=[4], bases=[0x2F80],
                       resets=0, error_pages={0x3000})
    _check(env, memory, lossless=True)
    assert env.failed and env.failed_pulses == len(env.failed)


@pytest.mark.parametrize("manager", [False, True])
@pytest.mark.parametrize("data_bits", [64, 128, 256])
def test_throughput(data_bits, manager):
    """Sources always valid, memory always ready, host always consuming. Alone (the memory
    takes a request a clock) the writer issues one event a clock at 128 and 256 bits; behind the
    DMA manager (which takes a request every other clock) one every two clocks."""
    env, memory = _run(data_bits, 7, events=100, sizes=[4], bases=[0x1000], resets=0,
                       p_idle=0, p_read=1, p_give=1, p_ready=1, latency=(1, 4),
                       manager=manager)
    _check(env, memory, lossless=True)
    cycles = env.written_cycles
    rate = (len(cycles) - 1) / (cycles[-1] - cycles[0])
    print(f"{data_bits} bits{' behind the DMA manager' if manager else ''}: "
          f"{rate:.3f} events per clock")
    assert rate >= (0.5 if manager or data_bits == 64 else 1.0)
    # Every input always valid: round robin, each input once in every four events.
    middle = env.order[8:300]
    assert all(len(set(middle[k:k + SOURCES + 1])) == SOURCES + 1
               for k in range(len(middle) - SOURCES)), middle[:40]
