"""The benchmark harness runs: ~5 s at 500 msg/s, Binance only, under a real supervisord, and its
JSON has a latency figure for every stage, and the bare-chain floor measured at the same step
(the full benchmark is ``make bench``)."""

from __future__ import annotations

import subprocess
import sys

import orjson
import pytest

from tests.procs import ROOT

STAGES = ("ingest", "book", "gateway", "ws", "e2e", "recv_to_book")
HOPS = ("to_book", "book_wait", "book_work", "to_gateway", "gateway_wait", "gateway_work")


def test_help() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "tests.bench.run", "--help"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert out.returncode == 0, out.stderr
    assert "--steps" in out.stdout and "--venues" in out.stdout


@pytest.mark.timeout(120)
def test_bench_smoke(tmp_path) -> None:
    results = tmp_path / "results.json"
    cmd = [
        sys.executable,
        "-m",
        "tests.bench.run",
        "--steps",
        "500",
        "--duration",
        "5",
        "--warmup",
        "1",
        "--venues",
        "binance",
        "--bases",
        "BTC,ETH,SOL",
        "--no-cryptofeed",
        "--no-profile",
        "--floor",
        "--quiet-wait",
        "0",
        "--out",
        str(results),
        "--plot",
        "",
        "--markdown",
        "",
    ]
    proc = subprocess.Popen(
        cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    try:
        output, _ = proc.communicate(timeout=100)
    except subprocess.TimeoutExpired:
        proc.terminate()  # the harness stops its supervisord on SIGTERM
        output, _ = proc.communicate(timeout=40)
        pytest.fail(f"the benchmark harness did not finish in time:\n{output[-3000:]}")
    assert proc.returncode == 0, output[-5000:]
    data = orjson.loads(results.read_bytes())
    (step,) = data["steps"]
    assert step["target_msgs_s"] == 500
    assert step["offered_msgs_s"] > 0 and step["delivered_msgs_s"] > 0
    for stage in STAGES + tuple(f"hop.{h}" for h in HOPS):  # trace_hops is on by default
        summary = step["latency_us"][stage]
        assert summary and summary["count"] > 0, stage
        assert {"p50", "p90", "p99", "p99.9", "max"} <= set(summary), stage
    # the split adds up: ZeroMQ transport + wait + work of each hop is that stage
    lat = step["latency_us"]
    for stage, parts in (("book", HOPS[:3]), ("gateway", HOPS[3:])):
        assert lat[stage]["count"] == lat[f"hop.{parts[0]}"]["count"]
        assert sum(lat[f"hop.{p}"]["mean"] for p in parts) == pytest.approx(
            lat[stage]["mean"], rel=0.02, abs=2
        ), stage
    assert step["lost"]["bus_bbo_seq_gaps"] == 0
    assert {"ingest:binance", "book", "gateway"} <= set(step["processes"])
    assert step["flowbook_rss_mb"] > 0
    (bare,) = data["floor"]["steps"]
    assert bare["target_msgs_s"] == 500 and bare["lost"] == 0
    assert bare["received_msgs_s"] > 0 and bare["latency_us"]["count"] > 0
    assert data["floor"]["ceiling_msgs_s"] > 0
    # the memory floor: each service's imports on top of a bare interpreter, summed over the
    # processes this run had (one venue: one ingest)
    mem = data["memory_floor"]
    per = mem["imports_rss_mb"]
    assert mem["ingest_processes"] == 1
    assert min(per["ingest"], per["book"], per["gateway"]) > per["python"] > 0
    assert mem["total_rss_mb"] == pytest.approx(
        per["ingest"] + per["book"] + per["gateway"], abs=0.2
    )
    # a running service holds more than its imports
    assert step["processes"]["book"]["rss_mb"] > per["book"]
