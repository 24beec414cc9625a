"""RxWriter (hw/host/rx_writer.py) doing the receive engine's jobs: SLOW, FRAME_DATA, PLACE, EVENT.

The packet buffer and the writer as in tests/unit/test_rx_writer.py, but a job source stands in
for the receive engine: it takes each frame from the packet buffer and makes its jobs: a fill
(``SLOW`` or ``FRAME_DATA``), or its bytes placed in one to three pieces (random offsets and
lengths inside the frame, host addresses of every alignment, ``free`` on the last piece only),
sometimes followed by a fill of the same frame (a segment placed in part, then passed whole to
the slow path), with ``EVENT`` jobs between them; it gives a frame's claim back itself when the
frame has no fill (as the engine does for a placed frame). Host memory (``WriteServer``) has
random backpressure and error pages among the RX buffers and the placements.

A Python model computes host memory byte for byte (each fill, each piece exactly where it goes,
nothing around it, nothing in error pages), the events in job order (fetch errors in descriptor
order among the fills), every event after the completions of all the writes before it, the
``place_failed`` names in order, the counter and ``frame_data`` pulses, each slot freed once and
``consume`` once per fill. Then the clocks a placement takes.
"""

import random
from collections import deque

import pytest
from amaranth import Elaboratable, Module, Signal
from amaranth.lib import data, wiring

from hw.host.rx_buffer import RxPacketBuffer
from hw.host.rx_writer import RX_SUMMARY_BYTES, RxWriter
from hw.layouts import (
    EventCode,
    EventKind,
    HostCounterPulses,
    RingId,
    RxDescriptor,
    RxJob,
    RxJobKind,
    RxStagedFrame,
    RxStatus,
    pack,
)

from .amaranth_sim import run_testbenches
from .dma_model import WriteServer
from .test_rx_writer import _frame, _mac_beats, _status_and_summary

WIDTHS = pytest.mark.parametrize("data_bits", [64, 128, 256])
SLOT = 0x800                    # host memory per RX buffer
RING_BASE = 0x2_4000_0000
OUR_COUNTERS = ("rx_to_host", "rx_drop_too_small", "rx_drop_dma_error")
_FILL = (RxJobKind.SLOW, RxJobKind.FRAME_DATA)
_EVENT_FIELDS = ("kind", "ring", "index", "length", "code", "tag", "detail")


class _Harness(Elaboratable):
    """The packet buffer and the writer; the job source drives ``jobs`` and may give claims back
    (``give_back``: one claim in each clock it is high and the writer does not ``consume``)."""

    def __init__(self, data_bits):
        self.buffer = RxPacketBuffer(data_bits=data_bits)
        self.writer = RxWriter(data_bits=data_bits)
        self.give_back = Signal()

    def elaborate(self, platform):
        m = Module()
        m.submodules.buffer = self.buffer
        m.submodules.writer = self.writer
        wiring.connect(m, writer=self.writer.read, buffer=self.buffer.read)
        wiring.connect(m, buffer=self.buffer.beats, writer=self.writer.beats)
        wiring.connect(m, writer=self.writer.free, buffer=self.buffer.free)
        m.d.comb += self.buffer.release.eq(self.writer.consume | self.give_back)
        return m


# --- The plan: frames, their jobs, the descriptors ----------------------------------------------

class Piece:
    def __init__(self, offset, length, addr):
        self.offset, self.length, self.addr = offset, length, addr


def _plan_frame(rng, length, place_cursor, p_place):
    """The jobs of one frame (without its record, known only once the buffer offers it): a list
    of (kind, fields) and the new place cursor."""
    jobs = []
    conn = rng.randrange(1 << 16)
    if length and rng.random() < p_place:
        start = rng.randrange(length)
        end = rng.choice([length, rng.randrange(start + 1, length + 1)])
        cuts = sorted(rng.sample(range(start + 1, end), min(rng.choice([0, 1, 2]),
                                                           end - start - 1)))
        bounds = [start, *cuts, end]
        then_fill = rng.random() < 0.2
        for k in range(len(bounds) - 1):
            n = bounds[k + 1] - bounds[k]
            addr = place_cursor + rng.randrange(64)
            place_cursor = addr + n + 1 + rng.randrange(40)
            last = k == len(bounds) - 2 and not then_fill
            jobs.append((RxJobKind.PLACE, {"piece": Piece(bounds[k], n, addr), "free": last,
                                           "conn_nbr": conn}))
        if then_fill:
            jobs.append((RxJobKind.SLOW, {"free": True, "conn_nbr": 0}))
    else:
        kind = rng.choice(_FILL)
        fields = {"free": True, "conn_nbr": conn}
        if kind == RxJobKind.SLOW and rng.random() < 0.3:
            # The SYN-cookie unit's fill: its own event kind, tag and detail.
            fields["named"] = {"kind": rng.choice([EventKind.CONNECTION,
                                                   EventKind.SYN_ASK]).value,
                               "tag": rng.randrange(1 << 32), "detail": rng.randrange(1 << 31)}
        jobs.append((kind, fields))
    return jobs, place_cursor


def _random_event(rng):
    return {"kind": rng.choice([EventKind.INTERLOCK, EventKind.RCVMDL_DONE,
                                EventKind.FLUSH]).value,
            "ring": RingId.COMMAND.value, "index": rng.randrange(1 << 16),
            "length": rng.randrange(1 << 16), "code": rng.randrange(256),
            "tag": rng.randrange(1 << 32), "detail": rng.randrange(1 << 31)}


# --- The run --------------------------------------------------------------------------------------

def _run(data_bits, *, seed, n_frames, p_place=0.5, p_event=0.25, p_error=0.06,
         p_server=0.8, latency=(1, 20), p_sink=0.7, p_job=0.8, p_desc=0.8, p_failed=0.7,
         error_rx=(), error_place=(), lengths=None, gaps=(0, 0, 1, 3), plan=_plan_frame,
         hold_jobs=0):
    rng = random.Random(seed)
    beat = data_bits // 8
    if lengths is None:
        lengths = [rng.choice([0, 1, 14, 15, 17, 31, 33, 47, 60, 60, 64, 100,
                               rng.randrange(0, 200), rng.randrange(0, 1515)])
                   for _ in range(n_frames)]
    frames = [_frame(rng, n) for n in lengths]
    plans = []
    place_base = SLOT * (2 * n_frames + 8)
    cursor = place_base
    for n in lengths:
        jobs, cursor = plan(rng, n, cursor, p_place)
        events = [_random_event(rng) for _ in range(rng.random() < p_event and 2)]
        plans.append((events, jobs))
    tail_events = [_random_event(rng) for _ in range(2)]
    fills = sum(kind in _FILL for _, jobs in plans for kind, _ in jobs)
    # Descriptors: fetch errors among them; good one g sized for ... anything.
    entries = []
    good = 0
    while good < fills:
        k = len(entries)
        if rng.random() < p_error:
            entries.append({"error": 1, "index": k % 4096, "ring_addr": RING_BASE + 16 * k})
            continue
        good += 1
        size = rng.choice([0, 40, 100, 1600, 0xFFFF_FFFF, rng.randrange(0, 1600)])
        entries.append({"error": 0, "index": k % 4096, "ring_addr": RING_BASE + 16 * k,
                        "addr": SLOT * k + rng.choice([0, rng.randrange(0, beat)]),
                        "size": size})
    memory_bytes = cursor + 4096
    memory = bytearray(rng.randbytes(memory_bytes))
    initial = bytes(memory)
    error_pages = {(SLOT * k) & ~0xFFF for k in error_rx} | {
        (place_base + off) & ~0xFFF for off in error_place}

    dut = _Harness(data_bits)
    buf, wr = dut.buffer, dut.writer
    server = WriteServer(wr.dma, memory, beat, seed=seed + 1, p_ready=p_server,
                         latency=latency, error_pages=error_pages)
    st = {"records": [], "taken_jobs": [], "events": [], "failed": [], "frees": [],
          "counts": dict.fromkeys(OUR_COUNTERS, 0), "other_counts": 0, "frame_data": 0,
          "consumes": 0, "completions": 0, "event_completions": [], "beats_out": [],
          "left_over": [], "gave_back": 0, "jobs_done": False, "desc_taken": 0,
          "consume_mismatch": 0, "outstanding": set(), "free_errors": [], "drops": 0,
          "job_cycles": []}
    expected_frees = len(frames)
    max_cycles = 4 * (sum(lengths) // 8 + 30 * len(lengths)) + 3000

    async def producer(ctx):
        """The MAC side: frames in order, paced so the packet buffer never drops one (fewer
        than 32 frames and 40000 bytes waiting)."""
        ctx.set(buf.enable, 1)
        ctx.set(buf.running, 1)
        ctx.set(buf.posted, 4000)
        await ctx.tick().repeat(2)
        statuses = deque()
        cycle = 2
        for n, frame in enumerate(frames):
            while (n - len(st["frees"]) >= 32
                   or sum(len(f) + 64 for f in frames[len(st["frees"]):n]) > 40000):
                ctx.set(buf.i.valid, 0)
                await ctx.tick()
                cycle += 1
                await _statuses(ctx, statuses, cycle)
            status, _ = _status_and_summary(frame)
            for word, keep, last in _mac_beats(frame, rng):
                ctx.set(buf.i.payload, {"data": word, "keep": keep, "last": last})
                ctx.set(buf.i.valid, 1)
                await _statuses(ctx, statuses, cycle)
                await ctx.tick()
                cycle += 1
            statuses.append((cycle + rng.randrange(1, 6), status))
            ctx.set(buf.i.valid, 0)
            for _ in range(rng.choice(gaps)):
                await _statuses(ctx, statuses, cycle)
                await ctx.tick()
                cycle += 1
        while statuses:
            await _statuses(ctx, statuses, cycle)
            await ctx.tick()
            cycle += 1
        ctx.set(buf.status.valid, 0)

    async def _statuses(ctx, statuses, cycle):
        if statuses and statuses[0][0] <= cycle:
            ctx.set(buf.status.payload,
                    data.Layout.cast(RxStatus).from_bits(statuses.popleft()[1]))
            ctx.set(buf.status.valid, 1)
        else:
            ctx.set(buf.status.valid, 0)

    async def job_source(ctx):
        """The receive engine: takes each frame, hands out its jobs with random gaps, gives the
        claim of a frame without a fill back itself."""
        jrng = random.Random(seed + 4)
        queue = deque()             # (kind, payload const, job description)
        owed = 0                    # claims to give back
        n = 0
        offering = False
        cycle = 0

        def enqueue_frame(record):
            nonlocal owed, n
            events, jobs = plans[n]
            for ev in events:
                queue.append((RxJobKind.EVENT, {"kind": RxJobKind.EVENT, "event": ev},
                              ("event", ev)))
            if not any(kind in _FILL for kind, _ in jobs):
                owed += 1
            for kind, fields in jobs:
                payload = {"kind": kind, "frame": record, "free": int(fields["free"]),
                           "conn_nbr": fields["conn_nbr"]}
                named = fields.get("named")
                if named is not None:
                    payload["event"] = {"kind": named["kind"], "tag": named["tag"],
                                        "detail": named["detail"]}
                piece = fields.get("piece")
                if piece is not None:
                    payload.update(offset=piece.offset, length=piece.length, addr=piece.addr)
                queue.append((kind, payload, (n, kind, fields)))
            st["records"].append(record)
            st["outstanding"].add(int(record.slot))
            n += 1

        while True:
            take_frame = int((len(queue) < 6 or cycle < hold_jobs) and n < len(frames))
            ctx.set(buf.frame.ready, take_frame)
            if queue and cycle >= hold_jobs and (offering or jrng.random() < p_job):
                if not offering:
                    ctx.set(wr.jobs.payload, data.Layout.cast(RxJob).const(queue[0][1]))
                offering = True
                ctx.set(wr.jobs.valid, 1)
            else:
                ctx.set(wr.jobs.valid, 0)
            ctx.set(dut.give_back, int(owed > 0))
            (_, _, f_valid, f_payload, j_valid, j_ready, consume,
             kind) = await ctx.tick().sample(buf.frame.valid, buf.frame.payload, wr.jobs.valid,
                                             wr.jobs.ready, wr.consume, wr.jobs.payload.kind)
            cycle += 1
            assert cycle < max_cycles, f"jobs still waiting after {cycle} clocks: a deadlock"
            if owed and not consume:
                owed -= 1
                st["gave_back"] += 1
            if j_valid and j_ready:
                st["taken_jobs"].append(queue.popleft()[2])
                st["job_cycles"].append(cycle)
                offering = False
                if consume != (kind in _FILL):
                    st["consume_mismatch"] += 1
            elif consume:
                st["consume_mismatch"] += 1
            st["consumes"] += consume
            if f_valid and take_frame:
                enqueue_frame(data.Layout.cast(RxStagedFrame).from_bits(
                    f_payload.as_value().value))
            if n == len(frames) and not queue and not owed:
                break
        for ev in tail_events:
            queue.append((RxJobKind.EVENT, {"kind": RxJobKind.EVENT, "event": ev},
                          ("event", ev)))
        while queue:
            ctx.set(wr.jobs.payload, data.Layout.cast(RxJob).const(queue[0][1]))
            ctx.set(wr.jobs.valid, 1)
            ready = 0
            while not ready:
                _, _, ready = await ctx.tick().sample(wr.jobs.ready)
                cycle += 1
                assert cycle < max_cycles, f"jobs still waiting after {cycle} clocks"
            st["taken_jobs"].append(queue.popleft()[2])
        ctx.set(wr.jobs.valid, 0)
        st["jobs_done"] = True

    async def descriptor_source(ctx):
        drng = random.Random(seed + 2)
        offering = False
        while True:
            k = st["desc_taken"]
            if k < len(entries) and (offering or drng.random() < p_desc):
                offering = True
                e = entries[k]
                entry = pack(RxDescriptor, {"addr": e.get("addr", 0), "size": e.get("size", 0),
                                            "reserved": 0})
                ctx.set(wr.descriptors.payload, {"entry": entry, "index": e["index"],
                                                 "addr": e["ring_addr"], "error": e["error"]})
                ctx.set(wr.descriptors.valid, 1)
            else:
                ctx.set(wr.descriptors.valid, 0)
            _, _, valid, ready = await ctx.tick().sample(wr.descriptors.valid,
                                                         wr.descriptors.ready)
            if valid and ready:
                st["desc_taken"] += 1
                offering = False

    async def sinks(ctx):
        """Events and place_failed with random backpressure; ends once all is out and quiet."""
        srng = random.Random(seed + 3)
        quiet = 0
        cycle = 0
        noted = False
        while True:
            ev_ready = int(srng.random() < p_sink)
            pf_ready = int(srng.random() < p_failed)
            ctx.set(wr.events.ready, ev_ready)
            ctx.set(wr.place_failed.ready, pf_ready)
            (_, _, valid, payload, pf_valid, pf_payload) = await ctx.tick().sample(
                wr.events.valid, wr.events.payload, wr.place_failed.valid,
                wr.place_failed.payload)
            if valid and not noted:
                st["event_completions"].append(st["completions"])
                noted = True
            if valid and ev_ready:
                st["events"].append({name: int(getattr(payload, name)) for name in
                                     (*_EVENT_FIELDS, "reserved0", "reserved1", "phase")})
                noted = False
            if pf_valid and pf_ready:
                st["failed"].append(int(pf_payload))
            quiet = 0 if valid or pf_valid or not st["jobs_done"] else quiet + 1
            cycle += 1
            assert cycle < max_cycles, f"events still coming after {cycle} clocks"
            if st["jobs_done"] and quiet > 300:
                break
        for name, sig in (("frame", buf.frame.valid), ("beats", buf.beats.valid),
                          ("req", wr.dma.req.valid), ("data", wr.dma.data.valid),
                          ("events", wr.events.valid), ("jobs", wr.jobs.ready)):
            if ctx.get(sig):
                st["left_over"].append(name)

    async def monitor(ctx):
        cycle = 0
        while True:
            (*_, count, fd, free_valid, free_slot, done_valid, done_ready, w_valid, w_ready,
             drops) = await ctx.tick().sample(
                wr.count, wr.frame_data, wr.free.valid, wr.free.payload, wr.dma.done.valid,
                wr.dma.done.ready, wr.dma.data.valid, wr.dma.data.ready,
                buf.drop_no_buffer | buf.drop_overflow | buf.drop_oversize)
            cycle += 1
            for name, _ in data.Layout.cast(HostCounterPulses):
                bit = int(getattr(count, name))
                if name in OUR_COUNTERS:
                    st["counts"][name] += bit
                else:
                    st["other_counts"] += bit
            st["frame_data"] += fd
            st["drops"] += drops
            if free_valid:
                if free_slot not in st["outstanding"]:
                    st["free_errors"].append((cycle, free_slot))
                st["outstanding"].discard(free_slot)
                st["frees"].append(free_slot)
            if done_valid and done_ready:
                st["completions"] += 1
            if w_valid and w_ready:
                st["beats_out"].append(cycle)

    run_testbenches(dut, producer, job_source, sinks,
                    processes=[server.run, descriptor_source, monitor])
    st.update(server=server, memory=memory, initial=initial, error_pages=error_pages)
    _check(st, frames, entries, beat, expected_frees)
    return st


def _check(st, frames, entries, beat, expected_frees):
    """The model: what the jobs taken must have done, against what the run left behind."""
    server = st["server"]
    error_pages = st["error_pages"]
    assert server.violations == []
    assert not server.open and not server.done, "a write left unfinished"
    assert st["drops"] == 0, "the packet buffer dropped a frame: the test paces too fast"
    assert st["other_counts"] == 0
    assert st["consume_mismatch"] == 0, "consume not exactly with each fill's take"

    expected = bytearray(st["initial"])
    events = []                     # (event, writes before it, including its own)
    failed = []
    counts = dict.fromkeys(OUR_COUNTERS, 0)
    frame_data = 0
    requests = []
    desc = deque(entries[:st["desc_taken"]])
    fetch_errors = []               # fetch-error events, in descriptor order, among the fills

    def write(addr, payload):
        """Bytes outside error pages are written; the request fails if any beat hit one."""
        lo = addr - addr % beat
        hi = -(-(addr + len(payload)) // beat) * beat
        requests.append((lo, (hi - lo) // beat))
        for k, byte in enumerate(payload):
            if ((addr + k) & ~0xFFF) not in error_pages:
                expected[addr + k] = byte
        return any((b & ~0xFFF) in error_pages for b in range(lo, hi, beat))

    writes = 0
    for job in st["taken_jobs"]:
        if job[0] == "event":
            events.append(({k: job[1][k] for k in _EVENT_FIELDS}, writes))
            continue
        n, kind, fields = job
        frame = frames[n]
        record = st["records"][n]
        if kind == RxJobKind.PLACE:
            piece = fields["piece"]
            writes += 1
            if write(piece.addr, frame[piece.offset:piece.offset + piece.length]):
                failed.append(fields["conn_nbr"])
            continue
        while desc[0]["error"]:
            e = desc.popleft()
            fetch_errors.append(({"kind": EventKind.ERROR.value, "ring": RingId.RX.value,
                                  "index": e["index"], "length": 0,
                                  "code": EventCode.DMA_ERROR.value, "tag": 0,
                                  "detail": e["ring_addr"] & 0x7FFF_FFFF}, len(events)))
        e = desc.popleft()
        fd = kind == RxJobKind.FRAME_DATA
        event = {"kind": (EventKind.FRAME_DATA if fd else EventKind.RX).value,
                 "ring": RingId.RX.value, "index": e["index"], "length": len(frame),
                 "tag": int(record.tcp.seq if fd else record.summary.hash),
                 "detail": fields["conn_nbr"] if fd else 0}
        named = fields.get("named")
        if named:
            event.update(named)
        if e["size"] < RX_SUMMARY_BYTES + len(frame):
            event["code"] = EventCode.BUFFER_TOO_SMALL.value
            counts["rx_drop_too_small"] += 1
        else:
            writes += 1
            addr = e["addr"] - e["addr"] % beat
            summary = int(record.summary.as_value().value).to_bytes(RX_SUMMARY_BYTES, "little")
            if write(addr, summary + frame):
                event["code"] = EventCode.DMA_ERROR.value
                if not fd and not named:
                    event["detail"] = addr & 0x7FFF_FFFF
                counts["rx_drop_dma_error"] += 1
            else:
                event["code"] = EventCode.OK.value
                if fd:
                    frame_data += 1
                else:
                    counts["rx_to_host"] += 1
        events.append((event, writes))
    while desc:                     # fetch errors taken after the last fill
        e = desc.popleft()
        assert e["error"], "a good descriptor taken with no fill for it"
        fetch_errors.append(({"kind": EventKind.ERROR.value, "ring": RingId.RX.value,
                              "index": e["index"], "length": 0,
                              "code": EventCode.DMA_ERROR.value, "tag": 0,
                              "detail": e["ring_addr"] & 0x7FFF_FFFF}, len(events)))

    got = st["events"]
    for e in got:
        assert e["reserved0"] == 0 and e["reserved1"] == 0 and e["phase"] == 0, e
    got = [{k: e[k] for k in _EVENT_FIELDS} for e in got]
    # Fetch errors: in descriptor order, each no later than the first fill after it.
    got_errors = [(n, e) for n, e in enumerate(got) if e["kind"] == EventKind.ERROR.value]
    assert [e for _, e in got_errors] == [e for e, _ in fetch_errors]
    rest = [e for e in got if e["kind"] != EventKind.ERROR.value]
    for n, (g, (x, _)) in enumerate(zip(rest, events)):
        assert g == x, f"event {n}: got {g}, expected {x}"
    assert len(rest) == len(events)
    position = {}                   # an event of ``rest`` -> its place in ``got``
    k = 0
    for n, e in enumerate(got):
        if e["kind"] != EventKind.ERROR.value:
            position[k] = n
            k += 1
    for (n, _), (_, before) in zip(got_errors, fetch_errors):
        if before < len(events):
            assert n < position[before], "a fetch error after the fill that followed it"
    # Each event after the completions of every write before it (fetch errors have none).
    completions = [c for c, e in zip(st["event_completions"], st["events"])
                   if e["kind"] != EventKind.ERROR.value]
    for n, ((_, writes_before), seen) in enumerate(zip(events, completions)):
        assert seen >= writes_before, f"event {n} before the writes before it completed"

    assert st["failed"] == failed
    assert st["counts"] == counts
    assert st["frame_data"] == frame_data
    assert server.requests == requests
    assert st["free_errors"] == [], f"slots freed twice or never held: {st['free_errors']}"
    assert len(st["frees"]) == expected_frees and not st["outstanding"]
    assert st["consumes"] == sum(job[0] != "event" and job[1] in _FILL
                                 for job in st["taken_jobs"])
    if st["memory"] != expected:
        bad = next(i for i in range(len(expected)) if st["memory"][i] != expected[i])
        raise AssertionError(f"host memory differs first at {bad:#x}: got "
                             f"{st['memory'][bad]:#04x}, expected {expected[bad]:#04x}")
    assert st["left_over"] == [], f"left over at the end: {st['left_over']}"
    return failed, counts


# --- Tests ----------------------------------------------------------------------------------------

@WIDTHS
def test_random_jobs_with_backpressure_and_errors(data_bits):
    """Every kind of job mixed, pieces of every size and alignment, error pages among the RX
    buffers and the placements, backpressure everywhere."""
    st = _run(data_bits, seed=data_bits, n_frames=90, error_rx=(7, 30),
              error_place=(0x1000, 0x3000))
    kinds = [job[1] for job in st["taken_jobs"] if job[0] != "event"]
    assert kinds.count(RxJobKind.PLACE) >= 30 and kinds.count(RxJobKind.FRAME_DATA) >= 8
    assert st["failed"], "no placement hit an error page"
    assert st["counts"]["rx_drop_dma_error"] and st["counts"]["rx_drop_too_small"]
    assert st["frame_data"]


def test_placements_only_fast_host():
    """Only placements, the host always ready: pieces of every alignment back to back."""
    _run(128, seed=5, n_frames=60, p_place=1.0, p_event=0.1, p_server=1.0, latency=(4, 4),
         p_sink=1.0, p_job=1.0)


# --- Throughput ----------------------------------------------------------------------------------

def _payload_plan(addr_lo, beat):
    """Each frame one PLACE of its bytes from 54 on (the payload of a TCP/IPv4 frame without
    options) to an address ``addr_lo`` past a beat boundary."""
    def plan(rng, length, cursor, p_place):
        addr = -(-cursor // beat) * beat + addr_lo
        piece = Piece(54, length - 54, addr)
        return [(RxJobKind.PLACE, {"piece": piece, "free": True, "conn_nbr": 1})], \
            addr + length + beat
    return plan


def _backlog(data_bits, length, addr_lo, n=30):
    """``n`` frames of ``length`` bytes wait in the packet buffer, their jobs held; then the jobs
    go, the host always ready. Returns the clocks per job from the first data beat to the last,
    and the beats per job."""
    beat = data_bits // 8
    st = _run(data_bits, seed=length + addr_lo, n_frames=n, p_place=1.0, p_event=0.0,
              p_error=0.0, p_server=1.0, latency=(8, 8), p_sink=1.0, p_job=1.0,
              lengths=[length] * n, gaps=(0,), plan=_payload_plan(addr_lo, beat),
              hold_jobs=n * (length // 8 + 4) + 100)
    cycles = st["beats_out"]
    beats = len(cycles) / n
    return (cycles[-1] - cycles[0] + 1) / n, beats


@pytest.mark.parametrize("data_bits,addr_lo", [
    (128, 0), (128, 6), (128, 10), (128, 15), (64, 5), (256, 31)])
def test_one_beat_placements_with_a_backlog(data_bits, addr_lo):
    """60-byte frames, each a 6-byte payload placed at ``addr % W == addr_lo``: with a backlog
    a placement leaves every 3 clocks or less (2.2 to 3 measured: the words of a job are asked
    for as it reaches the head of ``jobs`` and take 5 clocks to come, and a slot is taken again
    3 clocks after its last beat; the wire brings a 60-byte frame every 10.5)."""
    per_job, beats = _backlog(data_bits, 60, addr_lo)
    print(f"\n{data_bits} bits, addr % W = {addr_lo}: {per_job:.2f} clocks per placement, "
          f"{beats:.1f} beats")
    assert per_job <= 3


@pytest.mark.parametrize("addr_lo,extra", [(6, 0), (0, 0), (15, 0)])
def test_long_placements_back_to_back(addr_lo, extra):
    """1514-byte frames, their 1460-byte payloads placed (128 bits; the payload at 6 bytes into
    its packet-buffer word): one beat a clock and no idle clock between pieces, also at
    ``addr % 16 == 0``, where a piece's first word only loads the previous-word register (in the
    clock the piece before sends its last beat from that register)."""
    per_job, beats = _backlog(128, 1514, addr_lo, n=6)
    print(f"\naddr % 16 = {addr_lo}: {per_job:.2f} clocks per placement, {beats:.1f} beats")
    assert beats == -(-(addr_lo + 1460) // 16)
    assert per_job <= beats + extra
