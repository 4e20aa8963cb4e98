"""The Binance USD-M futures sync rule on hand-made sequences (exchanges.md 1.3 "Futures differ"):
``pu`` chain, first event straddles ``U <= lastUpdateId <= u``, ``u < lastUpdateId`` dropped."""

from __future__ import annotations

import orjson
import pytest

from common.model import TradeBatch
from services.ingest.sync import Publish, Resync
from services.ingest.venue import ParseError
from tests.venues import SyncLog, plugin_for, sync_for

BIDS = [("100.00", "1.0"), ("99.00", "2.0")]
ASKS = [("101.00", "1.5"), ("102.00", "3.0")]


def plugin(**kw):
    return plugin_for("binance-perp", **kw)


def frame(first: int, last: int, prev: int, bids=(), asks=()) -> str:
    data = {
        "e": "depthUpdate",
        "E": 1723161255408,
        "T": 1723161255406,
        "s": "BTCUSDT",
        "U": first,
        "u": last,
        "pu": prev,
        "b": [list(x) for x in bids],
        "a": [list(x) for x in asks],
    }
    return orjson.dumps({"stream": "btcusdt@depth@100ms", "data": data}).decode()


class Machine(SyncLog):
    def __init__(self) -> None:
        self.plugin = plugin()
        super().__init__(sync_for(self.plugin, "BTCUSDT", "BTC", "USDT", "perp"))

    def diff(self, first: int, last: int, prev: int, bids=(), asks=()):
        (upd,) = self.plugin.parse(frame(first, last, prev, bids, asks), 0)
        return self.feed(upd)

    def snapshot(self, last_id: int, bids=BIDS, asks=ASKS):
        body = orjson.dumps({"lastUpdateId": last_id, "E": 1, "T": 1, "bids": bids, "asks": asks})
        return self.feed(self.plugin.parse_snapshot(self.sync.inst, body, 0))


def test_depth_frame_parses_with_pu_as_prev_id():
    (upd,) = plugin().parse(frame(157, 160, 149, bids=[("0.0024", "10")]), 5)
    assert (upd.native, upd.first_id, upd.last_id, upd.prev_id) == ("BTCUSDT", 157, 160, 149)
    assert upd.bids == [["0.0024", "10"]] and upd.ts_exch == 1723161255408 * 1_000_000


def test_first_event_straddles_lastupdateid_itself_not_plus_one():
    m = Machine()
    assert m.diff(90, 99, 80, bids=[("98.00", "9")]) is None  # u < lastUpdateId: dropped
    assert m.diff(100, 110, 99, bids=[("100.00", "0")]) is None  # U <= 105 <= u: applied
    assert m.diff(114, 120, 110, asks=[("101.00", "0")]) is None  # pu == 110: applied
    out = m.snapshot(105)
    assert isinstance(out, Publish) and out.snapshot and m.sync.state == "live"
    book = m.sync.book
    assert book.best_bid() == (99.0, 2.0) and book.best_ask() == (102.0, 3.0)
    assert 98.0 not in book.bids
    assert m.sync.last_id == 120 and m.sync.counters.skipped == 1


def test_event_whose_u_equals_lastupdateid_is_the_straddling_one():
    m = Machine()
    m.diff(96, 105, 90, bids=[("99.00", "5")])
    out = m.snapshot(105)
    assert isinstance(out, Publish) and m.sync.last_id == 105
    assert m.sync.book.best_bid() == (100.0, 1.0) and m.sync.book.bids[99.0] == 5.0


def test_spot_rule_would_pass_but_futures_rule_refuses_u_plus_one_start():
    """U == lastUpdateId + 1 is fine on Spot; on futures the snapshot must lie inside [U, u]."""
    m = Machine()
    m.diff(106, 110, 105)
    out = m.snapshot(105)
    assert isinstance(out, Resync) and out.kind == "stale_snapshot"
    assert m.sync.counters.stale_snapshots == 1 and len(m.sync.book) == 0


def test_stale_snapshot_older_than_every_buffered_event_is_refused():
    m = Machine()
    m.diff(200, 210, 190)
    out = m.snapshot(105)
    assert isinstance(out, Resync) and out.kind == "stale_snapshot"
    assert m.sync.state == "syncing"


def test_pu_chain_ignores_holes_in_update_ids_but_a_broken_pu_is_a_gap():
    m = Machine()
    m.diff(100, 110, 95)
    m.snapshot(105)
    # U jumps far past u + 1: normal on futures, only pu matters
    assert isinstance(m.diff(150, 160, 110, bids=[("99.50", "1")]), Publish)
    out = m.diff(170, 180, 165)  # pu 165 != 160: an event was lost
    assert isinstance(out, Resync) and out.kind == "gap"
    assert m.sync.counters.gaps == 1 and m.sync.state == "syncing"
    # buffered while syncing, with the event that broke the chain
    assert m.diff(181, 190, 180) is None
    assert [u.first_id for u in m.sync.buffer] == [170, 181]


def test_duplicate_and_old_events_are_skipped_out_of_order_is_a_gap():
    m = Machine()
    m.diff(100, 110, 95)
    m.snapshot(105)
    assert isinstance(m.diff(111, 120, 110), Publish)
    assert m.diff(111, 120, 110) is None  # the same event again
    assert m.diff(100, 110, 95) is None  # an older one
    assert m.sync.counters.skipped == 2 and m.sync.state == "live"
    out = m.diff(131, 140, 130)  # arrives before 121..130
    assert isinstance(out, Resync) and out.kind == "gap"


def test_a_crossing_event_is_treated_like_a_gap():
    m = Machine()
    m.diff(100, 110, 95)
    m.snapshot(105)
    out = m.diff(111, 111, 110, bids=[("101.50", "1")])
    assert isinstance(out, Resync) and out.kind == "crossed"


def test_futures_frame_without_pu_and_unknown_events_raise():
    p = plugin()
    data = orjson.loads(frame(1, 2, 0))
    del data["data"]["pu"]
    with pytest.raises(ParseError):
        p.parse(orjson.dumps(data), 0)
    with pytest.raises(ParseError):  # Spot's raw trade is not a USD-M stream
        p.parse(b'{"stream":"btcusdt@trade","data":{"e":"trade","s":"BTCUSDT"}}', 0)
    with pytest.raises(ValueError):
        p.parse(b'{"stream":"btcusdt@depth@100ms","data":{"e":"depthUpd', 0)
    assert p.parse(b'{"result":null,"id":1}', 0) == []


def test_agg_trade_side_is_the_taker_side():
    msg = {
        "stream": "btcusdt@aggTrade",
        "data": {
            "e": "aggTrade",
            "E": 123456789,
            "s": "BTCUSDT",
            "a": 5933014,
            "p": "0.001",
            "q": "100",
            "f": 100,
            "l": 105,
            "T": 123456785,
            "m": True,
        },
    }
    (batch,) = plugin().parse(orjson.dumps(msg), 0)
    assert isinstance(batch, TradeBatch)
    (t,) = batch.trades
    assert (t.native, t.price, t.size, t.side, t.trade_id) == (
        "BTCUSDT",
        0.001,
        100.0,
        "sell",
        "5933014",
    )
    assert t.ts_exch == 123456785 * 1_000_000
    msg["data"]["m"] = False
    (batch,) = plugin().parse(orjson.dumps(msg), 0)
    assert batch.trades[0].side == "buy"


def test_exchange_info_keeps_perpetuals_of_the_configured_bases():
    def sym(symbol, base, contract="PERPETUAL", status="TRADING", quote="USDT"):
        return {
            "symbol": symbol,
            "pair": f"{base}{quote}",
            "contractType": contract,
            "status": status,
            "baseAsset": base,
            "quoteAsset": quote,
            "filters": [
                {"filterType": "PRICE_FILTER", "tickSize": "0.10"},
                {"filterType": "LOT_SIZE", "stepSize": "0.001"},
            ],
        }

    info = {
        "symbols": [
            sym("BTCUSDT", "BTC"),
            sym("BTCUSDT_260925", "BTC", contract="CURRENT_QUARTER"),
            sym("ETHUSDC", "ETH", quote="USDC"),
            sym("ETHUSDT", "ETH", status="SETTLING"),
            sym("1000SHIBUSDT", "1000SHIB"),
        ]
    }
    p = plugin(bases=("BTC", "ETH", "SHIB"))
    (inst,) = p.parse_metadata([orjson.dumps(info)])
    assert (inst.native, inst.symbol, inst.kind) == ("BTCUSDT", "BTC-USDT-PERP", "perp")
    assert (inst.price_precision, inst.qty_precision) == (1, 3)
    assert p.metadata_requests()[0].url.endswith("/fapi/v1/exchangeInfo")


def test_snapshot_request_uses_fapi_limits_and_weights():
    p = plugin()
    inst = sync_for(p, "BTCUSDT", "BTC", "USDT", "perp").inst
    req = p.snapshot_request(inst)
    assert req.url.endswith("/fapi/v1/depth")
    assert req.params == {"symbol": "BTCUSDT", "limit": "1000"} and req.weight == 20
    assert plugin(snapshot_limit=100).snapshot_request(inst).weight == 5
    with pytest.raises(ValueError):
        plugin(snapshot_limit=5000)


def test_trades_go_on_their_own_connection_when_the_market_route_is_configured():
    p = plugin()
    insts = [sync_for(p, s, s[:3], "USDT", "perp").inst for s in ("BTCUSDT", "ETHUSDT")]
    (both,) = p.connections(insts)
    assert both.url.endswith(
        "?streams=btcusdt@depth@100ms/btcusdt@aggTrade/ethusdt@depth@100ms/ethusdt@aggTrade"
    )
    assert both.instruments == insts
    routed = plugin(trade_ws_url="wss://fstream.binance.com/market/stream")
    depth, trades = routed.connections(insts)
    assert depth.url.endswith("?streams=btcusdt@depth@100ms/ethusdt@depth@100ms")
    assert depth.instruments == insts
    assert (
        trades.url
        == "wss://fstream.binance.com/market/stream?streams=btcusdt@aggTrade/ethusdt@aggTrade"
    )
    assert trades.instruments == []  # its reconnect resyncs no book


STREAMS = ("depth@100ms", "aggTrade")


def test_a_connection_carries_at_most_200_streams():
    """USD-M allows 200 streams a connection: 150 perpetuals (300 streams with their trades)
    take two connections, every instrument's two streams on the same one."""
    p = plugin()
    insts = [sync_for(p, f"C{i:03d}USDT", f"C{i:03d}", "USDT", "perp").inst for i in range(150)]
    specs = p.connections(insts)
    assert len(specs) == 2
    seen = []
    for spec in specs:
        streams = spec.url.split("?streams=")[1].split("/")
        assert len(streams) <= 200
        names = [i.native.lower() for i in spec.instruments]
        assert sorted(streams) == sorted(f"{n}@{s}" for n in names for s in STREAMS)
        seen += spec.instruments
    assert seen == insts
