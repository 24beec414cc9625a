"""The dispatcher (hw/dispatch/dispatcher.py) with a small CCB table: every frame comes out once,
in order, with the table's answer for its tuple when it names one.

The testbench first inserts connections through the table's command port (their conn_nbrs are
the table's answers), then sends frames of every kind: TCP frames of those connections and of
others, IPv4 and IPv6, TCP frames without a complete header (no lookup), UDP and non-IP frames,
with random gaps on the input and random ``ready`` on the output.
"""

import random

import pytest
from amaranth import Elaboratable, Module
from amaranth.lib import wiring

from hw.ccb.layouts import CcbCommand, CcbOpcode, CcbState, CcbStatus
from hw.ccb.table import CcbTable
from hw.dispatch.dispatcher import Dispatcher
from hw.layouts import L3Type, L4Type, RxStagedFrame, pack

from .amaranth_sim import run_testbenches


class _Harness(Elaboratable):
    def __init__(self, entries):
        self.dispatcher = Dispatcher()
        self.table = CcbTable(entries)

    def elaborate(self, platform):
        m = Module()
        m.submodules.dispatcher = self.dispatcher
        m.submodules.table = self.table
        wiring.connect(m, self.dispatcher.lookup, self.table.lookup)
        wiring.connect(m, self.table.result, self.dispatcher.result)
        return m


def _tuple(rng, ipv6):
    bits = 128 if ipv6 else 32
    return (rng.getrandbits(bits), rng.getrandbits(bits), rng.getrandbits(16),
            rng.getrandbits(16), ipv6)


def _frame(tup, *, l4=L4Type.TCP, complete=True, seq=0):
    """An RxStagedFrame of ``tup`` (src, dst, sport, dport, ipv6)."""
    src, dst, sport, dport, ipv6 = tup
    return pack(RxStagedFrame, {
        "summary": {"length": 60, "l3": (L3Type.IPV6 if ipv6 else L3Type.IPV4).value,
                    "l4": l4.value, "addr_valid": 1, "l4_valid": int(complete),
                    "sport": sport, "dport": dport},
        "tcp": {"src": src, "dst": dst, "seq": seq, "ack": 0, "window": 0},
        "words": 4,
    })


@pytest.mark.parametrize("seed, p_valid, p_ready", [(1, 1.0, 1.0), (2, 0.5, 0.6), (3, 0.9, 0.3)])
def test_dispatcher_order_and_answers(seed, p_valid, p_ready):
    rng = random.Random(seed)
    harness = _Harness(entries=64)
    d, table = harness.dispatcher, harness.table
    known = [_tuple(rng, ipv6=rng.random() < 0.3) for _ in range(12)]
    conn = {}               # tuple -> conn_nbr, from the table's answers
    frames = []             # (tuple, l4, complete header)
    for _ in range(300):
        r = rng.random()
        if r < 0.5:
            tup = rng.choice(known)
            frames.append((tup, L4Type.TCP, True))
        elif r < 0.7:
            frames.append((_tuple(rng, rng.random() < 0.3), L4Type.TCP, True))
        elif r < 0.8:
            frames.append((rng.choice(known), L4Type.TCP, False))   # no complete TCP header
        elif r < 0.9:
            frames.append((rng.choice(known), L4Type.UDP, True))
        else:
            frames.append((rng.choice(known), L4Type.NONE, False))
    st = {"inserted": False, "sent": 0, "got": 0, "result_not_ready": 0}

    async def commands(ctx):
        for t in known:
            src, dst, sport, dport, ipv6 = t
            ctx.set(table.command.payload.as_value(), pack(CcbCommand, {
                "opcode": CcbOpcode.INSERT.value, "state": CcbState.OFFLOADED.value,
                "tuple": {"src": src, "dst": dst, "sport": sport, "dport": dport,
                          "ipv6": ipv6}}))
            ctx.set(table.command.valid, 1)
            await ctx.tick().until(table.command.ready)
            ctx.set(table.command.valid, 0)
            ctx.set(table.response.ready, 1)
            (answer,) = await ctx.tick().sample(table.response.payload).until(
                table.response.valid)
            ctx.set(table.response.ready, 0)
            assert answer.status == CcbStatus.INSERTED, answer
            conn[t] = answer.conn_nbr
        st["inserted"] = True

    async def producer(ctx):
        while not st["inserted"]:
            await ctx.tick()
        for k, (tup, l4, complete) in enumerate(frames):
            ctx.set(d.frames.valid, 0)
            while rng.random() >= p_valid:
                await ctx.tick()
            ctx.set(d.frames.payload.as_value(), _frame(tup, l4=l4, complete=complete, seq=k))
            ctx.set(d.frames.valid, 1)
            await ctx.tick().until(d.frames.ready)
            st["sent"] += 1
        ctx.set(d.frames.valid, 0)

    async def consumer(ctx):
        crng = random.Random(seed + 100)
        while st["got"] < len(frames):
            ready = int(crng.random() < p_ready)
            ctx.set(d.o.ready, ready)
            _, _, valid, out, result_ready = await ctx.tick().sample(
                d.o.valid, d.o.payload, d.result.ready)
            st["result_not_ready"] += not result_ready
            if not (ready and valid):
                continue
            k = st["got"]
            tup, l4, complete = frames[k]
            assert out.frame.tcp.seq == k, f"frame {k} came out as {out.frame.tcp.seq}"
            looked_up = l4 == L4Type.TCP and complete
            assert out.looked_up == looked_up, k
            hit = looked_up and tup in conn
            assert (out.hit, out.conn_nbr) == (hit, conn[tup] if hit else 0), k
            if hit:
                assert out.state == CcbState.OFFLOADED.value, k
            st["got"] += 1
        for _ in range(40):
            _, _, valid = await ctx.tick().sample(d.o.valid)
            assert not valid, "a frame came out twice"

    run_testbenches(harness, commands, producer, consumer)
    assert st["got"] == len(frames)
    assert st["result_not_ready"] == 0


def test_dispatcher_fence_counts_every_frame():
    """``frames_in`` counts each frame as it is taken, looked up or not."""
    rng = random.Random(7)
    harness = _Harness(entries=64)
    d = harness.dispatcher
    kinds = [(_tuple(rng, False), L4Type.TCP, True), (_tuple(rng, False), L4Type.UDP, True),
             (_tuple(rng, True), L4Type.NONE, False)] * 5

    async def producer(ctx):
        for n, (tup, l4, complete) in enumerate(kinds):
            assert ctx.get(d.frames_in) == n
            ctx.set(d.frames.payload.as_value(), _frame(tup, l4=l4, complete=complete))
            ctx.set(d.frames.valid, 1)
            await ctx.tick().until(d.frames.ready)
        ctx.set(d.frames.valid, 0)
        await ctx.tick()
        assert ctx.get(d.frames_in) == len(kinds)

    async def consumer(ctx):
        ctx.set(d.o.ready, 1)
        for _ in range(len(kinds)):
            await ctx.tick().until(d.o.valid)

    run_testbenches(harness, producer, consumer)
