"""cocotb module of ``inic demo``: the offload scenario (sim/demo_scenario.py) on the NIC RTL,
figures written as JSON.

Environment: ``INIC_DEMO_OUT`` (JSON path), ``INIC_DEMO_DOWN`` / ``INIC_DEMO_UP`` (bytes remote ->
host / host -> remote). The figures are recorded even when the scenario fails, with ``ok`` false
and the reason, so the command can say what happened.
"""

import json
import os

import cocotb

from host_driver.offload import OffloadPolicy
from sim.demo_scenario import LossyWire, OffloadDemo, figures
from sim.scenario import ScenarioTimeout, TcpScenario

from .nic_tb import NicTb

#: TCP seconds per NIC cycle: the NIC's delayed-ACK timer (DELAYED_ACK_CYCLES) then stays below
#: the stacks' minimum RTO, as 40 ms stays below 200 ms in Linux (tests/unit/test_host_offload.py).
CYCLE_SECONDS = 1e-7


@cocotb.test()
async def demo(dut):
    down = int(os.environ.get("INIC_DEMO_DOWN", 1 << 20))
    up = int(os.environ.get("INIC_DEMO_UP", 256 << 10))
    tb = NicTb(dut)
    await tb.reset()
    demo = None
    wire = LossyWire(tb.mac.send, OffloadDemo.lose_after(down), lambda: demo.offloaded())
    scenario = TcpScenario(tb.bus, wire, cycle_seconds=CYCLE_SECONDS, offload=OffloadPolicy(),
                           start={"command_log2": 6, "event_log2": 10,
                                  "intr_mod_events": 8, "intr_mod_cycles": 500})
    tb.mac.on_tx = scenario.from_wire
    demo = OffloadDemo(scenario, down, up)
    error = None
    try:
        await demo.run()
    except ScenarioTimeout as exc:
        error = str(exc)
    counters = await scenario.driver.counters() if scenario.driver.started else {}
    offload = await figures(scenario) if scenario.driver.started else {}
    if error is None and offload["mismatches"]:
        error = "host and NIC statistics differ: " + "; ".join(offload["mismatches"])
    dma = tb.bus.dma.transactions
    ok = error is None and demo.byte_exact
    if error is None and not ok:
        error = "payload mismatch"
    result = {
        "ok": ok,
        "error": error,
        "bytes_expected": down + up,
        "bytes_delivered": (len(demo.reader.data) if demo.reader is not None
                            and bytes(demo.reader.data) == demo.down_data else 0)
        + (len(demo.got_up) if bytes(demo.got_up) == demo.up_data else 0),
        "frames_dropped": sum(v for k, v in counters.items() if k.startswith("rx_drop_")),
        "frames_lost_on_wire": int(wire.lost is not None),
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
        **offload,
        "steps": demo.steps,
        "counters": counters,
    }
    with open(os.environ["INIC_DEMO_OUT"], "w") as out:
        json.dump(result, out)
    assert ok, error
