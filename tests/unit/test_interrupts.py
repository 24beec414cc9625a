"""InterruptModerator (hw/host/interrupts.py) against a clock-by-clock Python reference."""

import random

import pytest

from hw.host.interrupts import InterruptModerator

from .amaranth_sim import run_testbenches

_SETTLE = 3     # clocks for new thresholds to reach the moderator's registered compares


def reference(events, mod_events, mod_cycles):
    """``fire`` per clock for ``events`` (one bool per clock), as the host interface states it.

    Fire one clock after the event that brings the batch to max(mod_events, 1) events, or
    ``mod_cycles`` clocks after the batch's first event (when mod_cycles != 0); then a new batch.
    """
    fire = [0] * (len(events) + 1)
    count, first = 0, None
    for t, event in enumerate(events):
        if event:
            count += 1
            if first is None:
                first = t
        by_count = count >= max(mod_events, 1)
        by_time = mod_cycles != 0 and first is not None and t + 1 - first >= mod_cycles
        if by_count or by_time:
            fire[t + 1] = 1
            count, first = 0, None
    return fire[:len(events)]


def simulate(events, mod_events, mod_cycles):
    dut = InterruptModerator()
    fires = []

    async def testbench(ctx):
        ctx.set(dut.mod_events, mod_events)
        ctx.set(dut.mod_cycles, mod_cycles)
        await ctx.tick().repeat(_SETTLE)
        for event in events:
            ctx.set(dut.event_written, event)
            fires.append(ctx.get(dut.fire))
            await ctx.tick()

    run_testbenches(dut, testbench)
    return fires


def _events(seed, clocks, density):
    rng = random.Random(seed)
    return [int(rng.random() < density) for _ in range(clocks)]


def test_reference_sanity():
    # Hand-checked: threshold 2 fires one clock after the second event; timer 3 fires three clocks
    # after the first event.
    assert reference([1, 0, 1, 0, 0], 2, 0) == [0, 0, 0, 1, 0]
    assert reference([1, 0, 0, 0, 0], 5, 3) == [0, 0, 0, 1, 0]
    assert reference([1, 1, 1, 0], 0, 0) == [0, 1, 1, 1]


@pytest.mark.parametrize("mod_events", [1, 2, 5])
def test_by_count(mod_events):
    events = _events(1, 300, 0.4)
    fires = simulate(events, mod_events, 0)
    assert fires == reference(events, mod_events, 0)
    assert sum(fires) == sum(events) // mod_events


def test_count_zero_acts_as_one():
    events = _events(2, 100, 0.5)
    fires = simulate(events, 0, 0)
    assert fires == reference(events, 1, 0)
    assert fires == [0] + events[:-1]


@pytest.mark.parametrize("mod_cycles", [1, 2, 7])
def test_by_time(mod_cycles):
    # A count no burst reaches: only the timer fires.
    events = _events(3, 300, 0.1)
    fires = simulate(events, 1000, mod_cycles)
    assert fires == reference(events, 1000, mod_cycles)
    assert sum(fires) > 5


def test_no_timer_waits_for_the_count():
    events = [1, 0, 0, 1] + [0] * 50
    assert sum(simulate(events, 3, 0)) == 0


@pytest.mark.parametrize(("mod_events", "mod_cycles", "density"),
                         [(4, 10, 0.3), (3, 4, 0.6), (8, 20, 0.2), (2, 1, 0.5)])
def test_count_and_time(mod_events, mod_cycles, density):
    events = _events(mod_events * 100 + mod_cycles, 400, density)
    expected = reference(events, mod_events, mod_cycles)
    # Both limits must have fired at least once for the case to test anything.
    assert sum(expected) > 3
    assert simulate(events, mod_events, mod_cycles) == expected
