# Two commands on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
EXP ?= exp/demo

.PHONY: install demo test lint clean

install: $(STAMP)

# torch first, pinned to the CPU wheel (an unpinned torch would pull a CUDA build),
# then the package in editable mode with its dev tools. Re-runs only when these change.
$(STAMP): pyproject.toml Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet torch==2.13.0
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: install
	$(MAKE) -C recipes/allison all PY=$(abspath $(BIN))/python VOCODER=$(abspath $(BIN))/vocoder EXP=$(abspath $(EXP))

test: install
	$(BIN)/python -m pytest -q

lint: install
	$(BIN)/ruff check src tests
	$(BIN)/ruff format --check src tests

clean:
	rm -rf $(VENV) exp build src/*.egg-info
