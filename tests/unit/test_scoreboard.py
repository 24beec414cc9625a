"""The scoreboard (sim/scoreboard.py) without a simulator: a second NIC model plays the RTL.

The stand-in writes into the host memory the driver uses, as the RTL does; the scoreboard's own
model reads from it and writes to its private copy. Identical behaviour must pass; every kind of
deliberate difference (an event field, an extra or missing event, an RX buffer byte, a MAC TX
frame, a counter) must be reported.
"""

import asyncio

import pytest
from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.l2 import Ether

from host_driver.driver import NicDriver
from host_driver.memory import HostMemory
from hw.layouts import RX_SUMMARY_BYTES, CommandOpcode, EventCode
from sim.reference.nic_model import ModelBus, NicModel
from sim.scoreboard import MirroredBus, NicScoreboard


def frame(n, size=60):
    return bytes(Ether(dst="02:00:00:00:00:01", src="02:00:00:00:00:02")
                 / IP(src="10.0.0.2", dst="10.0.0.1") / TCP(sport=1000 + n, dport=80)
                 / bytes(range(n, n + size)))


class Rig:
    """Driver -> MirroredBus -> (stand-in NicModel as "RTL", scoreboard's model)."""

    def __init__(self, rx="exact", alter_event=None):
        self.memory = HostMemory(1 << 20)
        self.rtl = NicModel(self.memory)
        self.sb = NicScoreboard(self.memory.read, base=self.memory.base, size=self.memory.size,
                                rx=rx)
        self.rtl.on_tx = self.sb.rtl_tx_frame
        self.driver = NicDriver(MirroredBus(ModelBus(self.rtl), self.sb))
        alter = alter_event or (lambda fields: fields)
        self.driver.on_event = lambda fields: self.sb.rtl_event(alter(dict(fields)))

    def send(self, f, rtl=True):
        if rtl:
            self.rtl.receive_frame(f)
        self.sb.receive_frame(f)

    async def traffic(self):
        d = self.driver
        await d.start(rx_log2=3, tx_log2=3, command_log2=3, event_log2=5)
        for n in range(3):
            self.send(frame(n))
        await d.service()
        await d.send(bytes(Ether() / IP(src="10.0.0.1", dst="10.0.0.2") / UDP() / b"up"))
        await d.command(CommandOpcode.NOP, tag=7)
        await d.command(0x55, tag=8)
        await d.service()
        await d.service()

    def run(self, coro=None):
        asyncio.run(coro or self.traffic())
        return self.rtl.counters()


def test_identical_behaviour_passes():
    rig = Rig()
    counters = rig.run()
    rig.sb.check(counters)
    assert rig.sb.compared == {"events": 6, "rx_buffers": 3, "tx_frames": 1}


@pytest.mark.parametrize("field, value", [
    ("kind", 4), ("ring", 1), ("index", 5), ("length", 1), ("code", EventCode.DMA_ERROR.value),
    ("tag", 0x1234), ("detail", 1),
])
def test_an_altered_event_is_reported(field, value):
    def alter(fields):
        if fields["kind"] == 3 and fields["tag"] == 8:     # the second COMMAND_DONE
            fields[field] = value
        return fields
    rig = Rig(alter_event=alter)
    counters = rig.run()
    with pytest.raises(AssertionError, match=f"differs in {field}|only the"):
        rig.sb.check(counters)


def test_a_missing_or_extra_event_is_reported():
    rig = Rig(alter_event=lambda fields: fields)
    counters = rig.run()
    rig.sb.rtl_event({"kind": 2, "ring": 3, "index": 1, "length": 9, "code": 0, "tag": 0,
                      "detail": 0})
    with pytest.raises(AssertionError, match="TX entries: only the RTL wrote TX_DONE"):
        rig.sb.check(counters)

    rig = Rig()
    counters = rig.run()
    rig.sb.model.events.append((0, {"kind": 1, "ring": 2, "index": 3, "length": 60, "code": 2,
                                    "tag": 0, "detail": 0}))
    with pytest.raises(AssertionError, match="RX entries: only the model wrote RX"):
        rig.sb.check(counters)


def test_an_altered_rx_buffer_is_reported():
    def alter(fields):
        if fields["kind"] == 1 and fields["index"] == 1:
            addr = rig.driver._rx_posted[1]
            rig.memory.write(addr + 5, b"\xff")                         # the summary
        if fields["kind"] == 1 and fields["index"] == 2:
            addr = rig.driver._rx_posted[2]
            rig.memory.write(addr + RX_SUMMARY_BYTES + 20, b"\xff")  # the frame
        return fields
    rig = Rig(alter_event=alter)
    counters = rig.run()
    with pytest.raises(AssertionError) as info:
        rig.sb.check(counters)
    assert "index 1" in str(info.value) and "header (RxSummary) differs from byte 5" in str(
        info.value)
    assert "index 2" in str(info.value) and (
        f"frame differs from byte {RX_SUMMARY_BYTES + 20}" in str(info.value))


def test_an_altered_tx_frame_and_counter_are_reported():
    rig = Rig()
    rig.rtl.on_tx = lambda f: rig.sb.rtl_tx_frame(f[:-1] + b"!")
    counters = rig.run()
    counters["bad_commands"] += 1
    counters["interrupts"] += 5         # timing-dependent: not compared
    with pytest.raises(AssertionError) as info:
        rig.sb.check(counters)
    message = str(info.value)
    assert "MAC TX frame 0" in message and "counter bad_commands: RTL 2, model 1" in message
    assert "interrupts" not in message


def test_a_frame_only_one_side_saw_breaks_the_exact_mode():
    rig = Rig()

    async def traffic():
        await rig.traffic()
        rig.send(frame(9), rtl=False)
        await rig.driver.service()
    counters = rig.run(traffic())
    with pytest.raises(AssertionError, match="RX entries: only the model wrote RX"):
        rig.sb.check(counters)


def test_follow_mode_takes_the_rtl_drops_by_the_accounting_identity():
    """In follow mode frames the RTL dropped are skipped; the drop counters must add up."""
    rig = Rig(rx="follow")

    async def traffic():
        d = rig.driver
        await d.start(rx_log2=2, event_log2=5, rx_post=1)
        for n in range(3):              # one buffer: frames 1 and 2 are dropped (no buffer)
            rig.send(frame(n))
        await d.service()
        rig.send(frame(3))
        await d.service()
    counters = rig.run(traffic())
    assert counters["rx_drop_no_buffer"] == 2
    rig.sb.check(counters)
    assert rig.sb.compared["rx_buffers"] == 2

    counters["rx_drop_no_buffer"] = 1
    with pytest.raises(AssertionError, match="= 1, it gave no RX event for 2 frames"):
        rig.sb.check(counters)


def test_follow_mode_matches_an_unwritten_buffer_by_length_and_hash():
    """A BUFFER_TOO_SMALL event carries no frame: the frame is the next one of its length and RSS
    hash, so a dropped frame of the same length before it is skipped, not taken."""
    rig = Rig(rx="follow")

    async def traffic():
        d = rig.driver
        await d.start(rx_log2=2, event_log2=5, rx_post=1, rx_buffer_size=100)
        rig.send(frame(1), rtl=False)   # the RTL dropped this one (same length, other hash)
        rig.send(frame(2))              # too big for a 100-byte buffer: BUFFER_TOO_SMALL
        await d.service()
    rig.run(traffic())
    counters = rig.rtl.counters()
    counters["rx_frames"] += 1          # the RTL saw the dropped frame too,
    counters["rx_drop_no_buffer"] += 1  # and counted it
    counters["rx_candidates"] += 1
    rig.sb.check(counters)
    assert rig.sb.compared["events"] == 1
