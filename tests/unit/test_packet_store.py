"""PacketStore (hw/lib/packet_store.py) against a Python model: frames written, committed or
aborted; read back by request in any order (some again); freed oldest first once read."""

import random

import pytest

from hw.lib.packet_store import PacketStore

from .amaranth_sim import run_testbenches

WIDTH = 32


@pytest.mark.parametrize("seed, depth, p_ready", [(1, 64, 1.0), (2, 64, 0.6), (3, 256, 0.8)])
def test_packet_store(seed, depth, p_ready):
    rng = random.Random(seed)
    dut = PacketStore(width=WIDTH, depth=depth)
    frames = []                 # committed: dict(addr, words, data, read)
    st = {"done": False, "requests": [], "aborted": 0, "reads": 0, "full_seen": 0}

    async def writer(ctx):
        used = 0                # words written and not freed (the model of w_free)
        freed = [0]             # frames freed, oldest first

        def frees():
            """Words of the oldest frames that have been read (the owner frees them)."""
            n = 0
            while freed[0] < len(frames) and frames[freed[0]]["read"]:
                n += frames[freed[0]]["words"]
                freed[0] += 1
            return n

        async def clock(w_en=0, commit=0, abort_words=0):
            nonlocal used
            free = frees()
            ctx.set(dut.free_words, free)
            ctx.set(dut.w_en, w_en)
            ctx.set(dut.w_commit, commit)
            ctx.set(dut.w_abort, int(abort_words > 0))
            await ctx.tick()
            used += w_en - free - abort_words
            assert ctx.get(dut.w_free) == depth - used

        for _ in range(120):
            length = rng.randrange(1, depth // 4)
            abort = rng.random() < 0.15
            start = ctx.get(dut.w_addr)
            words = []
            for k in range(length):
                while not ctx.get(dut.w_free):
                    st["full_seen"] += 1
                    await clock()
                word = rng.getrandbits(WIDTH)
                words.append(word)
                ctx.set(dut.w_data, word)
                await clock(w_en=1, commit=int(k == length - 1 and not abort))
            if abort:
                await clock(abort_words=length)
                st["aborted"] += 1
                assert ctx.get(dut.w_addr) == start
            else:
                frames.append({"addr": start, "words": length, "data": words, "read": False})
        st["done"] = True
        while not all(f["read"] for f in frames):
            await clock()
        await clock()
        assert ctx.get(dut.w_free) == depth, "space not given back"

    async def requester(ctx):
        while not (st["done"] and all(f["read"] for f in frames)):
            # A random committed frame, unread ones first (in any order); sometimes one again.
            unread = [f for f in frames if not f["read"] and not f.get("pending")]
            if not unread:
                await ctx.tick()
                continue
            f = rng.choice(unread[:4])
            first = rng.randrange(f["words"])
            count = rng.randrange(1, f["words"] - first + 1)
            if rng.random() < 0.5:
                first, count = 0, f["words"]
            f["pending"] = f.get("pending", 0) + 1
            f["whole"] = f.get("whole", False) or count == f["words"]
            st["requests"].append((f, first, count))
            ctx.set(dut.r_req.payload.addr, (f["addr"] + first) % depth)
            ctx.set(dut.r_req.payload.words, count)
            ctx.set(dut.r_req.valid, 1)
            await ctx.tick().until(dut.r_req.ready)
            ctx.set(dut.r_req.valid, 0)

    async def reader(ctx):
        crng = random.Random(seed + 1)
        k = 0
        while not (st["done"] and all(f["read"] for f in frames)):
            if k >= len(st["requests"]):
                await ctx.tick()
                continue
            f, first, count = st["requests"][k]
            got = []
            while len(got) < count:
                ready = int(crng.random() < p_ready)
                ctx.set(dut.r.ready, ready)
                _, _, valid, word = await ctx.tick().sample(dut.r.valid, dut.r.payload)
                if ready and valid:
                    got.append(word.data)
                    assert word.last == (len(got) == count), (k, len(got), count)
            ctx.set(dut.r.ready, 0)
            assert got == f["data"][first:first + count], f"request {k}"
            f["pending"] -= 1
            # Freed only once read whole and with no request of it left.
            if f["whole"] and not f["pending"]:
                f["read"] = True
            st["reads"] += 1
            k += 1

    run_testbenches(dut, writer, requester, reader)
    assert st["reads"] >= len(frames)
    assert st["aborted"] > 0
    assert st["full_seen"] > 0, "the store never filled"
