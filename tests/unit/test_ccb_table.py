"""CcbTable (hw/ccb/table.py) against its reference model (sim/reference/ccb_table.py) as the
scoreboard.

One testbench drives every port each clock: lookups (every clock or with gaps, a random share of
them absent or just deleted), commands (insert, delete, set_state, set_key), random ``ready`` on
both outputs. The model applies each command when its answer becomes valid (the RTL's commit is
the clock before), and the RTL's answer must equal the model's. Each lookup's result must be the
model's answer at one version of the table between the lookup's acceptance and its result, and
those versions must not go backwards from one lookup to the next (results are in order): the
"one order of the two" rule of docs/ccb_table.md. Looking inside, the check is exact: the version
is the one of the lookup's view (the edge its buckets and stash are read), or a set_state
committed before its state read. At the end the
placement (every bucket way, every stash slot), the kick LFSR and the counters are compared
with the model's.

Small tables (64-256 entries) so that walks, the stash and FULL come within a few thousand
clocks.
"""

import random

import pytest

from hw.ccb import CcbTable
from hw.ccb.layouts import CcbOpcode, CcbStatus
from sim.reference.ccb_table import CcbTable as Model
from sim.reference.ccb_table import FourTuple, Status

from .amaranth_sim import run_testbenches

#: Clocks from a lookup's view (bucket and stash read) to its state read (P0 to P4).
STATE_READ_AFTER_VIEW = 4


def random_tuple(rng, ipv6_share=0.25):
    if rng.random() < ipv6_share:
        return FourTuple(rng.getrandbits(128), rng.getrandbits(128), rng.getrandbits(16),
                         rng.getrandbits(16), ipv6=True)
    return FourTuple(rng.getrandbits(32), rng.getrandbits(32), rng.getrandbits(16),
                     rng.getrandbits(16))


def tuple_fields(t, rng=None):
    """The ``CcbTuple`` of ``t``; with ``rng``, IPv4 addresses get random bits 127:32 (which
    the table must ignore)."""
    noise = (lambda: rng.getrandbits(96) << 32) if rng and not t.ipv6 else (lambda: 0)
    return {"src": t.src_ip | noise(), "dst": t.dst_ip | noise(), "sport": t.src_port,
            "dport": t.dst_port, "ipv6": int(t.ipv6)}


def make(entries, **kwargs):
    dut = CcbTable(entries, **kwargs)
    model = Model(entries, ways=dut.ways, stash_size=dut.stash, max_kicks=dut.max_kicks,
                  ipv6_entries=dut.ipv6_entries, fp_bits=dut.fp_bits, c_rounds=dut.c_rounds,
                  d_rounds=dut.d_rounds)
    return dut, model


class Bench:
    """Drives the table clock by clock and checks it against the model.

    ``lookups`` and ``commands`` are callables ``(bench) -> item or None`` asked for a new item
    whenever the port is free (``None``: idle this clock); the run ends when both have returned
    ``StopIteration`` (raise it) and everything has come back.
    """

    def __init__(self, dut, model, rng, *, p_result_ready=1.0, p_response_ready=1.0,
                 noise=True):
        self.dut, self.model, self.rng = dut, model, rng
        self.p_result_ready, self.p_response_ready = p_result_ready, p_response_ready
        self.noise = noise
        self.version = 0
        self.last_version = 0
        self.in_flight = []         # [tuple, tag, [(version, answer), ...]]
        self.pending_command = None     # accepted, not answered
        self.answered = None        # (expected answer) while the response waits
        self.cycle = 0
        self.accepted = []          # cycles a lookup was accepted
        self.results = 0
        self.first_result_cycle = None
        self.commands_done = 0
        self.hits = self.misses = 0
        self.tag = 0
        self.log = []

    async def run(self, ctx, lookups, commands, max_cycles=200_000):
        dut = self.dut
        cur_lookup = cur_command = None
        lookups_done = commands_done = False
        while True:
            if cur_lookup is None and not lookups_done:
                try:
                    cur_lookup = lookups(self)
                except StopIteration:
                    lookups_done = True
            if cur_command is None and not commands_done and self.pending_command is None \
                    and self.answered is None:
                try:
                    cur_command = commands(self)
                except StopIteration:
                    commands_done = True
            if lookups_done and commands_done and not self.in_flight \
                    and self.pending_command is None and self.answered is None \
                    and cur_lookup is None and cur_command is None:
                return
            ctx.set(dut.lookup.valid, cur_lookup is not None)
            if cur_lookup is not None:
                ctx.set(dut.lookup.payload, {
                    "tuple": tuple_fields(cur_lookup, self.rng if self.noise else None),
                    "tag": self.tag})
            ctx.set(dut.command.valid, cur_command is not None)
            if cur_command is not None:
                op, t, arg = cur_command
                payload = {"opcode": op, "state": arg if op != CcbOpcode.SET_KEY else 0,
                           "key": int.from_bytes(arg, "little") if op == CcbOpcode.SET_KEY
                           else 0}
                if t is not None:
                    payload["tuple"] = tuple_fields(t, self.rng if self.noise else None)
                ctx.set(dut.command.payload, payload)
            result_ready = self.rng.random() < self.p_result_ready
            response_ready = self.rng.random() < self.p_response_ready
            ctx.set(dut.result.ready, result_ready)
            ctx.set(dut.response.ready, response_ready)
            (_, _, l_ready, r_valid, r_payload, c_ready, s_valid, s_payload,
             view) = await ctx.tick().sample(
                dut.lookup.ready, dut.result.valid, dut.result.payload, dut.command.ready,
                dut.response.valid, dut.response.payload, dut.sim_handles["view"])
            # 1. An answer seen for the first time: the command committed on the edge before.
            if s_valid and self.answered is None:
                assert self.pending_command is not None, "answer without a command"
                self.answered = self._apply(self.pending_command)
                self.pending_command = None
            # 2. The oldest lookup without a view reads the buckets and the stash on this
            # edge: it sees every commit so far (exact check, looking inside).
            if view:
                entry = next(e for e in self.in_flight if e[3] is None)
                entry[3] = self.cycle
                entry[2] = [a for a in entry[2] if a[0] == self.version]
            # 3. A lookup accepted on this edge sees every commit answered so far.
            if cur_lookup is not None and l_ready:
                self.in_flight.append([cur_lookup, self.tag,
                                       [(self.version, self.model.lookup(cur_lookup))], None])
                self.accepted.append(self.cycle)
                self.tag = (self.tag + 1) & 0xFFFF
                cur_lookup = None
            if cur_command is not None and c_ready:
                self.pending_command = cur_command
                cur_command = None
            # 4. A result: the model's answer at one version of its window, in order.
            if r_valid and result_ready:
                self._check_result(r_payload)
            if s_valid and response_ready:
                status, conn = self.answered
                got = (CcbStatus(s_payload.status), s_payload.conn_nbr)
                assert got == (status, conn), \
                    f"cycle {self.cycle}: answer {got}, model {(status, conn)}"
                self.answered = None
                self.commands_done += 1
            self.cycle += 1
            assert self.cycle < max_cycles, "the run does not end"

    def _apply(self, command):
        op, t, arg = command
        model = self.model
        if op == CcbOpcode.INSERT:
            status, conn = model.insert(t, arg)
        elif op == CcbOpcode.DELETE:
            status, conn = model.delete(t), 0
        elif op == CcbOpcode.SET_STATE:
            status, conn = model.set_state(t, arg), 0
        else:
            status, conn = model.set_key(arg), 0
        self.log.append((self.cycle, op, t, status, conn))
        if status in (Status.INSERTED, Status.OK):
            self.version += 1
            for entry in self.in_flight:
                # After its view, a lookup still sees a set_state until its state read (P4).
                if entry[3] is None or (op == CcbOpcode.SET_STATE
                                        and self.cycle <= entry[3] + STATE_READ_AFTER_VIEW):
                    entry[2].append((self.version, model.lookup(entry[0])))
        return CcbStatus(int(status)), conn

    def _check_result(self, payload):
        assert self.in_flight, "a result without a lookup"
        t, tag, answers, view = self.in_flight.pop(0)
        assert view is not None, "a result before its view"
        assert payload.tag == tag
        got = (bool(payload.hit), payload.conn_nbr, payload.state)
        fits = [v for v, answer in answers if answer == got and v >= self.last_version]
        assert fits, (f"cycle {self.cycle}: lookup {t} answered {got}, model "
                      f"{answers} (versions >= {self.last_version})")
        self.last_version = fits[0]
        self.results += 1
        if self.first_result_cycle is None:
            self.first_result_cycle = self.cycle
        if got[0]:
            self.hits += 1
        else:
            self.misses += 1

    async def check_state(self, ctx):
        """Placement, stash, LFSR and counters against the model."""
        dut, model = self.dut, self.model
        h = dut.sim_handles
        layout = dut.entry_layout
        for bank in range(2):
            for bucket in range(model.buckets):
                expect = model.bucket_entries(bank, bucket)
                got = []
                for way in range(dut.ways):
                    word = layout.from_bits(ctx.get(h["banks"][bank][way].data[bucket]))
                    if not word.valid:
                        got.append(None)
                    else:
                        tag = (int(word.d) << dut.fp_bits) | int(word.fp)
                        got.append((tag, int(word.conn_nbr)))
                assert got == expect, f"bank {bank} bucket {bucket}: {got} != {expect}"
        valid = ctx.get(h["stash_valid"])
        for slot, expect in enumerate(model.stash_entries()):
            if expect is None:
                assert not valid >> slot & 1, f"stash slot {slot} should be empty"
            else:
                assert valid >> slot & 1, f"stash slot {slot} should hold {expect}"
                assert ctx.get(h["stash_conn"][slot]) == expect[1]
        assert ctx.get(h["lfsr"]) == model.lfsr
        c = ctx.get(dut.counters)
        mc = model.counters
        assert (c.inserts, c.exists, c.insert_full, c.deletes, c.absent, c.kicks) == (
            mc["inserted"], mc["exists"], mc["full"], mc["deleted"], mc["absent"], mc["kicks"])
        assert (c.lookups, c.hits, c.misses) == (self.results, self.hits, self.misses)
        assert c.stash_used == model.stash_used and c.used == len(model)


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
    dut, model = make(entries, **kwargs)
    universe = [random_tuple(rng) for _ in range(entries + entries // 2)]
    # Start from a table near its load limit: inserts first, then the mix.
    fill = [(CcbOpcode.INSERT, t, rng.randrange(4)) for t in universe[:entries * 7 // 8]]
    lookups, commands = random_traffic(rng, universe, 3000, 400, p_lookup=p_lookup,
                                       p_command=0.2)

    def all_commands(bench):
        if fill:
            return fill.pop(0)
        return commands(bench)

    bench = Bench(dut, model, rng, p_result_ready=p_ready, p_response_ready=0.8)

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
    dut, model = make(64, stash=4)
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

    bench = Bench(dut, model, rng, p_result_ready=1.0, p_response_ready=1.0)

    async def tb(ctx):
        await bench.run(ctx, lookups, commands)
        await bench.check_state(ctx)

    run_testbenches(dut, tb)
    assert bench.hits > 1000 and bench.misses > 1000
