"""The simulator's binance-perp dialect in-process: its futures ids are not contiguous, so its
REST snapshot plus diff events sync with the futures rule (``pu`` chain, ``U <= lastUpdateId <=
u``) and with the futures rule only; routed paths deliver only their own streams."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import orjson

from services.ingest.sync import InstrumentSync, Publish, Resync
from services.simulator.dialects.binance_perp import render_agg_trades, render_depth
from services.simulator.market import Market
from services.simulator.venue import VenueServer
from tests.venues import plugin_for


def venue() -> VenueServer:
    return VenueServer("binance-perp", "127.0.0.1", 0, "USDT", ["BTC"], Market(9), 9, 0)


def replay(plugin_name: str) -> tuple[InstrumentSync, list]:
    """A client connected at event 5, snapshot taken at event 8, 20 events in all."""
    v = venue()
    book = v.books["BTCUSDT"]
    plugin = plugin_for(plugin_name)
    (inst,) = plugin.parse_metadata([v.dialect.http_get("/fapi/v1/exchangeInfo", {}).body])
    sync = InstrumentSync(inst, plugin)
    results = []
    for i in range(20):
        upd = v.market.update(book, 1_700_000_000_000 + i, 1)
        frame = b'{"stream":"btcusdt@depth@100ms","data":' + render_depth(upd) + b"}"
        if i >= 5:
            (ev,) = plugin.parse(frame, 0)
            results.append(sync.on_update(ev))
        if i == 8:
            query = {"symbol": "BTCUSDT", "limit": "1000"}
            reply = asyncio.run(v.dialect._depth(query))
            results.append(sync.on_update(plugin.parse_snapshot(inst, reply.body, 0)))
    return sync, results


def test_futures_rule_syncs_with_the_simulator_and_the_spot_rule_does_not():
    sync, results = replay("binance-perp")
    assert sync.inst.symbol == "BTC-USDT-PERP" and sync.state == "live"
    assert not [r for r in results if isinstance(r, Resync)]
    assert sum(isinstance(r, Publish) for r in results) == 12  # the snapshot and 11 later events
    _, spot_results = replay("binance")  # Spot's U == prev u + 1 on futures ids
    assert any(isinstance(r, Resync) for r in spot_results)


def test_depth_and_agg_trade_frames_are_futures_shaped():
    v = venue()
    upd = v.market.update(v.books["BTCUSDT"], 1_700_000_000_000, 2)
    d = orjson.loads(render_depth(upd))
    assert list(d) == ["e", "E", "T", "s", "U", "u", "pu", "b", "a"]
    assert (d["U"], d["u"], d["pu"]) == (4 * upd.first_id, 4 * upd.last_id, 4 * (upd.first_id - 1))
    trades = [orjson.loads(t) for t in render_agg_trades(upd)]
    assert len(trades) == len(upd.trades) >= 2
    assert all(
        t["e"] == "aggTrade" and t["m"] == u.taker_sell
        for t, u in zip(trades, upd.trades, strict=True)
    )


def test_routed_paths_deliver_only_their_streams():
    v = venue()
    dialect = v.dialect
    for path, expect in (
        ("/public/stream?streams=btcusdt@depth@100ms/btcusdt@aggTrade", {"btcusdt@depth@100ms"}),
        ("/market/stream?streams=btcusdt@depth@100ms/btcusdt@aggTrade", {"btcusdt@aggTrade"}),
        (
            "/stream?streams=btcusdt@depth@100ms/btcusdt@aggTrade",
            {"btcusdt@depth@100ms", "btcusdt@aggTrade"},
        ),
    ):
        client = SimpleNamespace(subs=set(), state={}, peer="t")
        dialect.open_streams(client, path)
        assert client.subs == expect, path
        assert dialect.ws_accept(path.partition("?")[0], {}) is None
    assert dialect.ws_accept("/private/stream", {}) is not None
