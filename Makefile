# Every target creates or reuses .venv and node_modules; nothing needs to be installed beforehand
# except Python 3.11 or newer (python3.11, or the first of python3.12...python3.14, python3 that is 3.11+), Node.js
# (with npm) and make.
SHELL := /bin/bash
# The first of python3.11, python3.12, python3.13, python3.14, python3 that exists and is 3.11 or newer.
PYTHON ?= $(firstword $(foreach p,python3.11 python3.12 python3.13 python3.14 python3,$(if $(shell command -v $(p) >/dev/null 2>&1 && $(p) -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null && echo ok),$(p))) python3.11)
VENV := .venv
export PATH := $(CURDIR)/$(VENV)/bin:$(CURDIR)/node_modules/.bin:$(PATH)
export CDK_DISABLE_CLI_TELEMETRY := true
export JSII_SILENCE_WARNING_DEPRECATED_NODE_VERSION := 1
export JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION := 20
export PIP_DISABLE_PIP_VERSION_CHECK := 1

.PHONY: install lint test test-fast test-e2e demo synth bench clean

install: $(VENV)/.installed node_modules/.installed

$(VENV)/.installed: requirements.txt requirements-dev.txt processing/requirements.txt
	test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet -r requirements-dev.txt
	touch $@

node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

## Lint (settings and the reasons for them in pyproject.toml): ruff over the repository's Python, mypy --strict over
## processing/, contract/ and infra/ in one run, the Lambda asset's packages (infra/lambdas/: trigger, metrics,
## lambda_shared) included under the module names the zip gives them (pyproject.toml's mypy_path).
lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy

## Lint, then the whole suite: unit layers, template checks (cdk-nag, cfn-lint) and end-to-end tests in the local cloud.
test: lint
	$(VENV)/bin/python -m pytest

## Fast layers only (no local cloud): seconds.
test-fast: install
	$(VENV)/bin/python -m pytest -m "not e2e"

test-e2e: install
	$(VENV)/bin/python -m pytest -m e2e

## Generate the reference dataset, deploy into the local cloud, upload, report.
demo: install
	$(VENV)/bin/python -m localcloud.demo --out demo-output

synth: install
	cdk synth -q

## Benchmark (not part of `make test`): see bench/README.md.
bench: install
	$(VENV)/bin/python -m bench

clean:
	rm -rf cdk.out demo-output .pytest_cache
