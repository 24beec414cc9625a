"""sim/sta.py: arrival times and failing endpoints of a small hand-written SDF in nextpnr's form."""
from sim.sta import failing_paths, format_paths

SDF = r"""(DELAYFILE
  (SDFVERSION "3.0")
  (TIMESCALE 1ps)
  (CELL (CELLTYPE "top") (INSTANCE )
    (DELAY (ABSOLUTE
      (INTERCONNECT core\.a_TRELLIS_FF_Q/Q core\.lut/A (1000:1000:1000) (1000:1000:1000))
      (INTERCONNECT core\.lut/F core\.b_TRELLIS_FF_Q_3/DI (5000:5000:5000) (5000:5000:5000))
      (INTERCONNECT core\.lut/F core\.c_TRELLIS_FF_Q/DI (300:300:300) (300:300:300))
      (INTERCONNECT core\.ram/DOB0 core\.b_TRELLIS_FF_Q_4/DI (2000:2100:2200) (2000:2100:2200))
      (INTERCONNECT $PACKER_GND/F core\.b_TRELLIS_FF_Q_4/DI (9000:9000:9000) (9000:9000:9000))
    ))
  )
  (CELL (CELLTYPE "TRELLIS_FF") (INSTANCE core\.a_TRELLIS_FF_Q)
    (DELAY (ABSOLUTE (IOPATH CLK Q (400:400:400) (400:400:400)))))
  (CELL (CELLTYPE "TRELLIS_COMB") (INSTANCE core\.lut)
    (DELAY (ABSOLUTE (IOPATH A F (200:200:200) (200:200:200)))))
  (CELL (CELLTYPE "DP16KD") (INSTANCE core\.ram)
    (DELAY (ABSOLUTE (IOPATH CLKB DOB0 (4263:4263:4263) (4263:4263:4263)))))
  (CELL (CELLTYPE "TRELLIS_FF") (INSTANCE core\.b_TRELLIS_FF_Q_3)
    (TIMINGCHECK (SETUPHOLD DI (posedge CLK) (200:200:200) (0:0:0))))
  (CELL (CELLTYPE "TRELLIS_FF") (INSTANCE core\.b_TRELLIS_FF_Q_4)
    (TIMINGCHECK (SETUPHOLD DI (posedge CLK) (100:100:100) (0:0:0))))
  (CELL (CELLTYPE "TRELLIS_FF") (INSTANCE core\.c_TRELLIS_FF_Q)
    (TIMINGCHECK (SETUPHOLD DI (posedge CLK) (200:200:200) (0:0:0))))
)
"""


def test_failing_paths_of_a_small_design():
    checked, groups = failing_paths(SDF, 6400)
    assert checked == 3
    # a -> lut -> b: 400 + 1000 + 200 + 5000 + 200 setup = 6800 ps; the block RAM's 4263 + 2200
    # + 100 = 6563 ps (the constant's 9000 ps net is not timed); a -> lut -> c passes.
    assert [(g.start, g.end, round(g.slack_ps), g.endpoints) for g in groups] == [
        ("core.a", "core.b", -400, 1), ("core.ram", "core.b", -163, 1)]
    assert [node for _, node in groups[0].path] == [
        "core.a_TRELLIS_FF_Q/Q", "core.lut/A", "core.lut/F", "core.b_TRELLIS_FF_Q_3/DI"]
    assert failing_paths(SDF, 7000)[1] == []
    report = format_paths(checked, groups)
    assert report.splitlines()[0] == \
        "2 failing endpoints of 3, in 2 groups (start -> end register):"
    assert "core.lut/F" in report
