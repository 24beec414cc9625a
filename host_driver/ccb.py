"""Ccb records in host memory (docs/fast_path.md): build them, write them, read them back.

A Ccb is handled here as nested dicts of ints, one dict per part (``tuple``, ``route``, ``tcp``,
``transfer``, ``stats``) beside the top-level fields (``version``, ``state``, ``conn_nbr``); fields
left out are 0. :func:`record_fields` turns any :mod:`hw.layouts` record into that form, so the NIC
model reads the same records with it.
"""

from amaranth.lib import data

from hw.layouts import CCB_ALIGN, CCB_BYTES, CCB_VERSION, Ccb, pack

from .memory import HostMemory

__all__ = ["record_fields", "make_ccb", "ccb_bytes", "write_ccb", "read_ccb", "CCB_ALIGN"]


def record_fields(layout, bits: int) -> dict:
    """The fields of the record ``bits`` of ``layout``: ints, a dict for a Struct field, a list
    for an array field."""
    out = {}
    for name, field in data.Layout.cast(layout):
        value = (bits >> field.offset) & ((1 << field.width) - 1)
        out[name] = _field_value(field.shape, value)
    return out


def _field_value(shape, value: int):
    if isinstance(shape, type) and issubclass(shape, data.Struct):
        return record_fields(shape, value)
    if isinstance(shape, data.ArrayLayout):
        width = shape.size // shape.length
        return [(value >> (width * i)) & ((1 << width) - 1) for i in range(shape.length)]
    return value


def make_ccb(tuple_fields: dict, route: dict, tcp: dict) -> dict:
    """A Ccb as the host hands it out: its parts, this layout's version, the NIC's fields 0."""
    return {"tuple": dict(tuple_fields), "route": dict(route), "tcp": dict(tcp),
            "version": CCB_VERSION}


def ccb_bytes(fields: dict) -> bytes:
    """The ``CCB_BYTES`` of a Ccb in host memory (little-endian, as every record)."""
    return pack(Ccb, fields).to_bytes(CCB_BYTES, "little")


def write_ccb(memory: HostMemory, addr: int, fields: dict) -> None:
    memory.write(addr, ccb_bytes(fields))


def read_ccb(memory: HostMemory, addr: int) -> dict:
    """The Ccb at ``addr`` (after a flush: as the NIC wrote it back)."""
    return record_fields(Ccb, int.from_bytes(memory.read(addr, CCB_BYTES), "little"))
