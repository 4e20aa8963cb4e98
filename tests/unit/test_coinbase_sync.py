"""The Coinbase Advanced Trade rules on hand-made sequences (exchanges.md section 4.1).

The ``ws_<channel>_<variant>`` frames are the real examples quoted in exchanges.md (recorded
2026-08-09), with the levels the document elides filled in; ``renumber`` moves a frame to another
``sequence_num`` of the connection.
"""

from __future__ import annotations

import orjson
import pytest

from common.model import BookUpdate, ConnectionGap, ConnectionSpec, TradeBatch
from services.ingest.sync import Publish, Resync
from services.ingest.venue import ParseError
from services.ingest.venues.coinbase import ts_ns
from tests.venues import SyncLog, plugin_for, sync_for

ws_subscriptions_ack = (
    '{"channel":"subscriptions","timestamp":"2026-08-09T21:05:48.228846629Z","sequence_num":2,'
    '"events":[{"subscriptions":{"market_trades":["BTC-USD","ETH-USD"]}}]}'
)
ws_heartbeats_tick = (
    '{"channel":"heartbeats","timestamp":"2026-08-09T21:05:48.854901383Z","sequence_num":35,'
    '"events":[{"current_time":"2026-08-09 21:05:48.854840045 +0000 UTC m=+41691.260485341",'
    '"heartbeat_counter":41691}]}'
)
ws_l2_data_snapshot = (
    '{"channel":"l2_data","timestamp":"2026-08-09T21:05:48.483587501Z","sequence_num":13,'
    '"events":[{"type":"snapshot","product_id":"BTC-USD","updates":['
    '{"side":"bid","event_time":"2026-08-09T21:05:48.170326Z","price_level":"65083.66",'
    '"new_quantity":"0.20371215"},'
    '{"side":"bid","event_time":"2026-08-09T21:05:47.981213Z","price_level":"65062.5",'
    '"new_quantity":"0.1"},'
    '{"side":"bid","event_time":"2026-08-09T21:05:46.120003Z","price_level":"65061.91",'
    '"new_quantity":"0.25"},'
    '{"side":"offer","event_time":"2026-08-09T21:05:48.170326Z","price_level":"65083.67",'
    '"new_quantity":"0.53781034"},'
    '{"side":"offer","event_time":"2020-11-02T17:41:21.532214Z","price_level":"138991023.41",'
    '"new_quantity":"0.00000238"}]}]}'
)
ws_l2_data_update = (
    '{"channel":"l2_data","timestamp":"2026-08-09T21:05:48.505350477Z","sequence_num":14,'
    '"events":[{"type":"update","product_id":"BTC-USD","updates":['
    '{"side":"bid","event_time":"2026-08-09T21:05:48.210883Z","price_level":"65062.5",'
    '"new_quantity":"0.00583"},'
    '{"side":"bid","event_time":"2026-08-09T21:05:48.210883Z","price_level":"65061.91",'
    '"new_quantity":"0"}]}]}'
)
ws_market_trades_update = (
    '{"channel":"market_trades","timestamp":"2026-08-09T21:05:48.251397169Z","sequence_num":9,'
    '"events":[{"type":"update","trades":[{"product_id":"BTC-USD","trade_id":"1068572091",'
    '"price":"65083.67","size":"0.01034361","time":"2026-08-09T21:05:48.167634Z",'
    '"side":"SELL"}]}]}'
)


def renumber(frame: str, seq: int) -> str:
    msg = orjson.loads(frame)
    msg["sequence_num"] = seq
    return orjson.dumps(msg).decode()


def l2_update(seq: int, *levels: tuple[str, str, str], product: str = "BTC-USD") -> str:
    updates = [
        {"side": s, "event_time": "2026-08-09T21:05:49Z", "price_level": p, "new_quantity": q}
        for s, p, q in levels
    ]
    return orjson.dumps(
        {
            "channel": "l2_data",
            "timestamp": "2026-08-09T21:05:49.000000001Z",
            "sequence_num": seq,
            "events": [{"type": "update", "product_id": product, "updates": updates}],
        }
    ).decode()


def coinbase(**options):
    return plugin_for("coinbase", quote="USD", bases=("BTC", "ETH"), **options)


def connection(plugin):
    """The stateful parser of one fresh connection."""
    return plugin.new_parser(ConnectionSpec(plugin.cfg.ws_url, [], []))


def machine():
    plugin = coinbase()
    return plugin, connection(plugin), SyncLog(sync_for(plugin, "BTC-USD", "BTC", "USD"))


def feed(parser, log: SyncLog, frame: str) -> list:
    events = parser.parse(frame, 0)
    for ev in events:
        if isinstance(ev, BookUpdate):
            log.feed(ev)
    return events


def test_snapshot_is_the_whole_book_and_updates_are_absolute_sizes():
    _, parser, m = machine()
    (snap,) = feed(parser, m, ws_l2_data_snapshot)
    assert snap.is_snapshot and snap.native == "BTC-USD"
    assert snap.ts_exch == ts_ns("2026-08-09T21:05:48.483587501Z")
    assert isinstance(m.published[-1], Publish) and m.published[-1].snapshot
    book = m.sync.book
    assert m.sync.state == "live"
    assert book.best_bid() == (65083.66, 0.20371215)
    assert book.best_ask() == (65083.67, 0.53781034)  # "offer" is the ask side
    assert 138991023.41 in book.asks  # the whole book, far levels included

    feed(parser, m, ws_l2_data_update)
    out = m.published[-1]
    assert not out.snapshot
    assert out.bids == [(65062.5, 0.00583), (65061.91, 0.0)]
    assert book.bids[65062.5] == 0.00583  # absolute, not an increment of 0.1
    assert 65061.91 not in book.bids  # "0" deletes


def test_a_new_snapshot_discards_everything_before_it():
    _, parser, m = machine()
    feed(parser, m, ws_l2_data_snapshot)
    feed(parser, m, ws_l2_data_update)
    snap2 = l2_update(15, ("bid", "65000.01", "1"), ("offer", "65100", "2")).replace(
        '"type":"update"', '"type":"snapshot"'
    )
    feed(parser, m, snap2)
    assert m.sync.book.top(10) == ([(65000.01, 1.0)], [(65100.0, 2.0)])
    assert m.sync.counters.snapshots == 2


def test_sides_are_bid_and_offer_an_ask_side_is_malformed():
    plugin = coinbase()
    parser = connection(plugin)
    with pytest.raises(ParseError, match="side"):
        parser.parse(l2_update(1, ("ask", "65083.67", "1")), 0)


def test_sequence_num_is_per_connection_across_channels():
    """Heartbeats, acks and trades advance the same counter as the books: a heartbeat lost
    between two contiguous-looking book messages is still a gap of the connection."""
    plugin = coinbase()
    parser = connection(plugin)
    assert parser.parse(renumber(ws_subscriptions_ack, 0), 0) == []
    assert isinstance(parser.parse(renumber(ws_l2_data_snapshot, 1), 0)[0], BookUpdate)
    assert parser.parse(renumber(ws_heartbeats_tick, 2), 0) == []
    assert isinstance(parser.parse(renumber(ws_market_trades_update, 3), 0)[0], TradeBatch)
    assert isinstance(parser.parse(renumber(ws_l2_data_update, 4), 0)[0], BookUpdate)
    # seq 5 (say, a heartbeat) never arrived
    (gap,) = parser.parse(l2_update(6, ("bid", "65062.5", "1")), 0)
    assert isinstance(gap, ConnectionGap) and "4 -> 6" in gap.reason


def test_the_first_frame_sets_the_counter_and_a_fresh_parser_starts_over():
    plugin = coinbase()
    first = connection(plugin)
    assert first.parse(ws_heartbeats_tick, 0) == [] and first.last_seq == 35
    second = connection(plugin)  # a reconnect: new connection, new numbering
    assert second.parse(renumber(ws_subscriptions_ack, 0), 0) == [] and second.last_seq == 0
    assert first.last_seq == 35


def test_duplicate_and_older_frames_are_skipped_not_gaps():
    _, parser, m = machine()
    feed(parser, m, ws_l2_data_snapshot)
    feed(parser, m, ws_l2_data_update)
    published = len(m.published)
    assert feed(parser, m, ws_l2_data_update) == []  # the same sequence_num again
    assert feed(parser, m, renumber(ws_l2_data_update, 12)) == []  # older
    assert parser.duplicates == 2 and len(m.published) == published
    assert isinstance(feed(parser, m, ws_heartbeats_tick.replace(":35,", ":15,")), list)
    assert parser.last_seq == 15


def test_numbering_that_starts_over_is_a_connection_gap_not_a_stream_of_repeats():
    """Repeats are skipped; but a connection whose sequence_num starts over would have every
    later frame skipped as one, the books frozen and still 'live'."""
    _, parser, _ = machine()
    parser.parse(renumber(ws_l2_data_snapshot, 5000), 0)
    assert parser.parse(renumber(ws_l2_data_update, 4990), 0) == []  # a late repeat
    (gap,) = parser.parse(renumber(ws_l2_data_update, 1), 0)
    assert isinstance(gap, ConnectionGap) and "5000 -> 1" in gap.reason


def test_out_of_order_frames_are_a_connection_gap():
    _, parser, _ = machine()
    parser.parse(ws_l2_data_snapshot, 0)  # 13
    (gap,) = parser.parse(l2_update(15, ("bid", "1", "1")), 0)  # 14 is late
    assert isinstance(gap, ConnectionGap)
    # the runner reconnects at once; a late 14 would only be a duplicate for this parser
    assert parser.parse(ws_l2_data_update, 0) == []


def test_malformed_frames_raise_and_an_unreadable_number_counts_as_lost():
    _, parser, m = machine()
    feed(parser, m, ws_l2_data_snapshot)  # 13
    # the simulator's malformed fault: a truncated copy, then the intact frame: no gap
    with pytest.raises(orjson.JSONDecodeError):
        parser.parse(ws_l2_data_update[: len(ws_l2_data_update) // 2], 0)
    assert len(feed(parser, m, ws_l2_data_update)) == 1 and parser.last_seq == 14
    # a frame with a good number whose content is broken: raised, and its number stays
    # unconsumed, so the next frame shows the loss
    with pytest.raises(ValueError):
        parser.parse(l2_update(15, ("bid", "65062.5", "lots")), 0)
    with pytest.raises(ParseError, match="bad level"):
        parser.parse(l2_update(15, ("offer", "65090", "-0.5")), 0)
    with pytest.raises(KeyError):
        parser.parse(renumber(ws_l2_data_update, 15).replace('"updates"', '"levels"'), 0)
    (gap,) = parser.parse(l2_update(16, ("bid", "65062.5", "1")), 0)
    assert isinstance(gap, ConnectionGap)
    with pytest.raises(ParseError, match="failure to subscribe"):
        parser.parse('{"type":"error","message":"failure to subscribe"}', 0)
    with pytest.raises(ParseError, match="channel"):
        parser.parse(renumber(ws_heartbeats_tick, 17).replace("heartbeats", "status", 1), 0)
    with pytest.raises(ParseError):
        parser.parse("[1, 2]", 0)


def test_an_unreadable_trade_frame_is_skipped_without_resyncing_the_books():
    """A trade or heartbeat frame that cannot be read lost no book data: its number is
    consumed, so the next book frame is no gap (else every book on the connection, megabytes
    of snapshots, would be fetched again, and again for each such trade)."""
    _, parser, m = machine()
    feed(parser, m, ws_l2_data_snapshot)  # 13
    odd = renumber(ws_market_trades_update, 14).replace('"SELL"', '"UNKNOWN_ORDER_SIDE"')
    with pytest.raises(ParseError, match="side"):
        parser.parse(odd, 0)
    assert parser.last_seq == 14
    (upd,) = feed(parser, m, l2_update(15, ("bid", "65062.5", "1")))
    assert isinstance(upd, BookUpdate) and m.resyncs == [] and m.sync.state == "live"


def test_a_crossing_update_resyncs_by_reconnecting():
    plugin, parser, m = machine()
    feed(parser, m, ws_l2_data_snapshot)
    feed(parser, m, l2_update(14, ("bid", "65083.67", "1")))
    assert isinstance(m.resyncs[-1], Resync) and m.resyncs[-1].kind == "crossed"
    assert plugin.resubscribe(m.sync.inst) is None  # the runner reconnects: fresh snapshots


def test_trade_side_is_the_opposite_of_the_maker_side():
    plugin = coinbase()
    (batch,) = connection(plugin).parse(ws_market_trades_update, 0)
    (trade,) = batch.trades
    # spread 65083.66 / 65083.67: a SELL maker at the ask was lifted by a buying taker
    assert (trade.native, trade.price, trade.size, trade.side) == (
        "BTC-USD",
        65083.67,
        0.01034361,
        "buy",
    )
    assert trade.trade_id == "1068572091"
    assert trade.ts_exch == ts_ns("2026-08-09T21:05:48.167634Z")
    buy = plugin.parse(ws_market_trades_update.replace('"SELL"', '"BUY"'), 0)
    assert buy[0].trades[0].side == "sell"
    with pytest.raises(ParseError, match="side"):
        plugin.parse(ws_market_trades_update.replace('"SELL"', '"sell"'), 0)


def test_every_trade_of_a_message_is_emitted_oldest_first_and_the_snapshot_is_skipped():
    def trade(tid: int, t: str, side: str) -> dict:
        return {
            "product_id": "ETH-USD",
            "trade_id": str(tid),
            "price": "3001.5",
            "size": "0.1",
            "time": t,
            "side": side,
        }

    frame = {
        "channel": "market_trades",
        "timestamp": "2026-08-09T21:05:48.9Z",
        "sequence_num": 20,
        "events": [
            {"type": "snapshot", "trades": [trade(5, "2026-08-09T21:00:00Z", "BUY")]},
            {
                "type": "update",
                "trades": [  # newest first, as the venue sends them
                    trade(12, "2026-08-09T21:05:48.75Z", "BUY"),
                    trade(11, "2026-08-09T21:05:48.75Z", "SELL"),
                    trade(10, "2026-08-09T21:05:48.6Z", "BUY"),
                ],
            },
        ],
    }
    (batch,) = coinbase().parse(orjson.dumps(frame), 0)
    assert [(t.trade_id, t.side) for t in batch.trades] == [
        ("10", "sell"),
        ("11", "buy"),
        ("12", "sell"),
    ]
    frame["events"] = frame["events"][:1]
    assert coinbase().parse(orjson.dumps(frame), 0) == []


def test_acks_and_heartbeats_produce_nothing():
    plugin = coinbase()
    assert plugin.parse(ws_subscriptions_ack, 0) == []
    assert plugin.parse(ws_heartbeats_tick, 0) == []


def test_products_name_instruments_from_metadata():
    def product(pid, base, quote, **kw):
        p = {
            "product_id": pid,
            "base_currency_id": base,
            "quote_currency_id": quote,
            "product_type": "SPOT",
            "status": "online",
            "trading_disabled": False,
            "is_disabled": False,
            "alias": "",
            "alias_to": [],
            "price_increment": "0.01",
            "base_increment": "0.00000001",
        }
        p.update(kw)
        return p

    products = [
        product("BTC-USD", "BTC", "USD", alias_to=["BTC-USDC"]),
        product("BTC-USDC", "BTC", "USDC", alias="BTC-USD"),
        product("ETH-USD", "ETH", "USD", price_increment="0.1", base_increment="0.0001"),
        product("SOL-USD", "SOL", "USD", status="offline"),
        product("XRP-USD", "XRP", "USD", trading_disabled=True),
        product("BIT-26DEC30-CDE", "", "USD", product_type="FUTURE"),
        product("DOGE-EUR", "DOGE", "EUR"),
        product("DOGE-USD", "DOGE", "USD", status="ONLINE", price_increment="0.00001"),
    ]
    body = orjson.dumps({"products": products, "num_products": str(len(products))})
    plugin = plugin_for("coinbase", quote="USD", bases=("BTC", "ETH", "SOL", "XRP", "DOGE", "ADA"))
    (req,) = plugin.metadata_requests()
    assert req.url.endswith("/api/v3/brokerage/market/products")
    assert req.params == {"product_type": "SPOT"}
    insts = plugin.parse_metadata([body])
    assert [(i.native, i.symbol) for i in insts] == [
        ("BTC-USD", "BTC-USD"),
        ("ETH-USD", "ETH-USD"),
        ("DOGE-USD", "DOGE-USD"),
    ]
    assert (insts[1].price_precision, insts[1].qty_precision) == (1, 4)
    # the USDC books are the USD ones under an alias: nothing of their own to follow
    usdc = plugin_for("coinbase", quote="USDC", bases=("BTC",))
    assert usdc.parse_metadata([body]) == []


def test_one_subscribe_message_per_channel_and_connections_split_by_option():
    plugin = plugin_for(
        "coinbase", quote="USD", bases=("BTC", "ETH", "SOL"), products_per_connection=2
    )
    body = orjson.dumps(
        {
            "products": [
                {
                    "product_id": f"{b}-USD",
                    "base_currency_id": b,
                    "quote_currency_id": "USD",
                    "product_type": "SPOT",
                    "status": "online",
                }
                for b in ("BTC", "ETH", "SOL")
            ]
        }
    )
    specs = plugin.connections(plugin.parse_metadata([body]))
    assert [[i.native for i in s.instruments] for s in specs] == [
        ["BTC-USD", "ETH-USD"],
        ["SOL-USD"],
    ]
    subs = [orjson.loads(m) for m in specs[0].subscribe]
    assert [s["channel"] for s in subs] == ["level2", "market_trades", "heartbeats"]
    assert all(
        s["type"] == "subscribe" and s["product_ids"] == ["BTC-USD", "ETH-USD"] for s in subs
    )
    assert specs[0].url == plugin.cfg.ws_url
    assert plugin.max_frame_bytes >= 16 * 1024 * 1024


def test_timestamps_keep_nanoseconds():
    base = 1786309548 * 1_000_000_000  # 2026-08-09T21:05:48Z
    assert ts_ns("2026-08-09T21:05:48Z") == base
    assert ts_ns("2026-08-09T21:05:48.483587501Z") == base + 483587501
    assert ts_ns("2026-08-09T21:05:48.1676Z") == base + 167600000
    with pytest.raises(ParseError):
        ts_ns("2026-08-09T21:05:48.12+00:00")


def test_a_five_megabyte_snapshot_like_the_real_btc_usd_one():
    """18,769 bids + 27,238 offers in one frame (the 2026 BTC-USD snapshot): parsed whole."""
    bids = [("bid", f"{65083.66 - i * 0.01:.2f}", "0.00100000") for i in range(18_769)]
    asks = [("offer", f"{65083.67 + i * 0.01:.2f}", "0.00200000") for i in range(27_238)]
    frame = l2_update(1, *bids, *asks).replace('"type":"update"', '"type":"snapshot"')
    assert len(frame) > 4_000_000
    _, parser, m = machine()
    feed(parser, m, frame)
    book = m.sync.book
    assert (len(book.bids), len(book.asks)) == (18_769, 27_238)
    assert book.best_bid() == (65083.66, 0.001) and book.best_ask() == (65083.67, 0.002)
    assert m.sync.state == "live"
