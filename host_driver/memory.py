"""Host DRAM for the host-driver model: bytes at bus addresses, with a small allocator.

The driver allocates rings and buffers here and the PCI model serves the NIC's DMA reads and writes
from it (SPEC §4). Addresses are bus addresses starting at ``base``, so a stray zero or a small
offset used as an address fails loudly instead of landing in a ring.
"""

import bisect

__all__ = ["HostMemory"]


class HostMemory:
    """Host memory of ``size`` bytes at bus addresses ``[base, base + size)``.

    :meth:`read` and :meth:`write` reach any address in range, allocated or not (as DMA does);
    :meth:`alloc` and :meth:`free` only keep track of which ranges the driver owns. The allocator is
    first fit over a free list sorted by address; freeing coalesces neighbouring free extents.

    Parameters
    ----------
    size : int
        Number of bytes, > 0. The memory starts zeroed.
    base : int
        Bus address of the first byte, >= 0.

    Members
    -------
    size : int
        Number of bytes (read-only).
    base : int
        Bus address of the first byte (read-only).
    allocated : int
        Bytes currently allocated, alignment gaps excluded (read-only).
    """

    def __init__(self, size: int, base: int = 0x1000_0000):
        if not isinstance(size, int) or size <= 0:
            raise ValueError(f"size must be a positive integer, not {size!r}")
        if not isinstance(base, int) or base < 0:
            raise ValueError(f"base must be a non-negative integer, not {base!r}")
        self._size = size
        self._base = base
        self._data = bytearray(size)
        # Free extents as parallel sorted lists of start addresses and end addresses (exclusive);
        # allocated blocks as start address -> end address.
        self._free_starts = [base]
        self._free_ends = [base + size]
        self._blocks: dict[int, int] = {}

    @property
    def size(self) -> int:
        return self._size

    @property
    def base(self) -> int:
        return self._base

    @property
    def allocated(self) -> int:
        return sum(end - start for start, end in self._blocks.items())

    def _offset(self, addr: int, n: int) -> int:
        """The index of ``addr`` in the byte array, after checking ``[addr, addr + n)``."""
        if n < 0:
            raise ValueError(f"length must be >= 0, not {n}")
        if addr < self._base or addr + n > self._base + self._size:
            raise ValueError(
                f"access [{addr:#x}, {addr + n:#x}) is outside host memory "
                f"[{self._base:#x}, {self._base + self._size:#x})"
            )
        return addr - self._base

    def read(self, addr: int, n: int) -> bytes:
        """The ``n`` bytes at ``addr``; `ValueError` if any of them is out of range."""
        offset = self._offset(addr, n)
        return bytes(self._data[offset : offset + n])

    def write(self, addr: int, data: bytes) -> None:
        """Store ``data`` at ``addr``; `ValueError` (and nothing written) if out of range."""
        offset = self._offset(addr, len(data))
        self._data[offset : offset + len(data)] = data

    def alloc(self, size: int, align: int = 64) -> int:
        """Allocate ``size`` bytes at an address that is a multiple of ``align``.

        Returns the address; raises `MemoryError` when no free extent can hold the block.
        The bytes keep whatever they held before.
        """
        if not isinstance(size, int) or size <= 0:
            raise ValueError(f"size must be a positive integer, not {size!r}")
        if not isinstance(align, int) or align <= 0 or align & (align - 1):
            raise ValueError(f"align must be a power of two, not {align!r}")
        for index, (start, end) in enumerate(zip(self._free_starts, self._free_ends)):
            addr = -(-start // align) * align
            if addr + size > end:
                continue
            # Split the extent: what precedes the aligned block and what follows it stay free.
            del self._free_starts[index], self._free_ends[index]
            for piece_start, piece_end in ((addr + size, end), (start, addr)):
                if piece_end > piece_start:
                    self._free_starts.insert(index, piece_start)
                    self._free_ends.insert(index, piece_end)
            self._blocks[addr] = addr + size
            return addr
        raise MemoryError(
            f"no free extent of {size} bytes aligned to {align} "
            f"({self._size - self.allocated} bytes free in {len(self._free_starts)} extents)"
        )

    def free(self, addr: int) -> None:
        """Return the block that :meth:`alloc` gave at ``addr``.

        Raises `ValueError` for an address that is not the start of an allocated block (a double
        free, or an address never returned by :meth:`alloc`).
        """
        end = self._blocks.pop(addr, None)
        if end is None:
            raise ValueError(
                f"{addr:#x} is not an allocated block (double free or unknown address)"
            )
        index = bisect.bisect(self._free_starts, addr)
        start = addr
        # Coalesce with the free extent that ends where this block starts ...
        if index > 0 and self._free_ends[index - 1] == start:
            index -= 1
            start = self._free_starts[index]
            del self._free_starts[index], self._free_ends[index]
        # ... and with the one that starts where it ends.
        if index < len(self._free_starts) and self._free_starts[index] == end:
            end = self._free_ends[index]
            del self._free_starts[index], self._free_ends[index]
        self._free_starts.insert(index, start)
        self._free_ends.insert(index, end)
