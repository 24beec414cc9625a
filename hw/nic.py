"""The NIC as it stands: receive sequencer, dispatcher and CCB table, slow-path receive, transmit
with the TX arbiter and the ACK builder, host interface. The receive engine (docs/fast_path.md)
comes next: until then every frame takes the slow path and the ACK builder is idle.

Ref: docs/architecture.md, docs/host_interface.md, docs/fast_path.md.

::

    mac_rx ─► RxSequencer ─► RxPacketBuffer ─► Dispatcher ─► RxWriter ─┐ write clients
                                   ▲ reads, frees   │ ▲        ▲ RX entries
                                   └────────────────┼─┼────────┤        │
                                         CcbTable ◄─┘ │        │        │
    s_axil ─► Registers ─┬─ COMMAND ─► RingFetcher ─► CommandUnit       │
       (BAR0, irq)       ├─ RX ──────► RingFetcher ──────────────┘       ├─► DmaManager ─► m_axi
                         ├─ TX ──────► RingFetcher ─► TxReader ─────────┤
                         └─ EVENT ───► EventWriter ◄─ events of all ────┘ read clients: the three
    mac_tx ◄─ TxArbiter ◄─┬─ TxFrameBuffer ◄─ TxReader (frames, checksums)  fetchers, the TX reader
                          └─ AckBuilder

Every unit that moves bytes is a client of the one DMA manager; each ring is one
``RingConfigSignature`` from the register target to the unit that works it.
"""

from amaranth import Module, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from . import params
from .ccb.table import CcbTable
from .dispatch.dispatcher import Dispatcher
from .fast_path.ack_builder import AckBuilder
from .fast_path.engine import ReceiveEngine
from .host.axi import AxiLiteSignature, AxiSignature
from .host.commands import CommandUnit
from .host.dma import DmaManager
from .host.event_writer import EventWriter
from .host.registers import Registers
from .host.rings import RingFetcher
from .host.rx_buffer import RxPacketBuffer
from .host.rx_writer import RxWriter
from .host.tx_buffer import TxFrameBuffer
from .host.tx_reader import TxReader
from .layouts import HostCounterPulses, HostCounters, RingId, RxBeat
from .lib.counters import CounterBank
from .rx_sequencer.sequencer import RxSequencer
from .tx.arbiter import TxArbiter

__all__ = ["Nic", "DMA_READ_CLIENTS", "DMA_WRITE_CLIENTS", "EVENT_SOURCES", "TX_SOURCES"]

#: The DMA manager's clients, in AXI ID order (a client's ID is its index here).
DMA_READ_CLIENTS = ["command_fetcher", "rx_fetcher", "tx_fetcher", "tx_reader", "receive_engine"]
DMA_WRITE_CLIENTS = ["rx_writer", "event_writer", "receive_engine"]
#: The frame sources of MAC TX, in the TX arbiter's input order (round robin per frame).
TX_SOURCES = ["host", "acks"]
#: The units whose events the event writer takes, in its round-robin order (register errors last).
EVENT_SOURCES = ["rx_writer", "tx_reader", "command_unit"]


class Nic(wiring.Component):
    """Members
    -------
    mac_rx : In(stream.Signature(RxBeat))
        Frames from the MAC (no FCS). Ready every clock: frames the NIC cannot keep are dropped
        whole and counted.
    mac_tx : Out(stream.Signature(RxBeat))
        Frames to the MAC.
    s_axil : In(AxiLiteSignature)
        Registers (hw.host.regmap).
    m_axi : Out(AxiSignature)
        DMA into host memory, ``params.DMA_DATA_BITS`` wide.
    irq : Out(1)
        Interrupt, level.
    """

    mac_rx: In(stream.Signature(RxBeat))
    mac_tx: Out(stream.Signature(RxBeat))
    s_axil: In(AxiLiteSignature(params.REG_ADDR_WIDTH))
    m_axi: Out(AxiSignature(params.DMA_ADDR_WIDTH, params.DMA_DATA_BITS, params.DMA_ID_BITS))
    irq: Out(1)

    def elaborate(self, platform):
        m = Module()
        # --- Blocks -------------------------------------------------------------------------------
        m.submodules.sequencer = seq = RxSequencer()
        m.submodules.rx_buffer = rx_buffer = RxPacketBuffer()
        m.submodules.dispatcher = dispatcher = Dispatcher()
        m.submodules.ccb_table = ccb_table = CcbTable(params.FAST_PATH_CONNECTIONS)
        m.submodules.receive_engine = engine = ReceiveEngine(params.FAST_PATH_CONNECTIONS)
        m.submodules.rx_writer = rx_writer = RxWriter()
        m.submodules.tx_reader = tx_reader = TxReader()
        m.submodules.tx_buffer = tx_buffer = TxFrameBuffer()
        m.submodules.ack_builder = ack_builder = AckBuilder()
        m.submodules.tx_arbiter = tx_arbiter = TxArbiter(len(TX_SOURCES))
        m.submodules.command_unit = command_unit = CommandUnit()
        m.submodules.registers = regs = Registers()
        m.submodules.counters = counters = CounterBank(HostCounters)
        fetchers = {}
        for ring in (RingId.COMMAND, RingId.RX, RingId.TX):
            fetchers[ring] = m.submodules[f"{ring.name.lower()}_fetcher"] = RingFetcher()
        m.submodules.event_writer = event_writer = EventWriter(len(EVENT_SOURCES))
        m.submodules.dma = dma = DmaManager(read_clients=len(DMA_READ_CLIENTS),
                                            write_clients=len(DMA_WRITE_CLIENTS))
        units = {"command_fetcher": fetchers[RingId.COMMAND], "rx_fetcher": fetchers[RingId.RX],
                 "tx_fetcher": fetchers[RingId.TX], "tx_reader": tx_reader,
                 "rx_writer": rx_writer, "event_writer": event_writer,
                 "command_unit": command_unit}
        read_ports = {name: units[name].dma for name in DMA_READ_CLIENTS[:-1]}
        read_ports["receive_engine"] = engine.dma_read
        write_ports = {name: units[name].dma for name in DMA_WRITE_CLIENTS[:-1]}
        write_ports["receive_engine"] = engine.dma_write

        # --- Receive: MAC -> sequencer -> packet buffer -> dispatcher -> receive engine ---------
        #     -> RX writer (jobs: frames into RX buffers, payload placement, events)
        wiring.connect(m, wiring.flipped(self.mac_rx), seq.i)
        wiring.connect(m, seq.o, rx_buffer.i)
        wiring.connect(m, seq.status, rx_buffer.status)
        wiring.connect(m, rx_buffer.frame, dispatcher.frames)
        wiring.connect(m, dispatcher.lookup, ccb_table.lookup)
        wiring.connect(m, ccb_table.result, dispatcher.result)
        wiring.connect(m, dispatcher.o, engine.frames)
        wiring.connect(m, engine.table_command, ccb_table.command)
        wiring.connect(m, ccb_table.response, engine.table_response)
        wiring.connect(m, engine.jobs, rx_writer.jobs)
        wiring.connect(m, rx_writer.place_failed, engine.place_failed)
        wiring.connect(m, rx_writer.read, rx_buffer.read)
        wiring.connect(m, rx_buffer.beats, rx_writer.beats)
        wiring.connect(m, rx_writer.free, rx_buffer.free)
        wiring.connect(m, engine.free, rx_buffer.free_fast)
        wiring.connect(m, fetchers[RingId.RX].entries, rx_writer.descriptors)
        m.d.comb += [
            engine.frames_in.eq(dispatcher.frames_in),
            rx_buffer.enable.eq(regs.enable),
            rx_buffer.running.eq(fetchers[RingId.RX].running),
            rx_buffer.posted.eq(fetchers[RingId.RX].posted),
            rx_buffer.release.eq(rx_writer.consume),
            rx_buffer.release_fast.eq(engine.release),
            engine.buffer_short.eq(rx_buffer.short),
            engine.buffer_oldest.eq(rx_buffer.oldest),
            engine.frame_data_written.eq(rx_writer.frame_data),
        ]

        # --- Transmit: TX ring -> TX reader -> staging buffer -> arbiter -> MAC ------------------
        #     and the NIC's own ACKs -> arbiter (the receive engine will feed the ACK builder)
        wiring.connect(m, fetchers[RingId.TX].entries, tx_reader.descriptors)
        wiring.connect(m, tx_reader.buffer, tx_buffer.w)
        wiring.connect(m, tx_buffer.o, tx_arbiter.i[TX_SOURCES.index("host")])
        wiring.connect(m, engine.acks, ack_builder.requests)
        wiring.connect(m, ack_builder.o, tx_arbiter.i[TX_SOURCES.index("acks")])
        wiring.connect(m, tx_arbiter.o, wiring.flipped(self.mac_tx))

        # --- Commands ----------------------------------------------------------------------------
        wiring.connect(m, fetchers[RingId.COMMAND].entries, command_unit.commands)
        wiring.connect(m, command_unit.fast_path, engine.commands)
        wiring.connect(m, engine.answers, command_unit.fast_answer)
        m.d.comb += [
            fetchers[RingId.COMMAND].stop.eq(~regs.enable),
            fetchers[RingId.RX].stop.eq(~regs.enable | command_unit.rx_stop),
            fetchers[RingId.TX].stop.eq(~regs.enable | command_unit.tx_stop),
        ]

        # --- Rings, events, registers ------------------------------------------------------------
        for ring, fetcher in fetchers.items():
            wiring.connect(m, regs.rings[ring.value], fetcher.config)
        wiring.connect(m, regs.rings[RingId.EVENT.value], event_writer.config)
        for source, name in zip(event_writer.sources, EVENT_SOURCES):
            wiring.connect(m, units[name].events, source)
        wiring.connect(m, regs.reg_error, event_writer.reg_error)
        wiring.connect(m, wiring.flipped(self.s_axil), regs.bus)
        m.d.comb += [
            self.irq.eq(regs.irq),
            regs.event_written.eq(event_writer.written),
            regs.event_write_failed.eq(event_writer.write_failed),
            seq.rss_key_we.eq(regs.rss_key_we),
            seq.rss_key_addr.eq(regs.rss_key_addr),
            seq.rss_key_data.eq(regs.rss_key_data),
            seq.counters_clear.eq(regs.counters_clear),
            regs.rx_counters.eq(seq.counters),
            regs.host_counters.eq(counters.counters),
            regs.fast_path_counters.eq(engine.counters),
            engine.clear.eq(regs.counters_clear),
        ]

        # --- DMA ---------------------------------------------------------------------------------
        for port, name in zip(dma.read, DMA_READ_CLIENTS):
            wiring.connect(m, read_ports[name], port)
        for port, name in zip(dma.write, DMA_WRITE_CLIENTS):
            wiring.connect(m, write_ports[name], port)
        wiring.connect(m, dma.axi, wiring.flipped(self.m_axi))

        # --- Counters: each unit drives its own fields of the pulses -----------------------------
        pulses = Signal(HostCounterPulses)
        m.d.comb += pulses.eq(rx_writer.count.as_value() | tx_reader.count.as_value()
                              | command_unit.count.as_value() | event_writer.count.as_value())
        m.d.comb += [
            counters.clear.eq(regs.counters_clear),
            counters.count.eq(pulses),
            counters.count.rx_drop_disabled.eq(rx_buffer.drop_disabled),
            counters.count.rx_drop_no_buffer.eq(rx_buffer.drop_no_buffer),
            counters.count.rx_drop_overflow.eq(rx_buffer.drop_overflow),
            counters.count.rx_drop_oversize.eq(rx_buffer.drop_oversize),
            counters.count.tx_frames.eq(tx_buffer.sent),
            counters.count.bad_doorbells.eq(regs.bad_doorbell),
            counters.count.interrupts.eq(regs.interrupt_raised),
            counters.count.dma_errors.eq(_error_pulses(m, dma.read_errors, dma.write_errors)),
        ]
        return m


def _error_pulses(m, *errors):
    """One pulse a clock for each of ``errors`` (pulses that may coincide): a few pending ones
    are kept and counted in the following clocks, so none is lost."""
    pending = Signal(range(8), name="dma_errors_pending")
    total = Signal(range(8 + len(errors)), name="dma_errors_total")
    pulse = Signal(name="dma_errors_pulse")
    m.d.comb += [total.eq(pending + sum(errors)), pulse.eq(total != 0)]
    m.d.sync += pending.eq(total - pulse)
    return pulse

