#!/usr/bin/env bash
# What the dashboard's browser tests (tests/browser) need beyond `pip install -e '.[test]'`:
#   * Debian's Chromium (/usr/bin/chromium). Playwright's own browser download
#     (`playwright install`) needs the internet and does not work here: never run it.
#   * the Python package playwright, which drives that Chromium (its node driver ships in the
#     wheel); skipped when it is already importable (e.g. from the project's test extras).
# Idempotent. Run as root (CI is), or with sudo available.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-.venv/bin/python}"

if ! command -v chromium >/dev/null 2>&1; then
    SUDO=""
    [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    $SUDO apt-get update -q
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q chromium
fi
chromium --version 2>/dev/null || true

if ! "$PY" -c "import playwright.sync_api" >/dev/null 2>&1; then
    "$PY" -m pip install -q "playwright>=1.45"
fi
"$PY" -c "import playwright; from importlib.metadata import version; print('playwright', version('playwright'))"
