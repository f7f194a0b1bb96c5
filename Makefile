# Two commands for a fresh machine: `make run` and `make test`. Everything else is set up on demand.
PYTHON ?= python3
HOST ?= 127.0.0.1
PORT ?= 8000
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup run test lint bench lock clean

setup: $(STAMP)

# Installs exactly what requirements.lock pins. llama-cpp-python is compiled once for a portable
# CPU baseline (scripts/build-llama: x86-64-v3 or armv8-a, no AVX-512 or AMX; ~7-20 min on two
# cores) and kept in a cache keyed by its build flags, never in pip's own wheel cache.
$(STAMP): requirements.lock pyproject.toml scripts/build-llama
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	scripts/build-llama $(BIN)/python
	$(BIN)/python -m pip install --quiet -r requirements.lock
	touch $@

run: setup
	$(BIN)/chainlit run app.py --host $(HOST) --port $(PORT) --headless

test: setup
	scripts/ensure-chromium
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

bench: setup
	$(BIN)/python bench/stream.py
	$(BIN)/python bench/ledger.py
	$(BIN)/python bench/turns.py
	$(BIN)/python bench/payments.py
	$(BIN)/python bench/crypto.py
	$(BIN)/python bench/images.py
	$(BIN)/python bench/tasks.py

# Re-resolve the pins from pyproject.toml's ranges (needs the package index).
lock:
	rm -rf /tmp/lock-venv && $(PYTHON) -m venv /tmp/lock-venv
	/tmp/lock-venv/bin/pip install --quiet --upgrade pip
	/tmp/lock-venv/bin/pip install --quiet -e '.[dev]'
	/tmp/lock-venv/bin/pip freeze --exclude-editable | sed '/^-e /d' > requirements.lock

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
