# The one entry point, locally and in CI. Every target that needs the toolchain runs `setup` first.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION := 20
export CDK_DISABLE_CLI_TELEMETRY := true

.PHONY: setup test lint typecheck unit image demo local bench synth clean

setup: $(STAMP) node_modules/.installed

# Idempotent: reinstalls only when the pins change.
$(STAMP): pyproject.toml requirements.lock
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade "pip==25.3"
	$(BIN)/python -m pip install --quiet -c requirements.lock -e ".[dev,lambda]"
	touch $@

node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	PYTHONPATH=.:functions $(BIN)/lint-imports --no-cache

typecheck: setup
	$(BIN)/mypy

unit: setup
	$(BIN)/pytest -n 2 --dist loadgroup

# The runner image (functions/Dockerfile, unchanged) built with podman from a locally bootstrapped base.
IMAGE := localhost/backstop-runner:local
export BACKSTOP_IMAGE := $(IMAGE)

image:
	bash image/build.sh $(IMAGE)

# `make test` (and so CI) builds the image and runs its test: there, a machine that cannot is a failure, not a skip.
test: export BACKSTOP_IMAGE_TEST := required
test: lint typecheck image unit

demo: setup
	$(BIN)/python -m local.demo

local: setup
	$(BIN)/python -m local.serve

bench: setup
	$(BIN)/python -m bench.run

synth: setup
	npx cdk synth --quiet

clean:
	rm -rf $(VENV) node_modules cdk.out .local .mypy_cache .ruff_cache .pytest_cache
