"""The register map of BAR0, written once.

The AXI4-Lite target (:mod:`hw.host.registers`), the host driver and ``docs/registers.md``
(generated
by :func:`markdown_table`, checked by a test) all read this module. Registers are 32 bits wide at
4-byte-aligned offsets; a read of an unmapped offset returns 0 and a write to one is ignored (both
get OKAY, as on a PCIe BAR).
"""

from dataclasses import dataclass

from amaranth.lib import data

from .. import params
from ..layouts import FastPathCounters, FlushReason, HostCounters, RingId, RxCounters

__all__ = [
    "Register", "REGISTERS", "BY_NAME", "ring_register", "counter_register", "markdown_table",
    "CONTROL_ENABLE", "CONTROL_COUNTERS_CLEAR", "STATUS_ENABLED", "STATUS_EVENT_WRITE_FAILED",
    "INTR_EVENTS", "INTR_FATAL",
    "RING_BLOCK", "RING_STRIDE", "RSS_KEY_BASE", "RX_COUNTERS_BASE", "HOST_COUNTERS_BASE",
    "FAST_PATH_COUNTERS_BASE", "FAST_PATH_COUNTER_FIELDS", "FAST_PATH_COUNTER_NAMES",
]


@dataclass(frozen=True)
class Register:
    name: str
    offset: int
    access: str         # "ro", "rw", "w1c" (write 1 to clear), "w1s" (write 1 to act; reads 0)
    reset: int
    doc: str


# CONTROL bits.
CONTROL_ENABLE = 1 << 0             # frames are received and rings processed
CONTROL_COUNTERS_CLEAR = 1 << 1     # write 1: zero every counter (reads 0)
# STATUS bits.
STATUS_ENABLED = 1 << 0
STATUS_EVENT_WRITE_FAILED = 1 << 1  # sticky: an event-ring write got a DMA error (cleared by
                                    # rewriting the event ring's RING_LOG2_SIZE)
# INTR_STATUS / INTR_MASK bits.
INTR_EVENTS = 1 << 0                # events are waiting (moderation threshold or timer reached)
INTR_FATAL = 1 << 1                 # STATUS.EVENT_WRITE_FAILED became set

RING_BLOCK = 0x100
RING_STRIDE = 0x20
RSS_KEY_BASE = 0x200
RX_COUNTERS_BASE = 0x300
HOST_COUNTERS_BASE = 0x380
FAST_PATH_COUNTERS_BASE = 0x400

_RING_DOC = {
    RingId.COMMAND: ("host", "commands"),
    RingId.EVENT: ("NIC", "events"),
    RingId.RX: ("host", "empty slow-path receive buffers"),
    RingId.TX: ("host", "frames to transmit"),
}


def _ring_registers(ring):
    base = RING_BLOCK + RING_STRIDE * ring.value
    producer_owner, what = _RING_DOC[ring]
    prefix = f"{ring.name}_"
    host_produces = producer_owner == "host"
    return [
        Register(prefix + "BASE_LO", base + 0x00, "rw", 0,
                 f"Bus address of the {ring.name.lower()} ring ({what}), bits 31:4 (16-byte "
                 "aligned; bits 3:0 ignored)."),
        Register(prefix + "BASE_HI", base + 0x04, "rw", 0, "Bus address bits 63:32."),
        Register(prefix + "LOG2_SIZE", base + 0x08, "rw", 0,
                 f"Ring size is 2**n entries, n in {params.RING_LOG2_SIZE_MIN}.."
                 f"{params.RING_LOG2_SIZE_MAX}; 0 = ring off. A write sets both indices to 0; a "
                 "value out of range is refused (ERROR event BAD_RING_SIZE, ring off)."),
        Register(prefix + "PRODUCER", base + 0x0C, "rw" if host_produces else "ro", 0,
                 "Doorbell: index of the next entry the host will fill. An index >= size, or one "
                 "that takes back entries already posted, is refused (ERROR event BAD_DOORBELL)."
                 if host_produces else
                 "Index of the next event the NIC will write."),
        Register(prefix + "CONSUMER", base + 0x10, "ro" if host_produces else "rw", 0,
                 "Index of the next entry the NIC will read." if host_produces else
                 "Index of the next event the host will read: slots before it are free again. "
                 "Checked like a doorbell (BAD_DOORBELL)."),
    ]


def _counter_registers(base, layout, prefix, doc):
    return [Register(f"{prefix}{name.upper()}", base + 4 * i, "ro", 0, doc)
            for i, (name, _) in enumerate(data.Layout.cast(layout))]


def _fast_path_counter_fields():
    """``(counter name, field, element)`` of each FastPathCounters register, in register order:
    ``fp_`` and the field name; ``flush_reason`` one register per element, named by its
    FlushReason (``fp_flush_out_of_order``; ``fp_flush_reason<n>`` for a value without a name)."""
    names = {reason.value: reason.name.lower() for reason in FlushReason}
    out = []
    for name, field in data.Layout.cast(FastPathCounters):
        if name == "flush_reason":
            out += [(f"fp_flush_{names.get(n, f'reason{n}')}", name, n)
                    for n in range(field.shape.length)]
        else:
            out.append((f"fp_{name}", name, None))
    return tuple(out)


#: ``(counter name, FastPathCounters field, element or None)``, in register order.
FAST_PATH_COUNTER_FIELDS = _fast_path_counter_fields()
FAST_PATH_COUNTER_NAMES = tuple(name for name, _, _ in FAST_PATH_COUNTER_FIELDS)


def _fast_path_counter_doc(field, element):
    where = field if element is None else f"{field}[{element}]"
    return f"Fast-path counter (hw.layouts.FastPathCounters.{where})."


REGISTERS = [
    Register("ID", 0x000, "ro", params.NIC_ID, 'Identification: 0x494E4943 ("INIC").'),
    Register("VERSION", 0x004, "ro", params.NIC_VERSION,
             "Host-interface version, major in bits 31:16, minor in 15:0."),
    Register("CONTROL", 0x008, "rw", 0,
             "Bit 0 ENABLE: receive frames and process rings (frames arriving while 0 are dropped "
             "and counted). Bit 1 COUNTERS_CLEAR: write 1 to zero every counter; reads 0."),
    Register("STATUS", 0x00C, "ro", 0,
             "Bit 0 ENABLED. Bit 1 EVENT_WRITE_FAILED: an event-ring write got a DMA error "
             "(sticky until the event ring is reconfigured)."),
    Register("INTR_STATUS", 0x010, "w1c", 0,
             "Bit 0 EVENTS: moderation says events are waiting. Bit 1 FATAL: EVENT_WRITE_FAILED. "
             "Write 1 to clear."),
    Register("INTR_MASK", 0x014, "rw", 0, "Bits as INTR_STATUS; 1 = the bit drives the interrupt."),
    Register("INTR_MOD_EVENTS", 0x018, "rw", 1,
             "Moderation by count: set INTR_STATUS.EVENTS once this many events are written since "
             "it was last set (0 acts as 1)."),
    Register("INTR_MOD_CYCLES", 0x01C, "rw", 0,
             "Moderation by time: set INTR_STATUS.EVENTS this many clocks after the first event "
             "not yet signalled, whatever the count (0 = no timer)."),
    *[reg for ring in RingId for reg in _ring_registers(ring)],
    *[Register(f"RSS_KEY{n}", RSS_KEY_BASE + 4 * n, "rw",
               int.from_bytes(params.MS_RSS_KEY[4 * n:4 * n + 4], "big"),
               f"RSS key bytes {4 * n}..{4 * n + 3}, byte {4 * n} in bits 31:24 "
               "(reset: Microsoft's "
               "published key).")
      for n in range(params.RSS_KEY_BYTES // 4)],
    *_counter_registers(RX_COUNTERS_BASE, RxCounters, "RX_",
                        "Receive-sequencer counter (hw.layouts.RxCounters)."),
    *_counter_registers(HOST_COUNTERS_BASE, HostCounters, "",
                        "Host-interface counter (hw.layouts.HostCounters)."),
    *[Register(name.upper(), FAST_PATH_COUNTERS_BASE + 4 * i, "ro", 0,
               _fast_path_counter_doc(field, element))
      for i, (name, field, element) in enumerate(FAST_PATH_COUNTER_FIELDS)],
]

BY_NAME = {reg.name: reg for reg in REGISTERS}
assert len(BY_NAME) == len(REGISTERS)
assert len({reg.offset for reg in REGISTERS}) == len(REGISTERS)
assert all(reg.offset % 4 == 0 and reg.offset < (1 << params.REG_ADDR_WIDTH) for reg in REGISTERS)


def ring_register(ring, what):
    """The register ``what`` ("BASE_LO", "PRODUCER", ...) of ``ring`` (a RingId)."""
    return BY_NAME[f"{RingId(ring).name}_{what}"]


def counter_register(name):
    """The register of a counter: ``"rx_" + name`` for a field of RxCounters (``rx_frames``), the
    field name for HostCounters (``rx_to_host``), a :data:`FAST_PATH_COUNTER_NAMES` name for
    FastPathCounters."""
    return BY_NAME[name.upper()]


def markdown_table():
    """The register map as the Markdown table in ``docs/registers.md``."""
    lines = ["| offset | name | access | reset | description |", "|---|---|---|---|---|"]
    for reg in REGISTERS:
        lines.append(f"| 0x{reg.offset:03X} | {reg.name} | {reg.access} | 0x{reg.reset:X} | "
                     f"{reg.doc} |")
    return "\n".join(lines) + "\n"
