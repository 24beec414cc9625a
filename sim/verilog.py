r"""Verilog generation for the gateware (``inic verilog``, cocotb builds, the synthesis flow).

We write plain Verilog-2005 through Amaranth's ``verilog.convert``. The SystemVerilog output of
Yosys (``write_verilog -sv``, suggested in ../shared/docs/TOOLCHAIN.md against X on never-reset
outputs) makes Icarus 11 hang: its ``always_comb`` blocks assign constant part-selects of vectors
they also depend on ("constant selects in always_* processes are not currently supported"), and
re-trigger themselves forever once a frame flows. The plain output has the X trap instead: each
``always @*`` block reads a dummy register (``reg \$auto$verilog_backend...  = 0;``) so that it runs
at time 0, but Icarus applies declaration initialisers without an event, so a block whose inputs
never change (an FSM's outputs while it idles in its reset state) never runs and its outputs stay
X. :func:`for_icarus` makes the dummy register toggle at 1 ns, which runs every such block once
before the first clock edge; the cocotb builds use it, ``inic verilog`` and synthesis do not need
it. ``src`` attributes are left out so the output does not depend on where the repository lives.
"""

import re
from pathlib import Path

from amaranth.back import verilog

__all__ = ["convert", "for_icarus", "write_verilog", "generate_all"]

_COMB_TRIGGER = re.compile(r"^(\s*)reg (\\\$auto\$verilog_backend\S*dump_module\$\d+ ) = 0;$",
                           re.MULTILINE)


def convert(component, name):
    """Return Verilog text for a ``wiring.Component``, top module named ``name``."""
    return verilog.convert(component, name=name, emit_src=False)


def for_icarus(text):
    """``text`` (from :func:`convert`) with every module's combinational trigger toggled at 1 ns."""
    return _COMB_TRIGGER.sub(r"\1reg \2 = 0;\n\1initial #1 \2 = 1;", text)


def write_verilog(component, name, path):
    """Write ``component`` as Verilog to ``path``; returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(convert(component, name))
    return path


def top_levels():
    """The blocks ``inic verilog`` writes: ``{module name: factory}`` with default parameters."""
    from hw.nic import Nic
    from hw.rx_sequencer import RxSequencer
    return {"inic_rx_sequencer": RxSequencer, "inic_nic": Nic}


def generate_all(out_dir):
    """Write every top-level block into ``out_dir``; returns the list of paths written."""
    out_dir = Path(out_dir)
    return [write_verilog(factory(), name, out_dir / f"{name}.v")
            for name, factory in top_levels().items()]
