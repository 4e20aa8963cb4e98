"""The Binance Spot sync rule on hand-made sequences (exchanges.md section 1.3)."""

from __future__ import annotations

import orjson
import pytest

from common.config import ConfigError
from common.model import BookUpdate
from services.ingest.sync import (
    KEPT_AFTER_FAILURE,
    MAX_BUFFERED,
    MAX_RESYNC_DELAY_S,
    MAX_SYNC_WAIT_S,
    RESYNC_WINDOW_S,
    Publish,
    Resync,
    ResyncPace,
    SyncWaits,
)
from services.ingest.venue import ParseError
from tests.venues import SyncLog, plugin_for, sync_for


def diff(first: int, last: int, bids=(), asks=()) -> BookUpdate:
    return BookUpdate("BTCUSDT", False, list(bids), list(asks), first_id=first, last_id=last)


def snapshot(last_id: int, bids, asks) -> BookUpdate:
    return BookUpdate("BTCUSDT", True, list(bids), list(asks), last_id=last_id)


def machine():
    plugin = plugin_for("binance")
    return SyncLog(sync_for(plugin, "BTCUSDT", "BTC", "USDT"))


BIDS = [("100.00", "1.0"), ("99.00", "2.0")]
ASKS = [("101.00", "1.5"), ("102.00", "3.0")]


def test_first_diff_straddling_lastupdateid_plus_one_is_applied():
    m = machine()
    # buffered before the snapshot arrives: one too old, one straddling 1001
    assert m.feed(diff(990, 1000, bids=[("98.00", "9")])) is None
    assert m.feed(diff(1001, 1003, bids=[("100.00", "0")])) is None
    out = m.feed(snapshot(1000, BIDS, ASKS))
    assert isinstance(out, Publish) and out.snapshot
    book = m.sync.book
    assert book.best_bid() == (99.0, 2.0)  # 100 deleted by the straddling diff
    assert 98.0 not in book.bids  # the old diff (u <= lastUpdateId) was dropped
    assert m.sync.last_id == 1003 and m.sync.state == "live"


def test_u_equal_lastupdateid_plus_one_exactly_is_the_common_real_case():
    m = machine()
    m.feed(diff(1001, 1001, asks=[("101.00", "0")]))
    out = m.feed(snapshot(1000, BIDS, ASKS))
    assert isinstance(out, Publish)
    assert m.sync.book.best_ask() == (102.0, 3.0)


def test_snapshot_older_than_the_buffer_is_refused():
    m = machine()
    m.feed(diff(1005, 1010))
    out = m.feed(snapshot(1000, BIDS, ASKS))
    assert isinstance(out, Resync) and out.kind == "stale_snapshot"
    assert m.sync.state == "syncing" and len(m.sync.book) == 0


def test_after_a_stale_snapshot_the_buffer_is_kept_for_the_next_one():
    """exchanges.md 1.3 step 3: snapshot too old -> fetch again, keep buffering. A REST
    snapshot lagging the stream by a steady delay must still find its place."""
    m = machine()
    m.feed(diff(1005, 1010, bids=[("97.00", "1")]))
    m.feed(diff(1011, 1012))
    assert isinstance(m.feed(snapshot(1000, BIDS, ASKS)), Resync)
    m.feed(diff(1013, 1015, asks=[("101.00", "0")]))
    out = m.feed(snapshot(1011, BIDS, ASKS))  # older than 1013, but 1011-1012 was kept
    assert isinstance(out, Publish) and out.snapshot
    assert m.sync.last_id == 1015 and m.sync.state == "live"
    assert m.sync.book.best_ask() == (102.0, 3.0)
    assert 97.0 not in m.sync.book.bids  # 1005-1010 is older than the snapshot: skipped


def test_first_live_diff_after_a_stale_snapshot_is_kept_too():
    m = machine()
    assert isinstance(m.feed(snapshot(1000, BIDS, ASKS)), Publish)  # nothing buffered yet
    out = m.feed(diff(1003, 1004, bids=[("100.00", "0")]))  # 1001-1002 are missing
    assert isinstance(out, Resync) and out.kind == "stale_snapshot"
    out = m.feed(snapshot(1002, BIDS, ASKS))
    assert isinstance(out, Publish) and m.sync.book.best_bid() == (99.0, 2.0)


def test_a_long_buffer_broken_by_a_gap_keeps_its_newest_half_not_a_full_buffer():
    """A snapshot answered after thousands of diffs, one of them lost: the diffs kept for the
    next snapshot must leave room to buffer more, or the limit trips at once (a second resync,
    and the snapshot asked for after the gap wasted)."""
    m = machine()
    m.feed(diff(1001, 1001))
    for i in range(1003, 1003 + MAX_BUFFERED - 1):  # 1002 lost
        m.feed(diff(i, i))
    assert isinstance(m.feed(snapshot(1000, BIDS, ASKS)), Resync)
    last = 1003 + MAX_BUFFERED - 2
    assert len(m.sync.buffer) == KEPT_AFTER_FAILURE and m.sync.buffer[-1].last_id == last
    for i in range(last + 1, last + 101):
        assert m.feed(diff(i, i)) is None
    out = m.feed(snapshot(last - 10, BIDS, ASKS))
    assert isinstance(out, Publish) and m.sync.last_id == last + 100
    assert (m.sync.counters.gaps, m.sync.counters.resyncs) == (1, 1)


def test_a_level_that_is_not_a_number_resyncs_and_leaves_no_half_applied_book():
    m = machine()
    m.feed(snapshot(1000, BIDS, ASKS))
    m.feed(diff(1001, 1001))
    out = m.feed(diff(1002, 1002, bids=[("100.00", "0"), ("oops", "1")]))
    assert isinstance(out, Resync) and out.kind == "malformed"
    assert "oops" in out.reason
    assert m.sync.state == "syncing" and len(m.sync.book) == 0
    assert m.sync.counters.malformed == 1
    m.feed(diff(1003, 1003))
    out = m.feed(snapshot(1002, BIDS, ASKS))
    assert isinstance(out, Publish) and m.sync.book.best_bid() == (100.0, 1.0)


def test_a_string_update_id_resyncs_instead_of_raising():
    m = machine()
    m.feed(snapshot(1000, BIDS, ASKS))
    out = m.feed(BookUpdate("BTCUSDT", False, [], [], first_id="1001", last_id="1001"))
    assert isinstance(out, Resync) and out.kind == "malformed"


def test_a_timestamp_that_is_not_integer_ms_is_a_parse_error():
    plugin = plugin_for("binance")
    frame = {
        "stream": "btcusdt@depth@100ms",
        "data": {"e": "depthUpdate", "E": "1700000000000", "s": "BTCUSDT", "U": 1, "u": 2},
    }
    frame["data"].update(b=[], a=[])
    with pytest.raises(ParseError, match="not integer milliseconds"):
        plugin.parse(orjson.dumps(frame), 0)


def test_gap_in_live_stream_resyncs_that_instrument_and_stops_publishing():
    m = machine()
    m.feed(diff(1001, 1002))
    m.feed(snapshot(1000, BIDS, ASKS))
    assert isinstance(m.feed(diff(1003, 1004, bids=[("99.50", "1")])), Publish)
    out = m.feed(diff(1006, 1007))  # 1005 missing
    assert isinstance(out, Resync) and out.kind == "gap"
    assert m.sync.counters.gaps == 1 and m.sync.state == "syncing"
    # while syncing, diffs are buffered, not published; the one that broke continuity too
    assert m.feed(diff(1008, 1009)) is None
    assert [u.first_id for u in m.sync.buffer] == [1006, 1008]
    # a snapshot that lags the stream still finds its place in them
    out = m.feed(snapshot(1007, BIDS, ASKS))
    assert isinstance(out, Publish) and m.sync.last_id == 1009 and m.sync.state == "live"


def test_a_gap_found_in_the_buffer_keeps_the_diffs_after_it_for_the_next_snapshot():
    """The snapshot's answer can come after many diffs (a slow REST call, a replay at full
    speed): continuity breaks inside the buffer. The diffs after the break came before the next
    snapshot is asked for; a next snapshot older than the last of them must not be too old."""
    m = machine()
    m.feed(diff(1001, 1002))
    m.feed(diff(1005, 1006))  # 1003-1004 lost
    m.feed(diff(1007, 1008, bids=[("99.50", "1")]))
    out = m.feed(snapshot(1000, BIDS, ASKS))
    assert isinstance(out, Resync) and out.kind == "gap"
    assert m.sync.counters.gaps == 1 and m.sync.counters.stale_snapshots == 0
    assert m.sync.state == "syncing" and len(m.sync.book) == 0
    m.feed(diff(1009, 1010))
    out = m.feed(snapshot(1006, BIDS, ASKS))  # taken before 1007-1008 came: still usable
    assert isinstance(out, Publish) and out.snapshot
    assert m.sync.last_id == 1010 and m.sync.book.best_bid() == (100.0, 1.0)
    assert m.sync.book.bids[99.5] == 1.0
    assert m.sync.counters.resyncs == 1


def test_duplicate_and_old_diffs_are_skipped_not_gaps():
    m = machine()
    m.feed(diff(1001, 1002))
    m.feed(snapshot(1000, BIDS, ASKS))
    assert m.feed(diff(1001, 1002)) is None
    assert m.sync.counters.skipped >= 1 and m.sync.state == "live"


def test_a_diff_that_crosses_the_book_is_treated_like_a_gap():
    m = machine()
    m.feed(diff(1001, 1001))
    m.feed(snapshot(1000, BIDS, ASKS))
    out = m.feed(diff(1002, 1002, bids=[("101.50", "1")]))
    assert isinstance(out, Resync) and out.kind == "crossed"
    assert m.sync.counters.crossed == 1


def test_trade_side_is_the_taker_side():
    plugin = plugin_for("binance")
    frame = orjson.dumps(
        {
            "stream": "btcusdt@trade",
            "data": {
                "e": "trade",
                "E": 1,
                "s": "BTCUSDT",
                "t": 7,
                "p": "61837.63000000",
                "q": "0.02000000",
                "T": 1723161255342,
                "m": True,
                "M": True,
            },
        }
    )
    (batch,) = plugin.parse(frame, 0)
    (trade,) = batch.trades
    assert (trade.price, trade.size, trade.side, trade.trade_id) == (61837.63, 0.02, "sell", "7")
    assert trade.ts_exch == 1723161255342 * 1_000_000


def test_exchange_info_names_instruments_from_metadata():
    plugin = plugin_for("binance", bases=("BTC", "DOGE"))
    info = {
        "symbols": [
            {
                "symbol": "BTCUSDT",
                "status": "TRADING",
                "baseAsset": "BTC",
                "quoteAsset": "USDT",
                "filters": [
                    {"filterType": "PRICE_FILTER", "tickSize": "0.01000000"},
                    {"filterType": "LOT_SIZE", "stepSize": "0.00001000"},
                ],
            },
            {"symbol": "BTCUSDC", "status": "TRADING", "baseAsset": "BTC", "quoteAsset": "USDC"},
            {
                "symbol": "1000DOGEUSDT",
                "status": "TRADING",
                "baseAsset": "1000DOGE",
                "quoteAsset": "USDT",
            },
        ]
    }
    (inst,) = plugin.parse_metadata([orjson.dumps(info)])
    assert inst.symbol == "BTC-USDT" and inst.price_precision == 2 and inst.qty_precision == 5


def test_sync_waits_ask_again_after_the_timeout_then_back_off():
    waits = SyncWaits(30.0)
    assert waits.overdue("BTC", False, 1, 0.0) is None  # starts counting
    assert waits.overdue("BTC", False, 1, 29.0) is None
    assert waits.overdue("BTC", False, 1, 30.0) == 30.0
    assert waits.overdue("BTC", False, 1, 89.0) is None  # next after 60 s more
    assert waits.overdue("BTC", False, 1, 90.0) == 60.0
    assert waits.overdue("BTC", False, 2, 91.0) is None  # a new resync: counts from now
    assert waits.overdue("BTC", False, 2, 211.0) == 120.0  # still backed off
    assert waits.overdue("BTC", True, 2, 212.0) is None  # live: forgotten
    assert waits.overdue("BTC", False, 3, 300.0) is None
    assert waits.overdue("BTC", False, 3, 330.0) == 30.0
    for t in range(20):
        waits.overdue("ETH", False, 1, 0.0 + t * 1000)
    assert waits._since["ETH"][2] == MAX_SYNC_WAIT_S


def test_a_plugin_bug_is_raised_not_taken_for_bad_exchange_data():
    """Only bad values (ValueError, TypeError) make a 'malformed' resync; a KeyError in a
    plugin's own code is a bug, raised so that it shows instead of resyncing in a loop."""
    plugin = plugin_for("binance")

    def verify_with_a_bug(inst, book, upd):
        raise KeyError("precision of an unknown symbol")

    plugin.verify = verify_with_a_bug
    m = SyncLog(sync_for(plugin, "BTCUSDT", "BTC", "USDT"))
    with pytest.raises(KeyError):
        m.feed(snapshot(1000, BIDS, ASKS))


def test_resync_pace_lets_a_few_go_then_doubles_the_wait():
    pace = ResyncPace()
    assert [pace.delay("BTC", t) for t in (0.0, 1.0, 2.0)] == [0.0, 0.0, 0.0]
    assert [pace.delay("BTC", t) for t in (3.0, 4.0, 5.0)] == [1.0, 2.0, 4.0]
    for t in range(6, 20):
        pace.delay("BTC", float(t))
    assert pace.delay("BTC", 20.0) == MAX_RESYNC_DELAY_S
    assert pace.delay("ETH", 20.0) == 0.0  # one book's failures do not hold back another's
    assert pace.delay("BTC", 20.0 + RESYNC_WINDOW_S + 1) == 0.0  # a quiet minute: free again


# -- a cut snapshot is refreshed while the book stays live ------------------------------------------
def cut_machine(limit: int = 8) -> SyncLog:
    """Snapshots of ``limit`` levels a side: bids 100..93, asks 101..108 (a deeper book exists)."""
    plugin = plugin_for("binance", snapshot_limit=limit)
    return SyncLog(sync_for(plugin, "BTCUSDT", "BTC", "USDT"))


def levels(prices, size="1"):
    return [(f"{p:.2f}", size) for p in prices]


CUT_BIDS = levels(range(100, 92, -1))
CUT_ASKS = levels(range(101, 109))


def test_price_leaving_a_cut_snapshot_asks_for_a_refresh_and_the_book_stays_live():
    m = cut_machine()
    assert isinstance(m.feed(snapshot(1000, CUT_BIDS, CUT_ASKS)), Publish)
    assert m.sync.cover_levels == 4
    # the price falls: bids 100..97 are taken; 96..93 (4 known) still cover
    assert isinstance(m.feed(diff(1001, 1001, bids=levels(range(100, 96, -1), "0"))), Publish)
    assert not m.sync.refresh_wanted
    # one more: 3 known bids left, and below 93 the book was never seen
    m.feed(diff(1002, 1002, bids=[("96.00", "0")]))
    assert m.sync.refresh_wanted and m.sync.state == "live"
    m.sync.start_refresh()
    m.feed(diff(1003, 1003, bids=[("95.00", "5")]))  # applied live, and kept
    m.feed(diff(1004, 1004, asks=[("101.00", "0")]))
    assert m.sync.book.best_bid() == (95.0, 5.0) and m.sync.state == "live"
    # the new snapshot (taken at 1003, with the levels below 93 we never had) + 1004 replace it
    fresh = snapshot(1003, [("95.00", "5"), *levels(range(94, 87, -1))], levels(range(101, 109)))
    out = m.feed(fresh)
    assert isinstance(out, Publish) and out.snapshot
    book = m.sync.book
    assert list(reversed(book.bids.keys())) == [95.0, 94.0, 93.0, 92.0, 91.0, 90.0, 89.0, 88.0]
    assert book.best_ask() == (102.0, 1.0)  # 1004 applied on top of the snapshot
    assert m.sync.last_id == 1004 and m.sync.state == "live" and not m.resyncs
    assert m.sync.counters.refreshes == 1 and m.sync.bid_floor == 88.0
    m.feed(diff(1005, 1005, asks=[("102.00", "0")]))  # the stream goes on from 1004
    assert m.sync.book.best_ask() == (103.0, 1.0) and not m.resyncs


def test_a_refresh_snapshot_older_than_the_kept_diffs_keeps_the_live_book():
    m = cut_machine()
    m.feed(snapshot(1000, CUT_BIDS, CUT_ASKS))
    m.feed(diff(1001, 1001, bids=levels(range(100, 95, -1), "0")))
    assert m.sync.refresh_wanted
    m.sync.start_refresh()
    m.feed(diff(1002, 1003, asks=[("101.00", "2")]))
    before = (list(m.sync.book.bids.items()), list(m.sync.book.asks.items()))
    assert m.feed(snapshot(1000, CUT_BIDS, CUT_ASKS)) is None  # 1002 does not follow 1000 + 1
    assert (list(m.sync.book.bids.items()), list(m.sync.book.asks.items())) == before
    assert m.sync.state == "live" and m.sync.last_id == 1003 and not m.resyncs
    assert m.sync.counters.refresh_failures == 1 and m.sync.refresh_wanted
    # the kept diffs stay kept: a second snapshot lagging the stream as much still fits
    m.sync.start_refresh()
    m.feed(diff(1004, 1004, bids=[("93.00", "0")]))
    out = m.feed(snapshot(1001, levels(range(95, 87, -1)), CUT_ASKS))  # taken at 1001
    assert isinstance(out, Publish) and out.snapshot
    assert m.sync.last_id == 1004 and m.sync.book.best_ask() == (101.0, 2.0)
    assert 93.0 not in m.sync.book.bids and m.sync.book.best_bid() == (95.0, 1.0)
    assert m.sync.counters.refreshes == 1 and not m.sync.refreshing and not m.resyncs


def test_a_refresh_snapshot_older_than_the_book_is_never_published():
    """No diff came while the snapshot was on its way, and it is older than our book (a REST
    answer that lags): publishing it would take the book back in time."""
    m = cut_machine()
    m.feed(snapshot(1000, CUT_BIDS, CUT_ASKS))
    m.feed(diff(1001, 1005, bids=levels(range(100, 95, -1), "0"), asks=[("101.00", "0")]))
    m.sync.start_refresh()
    published = len(m.published)
    assert m.feed(snapshot(1003, CUT_BIDS, CUT_ASKS)) is None
    assert len(m.published) == published and m.sync.book.best_ask() == (102.0, 1.0)
    assert m.sync.last_id == 1005 and m.sync.refresh_wanted and not m.resyncs
    m.feed(diff(1006, 1006))  # the stream goes on from our book, not from the old snapshot
    assert not m.resyncs and m.sync.state == "live"


def test_a_snapshot_shorter_than_the_limit_is_the_whole_book():
    m = cut_machine(limit=20)
    m.feed(snapshot(1000, CUT_BIDS, CUT_ASKS))  # 8 levels < 20: nothing lies beyond
    m.feed(diff(1001, 1001, bids=levels(range(100, 93, -1), "0")))
    assert not m.sync.refresh_wanted and m.sync.book.best_bid() == (93.0, 1.0)


def test_snapshot_limit_must_be_one_binance_accepts():
    with pytest.raises(ConfigError, match="snapshot_limit"):
        plugin_for("binance", snapshot_limit=5001)
