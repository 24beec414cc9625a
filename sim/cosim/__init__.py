"""Co-simulation of the generated Verilog with cocotb on Icarus: build/run helpers, testbenches and
the user-facing flows built on them (``inic replay``, ``inic demo``, ``inic bench``, waves)."""
