"""Scoreboard and driver of the CCB table (hw/ccb/table.py) against its reference model
(sim/reference/ccb_table.py), for the unit tests and ``inic bench``.

:class:`CcbTableBench` drives every port each clock in Amaranth's simulator: lookups, commands,
random ``ready`` on both outputs. The model applies each command when its answer becomes valid
(the RTL's commit is the edge before), and the RTL's answer must equal the model's. Each lookup's
result must be the model's answer at the version of the table of the lookup's *view* (the edge
its buckets and stash are read, ``sim_handles["view"]``), or a set_state committed before its
state read (four clocks later); without looking inside, that is one version between the
lookup's acceptance and its result, never going backwards from one lookup to the next (the "one
order of the two" rule of docs/ccb_table.md). :meth:`CcbTableBench.check_state` compares the
placement (every bucket way, every stash slot), the kick LFSR and the counters.

:func:`measure_lookups` gives ``inic bench`` the lookup rate and latency with commands mixed in.
"""

import random

from amaranth.sim import Simulator

from hw.ccb import CcbTable
from hw.ccb.layouts import CcbOpcode, CcbStatus
from sim.reference.ccb_table import CcbTable as Model
from sim.reference.ccb_table import FourTuple, Status

__all__ = ["random_tuple", "tuple_fields", "table_and_model", "CcbTableBench",
           "measure_lookups", "STATE_READ_AFTER_VIEW"]

#: Clocks from a lookup's view (bucket and stash read) to its state read (P0 to P4).
STATE_READ_AFTER_VIEW = 5


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


def table_and_model(entries, **kwargs):
    dut = CcbTable(entries, **kwargs)
    model = Model(entries, ways=dut.ways, stash_size=dut.stash, max_kicks=dut.max_kicks,
                  ipv6_entries=dut.ipv6_entries, fp_bits=dut.fp_bits, c_rounds=dut.c_rounds,
                  d_rounds=dut.d_rounds)
    return dut, model


class CcbTableBench:
    """Drives a :class:`CcbTable` clock by clock and checks it against the model.

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
        self.latencies = []         # clocks from acceptance to result taken, per lookup
        self.counter_base = {}      # model counters at load()
        self.command_clocks = []    # (opcode, status, kicks, clocks to the answer)
        self.command_accepted = 0
        self._kicks_seen = model.counters["kicks"]
        self.results = 0
        self.first_result_cycle = None
        self.commands_done = 0
        self.hits = self.misses = 0
        self.tag = 0
        self.log = []

    def simulate(self, lookups, commands):
        """A whole run in Amaranth's simulator: :meth:`run`, then :meth:`check_state`."""
        async def testbench(ctx):
            await self.run(ctx, lookups, commands)
            await self.check_state(ctx)

        sim = Simulator(self.dut)
        sim.add_clock(1e-6)
        sim.add_testbench(testbench)
        sim.run()

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
                # A delete's drain runs after its answer: wait for the command unit to idle.
                ctx.set(dut.lookup.valid, 0)
                ctx.set(dut.command.valid, 0)
                while not ctx.get(dut.command.ready):
                    await ctx.tick()
                    self.cycle += 1
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
                                       [(self.version, self.model.lookup(cur_lookup))], None,
                                       self.cycle])
                self.accepted.append(self.cycle)
                self.tag = (self.tag + 1) & 0xFFFF
                cur_lookup = None
            if cur_command is not None and c_ready:
                self.pending_command = cur_command
                self.command_accepted = self.cycle
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
        kicks = model.counters["kicks"] - self._kicks_seen
        self._kicks_seen = model.counters["kicks"]
        # Clocks from the command accepted to its answer valid, and the kicks it applied.
        self.command_clocks.append((op, status, kicks, self.cycle - self.command_accepted))
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
        t, tag, answers, view, accepted = self.in_flight.pop(0)
        self.latencies.append(self.cycle - accepted)
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

    async def load(self, ctx):
        """Write the model's whole state into the table's memories and registers (a backdoor,
        before the first clock): to start a test near a large table's load limit without
        simulating every insert. Counters then count from the model's counters at this point."""
        dut, model = self.dut, self.model
        h = dut.sim_handles
        cb, fb, k = dut.entry_layout["conn_nbr"].width, dut.fp_bits, model.buckets.bit_length() - 1
        for bank in range(2):
            for bucket in range(model.buckets):
                for way, slot in enumerate(model.bucket_entries(bank, bucket)):
                    if slot is not None:
                        tag, conn = slot
                        word = conn | tag << cb | 1 << (cb + fb + k)
                        ctx.set(h["banks"][bank][way].data[bucket], word)
        for conn, (t, state) in ((c, (t, s)) for t, (c, s) in model.items().items()):
            h["key_lo"].sim_set(ctx, conn, (t.src_ip & 0xFFFFFFFF) | (t.dst_ip & 0xFFFFFFFF) << 32
                    | t.src_port << 64 | t.dst_port << 80 | int(t.ipv6) << 96)
            if conn < dut.ipv6_entries:
                h["key_hi"].sim_set(ctx, conn, t.src_ip >> 32 | (t.dst_ip >> 32) << 96)
            h["state"].sim_set(ctx, conn, state)
        valid = 0
        for slot, entry in enumerate(model.stash_entries()):
            if entry is not None:
                key, conn = entry
                b0, b1 = model.bucket_of(key)
                valid |= 1 << slot
                ctx.set(h["stash_key"][slot], tuple_fields(key))
                ctx.set(h["stash_conn"][slot], conn)
                ctx.set(h["stash_b0"][slot], b0)
                ctx.set(h["stash_b1"][slot], b1)
                ctx.set(h["stash_fp"][slot], model.tag_of(key)[1])
        ctx.set(h["stash_valid"], valid)
        for pool, free in zip(h["pools"], model.free_conn_nbrs()):
            if pool is None:
                continue
            size = pool["memory"].depth
            for i, conn in enumerate(free):
                pool["memory"].sim_set(ctx, i, conn)
            ctx.set(pool["head"], 0)
            ctx.set(pool["tail"], len(free) % size)
            ctx.set(pool["level"], len(free))
        ctx.set(h["clearing"], 0)      # loaded: nothing to clear
        ctx.set(h["lfsr"], model.lfsr)
        ctx.set(h["used"], len(model))
        self.counter_base = dict(model.counters)

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
        mc = {name: value - self.counter_base.get(name, 0)
              for name, value in model.counters.items()}
        assert (c.inserts, c.exists, c.insert_full, c.deletes, c.absent, c.kicks) == (
            mc["inserted"], mc["exists"], mc["full"], mc["deleted"], mc["absent"], mc["kicks"])
        assert (c.lookups, c.hits, c.misses) == (self.results, self.hits, self.misses)
        assert c.stash_used == model.stash_used and c.used == len(model)


def measure_lookups(entries=256, *, lookups=2000, command_every=32, fill=0.75, seed=1):
    """Lookups offered every clock (``result`` always ready) while a command (insert or delete
    of a random tuple, keeping the load near ``fill``) is offered every ``command_every``
    clocks, in a table first filled to ``fill`` by inserts; the scoreboard checks every answer.

    Returns ``{"entries", "lookups", "commands", "cycles", "lookups_per_cycle",
    "latency_cycles", "latency_max_cycles", "declared_latency"}``: lookups accepted per clock
    from the first to the last, and the clocks from acceptance to result (the least, which is
    the latency with no stall, and the most). ``inic bench`` can call it (about 3k clocks a
    second in Amaranth's simulator at 256 entries).
    """
    rng = random.Random(seed)
    dut, model = table_and_model(entries)
    present = []
    prefill = [random_tuple(rng) for _ in range(int(entries * fill))]
    phase = {"next_command": 0, "commands": 0, "offered": 0}

    def lookup_source(bench):
        if prefill or (bench.pending_command is not None and not phase["offered"]):
            return None
        if phase["offered"] == lookups:
            raise StopIteration
        phase["offered"] += 1
        return rng.choice(present) if present and rng.random() < 0.9 else random_tuple(rng)

    def command_source(bench):
        if prefill:
            t = prefill.pop(0)
            present.append(t)
            return CcbOpcode.INSERT, t, 1
        if phase["offered"] == lookups:
            raise StopIteration
        if bench.cycle < phase["next_command"] or not phase["offered"]:
            return None
        phase["next_command"] = bench.cycle + command_every
        phase["commands"] += 1
        if rng.random() < 0.5 and present:
            return CcbOpcode.DELETE, present.pop(rng.randrange(len(present))), 0
        t = random_tuple(rng)
        present.append(t)
        return CcbOpcode.INSERT, t, 2

    bench = CcbTableBench(dut, model, rng)
    bench.simulate(lookup_source, command_source)
    first, last = bench.accepted[0], bench.accepted[-1]
    return {
        "entries": entries,
        "lookups": len(bench.accepted),
        "commands": phase["commands"],
        "cycles": last - first + 1,
        "lookups_per_cycle": round(len(bench.accepted) / (last - first + 1), 4),
        "latency_cycles": min(bench.latencies),
        "latency_max_cycles": max(bench.latencies),
        "declared_latency": dut.latency,
    }


def measure_commands(entries=256, *, commands=400, fill=0.9, seed=1):
    """Commands alone (no lookups): a table filled with random inserts to ``fill``, then
    ``commands`` random inserts, deletes (present and absent), set_states and duplicate inserts,
    each checked against the model. Returns ``{(opcode name, status name, kicks): (least, most
    clocks from command accepted to answer valid)}``: the figures of docs/ccb_table.md's
    command table."""
    rng = random.Random(seed)
    dut, model = table_and_model(entries)
    present = []
    prefill = [random_tuple(rng) for _ in range(int(entries * fill))]
    left = {"n": commands}

    def command_source(bench):
        if prefill:
            t = prefill.pop(0)
            present.append(t)
            return CcbOpcode.INSERT, t, 1
        if left["n"] == 0:
            raise StopIteration
        left["n"] -= 1
        r = rng.random()
        if r < 0.3 and present:
            return CcbOpcode.DELETE, present.pop(rng.randrange(len(present))), 0
        if r < 0.4:
            return CcbOpcode.DELETE, random_tuple(rng), 0
        if r < 0.5 and present:
            return CcbOpcode.SET_STATE, rng.choice(present), 2
        if r < 0.55 and present:
            return CcbOpcode.INSERT, rng.choice(present), 1
        t = random_tuple(rng)
        present.append(t)
        return CcbOpcode.INSERT, t, 1

    def no_lookups(bench):
        raise StopIteration

    bench = CcbTableBench(dut, model, rng)
    bench.simulate(no_lookups, command_source)
    out = {}
    for op, status, kicks, clocks in bench.command_clocks:
        key = (CcbOpcode(op).name, CcbStatus(status).name, kicks)
        low, high = out.get(key, (clocks, clocks))
        out[key] = (min(low, clocks), max(high, clocks))
    return out
