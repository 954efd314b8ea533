# Benchmarks (see benchmarks/RESULTS.md). Needs the project installed:
#   python3 -m venv .venv && .venv/bin/pip install -e '.[test]'
PYTHON ?= $(if $(wildcard .venv/bin/python),.venv/bin/python,python3)

.PHONY: bench bench-quick

# Every benchmark, 3 runs each, each under its own time limit (about 10 minutes in
# all); writes benchmarks/results/*.json and the table in benchmarks/RESULTS.md.
bench:
	$(PYTHON) benchmarks/run_all.py

# One small run of each, to check that they work (about 2 minutes).
bench-quick:
	$(PYTHON) benchmarks/run_all.py --quick
