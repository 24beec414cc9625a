"""``inic demo`` on a small transfer: the JSON keys the issue names, byte-exact delivery, the
offload scenario's handouts, fast-path bytes and flushes (host statistics and NIC counters
agreeing), and a GTKWave view whose every signal is in the FST (the fast-path groups included)."""

import json

import pytest

from sim.cosim.demo import NIC_SIGNALS, TOPLEVEL, run_demo
from sim.cosim.waves import missing_signals


@pytest.mark.cosim
@pytest.mark.system
@pytest.mark.waves
def test_demo_json_and_waves(tmp_path, capsys):
    assert run_demo(json_mode=True, down=12000, up=5000, out_dir=tmp_path) == 0
    report = json.loads(capsys.readouterr().out)
    for key in ("ok", "bytes_expected", "bytes_delivered", "frames_dropped", "fast_path_bytes",
                "slow_path_bytes", "handouts", "flushes"):
        assert key in report
    assert report["ok"] is True
    assert report["bytes_expected"] == report["bytes_delivered"] == 17000
    assert report["frames_dropped"] == 0
    assert report["mac_rx_frames"] >= 12000 // 1460 and report["mac_tx_frames"] >= 5000 // 1460
    assert report["dma_writes"] > 0 and report["dma_reads"] > 0 and report["interrupts"] > 0
    # The scenario: handout, fast path, the lost segment's flush, the host send's flush, the
    # re-handout, the FIN's flush; every byte received once, by one path or the other.
    fp = report["fast_path_counters"]
    assert report["mismatches"] == []
    assert report["fast_path_bytes"] == fp["fp_fast_bytes"] > 0
    assert report["slow_path_bytes"] > 0
    assert (report["fast_path_bytes"] + report["frame_data_bytes"] + report["slow_path_bytes"]
            == 12000)
    assert report["handouts"] == fp["fp_handouts"] >= 2
    assert report["flushes"]["OUT_OF_ORDER"] == fp["fp_flush_out_of_order"] == 1
    assert report["flushes"]["HOST"] == fp["fp_flush_host"] == 1
    assert report["frames_lost_on_wire"] == 1 and report["retransmissions"] >= 1
    fst = tmp_path / "demo.fst"
    assert report["fst"] == str(fst.resolve())
    assert missing_signals(fst, NIC_SIGNALS, toplevel=TOPLEVEL) == []
    gtkw = (tmp_path / "demo.gtkw").read_text().splitlines()
    traces = [line for line in gtkw if line.startswith(f"{TOPLEVEL}.")]
    assert len(traces) == sum(len(names) for _, names in NIC_SIGNALS)
    groups = [line for line in gtkw if line.startswith("-")]
    for group in ("dispatcher", "CCB table lookup", "receive engine: placement",
                  "ACK builder and TX arbiter"):
        assert f"-{group}" in groups
