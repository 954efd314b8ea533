# Benchmarks (see benchmarks/RESULTS.md). Needs the project installed:
#   python3 -m venv .venv && .venv/bin/pip install -e '.[test]'
PYTHON ?= $(if $(wildcard .venv/bin/python),.venv/bin/python,python3)

.PHONY: bench bench-deps bench-quick

# The `bench` extra first: the peers some benchmarks compare with (Celery + Redis client).
bench-deps:
	$(PYTHON) -m pip install -q -e '.[bench]'

# Every benchmark, 3 runs each, each under its own time limit (about 12 minutes in
# all); writes benchmarks/results/*.json and the table in benchmarks/RESULTS.md.
bench: bench-deps
	$(PYTHON) benchmarks/run_all.py

# One small run of each, to check that they work (about 3 minutes).
bench-quick: bench-deps
	$(PYTHON) benchmarks/run_all.py --quick
