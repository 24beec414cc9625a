"""sim/cosim/pci.py on the RTL NIC (hw.nic.Nic): the driver through CocotbBus, DMA timing, errors.

The pytest function builds ``inic_nic`` and runs the cocotb tests below (named without ``test_``
so pytest does not collect them) in Icarus.
"""

import cocotb
import pytest
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, RisingEdge
from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.inet6 import IPv6
from scapy.layers.l2 import Ether

from host_driver.driver import NicDriver, offload_frame
from host_driver.memory import HostMemory
from hw import params
from hw.host.axi import Resp
from hw.layouts import CommandOpcode, EventCode, RxSummary, pack
from sim.cosim.nic_tb import MacPort
from sim.cosim.pci import CocotbBus, LinkConfig
from sim.reference.nic_model import summary_fields
from sim.reference.rx_status import expected_fields

FRAMES = [
    bytes(Ether() / IP(src="10.0.0.1", dst="10.0.0.2") / TCP(sport=1, dport=2) / (b"a" * 100)),
    bytes(Ether() / IP(src="10.0.0.3", dst="10.0.0.4") / UDP(sport=3, dport=4) / (b"b" * 7)),
    bytes(Ether() / IP(src="10.0.0.5", dst="10.0.0.6") / TCP() / bytes(1400)),
    # IPv6: the L4 checksum alone is offloaded. (A destination MAC given: scapy would look one up.)
    bytes(Ether(dst="02:00:00:00:00:02") / IPv6(src="2001:db8::1", dst="2001:db8::2")
          / TCP(sport=5, dport=6) / (b"c" * 301)),
    bytes(Ether(dst="02:00:00:00:00:02") / IPv6(src="2001:db8::3", dst="2001:db8::4")
          / UDP(sport=7, dport=8) / (b"d" * 33)),
]


@pytest.mark.cosim
def test_pci_model_on_nic():
    from hw.nic import Nic
    from sim.cosim import runner
    build = runner.build(Nic, "inic_nic")
    runner.run(build, "tests.cosim.test_pci_model", run_name="pci_model")


class Tb:
    def __init__(self, dut, config=None):
        self.dut = dut
        self.memory = HostMemory(1 << 22)
        Clock(dut.clk, params.CLOCK_PERIOD_NS, unit="ns").start()
        dut.rst.value = 1
        self.bus = CocotbBus(dut, self.memory, config)
        self.received = []
        self.driver = NicDriver(self.bus, on_rx=lambda f, s: self.received.append((f, s)))
        self.mac = MacPort(dut)
        self.tx_frames = []
        self.mac.on_tx = self.tx_frames.append

    async def reset(self):
        await ClockCycles(self.dut.clk, 4)
        self.dut.rst.value = 0
        self.bus.start()
        cocotb.start_soon(self._edges())

    async def _edges(self):
        edge = RisingEdge(self.dut.clk)
        while True:
            await edge
            self.mac.step()

    async def mac_send(self, frame):
        self.mac.send(frame)
        while not self.mac.idle:
            await RisingEdge(self.dut.clk)

    async def until(self, condition, max_cycles=200_000):
        waited = 0
        while not condition():
            assert waited < max_cycles, "timed out"
            await self.driver.poll(500)
            waited += 500


async def _rx_tx(tb):
    await tb.reset()
    await tb.driver.start(command_log2=3, event_log2=6, rx_log2=4, tx_log2=4)
    for frame in FRAMES:
        await tb.mac_send(frame)
    await tb.until(lambda: len(tb.received) == len(FRAMES))
    for (got, summary), frame in zip(tb.received, FRAMES):
        assert got == frame
        assert summary.as_value().value == pack(RxSummary, summary_fields(expected_fields(frame)))
    for frame in FRAMES:
        partial, options = offload_frame(frame)
        assert options["l4_csum"] and partial != frame      # the NIC must fill the checksums
        await tb.driver.send(partial, **options)
    await tb.until(lambda: len(tb.tx_frames) == len(FRAMES))
    assert tb.tx_frames == FRAMES
    tag = await tb.driver.command(0x42)
    done = await tb.driver.wait_command(tag)
    assert done["code"] == EventCode.UNKNOWN_OPCODE.value
    tag = await tb.driver.command(CommandOpcode.NOP)
    assert (await tb.driver.wait_command(tag))["code"] == EventCode.OK.value
    counters = await tb.driver.counters()
    assert counters["rx_to_host"] == counters["rx_frames"] == len(FRAMES)
    assert counters["tx_frames"] == len(FRAMES)
    assert counters["commands"] == 2 and counters["bad_commands"] == 1
    assert not tb.bus.dma.violations, tb.bus.dma.violations
    return counters


@cocotb.test()
async def driver_rx_tx_default_link(dut):
    tb = Tb(dut)
    await _rx_tx(tb)
    reads = [t for t in tb.bus.dma.transactions if t.kind == "read"]
    assert reads and all(t.done - t.cycle >= LinkConfig().read_latency for t in reads)


@cocotb.test()
async def driver_rx_tx_backpressure_slow_link(dut):
    tb = Tb(dut, LinkConfig(read_latency=200, write_latency=50, bytes_per_cycle=2.0,
                            ready_stall=0.3, seed=5))
    await _rx_tx(tb)


@cocotb.test()
async def dma_error_on_rx_buffer(dut):
    config = LinkConfig()
    tb = Tb(dut, config)
    await tb.reset()
    await tb.driver.start(command_log2=3, event_log2=6, rx_log2=4, tx_log2=4)
    # Every posted RX buffer answers writes with SLVERR (they lie between the rings in memory).
    config.errors.extend((addr, addr + 2048, Resp.SLVERR, "write")
                         for addr in tb.driver._rx_posted.values())
    await tb.mac_send(FRAMES[0])
    try:
        await tb.until(lambda: tb.driver.stats.rx_errors, max_cycles=20_000)
    except AssertionError:
        dut._log.error("stats %s counters %s writes %s", tb.driver.stats,
                       await tb.driver.counters(),
                       [(t.addr, t.resp, t.done) for t in tb.bus.dma.transactions
                        if t.kind == "write"][-5:])
        raise
    assert tb.driver.stats.rx_errors == {"DMA_ERROR": 1}
    counters = await tb.driver.counters()
    assert counters["rx_drop_dma_error"] == 1 and counters["dma_errors"] >= 1
