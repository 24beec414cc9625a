"""The driver's only view of the NIC: BAR0 registers, host memory, the interrupt line and time.

:class:`Bus` is abstract and asynchronous. The same driver code (:mod:`host_driver.driver`) runs
against two implementations:

- :class:`sim.reference.nic_model.ModelBus`, the transaction-level Python model of the NIC, under
  plain :mod:`asyncio` (fast unit tests, and the golden model);
- :class:`sim.cosim.pci.CocotbBus`, the RTL under cocotb and Icarus, where a register access is an
  AXI4-Lite transaction that takes clock cycles and the interrupt is a signal.

A register access has to be awaitable for the second (the simulator must run for the access to
complete), so it is awaitable for both; the model's accesses complete at once. Time is counted in
NIC clock cycles everywhere, so timeouts, the TCP clock and interrupt moderation mean the same
thing against either implementation.
"""

import abc

from .memory import HostMemory

__all__ = ["Bus"]


class Bus(abc.ABC):
    """What a driver may do to a NIC.

    Members
    -------
    memory : HostMemory
        Host memory the NIC reaches by DMA: the driver allocates rings and buffers in it.
    """

    memory: HostMemory

    @abc.abstractmethod
    async def read32(self, offset: int) -> int:
        """The 32-bit register at byte ``offset`` of BAR0."""

    @abc.abstractmethod
    async def write32(self, offset: int, value: int) -> None:
        """Write the 32-bit register at byte ``offset`` of BAR0; returns when the write is done."""

    @abc.abstractmethod
    async def wait_irq(self, max_cycles: int) -> bool:
        """Wait until the interrupt line is high (at once if it already is) or ``max_cycles``
        clock cycles have passed; True if the line is high."""

    @abc.abstractmethod
    async def delay(self, cycles: int) -> None:
        """Let ``cycles`` clock cycles pass."""

    @abc.abstractmethod
    def now(self) -> int:
        """The current time in NIC clock cycles."""
