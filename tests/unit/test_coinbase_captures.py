"""Coinbase: real recordings through the real parser and sync machine.

No Advanced Trade recording exists in ../shared/captures; ``coinbase/COINBASE.ws.28.0`` is the
LEGACY Exchange feed (2021, ``level2`` + ``matches`` for 10 products on one connection). Its
book messages have the same meaning as Advanced Trade ``level2`` (absolute new size per level,
``0`` deletes, a snapshot is the whole book) and its ``match`` messages use the same convention
for ``side`` (the maker's). Each real message is re-enveloped in the Advanced Trade shape, field
values unchanged (``buy``/``sell`` -> ``bid``/``offer``, ``BUY``/``SELL``), with the
connection's ``sequence_num`` counted in arrival order, and replayed through the plugin.
"""

from __future__ import annotations

import orjson
import pytest

from common.model import BookUpdate, ConnectionSpec, Instrument, TradeBatch
from services.ingest.sync import InstrumentSync, Resync
from tests.captures import read_cf1
from tests.venues import plugin_for

pytestmark = pytest.mark.captures

CAPTURE = "coinbase/COINBASE.ws.28.0"
SIDE = {"buy": "bid", "sell": "offer"}
TS = "2021-04-17T16:43:37.075687Z"


def at_frames():
    """(kind, legacy message, Advanced Trade frame) in arrival order; one connection."""
    seq = 0
    for kind, _, _, text in read_cf1(CAPTURE):
        if kind != "recv":
            continue
        msg = orjson.loads(text)
        t = msg.get("type")
        if t == "snapshot":
            updates = [("bid", p, q) for p, q in msg["bids"]]
            updates += [("offer", p, q) for p, q in msg["asks"]]
            event = {"type": "snapshot", "product_id": msg["product_id"]}
        elif t == "l2update":
            updates = [(SIDE[s], p, q) for s, p, q in msg["changes"]]
            event = {"type": "update", "product_id": msg["product_id"]}
        elif t == "match":
            trade = {k: str(msg[k]) for k in ("product_id", "trade_id", "price", "size", "time")}
            trade["side"] = msg["side"].upper()
            frame = {"channel": "market_trades", "timestamp": msg["time"], "sequence_num": seq}
            frame["events"] = [{"type": "update", "trades": [trade]}]
            seq += 1
            yield t, msg, orjson.dumps(frame)
            continue
        else:
            continue  # subscriptions, ticker, last_match
        event["updates"] = [
            {"side": s, "event_time": TS, "price_level": p, "new_quantity": q}
            for s, p, q in updates
        ]
        frame = {"channel": "l2_data", "timestamp": msg.get("time", TS), "sequence_num": seq}
        frame["events"] = [event]
        seq += 1
        yield t, msg, orjson.dumps(frame)


def test_legacy_books_replay_with_no_gap_never_crossed_and_equal_a_reference_rebuild():
    plugin = plugin_for("coinbase", quote="USD")
    parser = plugin.new_parser(ConnectionSpec(plugin.cfg.ws_url, [], []))
    instruments = recorded_instruments(plugin.venue)
    syncs: dict[str, InstrumentSync] = {}
    ref: dict[str, tuple[dict[float, float], dict[float, float]]] = {}
    updates = 0
    for kind, msg, frame in at_frames():
        events = parser.parse(frame, 0)
        if kind == "match":
            continue
        (upd,) = events
        assert isinstance(upd, BookUpdate) and upd.native == msg["product_id"]
        pid = upd.native
        if kind == "snapshot":
            ref[pid] = (
                {float(p): float(q) for p, q in msg["bids"]},
                {float(p): float(q) for p, q in msg["asks"]},
            )
            syncs.setdefault(pid, InstrumentSync(instruments[pid], plugin))
        else:
            updates += 1
            for side, p, q in msg["changes"]:
                levels = ref[pid][0 if side == "buy" else 1]
                if float(q) == 0:
                    levels.pop(float(p), None)
                else:
                    levels[float(p)] = float(q)
        out = syncs[pid].on_update(upd)
        assert not isinstance(out, Resync), out
    assert len(syncs) == 10 and updates == 9_719
    for pid, sync in syncs.items():
        bids, asks = ref[pid]
        assert sync.state == "live" and sync.counters.gaps == sync.counters.crossed == 0
        assert dict(sync.book.bids) == bids and dict(sync.book.asks) == asks, pid
        assert sync.book.best_bid()[0] < sync.book.best_ask()[0]


def recorded_instruments(venue: str) -> dict[str, Instrument]:
    """The recorded products, named from the 2021 products list recorded with them."""
    for kind, _, _, text in read_cf1("coinbase/COINBASE.0"):
        if kind == "http":
            return {
                p["id"]: Instrument(venue, p["id"], p["base_currency"], p["quote_currency"])
                for p in orjson.loads(text)
            }
    raise AssertionError("no products list in coinbase/COINBASE.0")


def test_match_side_is_the_maker_and_the_plugin_emits_the_taker():
    """Every recorded match that prints at or through the touch of the book rebuilt so far
    printed on its ``side``'s own book side (a SELL maker rests on the ask), and the plugin
    turns that into the opposite aggressor side."""
    plugin = plugin_for("coinbase", quote="USD")
    parser = plugin.new_parser(ConnectionSpec(plugin.cfg.ws_url, [], []))
    books: dict[str, tuple[dict[float, float], dict[float, float]]] = {}
    checked = inside = 0
    for kind, msg, frame in at_frames():
        events = parser.parse(frame, 0)
        pid = msg["product_id"]
        if kind == "snapshot":
            books[pid] = (
                {float(p): float(q) for p, q in msg["bids"]},
                {float(p): float(q) for p, q in msg["asks"]},
            )
        elif kind == "l2update":
            for side, p, q in msg["changes"]:
                levels = books[pid][0 if side == "buy" else 1]
                if float(q) == 0:
                    levels.pop(float(p), None)
                else:
                    levels[float(p)] = float(q)
        elif pid in books:
            (batch,) = events
            assert isinstance(batch, TradeBatch)
            (trade,) = batch.trades
            assert trade.trade_id == str(msg["trade_id"]) and trade.price == float(msg["price"])
            best_bid, best_ask = max(books[pid][0]), min(books[pid][1])
            price = float(msg["price"])
            if best_bid < price < best_ask:
                inside += 1  # the book already dropped the filled level: no evidence either way
                continue
            aggressor = "buy" if price >= best_ask else "sell"
            assert trade.side == aggressor, (msg, best_bid, best_ask)
            checked += 1
    assert checked == 60 and inside == 37
