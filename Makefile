# Entry points for operators and CI. Everything a test needs is installed by these targets,
# so a fresh Debian 12 machine (root, Python 3.11) needs nothing else.
SHELL := /bin/bash
PYTHON ?= python3
VENV := $(CURDIR)/.venv
BIN := $(VENV)/bin

.PHONY: all venv devtools sysdeps demo test test-python test-collection test-molecule lint bench clean

all: test

$(BIN)/python:
	scripts/ensure-python-venv.sh "$(PYTHON)" "$(VENV)"

venv: $(BIN)/python
	scripts/install-python-deps.sh "$(VENV)" core

devtools: $(BIN)/python
	scripts/install-python-deps.sh "$(VENV)" dev

sysdeps:
	scripts/install-system-deps.sh

demo: venv
	scripts/demo.sh

lint: venv
	$(BIN)/ruff check ruroco tests bench
	$(BIN)/ruff format --check ruroco tests bench

test-python: venv sysdeps
	$(BIN)/python -m pytest -q tests bench

test-collection: devtools
	scripts/test-collection.sh

test-molecule: devtools sysdeps
	scripts/test-molecule.sh

test: lint test-python test-collection test-molecule

bench: venv sysdeps
	bench/run.sh

clean:
	rm -rf $(VENV) build dist *.egg-info .pytest_cache .ruff_cache .hypothesis
