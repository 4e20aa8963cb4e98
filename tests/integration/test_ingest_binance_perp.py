"""Binance USD-M ingest against the simulator's binance-perp dialect, over real sockets on
loopback: the ingest book equals the exchange's (with non-contiguous ids, so only the futures
``pu`` rule syncs), every injected fault is detected and repaired, and the 2026 routed URLs
(``/public`` for depth, ``/market`` for aggTrade) work on two connections."""

from __future__ import annotations

import pytest

from common.bus import Upstream
from common.config import load
from tests.busbook import BusMirror
from tests.procs import free_port, processes, venue_section, wait_until, write_config
from tests.simctl import SimControl

pytestmark = pytest.mark.integration

VENUE = "binance-perp"
TOPIC = f"book.{VENUE}.BTC-USDT-PERP"
SERVICE = f"ingest-{VENUE}"


def start_stack(tmp_path, routed: bool):
    sim_port = free_port()
    extra = "watchdog_s = 4.0"
    if routed:
        extra += f'\ntrade_ws_url = "ws://127.0.0.1:{sim_port}/market/stream"'
    section = venue_section(
        VENUE,
        sim_port=sim_port,
        bases=["BTC", "ETH"],
        ws_path="/public/stream" if routed else "/stream",
        extra=extra,
    )
    path = write_config(tmp_path, section, rate=100)
    cfg = load(path)
    return path, cfg


@pytest.fixture(params=[False, True], ids=["legacy-url", "routed-urls"])
def stack(tmp_path, request):
    path, cfg = start_stack(tmp_path, request.param)
    with processes(tmp_path) as start:
        start("simulator", ["-m", "services.simulator", "--config", str(path)])
        sim = SimControl(cfg.simulator["control_port"])
        wait_until(sim.healthy, 20, what="simulator up")
        start("ingest", ["-m", "services.ingest", VENUE, "--config", str(path)])
        v = cfg.venues[VENUE]
        mirror = BusMirror([Upstream(v.pub, v.control, SERVICE)], ["book.", "trade."])
        try:
            yield sim, mirror, request.param
        finally:
            mirror.close()
            sim.close()


def books_equal(sim: SimControl, mirror: BusMirror, depth: int = 50) -> bool:
    ours = mirror.top(TOPIC, depth)
    return ours is not None and ours == sim.book(VENUE, "BTCUSDT", depth)


def converge(sim: SimControl, mirror: BusMirror) -> None:
    """Freeze the market, wait until the bus book equals the simulator's, resume."""
    sim.pause()
    try:
        wait_until(lambda: books_equal(sim, mirror), 20, what="bus book == simulator book")
    finally:
        sim.resume()


def stats(mirror: BusMirror) -> dict:
    return mirror.stats(SERVICE) or {}


def inst_stat(mirror: BusMirror, symbol: str, key: str) -> int:
    return stats(mirror).get("instruments", {}).get(symbol, {}).get(key, 0)


def test_book_and_trades_flow_then_gap_is_detected_and_repaired(stack):
    sim, mirror, routed = stack
    wait_until(lambda: mirror.count(TOPIC) > 50, 30, what="50 book messages")
    wait_until(lambda: mirror.count(f"trade.{VENUE}.BTC-USDT-PERP") > 5, 30, what="trades")
    converge(sim, mirror)
    conns = wait_until(lambda: stats(mirror).get("connections"), 20, what="heartbeat")
    assert sorted(conns.values()) == ["open"] * (2 if routed else 1)
    depth_calls = sim.stats(VENUE)["rest_depth_calls"]
    resyncs = inst_stat(mirror, "BTC-USDT-PERP", "resyncs")

    sim.fault(VENUE, "gap", symbol="BTCUSDT")
    wait_until(lambda: inst_stat(mirror, "BTC-USDT-PERP", "gaps") == 1, 20, what="gap counted")
    wait_until(lambda: sim.stats(VENUE)["rest_depth_calls"] > depth_calls, 20, what="REST resync")
    converge(sim, mirror)
    assert inst_stat(mirror, "BTC-USDT-PERP", "resyncs") == resyncs + 1
    assert inst_stat(mirror, "ETH-USDT-PERP", "gaps") == 0  # the other instrument never noticed


def test_disconnect_stall_malformed_and_429_are_survived(stack):
    sim, mirror, _ = stack
    wait_until(lambda: mirror.count(TOPIC) > 20, 30, what="book flowing")

    sim.fault(VENUE, "malformed")
    wait_until(lambda: stats(mirror).get("parse_errors", 0) >= 1, 20, what="parse error counted")

    reconnects = stats(mirror).get("reconnects", 0)
    sim.fault(VENUE, "rest429", count=2)
    sim.fault(VENUE, "disconnect")
    wait_until(lambda: stats(mirror).get("reconnects", 0) > reconnects, 20, what="reconnect")
    wait_until(lambda: stats(mirror).get("rest_rate_limited", 0) >= 1, 30, what="429 honoured")
    converge(sim, mirror)

    # only BTC stalls: its pu chain breaks (a "gap", or a "stale_snapshot" if no event came
    # between the last snapshot and the stall), ETH keeps the connection alive
    resyncs = inst_stat(mirror, "BTC-USDT-PERP", "resyncs")
    sim.fault(VENUE, "stall", symbol="BTCUSDT", duration_s=1.5)
    wait_until(lambda: inst_stat(mirror, "BTC-USDT-PERP", "resyncs") > resyncs, 30, what="resync")
    converge(sim, mirror)

    reconnects = stats(mirror)["reconnects"]
    sim.fault(VENUE, "stall", duration_s=6)  # everything: the no-data watchdog (4 s) fires
    wait_until(lambda: stats(mirror).get("reconnects", 0) > reconnects, 30, what="watchdog")
    converge(sim, mirror)
