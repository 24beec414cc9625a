"""Interrupt moderation: when written events become an ``INTR_STATUS.EVENTS`` interrupt.

The host sets two limits (``INTR_MOD_EVENTS`` and ``INTR_MOD_CYCLES``, docs/host_interface.md
§Interrupts); whichever is reached first fires, and both restart from the next event.
"""

from amaranth import Module, Mux, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

__all__ = ["InterruptModerator"]


class InterruptModerator(wiring.Component):
    """Turns event-written pulses into moderated ``fire`` pulses.

    ``fire`` is high for one clock when either

    * the events written since the last fire reach ``max(mod_events, 1)``: ``fire`` follows the
      event that reaches the count by one clock; or
    * ``mod_cycles`` is not 0 and ``mod_cycles`` clocks have passed since the first event not yet
      signalled: that event in clock ``t`` gives ``fire`` in clock ``t + mod_cycles``.

    Both counts restart after each fire; an event in the clock ``fire`` is high starts the next
    batch. ``mod_events`` and ``mod_cycles`` are registers of the host; a change takes effect one
    clock later (the thresholds are registered so that the compares start from flip-flops).

    Members
    -------
    event_written : In(1)
        One event was written to the event ring this clock.
    mod_events : In(32)
        ``INTR_MOD_EVENTS``: events per interrupt (0 acts as 1).
    mod_cycles : In(32)
        ``INTR_MOD_CYCLES``: clocks from the first waiting event to the interrupt (0 = no timer).
    fire : Out(1)
        Set ``INTR_STATUS.EVENTS``.
    """

    event_written: In(1)
    mod_events: In(32)
    mod_cycles: In(32)
    fire: Out(1)

    def elaborate(self, platform):
        m = Module()

        # Thresholds less one, registered: the compares below then start from flip-flops and need
        # no subtractor in front of them.
        events_less_one = Signal(32)
        cycles_less_one = Signal(32, init=2 ** 32 - 1)
        timer_on = Signal()
        m.d.sync += [
            events_less_one.eq(Mux(self.mod_events == 0, 0, self.mod_events - 1)),
            cycles_less_one.eq(self.mod_cycles - 1),
            timer_on.eq(self.mod_cycles != 0),
        ]

        count = Signal(32)      # events written since the last fire: not 0 = a batch is waiting
        age = Signal(32)        # clocks since the batch's first event (valid while count != 0)

        by_count = self.event_written & (count >= events_less_one)
        by_time = timer_on & Mux(count != 0, age >= cycles_less_one,
                                 self.event_written & (cycles_less_one == 0))
        go = by_count | by_time

        m.d.sync += self.fire.eq(go)
        with m.If(go):
            m.d.sync += count.eq(0)
        with m.Else():
            with m.If(self.event_written):
                m.d.sync += count.eq(count + 1)
            # Age 1 in the clock after the first event; only read while count != 0.
            m.d.sync += age.eq(Mux(count == 0, 1, age + 1))
        return m
