"""Verilog generation for the gateware (``inic verilog``, the cocotb builds and the synthesis flow).

We write plain Verilog-2005 through Amaranth's ``verilog.convert``. The SystemVerilog output of
Yosys (``write_verilog -sv``, suggested in ../shared/docs/TOOLCHAIN.md against X on never-reset
outputs) makes Icarus 11 hang: its ``always_comb`` blocks assign constant part-selects of vectors
they also depend on ("constant selects in always_* processes are not currently supported"), and
re-trigger themselves forever once a frame flows. Every testbench resets the design first, so the X
trap does not apply. ``src`` attributes are left out so the output does not depend on where the
repository lives.
"""

from pathlib import Path

from amaranth.back import verilog

__all__ = ["convert", "write_verilog", "generate_all"]


def convert(component, name):
    """Return Verilog text for a ``wiring.Component``, top module named ``name``."""
    return verilog.convert(component, name=name, emit_src=False)


def write_verilog(component, name, path):
    """Write ``component`` as Verilog to ``path``; returns the path."""
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
    return [write_verilog(factory(), name, out_dir / f"{name}.v")
            for name, factory in top_levels().items()]
