"""inic simulation side: reference models, bus models, cocotb testbenches, runner and CLI glue."""
