"""Bybit ingest (spot + linear, one process, two connections) against the simulator's Bybit
dialect over real sockets on loopback: the ingest books equal the exchange's, and every injected
fault is detected, counted and repaired."""

from __future__ import annotations

import contextlib
from collections import defaultdict
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from common.bus import Upstream
from common.config import load
from tests.busbook import BusMirror
from tests.procs import free_port, processes, venue_section, wait_until, write_config
from tests.simctl import SimControl

pytestmark = pytest.mark.integration

# bus symbol -> simulator symbol: spot and linear share the wire symbol BTCUSDT
BOOKS = {
    "BTC-USDT": "spot:BTCUSDT",
    "BTC-USDT-PERP": "linear:BTCUSDT",
    "ETH-USDT": "spot:ETHUSDT",
    "ETH-USDT-PERP": "linear:ETHUSDT",
}


class Mirror(BusMirror):
    """Also counts the full snapshots published per topic."""

    def __init__(self, *args: Any) -> None:
        self.snapshots: dict[str, int] = defaultdict(int)
        super().__init__(*args)

    def _on_message(self, topic: str, msg: dict[str, Any]) -> None:
        super()._on_message(topic, msg)
        if msg.get("type") == "snapshot":
            with self.lock:
                self.snapshots[topic] += 1

    def snapshot_count(self, topic: str) -> int:
        with self.lock:
            return self.snapshots[topic]


@contextlib.contextmanager
def stack(
    tmp_path, before_ingest: Callable[[SimControl], None] | None = None, extra: str = ""
) -> Iterator[tuple[SimControl, Mirror]]:
    sim_port = free_port()
    section = venue_section(
        "bybit",
        sim_port=sim_port,
        bases=["BTC", "ETH"],
        ws_path="/v5/public",
        extra=f"watchdog_s = 4.0\nping_interval_s = 1.0\n{extra}",
    )
    path = write_config(tmp_path, section, rate=100)
    cfg = load(path)
    with processes(tmp_path) as start:
        start("simulator", ["-m", "services.simulator", "--config", str(path)])
        sim = SimControl(cfg.simulator["control_port"])
        wait_until(sim.healthy, 20, what="simulator up")
        if before_ingest:
            before_ingest(sim)
        start("ingest", ["-m", "services.ingest", "bybit", "--config", str(path)])
        v = cfg.venues["bybit"]
        mirror = Mirror([Upstream(v.pub, v.control, "ingest-bybit")], ["book.", "trade."])
        try:
            yield sim, mirror
        finally:
            mirror.close()
            sim.close()


def books_equal(sim: SimControl, mirror: Mirror, symbols=tuple(BOOKS)) -> bool:
    for symbol in symbols:
        ours = mirror.top(f"book.bybit.{symbol}", 50)
        if ours is None or ours != sim.book("bybit", BOOKS[symbol], 50):
            return False
    return True


def converge(sim: SimControl, mirror: Mirror) -> None:
    """Freeze the market, wait until every bus book equals the simulator's top 50, resume."""
    sim.pause()
    try:
        wait_until(lambda: books_equal(sim, mirror), 20, what="bus books == simulator books")
        for symbol in BOOKS:
            bids, asks = mirror.top(f"book.bybit.{symbol}", 100)
            assert len(bids) == len(asks) == 50  # the venue's window, kept by its deletes
    finally:
        sim.resume()


def stats(mirror: Mirror) -> dict:
    return mirror.stats("ingest-bybit") or {}


def inst(mirror: Mirror, symbol: str) -> dict:
    return stats(mirror).get("instruments", {}).get(symbol, {})


def flowing(mirror: Mirror) -> None:
    for symbol in BOOKS:
        topic = f"book.bybit.{symbol}"
        wait_until(lambda t=topic: mirror.count(t) > 20, 30, what=f"{topic} flowing")


def test_books_equal_then_gap_and_reset_on_linear_leave_spot_alone(tmp_path):
    with stack(tmp_path) as (sim, mirror):
        flowing(mirror)
        wait_until(lambda: mirror.count("trade.bybit.BTC-USDT-PERP") > 0, 30, what="trades")
        converge(sim, mirror)
        reconnects = stats(mirror)["reconnects"]

        sim.fault("bybit", "gap", symbol="linear:BTCUSDT")
        wait_until(lambda: inst(mirror, "BTC-USDT-PERP").get("gaps") == 1, 20, what="gap")
        converge(sim, mirror)  # repaired by unsubscribe + subscribe on the open connection
        assert inst(mirror, "BTC-USDT-PERP")["resyncs"] == 1
        assert inst(mirror, "BTC-USDT")["gaps"] == 0  # same wire symbol, other category
        assert inst(mirror, "ETH-USDT-PERP")["gaps"] == 0
        assert stats(mirror)["reconnects"] == reconnects

        topic = "book.bybit.ETH-USDT"
        snapshots = mirror.snapshot_count(topic)
        sim.fault("bybit", "reset", symbol="spot:ETHUSDT")
        wait_until(lambda: mirror.snapshot_count(topic) > snapshots, 20, what="u=1 snapshot")
        converge(sim, mirror)
        assert inst(mirror, "ETH-USDT")["gaps"] == 0  # a restart is a snapshot, not a gap
        assert stats(mirror)["gaps"] == 1 and stats(mirror)["reconnects"] == reconnects


def test_malformed_disconnect_planned_close_and_stalls_are_survived(tmp_path):
    with stack(tmp_path) as (sim, mirror):
        flowing(mirror)

        sim.fault("bybit", "malformed")
        wait_until(lambda: stats(mirror).get("parse_errors", 0) >= 1, 20, what="parse error")

        for kind in ("disconnect", "planned_close"):
            reconnects = stats(mirror)["reconnects"]
            sim.fault("bybit", kind)
            wait_until(
                lambda r=reconnects: stats(mirror)["reconnects"] >= r + 2, 20, what=f"{kind}"
            )
            converge(sim, mirror)

        # one book's frames held back: its stream resumes with a u jump -> that book resyncs
        sim.fault("bybit", "stall", symbol="spot:ETHUSDT", duration_s=1.5)
        wait_until(lambda: inst(mirror, "ETH-USDT").get("gaps", 0) >= 1, 20, what="stall gap")
        converge(sim, mirror)

        # everything held back (pongs too): the watchdog reconnects both connections
        reconnects = stats(mirror)["reconnects"]
        sim.fault("bybit", "stall", duration_s=6)
        wait_until(
            lambda: stats(mirror)["reconnects"] >= reconnects + 2, 30, what="watchdog reconnect"
        )
        converge(sim, mirror)
        assert stats(mirror)["parse_errors"] >= 1


def test_instruments_are_paged_and_429_is_honoured_at_start(tmp_path):
    def arm(sim: SimControl) -> None:
        sim.fault("bybit", "rest429", count=2)

    with stack(tmp_path, before_ingest=arm, extra="page_limit = 1") as (sim, mirror):
        flowing(mirror)
        wait_until(lambda: set(stats(mirror).get("instruments", ())) == set(BOOKS), 10)
        s = stats(mirror)
        assert s["rest_rate_limited"] == 2
        # 2 refused + spot 1 page + linear 6 pages of 1 (perp, future, USDC perp per base)
        assert s["rest_calls"] == 9
        assert sim.stats("bybit")["rest_calls"] == 9
        converge(sim, mirror)
