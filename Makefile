# Latchkey: `make run` starts the whole system locally, `make test` passes the tests.
# Every target sets up what it needs: the virtual environment, Debian packages, the pinned CDK CLI.

SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

export JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION := 20
export CDK_DISABLE_CLI_TELEMETRY := true
export PYTHONDONTWRITEBYTECODE := 1
CDK := npx --no-install cdk --no-notices

.PHONY: setup system-deps run test lint fuzz synth deploy bench clean

$(STAMP): requirements.txt lambdas/requirements.txt pyproject.toml
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	$(VENV)/bin/pip install -q -r requirements.txt
	$(VENV)/bin/pip install -q --no-deps -e .
	touch $(STAMP)

node_modules/.installed: package.json
	npm install --no-audit --no-fund --loglevel=error
	touch $@

# mosquitto is the local IoT Core broker; Chromium drives the browser tests.
system-deps:
	@missing=""; \
	[ -x /usr/sbin/mosquitto ] || command -v mosquitto >/dev/null || missing="$$missing mosquitto"; \
	[ -x /usr/bin/chromium ] || missing="$$missing chromium"; \
	command -v openssl >/dev/null || missing="$$missing openssl"; \
	if [ -n "$$missing" ]; then \
	  echo "Installing Debian packages:$$missing"; \
	  $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $$missing >/dev/null; \
	fi

setup: $(STAMP) system-deps node_modules/.installed

run: setup
	$(PY) -m local

test: setup
	$(VENV)/bin/ruff check .
	$(PY) -m pytest -n 2 --dist loadgroup

fuzz: setup
	$(PY) -m pytest -m fuzz -p no:xdist

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

synth: setup
	$(CDK) synth --quiet
	$(VENV)/bin/cfn-lint cdk.out/*.template.json

deploy: setup
	$(CDK) deploy --require-approval broadening

bench: setup
	$(PY) -m bench
	$(PY) -m cli.main simulate --devices 1000000 --days 30 --plot test-artifacts/fleet.png

clean:
	rm -rf cdk.out .build .run .pytest_cache .mypy_cache .ruff_cache test-artifacts
