# Latchkey: `make run` starts the whole system locally, `make test` passes the tests.
# Every target sets up what it needs. `synth`, `lint`, `deploy` and `lock` need only Python and Node;
# `run`, `test`, `fuzz` and `bench` also install the Debian packages of the local cloud (mosquitto, Chromium).

SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
# Extra arguments for `cdk deploy`, e.g. make deploy CDK_ARGS="-c alarmEmail=ops@example.org"
CDK_ARGS ?=

export JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION := 20
export CDK_DISABLE_CLI_TELEMETRY := true
export PYTHONDONTWRITEBYTECODE := 1
CDK := npx --no-install cdk --no-notices

.PHONY: setup python-deps system-deps run test lint fuzz synth deploy lock bench clean

# pip without -q: the first setup downloads a few hundred MB, and a person should see it move.
$(STAMP): requirements.txt lambdas/requirements.txt pyproject.toml
	@echo "==> [1/3] Python virtual environment in $(VENV)"
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install --disable-pip-version-check --upgrade pip
	@echo "==> [2/3] Python packages (requirements.txt; the first time takes a few minutes)"
	$(VENV)/bin/pip install --disable-pip-version-check --progress-bar on -r requirements.txt
	@echo "==> [3/3] Latchkey itself (editable)"
	$(VENV)/bin/pip install --disable-pip-version-check --no-deps -e .
	touch $(STAMP)

node_modules/.installed: package.json
	@echo "==> Node packages (the pinned CDK CLI)"
	npm install --no-audit --no-fund
	touch $@

python-deps: $(STAMP) node_modules/.installed

# mosquitto is the local IoT Core broker; Chromium drives the browser tests. Only the local cloud needs them.
system-deps:
	@missing=""; \
	[ -x /usr/sbin/mosquitto ] || command -v mosquitto >/dev/null || missing="$$missing mosquitto"; \
	[ -x /usr/bin/chromium ] || missing="$$missing chromium"; \
	command -v openssl >/dev/null || missing="$$missing openssl"; \
	if [ -n "$$missing" ]; then \
	  echo "==> Debian packages:$$missing"; \
	  $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $$missing >/dev/null; \
	fi

setup: python-deps system-deps

run: setup
	$(PY) -m local

test: setup
	$(VENV)/bin/ruff check .
	PYTHONPATH=$(CURDIR) $(VENV)/bin/lint-imports --no-cache
	$(VENV)/bin/mypy
	$(PY) -m pytest -n 2 --dist loadgroup

fuzz: setup
	$(PY) -m pytest -m fuzz -p no:xdist

lint: python-deps
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	PYTHONPATH=$(CURDIR) $(VENV)/bin/lint-imports --no-cache
	$(VENV)/bin/mypy

# Template checks only: the function asset is `lambdas/` without its dependencies (no network, no AWS).
synth: python-deps
	$(CDK) synth --quiet -c bundle=false
	$(VENV)/bin/cfn-lint cdk.out/*.template.json

# Bootstraps the account and region of your credentials when needed, then deploys (infrastructure/deploy.py).
deploy: python-deps
	$(PY) -m infrastructure.deploy $(CDK_ARGS)

# The Lambda dependencies, pinned with hashes for the Lambda platform (arm64, CPython 3.14).
lock: python-deps
	$(VENV)/bin/uv pip compile lambdas/requirements.txt --python-platform aarch64-manylinux2014 \
	    --python-version 3.14 --only-binary :all: --generate-hashes --custom-compile-command "make lock" \
	    --upgrade -o lambdas/requirements.lock

bench: setup
	$(PY) -m bench
	$(PY) -m cli.main simulate --devices 1000000 --days 30 --plot test-artifacts/fleet.png

clean:
	rm -rf cdk.out .build .run .pytest_cache .mypy_cache .ruff_cache test-artifacts
