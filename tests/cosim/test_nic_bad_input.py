"""The NIC against bad host input in Icarus (tests/cosim/nic_bad_input_tests.py): one pytest item
per cocotb test, all on the shared ``inic_nic`` build."""

import pytest

from hw.nic import Nic
from sim.cosim import runner

MODULE = "tests.cosim.nic_bad_input_tests"

COCOTB_TESTS = [
    "test_bad_commands",
    "test_rx_dma_write_error",
    "test_tx_dma_read_error",
    "test_fetch_errors",
    "test_event_write_error",
    "test_bad_doorbells",
    "test_event_ring_full",
    "test_disabled",
    "test_tx_bad_descriptors",
]


@pytest.fixture(scope="module")
def nic_build():
    return runner.build(Nic, "inic_nic")


@pytest.mark.cosim
@pytest.mark.parametrize("testcase", COCOTB_TESTS)
def test_nic_bad_input(nic_build, testcase):
    runner.run(nic_build, MODULE, testcase=testcase, run_name=f"bad_input-{testcase}")
