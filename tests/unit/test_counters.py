"""CounterBank (hw/lib/counters.py): one 32-bit wrapping counter per field, with clear."""

import random

from amaranth.lib import data

from hw.layouts import HostCounters
from hw.lib.counters import CounterBank

from .amaranth_sim import run_testbenches

NAMES = [name for name, _ in data.Layout.cast(HostCounters)]


def test_random_pulses_and_clears_match_model():
    """Each field counts its own pulses; clear zeroes all; a pulse in the clear clock is lost."""
    rng = random.Random(11)
    dut = CounterBank(HostCounters)
    clears_with_pulse = [0]

    async def tb(ctx):
        model = dict.fromkeys(NAMES, 0)
        for cycle in range(1500):
            for name in NAMES:
                assert ctx.get(dut.counters[name]) == model[name], (cycle, name)
            pulses = {name: int(rng.random() < 0.3 * (1 + NAMES.index(name) % 3))
                      for name in NAMES}
            clear = int(rng.random() < 0.01)
            for name in NAMES:
                ctx.set(dut.count[name], pulses[name])
            ctx.set(dut.clear, clear)
            await ctx.tick()
            if clear:
                clears_with_pulse[0] += any(pulses.values())
                model = dict.fromkeys(NAMES, 0)
            else:
                for name in NAMES:
                    model[name] += pulses[name]
        assert max(model.values()) > 0

    run_testbenches(dut, tb)
    assert clears_with_pulse[0] >= 5


def test_clear_wins_over_a_pulse_in_the_same_clock():
    dut = CounterBank(HostCounters)

    async def tb(ctx):
        for _ in range(3):
            ctx.set(dut.count.rx_to_host, 1)
            await ctx.tick()
        assert ctx.get(dut.counters.rx_to_host) == 3
        ctx.set(dut.clear, 1)           # pulse and clear together: the pulse is lost
        await ctx.tick()
        assert ctx.get(dut.counters.rx_to_host) == 0
        ctx.set(dut.clear, 0)
        await ctx.tick()                # the pulse is still high: counted again after the clear
        assert ctx.get(dut.counters.rx_to_host) == 1
        ctx.set(dut.count.rx_to_host, 0)
        await ctx.tick()
        assert ctx.get(dut.counters.rx_to_host) == 1
        assert ctx.get(dut.counters.events) == 0

    run_testbenches(dut, tb)


def test_counters_wrap_at_2_pow_32():
    """Preload a counter with 2**32 - 2 (the simulator can set a register) and count past it."""
    dut = CounterBank(HostCounters)

    async def tb(ctx):
        ctx.set(dut.counters.tx_frames, 2**32 - 2)
        ctx.set(dut.counters.events, 2**32 - 1)
        await ctx.tick()        # nothing pulsed: the preloaded values hold
        assert ctx.get(dut.counters.tx_frames) == 2**32 - 2
        ctx.set(dut.count.tx_frames, 1)
        ctx.set(dut.count.events, 1)
        await ctx.tick()
        assert ctx.get(dut.counters.tx_frames) == 2**32 - 1
        assert ctx.get(dut.counters.events) == 0
        await ctx.tick()
        assert ctx.get(dut.counters.tx_frames) == 0
        assert ctx.get(dut.counters.events) == 1
        # Neighbouring fields are untouched by the carry out of bit 31.
        assert ctx.get(dut.counters.interrupts) == 0
        assert ctx.get(dut.counters.tx_bad_descriptor) == 0

    run_testbenches(dut, tb)
