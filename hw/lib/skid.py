"""A stream's output registers with a skid register: ``valid`` and ``payload`` leave from
flip-flops, and the consumer's ``ready`` reaches only these registers.

Why: a block that sends from wide state (a shifting frame, a wide input mux) would otherwise
route the consumer's ``ready`` to every flip-flop of that state, through the consumer's own logic
in the same clock. Here the sender's "may push" is ``~skid_valid``, a flip-flop: ``ready`` only
chooses between the output register and the skid register, and a beat pushed while the consumer
stalls waits in the skid. One beat a clock passes while ``ready`` stays high.
"""

from amaranth import Signal

__all__ = ["SkidOutput"]


class SkidOutput:
    """The output registers of stream ``o`` (a stream interface with ``valid``, ``ready``,
    ``payload``, the block's ``Out`` member), built into module ``m``.

    Attributes
    ----------
    ready : Signal
        The source may push this clock (a flip-flop: the skid register is empty).
    valid : Signal
        Set by the source: push ``payload`` this clock; only while ``ready``.
    payload : Signal
        Set by the source, of ``o.payload``'s shape.
    ready_next : Signal
        What ``ready`` will be after this clock's edge (for a source that registers its own
        decisions a clock ahead).
    """

    def __init__(self, m, name, o):
        shape = o.payload.shape()
        self.ready = Signal(name=f"{name}_ready")
        self.valid = Signal(name=f"{name}_valid")
        self.payload = Signal(shape, name=f"{name}_payload")
        self.ready_next = Signal(name=f"{name}_ready_next")

        out_valid = Signal(name=f"{name}_out_valid")
        out = Signal(shape, name=f"{name}_out", reset_less=True)
        skid_valid = Signal(name=f"{name}_skid_valid")
        skid = Signal(shape, name=f"{name}_skid", reset_less=True)
        m.d.comb += [
            o.valid.eq(out_valid),
            o.payload.eq(out),
            self.ready.eq(~skid_valid),
            self.ready_next.eq((~out_valid | o.ready) | ~(self.valid | skid_valid)),
        ]
        with m.If(~out_valid | o.ready):
            # The output register is free this clock: the skid's beat first (while it holds one
            # the source does not push), else the source's.
            with m.If(skid_valid):
                m.d.sync += [out.eq(skid), skid_valid.eq(0)]
            with m.Else():
                m.d.sync += [out_valid.eq(self.valid), out.eq(self.payload)]
        with m.Elif(self.valid):
            # The consumer stalls: the beat pushed this clock waits in the skid register.
            m.d.sync += [skid.eq(self.payload), skid_valid.eq(1)]
