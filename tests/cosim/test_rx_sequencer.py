"""Receive sequencer RTL in Icarus through cocotb: one pytest item per cocotb test, so pytest-xdist
spreads them over the cores. The build is shared (``build/sim/inic_rx_sequencer``). The cocotb tests
are in rx_sequencer_tests.py; ``INIC_SEED=n`` changes the random seed."""

import os
import random

import pytest

from hw.layouts import RxBeat, pack
from hw.rx_sequencer import RxSequencer
from sim.cosim import runner
from sim.cosim.rx_tb import frame_beats

TOPLEVEL = "inic_rx_sequencer"
MODULE = "tests.cosim.rx_sequencer_tests"

# The longest first, so that pytest-xdist starts it first.
COCOTB_TESTS = [
    pytest.param("test_random_mix", marks=pytest.mark.slow),
    "test_directed",
    "test_line_rate_60",
    "test_line_rate_mix",
    "test_rss_vectors",
    "test_rss_key_runtime",
    pytest.param("test_bad_input", marks=pytest.mark.slow),
]


@pytest.fixture(scope="session")
def rx_build():
    return runner.build(RxSequencer, TOPLEVEL)


@pytest.mark.cosim
@pytest.mark.parametrize("testcase", COCOTB_TESTS)
def test_rx_sequencer(rx_build, testcase):
    env = {"INIC_SEED": os.environ["INIC_SEED"]} if "INIC_SEED" in os.environ else {}
    runner.run(rx_build, MODULE, testcase=testcase, run_name=testcase, extra_env=env)


def test_frame_beats_match_layout():
    """The testbench's fast beat packing equals :func:`hw.layouts.pack` for every frame length."""
    rng = random.Random(1)
    for length in range(0, 25):
        frame = rng.randbytes(length)
        count = max(1, -(-length // 8))
        want = [pack(RxBeat, {"data": int.from_bytes(frame[8 * n:8 * n + 8], "little"),
                              "keep": (1 << len(frame[8 * n:8 * n + 8])) - 1,
                              "last": n == count - 1})
                for n in range(count)]
        assert frame_beats(frame) == want
