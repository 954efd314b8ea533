# Benchmarks (see benchmarks/RESULTS.md). Needs the project installed:
#   python3 -m venv .venv && .venv/bin/pip install -e '.[test]'
PYTHON ?= $(if $(wildcard .venv/bin/python),.venv/bin/python,python3)

.PHONY: bench bench-deps bench-quick lint lint-deps typecheck-view

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

# ruff and mypy as pinned in the `lint` extra; a check of its own, not one of the tests.
lint-deps:
	$(PYTHON) -m pip install -q -e '.[lint]'

# The package as mypy must see it (see [tool.mypy] in pyproject.toml): links to core/'s
# entries in workyard/, and sim/ as workyard/sim, laid anew so that new modules count.
TYPECHECK_VIEW := build/typecheck
typecheck-view:
	rm -rf $(TYPECHECK_VIEW)
	mkdir -p $(TYPECHECK_VIEW)/workyard
	ln -s $(CURDIR)/core/* $(TYPECHECK_VIEW)/workyard/
	ln -s $(CURDIR)/sim $(TYPECHECK_VIEW)/workyard/sim

# Both linters; mypy's paths are told back as the files' own (core/..., sim/...).
lint: SHELL := bash
lint: .SHELLFLAGS := -o pipefail -c
lint: lint-deps typecheck-view
	$(PYTHON) -m ruff check core sim tests benchmarks loadtest
	$(PYTHON) -m mypy | sed -e 's|^$(TYPECHECK_VIEW)/workyard/sim/|sim/|' \
	    -e 's|^$(TYPECHECK_VIEW)/workyard/|core/|'
