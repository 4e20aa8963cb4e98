"""The /ws request validator: defaults, normalization and every error code."""

from __future__ import annotations

import orjson
import pytest

from services.gateway import protocol
from services.gateway.protocol import Ping, ProtocolError, Subscribe, Unsubscribe
from services.gateway.state import MarketState


@pytest.fixture
def catalog() -> MarketState:
    state = MarketState(
        venues=[("binance", ["BTC-USDT", "ETH-USDT"]), ("kraken", ["BTC-USD", "ETH-USD"])]
    )
    state.update("depth.bybit.BTC-USDT-PERP", {"venue": "bybit", "symbol": "BTC-USDT-PERP"})
    return state


def parse(req, catalog):
    data = req if isinstance(req, str | bytes) else orjson.dumps(req)
    return protocol.parse(data, catalog, max_depth=50, default_depth=20)


def code_of(req, catalog) -> str:
    with pytest.raises(ProtocolError) as info:
        parse(req, catalog)
    return info.value.code


def test_subscribe_defaults_per_channel(catalog):
    sub = parse(
        {"op": "subscribe", "channel": "depth", "venue": "binance", "symbol": "btc-usdt"}, catalog
    )
    assert isinstance(sub, Subscribe)
    assert (sub.venues, sub.symbol, sub.depth, sub.interval_ms, sub.id) == (
        ("binance",), "BTC-USDT", 20, 100, None,
    )  # fmt: skip
    assert sub.venue_echo == "binance"
    bbo = parse({"op": "subscribe", "channel": "bbo", "venue": ["kraken", "all", "kraken"], "symbol": "BTC-USD"}, catalog)  # fmt: skip
    assert bbo.venues == ("kraken", "all") and bbo.venue_echo == ["kraken", "all"]
    assert bbo.interval_ms == 0 and bbo.depth == 20


def test_subscribe_venue_forms(catalog):
    all_trades = parse({"op": "subscribe", "channel": "trades"}, catalog)
    assert (
        all_trades.venues is None and all_trades.symbol is None and all_trades.venue_echo == "all"
    )
    some = parse(
        {"op": "subscribe", "channel": "trades", "venue": ["kraken", "binance", "all"]}, catalog
    )
    assert some.venues is None  # "all" covers the others for trades
    two = parse(
        {"op": "subscribe", "channel": "trades", "venue": ["kraken", "binance"], "id": 5}, catalog
    )
    assert two.venues == ("kraken", "binance") and two.venue_echo == ["kraken", "binance"]
    assert two.key == ("id", 5)
    group = parse(
        {"op": "subscribe", "channel": "trades", "venue": "all", "symbol": "ETH-USD"}, catalog
    )
    assert group.symbol == "ETH-USD"
    cons = parse(
        {"op": "subscribe", "channel": "depth", "venue": "all", "symbol": "BTC-USD"}, catalog
    )
    assert cons.venues == ("all",)
    perp = parse(
        {"op": "subscribe", "channel": "depth", "venue": "bybit", "symbol": "BTC-USDT-PERP"},
        catalog,
    )
    assert perp.venues == ("bybit",)  # venue and symbol seen on the bus only
    status = parse({"op": "subscribe", "channel": "status", "symbol": "ignored"}, catalog)
    assert status.symbol is None


def test_bbo_with_all_and_a_venue_needs_the_symbol_everywhere(catalog):
    req = {"op": "subscribe", "channel": "bbo", "venue": ["binance", "all"], "symbol": "BTC-USDT"}
    assert code_of(req, catalog) == "unknown_symbol"
    req["venue"] = ["kraken", "all"]
    req["symbol"] = "BTC-USD"
    assert parse(req, catalog).venues == ("kraken", "all")


@pytest.mark.parametrize(
    ("req", "code"),
    [
        ("{", "bad_json"),
        (b"\x80", "bad_json"),
        ("null", "bad_request"),
        ('"ping"', "bad_request"),
        ({}, "bad_request"),
        ({"op": 3}, "unknown_op"),
        ({"op": "SUBSCRIBE"}, "unknown_op"),
        ({"op": "ping", "id": True}, "bad_request"),
        ({"op": "ping", "id": "x" * 65}, "bad_request"),
        ({"op": "ping", "id": 2**60}, "bad_request"),
        ({"op": "subscribe"}, "bad_request"),
        ({"op": "subscribe", "channel": "book"}, "unknown_channel"),
        ({"op": "subscribe", "channel": ["depth"]}, "unknown_channel"),
        ({"op": "subscribe", "channel": "depth", "symbol": "BTC-USDT"}, "bad_request"),
        ({"op": "subscribe", "channel": "depth", "venue": "ftx", "symbol": "BTC-USDT"}, "unknown_venue"),
        ({"op": "subscribe", "channel": "depth", "venue": "BINANCE", "symbol": "BTC-USDT"}, "bad_request"),
        ({"op": "subscribe", "channel": "depth", "venue": ["binance", 1], "symbol": "BTC-USDT"}, "bad_request"),
        ({"op": "subscribe", "channel": "depth", "venue": ["x"] * 33, "symbol": "BTC-USDT"}, "bad_request"),
        ({"op": "subscribe", "channel": "depth", "venue": "binance", "symbol": "DOGE-USDT"}, "unknown_symbol"),
        ({"op": "subscribe", "channel": "depth", "venue": "kraken", "symbol": "BTC-USDT"}, "unknown_symbol"),
        ({"op": "subscribe", "channel": "depth", "venue": "binance", "symbol": 7}, "bad_request"),
        ({"op": "subscribe", "channel": "depth", "venue": "binance", "symbol": "../etc"}, "bad_request"),
        ({"op": "subscribe", "channel": "depth", "venue": "binance", "symbol": "BTC-USDT", "depth": "5"}, "bad_request"),
        ({"op": "subscribe", "channel": "depth", "venue": "binance", "symbol": "BTC-USDT", "depth": True}, "bad_request"),
        ({"op": "subscribe", "channel": "depth", "venue": "binance", "symbol": "BTC-USDT", "depth": 2.5}, "bad_request"),
        ({"op": "subscribe", "channel": "depth", "venue": "binance", "symbol": "BTC-USDT", "interval_ms": 60_001}, "bad_request"),
        ({"op": "subscribe", "channel": "trades", "venue": "binance", "symbol": "BTC-EUR"}, "unknown_symbol"),
        ({"op": "subscribe", "channel": "trades", "symbol": "XYZ-USD"}, "unknown_symbol"),
        ({"op": "unsubscribe"}, "bad_request"),
        ({"op": "unsubscribe", "channel": "nope"}, "unknown_channel"),
    ],
)  # fmt: skip
def test_errors(req, code, catalog):
    assert code_of(req, catalog) == code


def test_error_message_echoes_the_request_and_its_id(catalog):
    req = {"op": "subscribe", "channel": "depth", "venue": "ftx", "symbol": "BTC-USDT", "id": "a"}
    with pytest.raises(ProtocolError) as info:
        parse(req, catalog)
    msg = info.value.to_message()
    assert msg["type"] == "error" and msg["code"] == "unknown_venue"
    assert msg["request"] == req and msg["id"] == "a"
    assert "binance" in msg["message"] and "kraken" in msg["message"]
    with pytest.raises(ProtocolError) as info:
        parse("{oops", catalog)
    assert "request" not in info.value.to_message()


def test_ping_and_unsubscribe(catalog):
    assert parse({"op": "ping"}, catalog) == Ping(None)
    assert parse({"op": "ping", "id": 3}, catalog) == Ping(3)
    u = parse({"op": "unsubscribe", "id": "x", "channel": "whatever"}, catalog)
    assert isinstance(u, Unsubscribe) and u.id == "x" and u.channel is None
    u = parse(
        {"op": "unsubscribe", "channel": "depth", "venue": "binance", "symbol": "btc-usdt"}, catalog
    )
    assert (u.channel, u.venues, u.symbol) == ("depth", ("binance",), "BTC-USDT")
    sub = parse({"op": "subscribe", "channel": "depth", "venue": "binance", "symbol": "BTC-USDT", "depth": 5}, catalog)  # fmt: skip
    assert sub.selects(u.channel, u.venues, u.symbol)


def test_depth_is_ignored_off_the_depth_channel_and_venue_order_does_not_matter(catalog):
    bbo = {"op": "subscribe", "channel": "bbo", "venue": ["kraken", "binance"], "symbol": "BTC-USD"}
    catalog.update("bbo.binance.BTC-USD", {"venue": "binance", "symbol": "BTC-USD"})
    sub = parse({**bbo, "depth": 100}, catalog)  # a field bbo does not have: not an error
    assert isinstance(sub, Subscribe) and "depth" not in sub.echo()
    u = parse({**bbo, "op": "unsubscribe", "venue": ["binance", "kraken"]}, catalog)
    assert sub.selects(u.channel, u.venues, u.symbol)
    again = parse({**bbo, "venue": ["binance", "kraken"]}, catalog)
    assert again.key == sub.key  # the same subscription, not a second one


def test_echo(catalog):
    sub = parse({"op": "subscribe", "channel": "depth", "venue": "binance", "symbol": "BTC-USDT", "depth": 50.0, "id": 1}, catalog)  # fmt: skip
    assert sub.echo() == {
        "channel": "depth",
        "venue": "binance",
        "symbol": "BTC-USDT",
        "depth": 50,
        "interval_ms": 100,
        "id": 1,
    }
    assert "depth" not in parse({"op": "subscribe", "channel": "stats"}, catalog).echo()
