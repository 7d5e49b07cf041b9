# Developer entry points. `make test` is what CI runs (through .ci/run).
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: setup browser lint types unit test compiled dev bench clean

setup:
	./scripts/bootstrap

# setup, plus Debian's chromium for the dashboard's browser test
browser:
	./scripts/bootstrap --browser

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

types: setup
	$(VENV)/bin/mypy

unit: setup
	$(PY) -m pytest -m "not integration"

test: browser lint types
	$(PY) -m pytest
	./scripts/compiled-check --no-compare

# The scoring core compiled with mypyc: its tests, and the same bytes as the pure package.
compiled: setup
	./scripts/compiled-check

dev: setup
	$(VENV)/bin/engagement-scorer dev

# the benchmark; `make bench ARGS=--quick` for the short run (docs/performance.md)
bench: setup
	$(PY) benchmarks/run.py $(ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache artifacts build
