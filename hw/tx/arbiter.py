"""TX arbiter: whole frames from several sources onto MAC TX, round robin per frame.

Ref: docs/tx_path.md; docs/fast_path.md ("Blocks").

Input 0 is the host TX ring's staging buffer (hw/host/tx_buffer.py), input 1 the ACK builder
(hw/fast_path/ack_builder.py); SYN-ACKs will come as another input. A frame, once its first beat
has passed, holds the output until its last beat: frames are never interleaved.

The rule: between frames the arbiter picks, in the same clock, the first input with a beat waiting
after the one that sent the last frame, that one last (round robin), and passes that beat at once;
during a frame it passes the granted input's beats. So the choice costs no clock: frames leave
back to back, one beat a clock, whether from one input or from several, and with every input busy
each sends one frame in every ``inputs`` consecutive frames. The choice is a few LUTs from the
inputs' ``valid`` (flip-flops in both sources) to their ``ready`` and to the output's data mux;
the output leaves from registers with a skid register (:class:`~hw.lib.skid.SkidOutput`), so
``o.ready`` goes no further than those.
"""

from amaranth import Module, Mux, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from ..layouts import RxBeat
from ..lib.skid import SkidOutput

__all__ = ["TxArbiter"]


class TxArbiter(wiring.Component):
    """Frames of ``inputs`` streams onto one, whole, round robin per frame.

    Parameters
    ----------
    inputs : int
        Sources, at least 1.

    Members
    -------
    i : In(stream.Signature(RxBeat)).array(inputs)
        Frames of each source (``last`` on each frame's final beat); each source's frames leave in
        its order.
    o : Out(stream.Signature(RxBeat))
        The frames, one beat a clock while beats wait and ``o.ready`` is high, back to back
        across frames. ``valid`` and ``payload`` are flip-flops.
    """

    def __init__(self, inputs):
        if isinstance(inputs, bool) or not isinstance(inputs, int):
            raise TypeError(f"inputs must be an int, not {inputs!r}")
        if inputs < 1:
            raise ValueError(f"inputs must be at least 1, not {inputs}")
        self._inputs = inputs
        super().__init__({
            "i": In(stream.Signature(RxBeat)).array(inputs),
            "o": Out(stream.Signature(RxBeat)),
        })

    @property
    def inputs(self):
        return self._inputs

    def elaborate(self, platform):
        m = Module()
        n = self._inputs
        out = SkidOutput(m, "out", self.o)

        in_frame = Signal()             # a frame's first beat has passed, its last not yet
        grant = Signal(range(n))        # the input of the frame passing, or of the last one
        pick = Signal(range(n))         # between frames: the next input, round robin
        sel = Signal(range(n))          # the input whose beat may pass this clock

        # Round robin: the first input with a beat waiting after ``grant``, ``grant`` itself last
        # (the later ``m.d.comb`` assignment of a chain wins, so the chain runs in reverse order).
        with m.Switch(grant):
            for g in range(n):
                with m.Case(g):
                    m.d.comb += pick.eq(g)
                    for k in reversed(range(1, n)):
                        j = (g + k) % n
                        with m.If(self.i[j].valid):
                            m.d.comb += pick.eq(j)
        m.d.comb += sel.eq(Mux(in_frame, grant, pick))

        # The selected input's beat passes when the output can take it.
        sel_valid = Signal()
        with m.Switch(sel):
            for k in range(n):
                with m.Case(k):
                    m.d.comb += [sel_valid.eq(self.i[k].valid), out.payload.eq(self.i[k].payload)]
        for k in range(n):
            m.d.comb += self.i[k].ready.eq(out.ready & (sel == k))
        m.d.comb += out.valid.eq(out.ready & sel_valid)
        with m.If(out.valid):
            m.d.sync += [grant.eq(sel), in_frame.eq(~out.payload.last)]
        return m
