"""HostMemory: bounds-checked bytes at bus addresses and its first-fit allocator."""

import itertools
import random

import pytest

from host_driver.memory import HostMemory

BASE = 0x1000_0000


def test_read_write_round_trip():
    mem = HostMemory(4096)
    assert mem.base == BASE and mem.size == 4096
    assert mem.read(BASE, 8) == bytes(8)
    mem.write(BASE + 100, b"hello")
    assert mem.read(BASE + 98, 9) == b"\0\0hello\0\0"
    mem.write(BASE + 4091, b"tail!")
    assert mem.read(BASE + 4091, 5) == b"tail!"
    assert mem.read(BASE + 4096, 0) == b""


@pytest.mark.parametrize(
    ("addr", "n"), [(BASE - 1, 1), (BASE + 4095, 2), (BASE + 4096, 1), (0, 4), (BASE, -1)]
)
def test_out_of_range_access_raises(addr, n):
    mem = HostMemory(4096)
    with pytest.raises(ValueError, match=r"outside host memory|length"):
        mem.read(addr, n)
    if n >= 0:
        with pytest.raises(ValueError, match="outside host memory"):
            mem.write(addr, b"x" * n)


def test_failed_write_changes_nothing():
    mem = HostMemory(64, base=0)
    with pytest.raises(ValueError):
        mem.write(60, b"12345")
    assert mem.read(0, 64) == bytes(64)


@pytest.mark.parametrize(
    "kwargs", [{"size": 0}, {"size": -5}, {"size": 1.5}, {"size": 16, "base": -1}]
)
def test_constructor_validates(kwargs):
    with pytest.raises(ValueError):
        HostMemory(**kwargs)


def test_alloc_aligns_and_counts():
    mem = HostMemory(1 << 16)
    a = mem.alloc(100)
    b = mem.alloc(10, align=4096)
    c = mem.alloc(1, align=1)
    assert a % 64 == 0 and b % 4096 == 0
    assert len({a, b, c}) == 3
    assert mem.allocated == 111
    # Blocks do not overlap.
    spans = sorted([(a, a + 100), (b, b + 10), (c, c + 1)])
    assert all(end <= start for (_, end), (start, _) in itertools.pairwise(spans))
    mem.free(b)
    assert mem.allocated == 101


@pytest.mark.parametrize(("size", "align"), [(0, 64), (-1, 64), (16, 0), (16, 48), (16, -64)])
def test_alloc_validates(size, align):
    with pytest.raises(ValueError):
        HostMemory(4096).alloc(size, align)


def test_full_memory_raises_memory_error():
    mem = HostMemory(1024)
    blocks = [mem.alloc(256) for _ in range(4)]
    with pytest.raises(MemoryError):
        mem.alloc(1)
    mem.free(blocks[1])
    assert mem.alloc(256) == blocks[1]  # first fit reuses the hole
    with pytest.raises(MemoryError):
        mem.alloc(2048)


def test_double_free_and_unknown_address():
    mem = HostMemory(1024)
    a = mem.alloc(64)
    with pytest.raises(ValueError, match="not an allocated block"):
        mem.free(a + 1)
    mem.free(a)
    with pytest.raises(ValueError, match="double free"):
        mem.free(a)


def test_free_coalesces_back_to_one_extent():
    mem = HostMemory(4096, base=0)
    blocks = [mem.alloc(1024, align=1) for _ in range(4)]
    # Free in an order that needs merging left, right and both ways.
    for index in (0, 2, 1, 3):
        mem.free(blocks[index])
    assert mem.allocated == 0
    assert mem.alloc(4096, align=1) == 0


def test_alignment_gap_stays_free():
    mem = HostMemory(8192, base=0)
    a = mem.alloc(10, align=1)
    b = mem.alloc(10, align=4096)
    assert (a, b) == (0, 4096)
    assert mem.alloc(4000, align=1) == 10  # the gap before the aligned block is usable


def test_random_alloc_free_never_overlaps():
    rng = random.Random(7)
    mem = HostMemory(1 << 15)
    live: dict[int, int] = {}
    for _ in range(2000):
        if live and (rng.random() < 0.45 or len(live) > 40):
            addr = rng.choice(list(live))
            mem.free(addr)
            del live[addr]
        else:
            size, align = rng.randint(1, 2000), 1 << rng.randint(0, 8)
            try:
                addr = mem.alloc(size, align)
            except MemoryError:
                continue
            assert addr % align == 0
            assert addr >= BASE and addr + size <= BASE + mem.size
            live[addr] = size
        spans = sorted((a, a + n) for a, n in live.items())
        assert all(end <= start for (_, end), (start, _) in itertools.pairwise(spans))
        assert mem.allocated == sum(live.values())
    for addr in live:
        mem.free(addr)
    assert mem.alloc(mem.size, align=1) == BASE
