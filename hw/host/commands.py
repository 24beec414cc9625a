"""The command unit: carries out the host's commands from the COMMAND ring, in order.

Ref: docs/host_interface.md ("Commands", "Events").

The COMMAND ring fetcher hands over each entry as a :class:`~hw.layouts.RingEntry`; the unit
answers every one with a ``COMMAND_DONE`` event, in command order, except the fast-path commands
the receive engine answers with an event of its own (INTERLOCK, FLUSH) or none (RCVMDL and
WINUPDATE that were taken: docs/fast_path.md, "Commands"). Three registered stages:

::

    commands ─► DECODE ─► EXECUTE (FSM) ─► COMPLETE ─► events
                (what to     (acts; one      (the event register,
                 do, code)    clock today)    counters)

- **DECODE** turns the entry into a :data:`Decoded` record: the action (:class:`Action`) the
  execute stage takes, the completion code known from the entry alone (``UNKNOWN_OPCODE``,
  ``BAD_RING``, ``DMA_ERROR`` for a fetch error, else ``OK``) and the event's fields. The command
  itself is kept for the actions that need its ``arg``/``addr``.
- **EXECUTE** is the FSM ``command``. ``DISPATCH`` takes a decoded command once the completion
  register is free and, for the actions of today (``COMPLETE``, ``RING_CONTROL``), acts and
  completes in that clock: one command a clock.
- **COMPLETE** is the ``events`` output register; ``count.commands`` (every command, good or bad,
  fetch errors included) and ``count.bad_commands`` (``UNKNOWN_OPCODE``, ``BAD_RING``) pulse as a
  command completes.

``RING_STOP``/``RING_START`` set and clear the ``rx_stop``/``tx_stop`` levels (to the RX and TX
ring fetchers) when they execute, so the ring has stopped before the host can see the command's
event. Any other ring is ``BAD_RING``; any other opcode ``UNKNOWN_OPCODE``; neither changes a thing.

Adding an opcode (the fast-path commands to come: HANDOUT1/2, FLUSH, RCVMDL, WINUPDATE, CLOSE):

1. a value in :class:`~hw.layouts.CommandOpcode`, and an :class:`Action` if none fits;
2. in ``_decode``, map the opcode to the action (and any check that needs only the entry);
3. in ``DISPATCH``, a ``Case`` for the action: act and ``complete()`` in that clock, or go to the
   action's own states (e.g. issue a DMA read and wait for its data, or ask another block and wait
   for its answer), which call ``complete()`` (only while ``out_free``) and go back to
   ``DISPATCH``. Commands behind it wait in DECODE, so completions stay in command order. A DMA
   read client or a request/answer port to another block is added to this component's ports.
"""

from amaranth import Module, Signal
from amaranth.lib import data, enum, stream, wiring
from amaranth.lib.wiring import In, Out

from ..fast_path.layouts import FastAnswer, FastCommand
from ..layouts import (
    Command,
    CommandOpcode,
    Event,
    EventCode,
    EventKind,
    HostCounterPulses,
    RingEntry,
    RingId,
)

__all__ = ["Action", "Decoded", "CommandUnit"]


class Action(enum.Enum, shape=2):
    """What the execute stage does with a decoded command."""
    COMPLETE = 0        # nothing: complete with the decoded code (NOP, a bad command, fetch error)
    RING_CONTROL = 1    # RING_STOP / RING_START of the RX or TX ring
    FAST_PATH = 2       # to the receive engine; its answer says how the command completes


#: A command after DECODE: the action, what it completes with, and the command for the action.
Decoded = data.StructLayout({
    "action": Action,
    "code": 8,              # EventCode known from the entry alone
    "bad": 1,               # counts in bad_commands
    "stop": 1,              # RING_CONTROL: stop (1) or start (0)
    "tx": 1,                # RING_CONTROL: the TX ring (else RX)
    "index": 16,            # the event's index, tag and detail
    "tag": 32,
    "detail": 31,
    "command": Command,
})


class CommandUnit(wiring.Component):
    """Carries out commands and answers each with a ``COMMAND_DONE`` event, in order.

    Members
    -------
    commands : In(stream.Signature(RingEntry))
        COMMAND ring entries from the ring fetcher; ``error``: the fetch failed (``DMA_ERROR``,
        tag 0, detail = the entry's address bits 30:0).
    events : Out(stream.Signature(Event))
        ``COMMAND_DONE`` events (ring COMMAND, the entry's index, tag, detail = opcode), registered.
    rx_stop, tx_stop : Out(1)
        Levels for the RX and TX ring fetchers' ``stop``: set by ``RING_STOP``, cleared by
        ``RING_START``.
    fast_path : Out(stream.Signature(FastCommand))
        HANDOUT1, HANDOUT2, RCVMDL, WINUPDATE, FLUSH and CLOSE, to the receive engine, one at a
        time.
    fast_answer : In(stream.Signature(FastAnswer))
        The engine's answer to each: ``COMMAND_DONE`` with its code when ``event``; else the
        engine posts the command's event itself (or none), and the command only counts.
    count : Out(HostCounterPulses)
        ``commands`` and ``bad_commands`` are driven.
    """

    commands: In(stream.Signature(RingEntry))
    events: Out(stream.Signature(Event))
    rx_stop: Out(1)
    tx_stop: Out(1)
    fast_path: Out(stream.Signature(FastCommand))
    fast_answer: In(stream.Signature(FastAnswer))
    count: Out(HostCounterPulses)

    def elaborate(self, platform):
        m = Module()

        # --- DECODE -----------------------------------------------------------------------------
        dec = Signal(Decoded)
        dec_valid = Signal()
        dec_take = Signal()             # EXECUTE takes the decoded command this clock
        m.d.comb += self.commands.ready.eq(~dec_valid | dec_take)
        with m.If(self.commands.ready):
            m.d.sync += dec_valid.eq(self.commands.valid)
            with m.If(self.commands.valid):
                self._decode(m, self.commands.payload, dec)

        # --- COMPLETE: the event register and the counters --------------------------------------
        out_free = Signal()
        load = Signal()                 # EXECUTE completes a command this clock
        m.d.comb += out_free.eq(~self.events.valid | self.events.ready)
        # One If/Elif for ``valid``: Amaranth 0.5.10's RTLIL output dropped the ``valid.eq(1)``
        # of ``complete`` below when it sat under the FSM after a separate clearing ``If``
        # (the Python simulator kept it), so the NIC in Icarus never saw a COMMAND_DONE.
        with m.If(load):
            m.d.sync += self.events.valid.eq(1)
        with m.Elif(self.events.valid & self.events.ready):
            m.d.sync += self.events.valid.eq(0)
        m.d.sync += [self.count.commands.eq(0), self.count.bad_commands.eq(0)]

        def complete(code, bad):
            """Load the event of the command in EXECUTE (only while ``out_free``)."""
            m.d.comb += load.eq(1)
            m.d.sync += [
                self.events.payload.kind.eq(EventKind.COMMAND_DONE.value),
                self.events.payload.ring.eq(RingId.COMMAND.value),
                self.events.payload.index.eq(dec.index),
                self.events.payload.code.eq(code),
                self.events.payload.tag.eq(dec.tag),
                self.events.payload.detail.eq(dec.detail),
                self.count.commands.eq(1),
                self.count.bad_commands.eq(bad),
            ]

        # --- EXECUTE ----------------------------------------------------------------------------
        fast = self.fast_path.payload
        m.d.comb += [
            fast.opcode.eq(dec.command.opcode),
            fast.index.eq(dec.index),
            fast.tag.eq(dec.command.tag),
            fast.arg.eq(dec.command.arg),
            fast.addr.eq(dec.command.addr),
        ]
        with m.FSM(name="command"):
            # DISPATCH -- waiting for a decoded command and room for its event; today's actions
            # act and complete here, in one clock.
            with m.State("DISPATCH"):
                with m.If(dec_valid & out_free):
                    m.d.comb += dec_take.eq(1)
                    with m.Switch(dec.action):
                        with m.Case(Action.COMPLETE):
                            complete(dec.code, dec.bad)
                        with m.Case(Action.RING_CONTROL):
                            with m.If(dec.tx):
                                m.d.sync += self.tx_stop.eq(dec.stop)
                            with m.Else():
                                m.d.sync += self.rx_stop.eq(dec.stop)
                            complete(EventCode.OK.value, 0)
                        with m.Case(Action.FAST_PATH):
                            m.d.comb += dec_take.eq(0)
                            m.next = "FAST_PATH"
                        # New actions plug in here (see the module's docstring).
            # FAST_PATH -- the command goes to the receive engine (held in DECODE meanwhile).
            with m.State("FAST_PATH"):
                m.d.comb += self.fast_path.valid.eq(1)
                with m.If(self.fast_path.ready):
                    m.next = "FAST_ANSWER"
            # FAST_ANSWER -- waiting for the engine's answer: COMMAND_DONE, or a count alone.
            with m.State("FAST_ANSWER"):
                answer = self.fast_answer.payload
                with m.If(self.fast_answer.valid & (out_free | ~answer.event)):
                    m.d.comb += [self.fast_answer.ready.eq(1), dec_take.eq(1)]
                    with m.If(answer.event):
                        complete(answer.code, answer.bad)
                    with m.Else():
                        m.d.sync += [self.count.commands.eq(1),
                                     self.count.bad_commands.eq(answer.bad)]
                    m.next = "DISPATCH"
        return m

    @staticmethod
    def _decode(m, entry, dec):
        """Register in ``dec`` what to do with ``entry`` (a RingEntry)."""
        command = data.View(Command, entry.entry)
        is_rx = command.ring == RingId.RX.value
        is_tx = command.ring == RingId.TX.value
        m.d.sync += [
            dec.command.eq(command),
            dec.index.eq(entry.index),
            dec.stop.eq(command.opcode == CommandOpcode.RING_STOP.value),
            dec.tx.eq(is_tx),
            dec.action.eq(Action.COMPLETE),
            dec.code.eq(EventCode.OK.value),
            dec.bad.eq(0),
        ]
        with m.If(entry.error):
            m.d.sync += [
                dec.code.eq(EventCode.DMA_ERROR.value),
                dec.tag.eq(0),
                dec.detail.eq(entry.addr[:31]),
            ]
        with m.Else():
            m.d.sync += [dec.tag.eq(command.tag), dec.detail.eq(command.opcode)]
            with m.Switch(command.opcode):
                with m.Case(CommandOpcode.NOP.value):
                    pass
                with m.Case(CommandOpcode.HANDOUT1.value, CommandOpcode.HANDOUT2.value,
                            CommandOpcode.RCVMDL.value, CommandOpcode.WINUPDATE.value,
                            CommandOpcode.FLUSH.value, CommandOpcode.CLOSE.value):
                    m.d.sync += dec.action.eq(Action.FAST_PATH)
                with m.Case(CommandOpcode.RING_STOP.value, CommandOpcode.RING_START.value):
                    with m.If(is_rx | is_tx):
                        m.d.sync += dec.action.eq(Action.RING_CONTROL)
                    with m.Else():
                        m.d.sync += [dec.code.eq(EventCode.BAD_RING.value), dec.bad.eq(1)]
                with m.Default():
                    m.d.sync += [dec.code.eq(EventCode.UNKNOWN_OPCODE.value), dec.bad.eq(1)]
