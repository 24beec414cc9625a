"""The driver's fast-path API (host_driver/driver.py) on the NIC model: command-ring slots of
commands no event answers, the RCVMDL lists it allocates and frees, the event records and their
callback, the counters through the register map."""

import asyncio

from host_driver.driver import Flush as FlushRecord
from host_driver.driver import FrameData, Interlock, RcvMdlDone
from hw.host import regmap
from hw.layouts import EventCode, FlushReason

from .test_fast_path_model import IRS, Nic, Peer, payload, run


def test_commands_without_an_answer_free_their_ring_slots():
    @run
    async def test(nic):
        peer = Peer()
        conn = await nic.handout(peer)
        await nic.receive(peer.segment(payload(64)))
        reads, answers = nic.bus.reads, len(nic.driver.command_done)
        # Many more than the command ring holds (64 entries), none answered by an event.
        for _ in range(200):
            await nic.driver.winupdate(conn, 0)
        await nic.driver.service()
        assert nic.bus.reads > reads                  # COMMAND_CONSUMER was read
        assert len(nic.driver.command_done) == answers
        await nic.driver.winupdate(conn, 64)
        await nic.receive(peer.segment(payload(10)))
        assert [type(r) for r in nic.records()] == [FrameData, FrameData]


def test_rcvmdl_lists_are_freed_when_answered():
    @run
    async def test(nic):
        peer = Peer()
        conn = await nic.handout(peer)
        entries = nic.buffers([100, 100])
        allocated = nic.memory.allocated
        for handle in range(5):
            await nic.driver.rcvmdl(conn, handle, entries)
            assert nic.memory.allocated > allocated
            await nic.receive(peer.segment(payload(200, handle)))
            assert nic.records() == [RcvMdlDone(conn, handle, 200, False)]
            assert nic.memory.allocated == allocated


def test_records_go_to_the_callback_in_event_order():
    @run
    async def test(nic):
        seen = []
        nic.driver.on_fast_path = seen.append
        peer = Peer()
        interlock = await nic.handout1(peer)
        conn = interlock["detail"]
        await nic.answer(await nic.driver.handout2(conn, peer.ccb_addr))
        frame = peer.segment(payload(30))
        await nic.receive(frame)
        await nic.driver.close(conn)
        await nic.driver.service()
        assert [type(r) for r in seen] == [Interlock, FrameData, FlushRecord]
        assert seen[0] == Interlock(conn, 0xC0DE, peer.tag)
        assert (seen[1].frame, seen[1].seq) == (frame, IRS + 1)
        assert seen[2] == FlushRecord(conn, FlushReason.CLOSE, 0, 0, 0)
        assert not nic.driver.fast_path_events


def test_frame_data_into_a_failing_rx_buffer():
    @run
    async def test(nic):
        peer = Peer()
        conn = await nic.handout(peer)
        nic.model.dma_error_ranges += [(addr, addr + 10240, "write")
                                       for addr in nic.driver._rx_posted.values()]
        await nic.receive(peer.segment(payload(30)))
        nic.model.dma_error_ranges.clear()
        (shown,) = nic.records()
        assert (shown.conn_nbr, shown.code, shown.frame) == (conn, EventCode.DMA_ERROR, b"")
        assert nic.driver.stats.rx_errors["DMA_ERROR"] == 1


def test_fast_path_counters_read_through_the_registers():
    @run
    async def test(nic: Nic):
        peer = Peer()
        await nic.handout(peer)
        await nic.receive(peer.segment(payload(30)), peer.segment(payload(30)))
        counters = await nic.driver.fast_path_counters()
        assert counters == nic.model.fast_path_counters()
        assert (counters["fp_frame_data"], counters["fp_queued"]) == (1, 1)
        await nic.driver.flush(peer.conn_nbr)
        await nic.driver.service()
        counters = await nic.driver.fast_path_counters()
        assert (counters["fp_flush_host"], counters["fp_to_slow"]) == (1, 1)
        await nic.bus.write32(regmap.BY_NAME["CONTROL"].offset,
                              regmap.CONTROL_ENABLE | regmap.CONTROL_COUNTERS_CLEAR)
        counters = await nic.driver.fast_path_counters()
        assert set(counters.values()) == {0}         # no connection left: the levels too


def test_stop_frees_the_rcvmdl_lists_still_posted():
    async def main():
        nic = Nic()
        await nic.start()
        peer = Peer()
        conn = await nic.handout(peer)
        entries = nic.buffers([100])
        await nic.driver.rcvmdl(conn, 1, entries)
        await nic.driver.stop()
        for addr, _ in entries:
            nic.memory.free(addr - 3)
        nic.memory.free(peer.ccb_addr)
        assert nic.memory.allocated == 0

    asyncio.run(main())
