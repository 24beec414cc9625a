"""The fast path end to end in Icarus: the RTL, the PCI model, the driver and the host stack with
its offload (tests/cosim/nic_fast_path_tests.py): one pytest item per cocotb test, all on the
shared ``inic_nic`` build."""

import pytest

from hw.nic import Nic
from sim.cosim import runner

MODULE = "tests.cosim.nic_fast_path_tests"

#: The fast path's exceptions, small transfers (tests/unit/test_host_offload.py's scenarios).
EXCEPTIONS = [
    "test_drops_and_reordering_flush_and_hand_out_again",
    "test_fin_in_the_middle_of_an_rcvmdl_completes_it_short",
    "test_rst_flushes_and_resets_the_connection",
    "test_a_bad_checksum_flushes_the_stack_drops_it_and_the_peer_resends",
    "test_an_ip_fragment_of_the_peer_flushes_its_connections",
    "test_frame_data_and_winupdate_without_rcvmdl",
    "test_a_host_send_flushes_sends_and_hands_out_again",
    "test_handout_race_5_frames_between_the_two_phases",
    "test_handout_race_17_frames_fill_the_queue",
    "test_packet_buffer_pressure_flushes_the_queue_holding_it",
    "test_host_flush_with_an_rcvmdl_half_full",
    "test_many_connections_with_random_handouts_and_flushes",
]


@pytest.fixture(scope="module")
def nic_build():
    return runner.build(Nic, "inic_nic")


@pytest.mark.cosim
@pytest.mark.slow
def test_fast_path_upload(nic_build):
    runner.run(nic_build, MODULE, testcase="test_upload_placed_by_the_nic", run_name="fast_path")


@pytest.mark.cosim
@pytest.mark.slow
@pytest.mark.parametrize("testcase", EXCEPTIONS)
def test_fast_path_exception(nic_build, testcase):
    runner.run(nic_build, MODULE, testcase=testcase, run_name=f"fast_path-{testcase}")
