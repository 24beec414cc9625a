"""Ring bookkeeping: each host ring's configuration, indices and prefetched entries.

Ref: docs/host_interface.md (rings).

The register target owns what the host writes (base, size, the host's index); the unit that works
a ring owns the NIC's index. Between the two runs one :class:`RingConfigSignature` per ring,
so ``hw/nic.py`` connects a ring with one ``wiring.connect``:

- COMMAND, RX, TX (the host produces, the NIC consumes): a ring fetcher prefetches posted entries
  through a DMA read client and hands them, in order, to the ring's consumer as
  :class:`~hw.layouts.RingEntry`; the NIC's (consumer) index moves as the consumer takes them.
- EVENT (the NIC produces): the event writer keeps the producer index and the phase.
"""

from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from .. import params

__all__ = ["RingConfigSignature"]


class RingConfigSignature(wiring.Signature):
    """One ring, from the register target's side.

    Members
    -------
    base : Out(64)
        Bus address of entry 0 (``<RING>_BASE_LO/HI``).
    log2_size : Out(4)
        ``<RING>_LOG2_SIZE``; 0 = not configured.
    reset : Out(1)
        Pulse: the size was written; both indices go back to 0.
    host_index : Out(RING_LOG2_SIZE_MAX)
        The host's index: producer of COMMAND/RX/TX, consumer of EVENT.
    nic_index : In(RING_LOG2_SIZE_MAX)
        The NIC's index: consumer of COMMAND/RX/TX, producer of EVENT.
    """

    def __init__(self):
        index = params.RING_LOG2_SIZE_MAX
        super().__init__({
            "base": Out(params.DMA_ADDR_WIDTH),
            "log2_size": Out(4),
            "reset": Out(1),
            "host_index": Out(index),
            "nic_index": In(index),
        })
