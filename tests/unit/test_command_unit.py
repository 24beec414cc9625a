"""CommandUnit (hw/host/commands.py) against a model of the commands table in
docs/host_interface.md.

A producer sends random ring entries (every opcode, unknown opcodes, every ring byte, fetch
errors) with random pauses; a consumer takes the events with random backpressure. Each event is
compared, in order, with the model's; at each event the ``rx_stop``/``tx_stop`` levels must be
those after its command (the next command cannot have executed: its event would have nowhere to
go); the counters must add up. The fast-path opcodes go to a stand-in receive engine, which
checks what it is given and answers after a random delay with an answer the command's tag
chooses (``COMMAND_DONE`` with a code, or no event).
"""

import random

import pytest

from hw.host.commands import CommandUnit
from hw.layouts import (
    Command,
    CommandOpcode,
    Event,
    EventCode,
    EventKind,
    RingEntry,
    RingId,
    pack,
    unpack,
)

from .amaranth_sim import run_testbenches


def _random_entry(rng, index):
    """(RingEntry bits, the command's opcode) of a random ring entry."""
    choice = rng.random()
    if choice < 0.2:
        opcode = CommandOpcode.NOP.value
    elif choice < 0.7:
        opcode = rng.choice([CommandOpcode.RING_STOP, CommandOpcode.RING_START]).value
    else:
        opcode = rng.randrange(3, 256)
    ring = rng.choice([RingId.RX.value, RingId.TX.value, RingId.RX.value, RingId.TX.value,
                       RingId.COMMAND.value, RingId.EVENT.value, rng.randrange(4, 256)])
    command = pack(Command, {"opcode": opcode, "ring": ring, "tag": rng.getrandbits(16),
                             "arg": rng.getrandbits(32), "addr": rng.getrandbits(64)})
    return pack(RingEntry, {"entry": command, "index": index, "addr": rng.getrandbits(64),
                            "error": int(rng.random() < 0.1)})


FAST_OPCODES = {op.value for op in (CommandOpcode.HANDOUT1, CommandOpcode.HANDOUT2,
                                   CommandOpcode.RCVMDL, CommandOpcode.WINUPDATE,
                                   CommandOpcode.FLUSH, CommandOpcode.CLOSE)}


def _engine_answer(tag):
    """The stand-in engine's answer to a command with ``tag``: (event, code, bad)."""
    return tag >> 4 & 1, tag & 0xF, tag >> 5 & 1


class _Model:
    """docs/host_interface.md, "Commands"."""

    def __init__(self):
        self.stopped = {RingId.RX.value: 0, RingId.TX.value: 0}
        self.commands = self.bad = 0

    def run(self, entry_bits):
        entry = unpack(RingEntry, entry_bits)
        command = unpack(Command, int(entry.entry))
        self.commands += 1
        fields = {"kind": EventKind.COMMAND_DONE.value, "ring": RingId.COMMAND.value,
                  "index": int(entry.index)}
        if entry.error:
            return pack(Event, {**fields, "code": EventCode.DMA_ERROR.value,
                                "detail": int(entry.addr) & 0x7FFFFFFF})
        opcode, ring = int(command.opcode), int(command.ring)
        fields.update(tag=int(command.tag), detail=opcode)
        if opcode == CommandOpcode.NOP.value:
            code = EventCode.OK
        elif opcode in (CommandOpcode.RING_STOP.value, CommandOpcode.RING_START.value):
            if ring in self.stopped:
                self.stopped[ring] = int(opcode == CommandOpcode.RING_STOP.value)
                code = EventCode.OK
            else:
                code = EventCode.BAD_RING
        elif opcode in FAST_OPCODES:
            event, code, bad = _engine_answer(int(command.tag))
            self.bad += bad
            return pack(Event, {**fields, "code": code}) if event else None
        else:
            code = EventCode.UNKNOWN_OPCODE
        if code != EventCode.OK:
            self.bad += 1
        return pack(Event, {**fields, "code": code.value})

    def levels(self):
        return self.stopped[RingId.RX.value], self.stopped[RingId.TX.value]


@pytest.mark.parametrize("seed,p_idle,p_ready", [(1, 0.5, 0.5), (2, 0.0, 1.0), (3, 0.0, 0.3),
                                                 (4, 0.7, 0.9)])
def test_commands(seed, p_idle, p_ready):
    rng = random.Random(seed)
    dut = CommandUnit()
    n = 600
    entries = [_random_entry(rng, i % 4096) for i in range(n)]
    model = _Model()
    expected = []
    fast = []                   # the fast-path commands, as the engine must get them
    for bits in entries:
        event = model.run(bits)
        entry = unpack(RingEntry, bits)
        command = unpack(Command, int(entry.entry))
        if not entry.error and int(command.opcode) in FAST_OPCODES:
            fast.append((int(command.opcode), int(entry.index), int(command.tag),
                         int(command.arg), int(command.addr)))
        if event is not None:
            expected.append((event, model.levels()))
    n_events = len(expected)
    got = []
    counted = {"commands": 0, "bad_commands": 0}
    cycles = [0]

    async def producer(ctx):
        prng = random.Random(seed + 100)
        for bits in entries:
            while prng.random() < p_idle:
                await ctx.tick()
            ctx.set(dut.commands.valid, 1)
            ctx.set(dut.commands.payload, unpack(RingEntry, bits))
            while True:
                _, _, ready = await ctx.tick().sample(dut.commands.ready)
                if ready:
                    break
            ctx.set(dut.commands.valid, 0)

    async def consumer(ctx):
        crng = random.Random(seed + 200)
        while len(got) < n_events:
            ready = int(crng.random() < p_ready)
            ctx.set(dut.events.ready, ready)
            _, _, valid, payload, rx_stop, tx_stop, commands, bad = await ctx.tick().sample(
                dut.events.valid, dut.events.payload, dut.rx_stop, dut.tx_stop,
                dut.count.commands, dut.count.bad_commands)
            cycles[0] += 1
            assert cycles[0] < 20 * n, f"timeout: {len(got)} events of {n_events}"
            counted["commands"] += commands
            counted["bad_commands"] += bad
            if valid and ready:
                got.append((payload.as_value().value, (rx_stop, tx_stop)))
        ctx.set(dut.events.ready, 1)
        for _ in range(10):         # nothing more comes out
            _, _, valid, commands = await ctx.tick().sample(dut.events.valid,
                                                            dut.count.commands)
            assert not valid and not commands

    async def engine(ctx):
        erng = random.Random(seed + 300)
        for opcode, index, tag, arg, addr in fast:
            ctx.set(dut.fast_path.ready, 1)
            (payload,) = await ctx.tick().sample(dut.fast_path.payload).until(
                dut.fast_path.valid)
            ctx.set(dut.fast_path.ready, 0)
            got_fields = (int(payload.opcode), int(payload.index), int(payload.tag),
                          int(payload.arg), int(payload.addr))
            assert got_fields == (opcode, index, tag, arg, addr)
            for _ in range(erng.choice([0, 1, 5])):
                await ctx.tick()
            event, code, bad = _engine_answer(tag)
            ctx.set(dut.fast_answer.payload, {"event": event, "code": code, "bad": bad})
            ctx.set(dut.fast_answer.valid, 1)
            await ctx.tick().until(dut.fast_answer.ready)
            ctx.set(dut.fast_answer.valid, 0)

    run_testbenches(dut, producer, consumer, engine)
    for k, ((bits, levels), (want_bits, want_levels)) in enumerate(zip(got, expected)):
        assert bits == want_bits, f"event {k}: {unpack(Event, bits)} != {unpack(Event, want_bits)}"
        assert levels == want_levels, f"event {k}: stop levels {levels} != {want_levels}"
    assert counted == {"commands": model.commands, "bad_commands": model.bad}
    if p_idle == 0 and p_ready == 1:
        bound = n + 5 + 10 * len(fast)
        assert cycles[0] <= bound, f"{cycles[0]} clocks for {n} commands"
