"""The SYN-cookie unit's TCP option walker (hw/syn_cookie/option_walker.py) against the golden
model (``sim.reference.syn_cookie._parse_tcp_options``, the parse of ``parse_tcp_frame``).

The producer offers :class:`~hw.syn_cookie.layouts.OptionWalkInput`\\ s (the options area padded
to 40 bytes with random bytes past ``length``, with random idle clocks), recording the clock each
is accepted; the consumer takes the :class:`~hw.syn_cookie.layouts.SynOptions` (with random
back-pressure or always ready), recording the clock each is taken. The scoreboard compares each
with the model's parse of the first ``length`` bytes, field by field (absent options all zeros;
the window shift as sent, the model's capped at 14). Clocks are counted in edges from 0 by both
testbenches.
"""

import itertools
import random

import pytest
from scapy.layers.inet import TCP

from hw import params
from hw.syn_cookie.layouts import TCP_OPTION_BYTES, OptionWalkInput
from hw.syn_cookie.option_walker import OptionWalker
from sim.reference.syn_cookie import MAX_WSCALE, _parse_tcp_options

from .amaranth_sim import run_testbenches

STEPS = params.SYN_OPTION_STEPS


def scapy_options(options):
    return bytes(TCP(options=options))[20:]


LINUX = scapy_options([("MSS", 1460), ("SAckOK", b""), ("Timestamp", (0x12345678, 0)),
                       ("NOP", None), ("WScale", 7)])
WINDOWS = scapy_options([("MSS", 1460), ("NOP", None), ("WScale", 8), ("NOP", None),
                         ("NOP", None), ("SAckOK", b"")])
WINDOWS_TS = scapy_options([("MSS", 1440), ("NOP", None), ("WScale", 8), ("SAckOK", b""),
                            ("Timestamp", (0xDEADBEEF, 0x01020304))])
MSS = bytes([2, 4, 0x05, 0xB4])
TS = bytes([8, 10, 1, 2, 3, 4, 5, 6, 7, 8])

#: Directed cases: (name, options bytes).
CASES = [
    ("none", b""),
    ("linux", LINUX),
    ("windows", WINDOWS),
    ("windows_ts", WINDOWS_TS),
    ("only_nops_40", bytes([1]) * 40),
    ("nops_then_mss", bytes([1]) * 28 + MSS),     # 7 runs of 4, MSS the 8th step
    ("nops_past_budget", bytes([1]) * 32 + MSS),  # 8 runs of 4, MSS ignored
    ("nop_runs_of_3", (bytes([1, 1, 1]) + MSS) * 5),
    ("nop_5", bytes([1]) * 5 + MSS),
    ("eol_middle", MSS + bytes([0]) + TS),
    ("eol_first", bytes([0]) + MSS),
    ("mss_len3", bytes([2, 3, 5]) + TS),
    ("mss_len5", bytes([2, 5, 5, 0xB4, 0]) + TS),
    ("ts_len8", bytes([8, 8, 1, 2, 3, 4, 5, 6]) + MSS),
    ("ws_len4", bytes([3, 4, 9, 9]) + MSS),
    ("ws_len2", bytes([3, 2]) + MSS),
    ("ts_len11", bytes([8, 11]) + bytes(9) + MSS),
    ("ts_len12", bytes([8, 12]) + bytes(10) + MSS),
    ("mss_len10", bytes([2, 10]) + bytes(8) + MSS),
    ("sack_len10", bytes([4, 10]) + bytes(8) + MSS),
    ("nops_at_end", MSS + bytes([1]) * 3),
    ("nop_at_end", MSS + bytes([1])),
    ("len_past_end_by_1", MSS + bytes([8, 10]) + bytes(7)),
    ("len_to_end", MSS + bytes([99, 6]) + bytes(4)),
    ("one_byte", bytes([2])),
    ("one_nop", bytes([1])),
    ("sack_len3", bytes([4, 3, 0]) + MSS),
    ("len0", MSS + bytes([5, 0]) + TS),
    ("len1", MSS + bytes([5, 1]) + TS),
    ("past_end", MSS + bytes([8, 10, 1, 2, 3])),
    ("no_length_byte", MSS + bytes([2])),
    ("unknown_kinds", bytes([30, 6, 1, 2, 3, 4, 253, 2]) + MSS + bytes([254, 3, 7])),
    ("ws_15", bytes([3, 3, 15]) + MSS),
    ("ws_255", bytes([3, 3, 255, 1])),
    ("twice", MSS + bytes([2, 4, 0x12, 0x34]) + bytes([3, 3, 2, 3, 3, 5])),
    ("after_8_steps", bytes([4, 2]) * 7 + MSS + TS),   # 7 SACKs, MSS, TS ignored
    ("ts_at_end", MSS + bytes([3, 3, 6]) + bytes([1]) * 16 + bytes([99, 7]) + bytes(5) + TS),
    # 40 bytes, 8 steps: MSS, WS, 4 NOP runs, an unknown kind, TS
    ("full_40_len_40", bytes([1, 1]) + bytes([30, 38]) + bytes(36)),
]


def expected(raw, steps=STEPS):
    """The model's parse as the walker's :class:`SynOptions` fields."""
    t = _parse_tcp_options(raw, steps)
    return {
        "mss_present": int(t.mss is not None), "mss": t.mss or 0,
        "wscale_present": int(t.wscale is not None), "wscale": t.wscale or 0,
        "sack_permitted": int(t.sack_permitted),
        "timestamps": int(t.timestamps), "ts_val": t.ts_val or 0, "ts_ecr": t.ts_ecr or 0,
    }


def got(payload):
    fields = {name: int(getattr(payload, name)) for name in expected(b"")}
    fields["wscale"] = min(fields["wscale"], MAX_WSCALE)     # the model caps it
    return fields


def walk_clocks(raw, steps=STEPS, nop_run=4):
    """The clocks the walker's documented rule gives: one per step, the step that finds the end
    (EOL, no bytes, malformed) included, unless the step before consumed the last byte."""
    i = clocks = 0
    for _ in range(steps):
        clocks += 1
        if i >= len(raw) or raw[i] == 0:
            return clocks
        if raw[i] == 1:
            run = 1
            while run < nop_run and i + run < len(raw) and raw[i + run] == 1:
                run += 1
            i += run
        else:
            if i + 1 >= len(raw) or raw[i + 1] < 2 or i + raw[i + 1] > len(raw):
                return clocks
            i += raw[i + 1]
        if i == len(raw):
            return clocks
    return clocks


#: What fills the options area past ``length``: bytes the walker must not read.
PADS = ("random", "nop", "eol", "options")


def walk_input(raw, rng, pad=None):
    """The walker's input for options ``raw``: padded to 40 bytes with ``pad`` (one of
    :data:`PADS`, random if None): random bytes, NOPs, zeros, or well-formed options (a NOP run
    or an option that would go on past ``length``)."""
    assert len(raw) <= TCP_OPTION_BYTES
    pad = pad or rng.choice(PADS)
    fill = {"random": rng.randbytes(TCP_OPTION_BYTES), "nop": bytes([1]) * TCP_OPTION_BYTES,
            "eol": bytes(TCP_OPTION_BYTES), "options": (bytes([1]) + TS + MSS) * 3}[pad]
    padded = raw + fill[:TCP_OPTION_BYTES - len(raw)]
    return OptionWalkInput.const({"options": int.from_bytes(padded, "little"),
                                  "length": len(raw)})


def run_walker(raws, seed, p_gap, p_ready, dut=None, pads=None):
    """Runs ``raws`` through (padded with ``pads``, random if None); returns the outputs (fields)
    and the clocks each input was accepted and each output taken."""
    rng = random.Random(seed)
    dut = dut or OptionWalker()
    accepted, taken, outs = [], [], []

    async def producer(ctx):
        clock = 0
        for n, raw in enumerate(raws):
            while rng.random() < p_gap:
                ctx.set(dut.i.valid, 0)
                await ctx.tick()
                clock += 1
            ctx.set(dut.i.payload, walk_input(raw, rng, pads and pads[n]))
            ctx.set(dut.i.valid, 1)
            while True:
                _, _, ready = await ctx.tick().sample(dut.i.ready)
                clock += 1
                if ready:
                    break
            accepted.append(clock)
        ctx.set(dut.i.valid, 0)

    async def consumer(ctx):
        crng = random.Random(seed + 1)
        clock = 0
        while len(outs) < len(raws):
            assert clock < 20 * (len(raws) + 10) / p_ready, "outputs missing"
            ctx.set(dut.o.ready, int(crng.random() < p_ready))
            _, _, valid, ready, payload = await ctx.tick().sample(
                dut.o.valid, dut.o.ready, dut.o.payload)
            clock += 1
            if valid and ready:
                outs.append(got(payload))
                taken.append(clock)
        ctx.set(dut.o.ready, 1)
        for _ in range(12):
            _, _, valid = await ctx.tick().sample(dut.o.valid)
            assert not valid, "an output no input asked for"

    run_testbenches(dut, producer, consumer)
    return outs, accepted, taken


def check(raws, outs, steps=STEPS):
    assert len(outs) == len(raws)
    for n, (raw, out) in enumerate(zip(raws, outs, strict=True)):
        assert out == expected(raw, steps), f"input {n}: {raw.hex()}"


def test_model_cases_are_what_they_say():
    """The directed cases exercise what their names say, in the model."""
    assert _parse_tcp_options(LINUX).timestamps and _parse_tcp_options(LINUX).wscale == 7
    assert _parse_tcp_options(WINDOWS).wscale == 8 and _parse_tcp_options(WINDOWS).sack_permitted
    cases = dict(CASES)
    assert _parse_tcp_options(cases["nops_then_mss"]).mss == 1460
    assert _parse_tcp_options(cases["nops_past_budget"]).mss is None
    assert _parse_tcp_options(cases["after_8_steps"]).mss == 1460
    assert not _parse_tcp_options(cases["after_8_steps"]).timestamps
    assert not _parse_tcp_options(cases["eol_middle"]).timestamps
    assert _parse_tcp_options(cases["ts_at_end"]).timestamps
    assert walk_clocks(LINUX) == 5 and walk_clocks(b"") == 1


@pytest.mark.parametrize(("name", "raw"), CASES, ids=[c[0] for c in CASES])
def test_directed(name, raw):
    """Each case once with each padding past ``length``."""
    raws = [raw] * len(PADS)
    outs, _, _ = run_walker(raws, 1, 0.0, 1.0, pads=PADS)
    check(raws, outs)


def test_window_shift_as_sent():
    """The walker gives the shift as sent (the model's is capped at 14)."""
    dut = OptionWalker()
    raws = [bytes([3, 3, ws]) for ws in (0, 14, 15, 200, 255)]
    outs = []

    async def tb(ctx):
        ctx.set(dut.o.ready, 1)
        for raw in raws:
            ctx.set(dut.i.payload, walk_input(raw, random.Random(0)))
            ctx.set(dut.i.valid, 1)
            await ctx.tick()
            ctx.set(dut.i.valid, 0)
            while not ctx.get(dut.o.valid):
                await ctx.tick()
            outs.append(int(ctx.get(dut.o.payload.wscale)))
            await ctx.tick()

    run_testbenches(dut, tb)
    assert outs == [0, 14, 15, 200, 255]


def random_options(rng):
    """Options built of plausible pieces: known options of right and wrong lengths, NOP runs,
    EOL, unknown kinds, malformed lengths, random bytes; cut to at most 40 bytes."""
    out = b""
    while len(out) < TCP_OPTION_BYTES and rng.random() < 0.9:
        c = rng.randrange(10)
        if c == 0:
            out += bytes([1]) * rng.randint(1, 6)
        elif c == 1:
            out += bytes([2, 4]) + rng.randbytes(2)
        elif c == 2:
            out += bytes([3, 3, rng.randrange(256)])
        elif c == 3:
            out += bytes([4, 2])
        elif c == 4:
            out += bytes([8, 10]) + rng.randbytes(8)
        elif c == 5:
            kind = rng.choice([2, 3, 4, 8, rng.randrange(256)])
            length = rng.randrange(12)
            out += bytes([kind, length]) + rng.randbytes(max(0, length - 2))
        elif c == 6:
            out += bytes([0]) if rng.random() < 0.3 else b""
        else:
            out += rng.randbytes(rng.randint(1, 4))
    return out[:rng.randint(0, TCP_OPTION_BYTES)] if rng.random() < 0.3 else \
        out[:TCP_OPTION_BYTES]


@pytest.mark.parametrize(("seed", "p_gap", "p_ready"), [(1, 0.3, 0.5), (2, 0.0, 0.3),
                                                        (3, 0.5, 1.0), (4, 0.0, 1.0)])
def test_fuzz_with_back_pressure(seed, p_gap, p_ready):
    """Structured random options and 40 random bytes of random length, with random idle clocks
    on ``i`` and back-pressure on ``o``."""
    rng = random.Random(seed)
    raws = [random_options(rng) for _ in range(100)]
    raws += [rng.randbytes(rng.choice([TCP_OPTION_BYTES, rng.randrange(41)]))
             for _ in range(60)]
    raws += [raw for _, raw in CASES]
    rng.shuffle(raws)
    outs, _, _ = run_walker(raws, seed, p_gap, p_ready)
    check(raws, outs)


def test_latency_and_throughput():
    """With inputs waiting and ``o.ready`` high: input ``n + 1`` is accepted ``walk_clocks + 1``
    edges after input ``n``; each output is valid ``walk_clocks`` edges after the edge that
    accepted its input (taken at the next edge)."""
    rng = random.Random(7)
    raws = [raw for _, raw in CASES] + [random_options(rng) for _ in range(40)]
    dut = OptionWalker()
    outs, accepted, taken = run_walker(raws, 7, 0.0, 1.0, dut=dut)
    check(raws, outs)
    clocks = [walk_clocks(raw) for raw in raws]
    assert [b - a for a, b in itertools.pairwise(accepted)] == [k + 1 for k in clocks[:-1]]
    # ``taken`` counts the edge at which the consumer saw valid & ready: latency + 1.
    assert [t - a for a, t in zip(accepted, taken, strict=True)] == [k + 1 for k in clocks]
    assert walk_clocks(b"") == 1 and walk_clocks(LINUX) == 5 and walk_clocks(WINDOWS) == 5
    assert max(clocks) == STEPS == dut.MAX_LATENCY
    assert walk_clocks(bytes([1]) * 40) == STEPS


def test_broken_on_purpose_nop_run_5():
    """A walker whose NOP runs take 5 NOPs a step reads an MSS the model ignores: the
    scoreboard sees it."""
    raw = bytes([1]) * 35 + MSS     # 7 runs of 5 then MSS; with runs of 4, 9 steps
    assert _parse_tcp_options(raw).mss is None
    outs, _, _ = run_walker([raw], 1, 0.0, 1.0, dut=OptionWalker(nop_run=5))
    with pytest.raises(AssertionError):
        check([raw], outs)


def test_broken_on_purpose_budget_9():
    raw = bytes([4, 2]) * 8 + MSS
    outs, _, _ = run_walker([raw], 1, 0.0, 1.0, dut=OptionWalker(steps=STEPS + 1))
    with pytest.raises(AssertionError):
        check([raw], outs)


def test_converts_to_rtlil():
    """The walker elaborates to RTLIL (what yosys would read; not synthesized here)."""
    from amaranth.back import rtlil
    assert "module" in rtlil.convert(OptionWalker())
