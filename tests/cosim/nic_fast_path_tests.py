"""The fast path on the RTL (cocotb module for tests/cosim/test_nic_fast_path.py): a remote peer
sends to a host socket whose application posts RCVMDLs; after the handout the NIC places every
in-order byte into the application's buffers and ACKs it itself (docs/fast_path.md).

``INIC_FP_BYTES`` sets the transfer size (bytes). The model does not run beside the RTL here: the
handout's fence and the delayed-ACK timer make the two differ in timing (which frames the slow
path took before the INTERLOCK, when an ACK goes out); the test checks the outcome instead —
byte-exact data, no slow-path data after the handout, the peer's view of the ACKs, the counters
of the host and of the NIC against each other and the accounting identity.
"""

import os

import cocotb

from host_driver.offload import OffloadPolicy
from host_driver.tcp import State
from sim.cosim.nic_tb import NicTb
from sim.cosim.pci import LinkConfig
from sim.offload_app import SEGMENT, Reader, payload
from sim.scenario import HOST_IP, HOST_MAC, TcpScenario

BYTES = int(os.environ.get("INIC_FP_BYTES", 1 << 20))


class _Setup:
    """What tests/unit/test_host_offload.py's ``Reader`` needs: memory and the offload."""

    def __init__(self, scenario, memory):
        self.offload = scenario.offload
        self.memory = memory


@cocotb.test()
async def test_upload_placed_by_the_nic(dut):
    tb = NicTb(dut, LinkConfig(seed=3))
    await tb.reset()
    scenario = TcpScenario(tb.host_bus, tb.mac.send, offload=OffloadPolicy(),
                           start={"command_log2": 6, "event_log2": 10})
    tb.mac.on_tx = scenario.from_wire
    await scenario.driver.start(**scenario.start_options)
    host, remote_stack = scenario.host, scenario.remote
    listener = host.listen(80)
    remote = remote_stack.connect(HOST_MAC, HOST_IP, 80)
    accepted = []

    def ready():
        conn = listener.accept()
        if conn is not None:
            accepted.append(conn)
        return bool(accepted)

    await scenario.run_until(ready, "handshake")
    conn = accepted[0]
    reader = Reader(_Setup(scenario, tb.memory), conn)
    data = payload(BYTES)
    remote.send(data)

    def done():
        reader.pump()
        return len(reader.data) >= len(data)

    await scenario.run_until(done, "transfer")
    remote.close()

    def eof():
        reader.pump()
        return not reader.posted

    await scenario.run_until(eof, "end of stream")
    assert bytes(reader.data) == data
    conn.close()
    await scenario.run_until(lambda: conn.state is State.CLOSED
                             and remote.state in (State.CLOSED, State.TIME_WAIT), "close")

    stats = await scenario.offload.statistics()
    counters = await scenario.driver.counters()
    fast = await scenario.driver.fast_path_counters()
    dut._log.info("offload statistics %s", stats)
    dut._log.info("fast-path counters %s", fast)
    dut._log.info("cycles %d", tb.cycle)
    # After the handout nothing of the upload took the slow path; the NIC placed it.
    assert stats["rx_slow_segments"] == 0 and stats["rx_slow_bytes"] == 0
    assert stats["handouts"] == fast["fp_handouts"] == 1
    assert stats["rx_fast_bytes"] == fast["fp_fast_bytes"]
    assert stats["rx_fast_bytes"] + stats["rx_frame_data_bytes"] == len(data)
    assert stats["rx_fast_segments"] == fast["fp_fast_frames"] >= stats["rx_fast_bytes"] // SEGMENT
    assert stats["flushes"] == {"FIN": 1} and fast["fp_flush_fin"] == 1
    assert stats["nic_acks"] == fast["fp_acks_sent"] > 0
    # The peer saw consistent ACKs: nothing resent, no duplicate ACK.
    assert remote.stats.retransmissions == 0 and remote.stats.timeouts == 0
    assert remote.stats.dup_acks_received == 0
    assert remote.stats.checksum_errors == 0
    # Every frame accounted for.
    drops = sum(v for k, v in counters.items() if k.startswith("rx_drop_"))
    assert counters["rx_frames"] == tb.mac.rx_frames
    assert counters["rx_frames"] == (counters["rx_to_host"] + fast["fp_fast_frames"]
                                     + fast["fp_frame_data"] + fast["fp_pure_acks"]
                                     + fast["fp_queued"] + drops)
    assert counters["dma_errors"] == 0
    assert not tb.bus.dma.violations, tb.bus.dma.violations
