"""SipHash (hw/lib/siphash.py) against the golden model sim/reference/siphash.py.

A producer offers random requests (message, tag, and the key to hash it under, set on the key port
while the request is offered) with random idle gaps; a consumer takes results with random
backpressure. Every result is compared in order with the model, under the key of its own request,
and nothing may be left over, lost or duplicated. Separate tests measure the latency and the
throughput with the output always ready, and check the published vector for one length.
"""

import gc
import random
import warnings

import pytest
from amaranth import unsigned
from amaranth.hdl import UnusedElaboratable
from amaranth.lib import data

from hw.lib.siphash import SipHash
from sim.reference.siphash import siphash
from sim.reference.siphash_vectors import KEY, SIP64, message

from .amaranth_sim import run_testbenches

TAG_BITS = 10


def _key_int(key):
    return int.from_bytes(key, "little")


def _bits(value):
    """A tag port as plain bits (a struct tag is a view)."""
    return value.as_value() if isinstance(value, data.View) else value


def _run(dut, requests, *, p_gap=0.0, p_stall=0.0, seed=0, max_cycles=None):
    """Feed ``requests`` (message bytes, tag, key bytes); return the results in the order they
    came out, each ``(hash, tag)``, the cycle each was taken, and the clocks a request was offered
    while ``i.ready`` was low."""
    rng = random.Random(seed)
    results = []
    cycles = []
    refused = [0]
    limit = max_cycles or 20 * (len(requests) + dut.latency) + 100

    async def producer(ctx):
        for msg, tag, key in requests:
            while rng.random() < p_gap:
                await ctx.tick()
            ctx.set(dut.i.payload.message, int.from_bytes(msg, "little"))
            if tag is not None:
                ctx.set(_bits(dut.i.payload.tag), tag)
            ctx.set(dut.key, _key_int(key))
            ctx.set(dut.i.valid, 1)
            while True:
                _, _, ready = await ctx.tick().sample(dut.i.ready)
                if ready:
                    break
                refused[0] += 1
            ctx.set(dut.i.valid, 0)
            # The key port may change at once: the request just accepted has sampled it.
            ctx.set(dut.key, _key_int(rng.randbytes(16)))

    async def consumer(ctx):
        cycle = 0
        tagged = dut.tag_shape is not None
        while len(results) < len(requests) and cycle < limit:
            ready = int(rng.random() >= p_stall)
            ctx.set(dut.o.ready, ready)
            _, _, valid, hash_value, tag = await ctx.tick().sample(
                dut.o.valid, dut.o.payload.hash,
                _bits(dut.o.payload.tag) if tagged else dut.o.payload.hash)
            if valid and ready:
                results.append((hash_value, tag if tagged else None))
                cycles.append(cycle)
            cycle += 1
        # Nothing more comes out afterwards.
        ctx.set(dut.o.ready, 1)
        for _ in range(dut.latency + 4):
            _, _, valid = await ctx.tick().sample(dut.o.valid)
            assert not valid, "a result nobody asked for"

    run_testbenches(dut, producer, consumer)
    return results, cycles, refused[0]


def _random_requests(rng, dut, n, *, key_every=None):
    key = rng.randbytes(16)
    requests = []
    for index in range(n):
        if key_every and index % key_every == 0:
            key = rng.randbytes(16)
        tag = rng.getrandbits(TAG_BITS) if dut.tag_shape is not None else None
        requests.append((rng.randbytes(dut.message_bytes), tag, key))
    return requests


def _expected(dut, requests):
    return [(siphash(key, msg, dut.c_rounds, dut.d_rounds), tag) for msg, tag, key in requests]


CONFIGS = [
    # (message_bytes, c, d, stages_per_round)
    (12, 2, 4, 2),
    (36, 2, 4, 2),
    (36, 1, 3, 2),
    (13, 2, 4, 2),     # a tail of 5 bytes in the last word
    (12, 2, 4, 1),
    (21, 1, 3, 1),
]


@pytest.mark.parametrize("message_bytes, c, d, spr", CONFIGS)
def test_random_against_model_with_backpressure(message_bytes, c, d, spr):
    dut = SipHash(message_bytes=message_bytes, c_rounds=c, d_rounds=d, stages_per_round=spr,
                  tag_shape=unsigned(TAG_BITS))
    rng = random.Random(message_bytes * 100 + c * 10 + d + spr)
    requests = _random_requests(rng, dut, 400, key_every=7)
    results, _, _ = _run(dut, requests, p_gap=0.3, p_stall=0.4, seed=rng.random())
    assert results == _expected(dut, requests)


@pytest.mark.parametrize("message_bytes, c, d, spr", [(12, 2, 4, 2), (36, 2, 4, 2), (36, 1, 3, 1)])
def test_one_result_per_clock(message_bytes, c, d, spr):
    # Back-to-back requests, output always ready: N requests in N + latency clocks, i.ready never
    # falls, and every request under a key of its own.
    dut = SipHash(message_bytes=message_bytes, c_rounds=c, d_rounds=d, stages_per_round=spr)
    rng = random.Random(5)
    n = 3 * dut.latency
    requests = [(rng.randbytes(message_bytes), None, rng.randbytes(16)) for _ in range(n)]
    results, cycles, refused = _run(dut, requests)
    assert results == _expected(dut, requests)
    assert cycles == list(range(dut.latency, dut.latency + n))
    assert refused == 0


@pytest.mark.parametrize("stall", [0.0, 0.6])
def test_unbuffered_output(stall):
    """buffered_output=False (the CCB table's core): one clock less latency, the same results in
    order under stalls, one per clock without them."""
    dut = SipHash(message_bytes=36, c_rounds=1, d_rounds=3, tag_shape=unsigned(TAG_BITS),
                  buffered_output=False)
    buffered = SipHash(message_bytes=36, c_rounds=1, d_rounds=3)
    buffered._MustUse__silence = True       # only its latency is wanted
    assert dut.latency == buffered.latency - 1
    rng = random.Random(23)
    requests = _random_requests(rng, dut, 3 * dut.fifo_depth, key_every=5)
    results, cycles, refused = _run(dut, requests, p_stall=stall, seed=4)
    assert results == _expected(dut, requests)
    if not stall:
        assert cycles == list(range(dut.latency, dut.latency + len(requests)))
        assert refused == 0


@pytest.mark.parametrize("spr", [1, 2])
def test_latency_is_as_declared(spr):
    dut = SipHash(message_bytes=12, stages_per_round=spr)
    _, cycles, _ = _run(dut, [(bytes(12), None, KEY)])
    assert cycles == [dut.latency]


def test_latency_figures():
    # The figures docs/siphash.md gives.
    with warnings.catch_warnings():
        # Built to read their latency, never elaborated.
        warnings.simplefilter("ignore", UnusedElaboratable)
        assert SipHash(message_bytes=12).latency == 19
        assert SipHash(message_bytes=36).latency == 31
        assert SipHash(message_bytes=36, c_rounds=1, d_rounds=3).latency == 19
        assert SipHash(message_bytes=36, stages_per_round=1).latency == 17
        gc.collect()


@pytest.mark.parametrize("n", [0, 7, 8, 15, 63])
def test_published_vectors(n):
    dut = SipHash(message_bytes=n)
    results, _, _ = _run(dut, [(message(n), None, KEY)])
    assert results == [(int.from_bytes(SIP64[n], "little"), None)]


def test_key_change_between_back_to_back_requests():
    # The key changes on every clock while requests go in back to back, and after each: each
    # result is under the key present when its request was accepted.
    dut = SipHash(message_bytes=12, tag_shape=8)
    rng = random.Random(9)
    requests = [(rng.randbytes(12), i, rng.randbytes(16)) for i in range(40)]
    results, _, _ = _run(dut, requests)
    assert results == _expected(dut, requests)


def test_full_core_under_long_stall_loses_nothing():
    # The consumer stalls far longer than the core can hold: i.ready must fall and rise again.
    dut = SipHash(message_bytes=36, c_rounds=1, d_rounds=3, tag_shape=unsigned(TAG_BITS))
    rng = random.Random(11)
    requests = _random_requests(rng, dut, 3 * dut.fifo_depth)
    results, _, refused = _run(dut, requests, p_stall=0.9, seed=3)
    assert results == _expected(dut, requests)
    assert refused > 0


def test_struct_tag_travels_with_its_hash():
    tag_layout = data.StructLayout({"id": 6, "family": 1})
    dut = SipHash(message_bytes=36, c_rounds=1, d_rounds=3, tag_shape=tag_layout)
    rng = random.Random(2)
    requests = [(rng.randbytes(36), rng.getrandbits(7), rng.randbytes(16)) for _ in range(30)]
    results, _, _ = _run(dut, requests, p_gap=0.2, p_stall=0.3, seed=4)
    assert results == _expected(dut, requests)


def test_bad_arguments():
    with warnings.catch_warnings():
        # The refused objects exist (Elaboratable.__new__ ran) but are never elaborated.
        warnings.simplefilter("ignore", UnusedElaboratable)
        with pytest.raises(ValueError, match="message_bytes"):
            SipHash(message_bytes=-1)
        with pytest.raises(ValueError, match="c_rounds"):
            SipHash(message_bytes=12, c_rounds=0)
        with pytest.raises(ValueError, match="stages_per_round"):
            SipHash(message_bytes=12, stages_per_round=4)
        with pytest.raises(ValueError, match="tag_shape=None"):
            SipHash(message_bytes=12, tag_shape=0)
        gc.collect()
