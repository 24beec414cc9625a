"""The NIC model itself (sim/reference/nic_model.py) against docs/host_interface.md."""

import asyncio

import pytest
from amaranth.hdl import Value
from amaranth.lib import data
from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.inet6 import IPv6, IPv6ExtHdrHopByHop
from scapy.layers.l2 import ARP, Dot1Q, Ether
from scapy.packet import Raw

from host_driver.driver import NicDriver, offload_frame
from host_driver.memory import HostMemory
from hw import params
from hw.host import regmap
from hw.layouts import (
    RX_SUMMARY_BYTES,
    Command,
    CommandOpcode,
    Event,
    EventCode,
    EventKind,
    RingId,
    RxDescriptor,
    RxStatus,
    RxSummary,
    TxDescriptor,
    pack,
)
from sim.frames import tx_checksum_edge_cases
from sim.reference.nic_model import ModelBus, NicModel, fields_of, rx_summary_header, summary_fields
from sim.reference.rx_status import expected_fields, expected_status

HEADER = RX_SUMMARY_BYTES
ENTRY = params.RING_ENTRY_BYTES
BEAT = params.DMA_DATA_BITS // 8
#: A destination MAC for IPv6 frames (scapy would look one up on the network).
MAC = "02:00:00:00:00:02"


def reg(name):
    return regmap.BY_NAME[name].offset


def ring_reg(ring, what):
    return regmap.ring_register(ring, what).offset


class Raw16:
    """The model driven by hand: rings in host memory, registers written directly."""

    def __init__(self, log2=3, enable=True, rx_buffers=(), mod_events=1, mod_cycles=0):
        self.memory = HostMemory(1 << 20)
        self.model = NicModel(self.memory)
        self.m = self.model
        self.rings = {}
        for ring in RingId:
            addr = self.memory.alloc(ENTRY << log2, 4096)
            self.rings[ring] = addr
            self.m.write_register(ring_reg(ring, "BASE_LO"), addr & 0xFFFF_FFFF)
            self.m.write_register(ring_reg(ring, "BASE_HI"), addr >> 32)
            self.m.write_register(ring_reg(ring, "LOG2_SIZE"), log2)
        self.size = 1 << log2
        self.prod = dict.fromkeys(RingId, 0)
        self.event_index = 0
        self.m.write_register(reg("INTR_MOD_EVENTS"), mod_events)
        self.m.write_register(reg("INTR_MOD_CYCLES"), mod_cycles)
        self.m.write_register(reg("INTR_MASK"), regmap.INTR_EVENTS | regmap.INTR_FATAL)
        self.buffers = []
        for size in rx_buffers:
            self.post_rx(size)
        if enable:
            self.m.write_register(reg("CONTROL"), regmap.CONTROL_ENABLE)

    def post(self, ring, layout, fields):
        index = self.prod[ring]
        self.memory.write(self.rings[ring] + ENTRY * index,
                          pack(layout, fields).to_bytes(ENTRY, "little"))
        self.prod[ring] = (index + 1) % self.size
        self.m.write_register(ring_reg(ring, "PRODUCER"), self.prod[ring])
        return index

    def post_rx(self, size=2048):
        addr = self.memory.alloc(size, 64)
        self.buffers.append(addr)
        self.post(RingId.RX, RxDescriptor, {"addr": addr, "size": size})
        return addr

    def send(self, frame, **fields):
        addr = self.memory.alloc(max(1, len(frame)), 64)
        self.memory.write(addr, frame)
        fields.setdefault("length", len(frame))
        return self.post(RingId.TX, TxDescriptor, {"addr": addr, **fields})

    def command(self, opcode, ring=0, tag=0):
        return self.post(RingId.COMMAND, Command, {"opcode": getattr(opcode, "value", opcode),
                                                   "ring": getattr(ring, "value", ring),
                                                   "tag": tag})

    def events(self):
        """New events (by phase), consumed and given back."""
        out = []
        ring = self.rings[RingId.EVENT]
        while True:
            n = self.event_index % self.size
            phase = 1 - (self.event_index // self.size) % 2
            event = fields_of(Event, int.from_bytes(self.memory.read(ring + ENTRY * n, ENTRY),
                                                    "little"))
            if event["phase"] != phase:
                break
            out.append(event)
            self.event_index += 1
        self.m.write_register(ring_reg(RingId.EVENT, "CONSUMER"), self.event_index % self.size)
        return out


FRAMES = {
    "tcp": Ether() / IP(src="10.0.0.1", dst="10.0.0.2") / TCP(sport=1234, dport=80) / (b"x" * 50),
    "udp": Ether() / IP(src="10.0.0.1", dst="10.0.0.2") / UDP(sport=53, dport=99) / (b"y" * 9),
    "ipv6": Ether() / IPv6(src="fe80::1", dst="fe80::2") / TCP(sport=5, dport=6, flags="SA"),
    "vlan": Ether() / Dot1Q(vlan=7) / IP(src="1.1.1.1", dst="2.2.2.2") / TCP() / (b"z" * 3),
    "arp": Ether() / ARP(),
    "bad_csum": Ether() / IP(src="10.0.0.1", dst="10.0.0.2", chksum=1) / TCP() / b"q",
}


@pytest.mark.parametrize("name", [*FRAMES, "runt", "truncated"])
def test_rx_buffer_holds_summary_then_frame(name):
    frame = {"runt": bytes(10), "truncated": bytes(FRAMES["tcp"])[:30]}.get(name)
    frame = bytes(FRAMES[name]) if frame is None else frame
    t = Raw16(rx_buffers=[2048])
    assert t.m.receive_frame(frame) == "admitted"
    (event,) = t.events()
    assert event["kind"] == EventKind.RX.value and event["code"] == EventCode.OK.value
    assert event["ring"] == RingId.RX.value and event["index"] == 0
    assert event["length"] == len(frame)
    raw = t.memory.read(t.buffers[0], HEADER + len(frame))
    assert raw[HEADER:] == frame
    assert raw[:HEADER] == rx_summary_header(frame)
    summary = RxSummary.from_bits(int.from_bytes(raw[:HEADER], "little"))
    status = RxStatus.from_bits(pack(RxStatus, expected_fields(frame)))
    # Every summary field is the status word's field of that name (docs/host_interface.md).
    for name, _ in data.Layout.cast(RxSummary):
        value = Value.cast(getattr(summary, name)).value
        if name == "reserved":
            assert value == 0
        else:
            assert value == Value.cast(getattr(status, name)).value, name
    row = expected_status(frame)
    assert event["tag"] == int(row["hash"], 16)
    counters = t.m.counters()
    assert counters["rx_frames"] == counters["rx_to_host"] == 1
    assert counters["rx_malformed"] == int(row["malformed"])


def test_rx_summary_offsets():
    frame = bytes(FRAMES["vlan"])
    summary = RxSummary.from_bits(int.from_bytes(rx_summary_header(frame), "little"))
    assert (summary.l3_offset, summary.l4_offset, summary.payload_offset) == (18, 38, 58)
    assert summary.ip_proto == 6 and summary.payload_len == 3
    assert summary_fields(expected_fields(frame))["length"] == len(frame)


def test_drop_reasons():
    tcp = bytes(FRAMES["tcp"])
    # Disabled.
    t = Raw16(enable=False, rx_buffers=[2048])
    assert t.m.receive_frame(tcp) == "rx_drop_disabled"
    # No buffer posted; then one buffer promised to the first of two frames.
    t = Raw16()
    assert t.m.receive_frame(tcp) == "rx_drop_no_buffer"
    t.post_rx()
    assert t.m.receive_frame(tcp) == "admitted"
    assert t.m.receive_frame(tcp) == "rx_drop_no_buffer"
    # RX ring stopped.
    t = Raw16(rx_buffers=[2048])
    t.command(CommandOpcode.RING_STOP, RingId.RX)
    assert t.m.receive_frame(tcp) == "rx_drop_no_buffer"
    # Oversize.
    t = Raw16(rx_buffers=[16384])
    big = bytes(Ether() / IP() / Raw(bytes(params.MAX_FRAME_BYTES)))
    assert t.m.receive_frame(big) == "rx_drop_oversize"
    # Too small: the buffer comes back unused.
    t = Raw16(rx_buffers=[HEADER + len(tcp) - 1])
    assert t.m.receive_frame(tcp) == "admitted"
    (event,) = t.events()
    assert event["code"] == EventCode.BUFFER_TOO_SMALL.value
    assert t.memory.read(t.buffers[0], 8) == bytes(8)
    # DMA error while writing the buffer.
    t = Raw16(rx_buffers=[2048])
    t.m.dma_error_ranges.append((t.buffers[0] + 64, t.buffers[0] + 72, "write"))
    assert t.m.receive_frame(tcp) == "admitted"
    (event,) = t.events()
    assert event["code"] == EventCode.DMA_ERROR.value
    counters = t.m.counters()
    drops = sum(v for k, v in counters.items() if k.startswith("rx_drop_"))
    assert counters["rx_frames"] == counters["rx_to_host"] + drops + t.m.frames_inside


def test_units_go_on_while_the_event_ring_is_full():
    """docs/host_interface.md "Events": with the event ring full, events wait inside the NIC and
    the units go on: posted buffers are filled, frames beyond them are dropped and counted; the
    waiting events come out, in order, once the host gives slots back."""
    t = Raw16(log2=4, rx_buffers=[2048] * 3)
    # Fill the event ring with 15 NOP completions, so no RX event can be written.
    for _ in range(15):
        t.command(CommandOpcode.NOP)
    frame = bytes(Ether() / IP() / Raw(bytes(100)))
    verdicts = [t.m.receive_frame(frame) for _ in range(5)]
    assert verdicts == ["admitted"] * 3 + ["rx_drop_no_buffer"] * 2
    assert t.m.frames_inside == 0
    counters = t.m.counters()
    assert (counters["rx_to_host"], counters["events"]) == (3, 15)
    assert t.m.read_register(reg("RX_CONSUMER")) == 3
    assert [e["kind"] for e in t.events()] == [EventKind.COMMAND_DONE.value] * 15
    assert [(e["kind"], e["index"]) for e in t.events()] == [
        (EventKind.RX.value, n) for n in range(3)]


@pytest.mark.parametrize("fields, code", [
    ({"opcode": 0x55}, EventCode.UNKNOWN_OPCODE),
    ({"opcode": CommandOpcode.RING_STOP.value, "ring": RingId.COMMAND.value},
     EventCode.BAD_RING),
    ({"opcode": CommandOpcode.RING_START.value, "ring": RingId.EVENT.value}, EventCode.BAD_RING),
    ({"opcode": CommandOpcode.RING_STOP.value, "ring": 200}, EventCode.BAD_RING),
    ({"opcode": CommandOpcode.NOP.value}, EventCode.OK),
])
def test_commands(fields, code):
    t = Raw16()
    t.post(RingId.COMMAND, Command, {**fields, "tag": 0xBEEF})
    (event,) = t.events()
    assert event == {"kind": EventKind.COMMAND_DONE.value, "phase": 1, "reserved0": 0,
                     "ring": RingId.COMMAND.value, "index": 0, "length": 0, "code": code.value,
                     "reserved1": 0, "tag": 0xBEEF, "detail": fields["opcode"]}
    counters = t.m.counters()
    assert counters["commands"] == 1
    assert counters["bad_commands"] == int(code is not EventCode.OK)


def test_command_fetch_dma_error():
    t = Raw16()
    base = t.rings[RingId.COMMAND]
    t.m.dma_error_ranges.append((base, base + ENTRY, "read"))
    t.command(CommandOpcode.NOP, tag=5)
    t.command(CommandOpcode.NOP, tag=6)
    events = t.events()
    # docs/host_interface.md, events table: after a fetch error, tag 0 and detail = the entry's
    # address bits 30:0.
    assert [(e["index"], e["code"], e["tag"], e["detail"]) for e in events] == [
        (0, EventCode.DMA_ERROR.value, 0, base & 0x7FFF_FFFF), (1, EventCode.OK.value, 6, 0)]
    assert t.m.counters()["dma_errors"] == ENTRY // BEAT    # the entry's beats answered SLVERR


def test_fetch_reads_posted_entries_once_and_skips_a_failing_one():
    """hw/host/rings.py: posted entries are read ahead in one request (up to 16, not past the
    ring's end), each once; a failing entry is skipped with its DMA_ERROR event."""
    t = Raw16(log2=3)
    entry = t.rings[RingId.COMMAND] + ENTRY
    t.m.dma_error_ranges.append((entry, entry + ENTRY, "read"))
    t.m.write_register(reg("CONTROL"), 0)       # post all six, then let the NIC go
    for tag in range(6):
        t.command(CommandOpcode.NOP, tag=tag)
    t.m.write_register(reg("CONTROL"), regmap.CONTROL_ENABLE)
    events = t.events()
    assert [(e["index"], e["code"]) for e in events] == [
        (0, EventCode.OK.value), (1, EventCode.DMA_ERROR.value), *((n, EventCode.OK.value)
                                                                  for n in range(2, 6))]
    assert t.m.counters()["dma_errors"] == ENTRY // BEAT
    reads = [((addr - t.rings[RingId.COMMAND]) // ENTRY, n // ENTRY)
             for kind, addr, n, _ in t.m.dma_log if kind == "read"]
    assert reads == [(0, 6)], "the six entries in one request"


def _offload_case(packet):
    """``(frame with checksums computed by scapy, frame to post, descriptor fields)``."""
    want = bytes(packet)
    frame, options = offload_frame(want)
    return want, frame, options


@pytest.mark.parametrize("packet", [
    Ether() / IP(src="10.1.2.3", dst="10.3.2.1", id=77) / TCP(sport=1, dport=2, seq=9) / b"ab",
    Ether() / IP(src="10.1.2.3", dst="10.3.2.1") / TCP(sport=3, dport=4) / Raw(bytes(range(255))),
    Ether() / IP(src="1.2.3.4", dst="5.6.7.8") / UDP(sport=7, dport=9) / b"odd",
    Ether() / IP(src="1.2.3.4", dst="5.6.7.8", options=b"\x01\x01\x01\x00") / TCP() / b"opt",
    Ether() / Dot1Q(vlan=3) / IP(src="1.2.3.4", dst="5.6.7.8") / UDP() / bytes(1400),
    Ether(dst=MAC) / IPv6(src="2001:db8::1", dst="2001:db8::2") / TCP(sport=5, dport=6) / b"v6",
    Ether(dst=MAC) / Dot1Q(vlan=9) / IPv6(src="2001:db8::1", dst="2001:db8::2") / UDP() / b"odd",
])
def test_tx_checksum_offload_matches_scapy(packet):
    want, frame, options = _offload_case(packet)
    assert frame != want
    t = Raw16()
    t.send(frame, **options)
    (event,) = t.events()
    assert event["kind"] == EventKind.TX_DONE.value and event["code"] == EventCode.OK.value
    assert event["length"] == len(frame)
    assert t.m.tx_frames == [want]


@pytest.mark.parametrize("packet", [
    Ether() / ARP(),
    Ether() / IP(src="1.2.3.4", dst="5.6.7.8", flags="MF") / UDP() / b"first fragment",
    Ether() / IP(src="1.2.3.4", dst="5.6.7.8", frag=3) / Raw(bytes(16)),
    Ether() / IP(src="1.2.3.4", dst="5.6.7.8", proto=1) / Raw(bytes(16)),
    Ether(dst=MAC) / IPv6(src="2001:db8::1", dst="2001:db8::2") / IPv6ExtHdrHopByHop() / UDP(),
    Ether() / IP(src="1.2.3.4", dst="5.6.7.8", len=30) / TCP(),       # cut off by the IP length
])
def test_offload_frame_leaves_other_frames_alone(packet):
    frame = bytes(packet)
    assert offload_frame(frame) == (frame, {})


def test_tx_udp_checksum_zero_is_sent_as_ffff():
    # Pick the last two payload bytes so that the UDP checksum computes to 0.
    packet = Ether() / IP(src="1.2.3.4", dst="5.6.7.8") / UDP(sport=1, dport=2) / bytes(10)
    checksum = UDP(bytes(packet[UDP])).chksum
    payload = bytes(8) + checksum.to_bytes(2, "big")
    packet = Ether() / IP(src="1.2.3.4", dst="5.6.7.8") / UDP(sport=1, dport=2) / payload
    want = bytes(packet)
    assert UDP(bytes(packet[UDP])).chksum == 0xFFFF      # scapy's rule too (RFC 768)
    _, frame, options = _offload_case(packet)
    t = Raw16()
    t.send(frame, **options)
    assert t.m.tx_frames == [want]


@pytest.mark.parametrize("name, frame, options, want",
                         tx_checksum_edge_cases(), ids=[c[0] for c in tx_checksum_edge_cases()])
def test_tx_ipv4_checksum_edges(name, frame, options, want):
    """An IPv4 header checksum of 0 is sent as 0; a header longer than the frame is summed to the
    frame's end (as the RTL does, docs/host_interface.md "Transmit")."""
    t = Raw16()
    t.send(frame, ip_csum=1, ip_offset=options["ip_offset"])
    assert t.m.tx_frames == [want]


def test_tx_without_offload_sends_frame_unchanged():
    t = Raw16()
    frame = bytes(range(61))
    t.send(frame)
    assert t.m.tx_frames == [frame]
    assert t.m.counters()["tx_frames"] == 1


@pytest.mark.parametrize("fields", [
    {"length": 0},
    {"length": params.MAX_FRAME_BYTES + 1},
    {"ip_csum": 1, "ip_offset": 15},
    {"l4_csum": 1, "csum_start": 35, "csum_offset": 16},
    {"l4_csum": 1, "csum_start": 34, "csum_offset": 7},
    # Fields outside the frame (the RTL refuses these too).
    {"ip_csum": 1, "ip_offset": 46},
    {"l4_csum": 1, "csum_start": 34, "csum_offset": 30},
])
def test_tx_bad_descriptor(fields):
    t = Raw16()
    t.send(bytes(64), **fields)
    (event,) = t.events()
    assert event["kind"] == EventKind.TX_DONE.value
    assert event["code"] == EventCode.BAD_DESCRIPTOR.value
    assert not t.m.tx_frames
    assert t.m.counters()["tx_bad_descriptor"] == 1


def test_tx_dma_errors():
    t = Raw16()
    # The frame read fails: TX_DONE with DMA_ERROR, nothing sent.
    addr = t.memory.alloc(128, 64)
    t.m.dma_error_ranges.append((addr + 64, addr + 64 + BEAT, "read"))
    t.post(RingId.TX, TxDescriptor, {"addr": addr, "length": 100})
    (event,) = t.events()
    # docs/host_interface.md, events table: detail = the failing address (the first bad beat).
    assert (event["kind"], event["code"], event["length"], event["detail"]) == (
        EventKind.TX_DONE.value, EventCode.DMA_ERROR.value, 100, (addr + 64) & 0x7FFF_FFFF)
    # The descriptor fetch fails: TX_DONE DMA_ERROR naming the entry (docs "Commands"); the ring
    # goes on.
    entry = t.rings[RingId.TX] + ENTRY * 1
    t.m.dma_error_ranges[0] = (entry, entry + ENTRY, "read")
    t.send(bytes(100))
    t.send(bytes(100))
    fetch, done = t.events()
    assert (fetch["kind"], fetch["code"], fetch["index"], fetch["length"], fetch["tag"]) == (
        EventKind.TX_DONE.value, EventCode.DMA_ERROR.value, 1, 0, 0)
    assert fetch["ring"] == RingId.TX.value and fetch["detail"] == entry & 0x7FFF_FFFF
    assert (done["kind"], done["code"], done["index"]) == (EventKind.TX_DONE.value, 0, 2)
    assert len(t.m.tx_frames) == 1
    counters = t.m.counters()
    assert counters["tx_bad_descriptor"] == 2 and counters["tx_frames"] == 1


def test_event_phase_flips_on_wrap():
    t = Raw16(log2=2)
    phases = []
    for n in range(10):
        t.command(CommandOpcode.NOP, tag=n)
        ring = t.rings[RingId.EVENT]
        slot = t.event_index % t.size
        phases.append(fields_of(Event, int.from_bytes(t.memory.read(ring + ENTRY * slot, ENTRY),
                                                      "little"))["phase"])
        (event,) = t.events()
        assert event["tag"] == n
    assert phases == [1, 1, 1, 1, 0, 0, 0, 0, 1, 1]


def test_moderation_by_count_and_timer():
    t = Raw16(mod_events=4, mod_cycles=0)
    for _ in range(3):
        t.command(CommandOpcode.NOP)
    assert not t.m.irq
    t.m.advance(10_000)
    assert not t.m.irq                      # no timer: the last events of a burst wait
    t.command(CommandOpcode.NOP)
    assert t.m.irq
    assert t.m.read_register(reg("INTR_STATUS")) == regmap.INTR_EVENTS
    t.m.write_register(reg("INTR_STATUS"), regmap.INTR_EVENTS)   # W1C
    assert not t.m.irq
    t.events()
    # With a timer: one event, the interrupt comes 100 cycles later.
    t.m.write_register(reg("INTR_MOD_CYCLES"), 100)
    t.command(CommandOpcode.NOP)
    t.m.advance(99)
    assert not t.m.irq
    t.m.advance(1)
    assert t.m.irq
    assert t.m.counters()["interrupts"] == 2
    # Masked: the status is set but the line stays low.
    t.m.write_register(reg("INTR_STATUS"), 0xFFFF_FFFF)
    t.m.write_register(reg("INTR_MASK"), 0)
    for _ in range(4):
        t.command(CommandOpcode.NOP)
    assert t.m.read_register(reg("INTR_STATUS")) & regmap.INTR_EVENTS and not t.m.irq
    assert t.m.counters()["interrupts"] == 2


def test_registers_reset_unmapped_and_counter_clear():
    m = NicModel(HostMemory(4096))
    for r in regmap.REGISTERS:
        if r.access != "w1c":
            assert m.read_register(r.offset) == r.reset, r.name
    assert m.read_register(0xFFC) == 0
    m.write_register(0xFFC, 5)                          # ignored
    m.write_register(reg("ID"), 0)                      # read-only
    assert m.read_register(reg("ID")) == params.NIC_ID
    m.receive_frame(bytes(60))
    assert m.counters()["rx_frames"] == m.counters()["rx_drop_disabled"] == 1
    m.write_register(reg("CONTROL"), regmap.CONTROL_COUNTERS_CLEAR | regmap.CONTROL_ENABLE)
    assert not any(m.counters().values())
    assert m.read_register(reg("CONTROL")) == regmap.CONTROL_ENABLE
    assert m.read_register(reg("STATUS")) == regmap.STATUS_ENABLED


def test_event_write_failure_is_fatal():
    """A failed event write is fatal (STATUS, INTR_STATUS.FATAL) but was posted like any other: the
    producer moves past the slot, it is counted, and the next events are written (as the RTL)."""
    t = Raw16()
    base = t.rings[RingId.EVENT]
    t.m.dma_error_ranges.append((base + ENTRY, base + 2 * ENTRY, "write"))
    for tag in range(3):
        t.command(CommandOpcode.NOP, tag=tag)
    assert t.m.read_register(reg("STATUS")) & regmap.STATUS_EVENT_WRITE_FAILED
    assert t.m.read_register(reg("INTR_STATUS")) & regmap.INTR_FATAL and t.m.irq
    assert t.m.read_register(ring_reg(RingId.EVENT, "PRODUCER")) == 3
    assert [e["tag"] for _, e in t.m.events] == [0, 2]
    assert t.memory.read(base + ENTRY, ENTRY) == bytes(ENTRY)       # slot 1 never written
    counters = t.m.counters()
    assert (counters["events"], counters["commands"], counters["dma_errors"]) == (3, 3, 1)
    t.m.dma_error_ranges.clear()
    t.m.write_register(ring_reg(RingId.EVENT, "LOG2_SIZE"), 3)      # reconfigure: cleared
    assert not t.m.read_register(reg("STATUS")) & regmap.STATUS_EVENT_WRITE_FAILED


def test_rss_key_register_changes_hash():
    t = Raw16(rx_buffers=[2048, 2048])
    frame = bytes(FRAMES["tcp"])
    t.m.receive_frame(frame)
    t.m.write_register(reg("RSS_KEY0"), 0x12345678)
    t.m.receive_frame(frame)
    first, second = t.events()
    assert first["tag"] == int(expected_status(frame)["hash"], 16)
    key = bytes.fromhex("12345678") + params.MS_RSS_KEY[4:]
    assert second["tag"] == int(expected_status(frame, key=key)["hash"], 16)


def test_driver_runs_on_model():
    async def main():
        memory = HostMemory(1 << 22)
        model = NicModel(memory)
        received = []
        driver = NicDriver(ModelBus(model), on_rx=lambda frame, status: received.append(frame))
        await driver.start(rx_log2=4)
        frame = bytes(FRAMES["udp"])
        model.receive_frame(frame)
        await driver.poll(100)
        assert received == [frame]
        assert await driver.counters() == model.counters()

    asyncio.run(main())
