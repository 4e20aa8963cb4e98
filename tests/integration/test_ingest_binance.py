"""Binance ingest against the simulator's Binance dialect, over real sockets on loopback:
the ingest book equals the exchange's, and every injected fault is detected and repaired."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from common.bus import Upstream
from common.config import load
from tests.busbook import BusMirror
from tests.procs import free_port, processes, venue_section, wait_until, write_config
from tests.simctl import SimControl

pytestmark = pytest.mark.integration

TOPIC = "book.binance.BTC-USDT"


@contextlib.contextmanager
def binance_stack(
    tmp: Path,
    bases: list[str],
    extra: str,
    rate: int,
    before_ingest: Callable[[SimControl], None] | None = None,
) -> Iterator[tuple[SimControl, BusMirror]]:
    """The simulator and a Binance ingest on it, and a bus mirror of the ingest's books."""
    path = write_config(
        tmp, venue_section("binance", sim_port=free_port(), bases=bases, extra=extra), rate=rate
    )
    cfg = load(path)
    with processes(tmp) as start:
        start("simulator", ["-m", "services.simulator", "--config", str(path)])
        sim = SimControl(cfg.simulator["control_port"])
        wait_until(sim.healthy, 20, what="simulator up")
        if before_ingest is not None:
            before_ingest(sim)
        start("ingest", ["-m", "services.ingest", "binance", "--config", str(path)])
        v = cfg.venues["binance"]
        mirror = BusMirror([Upstream(v.pub, v.control, "ingest-binance")], ["book.", "trade."])
        try:
            yield sim, mirror
        finally:
            mirror.close()
            sim.close()


@pytest.fixture
def stack(tmp_path):
    with binance_stack(tmp_path, ["BTC", "ETH"], "watchdog_s = 4.0", 100) as pair:
        yield pair


def books_equal(sim: SimControl, mirror: BusMirror, depth: int = 50) -> bool:
    ours = mirror.top(TOPIC, depth)
    return ours is not None and ours == sim.book("binance", "BTCUSDT", depth)


def converge(sim: SimControl, mirror: BusMirror) -> None:
    """Freeze the market, wait until the bus book equals the simulator's, resume."""
    sim.pause()
    try:
        wait_until(lambda: books_equal(sim, mirror), 20, what="bus book == simulator book")
    finally:
        sim.resume()


def ingest_stats(mirror: BusMirror) -> dict:
    return mirror.stats("ingest-binance") or {}


def test_book_equals_simulator_then_gap_is_detected_and_repaired(stack):
    sim, mirror = stack
    wait_until(lambda: mirror.count(TOPIC) > 50, 30, what="50 book messages")
    converge(sim, mirror)
    depth_calls = sim.stats("binance")["rest_depth_calls"]

    sim.fault("binance", "gap", symbol="BTCUSDT")
    wait_until(
        lambda: ingest_stats(mirror).get("instruments", {}).get("BTC-USDT", {}).get("gaps") == 1,
        20,
        what="gap counted",
    )
    wait_until(
        lambda: sim.stats("binance")["rest_depth_calls"] > depth_calls, 20, what="REST resync"
    )
    converge(sim, mirror)
    inst = ingest_stats(mirror)["instruments"]
    assert inst["BTC-USDT"]["resyncs"] == 1
    assert inst["ETH-USDT"]["gaps"] == 0  # the other instrument never noticed


def test_disconnect_stall_malformed_and_429_are_survived(stack):
    sim, mirror = stack
    wait_until(lambda: mirror.count(TOPIC) > 20, 30, what="book flowing")

    sim.fault("binance", "malformed")
    wait_until(
        lambda: ingest_stats(mirror).get("parse_errors", 0) >= 1, 20, what="parse error counted"
    )

    reconnects = ingest_stats(mirror).get("reconnects", 0)
    sim.fault("binance", "rest429", count=2)
    sim.fault("binance", "disconnect")
    wait_until(lambda: ingest_stats(mirror).get("reconnects", 0) > reconnects, 20, what="reconnect")
    wait_until(
        lambda: ingest_stats(mirror).get("rest_rate_limited", 0) >= 1, 30, what="429 honoured"
    )
    converge(sim, mirror)

    reconnects = ingest_stats(mirror)["reconnects"]
    sim.fault("binance", "stall", duration_s=6)
    wait_until(
        lambda: ingest_stats(mirror).get("reconnects", 0) > reconnects,
        30,
        what="watchdog reconnect",
    )
    converge(sim, mirror)


def test_a_cut_snapshot_is_refreshed_as_the_price_moves_and_the_book_stays_live(tmp_path):
    """Snapshots of 20 levels a side on books of ~150: levels beyond the snapshot are unknown
    until they change, so whenever fewer than 10 known levels remain on a side (the market
    moved, levels were taken) ingest fetches a new snapshot. The refreshes are stitched in
    without the book ever leaving ``live`` on the bus, and its top stays equal to the
    exchange's (the stitching rule itself: tests/unit/test_binance_sync.py)."""
    extra = "snapshot_limit = 20\nwatchdog_s = 10.0"  # a paused market must not reconnect
    with binance_stack(tmp_path, ["BTC"], extra, 200) as (sim, mirror):

        def btc() -> dict:
            return ingest_stats(mirror).get("instruments", {}).get("BTC-USDT", {})

        wait_until(lambda: btc().get("refreshes", 0) >= 2, 90, what="two refreshes")
        sim.pause()
        try:
            wait_until(lambda: books_equal(sim, mirror, depth=10), 20, what="top 10 == simulator's")
        finally:
            sim.resume()
        assert btc()["resyncs"] == 0 and btc()["state"] == "live"
        log = mirror.state_log[TOPIC]
        assert log[log.index("live") :] == ["live"], log  # never out of sync once live


def test_a_stream_that_starts_late_gets_its_snapshot_after_its_first_diff(tmp_path):
    """Binance's order is: buffer the stream, then fetch the snapshot. The simulator holds back
    the new connection's stream for 0.5 s, so a snapshot fetched at connect would be older than
    the stream's first diff: published live, then found too old and dropped. Ingest fetches it
    once a diff has come: each book goes live once and stays live, with one REST call each."""

    def late(sim: SimControl) -> None:
        sim.fault("binance", "late_stream", duration_s=0.5)

    quiet_ok = "watchdog_s = 10.0"  # the paused market in converge() must not reconnect
    with binance_stack(tmp_path, ["BTC", "ETH"], quiet_ok, 100, late) as (sim, mirror):
        wait_until(lambda: mirror.count(TOPIC) > 50, 30, what="50 book messages")
        converge(sim, mirror)
        for topic in (TOPIC, "book.binance.ETH-USDT"):
            log = mirror.state_log[topic]
            assert log[log.index("live") :] == ["live"], (topic, log)
        books = ingest_stats(mirror)["instruments"]
        assert books["BTC-USDT"]["resyncs"] == books["ETH-USDT"]["resyncs"] == 0
        assert sim.stats("binance")["rest_depth_calls"] == 2


def test_a_book_that_keeps_failing_costs_one_snapshot_per_paced_resync(tmp_path):
    """Five gaps in a row: the first three resyncs go at once, the fourth waits 1 s and the
    fifth 2 s (ResyncPace), although diffs keep coming meanwhile; each costs one REST
    snapshot."""
    with binance_stack(tmp_path, ["BTC", "ETH"], "watchdog_s = 10.0", 100) as (sim, mirror):
        book_that_keeps_failing(sim, mirror)


def book_that_keeps_failing(sim: SimControl, mirror: BusMirror) -> None:
    wait_until(lambda: mirror.count(TOPIC) > 20, 30, what="book flowing")
    converge(sim, mirror)
    calls = sim.stats("binance")["rest_depth_calls"]

    def btc() -> dict:
        return ingest_stats(mirror).get("instruments", {}).get("BTC-USDT", {})

    for n in range(1, 6):
        sim.fault("binance", "gap", symbol="BTCUSDT")
        wait_until(lambda n=n: btc().get("gaps") == n, 20, what=f"gap {n} counted")
        wait_until(lambda: btc().get("state") == "live", 20, what=f"live after gap {n}")
    converge(sim, mirror)
    assert btc()["resyncs"] == 5 and btc()["resyncs_delayed"] == 2
    log, times = mirror.state_log[TOPIC], mirror.state_times[TOPIC]
    assert log[-10:] == ["syncing", "live"] * 5, log
    # syncing -> live of each gap, by ingest's own receive times (the gap's diff, the snapshot)
    out = [(times[i + 1] - times[i]) / 1e9 for i in range(len(times) - 10, len(times), 2)]
    assert out[3] >= 0.95 and out[4] >= 1.95, out  # 1 s and 2 s of ResyncPace
    assert sim.stats("binance")["rest_depth_calls"] == calls + 5


def test_a_snapshot_that_cannot_be_read_is_counted_and_asked_again_after_a_wait(tmp_path):
    """Two REST depth answers cut off mid-body after a gap: each is a counted parse error, the
    book stays ``syncing`` (never live on a half book), and the snapshot is asked again after
    a wait (at least 0.5 s; jittered, its ceiling doubling), one call per failure; then the
    book is whole."""
    with binance_stack(tmp_path, ["BTC", "ETH"], "watchdog_s = 10.0", 100) as (sim, mirror):
        wait_until(lambda: mirror.count(TOPIC) > 20, 30, what="book flowing")
        converge(sim, mirror)
        errors = ingest_stats(mirror).get("parse_errors", 0)
        calls = sim.stats("binance")["rest_depth_calls"]
        n = len(mirror.state_log[TOPIC])
        sim.fault("binance", "rest_malformed", symbol="BTCUSDT", count=2)
        sim.fault("binance", "gap", symbol="BTCUSDT")
        wait_until(lambda: "live" in mirror.state_log[TOPIC][n:], 30, what="live again")
        converge(sim, mirror)
        wait_until(  # the ingest's stats come with its heartbeat, once a second
            lambda: ingest_stats(mirror)["parse_errors"] >= errors + 2, 10, what="errors counted"
        )
        assert ingest_stats(mirror)["parse_errors"] == errors + 2
        assert sim.stats("binance")["rest_depth_calls"] == calls + 3
        log, times = mirror.state_log[TOPIC], mirror.state_times[TOPIC]
        assert log[n:] == ["syncing", "live"], log[n:]
        assert (times[-1] - times[-2]) / 1e9 >= 1.0  # two waits of >= 0.5 s
