"""``inic demo`` on a small transfer: the JSON keys the issue names, byte-exact delivery, and a
GTKWave view whose every signal is in the FST."""

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
    for key in ("ok", "bytes_expected", "bytes_delivered", "frames_dropped"):
        assert key in report
    assert report["ok"] is True
    assert report["bytes_expected"] == report["bytes_delivered"] == 17000
    assert report["frames_dropped"] == 0
    assert report["mac_rx_frames"] >= 12000 // 1460 and report["mac_tx_frames"] >= 5000 // 1460
    assert report["dma_writes"] > 0 and report["dma_reads"] > 0 and report["interrupts"] > 0
    fst = tmp_path / "demo.fst"
    assert report["fst"] == str(fst.resolve())
    assert missing_signals(fst, NIC_SIGNALS, toplevel=TOPLEVEL) == []
