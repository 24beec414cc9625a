"""The NIC (``hw.nic.Nic``) against a host that gets things wrong (cocotb module for
tests/cosim/test_nic_bad_input.py): bad commands, DMA error responses, bad doorbells and ring sizes,
a full event ring, frames while disabled, bad TX descriptors (docs/host_interface.md).

Every test checks the exact events and counters the contract gives, that every other counter stayed
0, and that good traffic still flows afterwards. Field and counter mismatches are collected and
reported together at the end of a test, so one deviation does not hide the others. Every test also
runs the NIC model beside the RTL (``sim/scoreboard.py``, RX mode "exact": the traffic never races
a doorbell against a frame) and ends with its check: every event, RX buffer, MAC TX frame and
counter of the RTL against the model's.
"""

import cocotb
from scapy.layers.inet import IP, TCP
from scapy.layers.l2 import Ether

from host_driver.driver import NicDriver, offload_frame
from hw import params
from hw.host import regmap
from hw.host.axi import Resp
from hw.layouts import CommandOpcode, EventCode, EventKind, RingId
from sim.cosim.nic_tb import NicTb
from sim.cosim.pci import LinkConfig
from sim.frames import tx_checksum_edge_cases

#: A short link, to keep the simulated cycles down (the timing is not what is tested here).
LINK = {"read_latency": 24, "write_latency": 8}
#: Counters whose value depends on more than the test controls.
IGNORED = {"interrupts", "rx_candidates"}
#: Bytes of a DMA beat: error responses come one per read beat.
_DMA_BEAT = params.DMA_DATA_BITS // 8

OK = EventCode.OK.value
RX, TX_DONE, COMMAND_DONE, ERROR = (EventKind.RX.value, EventKind.TX_DONE.value,
                                    EventKind.COMMAND_DONE.value, EventKind.ERROR.value)


def tcp_frame(n: int, size: int = 64) -> bytes:
    return bytes(Ether(dst="02:00:00:00:00:01", src="02:00:00:00:00:02")
                 / IP(src="10.0.0.2", dst="10.0.0.1")
                 / TCP(sport=1000 + n, dport=80, flags="PA")
                 / bytes((n * 7 + i) & 0xFF for i in range(size)))


def _reg(name: str) -> int:
    return regmap.BY_NAME[name].offset


class Bench:
    """NicTb + the driver, every event recorded in order, soft checks collected."""

    def __init__(self, dut, **link):
        self.dut = dut
        self.tb = NicTb(dut, LinkConfig(**{**LINK, **link}), scoreboard="exact")
        self.bus = self.tb.host_bus
        self.dma = self.tb.bus.dma
        self.memory = self.tb.memory
        self.events: list[dict] = []
        self.rx: list[bytes] = []
        self.tx: list[bytes] = []
        self.failures: list[str] = []
        self.error_responses = 0        # DMA responses the target answered with an error
        resp = self.dma._resp

        def counting_resp(addr, n, kind):
            r = resp(addr, n, kind)
            self.error_responses += r != Resp.OKAY
            return r
        self.dma._resp = counting_resp

    async def start(self, **kwargs):
        await self.tb.reset()
        self.tb.mac.on_tx = self.tx.append
        self.drv = drv = NicDriver(self.bus, on_rx=lambda frame, status: self.rx.append(frame))
        self.tb.watch(drv)
        handle = drv._handle

        def recording(event, fields):
            self.events.append(fields)
            handle(event, fields)
        drv._handle = recording
        await drv.start(**kwargs)
        self.start_cycle = self.tb.cycle

    # -- Checks ----------------------------------------------------------------------------------

    def check(self, what, got, want):
        if got != want:
            message = f"{what}: got {got!r}, want {want!r}"
            self.dut._log.error(message)
            self.failures.append(message)

    def check_event(self, n, **want):
        if n >= len(self.events):
            self.check(f"event {n}", None, want)
            return
        got = self.events[n]
        self.check(f"event {n} {got}", {k: got[k] for k in want}, want)

    def check_events(self, first, wants):
        """Events ``first``.. are exactly ``wants`` (each a dict of the fields that matter)."""
        self.check(f"events from {first}", len(self.events) - first, len(wants))
        for n, want in enumerate(wants):
            self.check_event(first + n, **want)

    def errors(self):
        """DMA errors as the NIC should count them: every error response (R beats and B)."""
        return self.error_responses

    async def check_counters(self, **want):
        got = await self.drv.counters()
        full = {name: 0 for name in got if name not in IGNORED}
        full["events"] = len(self.events)
        full["dma_errors"] = self.errors()
        full.update(want)
        for name, value in full.items():
            self.check(f"counter {name}", got[name], value)
        drops = sum(v for k, v in got.items() if k.startswith("rx_drop_"))
        self.check("rx_frames = rx_to_host + drops", got["rx_frames"], got["rx_to_host"] + drops)
        self.check("rx_frames = frames sent", got["rx_frames"], self.tb.mac.rx_frames)
        return got

    async def reg(self, name):
        return await self.bus.read32(_reg(name))

    async def check_reg(self, name, want):
        self.check(f"register {name}", await self.reg(name), want)

    def finish(self, max_cycles=20_000):
        for t in self.dma.transactions:
            if t.resp != Resp.OKAY:
                self.dut._log.info("error response: %s %#x, %d beats, resp %d, cycle %d", t.kind,
                                   t.addr, t.beats, t.resp, t.cycle)
        if self.failures:
            self.dut._log.info("events: %s", self.events)
        self.check("AXI protocol violations", self.dma.violations, [])
        cycles = self.tb.cycle
        self.dut._log.info("%d cycles, %d events", cycles, len(self.events))
        self.check("simulated cycles within budget", cycles <= max_cycles, True)
        try:
            self.tb.check()
        except AssertionError as exc:
            self.failures.append(str(exc))
        assert not self.failures, "\n".join(self.failures)

    # -- Driving ---------------------------------------------------------------------------------

    def send(self, *frames):
        for frame in frames:
            self.tb.mac.send(frame)

    async def until(self, cond, what, max_cycles=4000, service=True):
        start = self.tb.cycle
        while not cond():
            if self.tb.cycle - start > max_cycles:
                raise AssertionError(f"timeout after {max_cycles} cycles waiting for {what}; "
                                     f"events {self.events[-6:]}")
            await self.bus.delay(32)
            if service:
                await self.drv.service()

    async def quiet(self, cycles=400, service=True):
        """Let ``cycles`` pass (servicing events), so that anything that should not happen would."""
        end = self.tb.cycle + cycles
        while self.tb.cycle < end:
            await self.bus.delay(32)
            if service:
                await self.drv.service()

    async def idle(self, max_cycles=4000):
        """Wait for the MAC to have sent every queued frame and the NIC to go quiet."""
        await self.until(lambda: self.tb.mac.idle, "MAC RX idle", max_cycles)
        await self.quiet(300)

    def add_error(self, start, length, kind):
        entry = (start, start + length, Resp.SLVERR, kind)
        self.dma.config.errors.append(entry)
        return entry

    def remove_error(self, entry):
        self.dma.config.errors.remove(entry)


@cocotb.test()
async def test_bad_commands(dut):
    """Unknown opcodes and RING_STOP/RING_START on rings they cannot act on complete with the right
    code and tag and change nothing; RING_STOP/RING_START of RX and TX do what they say."""
    b = Bench(dut)
    await b.start(command_log2=4, rx_log2=4, tx_log2=3)
    cmd_ring = RingId.COMMAND.value
    stop, start = CommandOpcode.RING_STOP.value, CommandOpcode.RING_START.value
    bad = [
        (0x77, 0, EventCode.UNKNOWN_OPCODE),
        (0xFF, RingId.RX.value, EventCode.UNKNOWN_OPCODE),
        (0x3F, RingId.TX.value, EventCode.UNKNOWN_OPCODE),
        (stop, RingId.COMMAND.value, EventCode.BAD_RING),
        (stop, RingId.EVENT.value, EventCode.BAD_RING),
        (start, RingId.COMMAND.value, EventCode.BAD_RING),
        (start, RingId.EVENT.value, EventCode.BAD_RING),
        (stop, 9, EventCode.BAD_RING),
        (start, 9, EventCode.BAD_RING),
        (CommandOpcode.NOP.value, 0, EventCode.OK),
    ]
    for n, (opcode, ring, _) in enumerate(bad):
        await b.drv.command(opcode, ring, tag=0x100 + n, arg=0xDEAD0000 + n, addr=0x1234)
    await b.until(lambda: len(b.drv.command_done) == len(bad), "COMMAND_DONE of every command")
    b.check_events(0, [
        {"kind": COMMAND_DONE, "ring": cmd_ring, "index": n, "code": code.value,
         "tag": 0x100 + n, "detail": opcode, "length": 0}
        for n, (opcode, _, code) in enumerate(bad)])
    n_bad = len(bad) - 1
    await b.check_counters(commands=len(bad), bad_commands=n_bad)

    # Nothing changed: frames flow, TX goes out.
    frames = [tcp_frame(n) for n in range(2)]
    b.send(*frames)
    await b.until(lambda: len(b.rx) == 2, "2 frames after the bad commands")
    tx0 = tcp_frame(50, 100)
    await b.drv.send(tx0)
    await b.until(lambda: b.tx == [tx0], "TX after the bad commands")
    b.check("frames received", b.rx, frames)

    # RING_STOP RX: frames are dropped as rx_drop_no_buffer; RING_START RX: they flow again.
    mark = len(b.events)
    done = await b.drv.wait_command(await b.drv.command(stop, RingId.RX, tag=0x200))
    b.check("RING_STOP RX", (done["code"], done["detail"]), (OK, stop))
    consumer = await b.reg("RX_CONSUMER")
    stopped = [tcp_frame(n) for n in range(10, 13)]
    b.send(*stopped)
    await b.idle()
    b.check("frames received while RX stopped", b.rx, frames)
    await b.check_reg("RX_CONSUMER", consumer)
    done = await b.drv.wait_command(await b.drv.command(start, RingId.RX, tag=0x201))
    b.check("RING_START RX", (done["code"], done["detail"]), (OK, start))
    again = [tcp_frame(n) for n in range(20, 22)]
    b.send(*again)
    await b.until(lambda: len(b.rx) == 4, "frames after RING_START RX")

    # RING_STOP TX holds the descriptors until RING_START TX.
    await b.drv.wait_command(await b.drv.command(stop, RingId.TX, tag=0x202))
    consumer = await b.reg("TX_CONSUMER")
    held = [tcp_frame(n, 80) for n in range(30, 32)]
    for frame in held:
        await b.drv.send(frame)
    await b.quiet(800)
    b.check("frames sent while TX stopped", b.tx, [tx0])
    await b.check_reg("TX_CONSUMER", consumer)
    await b.drv.wait_command(await b.drv.command(start, RingId.TX, tag=0x203))
    await b.until(lambda: len(b.tx) == 3, "TX after RING_START TX")
    await b.idle()
    b.check("frames sent", b.tx, [tx0, *held])
    b.check("frames received", b.rx, frames + again)
    kinds = [(e["kind"], e["code"], e["tag"] if e["kind"] == COMMAND_DONE else None)
             for e in b.events[mark:]]
    b.check("events after RING_STOP RX", kinds, [
        (COMMAND_DONE, OK, 0x200), (COMMAND_DONE, OK, 0x201), (RX, OK, None), (RX, OK, None),
        (COMMAND_DONE, OK, 0x202), (COMMAND_DONE, OK, 0x203), (TX_DONE, OK, None),
        (TX_DONE, OK, None)])
    await b.check_counters(commands=len(bad) + 4, bad_commands=n_bad, rx_frames=7,
                           rx_to_host=4, rx_drop_no_buffer=3, tx_frames=3)
    b.finish()


@cocotb.test()
async def test_rx_dma_write_error(dut):
    """An RX buffer whose writes get SLVERR: RX event DMA_ERROR, counted; other buffers fine."""
    b = Bench(dut)
    await b.start(rx_log2=3, rx_buffer_size=2048)
    addr = b.drv._rx_posted[0]
    err = b.add_error(addr, 2048, "write")
    frames = [tcp_frame(n) for n in range(3)]
    b.send(*frames)
    await b.until(lambda: len(b.events) == 3, "3 RX events")
    # docs/host_interface.md, events table: a DMA_ERROR's detail is the failing address.
    b.check_events(0, [
        {"kind": RX, "ring": RingId.RX.value, "index": 0, "code": EventCode.DMA_ERROR.value,
         "length": len(frames[0]), "detail": addr & 0x7FFF_FFFF},
        {"kind": RX, "ring": RingId.RX.value, "index": 1, "code": OK, "length": len(frames[1]),
         "detail": 0},
        {"kind": RX, "ring": RingId.RX.value, "index": 2, "code": OK, "length": len(frames[2]),
         "detail": 0},
    ])
    b.check("RSS hash of the failed frame", b.events[0]["tag"] != 0, True)
    b.check("failed buffer untouched", b.memory.read(addr, 2048), bytes(2048))
    b.check("frames received", b.rx, frames[1:])
    b.check("driver RX errors", dict(b.drv.stats.rx_errors), {"DMA_ERROR": 1})
    b.check("error responses", b.error_responses, 1)
    b.remove_error(err)
    more = [tcp_frame(n) for n in range(3, 6)]
    b.send(*more)
    await b.until(lambda: len(b.rx) == 5, "frames after the DMA error")
    await b.idle()
    b.check("frames received", b.rx, frames[1:] + more)
    await b.check_counters(rx_frames=6, rx_to_host=5, rx_drop_dma_error=1)
    await b.check_reg("STATUS", regmap.STATUS_ENABLED)
    b.finish()


@cocotb.test()
async def test_tx_dma_read_error(dut):
    """A TX frame buffer whose reads get SLVERR: TX_DONE DMA_ERROR, nothing sent for it; the next
    frame goes out."""
    b = Bench(dut)
    await b.start(tx_log2=3)
    bad = tcp_frame(1, 200)
    # The driver's next allocation of this size (first fit): make it fail on read.
    addr = b.memory.alloc(len(bad), 64)
    b.memory.free(addr)
    err = b.add_error(addr, len(bad), "read")
    index = await b.drv.send(bad)
    b.check("TX buffer address", b.drv._tx_posted[index], addr)
    await b.until(lambda: len(b.events) == 1, "TX_DONE of the failed frame")
    b.remove_error(err)
    good = tcp_frame(2, 120)
    await b.drv.send(good)
    await b.until(lambda: len(b.tx) == 1, "the next TX frame")
    await b.quiet(500)
    b.check("frames sent", b.tx, [good])
    # docs/host_interface.md, events table: a DMA_ERROR's detail is the failing address.
    b.check_events(0, [
        {"kind": TX_DONE, "ring": RingId.TX.value, "index": 0, "code": EventCode.DMA_ERROR.value,
         "length": len(bad), "tag": 0, "detail": addr & 0x7FFF_FFFF},
        {"kind": TX_DONE, "ring": RingId.TX.value, "index": 1, "code": OK, "length": len(good),
         "tag": 0, "detail": 0},
    ])
    b.check("error responses (one per R beat)", b.error_responses, -(-len(bad) // _DMA_BEAT))
    b.check("driver TX errors", dict(b.drv.stats.tx_errors), {"DMA_ERROR": 1})
    await b.check_counters(tx_frames=1, tx_bad_descriptor=1)
    b.finish()


@cocotb.test()
async def test_event_write_error(dut):
    """An event write answered SLVERR: STATUS.EVENT_WRITE_FAILED and INTR_STATUS.FATAL; the event is
    lost but was posted (the producer moves past its slot, ``events`` counts it) and the NIC goes
    on with the next slot. Once the host sets the event ring up again the flag clears and events
    flow."""
    b = Bench(dut)
    await b.start(event_log2=4, rx_log2=3)
    ring = b.drv._rings[RingId.EVENT]
    err = b.add_error(ring.entry(1), 16, "write")
    frames = [tcp_frame(n) for n in range(3)]
    b.send(*frames)
    await b.until(lambda: b.tb.mac.idle, "frames sent", service=False)
    await b.quiet(600, service=False)
    b.remove_error(err)
    await b.check_reg("EVENT_PRODUCER", 3)
    await b.check_reg("STATUS", regmap.STATUS_ENABLED | regmap.STATUS_EVENT_WRITE_FAILED)
    b.check("INTR_STATUS.FATAL", await b.reg("INTR_STATUS") & regmap.INTR_FATAL, regmap.INTR_FATAL)
    b.check("slot 1 never written", b.memory.read(ring.entry(1), 16), bytes(16))
    # The driver takes event 0 and stops at the stale slot 1; this test steps it past the hole.
    await b.drv.service()
    b.check("FATAL seen by the driver", b.drv.stats.errors[-1].get("fatal"), True)
    b.check("events before the hole", [e["index"] for e in b.events], [0])
    ring.index = 2
    await b.drv.service()
    b.check("events after the hole", [e["index"] for e in b.events], [0, 2])

    # Set the event ring up again: the flag clears, events flow from slot 0.
    b.memory.write(ring.addr, bytes(16 * ring.size))
    ring.index, b.drv._phase = 0, 1
    await b.bus.write32(_reg("EVENT_LOG2_SIZE"), 4)
    await b.check_reg("STATUS", regmap.STATUS_ENABLED)
    more = [tcp_frame(n) for n in range(10, 12)]
    b.send(*more)
    await b.until(lambda: len(b.rx) == 4, "frames after the event ring is set up again")
    await b.idle()
    b.check("frames received", b.rx, [frames[0], frames[2], *more])
    b.check("RX events", [(e["index"], e["code"]) for e in b.events],
            [(0, OK), (2, OK), (3, OK), (4, OK)])
    await b.check_counters(rx_frames=5, rx_to_host=5, events=5)
    b.finish()


@cocotb.test()
async def test_fetch_errors(dut):
    """A ring entry (RX descriptor, TX descriptor, command) that cannot be read is skipped with a
    DMA_ERROR event; the ring goes on."""
    b = Bench(dut)
    # No RX buffer posted yet: the ring fetcher reads posted descriptors ahead, so the error must
    # be in place before they are posted.
    await b.start(rx_log2=3, tx_log2=3, command_log2=3, rx_post=0)
    rings = b.drv._rings
    dma_error = EventCode.DMA_ERROR.value

    # RX descriptor 1 (descriptor 0 reads fine): descriptor 0 takes frame 0; descriptor 1 is
    # skipped with an ERROR event (at once: it needs no frame); frame 1 goes to descriptor 2.
    entry = rings[RingId.RX].entry(1)
    err = b.add_error(entry, 16, "read")
    # Four posted at a time: slot 1 comes round again only after the error is removed (the
    # fetcher reads posted slots ahead, whenever it has room).
    b.drv.rx_target = 4
    await b.drv.refill()
    frames = [tcp_frame(n) for n in range(3)]
    b.send(*frames)
    await b.until(lambda: len(b.rx) == 3, "3 frames around the failed RX descriptor")
    b.remove_error(err)
    b.check_events(0, [
        {"kind": RX, "ring": RingId.RX.value, "index": 0, "code": OK},
        {"kind": ERROR, "ring": RingId.RX.value, "index": 1, "code": dma_error,
         "detail": entry & 0x7FFF_FFFF, "length": 0, "tag": 0},
        {"kind": RX, "ring": RingId.RX.value, "index": 2, "code": OK},
        {"kind": RX, "ring": RingId.RX.value, "index": 3, "code": OK},
    ])
    b.check("frames received", b.rx, frames)
    await b.check_reg("RX_CONSUMER", 4)

    # TX descriptor 0: skipped with TX_DONE DMA_ERROR (the buffer is the host's again).
    mark = len(b.events)
    entry = rings[RingId.TX].entry(0)
    err = b.add_error(entry, 16, "read")
    await b.drv.send(tcp_frame(10, 90))
    await b.until(lambda: len(b.events) > mark, "the event of the failed TX descriptor")
    b.remove_error(err)
    good = tcp_frame(11, 70)
    await b.drv.send(good)
    await b.until(lambda: len(b.tx) == 1, "the next TX frame")
    b.check_events(mark, [
        {"kind": TX_DONE, "ring": RingId.TX.value, "index": 0, "code": dma_error},
        {"kind": TX_DONE, "ring": RingId.TX.value, "index": 1, "code": OK, "length": len(good)},
    ])
    b.check("frames sent", b.tx, [good])

    # Command 0: skipped with COMMAND_DONE DMA_ERROR; the next one completes.
    mark = len(b.events)
    entry = rings[RingId.COMMAND].entry(0)
    err = b.add_error(entry, 16, "read")
    await b.drv.command(CommandOpcode.NOP, tag=0x300)
    await b.until(lambda: len(b.events) > mark, "the event of the failed command")
    b.remove_error(err)
    await b.drv.wait_command(await b.drv.command(CommandOpcode.NOP, tag=0x301))
    b.check_events(mark, [
        {"kind": COMMAND_DONE, "ring": RingId.COMMAND.value, "index": 0, "code": dma_error},
        {"kind": COMMAND_DONE, "ring": RingId.COMMAND.value, "index": 1, "code": OK,
         "tag": 0x301, "detail": CommandOpcode.NOP.value},
    ])
    await b.check_reg("COMMAND_CONSUMER", 2)

    more = [tcp_frame(n) for n in range(20, 22)]
    b.send(*more)
    await b.until(lambda: len(b.rx) == 5, "frames after the fetch errors")
    await b.idle()
    b.check("frames received", b.rx, frames + more)
    await b.check_counters(rx_frames=5, rx_to_host=5, tx_frames=1, tx_bad_descriptor=1,
                           commands=2)
    b.finish()


@cocotb.test()
async def test_bad_doorbells(dut):
    """Doorbells past the ring, doorbells taking entries back, the event consumer past the
    producer, a ring size out of range: refused, counted, reported; the rings keep working."""
    b = Bench(dut)
    await b.start(rx_log2=3, tx_log2=3, command_log2=3, event_log2=4)
    bad_doorbell = EventCode.BAD_DOORBELL.value
    refused = 0

    async def refuse(name, value, ring, want_reg=None, code=bad_doorbell):
        """Write ``value`` to ``name``: refused, the register reads ``want_reg`` (default: its
        value before) at once, one ERROR event."""
        nonlocal refused
        mark = len(b.events)
        before = await b.reg(name)
        await b.bus.write32(_reg(name), value)
        refused += 1
        await b.check_reg(name, before if want_reg is None else want_reg)
        await b.until(lambda: len(b.events) > mark, f"ERROR event for {name} = {value:#x}")
        await b.quiet(100)
        b.check_events(mark, [{"kind": ERROR, "ring": ring.value, "code": code,
                               "detail": value & 0x7FFF_FFFF, "length": 0, "tag": 0}])

    await b.check_reg("RX_PRODUCER", 7)
    await refuse("RX_PRODUCER", 8, RingId.RX)                   # = size
    await refuse("RX_PRODUCER", 0x1000_0003, RingId.RX)         # far past the ring
    await refuse("RX_PRODUCER", 5, RingId.RX)                   # takes back 2 posted buffers
    await refuse("TX_PRODUCER", 9, RingId.TX)
    await refuse("COMMAND_PRODUCER", 0xFFFF_FFFF, RingId.COMMAND)
    produced = await b.reg("EVENT_PRODUCER")
    await b.check_reg("EVENT_CONSUMER", produced)
    # The refusal itself writes one more event: EVENT_PRODUCER moves, the consumer must not.
    await refuse("EVENT_CONSUMER", (produced + 2) % 16, RingId.EVENT)
    await refuse("EVENT_CONSUMER", 16, RingId.EVENT)
    # RING_LOG2_SIZE out of range: BAD_RING_SIZE, the ring is off (regmap: "ring off").
    await refuse("TX_LOG2_SIZE", 13, RingId.TX, 0, EventCode.BAD_RING_SIZE.value)
    await b.check_reg("TX_CONSUMER", 0)

    # The rings still work: the TX ring set up again, frames both ways.
    await b.bus.write32(_reg("TX_LOG2_SIZE"), 3)
    b.drv._rings[RingId.TX].index = 0
    out = tcp_frame(40, 60)
    await b.drv.send(out)
    frames = [tcp_frame(n) for n in range(2)]
    b.send(*frames)
    await b.until(lambda: len(b.rx) == 2 and len(b.tx) == 1, "traffic after the bad doorbells")
    await b.idle()
    b.check("frames received", b.rx, frames)
    b.check("frames sent", b.tx, [out])
    b.check("driver saw the ERROR events", len(b.drv.stats.errors), refused)
    await b.check_counters(bad_doorbells=refused, rx_frames=2, rx_to_host=2, tx_frames=1)
    b.finish()


@cocotb.test()
async def test_event_ring_full(dut):
    """The host stops taking events: events wait inside the NIC while its units go on, so every
    posted buffer is filled and frames beyond them are dropped and counted; the MAC is never
    stalled; once the host takes events again, the waiting events come out in order and traffic
    resumes."""
    b = Bench(dut)
    await b.start(event_log2=3, rx_log2=4)      # 7 events fit; 15 RX buffers posted
    frames = [tcp_frame(n) for n in range(20)]
    b.send(*frames)
    await b.until(lambda: b.tb.mac.idle, "frames sent", service=False)
    await b.quiet(1500, service=False)
    await b.check_reg("EVENT_PRODUCER", 7)
    await b.check_reg("EVENT_CONSUMER", 0)
    await b.check_reg("RX_CONSUMER", 15)
    got = await b.drv.counters()
    b.check("counters while stalled", {k: got[k] for k in (
        "rx_frames", "rx_to_host", "rx_drop_no_buffer", "rx_drop_overflow", "events")},
        {"rx_frames": 20, "rx_to_host": 15, "rx_drop_no_buffer": 5, "rx_drop_overflow": 0,
         "events": 7})
    # Commands are carried out too; their events wait with the others.
    await b.drv.command(CommandOpcode.NOP, tag=0x400)
    await b.quiet(300, service=False)
    await b.check_reg("COMMAND_CONSUMER", 1)
    b.check("events taken while stalled", b.events, [])

    # The host takes events again: the 8 RX events and the command's come out, then new ones.
    await b.until(lambda: len(b.rx) == 15 and 0x400 in b.drv.command_done, "the held frames")
    more = [tcp_frame(n) for n in range(30, 35)]
    b.send(*more)
    await b.until(lambda: len(b.rx) == 20, "frames after the stall")
    await b.idle()
    b.check("MAC RX stalls", b.tb.mac.rx_stalls, 0)
    b.check("frames received", b.rx, frames[:15] + more)
    b.check("RX events all OK", [e["code"] for e in b.events if e["kind"] == RX], [OK] * 20)
    await b.check_counters(rx_frames=25, rx_to_host=20, rx_drop_no_buffer=5, commands=1)
    b.finish()


@cocotb.test()
async def test_disabled(dut):
    """Frames arriving while CONTROL.ENABLE is 0 are dropped and counted; rings wait; after
    enabling, frames are delivered and waiting TX descriptors go out."""
    b = Bench(dut)
    await b.start(rx_log2=4)
    await b.bus.write32(_reg("CONTROL"), 0)
    await b.check_reg("STATUS", 0)
    frames = [tcp_frame(n) for n in range(5)]
    b.send(*frames)
    out = tcp_frame(60, 100)
    await b.drv.send(out)
    await b.idle()
    await b.quiet(500)
    b.check("events while disabled", b.events, [])
    b.check("frames sent while disabled", b.tx, [])
    await b.check_reg("RX_CONSUMER", 0)
    await b.check_reg("TX_CONSUMER", 0)
    await b.check_counters(rx_frames=5, rx_drop_disabled=5)

    await b.bus.write32(_reg("CONTROL"), regmap.CONTROL_ENABLE)
    await b.check_reg("STATUS", regmap.STATUS_ENABLED)
    more = [tcp_frame(n) for n in range(10, 13)]
    b.send(*more)
    await b.until(lambda: len(b.rx) == 3 and len(b.tx) == 1, "traffic after enabling")
    await b.idle()
    b.check("frames received", b.rx, more)
    b.check("frames sent", b.tx, [out])
    b.check("events", sorted((e["kind"], e["index"], e["code"]) for e in b.events),
            [(RX, 0, OK), (RX, 1, OK), (RX, 2, OK), (TX_DONE, 0, OK)])
    await b.check_counters(rx_frames=8, rx_drop_disabled=5, rx_to_host=3, tx_frames=1)
    b.finish()


@cocotb.test()
async def test_tx_bad_descriptors(dut):
    """TX descriptors with length 0, length > MAX_FRAME_BYTES, odd checksum offsets or a checksum
    field outside the frame: TX_DONE BAD_DESCRIPTOR, never read, never sent; good frames around
    them go out."""
    b = Bench(dut)
    await b.start(tx_log2=4)
    frame = tcp_frame(1, 100)
    bad = [
        (b"", {}),
        (bytes(params.MAX_FRAME_BYTES + 1), {}),
        (frame, {"ip_csum": True, "ip_offset": 15}),
        (frame, {"l4_csum": True, "csum_start": 35, "csum_offset": 16}),
        (frame, {"l4_csum": True, "csum_start": 34, "csum_offset": 17}),
        # Even offsets, fields past the end: an IPv4 header's 20 bytes, the L4 checksum's 2.
        (frame, {"ip_csum": True, "ip_offset": len(frame) - 18}),
        (frame, {"l4_csum": True, "csum_start": 34, "csum_offset": len(frame) - 34}),
    ]
    addrs = []
    for data, options in bad:
        index = await b.drv.send(data, **options)
        addrs.append(b.drv._tx_posted[index])
    good = tcp_frame(2, 64)
    offloaded, options = offload_frame(tcp_frame(3, 333))
    jumbo = bytes(range(256)) * (params.MAX_FRAME_BYTES // 256)
    await b.drv.send(good)
    await b.drv.send(offloaded, **options)
    await b.drv.send(jumbo)                 # exactly MAX_FRAME_BYTES: accepted
    # Good descriptors at the edges of the IPv4 checksum rule (sim/frames.py).
    edges = tx_checksum_edge_cases()
    for _, data, options, _ in edges:
        await b.drv.send(data, **options)
    await b.until(lambda: len(b.tx) == 3 + len(edges), "the good frames", max_cycles=8000)
    await b.quiet(300)
    b.check("frames sent", b.tx, [good, tcp_frame(3, 333), jumbo, *(want for *_, want in edges)])
    b.check_events(0, [
        *({"kind": TX_DONE, "ring": RingId.TX.value, "index": n,
           "code": EventCode.BAD_DESCRIPTOR.value, "length": len(data), "tag": 0, "detail": 0}
          for n, (data, _) in enumerate(bad)),
        *({"kind": TX_DONE, "ring": RingId.TX.value, "index": len(bad) + n, "code": OK,
           "length": len(data), "tag": 0, "detail": 0}
          for n, data in enumerate((good, offloaded, jumbo, *(e[1] for e in edges)))),
    ])
    reads = {t.addr for t in b.dma.transactions if t.kind == "read"}
    b.check("bad descriptors' buffers read", sorted(reads & set(addrs)), [])
    b.check("driver TX errors", dict(b.drv.stats.tx_errors), {"BAD_DESCRIPTOR": len(bad)})
    await b.check_counters(tx_frames=3 + len(edges), tx_bad_descriptor=len(bad))
    b.finish()
