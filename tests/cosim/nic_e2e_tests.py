"""The NIC end to end on the RTL: TCP through the driver, with RX-buffer starvation and AXI
backpressure (cocotb module for tests/cosim/test_nic_e2e.py). ``INIC_E2E_DOWN``/``INIC_E2E_UP`` set
the transfer sizes (bytes).

The NIC model runs beside the RTL (``sim/scoreboard.py``) in RX mode "follow": the driver starves
the NIC while frames arrive, so which frames find a buffer is a matter of timing; every delivered
frame, its RX event and buffer, every TX_DONE, every MAC TX frame (checksums filled in) and every
counter but the drops are compared with the model, the drops by the accounting identity.
"""

import os
import random

import cocotb

from sim.cosim.nic_tb import NicTb
from sim.cosim.pci import LinkConfig
from sim.scenario import TcpScenario

DOWN = int(os.environ.get("INIC_E2E_DOWN", 256 << 10))
UP = int(os.environ.get("INIC_E2E_UP", 64 << 10))


@cocotb.test()
async def test_tcp_starvation_backpressure(dut):
    """256 KB in, 64 KB out (``INIC_E2E_DOWN``/``INIC_E2E_UP``), byte-exact, while the driver
    now and then stops re-posting RX buffers and the DMA target drops its ready lines at
    random."""
    tb = NicTb(dut, LinkConfig(ready_stall=0.2, seed=3), scoreboard="follow")
    await tb.reset()
    rng = random.Random(11)
    scenario = None

    steps = 0

    async def starve():
        nonlocal steps
        steps += 1
        driver = scenario.driver
        # Once for sure (steps 100-130: nothing re-posted), then now and then, the driver stops
        # re-posting (0 or a few buffers kept posted) for a while.
        if steps in (100, 130):
            driver.rx_target = 0 if steps == 100 else 31
            await driver.refill()
        elif steps > 130 and rng.random() < 0.02:
            driver.rx_target = rng.choice([0, 2, 8, 31, 31, 31])
            await driver.refill()

    scenario = TcpScenario(tb.host_bus, tb.mac.send, start={"rx_log2": 5, "intr_mod_events": 8,
                                                        "intr_mod_cycles": 300},
                           step_hook=starve)
    tb.mac.on_tx = scenario.from_wire
    tb.watch(scenario.driver)
    got_down, got_up, (want_down, want_up) = await scenario.transfer(DOWN, UP, seed=5)
    assert got_down == want_down
    assert got_up == want_up

    counters = await scenario.driver.counters()
    dut._log.info("counters %s", counters)
    dut._log.info("cycles %d, DMA transactions %d", tb.cycle, len(tb.bus.dma.transactions))
    drops = sum(v for k, v in counters.items() if k.startswith("rx_drop_"))
    assert counters["rx_frames"] == tb.mac.rx_frames
    assert counters["rx_frames"] == counters["rx_to_host"] + drops
    assert counters["rx_drop_no_buffer"] > 0, "the starvation never happened"
    assert scenario.remote.stats.retransmissions > 0
    assert counters["rx_to_host"] == scenario.driver.stats.rx_frames
    assert counters["tx_frames"] == tb.mac.tx_frames == scenario.driver.stats.tx_done
    assert counters["dma_errors"] == 0 and counters["bad_doorbells"] == 0
    assert counters["events"] == sum(scenario.driver.stats.events.values())
    assert counters["interrupts"] < counters["events"]
    assert not tb.bus.dma.violations, tb.bus.dma.violations
    assert scenario.remote.stats.checksum_errors == 0 and scenario.host.stats.checksum_errors == 0
    tb.check()

