# Quick start: `make demo` (set up .venv, make a dataset, train, evaluate), then `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: demo setup test test-slow lint bench-setup bench bench-quick clean

demo: setup
	$(BIN)/offrl demo

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $@

# Two xdist workers (compiling is mostly single-threaded): a test file per worker, so module
# fixtures are built once, but test_learning.py spread test by test; they share one JAX
# compilation cache (tests/conftest.py). TEST_WORKERS=0: one process.
TEST_WORKERS ?= 2
test: setup
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/python -m pytest -q --durations=20 $(if $(filter 0,$(TEST_WORKERS)),,-n $(TEST_WORKERS) --dist loadgroup)

# Long learning tests (marked slow), not run by CI.
test-slow: setup
	$(BIN)/python -m pytest -q -m slow

lint: setup
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks

# d3rlpy comparison: a separate venv, torch's CPU wheel pinned (a plain `torch` pulls CUDA).
bench-setup: setup
	$(PYTHON) -m venv .venv-bench
	.venv-bench/bin/python -m pip install --quiet --upgrade pip
	.venv-bench/bin/python -m pip install --quiet -e .
	.venv-bench/bin/python -m pip install --quiet torch==2.13.0
	.venv-bench/bin/python -m pip install --quiet -e '.[bench]'

bench:
	$(if $(wildcard .venv-bench/bin/python),.venv-bench/bin/python,$(BIN)/python) benchmarks/speed.py

# The quick benchmark suite (about an hour on 2 cores), then its tables and HTML report.
bench-quick: setup
	$(BIN)/offrl bench run benchmarks/specs/quick.yaml
	$(BIN)/offrl bench table runs/bench/quick
	$(BIN)/offrl bench report runs/bench/quick

clean:
	rm -rf $(VENV) .venv-bench runs
