"""The scenario of ``inic demo`` (sim/demo_scenario.py) on the NIC model: handout, fast path, the
lost segment's flush, re-handout, the host send's flush, re-handout, close; byte-exact, and the
host's statistics equal to the NIC's counters. (The RTL runs it in tests/system/test_demo.py.)"""

import asyncio

from host_driver.memory import HostMemory
from host_driver.offload import OffloadPolicy
from sim.demo_scenario import LossyWire, OffloadDemo, figures
from sim.offload_app import Wire
from sim.reference.nic_model import ModelBus, NicModel
from sim.scenario import TcpScenario

from .test_host_offload import CYCLE_SECONDS


def run_demo_on_model(down, up):
    async def main():
        model = NicModel(HostMemory(1 << 25))
        paced = Wire(model.receive_frame)     # about wire rate, as the RTL's MAC takes them
        demo = None
        wire = LossyWire(paced, OffloadDemo.lose_after(down), lambda: demo.offloaded())
        scenario = TcpScenario(ModelBus(model), wire, cycle_seconds=CYCLE_SECONDS,
                               offload=OffloadPolicy(), step_hook=paced.tick,
                               start={"command_log2": 6, "event_log2": 10})
        model.on_tx = scenario.from_wire
        demo = OffloadDemo(scenario, down, up)
        await demo.run()
        return demo, wire, await figures(scenario)
    return asyncio.run(main())


def test_demo_scenario_on_the_model():
    down, up = 300_000, 40_000
    demo, wire, f = run_demo_on_model(down, up)
    assert demo.byte_exact
    assert [step for step, _ in demo.steps] == ["handshake", "handout", "download", "upload",
                                                "handout again", "remote close", "host close"]
    assert wire.lost == OffloadDemo.lose_after(down) + 1
    assert f["mismatches"] == []
    assert f["fast_path_bytes"] > down // 2 and f["slow_path_bytes"] > 0
    assert f["fast_path_bytes"] + f["frame_data_bytes"] + f["slow_path_bytes"] == down
    assert f["handouts"] == 3
    assert f["flushes"] == {"OUT_OF_ORDER": 1, "HOST": 1, "FIN": 1}
    assert f["tx_slow_bytes"] == up
