"""The Kraken v2 rule on hand-made sequences (exchanges.md section 3): apply all levels, truncate
to the subscribed depth, verify the CRC32 of the top 10; a mismatch resyncs the one book."""

from __future__ import annotations

import zlib
from decimal import Decimal

import orjson
import pytest

from common.model import BookUpdate, TradeBatch
from services.ingest.sync import InstrumentSync, Publish, Resync
from services.ingest.venue import VenueError
from services.ingest.venues.kraken import asset_name, book_checksum, rfc3339_ns
from tests.venues import SyncLog, plugin_for

PAIRS = {  # shaped like the real AssetPairs entries (cryptofeed KRAKEN.0)
    "XXBTZUSD": {"wsname": "XBT/USD", "base": "XXBT", "quote": "ZUSD", "pair_decimals": 1,
                 "lot_decimals": 8, "status": "online"},
    "XXBTZUSD.d": {"altname": "XBTUSD.d", "base": "XXBT", "quote": "ZUSD", "pair_decimals": 1,
                   "lot_decimals": 8},
    "XDGUSD": {"wsname": "XDG/USD", "base": "XXDG", "quote": "ZUSD", "pair_decimals": 7,
               "lot_decimals": 8},
    "ADAUSD": {"wsname": "ADA/USD", "base": "ADA", "quote": "ZUSD", "pair_decimals": 6,
               "lot_decimals": 8},
    "XETHXXBT": {"wsname": "ETH/XBT", "base": "XETH", "quote": "XXBT", "pair_decimals": 5,
                 "lot_decimals": 8},
    "ODDUSD": {"wsname": "ETH/USD", "base": "XXBT", "quote": "ZUSD", "pair_decimals": 2,
               "lot_decimals": 8},  # codes disagree with the wsname: left out, not guessed
    "SOLUSD": {"wsname": "SOL/USD", "base": "SOL", "quote": "ZUSD", "pair_decimals": 2,
               "lot_decimals": 8, "status": "delisted"},
}  # fmt: skip


def machine(depth: int = 10):
    plugin = plugin_for("kraken", quote="USD", bases=("BTC", "DOGE", "ETH", "SOL"), depth=depth)
    insts = plugin.parse_metadata([orjson.dumps({"error": [], "result": PAIRS})])
    btc = next(i for i in insts if i.native == "BTC/USD")
    return plugin, SyncLog(InstrumentSync(btc, plugin))


class Reference:
    """The book and checksum rebuilt with Decimals, as Kraken's guide describes them."""

    def __init__(self, depth: int) -> None:
        self.depth = depth
        self.bids: dict[Decimal, Decimal] = {}
        self.asks: dict[Decimal, Decimal] = {}

    def apply(self, bids, asks, reset: bool = False) -> None:
        if reset:
            self.bids, self.asks = {}, {}
        for side, levels in ((self.bids, bids), (self.asks, asks)):
            for p, q in levels:
                if Decimal(str(q)) == 0:
                    side.pop(Decimal(str(p)), None)
                else:
                    side[Decimal(str(p))] = Decimal(str(q))
        self.bids = dict(sorted(self.bids.items(), reverse=True)[: self.depth])
        self.asks = dict(sorted(self.asks.items())[: self.depth])

    def checksum(self, pp: int = 1, qp: int = 8) -> int:
        def f(x: Decimal, n: int) -> str:
            return f"{x:.{n}f}".replace(".", "").lstrip("0")

        s = "".join(f(p, pp) + f(q, qp) for p, q in sorted(self.asks.items())[:10])
        s += "".join(f(p, pp) + f(q, qp) for p, q in sorted(self.bids.items(), reverse=True)[:10])
        return zlib.crc32(s.encode())


def frame(kind: str, bids, asks, checksum: int, symbol: str = "BTC/USD") -> bytes:
    """A v2 book message; numbers as floats, so ``0.00100000`` arrives as ``0.001``."""
    data = {
        "symbol": symbol,
        "bids": [{"price": p, "qty": q} for p, q in bids],
        "asks": [{"price": p, "qty": q} for p, q in asks],
        "checksum": checksum,
    }
    if kind == "update":
        data["timestamp"] = "2023-07-30T15:29:58.343415Z"
    return orjson.dumps({"channel": "book", "type": kind, "data": [data]})


class Session:
    """Feeds hand-made messages through the real parser and sync, with correct checksums
    from the reference unless told otherwise."""

    def __init__(self, depth: int = 10) -> None:
        self.plugin, self.m = machine(depth)
        self.ref = Reference(depth)

    def send(self, kind: str, bids=(), asks=(), checksum: int | None = None, ref: bool = True):
        if ref:
            self.ref.apply(bids, asks, reset=kind == "snapshot")
        crc = self.ref.checksum() if checksum is None else checksum
        (upd,) = self.plugin.parse(frame(kind, bids, asks, crc), 0)
        return self.m.feed(upd)

    def lost(self, bids=(), asks=()) -> None:
        """A message the venue sent that never arrived."""
        self.ref.apply(bids, asks)

    def book_equals_reference(self) -> bool:
        book = self.m.sync.book
        return dict(book.bids) == {float(p): float(q) for p, q in self.ref.bids.items()} and dict(
            book.asks
        ) == {float(p): float(q) for p, q in self.ref.asks.items()}


BIDS = [(29430.2, 0.18967538), (29429.6, 0.00011621), (29427.4, 0.001), (29426.7, 4.0)]
ASKS = [(29430.3, 8.25215653), (29430.4, 2.55637606), (29431.0, 0.1), (29433.3, 0.8)]


def test_snapshot_is_verified_and_reset_discards_the_old_book():
    s = Session()
    out = s.send("snapshot", BIDS, ASKS)
    assert isinstance(out, Publish) and out.snapshot and s.m.sync.state == "live"
    book = s.m.sync.book
    assert book.best_bid() == (29430.2, 0.18967538) and book.best_ask() == (29430.3, 8.25215653)
    # the exchange's own digits are kept for the checksum: 4.0 was 4.00000000 on the wire
    assert book.raw_bids[29426.7] == ("29426.7", "4.00000000")
    assert book.raw_bids[29427.4] == ("29427.4", "0.00100000")
    out = s.send("snapshot", [(29420.0, 1.0)], [(29440.0, 2.0)])
    assert isinstance(out, Publish) and out.snapshot
    assert dict(book.bids) == {29420.0: 1.0} and dict(book.asks) == {29440.0: 2.0}
    assert s.m.sync.counters.snapshots == 2 and s.m.resyncs == []


def test_all_levels_of_an_update_are_applied_before_the_checksum():
    s = Session()
    s.send("snapshot", BIDS, ASKS)
    # a delete, a new level and a changed level in one message, as in the real capture
    out = s.send("update", asks=[(29431.0, 0.0), (29433.3, 0.8), (29430.6, 0.001)])
    assert isinstance(out, Publish) and not out.snapshot
    assert out.asks == [(29431.0, 0.0), (29433.3, 0.8), (29430.6, 0.001)]
    out = s.send("update", bids=[(29430.2, 0.0)])
    assert isinstance(out, Publish)
    assert s.book_equals_reference() and s.m.resyncs == []
    assert s.m.sync.book.best_bid() == (29429.6, 0.00011621)


def test_a_bad_checksum_resyncs_that_book_and_asks_for_a_fresh_snapshot():
    s = Session()
    s.send("snapshot", BIDS, ASKS)
    good = s.ref.checksum()
    out = s.send("update", bids=[(29429.9, 1.5)], checksum=good)  # checksum of the old book
    assert isinstance(out, Resync) and out.kind == "checksum"
    assert str(good) in out.reason
    assert s.m.sync.state == "syncing" and len(s.m.sync.book) == 0
    assert s.m.sync.counters.checksum_failures == 1 and s.m.sync.counters.resyncs == 1
    unsub, sub = map(orjson.loads, s.plugin.resubscribe(s.m.sync.inst))
    assert unsub == {
        "method": "unsubscribe",
        "params": {"channel": "book", "symbol": ["BTC/USD"], "depth": 10},
    }
    assert sub["method"] == "subscribe" and sub["params"]["snapshot"] is True
    assert sub["params"]["symbol"] == ["BTC/USD"] and sub["params"]["depth"] == 10
    # updates in flight before the fresh snapshot are dropped, not published
    assert s.send("update", bids=[(29429.8, 1.0)]) is None
    out = s.send("snapshot", BIDS, ASKS)
    assert isinstance(out, Publish) and out.snapshot and s.m.sync.state == "live"
    assert s.book_equals_reference()


def test_a_lost_message_is_a_gap_the_next_checksum_catches():
    s = Session()
    s.send("snapshot", BIDS, ASKS)
    s.lost(bids=[(29430.2, 0.5)])  # never arrives
    out = s.send("update", asks=[(29430.4, 1.0)])
    assert isinstance(out, Resync) and out.kind == "checksum"


def test_a_duplicated_update_is_harmless_sizes_are_absolute():
    s = Session()
    s.send("snapshot", BIDS, ASKS)
    levels = {"bids": [(29430.2, 0.0), (29428.0, 3.25)], "asks": [(29430.3, 7.0)]}
    assert isinstance(s.send("update", **levels), Publish)
    assert isinstance(s.send("update", **levels), Publish)  # same message again
    assert s.m.resyncs == [] and s.book_equals_reference()


def test_updates_out_of_order_fail_the_checksum():
    s = Session()
    s.send("snapshot", BIDS, ASKS)
    s.lost(bids=[(29430.2, 0.0)])
    first_crc = s.ref.checksum()
    s.lost(bids=[(29429.0, 2.0)])
    second_crc = s.ref.checksum()
    out = s.send("update", bids=[(29429.0, 2.0)], checksum=second_crc, ref=False)  # second first
    assert isinstance(out, Resync) and out.kind == "checksum"
    assert s.send("update", bids=[(29430.2, 0.0)], checksum=first_crc, ref=False) is None


def test_levels_pushed_out_of_the_depth_are_truncated_and_published_as_deletes():
    s = Session(depth=10)
    bids = [(29430.0 - i, 1.0 + i) for i in range(10)]
    asks = [(29431.0 + i, 2.0 + i) for i in range(10)]
    s.send("snapshot", bids, asks)
    # two better bids: Kraken sends no delete for the two worst, which fall out of scope
    out = s.send("update", bids=[(29430.5, 0.3), (29430.7, 0.2)])
    assert isinstance(out, Publish)
    assert out.bids == [(29430.5, 0.3), (29430.7, 0.2), (29421.0, 0.0), (29422.0, 0.0)]
    assert len(s.m.sync.book.bids) == 10 and s.book_equals_reference()
    # the checksum covers the top 10 only, whatever the depth
    deep = Session(depth=25)
    deep.send("snapshot", [(29430.0 - i, 1.0) for i in range(25)], asks)
    assert isinstance(deep.send("update", bids=[(29406.0, 0.0), (29405.5, 9.0)]), Publish)
    assert len(deep.m.sync.book.bids) == 25 and deep.book_equals_reference()


def test_an_update_that_crosses_the_book_is_treated_like_a_gap():
    s = Session()
    s.send("snapshot", BIDS, ASKS)
    out = s.send("update", bids=[(29430.4, 1.0)])
    assert isinstance(out, Resync) and out.kind == "crossed"
    assert s.m.sync.counters.crossed == 1 and s.m.sync.state == "syncing"


def test_trades_are_batched_in_order_with_the_taker_side():
    plugin, _ = machine()
    msg = {
        "channel": "trade",
        "type": "update",
        "data": [
            {"symbol": "BTC/USD", "side": "sell", "price": 29430.2, "qty": 0.00011621,
             "ord_type": "market", "trade_id": 61000001, "timestamp": "2023-07-30T15:29:58.343415Z"},
            {"symbol": "BTC/USD", "side": "buy", "price": 29430.3, "qty": 4.0,
             "ord_type": "limit", "trade_id": 61000002, "timestamp": "2023-07-30T15:29:58.5Z"},
        ],
    }  # fmt: skip
    (batch,) = plugin.parse(orjson.dumps(msg), 0)
    assert isinstance(batch, TradeBatch)
    got = [(t.native, t.price, t.size, t.side, t.trade_id, t.ts_exch) for t in batch.trades]
    assert got == [
        ("BTC/USD", 29430.2, 0.00011621, "sell", "61000001", 1690730998343415000),
        ("BTC/USD", 29430.3, 4.0, "buy", "61000002", 1690730998500000000),
    ]
    assert plugin.parse(orjson.dumps({**msg, "type": "snapshot"}), 0) == []


def test_metadata_names_instruments_from_asset_pairs_and_the_instrument_channel():
    plugin, m = machine()
    insts = plugin.parse_metadata([orjson.dumps({"error": [], "result": PAIRS})])
    names = {i.native: (i.symbol, i.price_precision, i.qty_precision) for i in insts}
    # XXBT/XBT -> BTC, XXDG/XDG -> DOGE; ".d" pairs, other quotes and delisted pairs left out
    assert names == {"BTC/USD": ("BTC-USD", 1, 8), "DOGE/USD": ("DOGE-USD", 7, 8)}
    assert m.sync.inst.symbol == "BTC-USD"
    v2 = {
        "channel": "instrument",
        "type": "snapshot",
        "data": {
            "assets": [],
            "pairs": [
                {"symbol": "BTC/USD", "base": "BTC", "quote": "USD", "status": "online",
                 "price_precision": 1, "qty_precision": 8},
                {"symbol": "BTC/EUR", "base": "BTC", "quote": "EUR", "status": "online",
                 "price_precision": 1, "qty_precision": 8},
            ],
        },
    }  # fmt: skip
    (inst,) = plugin.parse_metadata([orjson.dumps(v2)])
    assert (inst.native, inst.symbol, inst.price_precision) == ("BTC/USD", "BTC-USD", 1)
    with pytest.raises(ValueError):
        plugin.parse_metadata([orjson.dumps({"error": ["EAPI:Rate limit exceeded"]})])
    assert asset_name("ZUSD", "USD") == "USD" and asset_name("XTZ", "XTZ") == "XTZ"
    assert asset_name("XXBT", "ETH") is None  # codes and wsname disagree: not guessed


def test_subscriptions_one_message_per_channel_with_the_symbol_list():
    plugin = plugin_for("kraken", quote="USD", bases=("BTC", "DOGE", "ETH", "SOL"))
    insts = plugin.parse_metadata([orjson.dumps({"error": [], "result": PAIRS})])
    (spec,) = plugin.connections(insts)
    book, trade = map(orjson.loads, spec.subscribe)
    assert book == {
        "method": "subscribe",
        "params": {"channel": "book", "symbol": ["BTC/USD", "DOGE/USD"], "depth": 25,
                   "snapshot": True},
    }  # fmt: skip
    assert trade["params"] == {
        "channel": "trade",
        "symbol": ["BTC/USD", "DOGE/USD"],
        "snapshot": False,
    }
    assert plugin.book_depth == 25 and plugin.watchdog_s == 5.0 and plugin.keep_raw_levels
    with pytest.raises(ValueError):
        plugin_for("kraken", quote="USD", depth=20)


def test_acks_heartbeats_status_and_pongs_are_ignored_but_a_refusal_is_reported():
    plugin, _ = machine()
    quiet = [
        {"channel": "heartbeat"},
        {"channel": "status", "type": "update",
         "data": [{"version": "2.0.10", "system": "online", "api_version": "v2",
                   "connection_id": 1}]},
        {"method": "subscribe", "req_id": 1, "success": True,
         "result": {"channel": "book", "depth": 25, "snapshot": True, "symbol": "BTC/USD"},
         "time_in": "2026-08-12T19:29:00.962486Z", "time_out": "2026-08-12T19:29:00.962534Z"},
        {"method": "pong", "req_id": 101, "time_in": "x", "time_out": "y"},
    ]  # fmt: skip
    for msg in quiet:
        assert plugin.parse(orjson.dumps(msg), 0) == []
    refused = {"method": "subscribe", "success": False, "error": "Currency pair not supported"}
    with pytest.raises(VenueError, match="not supported"):  # the exchange's error, not noise
        plugin.parse(orjson.dumps(refused), 0)
    # exchanges.md 3.1: a rate limit is answered without a method
    for limited in ({"Error": "Exceeded msg rate"}, {"error": "EAPI:Rate limit exceeded"}):
        with pytest.raises(VenueError, match=r"(?i)rate"):
            plugin.parse(orjson.dumps(limited), 0)


@pytest.mark.parametrize(
    "text",
    [
        b'{"channel":"book","type":"update","data":[{"symbol":"BTC/USD","bids":[{"pri',
        b'{"channel":"book","type":"update","data":[{"symbol":"BTC/USD","bids":'
        b'[{"price":"29430.2","qty":1.0}],"asks":[],"checksum":1}]}',
        b'{"channel":"book","type":"update","data":[{"symbol":"BTC/USD","bids":[],"asks":[]}]}',
        b'{"channel":"book","type":"update","data":[{"symbol":"ETH/EUR","bids":[],"asks":[],'
        b'"checksum":1}]}',
        b'{"channel":"book","type":"delta","data":[]}',
        b'{"channel":"ticker","type":"update","data":[]}',
        b'{"channel":"trade","type":"update","data":[{"symbol":"BTC/USD","side":"b",'
        b'"price":1.0,"qty":1.0,"trade_id":1,"timestamp":"2023-07-30T15:29:58Z"}]}',
        b"[1,2,3]",
        b"not json",
    ],
)
def test_malformed_frames_raise(text):
    plugin, _ = machine()
    with pytest.raises(Exception):  # noqa: B017 - any exception: the runner counts and skips
        plugin.parse(text, 0)


def test_checksum_function_matches_the_documented_example_strings():
    # "45285.2" -> "452852", "0.00100000" -> "100000" (exchanges.md 3.2)
    assert book_checksum([("45285.2", "0.00100000")], []) == zlib.crc32(b"452852100000")
    assert book_checksum([("0.05000", "1.0")], [("0.04000", "2.0")]) == zlib.crc32(b"500010400020")
    assert rfc3339_ns("2023-07-30T15:29:58.343415Z") == 1690730998343415000
    assert rfc3339_ns("2023-07-30T15:29:58Z") == 1690730998000000000


def test_parsed_levels_keep_exact_wire_digits():
    plugin, _ = machine()
    (upd,) = plugin.parse(frame("update", [(29426.7, 4.0)], [(29430.3, 1e-05)], 7), 0)
    assert isinstance(upd, BookUpdate) and upd.checksum == 7 and not upd.is_snapshot
    assert upd.bids == [("29426.7", "4.00000000")] and upd.asks == [("29430.3", "0.00001000")]
    assert upd.ts_exch == 1690730998343415000


@pytest.mark.parametrize("qty", ["79228688.39959579", "77725482.93973238"])
def test_a_quantity_between_2_52_and_2_53_units_keeps_its_digits_too(qty):
    """Below 2**53 units of the last decimal a float holds the value, but prints it back right
    only below 2**52: 79228688.39959579 (8 decimals) comes back as ...39959580."""
    s = Session()
    assert not isinstance(s.send("snapshot", BIDS, ASKS), Resync)
    s.ref.apply([(29430.2, Decimal(qty))], [])
    text = (
        '{"channel":"book","type":"update","data":[{"symbol":"BTC/USD","bids":'
        f'[{{"price":29430.2,"qty":{qty}}}],"asks":[],"checksum":{s.ref.checksum()},'
        '"timestamp":"2023-07-30T15:29:58.343415Z"}]}'
    )
    (upd,) = s.plugin.parse(text.encode(), 0)
    assert upd.bids == [("29430.2", qty)]
    assert not isinstance(s.m.feed(upd), Resync) and s.m.sync.state == "live"


def test_a_quantity_a_float_cannot_carry_keeps_every_digit_for_the_checksum():
    """exchanges.md 3.2: parse with Decimal. 1000000000.12345678 (qty, 8 decimals) is above
    2**53 / 10**8: as a float it prints 1000000000.12345684 and the checksum would fail."""
    s = Session()
    assert not isinstance(s.send("snapshot", BIDS, ASKS), Resync)
    big = Decimal("1000000000.12345678")
    s.ref.apply([(29430.2, big)], [])
    crc = s.ref.checksum()
    text = (
        '{"channel":"book","type":"update","data":[{"symbol":"BTC/USD","bids":'
        '[{"price":29430.2,"qty":1000000000.12345678}],"asks":[],"checksum":CRC,'
        '"timestamp":"2023-07-30T15:29:58.343415Z"}]}'
    ).replace("CRC", str(crc))
    (upd,) = s.plugin.parse(text.encode(), 0)
    assert upd.bids == [("29430.2", "1000000000.12345678")]
    assert not isinstance(s.m.feed(upd), Resync)
    assert s.m.sync.state == "live"
