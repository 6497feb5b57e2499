# Two entry points for a fresh machine: `make quickstart` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: setup quickstart test bench clean-runs

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	@$(PYTHON) -c 'import sys; assert sys.version_info[:2] == (3, 11), "specsweep needs Python 3.11 (set PYTHON=...)"'
	test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --upgrade --quiet pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@

quickstart: setup
	$(BIN)/specsweep run sweeps/quickstart.yaml

test: setup
	$(BIN)/python -m pytest

bench: setup
	$(BIN)/python -m bench.run_all

clean-runs:
	rm -rf runs
