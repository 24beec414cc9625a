"""The host driver against the NIC model: TCP end to end, starvation, moderation, bad input.

A remote TcpStack sits on the wire (its frames go to ``NicModel.receive_frame``, the model's MAC TX
frames go to it); a host TcpStack sits behind the driver (:class:`StackPort`, checksum offload on).
Everything runs in one asyncio task; the TCP clock is the model's cycle counter scaled to seconds.
"""

import asyncio
import random

import pytest
from amaranth.lib import data

from host_driver.driver import NicDriver
from host_driver.memory import HostMemory
from hw.host import regmap
from hw.layouts import CommandOpcode, Event, EventCode, EventKind, RingId
from sim.reference.nic_model import ModelBus, NicModel
from sim.scenario import TcpScenario

DETAIL_MASK = (1 << data.Layout.cast(Event)["detail"].width) - 1


class Setup:
    """The TCP scenario of :mod:`sim.scenario` (the same one the RTL runs) on the NIC model."""

    def __init__(self, **start):
        self.memory = HostMemory(1 << 24)
        self.model = NicModel(self.memory)
        self.bus = ModelBus(self.model)
        self.scenario = TcpScenario(self.bus, self.model.receive_frame, start=start)
        self.model.on_tx = self.scenario.from_wire
        self.driver = self.scenario.driver
        self.remote = self.scenario.remote
        self.host = self.scenario.host

    @property
    def step_hook(self):
        return self.scenario.step_hook

    @step_hook.setter
    def step_hook(self, hook):
        self.scenario.step_hook = hook

    async def transfer(self, down=1 << 20, up=256 << 10, seed=1):
        """Connect remote -> host, remote sends ``down`` bytes, host sends ``up`` back, close;
        both byte-exact."""
        got_down, got_up, (want_down, want_up) = await self.scenario.transfer(down, up, seed)
        assert got_down == want_down
        assert got_up == want_up
        assert self.remote.stats.checksum_errors == 0
        assert self.host.stats.checksum_errors == 0

    async def check_counters(self):
        counters = await self.driver.counters()
        assert counters == self.model.counters()
        drops = sum(v for k, v in counters.items() if k.startswith("rx_drop_"))
        assert counters["rx_frames"] == (counters["rx_to_host"] + drops
                                         + self.model.frames_inside)
        assert counters["tx_frames"] == self.driver.stats.tx_done
        assert counters["rx_to_host"] == self.driver.stats.rx_frames
        assert counters["events"] == sum(self.driver.stats.events.values())
        return counters


def test_tcp_transfer_end_to_end():
    setup = Setup()

    async def main():
        await setup.transfer()
        counters = await setup.check_counters()
        stats = setup.driver.stats
        assert stats.tx_offload == stats.tx_frames > 180        # offload was exercised
        assert counters["rx_frames"] == counters["rx_to_host"]  # nothing dropped
        assert counters["rx_candidates"] == counters["rx_frames"]
        assert stats.rx_bytes >= 1 << 20 and stats.tx_bytes >= 256 << 10
        assert setup.remote.stats.retransmissions == 0
        assert not stats.errors and not stats.rx_errors and not stats.tx_errors
        await setup.driver.stop()
        assert setup.memory.allocated == 0

    asyncio.run(main())


def test_tcp_with_rx_starvation():
    setup = Setup(rx_log2=6)
    rng = random.Random(7)

    async def starve():
        if rng.random() < 0.05:
            setup.driver.rx_target = rng.choice([0, 0, 1, 3, 63])
            await setup.driver.refill()

    setup.step_hook = starve

    async def main():
        await setup.transfer(down=1 << 19, up=128 << 10)
        counters = await setup.check_counters()
        assert counters["rx_drop_no_buffer"] > 20
        assert setup.remote.stats.retransmissions > 0
        assert setup.model.frames_inside == 0

    asyncio.run(main())


def test_tcp_with_interrupt_moderation():
    setup = Setup(intr_mod_events=16, intr_mod_cycles=500)

    async def main():
        await setup.transfer(down=1 << 19, up=128 << 10)
        counters = await setup.check_counters()
        # Fewer interrupts than events: moderation grouped them.
        assert counters["interrupts"] * 4 < counters["events"]
        assert counters["interrupts"] == setup.driver.stats.interrupts

    asyncio.run(main())


# --- Bad commands and doorbells ------------------------------------------------------------------

def _registers(model):
    """Every register value except those bad input is allowed to change."""
    moving = {"INTR_STATUS", "EVENT_PRODUCER", "EVENT_CONSUMER",
              *(name.upper() for name in ("events", "interrupts", "commands", "bad_commands",
                                          "bad_doorbells"))}
    return {reg.name: model.read_register(reg.offset) for reg in regmap.REGISTERS
            if reg.name not in moving}


async def _started():
    memory = HostMemory(1 << 22)
    model = NicModel(memory)
    driver = NicDriver(ModelBus(model))
    await driver.start(rx_log2=4, tx_log2=4, event_log2=6)
    await driver.service()
    return model, driver


@pytest.mark.parametrize("opcode, ring, code", [
    (0x7F, RingId.RX, EventCode.UNKNOWN_OPCODE),
    (CommandOpcode.RING_STOP, RingId.EVENT, EventCode.BAD_RING),
    (CommandOpcode.RING_START, RingId.COMMAND, EventCode.BAD_RING),
    (CommandOpcode.RING_STOP, 9, EventCode.BAD_RING),
])
def test_bad_command(opcode, ring, code):
    async def main():
        model, driver = await _started()
        before = _registers(model)
        tag = await driver.command(opcode, ring, tag=0x1234)
        done = await driver.wait_command(tag)
        assert done["kind"] == EventKind.COMMAND_DONE.value
        assert done["code"] == code.value
        assert done["tag"] == 0x1234
        assert done["detail"] == int(getattr(opcode, "value", opcode))
        assert done["ring"] == RingId.COMMAND.value and done["index"] == 0
        assert _registers(model) == before | {"COMMAND_PRODUCER": 1, "COMMAND_CONSUMER": 1}
        counters = await driver.counters()
        assert counters["commands"] == counters["bad_commands"] == 1
        # Nothing stopped: a frame still arrives.
        assert model.receive_frame(bytes(60)) == "admitted"

    asyncio.run(main())


def test_good_commands_stop_and_start_rings():
    async def main():
        model, driver = await _started()
        done = await driver.wait_command(await driver.command(CommandOpcode.RING_STOP, RingId.RX))
        assert done["code"] == EventCode.OK.value
        assert model.receive_frame(bytes(60)) == "rx_drop_no_buffer"
        await driver.wait_command(await driver.command(CommandOpcode.RING_START, RingId.RX))
        assert model.receive_frame(bytes(60)) == "admitted"
        await driver.wait_command(await driver.command(CommandOpcode.RING_STOP, RingId.TX))
        await driver.send(bytes(60))
        assert not model.tx_frames
        await driver.wait_command(await driver.command(CommandOpcode.NOP))
        await driver.wait_command(await driver.command(CommandOpcode.RING_START, RingId.TX))
        assert model.tx_frames == [bytes(60)]
        counters = await driver.counters()
        assert counters["commands"] == 5 and counters["bad_commands"] == 0

    asyncio.run(main())


@pytest.mark.parametrize("register, value", [
    ("RX_PRODUCER", 16),            # >= size
    ("RX_PRODUCER", 14),            # takes back a posted buffer (15 posted)
    ("TX_PRODUCER", 0xFFFF_FFFF),
    ("COMMAND_PRODUCER", 16),
    ("EVENT_CONSUMER", 5),          # past the NIC's producer
    ("TX_LOG2_SIZE", 13),           # BAD_RING_SIZE
])
def test_bad_doorbell(register, value):
    async def main():
        model, driver = await _started()
        reg = regmap.BY_NAME[register]
        ring = RingId[register.split("_")[0]]
        old = model.read_register(reg.offset)
        before = _registers(model)
        await driver.bus.write32(reg.offset, value)
        await driver.service()
        error = driver.stats.errors[-1]
        counters = await driver.counters()
        assert counters["bad_doorbells"] == 1
        assert error["ring"] == ring.value and error["detail"] == value & DETAIL_MASK
        after = _registers(model)
        if register.endswith("LOG2_SIZE"):
            assert error["code"] == EventCode.BAD_RING_SIZE.value
            assert model.read_register(reg.offset) == 0      # refused: ring off
            before[register] = 0
        else:
            assert error["code"] == EventCode.BAD_DOORBELL.value
            assert error["index"] == 0      # docs/host_interface.md: index 0 for a register
            # The event consumer moved on past the ERROR event itself, and no further.
            assert model.read_register(reg.offset) == old + (ring is RingId.EVENT)
        assert after == before

    asyncio.run(main())
