"""The Bybit v5 plugin on hand-made frames shaped like exchanges.md section 2's real ones:
parser + InstrumentSync, metadata, subscriptions."""

from __future__ import annotations

import orjson
import pytest

from common.config import ConfigError
from common.model import BookUpdate, ConnectionSpec, HttpRequest, TradeBatch
from services.ingest.sync import Publish, Resync
from services.ingest.venue import ParseError
from tests.venues import SyncLog, plugin_for, sync_for

BIDS = [["65114.20", "6.054"], ["65114.10", "0.002"]]
ASKS = [["65114.30", "0.500"], ["65146.70", "0.020"]]


def book_frame(kind: str, u: int, bids=(), asks=(), symbol="BTCUSDT", depth=50) -> bytes:
    """Linear key order (type before ts), as in the real linear frames."""
    data = {"s": symbol, "b": list(bids), "a": list(asks), "u": u, "seq": 753843911359 + u}
    msg = {"topic": f"orderbook.{depth}.{symbol}", "type": kind, "ts": 1786310818129}
    return orjson.dumps({**msg, "data": data, "cts": 1786310818027})


def parser(category: str = "linear"):
    plugin = plugin_for("bybit")
    spec = ConnectionSpec("ws://x", [], [], extra={"category": category})
    return plugin, plugin.new_parser(spec)


def machine(category: str = "linear"):
    plugin, p = parser(category)
    kind = "perp" if category == "linear" else "spot"
    m = SyncLog(sync_for(plugin, f"{category}:BTCUSDT", "BTC", "USDT", kind))

    def feed(frame: bytes):
        (upd,) = p.parse(frame, 0)
        assert isinstance(upd, BookUpdate)
        return m.feed(upd)

    return m, feed


def live(u: int = 15076952):
    m, feed = machine()
    out = feed(book_frame("snapshot", u, BIDS, ASKS))
    assert isinstance(out, Publish) and out.snapshot and m.sync.state == "live"
    return m, feed


def test_snapshot_then_deltas_chain_by_u_plus_one():
    m, feed = live(100)
    out = feed(book_frame("delta", 101, bids=[["65114.10", "0"], ["65114.00", "1.5"]]))
    assert isinstance(out, Publish) and not out.snapshot
    assert out.bids == [(65114.1, 0.0), (65114.0, 1.5)]
    feed(book_frame("delta", 102, asks=[["65114.30", "0.25"]]))
    book = m.sync.book
    assert book.top(5) == (
        [(65114.2, 6.054), (65114.0, 1.5)],
        [(65114.3, 0.25), (65146.7, 0.02)],
    )
    assert m.sync.last_id == 102 and m.sync.counters.gaps == 0
    assert m.sync.last_ts_exch == 1786310818129 * 1_000_000


def test_a_later_snapshot_replaces_the_book():
    m, feed = live(100)
    feed(book_frame("delta", 101, bids=[["65000.00", "9"]]))
    out = feed(book_frame("snapshot", 5000, [["64000.0", "1"]], [["64001.0", "2"]]))
    assert isinstance(out, Publish) and out.snapshot
    assert m.sync.book.top(5) == ([(64000.0, 1.0)], [(64001.0, 2.0)])
    assert m.sync.last_id == 5000 and m.resyncs == []


def test_u_equal_one_is_a_service_restart_even_in_a_delta():
    m, feed = live(777)
    out = feed(book_frame("delta", 1, [["60000.0", "3"]], [["60001.0", "4"]]))
    assert isinstance(out, Publish) and out.snapshot  # replaced, not a gap
    assert m.sync.book.top(5) == ([(60000.0, 3.0)], [(60001.0, 4.0)])
    feed(book_frame("delta", 2, bids=[["60000.0", "0"]]))
    assert m.sync.book.best_bid() is None and m.sync.last_id == 2 and m.resyncs == []


def test_a_jump_in_u_is_a_gap_and_resubscribes_that_topic_only():
    m, feed = live(100)
    out = feed(book_frame("delta", 102, bids=[["65000.00", "1"]]))
    assert isinstance(out, Resync) and out.kind == "gap"
    assert m.sync.counters.gaps == 1 and m.sync.state == "syncing" and len(m.sync.book) == 0
    assert feed(book_frame("delta", 103)) is None  # ignored until a fresh snapshot
    plugin = m.sync.plugin
    unsub, sub = (orjson.loads(x) for x in plugin.resubscribe(m.sync.inst))
    assert (unsub["op"], unsub["args"]) == ("unsubscribe", ["orderbook.50.BTCUSDT"])
    assert (sub["op"], sub["args"]) == ("subscribe", ["orderbook.50.BTCUSDT"])
    out = feed(book_frame("snapshot", 200, BIDS, ASKS))
    assert isinstance(out, Publish) and m.sync.state == "live"


@pytest.mark.parametrize("u", [100, 99, 5], ids=["duplicate", "out-of-order", "far-back"])
def test_a_repeated_or_older_u_is_a_gap_too(u):
    m, feed = live(100)
    out = feed(book_frame("delta", u, bids=[["65114.20", "1"]]))
    assert isinstance(out, Resync) and out.kind == "gap"
    assert m.sync.counters.resyncs == 1


def test_a_delta_that_crosses_the_book_resyncs():
    m, feed = live(100)
    out = feed(book_frame("delta", 101, bids=[["65200.00", "1"]]))
    assert m.sync.counters.crossed == 1
    assert isinstance(out, Resync) and out.kind == "crossed"


def test_spot_and_linear_books_of_the_same_symbol_are_kept_apart():
    _, spot = parser("spot")
    _, linear = parser("linear")
    frame = book_frame("snapshot", 10, BIDS, ASKS)
    (a,) = spot.parse(frame, 0)
    (b,) = linear.parse(frame, 0)
    assert (a.native, b.native) == ("spot:BTCUSDT", "linear:BTCUSDT")


def test_spot_key_order_and_unpadded_numbers_parse_the_same():
    _, spot = parser("spot")
    frame = (
        b'{"topic":"orderbook.200.ETHUSDT","ts":1786310817154,"type":"delta","data":{"s":"ETHUSDT",'
        b'"b":[["1922.39","9.75017"],["1922.1","1.46809"],["1916.26","0"]],"a":[],'
        b'"u":56726494,"seq":178477360758},"cts":1786310817144}'
    )
    (upd,) = spot.parse(frame, 0)
    assert upd.native == "spot:ETHUSDT" and not upd.is_snapshot and upd.last_id == 56726494
    assert upd.bids == [("1922.39", "9.75017"), ("1922.1", "1.46809"), ("1916.26", "0")]


def test_trades_all_in_order_with_s_as_the_taker_side():
    _, p = parser("linear")
    real = {
        "T": 1786310819680,
        "s": "BTCUSDT",
        "S": "Sell",
        "v": "0.004",
        "p": "65114.20",
        "L": "MinusTick",
        "i": "a9188a0a-82bc-50de-be60-03eedbe3cdd7",
        "BT": False,
        "RPI": False,
        "seq": 753843954913,
    }
    buys = [{**real, "S": "Buy", "i": f"id-{n}", "p": f"{65115 + n}.00"} for n in range(1023)]
    frame = orjson.dumps(
        {"topic": "publicTrade.BTCUSDT", "type": "snapshot", "ts": 1, "data": [real, *buys]}
    )
    (batch,) = p.parse(frame, 0)
    assert isinstance(batch, TradeBatch) and len(batch.trades) == 1024
    first = batch.trades[0]
    assert (first.native, first.price, first.size, first.side) == (
        "linear:BTCUSDT",
        65114.2,
        0.004,
        "sell",
    )
    assert first.trade_id == real["i"] and first.ts_exch == 1786310819680 * 1_000_000
    assert [t.side for t in batch.trades[1:]] == ["buy"] * 1023
    assert [t.trade_id for t in batch.trades[1:4]] == ["id-0", "id-1", "id-2"]


ACKS = [
    # real acks and documented pongs (exchanges.md 2.1), spot and linear shapes
    b'{"success":true,"ret_msg":"","conn_id":"d8bu1olkndm7crnfs1e0-j6akw","req_id":"","op":"subscribe"}',
    b'{"success":true,"ret_msg":"subscribe","conn_id":"d9avt8shteepr00gfc1g-4zd1x","op":"subscribe"}',
    b'{"success":true,"ret_msg":"pong","conn_id":"0970e817-426e-429a-a679-ff7f55e0b16a","op":"ping"}',
    b'{"success":true,"ret_msg":"pong","conn_id":"465772b1","req_id":"","op":"ping"}',
    b'{"args":["1672916271846"],"op":"pong"}',
]


@pytest.mark.parametrize("frame", ACKS)
def test_acks_and_pongs_of_both_shapes_are_ignored(frame):
    for category in ("spot", "linear"):
        assert parser(category)[1].parse(frame, 0) == []


MALFORMED = [
    b'{"topic":"orderbook.50.BTCUSDT","type":"delta","ts":1,"data":{"s":"BTCUSDT","b":[["6',
    b"[1, 2, 3]",
    b'{"hello":"world"}',
    b'{"topic":"tickers.BTCUSDT","type":"snapshot","ts":1,"data":{}}',
    b'{"topic":"orderbook.50.BTCUSDT","type":"weird","ts":1,"data":{"s":"BTCUSDT","b":[],"a":[],"u":3}}',
    b'{"topic":"orderbook.50.BTCUSDT","type":"delta","ts":1,"data":{"s":"BTCUSDT","b":[],"a":[]}}',
    b'{"topic":"orderbook.50.BTCUSDT","type":"delta","ts":1,"data":{"s":"BTCUSDT","b":[["x","1"]],"a":[],"u":3}}',
    b'{"topic":"orderbook.50.BTCUSDT","type":"delta","ts":1,"data":{"s":"BTCUSDT","b":[[1.0,"1"]],"a":[],"u":3}}',
    b'{"topic":"orderbook.50.BTCUSDT","type":"delta","ts":1,"data":{"s":"BTCUSDT","b":[["1"]],"a":[],"u":3}}',
    b'{"topic":"publicTrade.BTCUSDT","type":"snapshot","ts":1,"data":[{"T":1,"s":"BTCUSDT","S":"Hold","v":"1","p":"1","i":"1"}]}',
    b'{"success":false,"ret_msg":"error:handler not found,topic:orderbook.500.BTCUSDT","conn_id":"c","req_id":"","op":"subscribe"}',
]


@pytest.mark.parametrize("frame", MALFORMED)
def test_malformed_frames_and_refusals_raise(frame):
    with pytest.raises((ParseError, ValueError, KeyError, TypeError)):
        parser("linear")[1].parse(frame, 0)


def spot_body(*items) -> bytes:
    return orjson.dumps(
        {"retCode": 0, "retMsg": "OK", "result": {"category": "spot", "list": list(items)}}
    )


def linear_body(cursor: str, *items) -> bytes:
    result = {"category": "linear", "list": list(items), "nextPageCursor": cursor}
    return orjson.dumps({"retCode": 0, "retMsg": "OK", "result": result})


def spot_item(symbol, base, quote, status="Trading"):
    return {
        "symbol": symbol,
        "baseCoin": base,
        "quoteCoin": quote,
        "status": status,
        "lotSizeFilter": {"basePrecision": "0.000001"},
        "priceFilter": {"tickSize": "0.1"},
    }


def linear_item(symbol, base, quote, contract="LinearPerpetual"):
    return {
        "symbol": symbol,
        "contractType": contract,
        "status": "Trading",
        "baseCoin": base,
        "quoteCoin": quote,
        "settleCoin": quote,
        "priceFilter": {"tickSize": "0.10"},
        "lotSizeFilter": {"qtyStep": "0.001"},
    }


def test_metadata_names_spot_and_perp_instruments_from_both_categories():
    plugin = plugin_for("bybit", bases=("BTC", "DOGE"))
    reqs = plugin.metadata_requests()
    assert [r.params for r in reqs] == [
        {"category": "spot"},
        {"category": "linear", "limit": "1000"},
    ]
    assert all(r.url == "http://127.0.0.1:1/v5/market/instruments-info" for r in reqs)
    bodies = [
        spot_body(
            spot_item("BTCUSDT", "BTC", "USDT"),
            spot_item("BTCUSDC", "BTC", "USDC"),
            spot_item("DOGEUSDT", "DOGE", "USDT", status="PreLaunch"),
        ),
        linear_body(
            "first%3DBTCUSDT",
            linear_item("BTCPERP", "BTC", "USDC"),
            linear_item("BTCUSDT", "BTC", "USDT"),
            linear_item("BTCUSDT-26DEC25", "BTC", "USDT", "LinearFutures"),
        ),
        linear_body("", linear_item("1000DOGEUSDT", "1000DOGE", "USDT")),
    ]
    spot, perp = plugin.parse_metadata(bodies)
    assert (spot.symbol, spot.native, spot.kind) == ("BTC-USDT", "spot:BTCUSDT", "spot")
    assert (perp.symbol, perp.native, perp.kind) == ("BTC-USDT-PERP", "linear:BTCUSDT", "perp")
    assert (spot.price_precision, spot.qty_precision) == (1, 6)
    assert (perp.price_precision, perp.qty_precision) == (1, 3)


def test_metadata_follows_the_linear_cursor_until_it_is_empty():
    plugin = plugin_for("bybit")
    spot_req, linear_req = plugin.metadata_requests()
    assert plugin.metadata_next(spot_req, spot_body()) is None
    nxt = plugin.metadata_next(linear_req, linear_body("abc%3D"))
    assert nxt == HttpRequest(linear_req.url, {**linear_req.params, "cursor": "abc%3D"})
    assert plugin.metadata_next(nxt, linear_body("abc%3D")) is None  # same cursor again: stop
    assert plugin.metadata_next(nxt, linear_body("")) is None


def test_metadata_error_code_raises_so_the_runner_retries():
    plugin = plugin_for("bybit")
    body = orjson.dumps({"retCode": 10006, "retMsg": "Too many visits!", "result": {}})
    with pytest.raises(ValueError, match="10006"):
        plugin.parse_metadata([body])


def test_connections_one_per_category_spot_requests_hold_ten_args_at_most():
    bases = ("BTC", "ETH", "SOL", "XRP", "DOGE", "ADA", "AVAX", "DOT", "LINK")
    plugin = plugin_for("bybit", bases=bases)
    spot = [spot_item(f"{b}USDT", b, "USDT") for b in bases]
    linear = [linear_item(f"{b}USDT", b, "USDT") for b in bases]
    instruments = plugin.parse_metadata([spot_body(*spot), linear_body("", *linear)])
    assert len(instruments) == 18
    specs = plugin.connections(instruments)
    assert [(s.url, s.extra["category"], len(s.instruments)) for s in specs] == [
        ("ws://127.0.0.1:1/ws/spot", "spot", 9),
        ("ws://127.0.0.1:1/ws/linear", "linear", 9),
    ]
    spot_msgs = [orjson.loads(m) for m in specs[0].subscribe]
    assert [len(m["args"]) for m in spot_msgs] == [10, 8]
    assert all(m["op"] == "subscribe" for m in spot_msgs)
    topics = [a for m in spot_msgs for a in m["args"]]
    assert topics[:2] == ["orderbook.50.BTCUSDT", "publicTrade.BTCUSDT"]
    assert len(set(topics)) == 18
    (linear_msg,) = [orjson.loads(m) for m in specs[1].subscribe]
    assert len(linear_msg["args"]) == 18
    assert orjson.loads(plugin.ping_message)["op"] == "ping" and plugin.ping_interval_s == 20.0


def test_categories_option_selects_linear_only():
    plugin = plugin_for("bybit", categories=["linear"], depth=200)
    assert [r.params["category"] for r in plugin.metadata_requests()] == ["linear"]
    insts = plugin.parse_metadata(
        [
            spot_body(spot_item("BTCUSDT", "BTC", "USDT")),
            linear_body("", linear_item("BTCUSDT", "BTC", "USDT")),
        ]
    )
    assert [i.symbol for i in insts] == ["BTC-USDT-PERP"]
    (spec,) = plugin.connections(insts)
    assert orjson.loads(spec.subscribe[0])["args"] == [
        "orderbook.200.BTCUSDT",
        "publicTrade.BTCUSDT",
    ]
    with pytest.raises(ValueError):
        plugin_for("bybit", categories=["inverse"])


def test_depth_must_be_one_the_venue_publishes():
    with pytest.raises(ConfigError, match="depth must be one of"):
        plugin_for("bybit", depth=500)  # linear 500 was removed on 2025-11-19
