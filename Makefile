# smartplexd — make demo · make test · make lint · make bench · make image-test
# Every target creates .venv (and installs the project with its dev extras) when it is missing.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp

.PHONY: venv demo test lint format bench image-test docs clean

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

venv: $(STAMP)

## Start every simulated server, the daemon against them, and print the status page URL.
demo: $(STAMP)
	$(BIN)/smartplexd demo

## The whole test suite (real SQLite, real HTTP on 127.0.0.1, real Chromium). Fails when no test ran.
test: $(STAMP)
	$(BIN)/python -m pytest

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

## Benchmarks write their sections of docs/benchmarks.md.
bench: $(STAMP)
	@set -e; for f in bench/bench_*.py; do echo "== $$f"; $(BIN)/python $$f; done

## Build the container image with podman and check it for real (slow; see docs/getting-started.md).
image-test: $(STAMP)
	bash scripts/image-test.sh

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache build *.egg-info
