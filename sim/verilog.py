"""Verilog generation for the gateware (``inic verilog``, the cocotb builds and the synthesis flow).

Amaranth's own ``verilog.convert`` writes plain Verilog-2005. We emit SystemVerilog (``always_comb``)
instead: with the default output, outputs driven only by registers at their initial value can read as
X in Icarus (see ../shared/docs/TOOLCHAIN.md). Icarus (``-g2012``) and Yosys read it alike.
"""

from pathlib import Path

from amaranth.back import rtlil

# amaranth pins the built-in Yosys it was tested with; reusing its locator keeps one Yosys for both
# conversion paths. It is a private module, stable across the 0.5 series we pin in pyproject.toml.
from amaranth._toolchain.yosys import find_yosys

__all__ = ["convert", "write_verilog", "generate_all"]


def convert(component, name):
    """Return SystemVerilog text for a ``wiring.Component``, top module named ``name``."""
    rtlil_text = rtlil.convert(component, name=name, emit_src=False)
    yosys = find_yosys(lambda ver: ver >= (0, 40))
    script = "\n".join([
        f"read_rtlil <<rtlil\n{rtlil_text}\nrtlil",
        "proc -nomux -norom",
        "memory_collect",
        "write_verilog -norename -sv",
    ])
    return yosys.run(["-q", "-"], script, ignore_warnings=True)


def write_verilog(component, name, path):
    """Write ``component`` as SystemVerilog to ``path``; returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(convert(component, name))
    return path


def top_levels():
    """The blocks ``inic verilog`` writes: ``{module name: factory}`` with default parameters."""
    from hw.rx_sequencer import RxSequencer
    return {"inic_rx_sequencer": RxSequencer}


def generate_all(out_dir):
    """Write every top-level block into ``out_dir``; returns the list of paths written."""
    out_dir = Path(out_dir)
    return [write_verilog(factory(), name, out_dir / f"{name}.sv")
            for name, factory in top_levels().items()]
