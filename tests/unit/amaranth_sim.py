"""Helpers for unit tests that run a block in Amaranth's own simulator."""

from amaranth.sim import Simulator


def run_testbenches(dut, *testbenches, vcd=None):
    """Simulate ``dut`` with a 1 MHz clock and the given ``async def tb(ctx)`` testbenches."""
    sim = Simulator(dut)
    sim.add_clock(1e-6)
    for testbench in testbenches:
        sim.add_testbench(testbench)
    if vcd:
        with sim.write_vcd(vcd):
            sim.run()
    else:
        sim.run()
