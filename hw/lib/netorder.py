"""Network byte order, converted in one place.

Frames arrive with byte 0 in the low bits of a beat, so a window of frame bytes is a Value whose
byte ``k`` sits at bits ``[8k, 8k+8)``. Protocol fields are big-endian; :func:`be_field` turns ``n``
bytes at a byte offset into the number they encode.
"""

from amaranth import Cat

__all__ = ["byte_at", "be_field"]


def byte_at(window, offset):
    """Byte ``offset`` of a byte-addressed window."""
    return window[8 * offset:8 * offset + 8]


def be_field(window, offset, nbytes):
    """The big-endian field of ``nbytes`` bytes at byte ``offset`` of ``window``, as a number."""
    return Cat(*(byte_at(window, offset + k) for k in reversed(range(nbytes))))
