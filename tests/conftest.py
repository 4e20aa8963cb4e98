"""Shared pytest set-up: when a test fails, print the tail of every process log it left."""

from __future__ import annotations

import pytest


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    report = yield
    setattr(item, f"rep_{report.when}", report)
    return report


@pytest.fixture(autouse=True)
def _print_process_logs_on_failure(request):
    yield
    rep = getattr(request.node, "rep_call", None)
    tmp = request.node.funcargs.get("tmp_path")
    if rep is None or not rep.failed or tmp is None:
        return
    for log in sorted(tmp.glob("*.log")):
        print(f"\n----- {log.name} (tail) -----\n{log.read_text(errors='replace')[-6000:]}")
