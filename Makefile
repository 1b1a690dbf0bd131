# Two commands on a fresh machine: `make run` sets everything up and runs an example; `make test` runs every test.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
SUDO   := $(if $(filter 0,$(shell id -u)),,sudo)

.PHONY: run test bench bench-quick example-studio clean

run: $(STAMP)
	$(BIN)/knflow run examples/hello.yaml --data '{"text": "knflow runs functions"}'

example-studio: $(STAMP)
	$(BIN)/knflow run examples/studio.py --data '{"text": "The rain stopped and the city woke up glad. We walked to the sea."}'

test: $(STAMP)
	$(BIN)/pytest

# Benchmarks: knflow against Celery (Redis) and the asyncio floor in one run; needs redis-server (apt).
BENCH_STAMP := $(VENV)/.bench-installed

bench: $(BENCH_STAMP)
	$(BIN)/python -m bench

bench-quick: $(BENCH_STAMP)
	$(BIN)/python -m bench --quick

$(BENCH_STAMP): $(STAMP)
	$(BIN)/pip install --quiet -e '.[dev,bench]'
	touch $(BENCH_STAMP)

# redis-server (Debian's) for the redis builtins' tests and the Celery baseline; everything else comes from PyPI.
$(STAMP): pyproject.toml
	command -v redis-server >/dev/null || $(SUDO) sh -c 'apt-get install -y -q redis-server || (apt-get update -q && apt-get install -y -q redis-server)'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

clean:
	rm -rf $(VENV) knflow.db knflow.db-wal knflow.db-shm .pytest_cache
