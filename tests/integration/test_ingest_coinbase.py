"""Coinbase ingest against the simulator's Coinbase dialect, over real sockets on loopback: the
ingest books equal the exchange's (whole books of several MB), one ``sequence_num`` gap resyncs
every book of the connection, and every other injected fault is detected and repaired."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from common.bus import Upstream
from common.config import load
from tests.busbook import BusMirror
from tests.procs import free_port, processes, venue_section, wait_until, write_config
from tests.simctl import SimControl

pytestmark = pytest.mark.integration

SYMBOLS = ["BTC-USD", "ETH-USD", "SOL-USD"]
FULL = 1_000_000  # depth that means "the whole book"
LEVELS = 30_000  # sim_levels: BTC-USD's snapshot frame is ~4.4 MB


@pytest.fixture
def start(tmp_path):
    """``start(before_ingest=None)`` -> (sim, mirror): simulator, then the ingest process."""
    with processes(tmp_path) as spawn:
        mirrors: list[BusMirror] = []
        sims: list[SimControl] = []

        def run(before_ingest: Callable[[SimControl], None] | None = None):
            sim_port = free_port()
            extra = f"watchdog_s = 4.0\nsim_levels = {LEVELS}"
            section = venue_section(
                "coinbase",
                sim_port=sim_port,
                quote="USD",
                bases=["BTC", "ETH", "SOL"],
                ws_path="/",
                extra=extra,
            )
            path = write_config(tmp_path, section, rate=100)
            cfg = load(path)
            spawn("simulator", ["-m", "services.simulator", "--config", str(path)])
            sim = SimControl(cfg.simulator["control_port"])
            sims.append(sim)
            wait_until(sim.healthy, 30, what="simulator up")
            if before_ingest:
                before_ingest(sim)
            v = cfg.venues["coinbase"]
            mirror = BusMirror([Upstream(v.pub, v.control, "ingest-coinbase")], ["book.", "trade."])
            mirrors.append(mirror)
            spawn("ingest", ["-m", "services.ingest", "coinbase", "--config", str(path)])
            return sim, mirror

        try:
            yield run
        finally:
            for m in mirrors:
                m.close()
            for s in sims:
                s.close()


def topic(symbol: str) -> str:
    return f"book.coinbase.{symbol}"


def equal(sim: SimControl, mirror: BusMirror, symbol: str, depth: int = 50) -> bool:
    ours = mirror.top(topic(symbol), depth)
    return ours is not None and ours == sim.book("coinbase", symbol, depth)


def converge(sim: SimControl, mirror: BusMirror, depth: int = 50, timeout: float = 30) -> None:
    """Freeze the market, wait until every bus book equals the simulator's, resume."""
    sim.pause()
    try:
        for symbol in SYMBOLS:
            wait_until(
                lambda s=symbol: equal(sim, mirror, s, depth),
                timeout,
                what=f"bus {symbol} == simulator {symbol} (depth {depth})",
            )
    finally:
        sim.resume()


def stats(mirror: BusMirror) -> dict:
    return mirror.stats("ingest-coinbase") or {}


def per_instrument(mirror: BusMirror, key: str) -> dict[str, int]:
    inst = stats(mirror).get("instruments", {})
    return {s: inst.get(s, {}).get(key, -1) for s in SYMBOLS}


def all_live(mirror: BusMirror) -> bool:
    inst = stats(mirror).get("instruments", {})
    return all(inst.get(s, {}).get("state") == "live" for s in SYMBOLS)


def test_several_megabyte_snapshots_give_whole_books_equal_to_the_simulator(start):
    sim, mirror = start()
    wait_until(lambda: mirror.count(topic("BTC-USD")) > 30, 60, what="BTC-USD book flowing")
    wait_until(lambda: all_live(mirror), 30, what="every book live")
    sim.pause()
    try:
        bids, asks = sim.book("coinbase", "BTC-USD", FULL)
        assert len(bids) + len(asks) > 30_000  # ~105 bytes a level on the wire: > 3 MB
        for symbol in SYMBOLS:
            wait_until(
                lambda s=symbol: equal(sim, mirror, s, FULL), 30, what=f"whole {symbol} book"
            )
    finally:
        sim.resume()
    st = stats(mirror)
    assert st["bytes"] > 8_000_000  # three snapshots of 3-4.5 MB were read
    assert st["parse_errors"] == 0 and st["gaps"] == 0 and st["reconnects"] == 0
    wait_until(lambda: stats(mirror).get("trades", 0) > 0, 20, what="trades published")
    trades = mirror.latest.get("trade.coinbase.BTC-USD") or mirror.latest["trade.coinbase.ETH-USD"]
    assert trades["trades"] and {t["side"] for t in trades["trades"]} <= {"buy", "sell"}


def test_one_sequence_gap_resyncs_every_book_on_the_connection(start):
    sim, mirror = start()
    wait_until(lambda: all_live(mirror), 60, what="every book live")
    converge(sim, mirror)
    assert per_instrument(mirror, "resyncs") == dict.fromkeys(SYMBOLS, 0)
    reconnects = stats(mirror)["reconnects"]
    connections = sim.stats("coinbase")["ws_connections_total"]

    sim.fault("coinbase", "seqgap", symbol="SOL-USD")  # one number skipped, no data lost
    wait_until(
        lambda: per_instrument(mirror, "resyncs") == dict.fromkeys(SYMBOLS, 1),
        30,
        what="every instrument resynced once",
    )
    assert per_instrument(mirror, "gaps") == dict.fromkeys(SYMBOLS, 1)
    # one reconnect (a slow machine may add a watchdog one while the big snapshots load)
    wait_until(lambda: stats(mirror)["reconnects"] >= reconnects + 1, 20, what="a reconnect")
    converge(sim, mirror)
    assert sim.stats("coinbase")["ws_connections_total"] >= connections + 1

    # a lost update (generic gap fault) is seen the same way: a jump of the connection's number
    sim.fault("coinbase", "gap", symbol="ETH-USD")
    wait_until(
        lambda: per_instrument(mirror, "resyncs") == dict.fromkeys(SYMBOLS, 2),
        30,
        what="every instrument resynced twice",
    )
    converge(sim, mirror)
    assert stats(mirror)["parse_errors"] == 0


def test_malformed_disconnect_stall_and_planned_close_are_survived(start):
    sim, mirror = start()
    wait_until(lambda: all_live(mirror), 60, what="every book live")

    # a truncated copy, then the intact frame with the same sequence_num: counted, no gap
    sim.fault("coinbase", "malformed")
    wait_until(lambda: stats(mirror).get("parse_errors", 0) >= 1, 20, what="parse error")
    frames = stats(mirror)["frames"]
    wait_until(lambda: stats(mirror)["frames"] > frames + 100, 20, what="100 more frames")
    assert stats(mirror)["gaps"] == 0 and stats(mirror)["reconnects"] == 0
    converge(sim, mirror)

    for kind, kw in (("disconnect", {}), ("stall", {"duration_s": 6}), ("planned_close", {})):
        reconnects = stats(mirror)["reconnects"]
        sim.fault("coinbase", kind, **kw)
        wait_until(
            lambda r=reconnects: stats(mirror)["reconnects"] > r, 30, what=f"reconnect ({kind})"
        )
        converge(sim, mirror)


def test_rate_limited_metadata_is_retried(start):
    sim, mirror = start(lambda s: s.fault("coinbase", "rest429", count=2))
    wait_until(lambda: stats(mirror).get("rest_rate_limited", 0) >= 2, 30, what="429 honoured")
    wait_until(lambda: all_live(mirror), 60, what="every book live")
    converge(sim, mirror)
    assert sim.stats("coinbase")["faults"]["rest429"] == 1
