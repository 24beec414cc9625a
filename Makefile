# Thin wrappers around scripts/setup.sh and the `inic` command (sim/cli.py). Every target sets up
# what it needs first; the setup is a no-op when nothing changed (see scripts/setup.sh).

VENV   := .venv
PY     := $(VENV)/bin/python
INIC   := $(VENV)/bin/inic
# Test workers: one Icarus simulation per core; the project's machines have two.
JOBS   ?= 2
PYTEST_ARGS ?=

.PHONY: help setup setup-synth demo test verilog waves synth bench lint clean

help:
	@echo "make setup    create .venv/ and install inic (and Icarus Verilog if missing)"
	@echo "make demo     scripted end-to-end run on the RTL: summary table and an FST waveform"
	@echo "make test     the whole test suite ($(JOBS) workers; PYTEST_ARGS=... passes options)"
	@echo "make verilog  Verilog for every block into build/verilog/"
	@echo "make waves    write the waveforms and GTKWave save files into build/waves/"
	@echo "make synth    ECP5 synthesis + place-and-route: LUT/FF/BRAM and Fmax (build/synth/)"
	@echo "make bench    throughput and latency in clock cycles"
	@echo "make lint     ruff"
	@echo "make clean    remove build products (keeps .venv/)"

setup:
	@scripts/setup.sh

setup-synth:
	@scripts/setup.sh --synth

demo: setup
	$(INIC) demo

# worksteal: an idle worker takes half of another's queue (the suite runs longest first:
# tests/conftest.py), so the workers end together.
test: setup
	$(PY) -m pytest -n $(JOBS) --dist worksteal $(PYTEST_ARGS)

verilog: setup
	$(INIC) verilog --out build/verilog

waves: setup
	$(INIC) waves

synth: setup-synth
	$(INIC) synth

bench: setup
	$(INIC) bench

lint: setup
	$(VENV)/bin/ruff check .

clean:
	rm -rf build sim_build .pytest_cache .ruff_cache results.xml
	find . -path ./$(VENV) -prune -o -name __pycache__ -type d -prune -exec rm -rf {} +
