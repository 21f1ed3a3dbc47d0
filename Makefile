# wardwatch — the two commands of the README are `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test lint typecheck check services venv clean bench

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV) || { apt-get update -q && apt-get install -y -q python3-venv && $(PYTHON) -m venv $(VENV); }
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	@touch $(STAMP)

venv: $(STAMP)

## Run the whole chain on the embedded store (SQLite), no external service.
demo: $(STAMP)
	$(VENV)/bin/wardwatch demo $(ARGS)

services:
	bash scripts/setup-services.sh

## Whole test suite, on real mosquitto and real PostgreSQL+TimescaleDB.
test: $(STAMP) services
	$(PY) -m pytest $(PYTEST_ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

typecheck: $(STAMP)
	$(VENV)/bin/mypy

check: lint typecheck test

bench: $(STAMP) services
	$(PY) bench/gateway.py --quick

clean:
	rm -rf $(VENV) .cache build *.egg-info
