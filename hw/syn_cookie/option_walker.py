"""The SYN-cookie unit's TCP option walker: the :class:`SynOptions` of a frame's options area
(docs/syn_cookie.md §2.3 last paragraph, §5.4).

Golden model: ``sim.reference.syn_cookie._parse_tcp_options`` (exactly its result, step budget
included). Formats: ``hw.syn_cookie.layouts`` (``OptionWalkInput``, ``SynOptions``).

The walk, one step a clock, at most ``steps`` (``params.SYN_OPTION_STEPS`` = 8) steps: a step is
one option, or a run of up to ``nop_run`` (4) NOPs. The walk ends at the end of the options
(``length``), at an EOL (kind 0), at a malformed option (no length byte, a length below 2, or one
running past ``length``), or when the steps are spent (options after them are ignored). An option
of a known kind with the wrong length is skipped; an unknown kind is skipped. A later option of a
kind overwrites an earlier one (as the model). The window shift is given as sent (the matcher
caps it at 14; the model gives it capped).

Datapath: the options area sits in a 320-bit register whose byte 0 is always the current
option's first byte: each step shifts it down by the bytes it consumed (the option's length
byte, or the NOP run's 1..4), so every step reads fixed bytes 0..9, never a 40-way read mux. The
shift by an option's length is a 6-level barrel shifter whose select bits are the register's own
byte 1 (flip-flops); the NOP shifts are four fixed wirings; the step's decision (NOP or option,
end or go on) only picks one of the two results. A count of the bytes left (``rem``) replaces the
position.

Ports
-----
i : In(stream.Signature(OptionWalkInput))
    ``i.ready`` is a flip-flop: high while no walk is running.
o : Out(stream.Signature(SynOptions))
    One per input, in order. ``o.valid`` / ``o.payload`` leave from flip-flops (a skid register,
    :class:`hw.lib.skid.SkidOutput`): ``o.ready`` reaches only those registers.

Timing (in clocks, measured by ``tests/unit/test_option_walker.py``): an input accepted on a
clock edge walks on the following edges, one step each (the step that finds the end of the
options, an EOL or a malformed option is a clock too, unless the option before it ended exactly at
``length``: then the walk ends with that option's step). With ``o.ready`` high:

- **Latency:** ``o.valid`` rises ``k`` edges after the edge that accepts an input, ``k`` the
  walk's clocks (1..8): 1 for no options, 5 for Linux's and Windows' SYNs (MSS, SACK-permitted,
  TS, NOP, WS; MSS, NOP, WS, 2 NOPs, SACK-permitted), 8 at most (:attr:`MAX_LATENCY`). The
  input is in the walker for ``1 + k`` clocks: the clock it is offered and accepted in, then
  ``k`` steps; the result is on ``o`` the clock after.
- **Throughput:** one input per ``k + 1`` clocks (the accepting clock, then ``k`` steps;
  ``i.ready`` is high again the clock after the last step): at most 9 clocks per frame, 6 for a
  Linux SYN, more than a 60-byte frame's 8 clocks only for walks of 8 clocks.
"""

from amaranth import Cat, Module, Mux, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from .. import params
from ..lib.skid import SkidOutput
from .layouts import TCP_OPTION_BYTES, OptionWalkInput, SynOptions

__all__ = ["OptionWalker"]

_EOL, _NOP, _MSS, _WSCALE, _SACK_PERMITTED, _TIMESTAMPS = 0, 1, 2, 3, 4, 8


class OptionWalker(wiring.Component):
    """The TCP option walker (module docstring).

    Parameters
    ----------
    steps : int
        The step budget (``params.SYN_OPTION_STEPS``).
    nop_run : int
        The NOPs one step may consume (4, as the model; tests change it to see themselves fail).
    """

    i: In(stream.Signature(OptionWalkInput))
    o: Out(stream.Signature(SynOptions))

    def __init__(self, steps=params.SYN_OPTION_STEPS, nop_run=4):
        assert steps >= 1 and nop_run >= 1
        self.steps = steps
        self.nop_run = nop_run
        #: Edges from the edge that accepts an input to ``o.valid``, at most (``o.ready`` high).
        self.MAX_LATENCY = steps
        super().__init__()

    def elaborate(self, platform):
        m = Module()
        out = SkidOutput(m, "out", self.o)

        busy = Signal()
        buf = Signal(8 * TCP_OPTION_BYTES)          # byte 0: the current option's first byte
        rem = Signal(range(TCP_OPTION_BYTES + 1))    # bytes left from byte 0 on
        step = Signal(range(self.steps))            # steps taken
        found = Signal(SynOptions)                  # what the steps before this one found

        def byte(k):
            return buf[8 * k:8 * k + 8]

        def be(first, count):                       # ``count`` bytes from ``first``, big-endian
            return Cat(*[byte(first + count - 1 - k) for k in range(count)])

        kind, length = byte(0), byte(1)

        # A NOP run: byte k (k < nop_run) belongs to it if bytes 0..k are NOPs inside ``rem``.
        run = [Signal(name=f"run_{k}") for k in range(self.nop_run)]   # run[k]: byte k is in it
        m.d.comb += run[0].eq(1)
        for k in range(1, self.nop_run):
            m.d.comb += run[k].eq(run[k - 1] & (rem > k) & (byte(k) == _NOP))
        run_last = Signal(range(self.nop_run))      # the run's length less 1
        for k in range(1, self.nop_run):
            with m.If(run[k]):
                m.d.comb += run_last.eq(k)

        is_nop = kind == _NOP
        eol = (rem == 0) | (kind == _EOL)
        # No length byte (``rem`` < 2) needs no term of its own: byte 1 is then past the end, and
        # any value of it is below 2 or above ``rem``.
        malformed = (length < 2) | (length > rem)
        last_step = step == self.steps - 1

        # This step's findings over the earlier ones.
        now = Signal(SynOptions)
        m.d.comb += now.eq(found)
        # A known kind of fixed length L is taken when kind and length match and L bytes are
        # left: with the length fixed, "not EOL, not NOP, not malformed" is just ``rem >= L``
        # (constant compares of ``rem``, off the ``length > rem`` compare: timing).
        def take(k, n):
            t = Signal(name=f"take_{k}")
            m.d.comb += t.eq((kind == k) & (length == n) & (rem >= n))
            return t
        with m.If(take(_MSS, 4)):
            m.d.comb += [now.mss_present.eq(1), now.mss.eq(be(2, 2))]
        with m.If(take(_WSCALE, 3)):
            m.d.comb += [now.wscale_present.eq(1), now.wscale.eq(byte(2))]
        with m.If(take(_SACK_PERMITTED, 2)):
            m.d.comb += now.sack_permitted.eq(1)
        with m.If(take(_TIMESTAMPS, 10)):
            m.d.comb += [now.timestamps.eq(1), now.ts_val.eq(be(2, 4)),
                         now.ts_ecr.eq(be(6, 4))]

        # The walk ends with this step: nothing (more) to read, a malformed option, the budget
        # spent, or this step consumes the last byte.
        # A NOP run ends the options when its last byte is the last one: byte k is in the run
        # and ``rem`` is k + 1 (then byte k + 1 is not: it would need ``rem > k + 1``). An OR of
        # the run's own terms, not its length compared.
        nop_end = Signal()
        m.d.comb += nop_end.eq(Cat(*[run[k] & (rem == k + 1) for k in range(self.nop_run)]).any())
        ends = Signal()
        m.d.comb += ends.eq(
            eol | last_step | Mux(is_nop, nop_end, malformed | (length == rem)))

        # The register shifted by the bytes this step consumes: the option's length (6 bits are
        # enough: a length above 40 is malformed and ends the walk), or the NOP run's.
        by_length = Signal(len(buf))
        m.d.comb += by_length.eq(buf >> Cat(0, 0, 0, length[:6]))
        by_run = Signal(len(buf))
        with m.Switch(run_last):
            for k in range(self.nop_run):
                with m.Case(k):
                    m.d.comb += by_run.eq(buf >> (8 * (k + 1)))
        consumed = Mux(is_nop, run_last + 1, length[:6])

        m.d.comb += [
            self.i.ready.eq(~busy),
            out.payload.eq(now),
        ]
        with m.If(busy):
            with m.If(out.ready):
                m.d.sync += [
                    found.eq(now),
                    buf.eq(Mux(is_nop, by_run, by_length)),
                    rem.eq(rem - consumed),
                    step.eq(step + 1),
                ]
                with m.If(ends):
                    m.d.comb += out.valid.eq(1)
                    m.d.sync += busy.eq(0)
        with m.Elif(self.i.valid):
            m.d.sync += [
                busy.eq(1),
                buf.eq(self.i.payload.options),
                rem.eq(self.i.payload.length),
                step.eq(0),
                found.eq(0),
            ]
        return m
