# Everything a contributor runs. Each target sets up what it needs and skips work already done.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
VENV_STAMP := $(VENV)/.installed
AGENTS_STAMP := .agents/node_modules/.installed
PYTEST_ARGS ?=

.PHONY: help demo bench venv agents browser test lint typecheck pytest clean

help:
	@echo "make demo    run notebooks/01-quickstart.ipynb under rehearsal into build/demo/"
	@echo "make test    lint, type-check and run the whole test suite (sets everything up first)"
	@echo "make bench   run the benchmarks (~5 min); the table goes to build/bench/results.md"
	@echo "make agents  install the pinned agent CLIs into .agents/"
	@echo "make browser install Debian's chromium for the real-browser tests"
	@echo "make venv    create .venv and install the package with its extras"

venv: $(VENV_STAMP)

$(VENV_STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[lab,test,ray,jupyter-ai]"
	touch $@

# The main job: three real agent CLIs on one task, rehearsed (REHEARSE=None runs it for real).
REHEARSE ?= calculator
demo: $(VENV_STAMP) $(AGENTS_STAMP)
	$(BIN)/python -m orchestrator_nb.demo --rehearse $(REHEARSE)

# Benchmarks are not tests: each figure is measured against a baseline in the same run.
bench: $(VENV_STAMP) $(AGENTS_STAMP)
	$(BIN)/python bench/run_all.py

# The CLIs come from npm at the versions fixed in .agents/package-lock.json.
agents: $(AGENTS_STAMP)

$(AGENTS_STAMP): .agents/package.json .agents/package-lock.json
	@command -v npm >/dev/null || { echo "npm is missing: install Node.js 20+ (apt-get install nodejs npm) to run the agent CLIs"; exit 1; }
	cd .agents && npm ci --no-audit --no-fund --loglevel=error
	touch $@

# The real-browser tests drive Debian's Chromium through Playwright (no browser download).
CHROMIUM ?= $(shell command -v chromium || command -v chromium-browser)
browser:
	@if [ -z "$(CHROMIUM)" ]; then \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq chromium; \
	  elif command -v sudo >/dev/null; then sudo apt-get update -qq && sudo apt-get install -y -qq chromium; \
	  else echo "chromium is missing: install Debian's chromium package for the browser tests"; fi; \
	fi

lint: $(VENV_STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(VENV_STAMP)
	$(BIN)/mypy

# The notebooks run under nbval: a fresh execution must reproduce their stored outputs.
NBVAL := --nbval --nbval-sanitize-with notebooks/nbval-sanitize.cfg --nbval-cell-timeout 600
pytest: $(VENV_STAMP) $(AGENTS_STAMP) browser
	$(BIN)/pytest $(NBVAL) tests notebooks $(PYTEST_ARGS)

test: lint typecheck pytest

clean:
	rm -rf $(VENV) .agents/node_modules build .pytest_cache .mypy_cache .ruff_cache
