"""cocotb module of ``inic demo``: the TCP scenario on the NIC RTL, figures written as JSON.

Environment: ``INIC_DEMO_OUT`` (JSON path), ``INIC_DEMO_DOWN`` / ``INIC_DEMO_UP`` (bytes remote ->
host / host -> remote). The figures are recorded even when the scenario fails, with ``ok`` false
and the reason, so the command can say what happened.
"""

import json
import os

import cocotb

from sim.scenario import ScenarioTimeout, TcpScenario

from .nic_tb import NicTb


@cocotb.test()
async def demo(dut):
    down = int(os.environ.get("INIC_DEMO_DOWN", 1 << 20))
    up = int(os.environ.get("INIC_DEMO_UP", 256 << 10))
    tb = NicTb(dut)
    await tb.reset()
    scenario = TcpScenario(tb.bus, tb.mac.send,
                           start={"intr_mod_events": 8, "intr_mod_cycles": 500})
    tb.mac.on_tx = scenario.from_wire
    error = None
    got_down = got_up = b""
    want_down = want_up = b""
    try:
        got_down, got_up, (want_down, want_up) = await scenario.transfer(down, up, seed=1)
    except ScenarioTimeout as exc:
        error = str(exc)
    counters = await scenario.driver.counters() if scenario.driver.started else {}
    dma = tb.bus.dma.transactions
    ok = error is None and got_down == want_down and got_up == want_up
    result = {
        "ok": ok,
        "error": error,
        "bytes_expected": down + up,
        "bytes_delivered": (len(got_down) if got_down == want_down else 0)
        + (len(got_up) if got_up == want_up else 0),
        "frames_dropped": sum(v for k, v in counters.items() if k.startswith("rx_drop_")),
        "cycles": tb.cycle,
        "mac_rx_frames": tb.mac.rx_frames,
        "mac_rx_bytes": tb.mac.rx_bytes,
        "mac_tx_frames": tb.mac.tx_frames,
        "mac_tx_bytes": tb.mac.tx_bytes,
        "dma_reads": sum(t.kind == "read" for t in dma),
        "dma_writes": sum(t.kind == "write" for t in dma),
        "dma_bytes": sum(t.bytes for t in dma),
        "interrupts": counters.get("interrupts"),
        "events": counters.get("events"),
        "retransmissions": scenario.remote.stats.retransmissions
        + scenario.host.stats.retransmissions,
        "counters": counters,
    }
    with open(os.environ["INIC_DEMO_OUT"], "w") as out:
        json.dump(result, out)
    assert ok, error or "payload mismatch"
