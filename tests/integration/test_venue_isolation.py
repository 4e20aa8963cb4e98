"""Every venue at once, one ingest process each: a fault in one venue is detected and repaired
there, while the other venues' processes never notice (their message counts keep rising)."""

from __future__ import annotations

import pytest

from common.bus import Upstream
from common.config import load
from tests.busbook import BusMirror
from tests.procs import free_port, processes, venue_section, wait_until, write_config
from tests.simctl import SimControl

pytestmark = pytest.mark.integration

VENUES = {  # venue: (quote, ws path, extra config)
    "binance": ("USDT", "/stream", ""),
    "binance-perp": ("USDT", "/stream", ""),
    "bybit": ("USDT", "/v5/public", 'categories = ["spot", "linear"]'),
    "kraken": ("USD", "/v2", "depth = 25"),
    "coinbase": ("USD", "/", ""),
    "okx": ("USDT", "/ws/v5/public", ""),
}
FAULTS = [
    ("binance", "disconnect"),
    ("kraken", "checksum"),
    ("coinbase", "seqgap"),
    ("okx", "gap"),
    ("bybit", "disconnect"),
    ("binance-perp", "gap"),
]


@pytest.fixture(scope="module")
def all_venues(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("all")
    sections = "".join(
        venue_section(v, sim_port=free_port(), quote=q, bases=["BTC", "ETH"], ws_path=p, extra=x)
        for v, (q, p, x) in VENUES.items()
    )
    path = write_config(tmp, sections, rate=40)
    cfg = load(path)
    with processes(tmp) as start:
        start("simulator", ["-m", "services.simulator", "--config", str(path)])
        sim = SimControl(cfg.simulator["control_port"])
        wait_until(sim.healthy, 20, what="simulator up")
        for v in VENUES:
            start(f"ingest-{v}", ["-m", "services.ingest", v, "--config", str(path)])
        mirror = BusMirror(
            [Upstream(cfg.venues[v].pub, cfg.venues[v].control, f"ingest-{v}") for v in VENUES],
            ["book.", "trade."],
        )
        try:
            wait_until(
                lambda: all(state(mirror, v) == "live" for v in VENUES), 60, what="every venue live"
            )
            yield sim, mirror
        finally:
            mirror.close()
            sim.close()


def state(mirror: BusMirror, venue: str) -> str | None:
    stats = mirror.stats(f"ingest-{venue}")
    return stats and stats["venue_state"]


def book_messages(mirror: BusMirror, venue: str) -> int:
    with mirror.lock:
        return sum(n for t, n in mirror.counts.items() if t.startswith(f"book.{venue}."))


def repairs(mirror: BusMirror, venue: str) -> int:
    s = mirror.stats(f"ingest-{venue}") or {}
    return s.get("reconnects", 0) + s.get("resyncs", 0)


@pytest.mark.parametrize(("venue", "kind"), FAULTS)
def test_a_fault_in_one_venue_leaves_the_others_untouched(all_venues, venue, kind):
    sim, mirror = all_venues
    others = [v for v in VENUES if v != venue]
    before = {v: book_messages(mirror, v) for v in VENUES}
    others_repairs = {v: repairs(mirror, v) for v in others}
    faulted_repairs = repairs(mirror, venue)
    symbol = {
        "binance": "BTCUSDT",
        "binance-perp": "BTCUSDT",
        "kraken": "BTC/USD",
        "coinbase": "BTC-USD",
        "okx": "BTC-USDT",
        "bybit": "spot:BTCUSDT",
    }[venue]
    kw = {} if kind == "disconnect" else {"symbol": symbol}
    sim.fault(venue, kind, **kw)
    wait_until(
        lambda: repairs(mirror, venue) > faulted_repairs,
        30,
        what=f"{kind} on {venue} detected and counted",
    )
    # while the faulted venue repairs itself, every other venue keeps publishing
    wait_until(
        lambda: all(book_messages(mirror, v) > before[v] + 20 for v in others),
        30,
        what="other venues keep updating",
    )
    wait_until(lambda: state(mirror, venue) == "live", 30, what=f"{venue} live again")
    assert {v: repairs(mirror, v) for v in others} == others_repairs
    assert all(state(mirror, v) == "live" for v in others)
