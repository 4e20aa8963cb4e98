"""The benchmark report's verdicts (tests/bench/report.py), on hand-made results."""

from __future__ import annotations

from tests.bench.report import target_lines


def _cryptofeed_row(cpu: float | None, latency: float | None) -> str:
    ratio = {"cpu_per_msg_ratio": cpu, "latency_p50_ratio": latency, "headline": "h"}
    results = {"steps": [], "sustainable_msgs_s": 0, "compare": {"ratio": ratio}}
    (row,) = [line for line in target_lines(results) if "cryptofeed" in line]
    return row.rsplit("|", 2)[-2].strip()


def test_cryptofeed_verdict_names_what_was_met_when_cpu_and_latency_disagree() -> None:
    assert _cryptofeed_row(1.78, 0.82) == "CPU: met; latency p50: **missed**"
    assert _cryptofeed_row(0.9, 1.2) == "CPU: **missed**; latency p50: met"
    assert _cryptofeed_row(1.5, 1.1) == "met"
    assert _cryptofeed_row(0.8, 0.7) == "**missed**"
    assert _cryptofeed_row(None, None) == "-"


def test_rss_row_quotes_the_memory_floor() -> None:
    step = {"target_msgs_s": 1000, "flowbook_rss_max_mb": 330.0, "flowbook_pss_mb": 210.0}
    results = {
        "steps": [step],
        "sustainable_msgs_s": 0,
        "memory_floor": {"total_rss_mb": 265.3},
    }
    (row,) = [line for line in target_lines(results) if line.startswith("| RSS")]
    assert "their imports alone: 265 MB" in row and row.endswith("**missed** |")
