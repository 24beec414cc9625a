"""The DMA client model (tests/unit/dma_model.py) on its own: a scripted client against it."""

import random

from amaranth import Module, Signal

from hw.host.dma import DmaReadSignature, DmaWriteSignature

from .amaranth_sim import run_testbenches
from .dma_model import ReadServer, WriteServer

BEAT = 16


def _design():
    """An empty design with a sync domain: the ports under test live in the testbenches."""
    m = Module()
    m.d.sync += Signal().eq(1)
    return m


def test_read_server_returns_memory_in_request_order_with_error_pages():
    memory = bytearray(random.Random(1).randbytes(0x3000))
    port = DmaReadSignature(data_bits=8 * BEAT).flip().create()
    server = ReadServer(port, memory, BEAT, seed=2, error_pages={0x1000})
    requests = [(0x0FE0, 4), (0x20, 1), (0x2000, 3)]    # the first crosses into the error page
    got = []

    async def client(ctx):
        ctx.set(port.resp.ready, 1)
        for addr, beats in requests:
            ctx.set(port.req.payload, {"addr": addr, "beats": beats})
            ctx.set(port.req.valid, 1)
            while not (await ctx.tick().sample(port.req.ready))[2]:
                pass
        ctx.set(port.req.valid, 0)
        while len(got) < 8:
            _, _, valid, payload = await ctx.tick().sample(port.resp.valid, port.resp.payload)
            if valid:
                got.append((int(payload.data), int(payload.last), int(payload.error)))

    run_testbenches(_design(), client, processes=[server.run])
    expected = []
    for addr, beats in requests:
        for k in range(beats):
            a = addr + k * BEAT
            error = 0x1000 <= a < 0x2000
            word = 0 if error else int.from_bytes(memory[a:a + BEAT], "little")
            expected.append((word, int(k == beats - 1), int(error)))
    assert got == expected
    assert server.requests == requests and server.violations == []


def test_write_server_applies_strobes_and_answers_in_order():
    memory = bytearray(0x3000)
    port = DmaWriteSignature(data_bits=8 * BEAT).flip().create()
    server = WriteServer(port, memory, BEAT, seed=3, error_pages={0x2000})
    done = []

    async def requester(ctx):
        for addr, beats in [(0x100, 2), (0x2000, 1), (0x10, 1)]:
            ctx.set(port.req.payload, {"addr": addr, "beats": beats})
            ctx.set(port.req.valid, 1)
            while not (await ctx.tick().sample(port.req.ready))[2]:
                pass
        ctx.set(port.req.valid, 0)

    async def writer(ctx):
        beats = [(0x11 * (k + 1), (1 << BEAT) - 1) for k in range(3)] + [(0xAABB, 0b10)]
        for word, strb in beats:
            ctx.set(port.data.payload, {"data": word, "strb": strb})
            ctx.set(port.data.valid, 1)
            while not (await ctx.tick().sample(port.data.ready))[2]:
                pass
        ctx.set(port.data.valid, 0)
        ctx.set(port.done.ready, 1)
        while len(done) < 3:
            _, _, valid, payload = await ctx.tick().sample(port.done.valid, port.done.payload)
            if valid:
                done.append(int(payload.error))

    run_testbenches(_design(), requester, writer, processes=[server.run])
    assert done == [0, 1, 0]
    assert memory[0x100:0x110] == (0x11).to_bytes(BEAT, "little")
    assert memory[0x110:0x120] == (0x22).to_bytes(BEAT, "little")
    assert memory[0x2000:0x2010] == bytes(BEAT)          # error page: not written
    assert memory[0x10:0x20] == bytes([0, 0xAA]) + bytes(BEAT - 2)
    assert server.violations == []
