"""MarketState: latest values, republish dedupe, trade rings, catalog, venue states."""

from __future__ import annotations

import time

from common.symbols import group_name as group_of
from services.gateway.state import MarketState, split_topic

GROUPS = (("USD", "USDT", "USDC"),)


def make() -> MarketState:
    return MarketState(
        venues=[("binance", ["BTC-USDT"]), ("kraken", ["BTC-USD"])],
        quote_groups=GROUPS,
        trades_ring=5,
        stale_after_s=3.0,
    )


def depth(seq: int, ts_recv: int, bid: float = 1.0, state: str = "live") -> dict:
    return {
        "v": 1,
        "epoch": "e",
        "seq": seq,
        "ts_pub": 10 + seq,
        "type": "depth",
        "venue": "binance",
        "symbol": "BTC-USDT",
        "state": state,
        "bids": [[bid, 1.0]],
        "asks": [[bid + 1, 1.0]],
        "ts_recv": ts_recv,
        "ts_ingest_pub": ts_recv + 1,
    }


def trades(first: int, n: int, kind: str = "trades") -> dict:
    return {
        "type": kind,
        "trades": [{"price": 1.0, "size": 1.0, "side": "buy", "id": first + i} for i in range(n)],
        "ts_recv": 1,
    }


def test_split_and_groups():
    assert split_topic("depth.all.BTC-USD") == ("depth", "all", "BTC-USD")
    assert split_topic("hb.book") == ("hb", "book", "")
    assert group_of("BTC-USDT", GROUPS) == "BTC-USD"
    assert group_of("ETH-USDC-PERP", GROUPS) == "ETH-USD-PERP"
    assert group_of("BTC-EUR", GROUPS) == "BTC-EUR"
    assert group_of("WEIRD", GROUPS) is None
    assert group_of("A-B-C", GROUPS) is None


def test_latest_and_republish_dedupe():
    s = make()
    assert s.update("depth.binance.BTC-USDT", depth(1, 100))
    assert s.latest["depth.binance.BTC-USDT"]["seq"] == 1
    # a resync republishes the same data with a new seq/ts_pub: held, not news
    assert not s.update("depth.binance.BTC-USDT", depth(2, 100))
    assert s.duplicates == 1
    # same source timestamps but a new state is news
    assert s.update("depth.binance.BTC-USDT", depth(3, 100, state="stale"))
    assert s.update("depth.binance.BTC-USDT", depth(4, 101))
    assert s.bus_messages == {"depth": 4}
    assert not s.update("depth.binance", {})  # malformed topic
    # trace_hops: receive stamps differ on every copy, and a resync's copy has none of the
    # book builder's: still the same data
    bbo = {**depth(5, 102), "ts_book_wake": 7, "ts_book_rx": 8, "ts_gw_wake": 9, "ts_gw_rx": 10}
    assert s.update("bbo.binance.BTC-USDT", bbo)
    again = {**depth(6, 102), "ts_gw_wake": 19, "ts_gw_rx": 20}
    assert not s.update("bbo.binance.BTC-USDT", again)
    assert s.duplicates == 2


def test_trade_ring_and_dedupe():
    s = make()
    assert s.update("trade.binance.BTC-USDT", trades(1, 3))
    assert not s.update("trade.binance.BTC-USDT", trades(1, 3))  # republished batch
    assert s.update("trade.binance.BTC-USDT", trades(4, 4))
    ring = [t["id"] for _, t in s.trades["trade.binance.BTC-USDT"]]
    assert ring == [3, 4, 5, 6, 7]  # ring of 5
    assert s.update("trade.kraken.BTC-USD", trades(100, 1))
    recent = s.recent_trades(s.trade_topics(None, "BTC-USD"), 3)
    assert [(t["venue"], t["id"]) for t in recent] == [
        ("binance", 6),
        ("binance", 7),
        ("kraken", 100),
    ]
    assert list(s.trade_topics(("kraken",), None)) == ["trade.kraken.BTC-USD"]
    assert list(s.trade_topics(None, "BTC-USDT")) == ["trade.binance.BTC-USDT"]
    # a snapshot of recent trades fills the ring but is not forwarded as new trades
    assert not s.update("trade.kraken.BTC-USD", trades(200, 2, kind="snapshot"))
    assert len(s.trades["trade.kraken.BTC-USD"]) == 3


def test_catalog():
    s = make()
    assert s.venues() == ["binance", "kraken"]
    assert s.known_venue("binance") and not s.known_venue("bybit") and not s.known_venue("all")
    s.update("bbo.bybit.ETH-USDT-PERP", {"venue": "bybit"})
    s.update("status.okx", {"state": "live", "instruments": {"SOL-USDT": "live"}})
    assert s.venues() == ["binance", "kraken", "bybit", "okx"]
    assert s.symbols("okx") == {"SOL-USDT"}
    assert s.groups() == {"BTC-USD", "ETH-USD-PERP", "SOL-USD"}
    s.update("depth.all.XRP-USD", {"venue": "all"})
    assert "XRP-USD" in s.groups() and s.known_symbol("all", "XRP-USD")
    assert s.known_symbol("binance", "BTC-USDT") and not s.known_symbol("binance", "BTC-USD")


def test_a_venue_status_replaces_the_configured_guess_of_its_symbols():
    """A perpetuals venue configured with bases and a quote publishes BASE-QUOTE-PERP: once its
    status lists them, the guessed BASE-QUOTE names are no longer offered or accepted."""
    s = MarketState(
        venues=[("binance-perp", ["BTC-USDT", "ETH-USDT"])],
        quote_groups=GROUPS,
        trades_ring=5,
        stale_after_s=3.0,
    )
    assert s.known_symbol("binance-perp", "BTC-USDT")  # nothing reported yet: the guess
    assert not s.known_symbol("binance-perp", "BTC-USDT-PERP")
    s.update("status.binance-perp", {"state": "down", "instruments": {}})
    assert s.known_symbol("binance-perp", "BTC-USDT")  # an empty list says nothing yet
    instruments = {"BTC-USDT-PERP": "live", "ETH-USDT-PERP": "syncing"}
    s.update("status.binance-perp", {"state": "syncing", "instruments": instruments})
    assert s.symbols("binance-perp") == {"BTC-USDT-PERP", "ETH-USDT-PERP"}
    assert not s.known_symbol("binance-perp", "BTC-USDT")
    assert s.instrument_states("binance-perp") == {"BTC-USDT-PERP": "down", "ETH-USDT-PERP": "down"}
    assert s.groups() == {"BTC-USD-PERP", "ETH-USD-PERP"}


def test_venue_state_follows_book_liveness_and_status_age():
    s = make()
    assert s.venue_state("binance") == "down"  # book builder not seen yet
    assert s.set_book_alive(True) and not s.set_book_alive(True)
    assert s.venue_state("binance") == "down"  # no status yet
    s.update("status.binance", {"state": "syncing", "instruments": {"BTC-USDT": "syncing"}})
    assert s.venue_state("binance") == "syncing"
    assert s.venue_state("binance", time.monotonic() + 10) == "stale"
    # the book builder goes away long enough for the status to age, and comes back: that
    # status is not called stale at once (fresh ones are on their way), only if none come
    s.set_book_alive(False)
    s.status_at["binance"] -= 10
    assert s.set_book_alive(True)
    assert s.venue_state("binance") == "syncing"
    assert s.venue_state("binance", time.monotonic() + 10) == "stale"
    assert s.instrument_states("binance") == {"BTC-USDT": "syncing"}
    s.update("depth.kraken.BTC-USD", {"state": "live"})
    assert s.instrument_states("kraken") == {"BTC-USD": "live"}
    s.update("status.binance", {"state": "bogus"})
    assert s.venue_state("binance") == "down"
    s.set_book_alive(False)
    assert s.venue_state("kraken") == "down"
    assert s.instrument_states("kraken") == {"BTC-USD": "down"}


def test_trade_dedupe_survives_repeated_ids_leaving_the_ring():
    """An id held twice (a batch that partly repeats the previous one) is still known after
    its older copy leaves the ring, so a republished batch is not forwarded again."""
    s = make()  # ring of 5
    topic = "trade.binance.BTC-USDT"
    assert s.update(topic, trades(1, 2))  # ids 1, 2
    assert s.update(topic, trades(2, 2))  # 2, 3: partly new, so applied; 2 is held twice
    assert s.update(topic, trades(4, 2))  # 4, 5: the ring drops 1 and the first 2
    assert not s.update(topic, trades(2, 1)), "id 2 is still in the ring"
    odd = trades(9, 1)
    odd["trades"][0]["id"] = ["not", "hashable"]
    assert s.update(topic, odd)  # an id that cannot be a key is kept, never deduplicated
