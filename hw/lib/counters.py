"""A bank of 32-bit event counters, one per field of a Struct (e.g. :class:`HostCounters`)."""

from amaranth import Module
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

__all__ = ["CounterBank"]


class CounterBank(wiring.Component):
    """Members
    -------
    count : In(layout of 1-bit fields, same names)
        Pulse a field to add one to its counter.
    clear : In(1)
        Zero every counter (a pulse this clock is lost).
    counters : Out(layout)
        The counts, wrapping at 2**32.
    """

    def __init__(self, layout):
        self._layout = data.Layout.cast(layout)
        pulses = data.StructLayout({name: 1 for name, _ in self._layout})
        super().__init__({"count": In(pulses), "clear": In(1), "counters": Out(layout)})

    def elaborate(self, platform):
        m = Module()
        for name, _ in self._layout:
            counter = self.counters[name]
            with m.If(self.clear):
                m.d.sync += counter.eq(0)
            with m.Elif(self.count[name]):
                m.d.sync += counter.eq(counter + 1)
        return m
