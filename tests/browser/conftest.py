"""Fixtures of the dashboard's browser tests: the built dashboard, headless Chromium driven by
Playwright (the Python package, with the system's Chromium: Playwright's own browser download
does not work offline), and the screenshot folder.

Environment: ``FLOWBOOK_CHROMIUM`` (path of the browser, default ``chromium`` on PATH),
``FLOWBOOK_WEB_BUILD=0`` to never build the dashboard here (``make web`` does it).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.procs import ROOT

WEB = ROOT / "services" / "gateway" / "web"
DIST = WEB / "dist"
ARTIFACTS = ROOT / "tests" / "artifacts"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--force-color-profile=srgb",
]


def _required() -> bool:
    """CI (``.ci/run`` sets FLOWBOOK_REQUIRE_BROWSER=1) must run the browser suite, not skip it."""
    return bool(os.environ.get("CI") or os.environ.get("FLOWBOOK_REQUIRE_BROWSER"))


def _missing(what: str) -> None:
    """Skip on a developer machine without the browser stack; fail in CI, where it must be."""
    if _required():
        pytest.fail(f"browser tests need {what}")
    pytest.skip(f"browser tests need {what}")


def _stale(dist_index: Path) -> bool:
    if not dist_index.is_file():
        return True
    built = dist_index.stat().st_mtime
    sources = [WEB / "index.html", WEB / "package.json", WEB / "vite.config.ts"]
    sources += [p for p in (WEB / "src").rglob("*") if p.is_file() and ".test." not in p.name]
    return any(p.stat().st_mtime > built for p in sources if p.exists())


@pytest.fixture(scope="session")
def web_dist() -> Path:
    """The built dashboard; built here if missing or older than its sources."""
    index = DIST / "index.html"
    if _stale(index) and os.environ.get("FLOWBOOK_WEB_BUILD", "1") != "0":
        npm = shutil.which("npm")
        if npm is None:
            if index.is_file() and not _required():
                return DIST  # a developer machine: test the (older) build it has
            _missing("npm to build services/gateway/web (or run `make web` first)")
        if not (WEB / "node_modules").is_dir():
            subprocess.run([npm, "ci", "--no-audit", "--no-fund"], cwd=WEB, check=True)
        subprocess.run([npm, "run", "build"], cwd=WEB, check=True)
    if not index.is_file():
        _missing("the built dashboard: run `make web`")
    return DIST


def chromium_path() -> str | None:
    explicit = os.environ.get("FLOWBOOK_CHROMIUM")
    if explicit:
        return explicit
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    return None


@pytest.fixture(scope="package")
def browser() -> Iterator[Any]:
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _missing("the Python package playwright (pip install playwright; no `playwright install`)")
    exe = chromium_path()
    if exe is None:
        _missing("Chromium (apt-get install -y chromium)")
    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=exe, headless=True, args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            b.close()


@pytest.fixture(scope="session")
def artifacts() -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS


class PageLog:
    """Console errors and page errors of a page, to assert there were none."""

    def __init__(self, page: Any) -> None:
        self.errors: list[str] = []
        page.on("pageerror", lambda e: self.errors.append(f"pageerror: {e}"))
        page.on(
            "console",
            lambda m: (
                self.errors.append(f"console.{m.type}: {m.text}")
                if m.type == "error"
                and not ("WebSocket connection to" in m.text and "failed" in m.text)
                and "Failed to load resource" not in m.text
                else None
            ),
        )
