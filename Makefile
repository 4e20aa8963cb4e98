# flowbook: `make demo` (everything against the simulator), `make run` (live exchanges),
# `make test` (the whole suite), `make bench` (the latency/throughput benchmark).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
WEB    := services/gateway/web
WEBSTAMP := $(WEB)/dist/index.html
BENCH_ARGS ?=

.PHONY: install web browser demo run test test-fast lint fmt bench soak status clean

$(STAMP): pyproject.toml
	@# a venv without pip gets it (ensurepip); one python3 -m venv left half-made (no
	@# python3-venv on Debian: no ensurepip either) is made again
	$(BIN)/python -m pip --version >/dev/null 2>&1 || $(BIN)/python -m ensurepip >/dev/null 2>&1 \
	  || { rm -rf $(VENV) && $(PYTHON) -m venv $(VENV); }
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

# The dashboard (Vue 3 + TypeScript + Vite), served by the gateway from $(WEB)/dist.
$(WEB)/node_modules/.package-lock.json: $(WEB)/package-lock.json
	@node -e 'const [a,b]=process.versions.node.split(".").map(Number); process.exit(a>22||(a===22&&b>=12)||(a===20&&b>=19)?0:1)' \
	  || { echo "the dashboard needs Node.js 20.19+ or 22.12+ (Vite 8); this is $$(node --version 2>/dev/null || echo none): see the README"; exit 1; }
	cd $(WEB) && npm ci --no-audit --no-fund
	touch $@

$(WEBSTAMP): $(WEB)/node_modules/.package-lock.json $(shell find $(WEB)/src $(WEB)/index.html $(WEB)/vite.config.ts -type f 2>/dev/null)
	cd $(WEB) && npm run build

web: $(WEBSTAMP)

# Headless Chromium from Debian for the browser tests (Playwright's own download is not used).
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  echo "installing chromium (Debian package) for the browser tests"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; }

demo: install web
	$(BIN)/python -m services.supervise demo

run: install web
	$(BIN)/python -m services.supervise run

test: install web browser
	cd $(WEB) && npm test --silent
	$(BIN)/python -m pytest -q -ra tests

test-fast: install
	$(BIN)/python -m pytest -q -ra tests/unit

bench: install
	$(BIN)/python -m pip install -q -e '.[test,bench]'
	$(BIN)/python -m tests.bench.run $(BENCH_ARGS)

lint: install
	$(BIN)/ruff check common services tests examples
	$(BIN)/ruff format --check common services tests examples

fmt: install
	$(BIN)/ruff check --fix common services tests examples
	$(BIN)/ruff format common services tests examples

# 10 minutes of the demo stack at a high simulator rate, printing every process's RSS and trend.
SOAK_ARGS ?= --minutes 10 --rate 300
soak: install
	$(BIN)/python scripts/soak.py $(SOAK_ARGS)

status:
	$(BIN)/supervisorctl -c deploy/supervisord.conf status

clean:
	rm -rf run .pytest_cache $(WEB)/dist
