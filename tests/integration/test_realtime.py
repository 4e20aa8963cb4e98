"""``[scheduling] realtime_priority``: every flowbook service puts all its threads (ZeroMQ's I/O
threads too) under SCHED_FIFO, and the pipeline still serves books. Where the host does not
allow real-time scheduling, each service says so in its log and runs at normal priority."""

from __future__ import annotations

import os
import subprocess
import sys

import httpx
import pytest

from common.config import ConfigError, load
from tests.procs import free_port, processes, venue_section, wait_until, write_config

pytestmark = pytest.mark.integration

PRIORITY = 3
SERVICES = ("ingest-binance", "book", "gateway")


def realtime_allowed() -> bool:
    probe = f"import os; os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param({PRIORITY}))"
    return subprocess.run([sys.executable, "-c", probe], capture_output=True).returncode == 0


def policies(pid: int) -> set[tuple[int, int]]:
    """(policy, priority) of every thread of ``pid``."""
    found = set()
    for t in os.listdir(f"/proc/{pid}/task"):
        try:
            found.add((os.sched_getscheduler(int(t)), os.sched_getparam(int(t)).sched_priority))
        except ProcessLookupError:
            continue  # the thread ended meanwhile
    return found


def test_services_run_real_time_and_still_serve_books(tmp_path):
    """The gateway is left out of ``realtime_services`` and keeps the normal scheduler."""
    section = venue_section("binance", sim_port=free_port(), quote="USDT", bases=["BTC"])
    scheduling = f"""[scheduling]
realtime_priority = {PRIORITY}
realtime_services = ["ingest", "book"]
"""
    path = write_config(tmp_path, section, extra=scheduling)
    cfg = load(path)
    allowed = realtime_allowed()
    with processes(tmp_path) as start:
        start("simulator", ["-m", "services.simulator", "--config", str(path)])
        procs = {
            "ingest-binance": start(
                "ingest", ["-m", "services.ingest", "binance", "--config", str(path)]
            ),
            "book": start("book", ["-m", "services.book", "--config", str(path)]),
            "gateway": start("gateway", ["-m", "services.gateway", "--config", str(path)]),
        }
        url = f"http://127.0.0.1:{cfg.gateway.port}/api/book/binance/BTC-USDT"

        def book() -> dict | None:
            try:
                r = httpx.get(url, timeout=3)
            except httpx.HTTPError:
                return None
            return r.json() if r.status_code == 200 and r.json().get("bids") else None

        served = wait_until(book, 60, 0.3, what="the gateway serving binance BTC-USDT")
        assert served["bids"][0][0] < served["asks"][0][0]
        for name, proc in procs.items():
            assert proc.alive(), f"{name} exited:\n{proc.log_text()[-2000:]}"
            if name == "gateway":
                assert policies(proc.popen.pid) == policies(os.getpid())
                assert "real-time scheduling" not in proc.log_text()
            elif allowed:
                assert policies(proc.popen.pid) == {(os.SCHED_FIFO, PRIORITY)}, name
                assert f"{name}: real-time scheduling SCHED_FIFO {PRIORITY}" in proc.log_text()
            else:  # as started: the policy of this test process
                assert policies(proc.popen.pid) == policies(os.getpid()), name
                assert f"{name}: cannot use real-time scheduling" in proc.log_text()


@pytest.mark.parametrize(
    ("table", "error"),
    [
        ("realtime_priority = 50", "realtime_priority must be 0 .off. or 1-49, got 50"),
        ("realtime_priority = -1", "realtime_priority must be 0 .off. or 1-49, got -1"),
        ('realtime_services = ["ingest", "web"]', "realtime_services may name .*not .'web'."),
        ('realtime_priority = "high"', "'realtime_priority' must be int"),
        ("realtime = 5", "unknown key.s. realtime"),
    ],
)
def test_bad_scheduling_settings_are_refused_with_the_key(tmp_path, table, error):
    path = write_config(tmp_path, "", extra=f"[scheduling]\n{table}")
    with pytest.raises(ConfigError, match=rf"\[scheduling\].*{error}"):
        load(path, environ={})
    assert load(write_config(tmp_path, ""), environ={}).realtime_priority == 0
