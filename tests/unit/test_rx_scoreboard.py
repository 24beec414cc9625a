"""The receive sequencer's scoreboard (sim/cosim/rx_tb.py, RxScoreboard) without a simulator: the
reference's own status words pass; a word that differs only in a field the JSON row does not show
(``ip_proto``, ``hash_type``, an offset, a field that should read 0) is reported."""

import logging

import pytest

from hw.layouts import RxStatus, pack, unpack
from sim.cosim.rx_tb import RxScoreboard
from sim.frames import directed_cases
from sim.reference.rx_status import expected_fields

FRAMES = {name: frame for name, frame in directed_cases()}


def _board(frames):
    board = RxScoreboard(logging.getLogger("test"))
    for frame in frames:
        board.expect(frame)
    return board


def test_reference_words_pass():
    frames = list(FRAMES.values())
    board = _board(frames)
    for frame in frames:
        board.on_frame(frame)
        board.on_status(unpack(RxStatus, pack(RxStatus, expected_fields(frame))))
    board.check()


@pytest.mark.parametrize("field, value", [
    ("ip_proto", 17), ("hash_type", 1), ("l3_offset", 22), ("l4_offset", 30),
    ("payload_offset", 1),
])
def test_a_field_outside_the_json_row_is_checked(field, value):
    frame = next(iter(FRAMES.values()))
    fields = expected_fields(frame)
    assert fields.get(field, 0) != value
    board = _board([frame])
    board.on_frame(frame)
    board.on_status(unpack(RxStatus, pack(RxStatus, {**fields, field: value})))
    with pytest.raises(AssertionError, match=f"status word differs in {field} got {value:#x}"):
        board.check()


def test_a_field_that_does_not_apply_must_read_0():
    """A runt has no layer 2: its l3_offset and vlan fields must be 0 even though the JSON row
    (vlan null) cannot show them."""
    frame = bytes(10)
    fields = expected_fields(frame)
    assert not fields.get("l2_valid")
    for name in ("l3_offset", "vlan0"):
        board = _board([frame])
        board.on_frame(frame)
        board.on_status(unpack(RxStatus, pack(RxStatus, {**fields, name: 14})))
        with pytest.raises(AssertionError, match=f"differs in {name}"):
            board.check()
