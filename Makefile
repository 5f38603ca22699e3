# optlab developer commands. Everything runs in one virtual environment, .venv.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
BASE   := $(VENV)/.installed-base
STAMP  := $(VENV)/.installed
PYTEST_ARGS ?=

.PHONY: help install demo test lint format bench clean

help:
	@echo "make demo   - set up and run the SVM vs softmax comparison (MLflow store: ./mlflow.db)"
	@echo "make test   - set up and run the whole test suite"
	@echo "make lint   - ruff (lint + format check) and mypy on optlab/ and plugins/"
	@echo "make bench  - the benchmark suite (writes bench-results.json)"

# the demo needs optlab alone; the tests, lint and benchmarks the extras too
$(BASE): pyproject.toml setup.py optlab/_kernels.c
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e .
	touch $(BASE)

$(STAMP): pyproject.toml setup.py optlab/_kernels.c
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

test: $(STAMP)
	$(BIN)/python -m pytest -n 2 $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check optlab plugins tests
	$(BIN)/ruff format --check optlab plugins tests
	$(BIN)/mypy optlab plugins

format: $(STAMP)
	$(BIN)/ruff format optlab plugins tests
	$(BIN)/ruff check --fix optlab plugins tests

bench: $(STAMP)
	# byte-compiled first, as an installed wheel is (start-up is one of the figures; an
	# editable install is otherwise compiled on every start where PYTHONDONTWRITEBYTECODE is set)
	$(BIN)/python -m compileall -q optlab plugins
	$(BIN)/python -m benchmarks

clean:
	rm -rf $(VENV) build dist *.egg-info .mypy_cache .ruff_cache .pytest_cache
