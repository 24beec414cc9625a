"""TxReader (hw/host/tx_reader.py) with the staging buffer (hw/host/tx_buffer.py) behind it.

Host memory is ``dma_model.ReadServer`` (random latency and ready, error pages). Frames are built
with scapy (IPv4 with and without options / IPv6, TCP / UDP, with and without VLAN tags, 14..1514
bytes and a few jumbo ones) and prepared as Linux leaves a CHECKSUM_PARTIAL frame: IPv4 header
checksum 0, the pseudo-header sum in the L4 checksum field. Every frame out on ``o`` must be
scapy's own checksummed frame, byte for byte and in order; bad descriptors, fetch errors and
frames on error pages must give their TX_DONE (checked field by field, in order) and nothing on
``o``; ``tx_bad_descriptor`` must pulse once for each of them; the reader must ask for each good
frame in one request and for nothing else.
"""

import gc
import random
import warnings

import pytest
from amaranth import Elaboratable, Module
from amaranth.hdl import UnusedElaboratable
from amaranth.lib import wiring
from scapy.layers.inet import IP, TCP, UDP, IPOption_Router_Alert
from scapy.layers.inet6 import IPv6
from scapy.layers.l2 import Dot1Q, Ether
from scapy.packet import Raw

from hw import params
from hw.host.tx_buffer import TxFrameBuffer
from hw.host.tx_reader import TxReader
from hw.layouts import EventCode, EventKind, RingId, TxDescriptor
from sim.reference.checksum import ones_complement_sum, pseudo_header

from .amaranth_sim import run_testbenches
from .dma_model import ReadServer

WIDTHS = (64, 128, 256)
PAGE = 4096
FRAME_BASE = 0x1_8000_0000      # bit 31 and above set: the events' detail keeps bits 30:0
ERROR_PAGE = 0x1_8010_3000      # answered SLVERR; the good frames stay below it


class _SparseMemory:
    """Host memory as 4 KB pages, for addresses anywhere in 64 bits (reads of unset bytes: 0)."""

    def __init__(self):
        self.pages = {}

    def write(self, addr, data):
        for k, byte in enumerate(data):
            a = addr + k
            self.pages.setdefault(a & ~(PAGE - 1), bytearray(PAGE))[a % PAGE] = byte

    def __getitem__(self, index):
        out = bytearray()
        for a in range(index.start, index.stop):
            page = self.pages.get(a & ~(PAGE - 1))
            out.append(page[a % PAGE] if page else 0)
        return out


class _Bench(Elaboratable):
    """The reader and the staging buffer, connected as hw/nic.py connects them."""

    def __init__(self, data_bits):
        self.reader = TxReader(data_bits=data_bits)
        self.buffer = TxFrameBuffer(data_bits=data_bits)

    def elaborate(self, platform):
        m = Module()
        m.submodules.reader = self.reader
        m.submodules.buffer = self.buffer
        wiring.connect(m, reader=self.reader.buffer, buffer=self.buffer.w)
        return m


# --- Frames ----------------------------------------------------------------------------------

def _mac(rng):
    return ":".join(f"{rng.getrandbits(8):02x}" for _ in range(6))


def _ipv4(rng):
    return ".".join(str(rng.randrange(1, 255)) for _ in range(4))


def _ipv6(rng):
    return ":".join(f"{rng.getrandbits(16):x}" for _ in range(8))


def _scapy_frame(rng, size, *, vlan=None, v6=None, tcp=None, zero_sum=False):
    """A frame of ``size`` bytes with correct checksums, and its offload fields (or None if the
    headers do not fit). ``vlan``, ``v6``, ``tcp``: its kind, random if None. ``zero_sum``: the
    payload's last word is chosen so that the L4 checksum computes to 0 (even segment length)."""
    eth = Ether(src=_mac(rng), dst=_mac(rng))
    l2 = 14
    if rng.random() < 0.3 if vlan is None else vlan:
        eth = eth / Dot1Q(vlan=rng.randrange(4096))
        l2 += 4
    v6 = rng.random() < 0.35 if v6 is None else v6
    if v6:
        ip = IPv6(src=_ipv6(rng), dst=_ipv6(rng), hlim=rng.randrange(1, 256))
    else:
        options = [IPOption_Router_Alert()] if rng.random() < 0.2 else []
        ip = IP(src=_ipv4(rng), dst=_ipv4(rng), ttl=rng.randrange(1, 256),
                id=rng.getrandbits(16), options=options)
    tcp = rng.random() < 0.5 if tcp is None else tcp
    l4 = (TCP(sport=rng.getrandbits(16), dport=rng.getrandbits(16), seq=rng.getrandbits(32),
              ack=rng.getrandbits(32), flags="PA", window=rng.getrandbits(16))
          if tcp else UDP(sport=rng.getrandbits(16), dport=rng.getrandbits(16)))
    headers = len(eth / ip / l4)
    if size < headers:
        return None
    payload = rng.randbytes(size - headers)
    if zero_sum:
        # With the last word 0 the checksum is c; with the last word c the sum is 0xFFFF.
        payload = payload[:-2] + b"\0\0"
        c = bytes(Ether(bytes(eth / ip / l4 / Raw(payload))))[
            size - len(payload) - len(l4) + (16 if tcp else 6):][:2]
        payload = payload[:-2] + c
    pkt = Ether(bytes(eth / ip / l4 / Raw(payload)))
    # scapy's own checksummed frame: checksum fields deleted and rebuilt.
    if IP in pkt:
        del pkt[IP].chksum
    del pkt[TCP if tcp else UDP].chksum
    frame = bytearray(bytes(pkt))
    assert len(frame) == size
    ip_offset = l2
    ihl = 40 if v6 else 4 * (frame[l2] & 0xF)
    start = l2 + ihl
    field = 16 if tcp else 6
    if tcp and frame[start + field:start + field + 2] == b"\0\0":
        frame[start + field:start + field + 2] = b"\xff\xff"   # the NIC sends a 0 as 0xFFFF
    src, dst = (frame[l2 + 8:l2 + 24], frame[l2 + 24:l2 + 40]) if v6 else \
        (frame[l2 + 12:l2 + 16], frame[l2 + 16:l2 + 20])
    seed = ones_complement_sum(pseudo_header(bytes(src), bytes(dst), 6 if tcp else 17,
                                             size - start))
    return bytes(frame), {"v6": v6, "ip_offset": ip_offset, "csum_start": start,
                          "csum_offset": field, "seed": seed}


def _prepare(frame, off, ip_csum, l4_csum):
    """The frame as the host leaves it for the NIC (CHECKSUM_PARTIAL)."""
    out = bytearray(frame)
    if ip_csum:
        out[off["ip_offset"] + 10:off["ip_offset"] + 12] = b"\0\0"
    if l4_csum:
        at = off["csum_start"] + off["csum_offset"]
        out[at:at + 2] = off["seed"].to_bytes(2, "big")
    return bytes(out)


def _descriptor(addr, length, ip_csum=0, l4_csum=0, ip_offset=0, csum_start=0, csum_offset=0):
    return TxDescriptor.const({
        "addr": addr, "length": length, "ip_csum": ip_csum, "l4_csum": l4_csum,
        "ip_offset": ip_offset, "csum_start": csum_start, "csum_offset": csum_offset,
    }).as_value().value


class _Case:
    """One TX descriptor: what the reader gets, what must come out."""

    def __init__(self, entry, entry_addr, *, error=0, frame=None, code=EventCode.OK, length=0,
                 detail=0, request=None):
        self.entry = entry
        self.entry_addr = entry_addr
        self.error = error
        self.frame = frame          # expected on o (None: nothing)
        self.code = code
        self.length = length
        self.detail = detail
        self.request = request      # (addr, beats) expected of the reader


def _cases(rng, memory, beat, *, count, jumbo):
    """Random descriptors over frames written into ``memory``."""
    cases = []
    addr = FRAME_BASE

    def place(data, *, at=None):
        nonlocal addr
        if at is None:
            addr += rng.randrange(0, 3) * beat
            at = addr
            addr = (addr + len(data) + beat - 1) // beat * beat
            assert addr < ERROR_PAGE - PAGE
        memory.write(at, data)
        return at

    def entry_addr():
        return 0x7_0000_0000 + 16 * rng.getrandbits(20)

    sizes = [rng.randrange(14, 1515) for _ in range(count)]
    sizes += [rng.randrange(1515, 9001) for _ in range(jumbo)]
    sizes += [60, 14, 15, 1514]
    rng.shuffle(sizes)
    for size in sizes:
        built = _scapy_frame(rng, size)
        if built is None:           # too short for the headers: raw bytes, no offload
            frame = rng.randbytes(size)
            at = place(frame)
            cases.append(_Case(_descriptor(at, size), entry_addr(), frame=frame, length=size,
                               request=(at, -(-size // beat))))
            continue
        frame, off = built
        ip_csum = int(not off["v6"] and rng.random() < 0.9)
        l4_csum = int(rng.random() < 0.9)
        at = place(_prepare(frame, off, ip_csum, l4_csum))
        cases.append(_Case(
            _descriptor(at, size, ip_csum, l4_csum, off["ip_offset"], off["csum_start"],
                        off["csum_offset"]),
            entry_addr(), frame=frame, length=size, request=(at, -(-size // beat))))

    # L4 checksums that compute to 0: UDP and TCP both send 0xFFFF.
    for tcp in (False, True):
        frame, off = _scapy_frame(rng, 120, vlan=False, v6=False, tcp=tcp, zero_sum=True)
        field = off["csum_start"] + off["csum_offset"]
        assert frame[field:field + 2] == b"\xff\xff"
        at = place(_prepare(frame, off, 1, 1))
        cases.append(_Case(
            _descriptor(at, 120, 1, 1, off["ip_offset"], off["csum_start"], off["csum_offset"]),
            entry_addr(), frame=frame, length=120, request=(at, -(-120 // beat))))

    # Refused descriptors (no read), fetch errors, frames on the error page.
    good = _scapy_frame(random.Random(7), 200)
    frame, off = good
    at = place(_prepare(frame, off, 1, 1))
    o = dict(ip_offset=off["ip_offset"], csum_start=off["csum_start"],
             csum_offset=off["csum_offset"])
    bad = [
        _descriptor(at, 0),
        _descriptor(at, params.MAX_FRAME_BYTES + 1),
        _descriptor(at, 0xFFFF, 1, 1, **o),
        _descriptor(at, 200, 1, 0, **{**o, "ip_offset": 15}),
        _descriptor(at, 200, 0, 1, **{**o, "csum_start": 35}),
        _descriptor(at, 200, 0, 1, **{**o, "csum_offset": 7}),
        _descriptor(at, 33, 1, 0, ip_offset=14),                     # header past the end
        _descriptor(at, 50, 0, 1, csum_start=34, csum_offset=16),    # field past the end
    ]
    for entry in bad:
        length = TxDescriptor.from_bits(entry).length
        cases.append(_Case(entry, entry_addr(), code=EventCode.BAD_DESCRIPTOR, length=length))
    # Odd offsets without their offload flag are fine; so is a field that just fits.
    raw = rng.randbytes(52)
    at2 = place(raw)
    cases.append(_Case(_descriptor(at2, 52, 0, 0, ip_offset=15, csum_start=35, csum_offset=7),
                       entry_addr(), frame=raw, length=52, request=(at2, -(-52 // beat))))
    for _ in range(3):
        ea = entry_addr() | (1 << 31)
        cases.append(_Case(rng.getrandbits(128), ea, error=1, code=EventCode.DMA_ERROR,
                           detail=ea & 0x7FFF_FFFF))
    for start, size in ((ERROR_PAGE + 4 * beat, 300), (ERROR_PAGE - 3 * beat, 700),
                        (ERROR_PAGE + PAGE - 2 * beat, 100)):
        frame, off = _scapy_frame(rng, size)
        place(_prepare(frame, off, 1, 1), at=start)
        first_bad = max(start, ERROR_PAGE)
        if start + size <= ERROR_PAGE + PAGE and start >= ERROR_PAGE:
            first_bad = start
        cases.append(_Case(
            _descriptor(start, size, int(not off["v6"]), 1, off["ip_offset"], off["csum_start"],
                        off["csum_offset"]),
            entry_addr(), code=EventCode.DMA_ERROR, length=size,
            detail=first_bad & 0x7FFF_FFFF, request=(start, -(-size // beat))))
    # Mix the special cases in among the frames (keeping some back to back).
    specials = cases[len(sizes):]
    cases = cases[:len(sizes)]
    for case in specials:
        cases.insert(rng.randrange(len(cases) + 1), case)
    return cases


# --- Testbenches -----------------------------------------------------------------------------

def _producer(reader, cases, rng, p_valid):
    async def tb(ctx):
        for index, case in enumerate(cases):
            while rng.random() >= p_valid:
                ctx.set(reader.descriptors.valid, 0)
                await ctx.tick()
            ctx.set(reader.descriptors.valid, 1)
            ctx.set(reader.descriptors.payload, {
                "entry": case.entry, "index": index % 4096, "addr": case.entry_addr,
                "error": case.error})
            await ctx.tick().until(reader.descriptors.ready)
        ctx.set(reader.descriptors.valid, 0)
    return tb


def _event_consumer(reader, cases, rng, p_ready, state):
    async def tb(ctx):
        got = 0
        bad = 0
        while got < len(cases):
            ctx.set(reader.events.ready, int(rng.random() < p_ready))
            _, _, valid, ready, ev, pulse = await ctx.tick().sample(
                reader.events.valid, reader.events.ready, reader.events.payload,
                reader.count.tx_bad_descriptor)
            bad += pulse
            if not (valid and ready):
                continue
            case = cases[got]
            fields = {k: int(getattr(ev, k)) for k in
                      ("kind", "ring", "index", "length", "code", "tag", "detail", "phase")}
            assert fields == {
                "kind": EventKind.TX_DONE.value, "ring": RingId.TX.value, "index": got % 4096,
                "length": case.length, "code": case.code.value, "tag": 0,
                "detail": case.detail, "phase": 0}, f"event {got}"
            got += 1
        ctx.set(reader.events.ready, 1)
        for _ in range(40):
            _, _, valid, pulse = await ctx.tick().sample(reader.events.valid,
                                                         reader.count.tx_bad_descriptor)
            assert not valid
            bad += pulse
        assert bad == sum(case.code != EventCode.OK for case in cases)
        state["events_done"] = True
    return tb


def _frame_consumer(buffer, expected, rng, p_ready, starts=None):
    async def tb(ctx):
        out = []
        current = bytearray()
        clock = 0
        while len(out) < len(expected):
            ctx.set(buffer.o.ready, int(rng.random() < p_ready))
            _, _, valid, ready, beat = await ctx.tick().sample(
                buffer.o.valid, buffer.o.ready, buffer.o.payload)
            clock += 1
            if not (valid and ready):
                continue
            if not current and starts is not None:
                starts.append(clock)
            word = int(beat.data).to_bytes(8, "little")
            if beat.last:
                current += word[:int(beat.keep).bit_length()]
                out.append(bytes(current))
                assert out[-1] == expected[len(out) - 1], f"frame {len(out) - 1}"
                current = bytearray()
            else:
                current += word
        ctx.set(buffer.o.ready, 1)
        for _ in range(100):
            _, _, valid = await ctx.tick().sample(buffer.o.valid)
            assert not valid
    return tb


def _run(data_bits, seed, *, count, jumbo, p_valid, p_ready, p_dma, latency):
    rng = random.Random(seed)
    beat = data_bits // 8
    memory = _SparseMemory()
    cases = _cases(rng, memory, beat, count=count, jumbo=jumbo)
    dut = _Bench(data_bits)
    server = ReadServer(dut.reader.dma, memory, beat, seed=seed, p_ready=p_dma, latency=latency,
                        error_pages={ERROR_PAGE})
    state = {}
    run_testbenches(
        dut,
        _producer(dut.reader, cases, random.Random(seed + 1), p_valid),
        _event_consumer(dut.reader, cases, random.Random(seed + 2), p_ready, state),
        _frame_consumer(dut.buffer, [c.frame for c in cases if c.code == EventCode.OK],
                        random.Random(seed + 3), p_ready),
        processes=[server.run])
    assert state.get("events_done")
    assert server.violations == []
    assert server.requests == [c.request for c in cases if c.request is not None]
    assert not server.pending


@pytest.mark.parametrize("data_bits", WIDTHS)
def test_frames_checksums_and_events(data_bits):
    _run(data_bits, seed=10 + data_bits, count=45, jumbo=2, p_valid=0.7, p_ready=0.7,
         p_dma=0.8, latency=(1, 40))


def _throughput(data_bits, size, frames=40):
    """Clocks per frame on ``o`` with 78-clock reads and nothing else holding the reader back."""
    rng = random.Random(size)
    beat = data_bits // 8
    memory = _SparseMemory()
    cases = []
    for k in range(frames):
        frame, off = _scapy_frame(rng, size, vlan=False, v6=False, tcp=k % 2 == 0)
        at = FRAME_BASE + k * 16384
        memory.write(at, _prepare(frame, off, int(not off["v6"]), 1))
        cases.append(_Case(
            _descriptor(at, size, int(not off["v6"]), 1, off["ip_offset"], off["csum_start"],
                        off["csum_offset"]),
            0, frame=frame, length=size, request=(at, -(-size // beat))))
    dut = _Bench(data_bits)
    server = ReadServer(dut.reader.dma, memory, beat, seed=1, p_ready=1.0, latency=(78, 78))
    starts = []
    state = {}
    run_testbenches(
        dut,
        _producer(dut.reader, cases, random.Random(1), 1.0),
        _event_consumer(dut.reader, cases, random.Random(2), 1.0, state),
        _frame_consumer(dut.buffer, [c.frame for c in cases], random.Random(3), 1.0, starts),
        processes=[server.run])
    steady = starts[frames // 4:]
    return (steady[-1] - steady[0]) / (len(steady) - 1), starts[0]


@pytest.mark.parametrize("data_bits", WIDTHS)
def test_throughput_60_byte_frames(data_bits):
    per_frame, first = _throughput(data_bits, 60)
    print(f"data_bits {data_bits}: 60-byte frames every {per_frame:.2f} clocks "
          f"(first out after {first})")
    assert per_frame <= 10.5
    assert per_frame == 8       # o always ready: 8 MAC beats a frame, no idle clock between


@pytest.mark.parametrize("data_bits", (128,))
def test_throughput_1514_byte_frames(data_bits):
    per_frame, first = _throughput(data_bits, 1514, frames=16)
    print(f"data_bits {data_bits}: 1514-byte frames every {per_frame:.2f} clocks "
          f"(first out after {first})")
    assert per_frame == 190


def test_parameters_checked():
    with warnings.catch_warnings():
        # The refused objects exist (Elaboratable.__new__ ran) but are never elaborated.
        warnings.simplefilter("ignore", UnusedElaboratable)
        with pytest.raises(ValueError, match="data_bits"):
            TxReader(data_bits=512)
        with pytest.raises(ValueError, match="contexts"):
            TxReader(contexts=3)
        gc.collect()
