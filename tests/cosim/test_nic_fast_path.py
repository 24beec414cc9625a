"""The fast path end to end in Icarus: the RTL, the PCI model, the driver and the host stack with
its offload (tests/cosim/nic_fast_path_tests.py)."""

import pytest

from hw.nic import Nic
from sim.cosim import runner


@pytest.mark.cosim
@pytest.mark.slow
def test_fast_path_upload():
    build = runner.build(Nic, "inic_nic")
    runner.run(build, "tests.cosim.nic_fast_path_tests", run_name="fast_path")
