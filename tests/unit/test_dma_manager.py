"""DmaManager (hw/host/dma.py) against a model of host memory behind an AXI4 target.

The target (one testbench) answers AR/AW/W with random ready, returns each burst after a random
latency, and picks among the IDs with answers due at random, so different clients' bursts come
back out of order (as AXI allows between IDs). Each client has its own producer and consumer
testbenches with random pauses and backpressure. Reads come from a region nobody writes; each write
client writes its own region, so the expected contents are those of each client's requests applied
in its order. Pages in ``ERROR_PAGES`` answer SLVERR and are never written.

Every burst is checked as the target sees it (INCR, beat size, length cap, no 4 KB crossing,
outstanding limits); every beat, ``last`` flag, error flag and completion is compared in order.
"""

import gc
import random
import warnings
from collections import deque

import pytest
from amaranth.hdl import UnusedElaboratable

from hw.host.axi import Burst, Resp
from hw.host.dma import DmaManager

from .amaranth_sim import run_testbenches

READ_REGION = (0x0000, 0x8000)
WRITE_REGION_BASE = 0x8000
WRITE_REGION_BYTES = 0x2000     # per write client
ERROR_PAGES = {0x3000, 0x8000}  # 4 KB pages answered SLVERR (one read, one write page)


def _page_error(addr):
    return (addr & ~0xFFF) in ERROR_PAGES


class _Target:
    """The AXI4 subordinate: host memory with latency, random ready and ID reordering."""

    def __init__(self, dut, rng, memory, *, p_ready, latency, max_reads, max_writes):
        self.dut = dut
        self.rng = rng
        self.memory = memory
        self.p_ready = p_ready
        self.latency = latency
        self.max_reads = max_reads
        self.max_writes = max_writes
        self.beat = dut.beat_bytes
        self.violations = []
        self.reads = {}         # id -> deque of [due, addr, beats, sent]
        self.r_cur = None
        self.writes = deque()   # AWs in order: [id, addr, beats, got, error]
        self.w_early = deque()  # W beats before their AW
        self.b_due = {}         # id -> deque of [due, resp]
        self.reads_out = self.writes_out = 0
        self.max_reads_seen = self.max_writes_seen = 0
        self.r_beats = 0
        self.cycle = 0

    def _check_burst(self, kind, addr, length, size, burst):
        if burst != Burst.INCR:
            self.violations.append(f"{kind} burst type {burst}")
        if 2 ** size != self.beat:
            self.violations.append(f"{kind} size {size}")
        beats = length + 1
        if beats > self.dut.max_burst_beats:
            self.violations.append(f"{kind} burst of {beats} beats")
        if addr % self.beat:
            self.violations.append(f"{kind} unaligned address {addr:#x}")
        if (addr & 0xFFF) + beats * self.beat > 4096:
            self.violations.append(f"{kind} burst at {addr:#x} x{beats} crosses 4 KB")
        return beats

    def _data(self, addr):
        return int.from_bytes(bytes(self.memory[addr:addr + self.beat]), "little")

    def _ready(self):
        return int(self.rng.random() < self.p_ready)

    async def run(self, ctx):
        axi = self.dut.axi
        rng = self.rng
        while True:
            arready, awready, wready = self._ready(), self._ready(), self._ready()
            ctx.set(axi.arready, arready)
            ctx.set(axi.awready, awready)
            ctx.set(axi.wready, wready)
            # R: keep the burst being sent; else start one of the IDs whose head is due.
            if self.r_cur is None:
                due = [i for i, q in self.reads.items() if q and q[0][0] <= self.cycle]
                if due:
                    self.r_cur = rng.choice(due)
            if self.r_cur is not None:
                _, addr, beats, sent = self.reads[self.r_cur][0]
                beat_addr = addr + sent * self.beat
                error = _page_error(beat_addr)
                ctx.set(axi.rvalid, 1)
                ctx.set(axi.rid, self.r_cur)
                ctx.set(axi.rdata, 0 if error else self._data(beat_addr))
                ctx.set(axi.rresp, Resp.SLVERR if error else Resp.OKAY)
                ctx.set(axi.rlast, sent == beats - 1)
            else:
                ctx.set(axi.rvalid, 0)
            b_id = None
            due = [i for i, q in self.b_due.items() if q and q[0][0] <= self.cycle]
            if due:
                b_id = rng.choice(due)
                ctx.set(axi.bvalid, 1)
                ctx.set(axi.bid, b_id)
                ctx.set(axi.bresp, self.b_due[b_id][0][1])
            else:
                ctx.set(axi.bvalid, 0)

            (_, _, arvalid, araddr, arlen, arsize, arburst, arid, rready,
             awvalid, awaddr, awlen, awsize, awburst, awid,
             wvalid, wdata, wstrb, wlast, bready) = await ctx.tick().sample(
                axi.arvalid, axi.araddr, axi.arlen, axi.arsize, axi.arburst, axi.arid,
                axi.rready, axi.awvalid, axi.awaddr, axi.awlen, axi.awsize, axi.awburst,
                axi.awid, axi.wvalid, axi.wdata, axi.wstrb, axi.wlast, axi.bready)
            self.cycle += 1

            if arvalid and arready:
                beats = self._check_burst("read", araddr, arlen, arsize, arburst)
                due = self.cycle + rng.randint(*self.latency)
                self.reads.setdefault(arid, deque()).append([due, araddr, beats, 0])
                self.reads_out += 1
                self.max_reads_seen = max(self.max_reads_seen, self.reads_out)
                if self.reads_out > self.max_reads:
                    self.violations.append(f"{self.reads_out} reads outstanding")
            if self.r_cur is not None and rready:
                burst = self.reads[self.r_cur][0]
                burst[3] += 1
                self.r_beats += 1
                if burst[3] == burst[2]:
                    self.reads[self.r_cur].popleft()
                    self.reads_out -= 1
                    self.r_cur = None
            if awvalid and awready:
                beats = self._check_burst("write", awaddr, awlen, awsize, awburst)
                self.writes.append([awid, awaddr, beats, 0, _page_error(awaddr)])
                self.writes_out += 1
                self.max_writes_seen = max(self.max_writes_seen, self.writes_out)
                if self.writes_out > self.max_writes:
                    self.violations.append(f"{self.writes_out} writes outstanding")
            if wvalid and wready:
                self.w_early.append((wdata, wstrb, wlast))
            while self.w_early and any(w[3] < w[2] for w in self.writes):
                self._take_w(*self.w_early.popleft())
            if b_id is not None and bready:
                self.b_due[b_id].popleft()
                self.writes_out -= 1

    def _take_w(self, wdata, wstrb, wlast):
        write = next(w for w in self.writes if w[3] < w[2])
        awid, addr, beats, got, error = write
        beat_addr = addr + got * self.beat
        if not error:
            for k in range(self.beat):
                if wstrb >> k & 1:
                    self.memory[beat_addr + k] = (wdata >> (8 * k)) & 0xFF
        write[3] += 1
        if bool(wlast) != (write[3] == beats):
            self.violations.append(f"wlast {wlast} on beat {got} of {beats}")
        if write[3] == beats:
            self.writes.remove(write)
            due = self.cycle + self.rng.randint(*self.latency)
            resp = Resp.SLVERR if error else Resp.OKAY
            self.b_due.setdefault(awid, deque()).append([due, resp])


def _requests(rng, n, beat, lo, hi, max_beats):
    """``n`` random (addr, beats) inside [lo, hi): mostly short, some long, many across 4 KB."""
    out = []
    for _ in range(n):
        shape = rng.random()
        if shape < 0.5:
            beats = rng.randint(1, 4)
        elif shape < 0.85:
            beats = rng.randint(5, 40)
        else:
            beats = rng.randint(41, max_beats)
        span = beats * beat
        if rng.random() < 0.3:      # start just below a 4 KB boundary
            page = rng.randrange(lo, hi - span, 4096) & ~0xFFF
            addr = max(lo, page + 4096 - beat * rng.randint(1, 8))
        else:
            addr = rng.randrange(lo, hi - span, beat)
        addr -= addr % beat
        if addr + span > hi:
            addr = hi - span - (hi - span) % beat
        out.append((addr, beats))
    return out


def _run(seed, *, data_bits=128, n_read=3, n_write=2, requests=25, max_reads=4, max_writes=4,
         max_burst_bytes=256, p_ready=0.7, p_valid=0.7, p_resp_ready=0.8, latency=(1, 30)):
    rng = random.Random(seed)
    dut = DmaManager(read_clients=n_read, write_clients=n_write, data_bits=data_bits,
                     max_reads=max_reads, max_writes=max_writes,
                     max_burst_bytes=max_burst_bytes)
    beat = dut.beat_bytes
    memory = bytearray(rng.randbytes(WRITE_REGION_BASE + n_write * WRITE_REGION_BYTES))
    expected_memory = bytearray(memory)
    target = _Target(dut, random.Random(seed + 1000), memory, p_ready=p_ready, latency=latency,
                     max_reads=max_reads, max_writes=max_writes)
    done = {"read": [0] * n_read, "write": [0] * n_write}
    max_beats = 200 * 16 // beat

    read_reqs = [_requests(rng, requests, beat, *READ_REGION, max_beats) for _ in range(n_read)]
    write_reqs = []
    write_data = []
    for j in range(n_write):
        lo = WRITE_REGION_BASE + j * WRITE_REGION_BYTES
        reqs = _requests(rng, requests, beat, lo, lo + WRITE_REGION_BYTES, max_beats)
        beats = [[(rng.getrandbits(8 * beat), rng.getrandbits(beat) | (rng.random() < 0.7)
                   * ((1 << beat) - 1)) for _ in range(n)] for _, n in reqs]
        write_reqs.append(reqs)
        write_data.append(beats)
        for (addr, _), data in zip(reqs, beats):
            for k, (word, strb) in enumerate(data):
                beat_addr = addr + k * beat
                if _page_error(beat_addr):
                    continue
                for b in range(beat):
                    if strb >> b & 1:
                        expected_memory[beat_addr + b] = (word >> (8 * b)) & 0xFF

    def producer(stream, items, payload_of, prng):
        async def tb(ctx):
            for item in items:
                ctx.set(stream.payload, payload_of(item))
                while True:
                    valid = int(prng.random() < p_valid)
                    ctx.set(stream.valid, valid)
                    _, _, ready = await ctx.tick().sample(stream.ready)
                    if valid and ready:
                        break
            ctx.set(stream.valid, 0)
        return tb

    def read_consumer(i, prng):
        async def tb(ctx):
            stream = dut.read[i].resp
            expect = deque()
            for addr, beats in read_reqs[i]:
                for k in range(beats):
                    a = addr + k * beat
                    error = _page_error(a)
                    word = 0 if error else int.from_bytes(memory[a:a + beat], "little")
                    expect.append((word, k == beats - 1, error))
            while expect:
                ready = int(prng.random() < p_resp_ready)
                ctx.set(stream.ready, ready)
                _, _, valid, payload = await ctx.tick().sample(stream.valid, stream.payload)
                if valid and ready:
                    word, last, error = expect.popleft()
                    assert (payload.last, payload.error) == (last, error), (i, len(expect))
                    if not error:
                        assert payload.data == word, (i, len(expect))
            done["read"][i] = 1
            ctx.set(stream.ready, 1)
        return tb

    def write_consumer(j, prng):
        async def tb(ctx):
            stream = dut.write[j].done
            expect = deque(any(_page_error(a + k * beat) for k in range(n))
                           for a, n in write_reqs[j])
            while expect:
                ready = int(prng.random() < p_resp_ready)
                ctx.set(stream.ready, ready)
                _, _, valid, payload = await ctx.tick().sample(stream.valid, stream.payload)
                if valid and ready:
                    assert payload.error == expect.popleft(), (j, len(expect))
            done["write"][j] = 1
            ctx.set(stream.ready, 1)
        return tb

    testbenches = [target.run]
    for i in range(n_read):
        testbenches.append(producer(dut.read[i].req, read_reqs[i],
                                    lambda r: {"addr": r[0], "beats": r[1]},
                                    random.Random(seed * 31 + i)))
        testbenches.append(read_consumer(i, random.Random(seed * 37 + i)))
    for j in range(n_write):
        testbenches.append(producer(dut.write[j].req, write_reqs[j],
                                    lambda r: {"addr": r[0], "beats": r[1]},
                                    random.Random(seed * 41 + j)))
        beats = [b for data in write_data[j] for b in data]
        testbenches.append(producer(dut.write[j].data, beats,
                                    lambda b: {"data": b[0], "strb": b[1]},
                                    random.Random(seed * 43 + j)))
        testbenches.append(write_consumer(j, random.Random(seed * 47 + j)))

    async def watchdog(ctx):
        for _ in range(60000):
            await ctx.tick()
            if all(done["read"]) and all(done["write"]):
                break
        else:
            raise AssertionError(f"stuck: {done}")
        for _ in range(5):
            await ctx.tick()
        assert ctx.get(dut.reads_outstanding) == 0
        assert ctx.get(dut.writes_outstanding) == 0
        assert ctx.get(dut.axi.arvalid) == 0 and ctx.get(dut.axi.awvalid) == 0

    # The target answers forever, in the background: the clients' testbenches end the run.
    run_testbenches(dut, *testbenches[1:], watchdog, processes=[target.run])
    assert target.violations == []
    assert memory == expected_memory
    return target


@pytest.mark.parametrize("data_bits", [64, 128, 256])
def test_random_traffic_matches_model(data_bits):
    target = _run(seed=data_bits, data_bits=data_bits)
    # The limits were reached: several bursts in flight on both channels.
    assert target.max_reads_seen == 4
    assert target.max_writes_seen == 4


def test_small_bursts_and_one_outstanding():
    target = _run(seed=7, max_reads=1, max_writes=1, max_burst_bytes=32, requests=12,
                  n_read=2, n_write=2)
    assert target.max_reads_seen == target.max_writes_seen == 1


def test_single_clients_always_ready():
    _run(seed=11, n_read=1, n_write=1, p_ready=1.0, p_valid=1.0, p_resp_ready=1.0,
         requests=20)


def test_read_bus_stays_busy_at_host_latency():
    """One client, long requests, 78-cycle latency, 16 reads outstanding: R carries a beat
    almost every clock once the first data is back (the latency is hidden)."""
    dut = DmaManager(read_clients=1, write_clients=1, max_reads=16)
    memory = bytearray(random.Random(3).randbytes(0x10000))
    target = _Target(dut, random.Random(4), memory, p_ready=1.0, latency=(78, 78),
                     max_reads=16, max_writes=16)
    total_beats = 64 * 16       # 64 requests of 256 bytes at 128 bits
    state = {"first": None, "last": None, "beats": 0}

    async def producer(ctx):
        ctx.set(dut.read[0].req.valid, 1)
        for k in range(64):
            ctx.set(dut.read[0].req.payload, {"addr": 0x100 * k, "beats": 16})
            while True:
                _, _, ready = await ctx.tick().sample(dut.read[0].req.ready)
                if ready:
                    break
        ctx.set(dut.read[0].req.valid, 0)

    async def consumer(ctx):
        ctx.set(dut.read[0].resp.ready, 1)
        cycle = 0
        while state["beats"] < total_beats:
            _, _, valid = await ctx.tick().sample(dut.read[0].resp.valid)
            cycle += 1
            if valid:
                state["first"] = state["first"] or cycle
                state["last"] = cycle
                state["beats"] += 1

    run_testbenches(dut, producer, consumer, processes=[target.run])
    span = state["last"] - state["first"] + 1
    assert target.violations == []
    assert total_beats / span > 0.95, span


def test_bad_parameters_are_refused():
    with warnings.catch_warnings():
        # The refused objects exist (Elaboratable.__new__ ran) but are never elaborated.
        warnings.simplefilter("ignore", UnusedElaboratable)
        _refused()
        gc.collect()


def _refused():
    with pytest.raises(ValueError, match="data_bits"):
        DmaManager(read_clients=1, write_clients=1, data_bits=96)
    with pytest.raises(ValueError, match="read_clients"):
        DmaManager(read_clients=0, write_clients=1)
    with pytest.raises(ValueError, match="write_clients"):
        DmaManager(read_clients=1, write_clients=17)
    with pytest.raises(ValueError, match="max_burst_bytes"):
        DmaManager(read_clients=1, write_clients=1, max_burst_bytes=8192)
    with pytest.raises(ValueError, match="max_reads"):
        DmaManager(read_clients=1, write_clients=1, max_reads=0)
