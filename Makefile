# Shoal: the two commands a newcomer needs are `make run` and `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-test

.PHONY: run test test-fast test-stack lint format system-packages bench clean

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip

$(STAMP): pyproject.toml | $(VENV)/bin/python
	$(PY) -m pip install -q -e '.[test]'
	touch $@

# Debian packages the tests need (tgt, libiscsi, xfsprogs, user-mode-linux, ...); only as root.
system-packages:
	@bash tests/system/install-packages.sh

## make run: install Shoal and start the all-in-one cluster (or the ring demo until it exists)
run: | $(VENV)/bin/python
	$(PY) -m pip install -q -e .
	$(VENV)/bin/shoal aio

## make test: the whole default suite (lint, unit, integration, cluster, block)
test: $(STAMP) system-packages lint
	$(PY) -m pytest

## make test-stack: real Cinder control plane (Keystone, RabbitMQ, cinder-api/scheduler/volume) on blockd; ~1 min warm, not in make test
test-stack: $(STAMP) system-packages
	@test -x /usr/lib/rabbitmq/bin/rabbitmq-server || apt-get install -y -q --no-install-recommends rabbitmq-server
	SHOAL_CINDER_STACK=1 $(PY) -m pytest tests/cinder/test_stack.py

test-fast: $(STAMP) lint
	$(PY) -m pytest -m "not slow and not root"

lint: $(STAMP)
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

format: $(STAMP)
	$(PY) -m ruff check --fix .
	$(PY) -m ruff format .

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
