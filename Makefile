# flowbook: `make demo` (everything against the simulator), `make run` (live exchanges),
# `make test` (the whole suite), `make bench` (the latency/throughput benchmark).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: install demo run test test-fast lint fmt bench status clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

demo: install
	$(BIN)/python -m services.supervise demo

run: install
	$(BIN)/python -m services.supervise run

test: install
	$(BIN)/python -m pytest -q -ra tests

test-fast: install
	$(BIN)/python -m pytest -q -ra tests/unit

lint: install
	$(BIN)/ruff check common services tests
	$(BIN)/ruff format --check common services tests

fmt: install
	$(BIN)/ruff check --fix common services tests
	$(BIN)/ruff format common services tests

status:
	$(BIN)/supervisorctl -c deploy/supervisord.conf status

clean:
	rm -rf run .pytest_cache
