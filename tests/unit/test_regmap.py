"""The register map (hw/host/regmap.py): its generated document and its consistency."""

from itertools import pairwise
from pathlib import Path

from amaranth.lib import data

from hw import params
from hw.host import regmap
from hw.layouts import FastPathCounters, FlushReason, HostCounters, RingId, RxCounters

_DOC = Path(__file__).resolve().parents[2] / "docs" / "registers.md"


def _doc_table():
    """The Markdown table of docs/registers.md: from its header line to the first non-table line."""
    lines = _DOC.read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("| offset |"))
    end = start
    while end < len(lines) and lines[end].startswith("|"):
        end += 1
    # Exactly one table: nothing table-like after it.
    assert not any(line.startswith("|") for line in lines[end:])
    return "\n".join(lines[start:end]) + "\n"


def test_document_is_the_generated_table():
    assert _doc_table() == regmap.markdown_table()


def test_offsets_do_not_overlap():
    offsets = sorted(reg.offset for reg in regmap.REGISTERS)
    assert len(set(offsets)) == len(offsets)
    # Every register is one aligned 32-bit word inside BAR0.
    assert all(o % 4 == 0 for o in offsets)
    assert all(b - a >= 4 for a, b in pairwise(offsets))
    assert offsets[-1] + 4 <= 2 ** params.REG_ADDR_WIDTH


def test_access_kinds_and_reset_values_fit():
    for reg in regmap.REGISTERS:
        assert reg.access in ("ro", "rw", "w1c", "w1s"), reg.name
        assert 0 <= reg.reset < 2 ** 32, reg.name
        assert reg.doc, reg.name


def test_every_counter_has_its_register_in_layout_order():
    for layout, base, prefix in ((RxCounters, regmap.RX_COUNTERS_BASE, "rx_"),
                                 (HostCounters, regmap.HOST_COUNTERS_BASE, "")):
        for i, (name, field) in enumerate(data.Layout.cast(layout)):
            reg = regmap.counter_register(prefix + name)
            assert reg.offset == base + 4 * i, name
            assert reg.access == "ro", name
            assert field.width == 32, name


def test_fast_path_counters_have_a_register_each_in_layout_order():
    expected = []
    for name, field in data.Layout.cast(FastPathCounters):
        if name == "flush_reason":
            assert field.shape.length >= len(FlushReason)
            expected += [(name, n) for n in range(field.shape.length)]
        else:
            assert field.width == 32, name
            expected.append((name, None))
    fields = regmap.FAST_PATH_COUNTER_FIELDS
    assert [(field, element) for _, field, element in fields] == expected
    for i, (name, _, element) in enumerate(fields):
        reg = regmap.counter_register(name)
        assert (reg.offset, reg.access) == (regmap.FAST_PATH_COUNTERS_BASE + 4 * i, "ro")
        if element is not None and element < len(FlushReason):
            assert name == f"fp_flush_{FlushReason(element).name.lower()}"


def test_counter_blocks_do_not_collide():
    rx_end = regmap.RX_COUNTERS_BASE + 4 * len(list(data.Layout.cast(RxCounters)))
    host_end = regmap.HOST_COUNTERS_BASE + 4 * len(list(data.Layout.cast(HostCounters)))
    fast_path_end = regmap.FAST_PATH_COUNTERS_BASE + 4 * len(regmap.FAST_PATH_COUNTER_NAMES)
    assert rx_end <= regmap.HOST_COUNTERS_BASE
    assert host_end <= regmap.FAST_PATH_COUNTERS_BASE
    assert fast_path_end <= 2 ** params.REG_ADDR_WIDTH


def test_ring_registers_have_the_stride_and_the_right_owner():
    for ring in RingId:
        base = regmap.RING_BLOCK + regmap.RING_STRIDE * ring.value
        for i, what in enumerate(("BASE_LO", "BASE_HI", "LOG2_SIZE", "PRODUCER", "CONSUMER")):
            assert regmap.ring_register(ring, what).offset == base + 4 * i
        host_produces = ring != RingId.EVENT
        assert regmap.ring_register(ring, "PRODUCER").access == ("rw" if host_produces else "ro")
        assert regmap.ring_register(ring, "CONSUMER").access == ("ro" if host_produces else "rw")


def test_rss_key_reset_is_the_microsoft_key():
    words = [regmap.BY_NAME[f"RSS_KEY{n}"] for n in range(params.RSS_KEY_BYTES // 4)]
    assert [w.offset for w in words] == [regmap.RSS_KEY_BASE + 4 * n for n in range(len(words))]
    assert b"".join(w.reset.to_bytes(4, "big") for w in words) == params.MS_RSS_KEY
