"""The fast path of the NIC model (sim/reference/fast_path.py) against docs/fast_path.md, through
the driver (host_driver/driver.py) and ModelBus, with frames built by scapy.

Every frame goes in through :meth:`Nic.receive`, which checks the accounting identity of
docs/fast_path.md "Accounting" after it (so do :meth:`Nic.answer` and :meth:`Nic.records`, after
commands); every test ends with :meth:`Nic.finish` (the counters as
the driver reads them equal the model's, nothing left over).
"""

import asyncio
import functools
import ipaddress
from itertools import pairwise

import pytest
from scapy.layers.inet import IP, TCP
from scapy.layers.inet6 import IPv6
from scapy.layers.l2 import Dot1Q, Ether
from scapy.packet import Raw

from host_driver.ccb import CCB_ALIGN, make_ccb, read_ccb, write_ccb
from host_driver.driver import Flush as FlushRecord
from host_driver.driver import FrameData, Interlock, NicDriver, RcvMdlDone
from host_driver.memory import HostMemory
from hw import params
from hw.ccb.layouts import CcbState
from hw.layouts import (
    CCB_BYTES,
    CommandOpcode,
    ConnArg,
    ConnState,
    EventCode,
    EventKind,
    FlushReason,
    RingId,
    pack,
)
from sim.reference.ccb_table import CcbTable, FourTuple
from sim.reference.nic_model import ModelBus, NicModel

NIC_MAC, PEER_MAC = "02:00:00:00:00:01", "02:00:00:00:00:02"
NIC_IP, NIC_IP6 = "10.1.0.1", "fd00::1"
ISS, IRS = 5000, 1000           # the host's and the peer's initial sequence numbers
TS_VAL = 777                    # the host's TSval at HANDOUT2
PSH_ENDED = 1                   # RCVMDL_DONE code: ended by a PSH


def mac(text):
    return int(text.replace(":", ""), 16)


class Peer:
    """One connection as the wire sees it (the peer's next seq, its frames) and the Ccb the
    host hands out for it."""

    def __init__(self, n=0, *, ipv6=False, rcv_buf=65535, rcv_wscale=0, snd_wscale=0,
                 rcv_mss=1460, timestamps=False, vlan=None):
        self.n, self.ipv6, self.vlan = n, ipv6, vlan
        self.src = f"fd00::{n + 2:x}" if ipv6 else f"10.0.{n // 200}.{n % 200 + 2}"
        self.dst = NIC_IP6 if ipv6 else NIC_IP
        self.sport, self.dport = 40000 + n, 80
        self.seq = IRS + 1
        self.rcv_buf, self.rcv_wscale, self.snd_wscale = rcv_buf, rcv_wscale, snd_wscale
        self.rcv_mss, self.timestamps = rcv_mss, timestamps
        self.ccb_addr = self.conn_nbr = self.tag = None

    def key(self):
        return FourTuple(int(ipaddress.ip_address(self.src)), int(ipaddress.ip_address(self.dst)),
                         self.sport, self.dport, self.ipv6)

    def ccb(self, **changes):
        """The Ccb; ``changes`` (part.field=value as {"part": {...}}) override its fields."""
        rcv_nxt = IRS + 1
        ccb = make_ccb(
            {"remote_ip": int(ipaddress.ip_address(self.src)),
             "local_ip": int(ipaddress.ip_address(self.dst)), "remote_port": self.sport,
             "local_port": self.dport, "ipv6": int(self.ipv6)},
            {"local_mac": mac(NIC_MAC), "remote_mac": mac(PEER_MAC), "ttl": 64, "tos": 0x10,
             "rcv_mss": self.rcv_mss, "snd_wscale": self.snd_wscale,
             "rcv_wscale": self.rcv_wscale, "iss": ISS, "irs": IRS,
             "timestamps": int(self.timestamps), "vlan": int(self.vlan is not None),
             "vlan_tci": self.vlan or 0},
            {"rcv_nxt": rcv_nxt, "rcv_buf": self.rcv_buf,
             "rcv_adv": rcv_nxt + min(self.rcv_buf, 0xFFFF << self.rcv_wscale),
             "snd_una": ISS + 1, "snd_nxt": ISS + 1, "snd_wnd": 8192, "snd_wl1": rcv_nxt,
             "snd_wl2": ISS + 1, "ts_recent": 0, "ts_val": TS_VAL, "ip_id": 100})
        for part, fields in changes.items():
            if isinstance(fields, dict):
                ccb[part].update(fields)
            else:
                ccb[part] = fields
        return ccb

    def segment(self, payload=b"", *, flags="A", seq=None, ack=ISS + 1, window=1000,
                tsval=None, ip_options=None, chksum=None, ip_chksum=None):
        """A frame from the peer; in order (and the peer's seq advanced) unless ``seq``."""
        if seq is None:
            seq = self.seq
            self.seq += len(payload)
        options = [("NOP", None), ("NOP", None), ("Timestamp", (tsval, 0))] if tsval else []
        tcp = TCP(sport=self.sport, dport=self.dport, seq=seq, ack=ack, flags=flags,
                  window=window, options=options)
        if chksum is not None:
            tcp.chksum = chksum
        if self.ipv6:
            ip = IPv6(src=self.src, dst=self.dst)
        elif ip_options is not None:
            ip = IP(src=self.src, dst=self.dst, options=ip_options)
        else:
            ip = IP(src=self.src, dst=self.dst)
        if ip_chksum is not None:
            ip.chksum = ip_chksum
        ether = Ether(src=PEER_MAC, dst=NIC_MAC)
        if self.vlan is not None:
            ether = ether / Dot1Q(vlan=self.vlan)
        return bytes(ether / ip / tcp / Raw(payload)) if payload else bytes(ether / ip / tcp)


class Nic:
    """The NIC model behind the driver, with what came out of it."""

    def __init__(self, connections=params.FAST_PATH_CONNECTIONS):
        self.memory = HostMemory(1 << 23)
        self.model = NicModel(self.memory, fast_path_connections=connections)
        self.bus = ModelBus(self.model)
        self.slow = []              # frames the slow path delivered, in order
        self.driver = NicDriver(self.bus, on_rx=lambda frame, _: self.slow.append(bytes(frame)))
        self.acks = []              # frames on MAC TX (the NIC's ACKs)
        self.model.on_tx = self.acks.append
        self.events = []
        self.driver.on_event = self.events.append

    async def start(self):
        await self.driver.start(command_log2=6, rx_log2=7, rx_buffer_size=10240)

    def check_accounting(self):
        c, f = self.model.counters(), self.model.fast_path_counters()
        drops = sum(v for k, v in c.items() if k.startswith("rx_drop_"))
        assert c["rx_frames"] == (c["rx_to_host"] + f["fp_fast_frames"] + f["fp_frame_data"]
                                  + f["fp_pure_acks"] + f["fp_queued"] + drops
                                  + self.model.frames_inside)

    async def receive(self, *frames):
        for frame in frames:
            self.model.receive_frame(frame)
            self.check_accounting()
        await self.driver.service()

    def records(self):
        """The fast-path records since the last call."""
        self.check_accounting()
        out = list(self.driver.fast_path_events)
        self.driver.fast_path_events.clear()
        return out

    async def answer(self, tag):
        done = await self.driver.wait_command(tag)
        self.check_accounting()
        return done

    async def handout1(self, peer, ccb=None):
        peer.ccb_addr = self.memory.alloc(CCB_BYTES, CCB_ALIGN)
        write_ccb(self.memory, peer.ccb_addr, ccb or peer.ccb())
        peer.tag = await self.driver.handout1(peer.ccb_addr, 0xC0DE + peer.n)
        return await self.answer(peer.tag)

    async def handout(self, peer, ccb=None):
        """Both phases; the connection's conn_nbr."""
        interlock = await self.handout1(peer)
        assert interlock["kind"] == EventKind.INTERLOCK.value
        peer.conn_nbr = interlock["detail"]
        if ccb is not None:
            write_ccb(self.memory, peer.ccb_addr, ccb)
        done = await self.answer(await self.driver.handout2(peer.conn_nbr, peer.ccb_addr))
        assert done["code"] == EventCode.OK.value
        self.records()
        return peer.conn_nbr

    def buffers(self, sizes, skew=3):
        """Host buffers of ``sizes`` bytes at odd addresses: ``[(addr, length)]``."""
        return [(self.memory.alloc(n + skew, 16) + skew, n) for n in sizes]

    def placed(self, entries):
        return b"".join(self.memory.read(addr, n) for addr, n in entries)

    async def finish(self):
        self.check_accounting()
        assert await self.driver.counters() == self.model.counters()
        assert await self.driver.fast_path_counters() == self.model.fast_path_counters()
        assert not self.driver.stats.errors
        assert self.model.frames_inside == 0


def run(test=None, *, connections=params.FAST_PATH_CONNECTIONS):
    """Decorator: run ``test(nic)`` at once on a started NIC with ``connections`` CCB-table
    entries, then :meth:`Nic.finish`."""
    if test is None:
        return functools.partial(run, connections=connections)

    async def main():
        nic = Nic(connections)
        await nic.start()
        await test(nic)
        await nic.finish()
    asyncio.run(main())


def payload(n, seed=0):
    return bytes((seed * 7 + i * 13) & 0xFF for i in range(n))


def flush_of(records):
    flushes = [r for r in records if isinstance(r, FlushRecord)]
    assert len(flushes) == 1, records
    return flushes[0]


# -- Handout --------------------------------------------------------------------------------------


def test_handout_in_two_phases():
    @run
    async def test(nic):
        peer = Peer()
        interlock = await nic.handout1(peer)
        expected = CcbTable(params.FAST_PATH_CONNECTIONS).insert(peer.key())[1]
        assert interlock["kind"] == EventKind.INTERLOCK.value
        assert interlock["ring"] == RingId.COMMAND.value
        assert (interlock["code"], interlock["tag"], interlock["detail"]) == (0, 0xC0DE, expected)
        assert nic.records() == [Interlock(expected, 0xC0DE, peer.tag)]
        assert nic.model.fast_path.connections[expected].state is ConnState.PENDING
        done = await nic.answer(await nic.driver.handout2(expected, peer.ccb_addr))
        assert (done["kind"], done["code"]) == (EventKind.COMMAND_DONE.value, 0)
        assert nic.model.fast_path.connections[expected].state is ConnState.FAST
        counters = await nic.driver.fast_path_counters()
        assert (counters["fp_handouts"], counters["fp_connections"]) == (1, 1)
        assert counters["fp_bad_commands"] == 0


def test_handout_race_queues_frames_between_the_phases_and_delivers_them_once():
    @run
    async def test(nic):
        peer = Peer()
        before = peer.segment(payload(100, 1))
        await nic.receive(before)                       # no connection yet: the slow path
        interlock = await nic.handout1(peer)
        peer.conn_nbr = interlock["detail"]
        rx_before = [e for e in nic.events if e["kind"] == EventKind.RX.value]
        assert nic.events.index(rx_before[-1]) < nic.events.index(interlock)
        assert nic.slow == [before]
        between = [peer.segment(payload(200, n)) for n in range(3)]
        await nic.receive(*between)
        assert nic.slow == [before] and nic.model.fast_path.queued == 3
        # The host saw `before`: its Ccb starts after it.
        ccb = peer.ccb(tcp={"rcv_nxt": IRS + 101, "rcv_adv": IRS + 101 + 65535})
        write_ccb(nic.memory, peer.ccb_addr, ccb)
        entries = nic.buffers([1000])
        await nic.answer(await nic.driver.rcvmdl(peer.conn_nbr, 7, entries))
        assert nic.driver.command_done[7]["code"] == EventCode.WRONG_STATE.value    # PENDING
        done = await nic.answer(await nic.driver.handout2(peer.conn_nbr, peer.ccb_addr))
        assert done["code"] == EventCode.OK.value
        records = nic.records()
        shown = [r for r in records if isinstance(r, FrameData)]
        assert [r.frame for r in shown] == between[:1] and shown[0].seq == IRS + 101
        assert nic.model.fast_path.queued == 2              # INDICATED: the rest wait
        await nic.driver.rcvmdl(peer.conn_nbr, 8, entries)
        await nic.driver.service()
        assert nic.placed(entries)[:400] == payload(200, 1) + payload(200, 2)
        assert nic.slow == [before] and nic.model.fast_path.queued == 0


def test_handout_race_fills_the_queue():
    @run
    async def test(nic):
        peer = Peer()
        peer.conn_nbr = (await nic.handout1(peer))["detail"]
        frames = [peer.segment(payload(64, n)) for n in range(params.QUEUE_MAX_FRAMES + 1)]
        await nic.receive(*frames[:-1])
        assert nic.slow == [] and nic.model.fast_path.queued == params.QUEUE_MAX_FRAMES
        await nic.receive(frames[-1])
        flush = flush_of(nic.records())
        assert flush == FlushRecord(peer.conn_nbr, FlushReason.QUEUE_FULL, 0, 0, len(frames))
        assert nic.slow == frames                           # once each, in order
        await nic.receive(peer.segment(b"after"))           # the tuple is gone: slow path
        assert len(nic.slow) == len(frames) + 1
        done = await nic.answer(await nic.driver.handout2(peer.conn_nbr, peer.ccb_addr))
        assert done["code"] == EventCode.UNKNOWN_CONNECTION.value


# -- Placement and completion ---------------------------------------------------------------------


def test_placement_across_entries_and_a_segment_straddling_two():
    @run
    async def test(nic):
        peer = Peer()
        conn = await nic.handout(peer)
        entries = nic.buffers([100, 50, 1000, 350])
        await nic.driver.rcvmdl(conn, 0x55, entries)
        data = payload(1500, 3)
        # 120: across entries 0 and 1; 29: a byte short of entry 1's end; 1001: that byte and
        # entry 2 exactly; 350: the last entry.
        cuts = [0, 120, 149, 1150, 1500]
        for start, end in pairwise(cuts):
            assert not [r for r in nic.records() if isinstance(r, RcvMdlDone)]
            await nic.receive(peer.segment(data[start:end]))
        assert nic.placed(entries) == data
        assert nic.records() == [RcvMdlDone(conn, 0x55, 1500, False)]
        done = [e for e in nic.events if e["kind"] == EventKind.RCVMDL_DONE.value]
        assert [(e["index"], e["code"], e["tag"], e["detail"]) for e in done] == [
            (0x55, EventCode.OK.value, 1500, conn)]
        assert nic.slow == []
        counters = nic.model.fast_path_counters()
        assert (counters["fp_fast_frames"], counters["fp_fast_bytes"]) == (4, 1500)
        assert counters["fp_rcvmdl_done"] == 1
        # The completion was acknowledged at once.
        assert Ether(nic.acks[-1])[TCP].ack == IRS + 1 + 1500


def test_rcvmdl_done_on_psh_only_with_push():
    @run
    async def test(nic):
        peer = Peer()
        conn = await nic.handout(peer)
        entries = nic.buffers([4000])
        await nic.driver.rcvmdl(conn, 1, entries, push=False)
        await nic.receive(peer.segment(payload(300), flags="PA"))
        assert nic.records() == [] and len(nic.acks) == 1       # PSH: an ACK, not a completion
        await nic.driver.flush(conn)
        await nic.driver.service()
        assert nic.records() == [FlushRecord(conn, FlushReason.HOST, 1, 300, 0)]
        peer2 = Peer(1)
        conn2 = await nic.handout(peer2)
        await nic.driver.rcvmdl(conn2, 2, entries, push=True)
        await nic.receive(peer2.segment(payload(100)), peer2.segment(payload(200), flags="PA"))
        assert nic.records() == [RcvMdlDone(conn2, 2, 300, True)]
        assert [e["code"] for e in nic.events
                if e["kind"] == EventKind.RCVMDL_DONE.value] == [PSH_ENDED]
        # The next RCVMDL takes the next bytes.
        entries2 = nic.buffers([50])
        await nic.driver.rcvmdl(conn2, 3, entries2, push=True)
        await nic.receive(peer2.segment(payload(50, 9)))
        assert nic.records() == [RcvMdlDone(conn2, 3, 50, False)]
        assert nic.placed(entries2) == payload(50, 9)


def test_frame_data_then_winupdate_then_the_next_segment():
    @run
    async def test(nic):
        peer = Peer()
        conn = await nic.handout(peer)
        first, second = peer.segment(payload(500, 1)), peer.segment(payload(400, 2))
        await nic.receive(first, second)
        (shown,) = nic.records()
        assert shown.conn_nbr == conn and shown.seq == IRS + 1 and shown.frame == first
        assert shown.summary.payload_len == 500
        event = next(e for e in nic.events if e["kind"] == EventKind.FRAME_DATA.value)
        assert (event["ring"], event["length"], event["tag"], event["detail"]) == (
            RingId.RX.value, len(first), IRS + 1, conn)
        assert nic.model.fast_path.queued == 1
        await nic.answer(await nic.driver.winupdate(conn, 501))
        assert nic.driver.command_done[nic.driver._next_tag - 1]["code"] == \
            EventCode.WRONG_STATE.value
        await nic.driver.winupdate(conn, 200)
        await nic.driver.service()
        assert nic.records() == [] and nic.model.fast_path.queued == 1
        await nic.driver.winupdate(conn, 300)
        await nic.driver.service()
        (shown,) = nic.records()
        assert shown.frame == second and shown.seq == IRS + 501
        counters = nic.model.fast_path_counters()
        assert (counters["fp_frame_data"], counters["fp_frame_data_bytes"]) == (2, 900)
        assert nic.slow == []


def test_frame_data_then_rcvmdl():
    @run
    async def test(nic):
        peer = Peer()
        conn = await nic.handout(peer)
        frames = [peer.segment(payload(300, n)) for n in range(3)]
        await nic.receive(*frames)
        assert [r.frame for r in nic.records()] == frames[:1]
        entries = nic.buffers([1000])
        await nic.driver.rcvmdl(conn, 9, entries)
        await nic.driver.service()
        assert nic.placed(entries)[:600] == payload(300, 1) + payload(300, 2)
        assert nic.model.fast_path.queued == 0
        await nic.driver.flush(conn)
        await nic.driver.service()
        assert nic.records() == [FlushRecord(conn, FlushReason.HOST, 9, 600, 0)]
        ccb = read_ccb(nic.memory, peer.ccb_addr)
        assert ccb["tcp"]["rcv_nxt"] == IRS + 901 and ccb["tcp"]["rcv_unconsumed"] == 300
        assert ccb["transfer"]["posted"] == 1 and ccb["transfer"]["placed"] == 600
        assert ccb["stats"] == {"fast_bytes": 600, "fast_segments": 2, "frame_data": 1,
                                "acks": ccb["stats"]["acks"]}


def test_pure_acks_update_the_send_side():
    @run
    async def test(nic):
        peer = Peer(snd_wscale=3)
        conn = await nic.handout(peer)
        await nic.receive(peer.segment(window=5000), peer.segment(window=6000))
        assert nic.model.fast_path_counters()["fp_pure_acks"] == 2
        assert nic.acks == [] and nic.records() == []
        await nic.driver.flush(conn)
        await nic.driver.service()
        ccb = read_ccb(nic.memory, peer.ccb_addr)
        assert ccb["tcp"]["snd_wnd"] == 6000 << 3
        assert ccb["state"] == ConnState.FLUSHING.value and ccb["conn_nbr"] == conn


# -- Flushes --------------------------------------------------------------------------------------

EXCEPTIONS = {
    "out_of_order": (FlushReason.OUT_OF_ORDER, lambda p: p.segment(b"x" * 10, seq=p.seq + 10)),
    "duplicate": (FlushReason.OUT_OF_ORDER, lambda p: p.segment(b"x" * 10, seq=p.seq - 10)),
    "fin": (FlushReason.FIN, lambda p: p.segment(b"bye", flags="FA")),
    "rst": (FlushReason.RST, lambda p: p.segment(flags="RA")),
    "syn": (FlushReason.SYN, lambda p: p.segment(flags="SA")),
    "urg": (FlushReason.URG, lambda p: p.segment(b"!", flags="UA")),
    "no_ack": (FlushReason.BAD_ACK, lambda p: p.segment(b"x", flags="P")),
    "ack_beyond_snd_nxt": (FlushReason.BAD_ACK, lambda p: p.segment(b"x", ack=ISS + 2)),
    "bad_tcp_checksum": (FlushReason.BAD_CHECKSUM, lambda p: p.segment(b"x" * 8, chksum=0x1234)),
    "bad_ip_checksum": (FlushReason.BAD_CHECKSUM, lambda p: p.segment(b"x", ip_chksum=0x1234)),
    "ip_options": (FlushReason.IP_OPTIONS,
                   lambda p: p.segment(b"x", ip_options=b"\x01\x01\x01\x00")),
    "window_overrun": (FlushReason.OUT_OF_WINDOW, lambda p: p.segment(payload(2001))),
}


@pytest.mark.parametrize("name", EXCEPTIONS)
def test_an_exception_flushes_with_its_reason(name):
    reason, make = EXCEPTIONS[name]

    @run
    async def test(nic):
        peer = Peer(rcv_buf=2000)
        conn = await nic.handout(peer)
        entries = nic.buffers([5000])
        await nic.driver.rcvmdl(conn, 4, entries)
        await nic.receive(peer.segment(payload(20)))
        cause = make(peer)
        await nic.receive(cause)
        flush = flush_of(nic.records())
        assert flush == FlushRecord(conn, reason, 4, 20, 1)
        assert nic.slow == [cause]
        ccb = read_ccb(nic.memory, peer.ccb_addr)
        assert ccb["tcp"]["rcv_nxt"] == IRS + 21 and ccb["conn_nbr"] == conn
        assert ccb["transfer"]["handle"] == 4 and ccb["transfer"]["placed"] == 20
        assert ccb["route"]["host_context"] == 0xC0DE
        counters = nic.model.fast_path_counters()
        assert counters[f"fp_flush_{reason.name.lower()}"] == 1 == counters["fp_flushes"]
        assert counters["fp_to_slow"] == 1 and counters["fp_connections"] == 0
        await nic.receive(peer.segment(b"later"))            # the slow path's now
        assert len(nic.slow) == 2


def test_ece_and_cwr_pass():
    @run
    async def test(nic):
        peer = Peer()
        conn = await nic.handout(peer)
        entries = nic.buffers([100])
        await nic.driver.rcvmdl(conn, 2, entries)
        await nic.receive(peer.segment(payload(50), flags="AE"), peer.segment(payload(50),
                                                                               flags="AC"))
        assert nic.records() == [RcvMdlDone(conn, 2, 100, False)]


def test_a_segment_longer_than_the_rcvmdl_fills_it_then_flushes():
    @run
    async def test(nic):
        peer = Peer()
        conn = await nic.handout(peer)
        entries = nic.buffers([100])
        await nic.driver.rcvmdl(conn, 5, entries)
        cause = peer.segment(payload(150))
        await nic.receive(cause)
        assert nic.records() == [RcvMdlDone(conn, 5, 100, False),
                                 FlushRecord(conn, FlushReason.OUT_OF_WINDOW, 0, 0, 1)]
        assert nic.placed(entries) == payload(150)[:100] and nic.slow == [cause]
        assert read_ccb(nic.memory, peer.ccb_addr)["tcp"]["rcv_nxt"] == IRS + 101


def test_flush_passes_the_cause_then_the_rest_of_the_queue_in_order():
    @run
    async def test(nic):
        peer = Peer()
        conn = await nic.handout(peer)
        shown, placed = peer.segment(payload(100, 0)), peer.segment(payload(100, 1))
        cause = peer.segment(b"end", flags="FA")
        after = peer.segment(b"more")
        await nic.receive(shown, placed, cause, after)      # one shown, three queued
        assert [r.frame for r in nic.records()] == [shown]
        entries = nic.buffers([1000])
        await nic.driver.rcvmdl(conn, 3, entries)           # the queue drains into the FIN
        await nic.driver.service()
        assert nic.records() == [FlushRecord(conn, FlushReason.FIN, 3, 100, 2)]
        assert nic.slow == [cause, after]
        events = [e["kind"] for e in nic.events[-3:]]
        assert events == [EventKind.RX.value, EventKind.RX.value, EventKind.FLUSH.value]
        assert nic.model.fast_path_counters()["fp_to_slow"] == 2


@pytest.mark.parametrize("opcode", ["flush", "close"])
def test_host_flush_and_close(opcode):
    @run
    async def test(nic):
        peer = Peer()
        conn = await nic.handout(peer)
        entries = nic.buffers([64, 64])
        allocated = nic.memory.allocated
        await nic.driver.rcvmdl(conn, 0x77, entries)
        await nic.receive(peer.segment(payload(70)))
        await getattr(nic.driver, opcode)(conn)
        await nic.driver.service()
        reason = FlushReason.HOST if opcode == "flush" else FlushReason.CLOSE
        assert nic.records() == [FlushRecord(conn, reason, 0x77, 70, 0)]
        ccb = read_ccb(nic.memory, peer.ccb_addr)
        assert (ccb["transfer"]["entry"], ccb["transfer"]["offset"]) == (1, 6)
        assert nic.memory.allocated == allocated             # the driver freed the list


BAD_CCBS = {
    "version": {"version": 2},
    "tuple": {"tuple": {"local_port": 81}},
    "rcv_wscale": {"route": {"rcv_wscale": 15}},
    "snd_wscale": {"route": {"snd_wscale": 15}},
    "rcv_mss_zero": {"route": {"rcv_mss": 0}},
    "rcv_mss_huge": {"route": {"rcv_mss": 9163}},
    "unacknowledged": {"tcp": {"snd_una": ISS}},
    "unconsumed_beyond_buffer": {"tcp": {"rcv_unconsumed": 70000}},
}


@pytest.mark.parametrize("name", BAD_CCBS)
def test_bad_ccb_is_refused_and_flushed(name):
    @run
    async def test(nic):
        peer = Peer()
        peer.conn_nbr = (await nic.handout1(peer))["detail"]
        queued = peer.segment(payload(10))
        await nic.receive(queued)
        write_ccb(nic.memory, peer.ccb_addr, peer.ccb(**BAD_CCBS[name]))
        before = nic.memory.read(peer.ccb_addr, CCB_BYTES)
        done = await nic.answer(await nic.driver.handout2(peer.conn_nbr, peer.ccb_addr))
        assert done["code"] == EventCode.BAD_CCB.value
        assert nic.records()[-1] == FlushRecord(peer.conn_nbr, FlushReason.BAD_CCB, 0, 0, 1)
        assert nic.slow == [queued]
        assert nic.memory.read(peer.ccb_addr, CCB_BYTES) == before     # not written back
        assert nic.model.fast_path_counters()["fp_bad_commands"] == 1


def test_dma_error_while_placing_flushes():
    @run
    async def test(nic):
        peer = Peer()
        conn = await nic.handout(peer)
        entries = nic.buffers([1000])
        await nic.driver.rcvmdl(conn, 6, entries)
        addr = entries[0][0]
        nic.model.dma_error_ranges.append((addr, addr + 1000, "write"))
        cause = peer.segment(payload(10))
        await nic.receive(cause)
        assert nic.records() == [FlushRecord(conn, FlushReason.DMA_ERROR, 6, 0, 1)]
        assert nic.slow == [cause]
        nic.model.dma_error_ranges.clear()


def test_queued_jumbo_frames_flush_when_the_packet_buffer_runs_short():
    @run
    async def test(nic):
        peer = Peer(rcv_mss=8000, rcv_buf=1 << 20, rcv_wscale=5)
        conn = await nic.handout(peer)
        frames = [peer.segment(payload(8000, n)) for n in range(8)]
        # One shown, then queued until fewer than a quarter of the packet buffer's bytes are free.
        await nic.receive(*frames)
        records = nic.records()
        assert isinstance(records[0], FrameData)
        flush = records[1]
        assert flush.reason is FlushReason.QUEUE_FULL and flush.conn_nbr == conn
        # Each frame takes its length in whole DMA beats of the packet buffer.
        beat = params.DMA_DATA_BITS // 8
        size = -(-len(frames[1]) // beat) * beat
        held = next(n for n in range(1, 9)
                    if 4 * (params.RX_PACKET_BUFFER_BYTES - n * size)
                    < params.RX_PACKET_BUFFER_BYTES)
        assert flush.frames == held < params.QUEUE_MAX_FRAMES
        assert nic.slow == frames[1:1 + held] + frames[1 + held:]


# -- Refused commands -----------------------------------------------------------------------------


def test_commands_for_an_unknown_connection_are_refused():
    @run
    async def test(nic):
        peer = Peer()
        await nic.handout(peer)
        unknown = peer.conn_nbr + 1
        entries = nic.buffers([100])
        tags = [await nic.driver.handout2(unknown, peer.ccb_addr),
                await nic.driver.rcvmdl(unknown, 0x100, entries),
                await nic.driver.winupdate(unknown, 0),
                await nic.driver.flush(unknown),
                await nic.driver.close(unknown),
                await nic.driver.flush(0xFFFF)]
        for tag in tags:
            assert (await nic.answer(tag))["code"] == EventCode.UNKNOWN_CONNECTION.value
        counters = nic.model.fast_path_counters()
        assert counters["fp_bad_commands"] == len(tags) == nic.model.counters()["bad_commands"]
        assert counters["fp_connections"] == 1 and counters["fp_flushes"] == 0


def test_commands_in_the_wrong_state_are_refused():
    @run
    async def test(nic):
        peer = Peer()
        conn = await nic.handout(peer)
        entries = nic.buffers([100])
        wrong = [await nic.driver.handout2(conn, peer.ccb_addr),      # FAST, not PENDING
                 await nic.driver.winupdate(conn, 1)]                 # nothing shown
        await nic.driver.rcvmdl(conn, 0x200, entries)
        wrong.append(await nic.driver.rcvmdl(conn, 0x201, entries))    # one already posted
        for tag in wrong:
            assert (await nic.answer(tag))["code"] == EventCode.WRONG_STATE.value
        assert 0x200 not in nic.driver.command_done                    # accepted: no answer
        await nic.receive(peer.segment(payload(100)))
        assert nic.records() == [RcvMdlDone(conn, 0x200, 100, False)]  # the first one stands
        assert nic.model.fast_path_counters()["fp_bad_commands"] == 3


def test_handout1_of_a_tuple_already_there_is_refused():
    @run
    async def test(nic):
        peer = Peer()
        conn = await nic.handout(peer)
        again = await nic.handout1(peer)
        assert (again["kind"], again["code"]) == (EventKind.COMMAND_DONE.value,
                                                 EventCode.TUPLE_EXISTS.value)
        assert set(nic.model.fast_path.connections) == {conn}


def test_handout1_with_the_table_full_is_refused():
    @run(connections=8)
    async def test(nic):
        peers = [Peer(n) for n in range(9)]
        for peer in peers[:8]:
            await nic.handout(peer)
        refused = await nic.handout1(peers[8])
        assert refused["code"] == EventCode.TABLE_FULL.value
        assert nic.model.fast_path_counters()["fp_connections"] == 8
        # A flush gives a conn_nbr back; HANDOUT1 takes it (the pool's tail: FIFO).
        await nic.driver.flush(peers[0].conn_nbr)
        await nic.driver.service()
        assert (await nic.handout1(peers[8]))["kind"] == EventKind.INTERLOCK.value


@pytest.mark.parametrize("sizes", [[], [10] * (params.RCVMDL_MAX_ENTRIES + 1), [10, 0, 10]])
def test_bad_rcvmdl_is_refused(sizes):
    @run
    async def test(nic):
        peer = Peer()
        conn = await nic.handout(peer)
        buffers = nic.buffers([10] * len(sizes))
        entries = [(addr, n) for (addr, _), n in zip(buffers, sizes, strict=True)]
        allocated = nic.memory.allocated
        done = await nic.answer(await nic.driver.rcvmdl(conn, 0x300, entries))
        assert done["code"] == EventCode.BAD_MDL.value
        assert nic.memory.allocated == allocated           # the driver freed the list
        await nic.receive(peer.segment(payload(10)))
        assert isinstance(nic.records()[0], FrameData)     # nothing was posted


# -- ACK frames -----------------------------------------------------------------------------------


def check_ack(raw, peer, *, ack, window, ts=None):
    """An ACK of the NIC, parsed by scapy: both checksums recomputed, every field."""
    assert len(raw) == max(params.MIN_TX_FRAME_BYTES, len(raw))
    frame = Ether(raw)
    assert (frame.src, frame.dst) == (NIC_MAC, PEER_MAC)
    if peer.vlan is not None:
        assert frame[Dot1Q].vlan == peer.vlan
    rebuilt = frame.copy()
    tcp = frame[TCP]
    del rebuilt[TCP].chksum
    if peer.ipv6:
        ip = frame[IPv6]
        assert (ip.tc, ip.fl, ip.nh, ip.hlim) == (0x10, 0, 6, 64)
        assert ip.plen == 4 * tcp.dataofs
        end = len(raw) - len(ip) + 40 + ip.plen
    else:
        ip = frame[IP]
        del rebuilt[IP].chksum
        assert (ip.ihl, ip.tos, ip.flags, ip.frag, ip.ttl, ip.proto) == (5, 0x10, 2, 0, 64, 6)
        assert ip.len == 20 + 4 * tcp.dataofs
        end = len(raw) - len(ip) + ip.len
        assert Ether(bytes(rebuilt))[IP].chksum == ip.chksum
    assert Ether(bytes(rebuilt))[TCP].chksum == tcp.chksum
    assert raw[end:] == bytes(len(raw) - end)            # the padding: zeros
    assert (ip.src, ip.dst) == (peer.dst, peer.src)
    assert (tcp.sport, tcp.dport, tcp.seq, tcp.ack) == (peer.dport, peer.sport, ISS + 1, ack)
    assert (str(tcp.flags), tcp.window, tcp.urgptr) == ("A", window, 0)
    if ts is None:
        assert tcp.dataofs == 5 and tcp.options == []
    else:
        assert tcp.dataofs == 8
        assert tcp.options == [("NOP", None), ("NOP", None), ("Timestamp", ts)]
    return frame


@pytest.mark.parametrize("family", ["ipv4", "ipv6", "vlan"])
def test_ack_frames_byte_for_byte(family):
    @run
    async def test(nic):
        peer = Peer(ipv6=family == "ipv6", vlan=5 if family == "vlan" else None)
        conn = await nic.handout(peer)
        await nic.driver.rcvmdl(conn, 1, nic.buffers([1000]))
        await nic.receive(peer.segment(payload(10), flags="PA"))
        (raw,) = nic.acks
        frame = check_ack(raw, peer, ack=IRS + 11, window=65535)
        if family != "ipv6":
            assert frame[IP].id == 100
        assert raw == nic.model.tx_frames[-1]
        assert nic.model.fast_path_counters()["fp_acks_sent"] == 1


def test_ack_window_scaling_and_timestamps():
    @run
    async def test(nic):
        peer = Peer(rcv_buf=1 << 20, rcv_wscale=7, rcv_mss=1000, timestamps=True)
        conn = await nic.handout(peer)
        await nic.receive(peer.segment(payload(1000), flags="PA", tsval=4242))
        # FRAME_DATA: the window shrinks by what was shown, but the right edge stays.
        check_ack(nic.acks[-1], peer, ack=IRS + 1001, window=((1 << 20) - 1000) >> 7,
                  ts=(TS_VAL, 4242))
        await nic.driver.winupdate(conn, 1000)             # opens the window by rcv_mss
        await nic.driver.service()
        check_ack(nic.acks[-1], peer, ack=IRS + 1001, window=(1 << 20) >> 7, ts=(TS_VAL, 4242))
        assert Ether(nic.acks[0])[IP].id + 1 == Ether(nic.acks[1])[IP].id
        await nic.driver.flush(conn)
        await nic.driver.service()
        tcp = read_ccb(nic.memory, peer.ccb_addr)["tcp"]
        assert (tcp["ts_recent"], tcp["rcv_adv"]) == (4242, IRS + 1001 + (1 << 20))
        assert tcp["ip_id"] == 102


def test_window_is_capped_and_its_right_edge_never_moves_left():
    @run
    async def test(nic):
        peer = Peer(rcv_buf=200_000)                       # no scaling: the field saturates
        conn = await nic.handout(peer, Peer(rcv_buf=200_000).ccb(tcp={"rcv_adv": IRS + 3001}))
        await nic.receive(peer.segment(payload(1000), flags="PA"))
        check_ack(nic.acks[-1], peer, ack=IRS + 1001, window=65535)
        await nic.driver.flush(conn)
        await nic.driver.service()
        assert read_ccb(nic.memory, peer.ccb_addr)["tcp"]["rcv_adv"] == IRS + 1001 + 199_000


def test_ack_every_second_full_sized_segment_and_by_the_delayed_ack_timer():
    @run
    async def test(nic):
        peer = Peer(rcv_mss=1000)
        conn = await nic.handout(peer)
        await nic.driver.rcvmdl(conn, 1, nic.buffers([20_000]))
        await nic.receive(peer.segment(payload(1000)))
        assert nic.acks == []
        await nic.receive(peer.segment(payload(1000)))
        check_ack(nic.acks[-1], peer, ack=IRS + 2001, window=65535)
        await nic.receive(peer.segment(payload(500)), peer.segment(payload(999)))
        assert len(nic.acks) == 1                         # not full-sized: the timer runs
        await nic.bus.delay(params.DELAYED_ACK_CYCLES - 2)
        assert len(nic.acks) == 1
        await nic.bus.delay(2)
        check_ack(nic.acks[-1], peer, ack=IRS + 3500, window=65535)
        await nic.bus.delay(10 * params.DELAYED_ACK_CYCLES)
        assert len(nic.acks) == 2                         # nothing more owed
        await nic.receive(peer.segment(payload(10)))      # the timer runs from this segment
        await nic.bus.delay(params.DELAYED_ACK_CYCLES)
        assert len(nic.acks) == 3
        assert nic.model.fast_path.ack_requests[-1]["ack"] == IRS + 3510


# -- Many connections -----------------------------------------------------------------------------


def test_many_connections_at_once():
    @run
    async def test(nic):
        peers = [Peer(n, ipv6=n % 5 == 0) for n in range(40)]
        table = CcbTable(params.FAST_PATH_CONNECTIONS)
        lists = {}
        for peer in peers:
            assert await nic.handout(peer) == table.insert(peer.key())[1]
            lists[peer.n] = nic.buffers([300, 700])
            await nic.driver.rcvmdl(peer.conn_nbr, peer.n, lists[peer.n])
        for part in range(5):                              # interleaved: 5 x 200 bytes each
            await nic.receive(*(peer.segment(payload(200, peer.n * 8 + part)) for peer in peers))
        records = nic.records()
        assert sorted(records, key=lambda r: r.handle) == [
            RcvMdlDone(peer.conn_nbr, peer.n, 1000, False) for peer in peers]
        for peer in peers:
            want = b"".join(payload(200, peer.n * 8 + part) for part in range(5))
            assert nic.placed(lists[peer.n]) == want
        counters = nic.model.fast_path_counters()
        assert counters["fp_fast_frames"] == 200 and counters["fp_rcvmdl_done"] == 40
        assert counters["fp_connections"] == 40 and nic.slow == []
        for peer in peers[::2]:
            await nic.driver.close(peer.conn_nbr)
        await nic.driver.service()
        assert len(nic.records()) == 20
        assert nic.model.fast_path_counters()["fp_connections"] == 20


def test_dma_errors_reading_a_ccb_or_a_list():
    @run
    async def test(nic):
        peer, other = Peer(), Peer(1)
        peer.ccb_addr = nic.memory.alloc(CCB_BYTES, CCB_ALIGN)
        write_ccb(nic.memory, peer.ccb_addr, peer.ccb())
        nic.model.dma_error_ranges.append((peer.ccb_addr, peer.ccb_addr + 16, "read"))
        done = await nic.answer(await nic.driver.handout1(peer.ccb_addr, 1))
        assert (done["kind"], done["code"]) == (EventKind.COMMAND_DONE.value,
                                               EventCode.DMA_ERROR.value)
        assert nic.model.fast_path_counters()["fp_connections"] == 0
        conn = (await nic.handout1(other))["detail"]
        nic.model.dma_error_ranges.append((other.ccb_addr + 64, other.ccb_addr + 80, "read"))
        done = await nic.answer(await nic.driver.handout2(conn, other.ccb_addr))
        assert done["code"] == EventCode.DMA_ERROR.value
        assert nic.records() == [Interlock(conn, 0xC0DE + 1, other.tag),
                                 FlushRecord(conn, FlushReason.DMA_ERROR, 0, 0, 0)]
        nic.model.dma_error_ranges.clear()
        conn = await nic.handout(other)
        mdl = nic.memory.alloc(16, 16)                     # an entry list the NIC cannot read
        nic.model.dma_error_ranges.append((mdl, mdl + 16, "read"))
        await nic.driver.command(CommandOpcode.RCVMDL, tag=0x44, addr=mdl,
                                 arg=pack(ConnArg, {"conn_nbr": conn, "entries": 1}))
        await nic.driver.service()
        assert nic.records() == [FlushRecord(conn, FlushReason.DMA_ERROR, 0, 0, 0)]
        assert nic.model.fast_path_counters()["fp_flush_dma_error"] == 2


def test_a_small_window_update_waits_for_the_next_ack():
    @run
    async def test(nic):
        peer = Peer(rcv_buf=10_000, rcv_mss=1460)
        conn = await nic.handout(peer)
        await nic.receive(peer.segment(payload(3000), flags="PA"))
        check_ack(nic.acks[-1], peer, ack=IRS + 3001, window=7000)
        await nic.driver.winupdate(conn, 1000)             # opens by 1000 < rcv_mss: no ACK
        await nic.driver.service()
        assert len(nic.acks) == 1
        await nic.driver.winupdate(conn, 500)              # 1500 in all: an ACK
        await nic.driver.service()
        check_ack(nic.acks[-1], peer, ack=IRS + 3001, window=8500)


def test_the_table_holds_the_dispatchers_state():
    @run
    async def test(nic):
        peer = Peer()
        conn = (await nic.handout1(peer))["detail"]
        assert nic.model.fast_path.table.lookup(peer.key()) == (True, conn,
                                                                CcbState.PENDING.value)
        await nic.answer(await nic.driver.handout2(conn, peer.ccb_addr))
        assert nic.model.fast_path.table.lookup(peer.key()) == (True, conn,
                                                                CcbState.OFFLOADED.value)
        await nic.driver.flush(conn)
        await nic.driver.service()
        assert nic.model.fast_path.table.lookup(peer.key()) == (False, 0, 0)
