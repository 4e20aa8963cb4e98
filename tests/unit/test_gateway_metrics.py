"""The /metrics collector (parsed back with prometheus_client's parser) and [gateway] settings."""

from __future__ import annotations

from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from common.config import ConfigError, load
from services.gateway.metrics import GatewayCollector, GatewayStats, make_registry, render
from services.gateway.settings import from_config
from services.gateway.state import MarketState

LAT = {"p50": 100.0, "p90": 200.0, "p99": 300.0, "p99.9": 400.0, "max": 500.0, "mean": 110.0}


def scrape(state: MarketState, stats: GatewayStats, bus: dict | None = None) -> dict:
    gauges = lambda: {"clients": 3.0, "subscriptions": 7.0}  # noqa: E731
    collector = GatewayCollector(state, stats, gauges, bus_stats=lambda: bus or {})
    text = render(make_registry(collector)).decode()
    return {f.name: f for f in text_string_to_metric_families(text)}


def value(families: dict, family: str, name: str | None = None, **labels: str) -> float:
    for s in families[family].samples:
        if s.name == (name or family) and all(s.labels.get(k) == v for k, v in labels.items()):
            return s.value
    raise AssertionError(f"no {name or family} {labels}")


def test_collector_turns_status_and_heartbeats_into_metrics():
    state = MarketState(venues=[("binance", ["BTC-USDT"]), ("kraken", ["BTC-USD"])])
    state.set_book_alive(True)
    state.update(
        "status.binance",
        {
            "state": "live",
            "instruments": {"BTC-USDT": "live"},
            "last_msg_age_s": 0.25,
            "stats": {
                "msg_rate": 12.5,
                "frames": 100,
                "gaps": 2,
                "resyncs": 3,
                "reconnects": 4,
                "parse_errors": 5,
                "checksum_failures": 6,
                "metadata_reloads": 7,
                "latency_us": {"ingest": {**LAT, "count": 10}, "empty": {"count": 0}},
                "process": {"pid": 1, "cpu_percent": 9.5, "rss_bytes": 1234},
            },
        },
    )
    state.update(
        "hb.book",
        {
            "stats": {
                "latency_us": {"consolidate": {**LAT, "count": 4}},
                "latency_us_by_venue": {"binance": {"recv_to_pub": {**LAT, "count": 2}}},
                "process": {
                    "rss_bytes": 99,
                    "gc": {
                        "gen1": {"collections": 7, "pause_us_total": 2100, "pause_us_max": 900},
                        "gen2": "garbage",
                    },
                },
            }
        },
    )
    stats = GatewayStats(messages_sent=10, dropped=2, slow_closed=1, errors={"bad_json": 4})
    for us in (40, 80, 3000, 2_000_000):
        stats.latency.record_ns(us * 1000)
    f = scrape(state, stats, bus={"gaps": 2, "resyncs": 1, "lost_trades": 5, "messages": 9})
    assert value(f, "flowbook_venue_state", venue="binance", state="live") == 1
    assert value(f, "flowbook_venue_state", venue="kraken", state="down") == 1
    assert (
        value(f, "flowbook_instrument_state", venue="binance", symbol="BTC-USDT", state="live") == 1
    )
    assert value(f, "flowbook_venue_gaps", "flowbook_venue_gaps_total", venue="binance") == 2
    assert (
        value(f, "flowbook_venue_checksum_failures", "flowbook_venue_checksum_failures_total") == 6
    )
    reloads = "flowbook_venue_metadata_reloads"
    assert value(f, reloads, reloads + "_total", venue="binance") == 7
    assert value(f, "flowbook_venue_messages_per_second", venue="binance") == 12.5
    assert value(f, "flowbook_venue_last_message_age_seconds", venue="binance") == 0.25
    lat = "flowbook_stage_latency_seconds"
    assert f[lat].type == "summary"
    assert value(f, lat, service="ingest-binance", stage="ingest", quantile="0.999") == 400e-6
    assert value(f, lat, lat + "_count", service="book", stage="consolidate") == 4
    assert value(f, lat, lat + "_sum", service="book", stage="consolidate") == pytest.approx(440e-6)
    assert not [s for s in f[lat].samples if s.labels.get("stage") == "empty"]
    assert value(f, "flowbook_stage_latency_max_seconds", service="book") == 500e-6
    by_venue = "flowbook_stage_latency_by_venue_seconds"
    assert value(f, by_venue, service="book", venue="binance", stage="recv_to_pub", quantile="0.5") == 100e-6  # fmt: skip
    assert value(f, "flowbook_process_cpu_percent", service="ingest-binance") == 9.5
    assert value(f, "flowbook_process_rss_bytes", service="book") == 99
    assert value(f, "flowbook_process_rss_bytes", service="gateway") > 0
    gc_runs, gc_pause = "flowbook_process_gc_collections", "flowbook_process_gc_pause_seconds"
    assert value(f, gc_runs, gc_runs + "_total", service="book", generation="1") == 7
    assert value(f, gc_pause, gc_pause + "_total", service="book", generation="1") == 2100e-6
    assert (
        value(f, "flowbook_process_gc_pause_max_seconds", service="book", generation="1") == 900e-6
    )
    assert not [s for s in f[gc_runs].samples if s.labels == {"service": "book", "generation": "2"}]
    assert value(f, gc_runs, gc_runs + "_total", service="gateway", generation="0") >= 0
    assert value(f, "flowbook_book_up") == 1
    assert value(f, "flowbook_gateway_clients") == 3
    assert value(f, "flowbook_gateway_bus_gaps", "flowbook_gateway_bus_gaps_total") == 2
    assert (
        value(f, "flowbook_gateway_bus_lost_trades", "flowbook_gateway_bus_lost_trades_total") == 5
    )
    assert value(f, "flowbook_gateway_messages_sent", "flowbook_gateway_messages_sent_total") == 10
    assert value(f, "flowbook_gateway_client_errors", "flowbook_gateway_client_errors_total", code="bad_json") == 4  # fmt: skip
    hist = "flowbook_gateway_send_latency_seconds"
    assert f[hist].type == "histogram"
    assert value(f, hist, hist + "_bucket", le="5e-05") == 1
    assert value(f, hist, hist + "_bucket", le="0.0001") == 2
    assert value(f, hist, hist + "_bucket", le="0.005") == 3
    assert value(f, hist, hist + "_bucket", le="2.5") == 4
    assert value(f, hist, hist + "_bucket", le="+Inf") == 4
    assert value(f, hist, hist + "_count") == 4


def test_collector_with_nothing_known_yet():
    f = scrape(MarketState(), GatewayStats())
    assert value(f, "flowbook_book_up") == 0
    assert value(f, "flowbook_gateway_send_latency_seconds", "flowbook_gateway_send_latency_seconds_count") == 0  # fmt: skip


def write(tmp_path: Path, gateway: str) -> Path:
    port = "" if gateway.startswith("port =") else "port = 9000"
    path = tmp_path / "c.toml"
    path.write_text(
        f"""
[book]
pub = "tcp://127.0.0.1:1"
control = "tcp://127.0.0.1:2"
depth = 30
[gateway]
{port}
{gateway}
"""
    )
    return path


def test_settings_defaults_and_overrides(tmp_path):
    s = from_config(load(write(tmp_path, ""), environ={}))
    assert (s.port, s.max_clients, s.max_subscriptions, s.max_message_bytes) == (
        9000,
        1000,
        100,
        4096,
    )
    assert (s.max_messages_per_s, s.cors_origins, s.slow_client_timeout_s) == (50.0, ("*",), 10.0)
    assert s.max_depth == 30 and s.default_depth == 20
    s = from_config(
        load(
            write(tmp_path, 'cors_origins = ["https://a.example"]\nmax_clients = 5\nweb_dir = "x"'),
            environ={"FLOWBOOK_GATEWAY__SLOW_CLIENT_TIMEOUT_S": "2"},
        )
    )
    assert s.cors_origins == ("https://a.example",) and s.max_clients == 5
    assert s.slow_client_timeout_s == 2.0 and s.web_dir.name == "x" and s.web_dir.is_absolute()


@pytest.mark.parametrize(
    "bad",
    [
        "max_clients = 0",
        "max_clients = true",
        "max_messages_per_s = -1",
        "cors_origins = [1]",
        "compression = 1",
        'trace_hops = "yes"',
        "max_message_bytes = 100000",
        "port = 70000",
        "max_clent = 5",  # a typo is an error, not a default silently kept
        "ping_interval_s = inf",
    ],
)
def test_settings_errors(tmp_path, bad):
    with pytest.raises(ConfigError, match=r"\[gateway\]: .*" + bad.split()[0]):
        from_config(load(write(tmp_path, bad), environ={}))
