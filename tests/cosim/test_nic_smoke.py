"""Whole-NIC first light in Icarus (tests/cosim/nic_smoke_tests.py)."""

import pytest

from hw.nic import Nic
from sim.cosim import runner


@pytest.mark.cosim
def test_nic_smoke():
    build = runner.build(Nic, "inic_nic")
    runner.run(build, "tests.cosim.nic_smoke_tests", run_name="smoke")
