"""The DMA engine: works the four rings in host memory through one AXI4 manager.

Ref: docs/host_interface.md (rings, events, receive, transmit, commands, DMA).

One job at a time, each a short sequence of AXI transfers ending in one event:

- **RX**: fetch the RX descriptor; write the frame's status word (72 bytes) and the frame from the
  packet buffer into the host buffer; event ``RX``.
- **TX**: fetch the TX descriptor; read the frame into the TX staging buffer, computing its
  checksums on the way; event ``TX_DONE``. The frame then leaves on its own.
- **Command**: fetch the command, carry it out; event ``COMMAND_DONE``.
- **Error**: a refused register write; event ``ERROR``.

A job starts only when the event ring has a free slot, so every job can end with its event. RX,
TX and commands take turns (round robin); refused register writes go first. Transfers are INCR
bursts of at most ``DMA_MAX_BURST_BEATS``, never across a 4 KB boundary, one outstanding at a time.
"""

from amaranth import Cat, Const, Module, Mux, Signal
from amaranth.lib import data, enum, stream, wiring
from amaranth.lib.fifo import SyncFIFO
from amaranth.lib.wiring import In, Out

from .. import params
from ..layouts import (
    Command,
    CommandOpcode,
    Event,
    EventCode,
    EventKind,
    HostCounterPulses,
    RegisterError,
    RingId,
    RxBufferedFrame,
    RxDescriptor,
    RxStatus,
    TxBufferedFrame,
    TxDescriptor,
)
from ..lib.checksum import ChecksumAccumulator, bytes_from
from ..params import RING_INDEX_BITS
from .axi import AxiSignature, Burst, Resp

__all__ = ["HostEngine"]

_HEADER_BEATS = params.RX_BUFFER_HEADER_BYTES // params.BEAT_BYTES
_STATUS_BITS = RxStatus.as_shape().size
_ENTRY_BITS = 8 * params.RING_ENTRY_BYTES
#: ``Event.phase``: the engine keeps it and sets it as the event is written.
_EVENT_PHASE_BIT = data.Layout.cast(Event)["phase"].offset
_BEAT_SIZE = (params.BEAT_BYTES - 1).bit_length()        # AxSIZE: bytes per beat = 2**size
_MAX_READS = 8          # read bursts outstanding at once
_MAX_WRITES = 8         # write bursts waiting for their response at once
_CACHE_ENTRIES = 4      # ring entries fetched ahead, per ring


def _burst_plan(m, addr, left, name):
    """The next burst's length: what is left, at most DMA_MAX_BURST_BEATS, ending at 4 KB."""
    width = range(params.DMA_MAX_BURST_BEATS + 1)
    to_4k = Signal(10, name=f"{name}_to_4k")
    capped = Signal(width, name=f"{name}_capped")
    plan = Signal(width, name=name)
    m.d.comb += [
        to_4k.eq((4096 - addr[:12]) >> _BEAT_SIZE),
        capped.eq(Mux(left < params.DMA_MAX_BURST_BEATS, left, params.DMA_MAX_BURST_BEATS)),
        plan.eq(Mux(to_4k < capped, to_4k, capped)),
    ]
    return plan


class _Job(enum.Enum, shape=2):
    RX = 0
    TX = 1
    COMMAND = 2
    ERROR = 3


class _Source(enum.Enum, shape=1):
    """What feeds the write data channel."""
    EVENT = 0
    RX = 1


class HostEngine(wiring.Component):
    """Members
    -------
    axi : Out(AxiSignature)
        DMA into host memory.
    enable : In(1)
        CONTROL.ENABLE: no new job starts while 0.
    ring_base, ring_log2_size, ring_reset, ring_host_index : In, arrays by RingId
        From the register target.
    ring_nic_index : Out, array by RingId
        The NIC's index of each ring: consumer of COMMAND/RX/TX, producer of EVENT.
    reg_error : In(stream.Signature(RegisterError))
        Refused register writes to report.
    event_written, event_write_failed : Out(1)
        Pulses, to the interrupt moderation and the STATUS register.
    rx_frame, rx_beats, rx_consume : from/to the receive packet buffer.
    rx_posted, rx_running : Out
        Posted RX buffers not yet used; RX ring configured and not stopped.
    tx_* : to the TX staging buffer.
    count : Out(HostCounterPulses)
        The counters this engine advances.
    """

    def __init__(self):
        index = RING_INDEX_BITS
        super().__init__({
            "axi": Out(AxiSignature(params.DMA_ADDR_WIDTH, 8 * params.BEAT_BYTES)),
            "enable": In(1),
            "ring_base": In(64).array(4),
            "ring_log2_size": In(4).array(4),
            "ring_reset": In(1).array(4),
            "ring_host_index": In(index).array(4),
            "ring_nic_index": Out(index).array(4),
            "reg_error": In(stream.Signature(RegisterError)),
            "event_written": Out(1),
            "event_write_failed": Out(1),
            "rx_frame": In(stream.Signature(RxBufferedFrame)),
            "rx_beats": In(stream.Signature(64)),
            "rx_consume": Out(1),
            "rx_posted": Out(index + 1),
            "rx_running": Out(1),
            "tx_w_data": Out(64),
            "tx_w_en": Out(1),
            "tx_w_abort": Out(1),
            "tx_w_commit": Out(1),
            "tx_w_frame": Out(TxBufferedFrame),
            "tx_w_free": In(range(params.TX_BUFFER_BYTES // params.BEAT_BYTES + 1)),
            "tx_w_frame_room": In(1),
            "count": Out(HostCounterPulses),
        })

    def elaborate(self, platform):
        m = Module()
        axi = self.axi
        beat_bytes = params.BEAT_BYTES

        # --- Rings -------------------------------------------------------------------------------
        nic_index = [Signal(RING_INDEX_BITS, name=f"nic_index_{ring.name.lower()}")
                     for ring in RingId]
        mask = [Signal(RING_INDEX_BITS, name=f"ring_mask_{ring.name.lower()}") for ring in RingId]
        posted = [Signal(RING_INDEX_BITS, name=f"posted_{ring.name.lower()}") for ring in RingId]
        advance = [Signal(name=f"advance_{ring.name.lower()}") for ring in RingId]
        for r in range(4):
            log2 = self.ring_log2_size[r]
            nic_next = Signal(RING_INDEX_BITS, name=f"nic_index_next_{RingId(r).name.lower()}")
            m.d.comb += [
                # 2**log2 - 1 as a thermometer code: one LUT a bit, no shifter and subtractor.
                mask[r].eq(Cat(*(log2 > i for i in range(RING_INDEX_BITS)))),
                self.ring_nic_index[r].eq(nic_index[r]),
            ]
            # ``posted`` is a register (it feeds the RX admission and the job choice, both long
            # paths): computed for the NIC's next index, so an entry taken is never counted a
            # clock too long; the host's index is a clock old, which only delays a doorbell. Both
            # candidates come from flip-flops; ``advance`` (late, from the FSM) only selects.
            posted_now = Signal(RING_INDEX_BITS, name=f"posted_now_{RingId(r).name.lower()}")
            posted_less = Signal(RING_INDEX_BITS, name=f"posted_less_{RingId(r).name.lower()}")
            m.d.comb += [
                posted_now.eq((self.ring_host_index[r] - nic_index[r]) & mask[r]),
                posted_less.eq((self.ring_host_index[r] - nic_index[r] - 1) & mask[r]),
            ]
            with m.If(self.ring_reset[r]):
                m.d.comb += nic_next.eq(0)
                m.d.sync += posted[r].eq(0)
            with m.Elif(advance[r]):
                m.d.comb += nic_next.eq((nic_index[r] + 1) & mask[r])
                m.d.sync += posted[r].eq(posted_less)
            with m.Else():
                m.d.comb += nic_next.eq(nic_index[r])
                m.d.sync += posted[r].eq(posted_now)
            m.d.sync += nic_index[r].eq(nic_next)
        ev = RingId.EVENT.value
        event_phase = Signal(init=1)
        with m.If(self.ring_reset[ev]):
            m.d.sync += event_phase.eq(1)
        with m.Elif(advance[ev] & (nic_index[ev] == mask[ev])):
            m.d.sync += event_phase.eq(~event_phase)
        # The event ring has a free slot: the producer may move without reaching the consumer.
        event_room = Signal()
        m.d.comb += event_room.eq((self.ring_log2_size[ev] != 0)
                                  & (((nic_index[ev] + 1) & mask[ev]) != self.ring_host_index[ev]))

        rx_stopped = Signal()
        tx_stopped = Signal()
        m.d.comb += [
            self.rx_posted.eq(posted[RingId.RX.value]),
            self.rx_running.eq((self.ring_log2_size[RingId.RX.value] != 0) & ~rx_stopped),
        ]

        # --- AXI manager ------------------------------------------------------------------------
        # Writes: one burst at a time on AW/W; their B responses come back while the engine goes
        # on (posted, as PCIe writes are): a FIFO remembers what each outstanding burst was.
        # Reads: a frame's bursts are all requested at once (up to _MAX_READS outstanding), their
        # data taken in order as it comes back (one ID, so in order).
        dma_addr = Signal(64)           # write: next beat's address
        dma_left = Signal(14)           # beats still to write / to receive in this operation
        burst_len = Signal(range(params.DMA_MAX_BURST_BEATS + 1))
        burst_left = Signal.like(burst_len)
        ar_addr = Signal(64)            # read: next burst's address
        ar_left = Signal(14)            # beats not yet requested
        reads_out = Signal(range(_MAX_READS + 1))
        dma_error = Signal()            # an error response in this job's transfers
        dma_error_addr = Signal(32)
        w_plan = _burst_plan(m, dma_addr, dma_left, "w_plan")
        # The read burst plan is registered: it is computed from ``ar_addr``/``ar_left`` of the
        # clock before, so AR waits a clock (``ar_stale``) after either changes.
        ar_plan_now = _burst_plan(m, ar_addr, ar_left, "ar_plan_now")
        ar_plan = Signal.like(ar_plan_now)
        ar_stale = Signal()
        ar_ok = Signal()
        m.d.sync += [ar_plan.eq(ar_plan_now), ar_stale.eq(0)]
        m.d.comb += ar_ok.eq((ar_left != 0) & ~ar_stale & (reads_out < _MAX_READS))
        m.d.comb += [
            axi.awaddr.eq(dma_addr),
            axi.awlen.eq(burst_len - 1),
            axi.awsize.eq(_BEAT_SIZE),
            axi.awburst.eq(Burst.INCR),
            axi.araddr.eq(ar_addr),
            axi.arlen.eq(ar_plan - 1),
            axi.arsize.eq(_BEAT_SIZE),
            axi.arburst.eq(Burst.INCR),
            axi.wlast.eq(burst_left == 1),
        ]
        ar_take = Signal()
        m.d.comb += ar_take.eq(axi.arvalid & axi.arready)
        with m.If(ar_take):
            m.d.sync += [
                ar_addr.eq(ar_addr + (ar_plan << _BEAT_SIZE)),
                ar_left.eq(ar_left - ar_plan),
                ar_stale.eq(1),
            ]
        r_burst_end = Signal()
        m.d.comb += r_burst_end.eq(axi.rvalid & axi.rready & axi.rlast)
        m.d.sync += reads_out.eq(reads_out + ar_take - r_burst_end)

        # Outstanding write bursts: (is an event write, low address bits) per AW, popped per B.
        b_record = data.StructLayout({"event": 1, "addr": 32})
        m.submodules.b_fifo = b_fifo = SyncFIFO(width=b_record.size, depth=_MAX_WRITES)
        b_in = data.View(b_record, b_fifo.w_data)
        b_out = data.View(b_record, b_fifo.r_data)
        m.d.comb += [
            b_in.addr.eq(dma_addr[:32]),
            b_fifo.w_en.eq(axi.awvalid & axi.awready),
            axi.bready.eq(1),
            b_fifo.r_en.eq(axi.bvalid),
        ]
        writes_done = Signal()          # no write burst waits for its response
        m.d.comb += writes_done.eq(~b_fifo.r_rdy)
        with m.If(axi.bvalid & (axi.bresp != Resp.OKAY)):
            m.d.comb += self.count.dma_errors.eq(1)
            with m.If(b_out.event):
                m.d.comb += self.event_write_failed.eq(1)
            with m.Else():
                with m.If(~dma_error):
                    m.d.sync += dma_error_addr.eq(b_out.addr)
                m.d.sync += dma_error.eq(1)

        # --- Job state ---------------------------------------------------------------------------
        job = Signal(_Job)
        entry = Signal(_ENTRY_BITS)     # the fetched descriptor / command
        rx_desc = data.View(RxDescriptor, entry)
        tx_desc = data.View(TxDescriptor, entry)
        command = data.View(Command, entry)
        event = Signal(Event)           # the event this job ends with (phase added on writing)
        source = Signal(_Source)
        beat_index = Signal(14)         # beats of the operation done so far
        rr_last = Signal(2)             # round robin: the job kind served last

        m.d.comb += b_in.event.eq(source == _Source.EVENT)

        rx = self.rx_frame.payload
        rx_ring, tx_ring, cmd_ring = RingId.RX.value, RingId.TX.value, RingId.COMMAND.value

        # Write data: the event (2 beats) or an RX buffer (header beats, then frame beats).
        event_bits = Signal(_ENTRY_BITS)
        m.d.comb += event_bits.eq(event.as_value())
        m.d.comb += event_bits[_EVENT_PHASE_BIT].eq(event_phase)
        header_bits = Cat(rx.status.as_value(), Const(0, 64 * _HEADER_BEATS - _STATUS_BITS))
        frame_bytes_left = Signal(15)                   # bytes of the frame not yet written
        w_valid = Signal()
        w_data = Signal(64)
        w_strb = Signal(8)
        w_frame_beat = Signal()
        # beat_index < _HEADER_BEATS as LUTs (a zero test and a 4-bit compare), not a carry chain:
        # it decides wvalid, whose handshake enables the address, count and index registers.
        assert _HEADER_BEATS == 9
        in_header = Signal()
        m.d.comb += in_header.eq((beat_index[4:] == 0)
                                 & ~(beat_index[3] & (beat_index[:3] != 0)))
        with m.If(source == _Source.EVENT):
            m.d.comb += [
                w_valid.eq(1),
                w_data.eq(Mux(beat_index[0], event_bits[64:], event_bits[:64])),
                w_strb.eq(0xFF),
            ]
        with m.Elif(in_header):
            with m.Switch(beat_index):
                for k in range(_HEADER_BEATS):
                    with m.Case(k):
                        m.d.comb += w_data.eq(header_bits[64 * k:64 * k + 64])
            m.d.comb += [w_valid.eq(1), w_strb.eq(0xFF)]
        with m.Else():
            m.d.comb += [
                w_frame_beat.eq(1),
                w_valid.eq(self.rx_beats.valid),
                w_data.eq(self.rx_beats.payload),
                w_strb.eq(~bytes_from(frame_bytes_left.as_signed())),
            ]
        m.d.comb += [
            axi.wdata.eq(w_data),
            axi.wstrb.eq(w_strb),
        ]
        w_take = Signal()
        m.d.comb += w_take.eq(axi.wvalid & axi.wready)

        # TX: frame beats into the staging buffer and the two checksum units.
        m.submodules.ip_sum = ip_sum = ChecksumAccumulator()
        m.submodules.l4_sum = l4_sum = ChecksumAccumulator()
        tx_len = tx_desc.length
        # Decoded from ``entry`` into registers: valid from the clock after ``entry`` is written
        # (the DECODE state), then steady for the whole job.
        tx_beats = Signal(12)
        tx_beats_less_one = Signal(12)
        m.d.sync += [
            tx_beats.eq((tx_len + beat_bytes - 1) >> _BEAT_SIZE),
            tx_beats_less_one.eq(((tx_len + beat_bytes - 1) >> _BEAT_SIZE) - 1),
        ]
        ip_end = Signal(16)             # IPv4 header end, from its IHL once that beat has passed
        ip_end_known = Signal()
        r_take = Signal()
        m.d.comb += r_take.eq(axi.rvalid & axi.rready)
        beat_offset = Signal(16)
        m.d.comb += beat_offset.eq(beat_index << _BEAT_SIZE)
        in_frame = ~bytes_from((tx_len - beat_offset).as_signed())
        ip_start = bytes_from((tx_desc.ip_offset - beat_offset).as_signed())
        ip_stop = Mux(ip_end_known, ~bytes_from((ip_end - beat_offset).as_signed()), 0xFF)
        l4_start = bytes_from((tx_desc.csum_start - beat_offset).as_signed())
        ihl_byte = Signal(8)
        with m.Switch(tx_desc.ip_offset[:_BEAT_SIZE]):
            for i in range(beat_bytes):
                with m.Case(i):
                    m.d.comb += ihl_byte.eq(axi.rdata[8 * i:8 * i + 8])
        tx_reading = Signal()
        tx_last_beat = Signal()
        m.d.comb += tx_last_beat.eq(beat_index == tx_beats_less_one)
        # The beat and its byte masks are registered on their way into the checksum units: the
        # masks come out of subtractions and compares, the units start with an adder tree.
        sum_data = Signal(64)
        sum_ip_mask = Signal(beat_bytes)
        sum_l4_mask = Signal(beat_bytes)
        sum_last = Signal()
        sum_valid = Signal()
        m.d.sync += [
            sum_data.eq(axi.rdata),
            sum_ip_mask.eq(ip_start & ip_stop & in_frame & tx_desc.ip_csum.replicate(8)),
            sum_l4_mask.eq(l4_start & in_frame & tx_desc.l4_csum.replicate(8)),
            sum_last.eq(tx_last_beat),
            sum_valid.eq(tx_reading & r_take),
        ]
        m.d.comb += [
            ip_sum.data.eq(sum_data),
            ip_sum.mask.eq(sum_ip_mask),
            ip_sum.last.eq(sum_last),
            ip_sum.valid.eq(sum_valid),
            l4_sum.data.eq(sum_data),
            l4_sum.mask.eq(sum_l4_mask),
            l4_sum.last.eq(sum_last),
            l4_sum.valid.eq(sum_valid),
            self.tx_w_data.eq(axi.rdata),
            self.tx_w_en.eq(tx_reading & r_take),
        ]
        with m.If(tx_reading & r_take & (tx_desc.ip_offset[_BEAT_SIZE:] == beat_index)):
            m.d.sync += [ip_end.eq(tx_desc.ip_offset + (ihl_byte[:4] << 2)), ip_end_known.eq(1)]

        # The TX frame as committed, checksums filled in.
        l4_value = Signal(16)       # a computed 0 goes out as 0xFFFF (RFC 768; same sum for TCP)
        m.d.comb += l4_value.eq(Mux(l4_sum.sum == 0xFFFF, 0xFFFF, ~l4_sum.sum))
        last_bytes = tx_len[:_BEAT_SIZE]
        m.d.comb += [
            self.tx_w_frame.beats.eq(tx_beats),
            self.tx_w_frame.last_bytes.eq(Mux(last_bytes == 0, beat_bytes, last_bytes)),
            self.tx_w_frame.ip_csum.enable.eq(tx_desc.ip_csum),
            self.tx_w_frame.ip_csum.offset.eq(tx_desc.ip_offset + 10),
            self.tx_w_frame.ip_csum.value.eq(~ip_sum.sum),
            self.tx_w_frame.l4_csum.enable.eq(tx_desc.l4_csum),
            self.tx_w_frame.l4_csum.offset.eq(tx_desc.csum_start + tx_desc.csum_offset),
            self.tx_w_frame.l4_csum.value.eq(l4_value),
        ]
        # Entry checks in two registered steps (DECODE, DECODE2): the sums, then the compares.
        rx_need = Signal(18)            # bytes the RX buffer must hold
        ip_need = Signal(9)             # frame bytes the IPv4 header needs
        l4_need = Signal(10)            # frame bytes the L4 checksum field needs
        m.d.sync += [
            rx_need.eq(params.RX_BUFFER_HEADER_BYTES + rx.status.length),
            ip_need.eq(tx_desc.ip_offset + 20),
            l4_need.eq(tx_desc.csum_start + tx_desc.csum_offset + 2),
        ]
        tx_bad = Signal()
        rx_too_small = Signal()
        m.d.sync += rx_too_small.eq(rx_desc.size < rx_need)
        m.d.sync += tx_bad.eq(
            (tx_len == 0) | (tx_len > params.MAX_FRAME_BYTES)
            | (tx_desc.ip_csum & (tx_desc.ip_offset[0] | (ip_need > tx_len)))
            | (tx_desc.l4_csum & (tx_desc.csum_start[0] | tx_desc.csum_offset[0]
                                  | (l4_need > tx_len))))

        # --- Sequencer ---------------------------------------------------------------------------
        want_rx = Signal()
        want_tx = Signal()
        want_cmd = Signal()
        m.d.comb += [
            want_rx.eq(self.rx_frame.valid & (posted[rx_ring] != 0)),
            want_tx.eq(~tx_stopped & (posted[tx_ring] != 0)),
            want_cmd.eq(posted[cmd_ring] != 0),
        ]

        # Ring-entry caches: a fetch reads up to _CACHE_ENTRIES entries of a ring in one burst
        # (as far as the host has posted, not past the ring's end); later jobs use them without a
        # read. Entries are used, and the consumer index moves, in ring order.
        fetchable = (rx_ring, tx_ring, cmd_ring)
        cache = {r: [Signal(_ENTRY_BITS, name=f"cache_{RingId(r).name.lower()}_{i}")
                     for i in range(_CACHE_ENTRIES)] for r in fetchable}
        cached = {r: Signal(range(_CACHE_ENTRIES + 1), name=f"cached_{RingId(r).name.lower()}")
                  for r in fetchable}
        cache_head = {r: Signal(range(_CACHE_ENTRIES), name=f"cache_head_{RingId(r).name.lower()}")
                      for r in fetchable}
        fetch_ring = Signal(2)
        fetch_count = Signal(range(_CACHE_ENTRIES + 1))
        fetch_good = Signal(range(_CACHE_ENTRIES))      # entries read before the first error
        fetch_n = {}
        for r in fetchable:
            # Entries to the ring's end (mask - nic_index + 1) and posted entries, each capped at
            # _CACHE_ENTRIES, then the smaller: LUTs on the low bits, no carry chain.
            beyond = Signal(RING_INDEX_BITS, name=f"beyond_{RingId(r).name.lower()}")
            to_end = Signal(range(_CACHE_ENTRIES + 1), name=f"to_end_{RingId(r).name.lower()}")
            capped = Signal(range(_CACHE_ENTRIES + 1),
                            name=f"posted_capped_{RingId(r).name.lower()}")
            n = Signal(range(_CACHE_ENTRIES + 1), name=f"fetch_n_{RingId(r).name.lower()}")
            assert _CACHE_ENTRIES == 4
            m.d.comb += [
                beyond.eq(mask[r] & ~nic_index[r]),      # entries after this one (= mask - index)
                to_end.eq(Mux(beyond[2:] != 0, _CACHE_ENTRIES, beyond[:2] + 1)),
                capped.eq(Mux(posted[r][2:] != 0, _CACHE_ENTRIES, posted[r][:2])),
                n.eq(Mux(to_end < capped, to_end, capped)),
            ]
            fetch_n[r] = n

        def start_job(kind):
            # The choice is registered (``job``); START then moves the entry: the round robin
            # does not fan out to the 128 entry bits and the fetch set-up in the same clock.
            m.d.sync += [job.eq(kind), rr_last.eq(kind), dma_error.eq(0), beat_index.eq(0)]
            m.next = "START"

        def take_entry(r):
            with m.If(cached[r] != 0):
                with m.Switch(cache_head[r]):
                    for i in range(_CACHE_ENTRIES):
                        with m.Case(i):
                            m.d.sync += entry.eq(cache[r][i])
                m.d.sync += [cache_head[r].eq(cache_head[r] + 1), cached[r].eq(cached[r] - 1)]
                m.next = "DECODE"
            with m.Else():
                m.d.sync += [
                    ar_addr.eq(Cat(Const(0, 4), self.ring_base[r][4:] + nic_index[r])),
                    ar_left.eq(fetch_n[r] << 1),
                    ar_stale.eq(1),
                    dma_left.eq(fetch_n[r] << 1),
                    fetch_ring.eq(r),
                    fetch_count.eq(fetch_n[r]),
                ]
                with m.If(fetch_n[r] == 0):
                    m.next = "IDLE"         # the ring was reset since the choice
                with m.Else():
                    m.next = "FETCH"

        def start_event(kind, ring, index, code, length=0, tag=0, detail=0):
            m.d.sync += [
                event.kind.eq(kind.value),
                event.ring.eq(ring.value),
                event.index.eq(index),
                event.code.eq(code),
                event.length.eq(length),
                event.tag.eq(tag),
                event.detail.eq(detail),
            ]

        def event_address():
            return Cat(Const(0, 4), self.ring_base[ev][4:] + nic_index[ev])

        with m.FSM(name="engine"):
            with m.State("IDLE"):
                with m.If(self.enable & event_room):
                    with m.If(self.reg_error.valid):
                        error = self.reg_error.payload
                        m.d.comb += self.reg_error.ready.eq(1)
                        start_event(EventKind.ERROR, RingId.COMMAND, 0, error.code,
                                    detail=error.detail)
                        m.d.sync += event.ring.eq(error.ring)
                        m.next = "EVENT"
                    with m.Else():
                        # Round robin among RX (0), TX (1), commands (2), after the last served.
                        order = {0: (1, 2, 0), 1: (2, 0, 1), 2: (0, 1, 2), 3: (0, 1, 2)}
                        wants = (want_rx, want_tx, want_cmd)
                        with m.Switch(rr_last):
                            for last, turn in order.items():
                                with m.Case(last):
                                    first = True
                                    for kind in turn:
                                        cond = m.If if first else m.Elif
                                        first = False
                                        with cond(wants[kind]):
                                            start_job(kind)

            with m.State("START"):
                with m.Switch(job):
                    for kind, r in enumerate(fetchable):
                        with m.Case(kind):
                            take_entry(r)
                    with m.Default():
                        m.next = "IDLE"

            # Fetch ``fetch_count`` entries of ring ``fetch_ring`` into its cache.
            with m.State("FETCH"):
                m.d.comb += [
                    axi.arvalid.eq(ar_ok),
                    axi.rready.eq(1),
                ]
                with m.If(r_take):
                    m.d.sync += [beat_index.eq(beat_index + 1), dma_left.eq(dma_left - 1)]
                    with m.Switch(fetch_ring):
                        for r in fetchable:
                            with m.Case(r):
                                with m.Switch(beat_index[1:3]):
                                    for i in range(_CACHE_ENTRIES):
                                        with m.Case(i):
                                            half = cache[r][i].word_select(beat_index[0], 64)
                                            m.d.sync += half.eq(axi.rdata)
                    with m.If(axi.rresp != Resp.OKAY):
                        with m.If(~dma_error):
                            m.d.sync += fetch_good.eq(beat_index[1:3])
                        m.d.sync += dma_error.eq(1)
                        m.d.comb += self.count.dma_errors.eq(1)
                    with m.If(dma_left == 1):
                        m.next = "FETCHED"
            with m.State("FETCHED"):
                with m.If(dma_error & (fetch_good == 0)):
                    # The first entry could not be read: skip it, say so, go on. (When a later
                    # entry failed, the good ones before it are used; the bad one is fetched
                    # again, first, and skipped then.)
                    fetch_addr = Signal(32)
                    with m.Switch(fetch_ring):
                        for r in fetchable:
                            with m.Case(r):
                                m.d.comb += fetch_addr.eq(
                                    Cat(Const(0, 4), self.ring_base[r][4:] + nic_index[r]))
                    with m.Switch(job):
                        with m.Case(_Job.RX):
                            m.d.comb += advance[rx_ring].eq(1)
                            start_event(EventKind.ERROR, RingId.RX, nic_index[rx_ring],
                                        EventCode.DMA_ERROR.value, detail=fetch_addr)
                        with m.Case(_Job.TX):
                            m.d.comb += [advance[tx_ring].eq(1),
                                         self.count.tx_bad_descriptor.eq(1)]
                            start_event(EventKind.TX_DONE, RingId.TX, nic_index[tx_ring],
                                        EventCode.DMA_ERROR.value, detail=fetch_addr)
                        with m.Default():
                            m.d.comb += [advance[cmd_ring].eq(1), self.count.commands.eq(1)]
                            start_event(EventKind.COMMAND_DONE, RingId.COMMAND,
                                        nic_index[cmd_ring], EventCode.DMA_ERROR.value,
                                        detail=fetch_addr)
                    m.next = "EVENT"
                with m.Else():
                    with m.Switch(fetch_ring):
                        for r in fetchable:
                            with m.Case(r):
                                m.d.sync += [
                                    entry.eq(cache[r][0]),
                                    cache_head[r].eq(1),
                                    cached[r].eq(Mux(dma_error, fetch_good, fetch_count) - 1),
                                ]
                    m.d.sync += dma_error.eq(0)
                    m.next = "DECODE"

            with m.State("DECODE"):
                # tx_beats, rx_need, ip_need and l4_need take the new entry ...
                m.next = "DECODE2"
            with m.State("DECODE2"):
                # ... then tx_bad and rx_too_small.
                m.next = "DISPATCH"
            with m.State("DISPATCH"):
                with m.If(job == _Job.RX):
                    with m.If(rx_too_small):
                        m.d.sync += beat_index.eq(0)
                        m.next = "RX_DRAIN"
                    with m.Else():
                        m.d.sync += [
                            dma_addr.eq(Cat(Const(0, _BEAT_SIZE), rx_desc.addr[_BEAT_SIZE:])),
                            dma_left.eq(_HEADER_BEATS + rx.beats),
                            dma_error.eq(0),
                            beat_index.eq(0),
                            source.eq(_Source.RX),
                            frame_bytes_left.eq(rx.status.length),
                        ]
                        m.next = "W_PLAN"
                with m.Elif(job == _Job.TX):
                    with m.If(tx_bad):
                        m.d.comb += [advance[tx_ring].eq(1), self.count.tx_bad_descriptor.eq(1)]
                        start_event(EventKind.TX_DONE, RingId.TX, nic_index[tx_ring],
                                    EventCode.BAD_DESCRIPTOR.value, length=tx_len)
                        m.next = "EVENT"
                    with m.Elif((self.tx_w_free >= tx_beats) & self.tx_w_frame_room):
                        m.d.sync += [
                            ar_addr.eq(Cat(Const(0, _BEAT_SIZE), tx_desc.addr[_BEAT_SIZE:])),
                            ar_left.eq(tx_beats),
                            ar_stale.eq(1),
                            dma_left.eq(tx_beats),
                            beat_index.eq(0),
                            ip_end_known.eq(0),
                        ]
                        m.next = "R_DATA"
                with m.Else():
                    m.d.comb += [advance[cmd_ring].eq(1), self.count.commands.eq(1)]
                    code = Signal(8)
                    ring_ok = (command.ring == RingId.RX.value) | (command.ring == RingId.TX.value)
                    with m.Switch(command.opcode):
                        with m.Case(CommandOpcode.NOP.value):
                            m.d.comb += code.eq(EventCode.OK.value)
                        with m.Case(CommandOpcode.RING_STOP.value, CommandOpcode.RING_START.value):
                            stop = command.opcode == CommandOpcode.RING_STOP.value
                            with m.If(ring_ok):
                                m.d.comb += code.eq(EventCode.OK.value)
                                with m.If(command.ring == RingId.RX.value):
                                    m.d.sync += rx_stopped.eq(stop)
                                with m.Else():
                                    m.d.sync += tx_stopped.eq(stop)
                            with m.Else():
                                m.d.comb += code.eq(EventCode.BAD_RING.value)
                        with m.Default():
                            m.d.comb += code.eq(EventCode.UNKNOWN_OPCODE.value)
                    with m.If(code != EventCode.OK.value):
                        m.d.comb += self.count.bad_commands.eq(1)
                    start_event(EventKind.COMMAND_DONE, RingId.COMMAND, nic_index[cmd_ring],
                                code, tag=command.tag, detail=command.opcode)
                    m.next = "EVENT"

            # RX buffer too small: the frame leaves the packet buffer unwritten.
            with m.State("RX_DRAIN"):
                m.d.comb += self.rx_beats.ready.eq(1)
                with m.If(self.rx_beats.valid):
                    m.d.sync += beat_index.eq(beat_index + 1)
                    with m.If(beat_index == rx.beats - 1):
                        m.d.comb += [
                            self.rx_consume.eq(1),
                            advance[rx_ring].eq(1),
                            self.count.rx_drop_too_small.eq(1),
                        ]
                        start_event(EventKind.RX, RingId.RX, nic_index[rx_ring],
                                    EventCode.BUFFER_TOO_SMALL.value, length=rx.status.length,
                                    tag=rx.status.hash)
                        m.next = "EVENT"

            # Write ``dma_left`` beats from ``source`` at ``dma_addr``, burst by burst.
            with m.State("W_PLAN"):
                m.d.sync += [burst_len.eq(w_plan), burst_left.eq(w_plan)]
                m.next = "W_AW"
            with m.State("W_AW"):
                m.d.comb += axi.awvalid.eq(b_fifo.w_rdy)
                with m.If(axi.awvalid & axi.awready):
                    m.next = "W_DATA"
            with m.State("W_DATA"):
                m.d.comb += [
                    axi.wvalid.eq(w_valid),
                    self.rx_beats.ready.eq(w_frame_beat & axi.wready),
                ]
                with m.If(w_take):
                    m.d.sync += [
                        beat_index.eq(beat_index + 1),
                        burst_left.eq(burst_left - 1),
                        dma_addr.eq(dma_addr + beat_bytes),
                        dma_left.eq(dma_left - 1),
                    ]
                    with m.If(w_frame_beat):
                        m.d.sync += frame_bytes_left.eq(
                            Mux(frame_bytes_left > beat_bytes, frame_bytes_left - beat_bytes, 0))
                    with m.If(burst_left == 1):
                        with m.If(dma_left != 1):
                            m.next = "W_PLAN"
                        with m.Elif(source == _Source.EVENT):
                            # The host may see the event as soon as its last beat is written,
                            # before the response: the producer index must count it by then.
                            m.d.comb += advance[ev].eq(1)
                            m.next = "EVENT_DONE"
                        with m.Else():
                            m.next = "W_END"
            with m.State("W_END"):
                # The RX event must say whether the buffer was written: wait for the responses.
                with m.If(writes_done):
                    m.next = "RX_DONE"

            with m.State("RX_DONE"):
                m.d.comb += [self.rx_consume.eq(1), advance[rx_ring].eq(1)]
                with m.If(dma_error):
                    m.d.comb += self.count.rx_drop_dma_error.eq(1)
                with m.Else():
                    m.d.comb += self.count.rx_to_host.eq(1)
                start_event(EventKind.RX, RingId.RX, nic_index[rx_ring],
                            Mux(dma_error, EventCode.DMA_ERROR.value, EventCode.OK.value),
                            length=rx.status.length, tag=rx.status.hash,
                            detail=Mux(dma_error, dma_error_addr, 0))
                m.next = "EVENT"

            # Read ``dma_left`` beats of a TX frame at ``dma_addr`` into the staging buffer.
            with m.State("R_DATA"):
                m.d.comb += [
                    axi.arvalid.eq(ar_ok),
                    axi.rready.eq(1),
                    tx_reading.eq(1),
                ]
                with m.If(r_take):
                    m.d.sync += [beat_index.eq(beat_index + 1), dma_left.eq(dma_left - 1)]
                    with m.If(axi.rresp != Resp.OKAY):
                        m.d.comb += self.count.dma_errors.eq(1)
                        with m.If(~dma_error):
                            # The failing beat's address (the frame's bits 2:0 are ignored).
                            m.d.sync += dma_error_addr.eq(
                                Cat(Const(0, _BEAT_SIZE), tx_desc.addr[_BEAT_SIZE:32])
                                + (beat_index << _BEAT_SIZE))
                        m.d.sync += dma_error.eq(1)
                    with m.If(dma_left == 1):
                        m.next = "TX_SUM"
            with m.State("TX_SUM"):
                # The checksum units answer a few clocks after the last beat.
                with m.If(l4_sum.sum_valid):
                    m.d.comb += [
                        self.tx_w_commit.eq(~dma_error),
                        self.tx_w_abort.eq(dma_error),
                        advance[tx_ring].eq(1),
                    ]
                    with m.If(dma_error):
                        m.d.comb += self.count.tx_bad_descriptor.eq(1)
                    start_event(EventKind.TX_DONE, RingId.TX, nic_index[tx_ring],
                                Mux(dma_error, EventCode.DMA_ERROR.value, EventCode.OK.value),
                                length=tx_len, detail=Mux(dma_error, dma_error_addr, 0))
                    m.next = "EVENT"

            # Write ``event`` into the next slot of the event ring.
            with m.State("EVENT"):
                m.d.sync += [
                    dma_addr.eq(event_address()),
                    dma_left.eq(2),
                    beat_index.eq(0),
                    source.eq(_Source.EVENT),
                ]
                m.next = "W_PLAN"
            with m.State("EVENT_DONE"):
                m.d.comb += [self.event_written.eq(1), self.count.events.eq(1)]
                m.next = "IDLE"

        # A ring (re)configured forgets what was fetched of it.
        for r in fetchable:
            with m.If(self.ring_reset[r]):
                m.d.sync += cached[r].eq(0)

        return m
