"""The book builder's engine (services/book/engine.py) fed ingest messages directly: what it
publishes, with which timestamps, how it excludes and restores venues, and bad input."""

from __future__ import annotations

import random
import time
from typing import Any

import pytest

from common.book import OrderBook
from common.config import ConfigError
from services.book.consolidate import Group
from services.book.engine import Engine, Settings
from services.book.mirror import BadMessage, Mirror, parse_levels
from services.book.rates import parse_references

T0 = 1_700_000_000_000_000_000


class Bus:
    """Collects what the engine publishes; plays the Publisher (stamps ts_pub) and runs the
    conflated depth publishes when told to."""

    def __init__(self) -> None:
        self.out: list[tuple[str, dict[str, Any]]] = []
        self.touched: set[str] = set()
        self.resyncs: list[tuple[str, str]] = []
        self.refreshes: list[tuple[str, str]] = []  # snapshots asked for, copy kept live
        self.forgotten: list[tuple[str, str]] = []  # book topics no longer followed
        self.now = 1000.0

    def publish(self, topic: str, body: dict[str, Any]) -> None:
        body["ts_pub"] = time.time_ns()
        self.out.append((topic, dict(body)))

    def touch(self, topic: str) -> None:
        self.touched.add(topic)

    def flush(self, engine: Engine) -> None:
        for topic in sorted(self.touched):
            engine.depth_message(topic)
        self.touched.clear()
        engine.flush_status()

    def last(self, topic: str) -> dict[str, Any] | None:
        for t, body in reversed(self.out):
            if t == topic:
                return body
        return None

    def count(self, topic: str) -> int:
        return sum(1 for t, _ in self.out if t == topic)


def make(
    references: dict | None = None, venues=("binance", "kraken"), keep: int = 10
) -> tuple[Engine, Bus]:
    bus = Bus()
    engine = Engine(
        Settings(depth=3, stale_after_s=3.0, keep=keep, references=parse_references(references)),
        venues,
        bus.publish,
        bus.touch,
        resync=lambda venue, topic, reason: bus.resyncs.append((venue, topic)),
        refresh=lambda venue, topic: bus.refreshes.append((venue, topic)),
        forget=lambda venue, topic: bus.forgotten.append((venue, topic)),
        clock=lambda: bus.now,
    )
    for v in venues:
        engine.set_upstream(v, True)
        hb(engine, v)
    return engine, bus


def hb(engine: Engine, venue: str, state: str = "live") -> None:
    engine.on_message(
        venue,
        f"hb.ingest-{venue}",
        {
            "type": "hb",
            "service": f"ingest-{venue}",
            "stats": {"venue": venue, "venue_state": state},
        },
    )


def book_msg(venue: str, symbol: str, kind: str, bids, asks, n: int = 0) -> dict[str, Any]:
    return {
        "v": 1,
        "epoch": "e",
        "seq": n + 1,
        "ts_pub": T0 + 2000 + n,
        "type": kind,
        "venue": venue,
        "symbol": symbol,
        "state": "live",
        "bids": bids,
        "asks": asks,
        "ts_exch": T0 + n,
        "ts_recv": T0 + 1000 + n,
    }


def feed(engine: Engine, venue: str, symbol: str, kind: str, bids, asks, n: int = 0) -> None:
    engine.on_message(venue, f"book.{venue}.{symbol}", book_msg(venue, symbol, kind, bids, asks, n))


def test_books_bbo_depth_and_consolidated_with_timestamps() -> None:
    engine, bus = make()
    feed(
        engine,
        "binance",
        "BTC-USDT",
        "snapshot",
        [[100.0, 1.0], [99.5, 2.0], [99.0, 3.0], [98.5, 4.0]],
        [[100.5, 1.0], [101.0, 2.0]],
    )
    feed(engine, "kraken", "BTC-USD", "snapshot", [[100.0, 0.5], [99.75, 1.0]], [[101.0, 1.5]], 1)
    bbo = bus.last("bbo.binance.BTC-USDT")
    assert bbo["bid"] == [100.0, 1.0] and bbo["ask"] == [100.5, 1.0] and bbo["state"] == "live"
    assert bbo["spread_bps"] == pytest.approx(49.8753, abs=1e-3)
    assert (bbo["ts_exch"], bbo["ts_recv"], bbo["ts_ingest_pub"]) == (T0, T0 + 1000, T0 + 2000)
    bus.flush(engine)
    depth = bus.last("depth.binance.BTC-USDT")
    assert depth["bids"] == [[100.0, 1.0], [99.5, 2.0], [99.0, 3.0]]  # depth 3
    allb = bus.last("depth.all.BTC-USD")
    assert allb["bids"] == [
        [100.0, 1.5, {"binance": 1.0, "kraken": 0.5}],
        [99.75, 1.0, {"kraken": 1.0}],
        [99.5, 2.0, {"binance": 2.0}],
    ]
    assert allb["asks"] == [
        [100.5, 1.0, {"binance": 1.0}],
        [101.0, 3.5, {"binance": 2.0, "kraken": 1.5}],
    ]
    assert allb["venues"] == ["binance", "kraken"] and allb["excluded"] == {}
    assert allb["conversion"]["binance:BTC-USDT"] == {"quote": "USDT", "rate": 1.0, "source": "1:1"}
    assert allb["ts_recv"] == T0 + 1001  # the group's newest data (kraken's)
    ball = bus.last("bbo.all.BTC-USD")
    assert ball["bid"] == [100.0, 1.5, "binance"] and ball["crossed"] is False

    # a delta below the top: no bbo, but depth follows; a delta at the top: bbo
    n_bbo = bus.count("bbo.binance.BTC-USDT")
    feed(engine, "binance", "BTC-USDT", "delta", [[99.5, 0.0]], [], 2)
    assert bus.count("bbo.binance.BTC-USDT") == n_bbo
    bus.flush(engine)
    assert bus.last("depth.binance.BTC-USDT")["bids"] == [[100.0, 1.0], [99.0, 3.0], [98.5, 4.0]]
    feed(engine, "binance", "BTC-USDT", "delta", [], [[100.25, 0.1]], 3)
    assert bus.last("bbo.binance.BTC-USDT")["ask"] == [100.25, 0.1]
    # kraken's bid above binance's new ask: crossed across venues
    feed(engine, "kraken", "BTC-USD", "delta", [[100.3, 0.05]], [], 4)
    ball = bus.last("bbo.all.BTC-USD")
    assert ball["crossed"] is True and ball["crossed_size"] == 0.05
    assert ball["bid"] == [100.3, 0.05, "kraken"] and ball["ask"] == [100.25, 0.1, "binance"]
    # an unchanged depth is not republished
    bus.flush(engine)
    n_depth = bus.count("depth.all.BTC-USD")
    engine.depth_message("depth.all.BTC-USD")
    assert bus.count("depth.all.BTC-USD") == n_depth


def test_exclusion_state_stale_down_and_back() -> None:
    engine, bus = make()
    feed(engine, "binance", "BTC-USDT", "snapshot", [[100.0, 1.0]], [[101.0, 1.0]])
    feed(engine, "kraken", "BTC-USD", "snapshot", [[99.0, 2.0]], [[102.0, 1.0]])
    # ingest says syncing
    engine.on_message(
        "kraken",
        "book.kraken.BTC-USD",
        {"type": "state", "state": "syncing", "reason": "gap", "ts_recv": T0},
    )
    bus.flush(engine)
    allb = bus.last("depth.all.BTC-USD")
    assert allb["venues"] == ["binance"] and allb["excluded"] == {"kraken": "syncing"}
    assert allb["bids"] == [[100.0, 1.0, {"binance": 1.0}]]
    assert bus.last("bbo.kraken.BTC-USD")["state"] == "syncing"
    assert bus.last("bbo.kraken.BTC-USD")["bid"] is None
    # a delta without a snapshot is not applied
    feed(engine, "kraken", "BTC-USD", "delta", [[99.5, 1.0]], [])
    assert engine.mirror_of("kraken", "BTC-USD").ignored == 1
    feed(engine, "kraken", "BTC-USD", "snapshot", [[99.0, 2.0]], [[102.0, 1.0]])
    # our copy loses sync (seq gap seen by the Subscriber)
    engine.on_stale("book.binance.BTC-USDT", "seq gap")
    bus.flush(engine)
    assert bus.last("depth.all.BTC-USD")["excluded"] == {"binance": "stale"}
    assert bus.last("bbo.all.BTC-USD")["excluded"] == {"binance": "stale"}
    feed(engine, "binance", "BTC-USDT", "snapshot", [[100.0, 1.0]], [[101.0, 1.0]])
    # publisher silent: every book of the venue out at once, status down
    engine.set_upstream("kraken", False)
    bus.flush(engine)
    assert bus.last("depth.all.BTC-USD")["excluded"] == {"kraken": "down"}
    assert bus.last("depth.kraken.BTC-USD")["state"] == "down"
    assert bus.last("status.kraken")["state"] == "down"
    # back: upstream alive and a heartbeat; the book (kept) comes back without a snapshot
    bus.now += 5
    engine.set_upstream("kraken", True)
    hb(engine, "kraken")
    engine.set_upstream("binance", True)
    hb(engine, "binance")
    bus.flush(engine)
    allb = bus.last("depth.all.BTC-USD")
    assert allb["venues"] == ["binance", "kraken"] and allb["excluded"] == {}
    assert bus.last("status.kraken")["state"] == "live"


def test_no_heartbeat_for_stale_after_is_down() -> None:
    engine, bus = make()
    feed(engine, "kraken", "BTC-USD", "snapshot", [[99.0, 2.0]], [[102.0, 1.0]])
    bus.now += 2.0
    hb(engine, "binance")
    engine.tick()
    assert engine.venues["kraken"].down is False
    bus.now += 1.5  # kraken's last heartbeat 3.5 s ago
    hb(engine, "binance")
    engine.tick()
    assert engine.venues["kraken"].down is True and engine.venues["binance"].down is False
    status = bus.last("status.kraken")
    assert status["state"] == "down" and status["instruments"] == {"BTC-USD": "down"}
    assert status["stats"] is None  # a down ingest's last msg rate, CPU, RSS are not current
    hb(engine, "kraken")
    assert engine.venues["kraken"].down is False
    bus.flush(engine)
    assert bus.last("status.kraken")["state"] == "live"
    assert bus.last("status.kraken")["stats"]["venue_state"] == "live"


def test_last_message_age_counts_exchange_data_not_heartbeats() -> None:
    """An exchange gone quiet while its ingest keeps beating: last_msg_age_s grows."""
    engine, bus = make()
    feed(engine, "kraken", "BTC-USD", "snapshot", [[99.0, 2.0]], [[102.0, 1.0]])
    for _ in range(5):
        bus.now += 1.0
        hb(engine, "kraken")
        hb(engine, "binance")
    engine.publish_status("kraken")
    assert bus.last("status.kraken")["last_msg_age_s"] == 5.0
    feed(engine, "kraken", "BTC-USD", "delta", [[99.0, 1.0]], [], 1)
    engine.publish_status("kraken")
    assert bus.last("status.kraken")["last_msg_age_s"] == 0.0


def test_trades_pass_through_with_ingest_publish_time() -> None:
    engine, bus = make()
    msg = {
        "v": 1,
        "epoch": "e",
        "seq": 7,
        "ts_pub": T0 + 5,
        "type": "trades",
        "venue": "binance",
        "symbol": "BTC-USDT",
        "ts_recv": T0,
        "trades": [
            {"price": 100.0, "size": 0.1, "side": "buy", "id": "1", "ts_exch": T0 - 9},
            {"price": 100.5, "size": 0.2, "side": "sell", "id": "2", "ts_exch": T0 - 8},
        ],
    }
    engine.on_message("binance", "trade.binance.BTC-USDT", dict(msg))
    out = bus.last("trade.binance.BTC-USDT")
    assert out["trades"] == msg["trades"] and out["type"] == "trades"
    assert out["ts_recv"] == T0 and out["ts_ingest_pub"] == T0 + 5 and out["ts_exch"] == T0 - 8
    assert "epoch" not in out and "seq" not in out  # restamped by the book Publisher
    stats = engine.stats()
    assert stats["latency_us"]["recv_to_pub"]["count"] == 1
    assert stats["latency_us_by_venue"]["binance"]["ingest_pub_to_pub"]["count"] == 1


def test_bad_messages_are_counted_never_raised() -> None:
    engine, bus = make()
    feed(engine, "binance", "BTC-USDT", "snapshot", [[100.0, 1.0]], [[101.0, 1.0]])
    bad = [
        ("book.binance.BTC-USDT", {"type": "delta", "bids": "garbage", "asks": []}),
        ("book.binance.BTC-USDT", {"type": "delta", "bids": [[100.0, "1"]], "asks": []}),
        ("book.binance.BTC-USDT", {"type": "wat"}),
        ("book.binance.X/Y", {"type": "snapshot", "bids": [], "asks": []}),
        ("book.kraken.BTC-USD", {"type": "snapshot", "bids": [], "asks": []}),  # wrong link
        ("trade.binance.BTC-USDT", {"type": "trades", "trades": "x"}),
        ("hb.ingest-binance", {"type": "hb", "stats": None}),
        ("weird.binance", {}),
    ]
    for topic, msg in bad:
        engine.on_message("binance", topic, msg)
    assert engine.bad == len(bad) and engine.bad_by_venue == {"binance": len(bad)}
    # the bad delta left our copy unusable: excluded, and a resync was asked for
    assert engine.mirror_of("binance", "BTC-USDT").state == "stale"
    assert ("binance", "book.binance.BTC-USDT") in bus.resyncs
    feed(engine, "binance", "BTC-USDT", "snapshot", [[100.0, 1.0]], [[101.0, 1.0]])
    assert engine.mirror_of("binance", "BTC-USDT").state == "live"


def test_a_bad_snapshot_of_a_syncing_book_asks_for_another() -> None:
    """The Subscriber took the snapshot for the book's resync and delivers what follows, which
    our copy, still not live, ignores: without a new request the venue stayed out for good."""
    engine, bus = make()
    feed(engine, "binance", "BTC-USDT", "snapshot", [[100.0, 1.0]], [[101.0, 1.0]])
    engine.on_message(
        "binance",
        "book.binance.BTC-USDT",
        {"type": "state", "venue": "binance", "symbol": "BTC-USDT", "state": "syncing"},
    )
    asked = [("binance", "book.binance.BTC-USDT")]
    bad = [[99.0, -0.0001]]
    feed(engine, "binance", "BTC-USDT", "snapshot", bad, [[101.0, 1.0]], 1)
    assert engine.bad == 1 and engine.mirror_of("binance", "BTC-USDT").state != "live"
    # not at once (the ingest would answer the same at once, for ever): after 1 s, then 2 s
    engine.tick()
    assert bus.resyncs == []
    bus.now += 1.0
    engine.tick()
    assert bus.resyncs == asked
    feed(engine, "binance", "BTC-USDT", "snapshot", bad, [[101.0, 1.0]], 2)  # refused again
    bus.now += 1.5
    engine.tick()
    assert bus.resyncs == asked
    bus.now += 0.5
    engine.tick()
    assert bus.resyncs == asked * 2
    feed(engine, "binance", "BTC-USDT", "snapshot", [[99.0, 2.0]], [[101.0, 1.0]], 3)
    assert engine.mirror_of("binance", "BTC-USDT").state == "live"
    bus.now += 10
    engine.tick()
    assert bus.resyncs == asked * 2  # live: no more


def test_a_book_the_ingest_no_longer_lists_is_dropped_not_stale_for_ever() -> None:
    """An ingest restarted without DOGE (symbols_off): its heartbeat lists BTC only. DOGE gets
    a last ``down``, leaves its consolidated book and the venue's status (which would else say
    ``stale`` for ever), and is no longer followed."""
    engine, bus = make()
    feed(engine, "binance", "BTC-USDT", "snapshot", [[100.0, 1.0]], [[101.0, 1.0]])
    feed(engine, "binance", "DOGE-USDT", "snapshot", [[0.1, 5.0]], [[0.2, 5.0]])
    feed(engine, "kraken", "DOGE-USD", "snapshot", [[0.11, 2.0]], [[0.21, 2.0]])
    engine.on_stale("book.binance.DOGE-USDT", "new epoch")  # the restart
    stats = {"venue": "binance", "venue_state": "live", "instruments": {"BTC-USDT": {}}}
    engine.on_message("binance", "hb.ingest-binance", {"type": "hb", "stats": stats})
    assert engine.mirror_of("binance", "DOGE-USDT") is None
    assert bus.forgotten == [("binance", "book.binance.DOGE-USDT")]
    assert bus.last("bbo.binance.DOGE-USDT")["state"] == "down"
    assert bus.last("depth.binance.DOGE-USDT")["state"] == "down"
    consolidated = bus.last("bbo.all.DOGE-USD")
    assert consolidated["venues"] == ["kraken"] and consolidated["excluded"] == {}
    assert consolidated["bid"][0] == 0.11
    bus.flush(engine)
    status = bus.last("status.binance")
    assert status["instruments"] == {"BTC-USDT": "live"} and status["state"] == "live"
    assert not any(t.startswith("depth.binance.DOGE") for t in engine.depth_topics())


def test_resync_snapshots_for_prefixes() -> None:
    engine, _bus = make()
    feed(engine, "binance", "BTC-USDT", "snapshot", [[100.0, 1.0]], [[101.0, 1.0]])
    feed(engine, "binance", "ETH-USDT-PERP", "snapshot", [[10.0, 1.0]], [[11.0, 1.0]])
    topics = [t for t, _ in engine.snapshots(["depth.", "bbo.", "status."])]
    assert set(topics) == {
        "depth.binance.BTC-USDT",
        "bbo.binance.BTC-USDT",
        "depth.binance.ETH-USDT-PERP",
        "bbo.binance.ETH-USDT-PERP",
        "depth.all.BTC-USD",
        "bbo.all.BTC-USD",
        "depth.all.ETH-USD-PERP",
        "bbo.all.ETH-USD-PERP",
        "status.binance",
        "status.kraken",
    }
    only = dict(engine.snapshots(["depth.all."]))
    assert set(only) == {"depth.all.BTC-USD", "depth.all.ETH-USD-PERP"}
    assert only["depth.all.BTC-USD"]["bids"] == [[100.0, 1.0, {"binance": 1.0}]]


def test_reference_conversion() -> None:
    engine, bus = make({"USDT": "kraken:USDT-USD"})
    feed(engine, "binance", "BTC-USDT", "snapshot", [[100.0, 1.0]], [[101.0, 1.0]])
    bus.flush(engine)
    conv = bus.last("depth.all.BTC-USD")["conversion"]["binance:BTC-USDT"]
    assert conv["rate"] == 1.0 and conv["source"] == "1:1" and "not available" in conv["note"]
    feed(engine, "kraken", "USDT-USD", "snapshot", [[0.999, 1e6]], [[1.001, 1e6]])
    feed(engine, "kraken", "BTC-USD", "snapshot", [[99.0, 2.0]], [[102.0, 1.0]])
    feed(
        engine,
        "kraken",
        "USDT-USD",
        "delta",
        [[0.999, 0], [1.0005, 5.0]],
        [[1.001, 0], [1.0015, 5.0]],
    )
    bus.flush(engine)
    allb = bus.last("depth.all.BTC-USD")
    assert allb["conversion"]["binance:BTC-USDT"] == {
        "quote": "USDT",
        "rate": 1.001,
        "source": "ref:kraken USDT-USD mid",
        "live": True,
    }
    assert allb["conversion"]["kraken:BTC-USD"]["rate"] == 1.0
    assert allb["bids"][0] == [100.1, 1.0, {"binance": 1.0}]
    assert bus.last("bbo.all.BTC-USD")["ask"] == [101.101, 1.0, "binance"]
    # reference lost: last mid, said so
    engine.on_stale("book.kraken.USDT-USD", "gap")
    bus.flush(engine)
    conv = bus.last("depth.all.BTC-USD")["conversion"]["binance:BTC-USDT"]
    assert conv["rate"] == 1.001 and conv["live"] is False
    with pytest.raises(ConfigError):
        parse_references({"USDT": "kraken:BTC-USD"})


def test_trimmed_levels_never_reach_the_published_depth() -> None:
    """A deep snapshot is cut to ``keep`` levels; resting levels past the cut are unknown. As
    deletes walk the top down towards the cut, depth stays exact; the delete that would put an
    unknown level into the top ``depth`` takes the book out (stale) and asks ingest for a fresh
    snapshot instead of publishing a book with holes."""
    engine, bus = make()  # depth 3, keep 10: a side over 100 levels is cut to 10
    bids = [[1000.0 - i, 1.0] for i in range(150)]
    asks = [[1001.0 + i, 1.0] for i in range(5)]
    feed(engine, "binance", "BTC-USDT", "snapshot", bids, asks)
    m = engine.mirrors["binance.BTC-USDT"]
    assert m.trims == 1 and len(m.book.bids) == 10  # 991..1000 kept, 851..990 cut
    for n in range(1, 8):  # delete 1000, 999, ... 994: the top 3 are 993..991, all kept
        feed(engine, "binance", "BTC-USDT", "delta", [[1001.0 - n, 0.0]], [], n)
        bus.flush(engine)
        depth = bus.last("depth.binance.BTC-USDT")
        assert depth["state"] == "live"
        assert depth["bids"] == [[1000.0 - n - i, 1.0] for i in range(3)]
    assert bus.resyncs == []
    feed(engine, "binance", "BTC-USDT", "delta", [[993.0, 0.0]], [], 8)  # next: 992, 991, 990?
    bus.flush(engine)
    assert bus.last("bbo.binance.BTC-USDT")["state"] == "stale"
    assert bus.last("depth.binance.BTC-USDT")["bids"] == []
    assert bus.resyncs == [("binance", "book.binance.BTC-USDT")]
    rest = [[992.0 - i, 1.0] for i in range(50)]  # ingest's whole book, 990 included
    feed(engine, "binance", "BTC-USDT", "snapshot", rest, asks, 9)
    bus.flush(engine)
    assert bus.last("depth.binance.BTC-USDT")["bids"] == [[992.0, 1.0], [991.0, 1.0], [990.0, 1.0]]


def test_a_trimmed_book_asks_for_a_snapshot_before_its_top_reaches_the_cut() -> None:
    """Once the top 2 x depth levels reach past the cut, the book builder asks ingest for a
    snapshot while the book stays live (a full book, e.g. Coinbase's, is always cut): it goes
    stale only if the top depth levels reach the cut before the snapshot comes."""
    engine, bus = make()  # depth 3, keep 10: a side over 100 levels is cut to 10
    bids = [[1000.0 - i, 1.0] for i in range(150)]
    asks = [[1001.0 + i, 1.0] for i in range(5)]
    feed(engine, "binance", "BTC-USDT", "snapshot", bids, asks)
    for n in range(1, 5):  # 1000..997 gone: the 6th best bid (991) is still above the cut
        feed(engine, "binance", "BTC-USDT", "delta", [[1001.0 - n, 0.0]], [], n)
    assert bus.refreshes == []
    for n in range(5, 8):  # 996..994: the top 6 reach past 991; asked for once
        feed(engine, "binance", "BTC-USDT", "delta", [[1001.0 - n, 0.0]], [], n)
    assert bus.refreshes == [("binance", "book.binance.BTC-USDT")]
    bus.flush(engine)
    assert bus.last("bbo.binance.BTC-USDT")["state"] == "live" and bus.resyncs == []
    assert bus.last("depth.binance.BTC-USDT")["bids"] == [[993.0, 1.0], [992.0, 1.0], [991.0, 1.0]]
    # ingest's answer: its whole book, the levels under the cut included
    feed(engine, "binance", "BTC-USDT", "snapshot", [[993.0 - i, 1.0] for i in range(140)], asks, 8)
    for n in range(9, 12):  # 993..991 gone: exact, since the new cut lies much lower
        feed(engine, "binance", "BTC-USDT", "delta", [[1002.0 - n, 0.0]], [], n)
    bus.flush(engine)
    assert bus.last("depth.binance.BTC-USDT")["bids"] == [[990.0, 1.0], [989.0, 1.0], [988.0, 1.0]]
    assert bus.last("bbo.binance.BTC-USDT")["state"] == "live" and bus.resyncs == []
    assert engine.stats()["refreshes"] == 1


def test_mirror_trim_with_hysteresis_and_level_parsing() -> None:
    class H:
        down = False

    m = Mirror("binance", "BTC-USDT", H(), keep=5)
    m.snapshot(
        [(100.0 - i, 1.0) for i in range(50)],
        [(101.0 + i, 1.0) for i in range(50)],
        "live",
        (None, 1, 2),
    )
    assert len(m.book.bids) == 50 and m.trims == 0  # 50 <= 10 * 5: kept
    m.delta([(40.0, 1.0)], [], (None, 3, 4))
    assert len(m.book.bids) == 5 and len(m.book.asks) == 5 and m.trims == 1
    assert m.book.top_bids(5) == [(100.0 - i, 1.0) for i in range(5)]
    ref = OrderBook()
    ref.apply([(100.0 - i, 1.0) for i in range(5)], [(101.0 + i, 1.0) for i in range(5)])
    assert m.book.top(5) == ref.top(5)
    for bad in ("x", [[1.0]], [[1.0, True]], [[-1.0, 1.0]], [[1.0, float("nan")]], [None]):
        with pytest.raises(BadMessage):
            parse_levels(bad)
    assert parse_levels([[1, 2], [3.5, 0]]) == [(1.0, 2.0), (3.5, 0.0)]


def test_crossed_size_follows_a_deeper_level_while_crossed() -> None:
    """crossed_size reads every market's top levels: a new third ask that crosses binance's bid
    changes it while no best bid or ask moved."""
    engine, bus = make()
    feed(engine, "binance", "BTC-USDT", "snapshot", [[100.0, 5.0]], [[101.0, 1.0]])
    feed(engine, "kraken", "BTC-USD", "snapshot", [[99.0, 1.0]], [[99.5, 1.0], [99.9, 1.0]], 1)
    before = bus.last("bbo.all.BTC-USD")
    assert before["crossed"] and before["crossed_size"] == 2.0
    feed(engine, "kraken", "BTC-USD", "delta", [], [[99.95, 3.0]], 2)
    assert bus.last("bbo.all.BTC-USD")["crossed_size"] == 5.0


def test_a_reference_book_that_goes_out_leaves_its_last_mid_as_the_rate() -> None:
    ref = {"USDT": "kraken:USDT-USD"}
    syncing = {"type": "state", "venue": "kraken", "symbol": "USDT-USD", "state": "syncing"}
    # its mid was seen while no USDT market was included
    engine, bus = make(ref)
    feed(engine, "kraken", "USDT-USD", "snapshot", [[0.98, 1e6]], [[0.99, 1e6]])
    engine.on_message("kraken", "book.kraken.USDT-USD", syncing)
    feed(engine, "binance", "BTC-USDT", "snapshot", [[100.0, 1.0]], [[101.0, 1.0]], 1)
    b = bus.last("bbo.all.BTC-USD")
    assert b["bid"][0] == 98.5 and b["conversion"]["binance:BTC-USDT"]["live"] is False
    # its mid moved while the USDT market was out: the latest mid, not the one last used
    engine, bus = make(ref)
    binance_out = {**syncing, "venue": "binance", "symbol": "BTC-USDT"}
    feed(engine, "binance", "BTC-USDT", "snapshot", [[100.0, 1.0]], [[101.0, 1.0]], 0)
    feed(engine, "kraken", "USDT-USD", "snapshot", [[0.99, 1e6]], [[1.01, 1e6]], 1)
    engine.on_message("binance", "book.binance.BTC-USDT", binance_out)
    moved = [[0.99, 0], [0.97, 1e6]], [[1.01, 0], [0.98, 1e6]]
    feed(engine, "kraken", "USDT-USD", "delta", *moved, 2)
    engine.on_message("kraken", "book.kraken.USDT-USD", syncing)
    feed(engine, "binance", "BTC-USDT", "snapshot", [[100.0, 1.0]], [[101.0, 1.0]], 3)
    assert bus.last("bbo.all.BTC-USD")["bid"][0] == 97.5


def test_group_timestamps_are_those_of_a_market_still_included() -> None:
    engine, bus = make()
    feed(engine, "kraken", "BTC-USD", "snapshot", [[99.0, 1.0]], [[100.0, 1.0]], 1)
    feed(engine, "binance", "BTC-USDT", "snapshot", [[99.5, 1.0]], [[100.5, 1.0]], 5)
    out = {"type": "state", "venue": "binance", "symbol": "BTC-USDT", "state": "syncing"}
    engine.on_message("binance", "book.binance.BTC-USDT", {**out, "ts_recv": T0 + 1009})
    b = bus.last("bbo.all.BTC-USD")
    assert b["venues"] == ["kraken"] and b["bid"] == [99.0, 1.0, "kraken"]
    assert (b["ts_exch"], b["ts_recv"]) == (T0 + 1, T0 + 1001)  # kraken's, not binance's


def test_a_market_back_from_down_brings_its_timestamps_into_its_group() -> None:
    """A venue that comes back on a heartbeat (no book message) is included again: the group's
    messages carry its timestamps when they are the newest, at once (they were null or another
    venue's older ones). A bbo.all built on one market's update carries that update's
    timestamps, even when another member's data is newer (venues' messages arrive out of
    order)."""
    engine, bus = make()
    feed(engine, "binance", "BTC-USDT", "snapshot", [[98.0, 1.0]], [[101.0, 1.0]], 0)
    feed(engine, "kraken", "BTC-USD", "snapshot", [[99.0, 1.0]], [[100.0, 1.0]], 5)
    bus.now += 10
    hb(engine, "binance")
    engine.tick()  # kraken silent: down, out of the group
    b = bus.last("bbo.all.BTC-USD")
    assert b["venues"] == ["binance"] and b["ts_recv"] == T0 + 1000
    hb(engine, "kraken")  # back
    b = bus.last("bbo.all.BTC-USD")
    assert b["bid"] == [99.0, 1.0, "kraken"] and b["ts_recv"] == T0 + 1005
    bus.flush(engine)
    assert bus.last("depth.all.BTC-USD")["ts_recv"] == T0 + 1005
    delta = book_msg("binance", "BTC-USDT", "delta", [[99.5, 2.0]], [], 2)  # read before kraken's
    stamps = {"ts_book_wake": T0 + 3000, "ts_book_rx": T0 + 3001}
    engine.on_message("binance", "book.binance.BTC-USDT", {**delta, **stamps})
    b = bus.last("bbo.all.BTC-USD")
    assert b["bid"] == [99.5, 2.0, "binance"] and b["ts_recv"] == T0 + 1002
    assert (b["ts_book_wake"], b["ts_book_rx"]) == (T0 + 3000, T0 + 3001)  # its hop, too
    # a resync copy of the same content is the same message (not news for the gateway)
    again = dict(engine.snapshots(["bbo.all."]))["bbo.all.BTC-USD"]
    assert (again["ts_recv"], again["bid"]) == (T0 + 1002, b["bid"])


def _without_ts(body: dict[str, Any] | None) -> dict[str, Any] | None:
    return None if body is None else {k: v for k, v in body.items() if not k.startswith("ts_")}


def _fresh_bbo(engine: Engine, group: Group) -> dict[str, Any] | None:
    """The group's bbo.all built from scratch: no cached split, the current rates."""
    fresh = Group(group.name, group.unit)
    for m in group.members.values():
        fresh.add(m)
    body = fresh.bbo_body(lambda m: engine.rates.for_mirror(m, fresh.unit), engine.settings.depth)
    return _without_ts(body)


def test_the_published_consolidated_bbo_is_always_the_current_one() -> None:
    """bbo.all is published whenever its content changes (and the engine rebuilds it only for
    changes that can move it: a top of book, or while crossed a level in the crossing region,
    ``_touches_cross``; from a split it keeps until a state or a rate changes): along a random
    stream (four venues whose tops interleave, USDT converted through an inverse reference,
    USD-USDT, that moves, now and then crosses the group, and is in a group of its own; books
    going stale and coming back), every bbo.all published equals the one built from scratch
    once its message is handled, and after every message the last one published does."""
    rng = random.Random(7)
    venues = {"binance": "USDT", "okx": "USDT", "kraken": "USD", "coinbase": "USD"}
    engine, bus = make({"USDT": "kraken:USD-USDT"}, venues=tuple(venues), keep=1000)
    mids = {"BTC": 1000.0, "ETH": 100.0}
    books: dict[tuple[str, str], tuple[dict[float, float], dict[float, float]]] = {}
    for venue, quote in venues.items():
        for base, mid in mids.items():
            bids = {round(mid - i * 0.5, 1): 1.0 for i in range(1, 8)}
            asks = {round(mid + i * 0.5, 1): 1.0 for i in range(1, 8)}
            books[(venue, f"{base}-{quote}")] = (bids, asks)
    books[("kraken", "USD-USDT")] = ({0.9999: 1e6}, {1.0001: 1e6})
    for (venue, symbol), (bids, asks) in books.items():
        feed(engine, venue, symbol, "snapshot", list(bids.items()), list(asks.items()))
    markets = list(books)
    checked = 0
    for n in range(1, 8000):
        venue, symbol = markets[rng.randrange(len(markets))]
        bids, asks = books[(venue, symbol)]
        start = len(bus.out)
        roll = rng.random()
        if roll < 0.01:
            engine.on_stale(f"book.{venue}.{symbol}", "gap")
        elif roll < 0.03:
            feed(engine, venue, symbol, "snapshot", list(bids.items()), list(asks.items()), n)
        elif symbol == "USD-USDT":  # USDT within 0.0001 of 1 USD (a BTC tick is 0.5), or crossing
            roll = rng.random()
            rate = 1.002 if roll < 0.1 else 0.998 if roll < 0.2 else rng.uniform(0.9999, 1.0001)
            old = [[p, 0.0] for p in bids], [[p, 0.0] for p in asks]
            bids.clear(), asks.clear()
            bids[1 / rate - 0.0001], asks[1 / rate + 0.0001] = 1e6, 1e6
            delta = (
                old[0] + [[p, q] for p, q in bids.items()],
                old[1] + [[p, q] for p, q in asks.items()],
            )
            feed(engine, venue, symbol, "delta", *delta, n)
        else:
            up = rng.random() < 0.5
            side = asks if up else bids
            price = round(
                mids[symbol.split("-")[0]] + (1 if up else -1) * rng.randint(1, 6) * 0.5, 1
            )
            size = rng.choice([0.0, 0.5, 1.0, 2.0])
            if size == 0.0 and (price not in side or len(side) < 3):
                continue
            if size:
                side[price] = size
            else:
                del side[price]
            level = [[price, size]]
            feed(engine, venue, symbol, "delta", [] if up else level, level if up else [], n)
        fresh = {name: _fresh_bbo(engine, group) for name, group in engine.groups.items()}
        for topic, body in bus.out[start:]:
            if topic.startswith("bbo.all."):
                assert _without_ts(body) == fresh[topic[8:]], (n, venue, symbol, "published")
        for name in engine.groups:
            last = _without_ts(bus.last(f"bbo.all.{name}"))
            assert last == fresh[name], (n, venue, symbol)
            checked += 1
    last: dict[str, dict[str, Any] | None] = {}
    for topic, body in bus.out:
        if topic.startswith("bbo.all."):  # and only when it changed
            assert _without_ts(body) != last.get(topic), topic
            last[topic] = _without_ts(body)
    crossed = sum(1 for t, b in bus.out if t == "bbo.all.BTC-USD" and b["crossed"])
    published = bus.count("bbo.all.BTC-USD")
    assert "USD-USD" in engine.groups  # the reference book's own
    assert checked > 15_000 and 0 < crossed < published < 8000


def test_hop_trace_stamps_travel_on_what_the_message_caused_and_no_further() -> None:
    """With ``trace_hops`` the Subscriber stamps each ingest message ``ts_book_wake`` and
    ``ts_book_rx``: the bbo (venue and consolidated) and trades built from it carry them, so a
    client can split the hop. What carries other source timestamps does not: a consolidated bbo
    rebuilt because a reference book's rate moved, a book brought back by a heartbeat, a
    message without stamps, a depth build."""
    engine, bus = make({"USDT": "kraken:USDT-USD"})

    def stamped(msg: dict[str, Any], n: int) -> dict[str, Any]:
        return {**msg, "ts_book_wake": T0 + 3000 + n, "ts_book_rx": T0 + 3010 + n}

    def trace(topic: str) -> tuple[Any, Any]:
        body = bus.last(topic)
        return body.get("ts_book_wake"), body.get("ts_book_rx")

    snap = book_msg("binance", "BTC-USDT", "snapshot", [[100.0, 1.0]], [[100.5, 1.0]])
    engine.on_message("binance", "book.binance.BTC-USDT", stamped(snap, 0))
    assert trace("bbo.binance.BTC-USDT") == trace("bbo.all.BTC-USD") == (T0 + 3000, T0 + 3010)
    trade = {
        "v": 1,
        "epoch": "e",
        "seq": 1,
        "ts_pub": T0 + 2500,
        "ts_recv": T0 + 1500,
        "venue": "binance",
        "symbol": "BTC-USDT",
        "trades": [{"price": 100.2, "size": 0.1, "side": "buy", "ts_exch": T0}],
    }
    engine.on_message("binance", "trade.binance.BTC-USDT", stamped(trade, 1))
    assert trace("trade.binance.BTC-USDT") == (T0 + 3001, T0 + 3011)
    # the reference book's rate moves: BTC-USD is rebuilt with its own timestamps, unstamped
    ref = book_msg("kraken", "USDT-USD", "snapshot", [[0.999, 1e6]], [[1.001, 1e6]], 7)
    engine.on_message("kraken", "book.kraken.USDT-USD", stamped(ref, 7))
    allb = bus.last("bbo.all.BTC-USD")
    assert allb["ask"][0] == 100.5 * 1.0 and allb["ts_recv"] == T0 + 1000  # BTC's, not USDT's
    assert trace("bbo.all.BTC-USD") == (None, None)
    assert trace("bbo.kraken.USDT-USD") == (T0 + 3007, T0 + 3017)
    # a heartbeat (stamped too) listing a new book: its group's first bbo is not stamped
    listed = {"BTC-USDT": {"state": "live"}, "ETH-USDT": {"state": "syncing"}}
    beat = {"type": "hb", "stats": {"venue_state": "live", "instruments": listed}}
    engine.on_message("binance", "hb.ingest-binance", stamped(beat, 9))
    assert bus.last("bbo.all.ETH-USD")["state"] == "syncing"
    assert trace("bbo.all.ETH-USD") == (None, None)
    feed(engine, "binance", "BTC-USDT", "delta", [[100.25, 2.0]], [], 1)  # not stamped
    assert bus.last("bbo.binance.BTC-USDT")["bid"] == [100.25, 2.0]
    assert trace("bbo.binance.BTC-USDT") == trace("bbo.all.BTC-USD") == (None, None)
    bus.flush(engine)
    assert "ts_book_rx" not in bus.last("depth.binance.BTC-USDT")
