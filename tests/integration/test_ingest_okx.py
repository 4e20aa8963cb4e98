"""OKX ingest against the simulator's okx dialect, over real sockets on loopback: the ingest book
equals the exchange's, and every injected fault (wrong checksum, prevSeqId gap, sequence reset,
stall, disconnect, service-upgrade notice, malformed frame, 429 on the instruments call) is
detected, counted and repaired: a broken book is resubscribed on the open connection."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from common.bus import Upstream
from common.config import load
from tests.busbook import BusMirror
from tests.procs import free_port, processes, venue_section, wait_until, write_config
from tests.simctl import SimControl

pytestmark = pytest.mark.integration

VENUE = "okx"
SERVICE = "ingest-okx"
BTC, ETH = "BTC-USDT", "ETH-USDT"


@contextlib.contextmanager
def okx_stack(
    tmp: Path, extra: str = "", sync_timeout_s: float = 2.0
) -> Iterator[tuple[SimControl, BusMirror]]:
    """The simulator (its first instruments call refused) and an OKX ingest on it, with a bus
    mirror of the ingest's books, once BTC's book flows."""
    section = venue_section(
        VENUE,
        sim_port=free_port(),
        bases=["BTC", "ETH"],
        ws_path="/ws/v5/public",
        extra=f"watchdog_s = 4.0\nsync_timeout_s = {sync_timeout_s}\n" + extra,
    )
    path = write_config(tmp, section, rate=100)
    cfg = load(path)
    with processes(tmp) as start:
        start("simulator", ["-m", "services.simulator", "--config", str(path)])
        sim = SimControl(cfg.simulator["control_port"])
        wait_until(sim.healthy, 20, what="simulator up")
        sim.fault(VENUE, "rest429")  # the first instruments call is refused
        start("ingest", ["-m", "services.ingest", VENUE, "--config", str(path)])
        v = cfg.venues[VENUE]
        mirror = BusMirror([Upstream(v.pub, v.control, SERVICE)], ["book.", "trade."])
        try:
            wait_until(lambda: mirror.count(f"book.{VENUE}.{BTC}") > 20, 30, what="book flowing")
            yield sim, mirror
        finally:
            mirror.close()
            sim.close()


@pytest.fixture
def stack(tmp_path):
    with okx_stack(tmp_path) as pair:
        yield pair


def books_equal(sim: SimControl, mirror: BusMirror, symbol: str, depth: int = 50) -> bool:
    ours = mirror.top(f"book.{VENUE}.{symbol}", depth)
    return ours is not None and ours == sim.book(VENUE, symbol, depth)


def converge(sim: SimControl, mirror: BusMirror) -> None:
    """Freeze the market, wait until both bus books equal the simulator's, resume."""
    sim.pause()
    try:
        wait_until(
            lambda: books_equal(sim, mirror, BTC) and books_equal(sim, mirror, ETH),
            20,
            what="bus books == simulator books",
        )
    finally:
        sim.resume()


def stats(mirror: BusMirror) -> dict:
    return mirror.stats(SERVICE) or {}


def inst(mirror: BusMirror, symbol: str, key: str) -> int:
    return stats(mirror).get("instruments", {}).get(symbol, {}).get(key, 0)


def test_books_trades_checksum_gap_and_reset_on_one_connection(stack):
    sim, mirror = stack
    wait_until(lambda: mirror.count(f"trade.{VENUE}.{BTC}") > 5, 30, what="trades")
    converge(sim, mirror)
    assert stats(mirror)["rest_rate_limited"] >= 1  # the refused instruments call was retried
    reconnects = stats(mirror)["reconnects"]

    sim.fault(VENUE, "checksum", symbol=BTC)
    wait_until(lambda: inst(mirror, BTC, "checksum_failures") == 1, 20, what="checksum failure")
    converge(sim, mirror)

    sim.fault(VENUE, "gap", symbol=BTC)
    wait_until(lambda: inst(mirror, BTC, "gaps") == 1, 20, what="gap counted")
    converge(sim, mirror)

    resyncs = inst(mirror, BTC, "resyncs")
    sent = mirror.count(f"book.{VENUE}.{BTC}")
    sim.fault(VENUE, "reset", symbol=BTC)  # seqId drops below prevSeqId: accepted, no resync
    wait_until(lambda: mirror.count(f"book.{VENUE}.{BTC}") > sent + 20, 20, what="after reset")
    converge(sim, mirror)

    assert inst(mirror, BTC, "resyncs") == resyncs == 2  # the checksum and the gap
    assert inst(mirror, ETH, "resyncs") == 0  # the other book never noticed
    assert stats(mirror)["reconnects"] == reconnects  # repaired by resubscribing, not reconnecting


def test_a_refused_resubscribe_is_asked_again_not_left_syncing(stack):
    """OKX refuses subscribes past 480 an hour per connection: the book that needed one must
    not stay out until the connection happens to drop (trades keep the watchdog fed)."""
    sim, mirror = stack
    converge(sim, mirror)
    reconnects = stats(mirror)["reconnects"]
    parse_errors = stats(mirror).get("parse_errors", 0)
    sim.fault(VENUE, "refuse", symbol=BTC)  # the resubscribe after the checksum failure
    sim.fault(VENUE, "checksum", symbol=BTC)
    wait_until(lambda: inst(mirror, BTC, "checksum_failures") == 1, 20, what="checksum failure")
    wait_until(lambda: inst(mirror, BTC, "sync_retries") >= 1, 20, what="asked again")
    converge(sim, mirror)
    assert stats(mirror)["reconnects"] == reconnects  # one book, repaired on its connection
    assert inst(mirror, ETH, "resyncs") == 0
    # the refusal is reported as the exchange's error, not as a malformed frame
    assert stats(mirror)["venue_errors"] == 1
    assert "error 60014: Requests too frequent" in stats(mirror)["last_venue_error"]
    assert stats(mirror).get("parse_errors", 0) == parse_errors


def test_a_book_that_keeps_failing_is_resynced_at_a_slower_pace(stack):
    """Bad checksums on every update: the first three resyncs go at once, the fourth waits (a
    resubscribe per round trip, and a warning each, would be a loop); it still converges."""
    sim, mirror = stack
    converge(sim, mirror)
    sim.fault(VENUE, "checksum", symbol=BTC, count=6)
    wait_until(lambda: inst(mirror, BTC, "resyncs_delayed") >= 1, 60, what="a resync held back")
    assert inst(mirror, BTC, "checksum_failures") >= 4
    converge(sim, mirror)


def test_malformed_stall_disconnect_and_planned_close_are_survived(stack):
    sim, mirror = stack
    sim.fault(VENUE, "malformed")
    wait_until(lambda: stats(mirror).get("parse_errors", 0) >= 1, 20, what="parse error counted")

    resyncs = inst(mirror, BTC, "resyncs")
    sim.fault(VENUE, "stall", symbol=BTC, duration_s=1.5)  # BTC's prevSeqId chain breaks
    wait_until(lambda: inst(mirror, BTC, "resyncs") > resyncs, 30, what="stall resync")
    converge(sim, mirror)

    for kind, extra in (("stall", {"duration_s": 6}), ("disconnect", {}), ("planned_close", {})):
        reconnects = stats(mirror).get("reconnects", 0)
        sim.fault(VENUE, kind, **extra)
        wait_until(lambda n=reconnects: stats(mirror).get("reconnects", 0) > n, 30, what=kind)
        converge(sim, mirror)


def test_near_the_subscribe_budget_a_book_is_resynced_by_reconnecting(tmp_path):
    """OKX allows 480 subscribe/unsubscribe requests a connection per hour (here 5): once a
    resubscribe would come near it, the connection is opened again instead (a fresh budget), and
    the book still converges. No sync retries here (a slow start would spend budget on them)."""
    with okx_stack(tmp_path, "subscribe_ops_per_hour = 5", sync_timeout_s=30) as (sim, mirror):
        converge(sim, mirror)
        reconnects = stats(mirror)["reconnects"]
        sim.fault(VENUE, "checksum", symbol=BTC)  # 1 + 2 requests: still within 90% of 5
        wait_until(lambda: inst(mirror, BTC, "checksum_failures") == 1, 20, what="1st failure")
        converge(sim, mirror)
        assert stats(mirror)["reconnects"] == reconnects and stats(mirror)["budget_reconnects"] == 0
        sim.fault(VENUE, "checksum", symbol=BTC)  # 2 more would make 5: reconnect instead
        wait_until(lambda: stats(mirror)["budget_reconnects"] == 1, 20, what="budget reconnect")
        wait_until(lambda: stats(mirror)["reconnects"] > reconnects, 20, what="reconnected")
        converge(sim, mirror)
