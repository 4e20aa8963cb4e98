"""Kraken ingest against the simulator's Kraken v2 dialect, over real sockets on loopback: the
ingest book (depth 25, mirrored from the bus) equals the exchange's top 25, and every injected
fault is detected, counted and repaired."""

from __future__ import annotations

import contextlib

import pytest

from common.bus import Upstream
from common.config import load
from tests.busbook import BusMirror
from tests.procs import free_port, processes, venue_section, wait_until, write_config
from tests.simctl import SimControl

pytestmark = pytest.mark.integration

VENUE = "kraken"
TOPIC = "book.kraken.BTC-USD"
DEPTH = 25


@contextlib.contextmanager
def running(tmp_path, faults_before_ingest=()):
    sim_port = free_port()
    section = venue_section(
        VENUE,
        sim_port=sim_port,
        quote="USD",
        bases=["BTC", "ETH"],
        ws_path="/v2",
        extra="watchdog_s = 4.0",
    )
    path = write_config(tmp_path, section, rate=100)
    cfg = load(path)
    with processes(tmp_path) as start:
        start("simulator", ["-m", "services.simulator", "--config", str(path)])
        sim = SimControl(cfg.simulator["control_port"])
        wait_until(sim.healthy, 20, what="simulator up")
        for fault in faults_before_ingest:
            sim.fault(VENUE, **fault)
        start("ingest", ["-m", "services.ingest", VENUE, "--config", str(path)])
        v = cfg.venues[VENUE]
        mirror = BusMirror([Upstream(v.pub, v.control, "ingest-kraken")], ["book.", "trade."])
        try:
            yield sim, mirror
        finally:
            mirror.close()
            sim.close()


@pytest.fixture
def stack(tmp_path):
    with running(tmp_path) as s:
        yield s


def books_equal(sim: SimControl, mirror: BusMirror, symbol: str = "BTC/USD") -> bool:
    topic = f"book.kraken.{symbol.replace('/', '-')}"
    ours = mirror.top(topic, DEPTH + 10)  # more than the depth: nothing beyond it may remain
    return ours is not None and ours == sim.book(VENUE, symbol, DEPTH)


def converge(sim: SimControl, mirror: BusMirror) -> None:
    """Freeze the market, wait until both bus books equal the simulator's top 25, resume."""
    sim.pause()
    try:
        wait_until(
            lambda: books_equal(sim, mirror) and books_equal(sim, mirror, "ETH/USD"),
            20,
            what="bus books == simulator top 25",
        )
    finally:
        sim.resume()


def stats(mirror: BusMirror) -> dict:
    return mirror.stats("ingest-kraken") or {}


def inst_stat(mirror: BusMirror, symbol: str, key: str) -> int:
    return stats(mirror).get("instruments", {}).get(symbol, {}).get(key, 0)


def test_book_equals_simulator_then_lost_messages_and_a_bad_checksum_are_repaired(stack):
    sim, mirror = stack
    wait_until(lambda: mirror.count(TOPIC) > 50, 30, what="50 book messages")
    converge(sim, mirror)
    assert stats(mirror)["checksum_failures"] == 0
    assert len(mirror.top(TOPIC, 100)[0]) == DEPTH  # truncated to the subscribed depth

    # lost messages: Kraken has no sequence numbers, the next checksum catches them
    sim.fault(VENUE, "gap", symbol="BTC/USD", count=30)
    wait_until(
        lambda: inst_stat(mirror, "BTC-USD", "checksum_failures") >= 1, 20, what="loss detected"
    )
    converge(sim, mirror)
    assert inst_stat(mirror, "BTC-USD", "resyncs") >= 1

    # a wrong checksum on a correct book: resubscribe (no reconnect) gives an exact book again
    before = inst_stat(mirror, "ETH-USD", "checksum_failures")
    reconnects = stats(mirror)["reconnects"]
    sim.fault(VENUE, "checksum", symbol="ETH/USD")
    wait_until(
        lambda: inst_stat(mirror, "ETH-USD", "checksum_failures") == before + 1,
        20,
        what="bad checksum counted",
    )
    converge(sim, mirror)
    assert stats(mirror)["reconnects"] == reconnects
    assert inst_stat(mirror, "ETH-USD", "gaps") == 0
    assert stats(mirror)["trades"] > 0


def test_disconnect_stall_malformed_and_planned_close_are_survived(stack):
    sim, mirror = stack
    wait_until(lambda: mirror.count(TOPIC) > 20, 30, what="book flowing")

    sim.fault(VENUE, "malformed")
    wait_until(lambda: stats(mirror).get("parse_errors", 0) >= 1, 20, what="parse error counted")
    converge(sim, mirror)

    for kind, extra in (("disconnect", {}), ("planned_close", {}), ("stall", {"duration_s": 6})):
        reconnects = stats(mirror).get("reconnects", 0)
        sim.fault(VENUE, kind, **extra)
        wait_until(
            lambda r=reconnects: stats(mirror).get("reconnects", 0) > r,
            30,
            what=f"reconnect after {kind}",
        )
        converge(sim, mirror)


def test_metadata_rate_limited_at_start_is_retried(tmp_path):
    with running(tmp_path, [{"kind": "rest429", "count": 2}]) as (sim, mirror):
        wait_until(lambda: stats(mirror).get("rest_rate_limited", 0) >= 2, 30, what="429 honoured")
        wait_until(lambda: mirror.count(TOPIC) > 20, 30, what="book flowing after 429s")
        converge(sim, mirror)
        wait_until(lambda: stats(mirror).get("rest_calls") == 3, 10, what="2 refused + 1 call")


def test_a_precision_the_venue_changed_is_read_again_and_the_book_recovers(stack):
    """Kraken refines BTC/USD's price precision (1 -> 2 decimals): its checksums now cover
    prices printed with two decimals, so every one fails while ingest prints them with one. The
    first failure makes ingest read AssetPairs again, and the resync waits for that: its
    snapshot gives an exact book, and the checksums pass from then on."""
    sim, mirror = stack
    wait_until(lambda: mirror.count(TOPIC) > 20, 30, what="book flowing")
    converge(sim, mirror)
    wait_until(lambda: "metadata_reloads" in stats(mirror), 10, what="a heartbeat")
    assert stats(mirror)["metadata_reloads"] == 0
    sim.fault(VENUE, "precision", symbol="BTC/USD")
    wait_until(lambda: stats(mirror).get("metadata_reloads", 0) == 1, 20, what="metadata read")
    converge(sim, mirror)
    seen = mirror.count(TOPIC)
    wait_until(lambda: mirror.count(TOPIC) > seen + 50, 30, what="50 more book messages")
    converge(sim, mirror)
    assert inst_stat(mirror, "BTC-USD", "checksum_failures") == 1
    assert inst_stat(mirror, "ETH-USD", "checksum_failures") == 0
