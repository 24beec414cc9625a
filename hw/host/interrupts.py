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
    batch. ``mod_events`` and ``mod_cycles`` are registers of the host; a change takes effect two
    clocks later: the thresholds are registered, and the compares against them are made a clock
    ahead into two flags (``count`` reaches its threshold, ``age`` reaches its), so that no 32-bit
    compare lies between a counter and its own update (156.25 MHz on ECP5 with either router).

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

        # Thresholds, registered: every compare below starts from flip-flops. ``*_less_two`` is
        # the threshold less one for a counter one step ahead (saturating at 0, where "reached"
        # holds whatever the counter).
        mod_events, mod_cycles = self.mod_events, self.mod_cycles
        events_less_one = Signal(32)
        events_less_two = Signal(32)
        events_one = Signal(init=1)         # max(mod_events, 1) == 1
        cycles_less_two = Signal(32)
        cycles_upto_two = Signal(init=1)    # mod_cycles <= 2 (the timer is due by age 1)
        cycles_one = Signal()               # mod_cycles == 1 (due in the clock after the event)
        timer_on = Signal()
        m.d.sync += [
            events_less_one.eq(Mux(mod_events == 0, 0, mod_events - 1)),
            events_less_two.eq(Mux(mod_events <= 1, 0, mod_events - 2)),
            events_one.eq(mod_events <= 1),
            cycles_less_two.eq(Mux(mod_cycles <= 2, 0, mod_cycles - 2)),
            cycles_upto_two.eq(mod_cycles <= 2),
            cycles_one.eq(mod_cycles == 1),
            timer_on.eq(mod_cycles != 0),
        ]

        count = Signal(32)      # events written since the last fire
        waiting = Signal()      # count != 0: a batch is waiting
        age = Signal(32)        # clocks since the batch's first event (valid while waiting)
        # Flags computed a clock ahead from the counters' next values, so that deciding to fire
        # is two LUTs from flip-flops instead of a 32-bit compare.
        count_due = Signal(init=1)          # count >= max(mod_events, 1) - 1
        age_due = Signal()                  # age >= mod_cycles - 1 (while waiting)

        # Fire if an event comes, and if none comes: event_written is then the last input of go.
        go_if_event = count_due | (timer_on & Mux(waiting, age_due, cycles_one))
        go_if_none = timer_on & waiting & age_due
        go = Mux(self.event_written, go_if_event, go_if_none)

        m.d.sync += self.fire.eq(go)
        with m.If(go):
            m.d.sync += [count.eq(0), waiting.eq(0), count_due.eq(events_one)]
        with m.Else():
            with m.If(self.event_written):
                m.d.sync += [
                    count.eq(count + 1),
                    waiting.eq(1),
                    count_due.eq(count >= events_less_two),     # count + 1 >= events less one
                ]
            with m.Else():
                m.d.sync += count_due.eq(count >= events_less_one)
            # Age 1 in the clock after the first event; only read while waiting.
            with m.If(waiting):
                m.d.sync += [age.eq(age + 1), age_due.eq(age >= cycles_less_two)]
            with m.Else():
                m.d.sync += [age.eq(1), age_due.eq(cycles_upto_two)]
        return m
