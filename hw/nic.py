"""The NIC as it stands: receive sequencer, slow-path receive, transmit, host interface.

Ref: docs/architecture.md, docs/host_interface.md.

::

    mac_rx ─► RxSequencer ─► RxPacketBuffer ─┐                       ┌─► m_axi (DMA, host memory)
                 (status)                    ├─► HostEngine ─────────┤
    mac_tx ◄─ TxFrameBuffer ◄────────────────┘   (rings, events)     │
                                                      ▲              │
    s_axil ─► Registers (BAR0, interrupts) ──────────┘              irq
"""

from amaranth import Module
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from . import params
from .host.axi import AxiLiteSignature, AxiSignature
from .host.engine import HostEngine
from .host.registers import Registers
from .host.rx_buffer import RxPacketBuffer
from .host.tx_buffer import TxFrameBuffer
from .layouts import HostCounters, RingId, RxBeat
from .lib.counters import CounterBank
from .rx_sequencer.sequencer import RxSequencer

__all__ = ["Nic"]


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
        DMA into host memory.
    irq : Out(1)
        Interrupt, level.
    """

    mac_rx: In(stream.Signature(RxBeat))
    mac_tx: Out(stream.Signature(RxBeat))
    s_axil: In(AxiLiteSignature(params.REG_ADDR_WIDTH))
    m_axi: Out(AxiSignature(params.DMA_ADDR_WIDTH, 8 * params.BEAT_BYTES))
    irq: Out(1)

    def elaborate(self, platform):
        m = Module()
        m.submodules.sequencer = seq = RxSequencer()
        m.submodules.rx_buffer = rx_buffer = RxPacketBuffer()
        m.submodules.engine = engine = HostEngine()
        m.submodules.tx_buffer = tx_buffer = TxFrameBuffer()
        m.submodules.registers = regs = Registers()
        m.submodules.counters = counters = CounterBank(HostCounters)

        wiring.connect(m, wiring.flipped(self.mac_rx), seq.i)
        wiring.connect(m, seq.o, rx_buffer.i)
        wiring.connect(m, seq.status, rx_buffer.status)
        wiring.connect(m, rx_buffer.frame, engine.rx_frame)
        wiring.connect(m, rx_buffer.beats, engine.rx_beats)
        wiring.connect(m, tx_buffer.o, wiring.flipped(self.mac_tx))
        wiring.connect(m, wiring.flipped(self.s_axil), regs.bus)
        wiring.connect(m, engine.axi, wiring.flipped(self.m_axi))
        wiring.connect(m, regs.reg_error, engine.reg_error)

        m.d.comb += [
            self.irq.eq(regs.irq),
            seq.rss_key_we.eq(regs.rss_key_we),
            seq.rss_key_addr.eq(regs.rss_key_addr),
            seq.rss_key_data.eq(regs.rss_key_data),
            seq.counters_clear.eq(regs.counters_clear),
            counters.clear.eq(regs.counters_clear),
            regs.rx_counters.eq(seq.counters),
            regs.host_counters.eq(counters.counters),

            engine.enable.eq(regs.enable),
            regs.event_written.eq(engine.event_written),
            regs.event_write_failed.eq(engine.event_write_failed),

            rx_buffer.enable.eq(regs.enable),
            rx_buffer.running.eq(engine.rx_running),
            rx_buffer.posted.eq(engine.rx_posted),
            rx_buffer.consume.eq(engine.rx_consume),

            tx_buffer.w_data.eq(engine.tx_w_data),
            tx_buffer.w_en.eq(engine.tx_w_en),
            tx_buffer.w_abort.eq(engine.tx_w_abort),
            tx_buffer.w_commit.eq(engine.tx_w_commit),
            tx_buffer.w_frame.eq(engine.tx_w_frame),
            engine.tx_w_free.eq(tx_buffer.w_free),
            engine.tx_w_frame_room.eq(tx_buffer.w_frame_room),
        ]
        for ring in RingId:
            r = ring.value
            m.d.comb += [
                engine.ring_base[r].eq(regs.ring_base[r]),
                engine.ring_log2_size[r].eq(regs.ring_log2_size[r]),
                engine.ring_reset[r].eq(regs.ring_reset[r]),
                engine.ring_host_index[r].eq(regs.ring_host_index[r]),
                regs.ring_nic_index[r].eq(engine.ring_nic_index[r]),
            ]

        # Counters: the engine's own pulses, plus those of the other blocks.
        m.d.comb += counters.count.eq(engine.count)
        m.d.comb += [
            counters.count.rx_drop_disabled.eq(rx_buffer.drop_disabled),
            counters.count.rx_drop_no_buffer.eq(rx_buffer.drop_no_buffer),
            counters.count.rx_drop_overflow.eq(rx_buffer.drop_overflow),
            counters.count.rx_drop_oversize.eq(rx_buffer.drop_oversize),
            counters.count.tx_frames.eq(tx_buffer.sent),
            counters.count.bad_doorbells.eq(regs.bad_doorbell),
            counters.count.interrupts.eq(regs.interrupt_raised),
        ]
        return m
