"""CcbTable (hw/ccb/table.py) against its reference model (sim/reference/ccb_table.py): random
interleavings of lookups and commands with the scoreboard of sim/ccb_scoreboard.py (its
docstring has the rules checked: answers, each lookup's version, placement, LFSR, counters).

Lookups every clock (or with gaps, a random share of them absent or of tuples a command just
touched), commands (insert, delete, set_state, set_key), random ``ready`` on both outputs. Small
tables (64-256 entries) so that walks, the stash and FULL come within a few thousand clocks.
"""

import random

import pytest

from hw.ccb.layouts import CcbOpcode
from sim.ccb_scoreboard import CcbTableBench, random_tuple, table_and_model
from sim.reference.ccb_table import Status

from .amaranth_sim import run_testbenches


def random_traffic(rng, universe, n_lookups, n_commands, *, p_lookup, p_command,
                   op_weights=(6, 3, 1, 0.2), recent=8):
    """Lookup and command sources over ``universe``: lookups mostly of tuples present or just
    touched by a command (the same-cycle cases), some absent."""
    touched = []
    counts = {"lookups": 0, "commands": 0}

    def lookups(bench):
        if counts["lookups"] >= n_lookups:
            raise StopIteration
        if rng.random() >= p_lookup:
            return None
        counts["lookups"] += 1
        r = rng.random()
        if r < 0.3 and touched:
            return rng.choice(touched[-recent:])
        if r < 0.9:
            return rng.choice(universe)
        return random_tuple(rng)

    def commands(bench):
        if counts["commands"] >= n_commands:
            raise StopIteration
        if rng.random() >= p_command:
            return None
        counts["commands"] += 1
        op = rng.choices([CcbOpcode.INSERT, CcbOpcode.DELETE, CcbOpcode.SET_STATE,
                          CcbOpcode.SET_KEY], op_weights)[0]
        if op == CcbOpcode.SET_KEY:
            return op, None, rng.randbytes(16)
        t = rng.choice(universe)
        touched.append(t)
        return op, t, rng.randrange(4)

    return lookups, commands


@pytest.mark.parametrize("seed, entries, kwargs, p_lookup, p_ready", [
    (1, 64, {}, 1.0, 1.0),
    (2, 64, {"stash": 2, "max_kicks": 8}, 0.8, 0.7),
    (3, 128, {"ways": 2, "ipv6_entries": 16}, 1.0, 0.5),
    (4, 256, {}, 0.5, 0.9),
])
def test_random_interleaving_against_model(seed, entries, kwargs, p_lookup, p_ready):
    """Lookups every clock (or with gaps), inserts, deletes, state and key changes, random
    backpressure; the universe of tuples is larger than the table, so it runs full, walks,
    stashes, answers FULL, EXISTS and ABSENT."""
    rng = random.Random(seed)
    dut, model = table_and_model(entries, **kwargs)
    universe = [random_tuple(rng) for _ in range(entries + entries // 2)]
    # Start from a table near its load limit: inserts first, then the mix.
    fill = [(CcbOpcode.INSERT, t, rng.randrange(4)) for t in universe[:entries * 7 // 8]]
    lookups, commands = random_traffic(rng, universe, 2000, 300, p_lookup=p_lookup,
                                       p_command=0.2)

    def all_commands(bench):
        if fill:
            return fill.pop(0)
        return commands(bench)

    bench = CcbTableBench(dut, model, rng, p_result_ready=p_ready, p_response_ready=0.8)

    async def tb(ctx):
        await bench.run(ctx, lookups, all_commands)
        await bench.check_state(ctx)
        model.check_invariants()

    run_testbenches(dut, tb)
    statuses = {entry[3] for entry in bench.log}
    assert {Status.INSERTED, Status.EXISTS, Status.OK, Status.ABSENT} <= statuses
    assert bench.hits and bench.misses


def test_same_tuple_lookups_every_clock_during_its_commands():
    """Lookups of one tuple every clock while it is inserted, its state changed, deleted and
    inserted again (among other tuples' commands, walks and drains in a full table): every
    lookup's view falls on some clock of those commands, including each commit's."""
    rng = random.Random(7)
    dut, model = table_and_model(64, stash=4)
    others = [random_tuple(rng) for _ in range(80)]
    targets = [random_tuple(rng, 0.5) for _ in range(3)]
    script = [(CcbOpcode.INSERT, t, 1) for t in others[:58]]
    for _ in range(12):
        for t in targets:
            script += [(CcbOpcode.INSERT, t, rng.randrange(4)),
                       (CcbOpcode.SET_STATE, t, rng.randrange(4)),
                       (CcbOpcode.INSERT, rng.choice(others), 2),
                       (CcbOpcode.DELETE, t, 0),
                       (CcbOpcode.DELETE, rng.choice(others), 0)]
    n = {"lookups": 0}

    def lookups(bench):
        if not script and bench.pending_command is None and bench.answered is None:
            raise StopIteration
        n["lookups"] += 1
        return rng.choice(targets) if rng.random() < 0.9 else rng.choice(others)

    def commands(bench):
        if not script:
            raise StopIteration
        return script.pop(0)

    bench = CcbTableBench(dut, model, rng, p_result_ready=1.0, p_response_ready=1.0)

    async def tb(ctx):
        await bench.run(ctx, lookups, commands)
        await bench.check_state(ctx)

    run_testbenches(dut, tb)
    assert bench.hits > 1000 and bench.misses > 1000
