# optlab developer commands. Everything runs in one virtual environment, .venv.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
BASE   := $(VENV)/.installed-base
STAMP  := $(VENV)/.installed
PYTEST_ARGS ?=

.PHONY: help install demo test test-numpy lint format bench clean

help:
	@echo "make demo   - set up and run the SVM vs softmax comparison (MLflow store: ./mlflow.db)"
	@echo "make test   - set up and run the whole test suite"
	@echo "make test-numpy - the numerics and training tests without the compiled backend"
	@echo "make lint   - ruff (lint + format check) and mypy on optlab/ and plugins/"
	@echo "make bench  - the benchmark suite (writes bench-results.json)"

# the demo needs optlab alone; the tests, lint and benchmarks the extras too
$(BASE): pyproject.toml setup.py plugins/compiled/_kernels.c
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e .
	touch $(BASE)

$(STAMP): pyproject.toml setup.py plugins/compiled/_kernels.c
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test,lint,dask]'
	touch $(BASE) $(STAMP)

install: $(STAMP)

demo: $(BASE)
	$(BIN)/optlab run experiments/svm_vs_softmax.yaml
	@echo
	@echo "Open the comparison in the MLflow UI:  $(BIN)/optlab ui   (it prints the link to open)"
	@echo "Or print it again:                      $(BIN)/optlab compare svm_vs_softmax"

# byte-compiled first: where PYTHONDONTWRITEBYTECODE is set (as on the CI machine) an editable
# install is otherwise compiled again by each of the hundred-odd processes the tests start
# (about 0.4 s of a core each); compileall writes the .pyc files whatever that variable says
COMPILE := $(BIN)/python -m compileall -q optlab plugins
# pytest rewrites the asserts of every test module it imports (about 7 s of a core for the
# suite, in each xdist worker) and keeps the result in tests/__pycache__ only where
# PYTHONDONTWRITEBYTECODE is unset; it reads a kept one back whatever that variable says. The
# tests run with it unset: the rewriting is done once per change of a test file, not per worker
# and run (make test-numpy after make test, as CI runs them, reads them back too)
PYTEST := PYTHONDONTWRITEBYTECODE= $(BIN)/python -m pytest

test: $(STAMP)
	$(COMPILE)
	$(PYTEST) -n 2 --dist worksteal $(PYTEST_ARGS)

# the numerics and training tests again as on a machine without the compiled backend (no C
# compiler, not x86-64): the plugin is disabled, so every run trains on the numpy backend
NUMERICS_TESTS := tests/test_losses.py tests/test_regularizers.py tests/test_optimizers.py \
	tests/test_fastpath.py tests/test_batches.py tests/test_checks.py tests/test_conformance.py \
	tests/test_runner.py tests/test_reproducibility.py tests/test_experiments.py \
	tests/test_parallel.py tests/test_data_prepare.py
test-numpy: $(STAMP)
	$(COMPILE)
	OPTLAB_DISABLE_PLUGINS=compiled $(PYTEST) -n 2 --dist worksteal $(NUMERICS_TESTS) $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check optlab plugins tests
	$(BIN)/ruff format --check optlab plugins tests
	$(BIN)/mypy optlab plugins

format: $(STAMP)
	$(BIN)/ruff format optlab plugins tests
	$(BIN)/ruff check --fix optlab plugins tests

bench: $(STAMP)
	# byte-compiled first, as an installed wheel is (start-up is one of the figures)
	$(COMPILE)
	$(BIN)/python -m benchmarks

clean:
	rm -rf $(VENV) build dist *.egg-info .mypy_cache .ruff_cache .pytest_cache
