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
	@echo "make bench   run the benchmarks (~8 min); the table goes to build/bench/results.md"
	@echo "make agents  install the pinned agent CLIs into .agents/ (and Node 22 from npm if needed)"
	@echo "make agents-latest test-latest  run the real-CLI tests against the newest published CLIs"
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

# The CLIs come from npm at the versions fixed in .agents/package-lock.json. Newer claude
# releases need Node 22+: where the system's Node is older, a Node from npm (the official
# binaries, published as node-<os>-<arch>) goes into the same node_modules/.bin, and the drivers
# put that folder first on PATH, so the CLIs (`#!/usr/bin/env node` scripts) run on it.
NODE_MIN := 22
NODE_FROM_NPM := 22.23.5
NPM_QUIET := --no-audit --no-fund --loglevel=error
agents: $(AGENTS_STAMP)

$(AGENTS_STAMP): .agents/package.json .agents/package-lock.json
	@$(MAKE) --no-print-directory node-check
	cd .agents && npm ci $(NPM_QUIET)
	@$(MAKE) --no-print-directory node-into DIR=.agents
	touch $@

.PHONY: node-check node-into agents-latest test-latest
node-check:
	@command -v node >/dev/null && command -v npm >/dev/null || { \
	  echo "node and npm are missing: install Node.js $(NODE_MIN)+ with npm (Node 20 works too:"; \
	  echo "make agents then adds Node $(NODE_FROM_NPM) from npm for the CLIs), e.g. apt-get install nodejs npm"; \
	  exit 1; }
	@major=$$(node -p 'process.versions.node.split(".")[0]'); \
	if [ "$$major" -lt 20 ]; then \
	  echo "Node $$(node --version) is too old even to install the CLIs: install Node.js $(NODE_MIN)+ (or 20 at least)"; exit 1; \
	elif [ "$$major" -lt $(NODE_MIN) ]; then \
	  echo "Node $$(node --version) is older than $(NODE_MIN), which newer claude releases need: make agents installs Node $(NODE_FROM_NPM) from npm beside the CLIs"; \
	fi

# DIR gets a Node $(NODE_MIN)+ in DIR/node_modules/.bin unless the system's Node is new enough.
node-into:
	@major=$$(node -p 'process.versions.node.split(".")[0]'); \
	if [ "$$major" -lt $(NODE_MIN) ] && ! "$(DIR)/node_modules/.bin/node" --version 2>/dev/null | grep -q '^v$(NODE_FROM_NPM)$$'; then \
	  platform=$$(node -p 'process.platform + "-" + process.arch'); \
	  echo "installing node-$$platform@$(NODE_FROM_NPM) into $(DIR)/node_modules/.bin"; \
	  cd "$(DIR)" && npm install --no-save $(NPM_QUIET) "node-$$platform@$(NODE_FROM_NPM)"; \
	fi

# The newest published CLIs and ACP adapters, in a folder of their own, to check an upgrade
# before the pins move:
# `make agents-latest test-latest` runs every real-CLI test against them.
LATEST := build/agents-latest
LATEST_CLIS := @anthropic-ai/claude-code @openai/codex @google/gemini-cli @github/copilot \
  @agentclientprotocol/claude-agent-acp @agentclientprotocol/codex-acp
agents-latest:
	@$(MAKE) --no-print-directory node-check
	mkdir -p $(LATEST)
	cd $(LATEST) && rm -rf node_modules package-lock.json && echo '{"private": true}' > package.json \
	  && npm install $(NPM_QUIET) $(addsuffix @latest,$(LATEST_CLIS))
	@$(MAKE) --no-print-directory node-into DIR=$(LATEST)
	@cd $(LATEST) && for p in $(LATEST_CLIS); do echo "$$p $$(node -p "require('$$p/package.json').version")"; done

test-latest: $(VENV_STAMP)
	ORCHESTRATOR_NB_AGENTS_DIR=$(abspath $(LATEST)) $(BIN)/pytest -m real_cli tests $(PYTEST_ARGS)

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
	$(BIN)/pytest $(NBVAL) --durations=25 tests notebooks $(PYTEST_ARGS)

test: lint typecheck pytest

clean:
	rm -rf $(VENV) .agents/node_modules build .pytest_cache .mypy_cache .ruff_cache
