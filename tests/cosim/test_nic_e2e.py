"""The NIC end to end in Icarus: TCP through the RTL, the PCI model and the driver
(tests/cosim/nic_e2e_tests.py)."""

import pytest

from hw.nic import Nic
from sim.cosim import runner


@pytest.mark.cosim
@pytest.mark.slow
def test_tcp_end_to_end():
    build = runner.build(Nic, "inic_nic")
    runner.run(build, "tests.cosim.nic_e2e_tests", run_name="e2e")
