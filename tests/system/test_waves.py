"""``inic waves`` on a few frames: the FST is written and every signal the GTKWave view names is in
it (so a renamed signal in the gateware shows up here, not as a silently empty view)."""

import pytest
import pywellen

from sim.cosim.waves import SIGNALS, TOPLEVEL, missing_signals, run_waves
from sim.frames import directed_frames
from sim.pcap import write_capture


@pytest.mark.cosim
@pytest.mark.waves
def test_waves_view_matches_dump(tmp_path, capsys):
    write_capture(tmp_path / "few.pcap", directed_frames()[:6])
    assert run_waves(capture=tmp_path / "few.pcap", out_dir=tmp_path / "waves") == 0
    fst = tmp_path / "waves" / "rx_sequencer.fst"
    gtkw = tmp_path / "waves" / "rx_sequencer.gtkw"
    assert str(fst) in capsys.readouterr().out
    assert missing_signals(fst) == []
    traces = [line for line in gtkw.read_text().splitlines() if line.startswith(f"{TOPLEVEL}.")]
    assert len(traces) == sum(len(names) for _, names in SIGNALS)
    assert f'[dumpfile] "{fst.resolve()}"' in gtkw.read_text()
    valid = next(var for var in pywellen.Waveform(str(fst)).all_vars()
                 if var.full_name == f"{TOPLEVEL}.i__valid")
    assert valid.bitwidth == 1
