"""SKELETON (being replaced): pass-through with a length-only status word, real ports."""
from amaranth import Module, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from ..layouts import RxBeat, RxStatus


class RxSequencer(wiring.Component):
    i: In(stream.Signature(RxBeat))
    o: Out(stream.Signature(RxBeat))
    status: Out(stream.Signature(RxStatus))
    rss_key_we: In(1)
    rss_key_addr: In(4)
    rss_key_data: In(32)

    def elaborate(self, platform):
        m = Module()
        length = Signal(17)
        with m.If(self.i.valid & self.i.ready):
            m.d.sync += length.eq(length + 8)
            with m.If(self.i.payload.last):
                m.d.sync += length.eq(0)
        m.d.comb += [
            self.o.payload.eq(self.i.payload),
            self.o.valid.eq(self.i.valid),
            self.i.ready.eq(self.o.ready & self.status.ready),
        ]
        m.d.sync += self.status.valid.eq(self.i.valid & self.i.ready & self.i.payload.last)
        m.d.sync += self.status.payload.length.eq(length + 8)
        return m
