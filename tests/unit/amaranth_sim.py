"""Helpers for unit tests that run a block in Amaranth's own simulator."""

from amaranth.sim import Simulator


def run_testbenches(dut, *testbenches, processes=(), vcd=None):
    """Simulate ``dut`` with a 1 MHz clock and the given ``async def tb(ctx)`` testbenches.

    The simulation ends when every testbench has returned; ``processes`` (``async def``, e.g. a
    bus model that answers forever) run beside them and do not keep it going.
    """
    sim = Simulator(dut)
    sim.add_clock(1e-6)
    for testbench in testbenches:
        sim.add_testbench(testbench)
    for process in processes:
        sim.add_testbench(process, background=True)
    if vcd:
        with sim.write_vcd(vcd):
            sim.run()
    else:
        sim.run()
