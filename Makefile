# Settle: the two commands that matter are `make run` and `make test`.
# Both create the virtualenv and install the locked dependencies first.

PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=

.PHONY: run test lint lock audit-deps clean browser help

help:
	@echo "make run    - serve the portal with a seeded demo clinic (SQLite, localstripe, local KMS)"
	@echo "make test   - run the whole test suite"
	@echo "make lint   - ruff and mypy"
	@echo "make lock   - re-pin requirements/*.txt from requirements/*.in"

$(STAMP): requirements/base.txt requirements/dev.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet --require-hashes -r requirements/base.txt -r requirements/dev.txt
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/python -m portal.devstack

# Browser tests drive Debian's Chromium; install it when it is missing and we may.
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "Installing Debian's chromium for the browser tests"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	  else echo "chromium not found: browser tests will be skipped (they are required under CI)"; fi; }

test: $(STAMP) browser
	$(BIN)/python -m tests.runner $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

audit-deps: $(STAMP)
	$(BIN)/pip-audit --strict --disable-pip -r requirements/base.txt
	$(BIN)/bandit -q -c pyproject.toml -r portal billing security audit messaging

lock:
	$(BIN)/python -m pip install --quiet uv
	cd requirements && ../$(BIN)/uv pip compile --python-version 3.11 --generate-hashes -q base.in -o base.txt
	cd requirements && ../$(BIN)/uv pip compile --python-version 3.11 --generate-hashes -q dev.in -o dev.txt

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache var/
