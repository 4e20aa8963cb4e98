"""Consolidation (services/book/consolidate.py) against brute-force merges of full venue books."""

from __future__ import annotations

import math
from dataclasses import dataclass

from hypothesis import given, settings
from hypothesis import strategies as st

from common.book import OrderBook
from common.symbols import group_of, parse_market, unit_of
from services.book.consolidate import (
    Group,
    Source,
    bbo_fields,
    convert,
    crossed_size,
    is_crossed,
    merge_side,
)
from services.book.mirror import LIVE, STALE, SYNCING, Mirror

GROUPS = (("USD", "USDT", "USDC"),)


@dataclass
class Health:
    down: bool = False


# -- strategies: uncrossed venue books on a 0.5 tick grid, sizes with 3 decimals ----------------
@st.composite
def venue_book(draw: st.DrawFn, max_levels: int = 12) -> OrderBook:
    mid = draw(st.integers(200, 400))
    bid_ticks = draw(st.sets(st.integers(1, mid - 1), max_size=max_levels))
    ask_ticks = draw(st.sets(st.integers(mid + 1, 600), max_size=max_levels))
    size = st.integers(1, 100_000).map(lambda i: i / 1000)
    book = OrderBook()
    book.apply(
        [(t * 0.5, draw(size)) for t in bid_ticks], [(t * 0.5, draw(size)) for t in ask_ticks]
    )
    return book


rates = st.one_of(st.just(1.0), st.integers(9_000, 11_000).map(lambda i: i / 10_000))


def brute_merge(
    books: dict[str, tuple[OrderBook, float]], n: int, bids: bool
) -> list[tuple[float, dict[str, float]]]:
    """Every level of every full book, converted, summed per venue at equal prices."""
    acc: dict[float, dict[str, float]] = {}
    for venue, (book, rate) in books.items():
        side = book.bids if bids else book.asks
        for price, size in side.items():
            per = acc.setdefault(convert(price, rate), {})
            per[venue] = per.get(venue, 0.0) + size
    return [(p, acc[p]) for p in sorted(acc, reverse=bids)[:n]]


def assert_levels_equal(got: list, want: list) -> None:
    assert [lv[0] for lv in got] == [p for p, _ in want]
    for (price, total, per), (_, want_per) in zip(got, want, strict=True):
        assert set(per) == set(want_per), price
        for venue, size in want_per.items():
            assert math.isclose(per[venue], size, rel_tol=1e-12), (price, venue)
        assert math.isclose(total, sum(want_per.values()), rel_tol=1e-12), price


@settings(max_examples=300, deadline=None)
@given(
    st.dictionaries(
        st.sampled_from(["binance", "bybit", "kraken", "coinbase", "okx"]),
        st.tuples(venue_book(), rates),
        max_size=5,
    ),
    st.integers(1, 15),
)
def test_merge_equals_brute_force(books: dict[str, tuple[OrderBook, float]], n: int) -> None:
    sources = [Source(v, book, rate) for v, (book, rate) in books.items()]
    for bids in (True, False):
        assert_levels_equal(merge_side(sources, n, bids), brute_merge(books, n, bids))


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["binance", "bybit", "kraken", "coinbase"]),
            st.sampled_from(["USDT", "USD", "USDC"]),
            venue_book(),
            st.sampled_from([LIVE, LIVE, SYNCING, STALE]),
            st.booleans(),  # venue down
        ),
        max_size=6,
        unique_by=lambda t: (t[0], t[1]),
    ),
    st.fixed_dictionaries({"USDT": rates, "USDC": rates}),
    st.integers(1, 10),
)
def test_group_drops_excluded_venues_and_converts(markets, quote_rates, n) -> None:
    """Random drop-outs (sync states, venues down) and per-quote rates: depth.all is the merge
    of the included markets only, and every market is accounted for."""
    group = Group("BTC-USD", "USD")
    health: dict[str, Health] = {}
    for venue, quote, book, sync, down in markets:
        h = health.setdefault(venue, Health())
        h.down = h.down or down
        m = Mirror(venue, f"BTC-{quote}", h, keep=1000, market=parse_market(venue, f"BTC-{quote}"))
        m.book = book
        m.sync = sync
        group.add(m)
    rate_table = {"USD": 1.0, **quote_rates}

    def rate_of(m: Mirror) -> tuple[float, dict]:
        q = m.market.quote
        return rate_table[q], {"quote": q, "rate": rate_table[q], "source": "test"}

    body = group.depth_body(rate_of, n)
    included = [m for m in group.members.values() if m.live]
    # brute force per venue: a venue with two included markets sums them
    acc_books: dict[str, list[tuple[OrderBook, float]]] = {}
    for m in included:
        acc_books.setdefault(m.venue, []).append((m.book, rate_table[m.market.quote]))
    for bids, key in ((True, "bids"), (False, "asks")):
        acc: dict[float, dict[str, float]] = {}
        for venue, lst in acc_books.items():
            for book, rate in lst:
                for price, size in (book.bids if bids else book.asks).items():
                    per = acc.setdefault(convert(price, rate), {})
                    per[venue] = per.get(venue, 0.0) + size
        want = [(p, acc[p]) for p in sorted(acc, reverse=bids)[:n]]
        assert_levels_equal(body[key], want)
    assert set(body["venues"]) == {m.venue for m in included}
    assert set(body["conversion"]) == {m.market.key for m in included}
    accounted = set(body["venues"])
    for key, state in body["excluded"].items():
        venue = key.split(":")[0]
        accounted.add(venue)
        assert state in ("syncing", "stale", "down")
    assert accounted == {m.venue for m in group.members.values()}


def test_one_venue_consolidated_equals_venue_book() -> None:
    book = OrderBook()
    book.apply([(100.0, 1.5), (99.5, 2.0)], [(100.5, 0.25), (101.0, 3.0)])
    m = Mirror("binance", "BTC-USDT", Health(), 1000, parse_market("binance", "BTC-USDT"))
    m.book, m.sync = book, LIVE
    group = Group("BTC-USD", "USD")
    group.add(m)
    body = group.depth_body(lambda m: (1.0, {"quote": "USDT", "rate": 1.0, "source": "1:1"}), 50)
    assert body["bids"] == [[100.0, 1.5, {"binance": 1.5}], [99.5, 2.0, {"binance": 2.0}]]
    assert body["asks"] == [[100.5, 0.25, {"binance": 0.25}], [101.0, 3.0, {"binance": 3.0}]]
    assert body["venues"] == ["binance"] and body["excluded"] == {}
    assert body["conversion"] == {
        "binance:BTC-USDT": {"quote": "USDT", "rate": 1.0, "source": "1:1"}
    }


# -- bbo.all: crossed flag and size -----------------------------------------------------------
def min_cut_crossed_size(books: list[tuple[OrderBook, float]]) -> float:
    """Max matchable volume via max-flow = min-cut: for a threshold t (no bid above t stays
    uncut), the cut is the bids above t plus the asks at or below t."""
    bids = [(convert(p, r), s) for b, r in books for p, s in b.bids.items()]
    asks = [(convert(p, r), s) for b, r in books for p, s in b.asks.items()]
    thresholds = [-math.inf] + [p for p, _ in bids]
    return min(
        sum(s for p, s in bids if p > t) + sum(s for q, s in asks if q <= t) for t in thresholds
    )


def brute_crossed(books: list[tuple[OrderBook, float]]) -> bool:
    return any(
        convert(pb, rb) >= convert(pa, ra)
        for i, (bi, rb) in enumerate(books)
        for j, (bj, ra) in enumerate(books)
        if i != j
        for pb in bi.bids
        for pa in bj.asks
    )


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(venue_book(8), rates), max_size=4))
def test_crossed_flag_and_size_brute_force(books: list[tuple[OrderBook, float]]) -> None:
    sources = [Source(f"v{i}", b, r) for i, (b, r) in enumerate(books)]
    assert is_crossed(sources) == brute_crossed(books)
    want = min_cut_crossed_size(books) if brute_crossed(books) else 0.0
    assert math.isclose(crossed_size(sources, 50), want, rel_tol=1e-9, abs_tol=1e-12)
    fields = bbo_fields(sources, 50)
    assert fields["crossed"] == brute_crossed(books)
    assert math.isclose(fields["crossed_size"], want, rel_tol=1e-9, abs_tol=1e-12)
    depth_bid = merge_side(sources, 1, True)
    if depth_bid:
        price, total, per = depth_bid[0]
        assert fields["bid"][:2] == [price, total]
        assert per[fields["bid"][2]] == max(per.values())
    else:
        assert fields["bid"] is None


def _book(bids: list[tuple[float, float]], asks: list[tuple[float, float]]) -> OrderBook:
    b = OrderBook()
    b.apply(bids, asks)
    return b


def test_crossed_examples() -> None:
    a = Source("binance", _book([(101.0, 1.0), (99.0, 5.0)], [(102.0, 1.0)]))
    b = Source("kraken", _book([(98.0, 1.0)], [(100.0, 2.0), (100.5, 4.0)]))
    f = bbo_fields([a, b], 50)
    assert f["crossed"] is True
    assert f["crossed_size"] == 1.0  # only binance's 101 bid reaches kraken's asks
    assert f["bid"] == [101.0, 1.0, "binance"] and f["ask"] == [100.0, 2.0, "kraken"]
    assert f["spread_bps"] < 0
    # locked (bid == ask across venues) counts as crossed
    locked = bbo_fields(
        [
            Source("x", _book([(100.0, 3.0)], [(101.0, 1.0)])),
            Source("y", _book([(99.0, 1.0)], [(100.0, 2.0)])),
        ],
        50,
    )
    assert locked["crossed"] is True and locked["crossed_size"] == 2.0
    # not crossed
    calm = bbo_fields(
        [
            Source("x", _book([(99.0, 3.0)], [(101.0, 1.0)])),
            Source("y", _book([(99.0, 1.0)], [(100.0, 2.0)])),
        ],
        50,
    )
    assert calm["crossed"] is False and calm["crossed_size"] == 0.0
    assert calm["bid"] == [99.0, 4.0, "x"] and calm["bid_venues"] == {"x": 3.0, "y": 1.0}
    # a greedy best-vs-best match would find 1 here; the true matchable volume is 2
    g = [
        Source("a", _book([(101.0, 1.0)], [(103.0, 1.0)])),
        Source("b", _book([(100.0, 5.0)], [(102.0, 1.0)])),
        Source("c", _book([(90.0, 1.0)], [(99.0, 1.0), (100.5, 1.0)])),
    ]
    assert crossed_size(g, 50) == 2.0


def test_group_names() -> None:
    assert group_of(parse_market("binance", "BTC-USDT"), GROUPS) == "BTC-USD"
    assert group_of(parse_market("kraken", "BTC-USD"), GROUPS) == "BTC-USD"
    assert group_of(parse_market("bybit", "ETH-USDT-PERP"), GROUPS) == "ETH-USD-PERP"
    assert group_of(parse_market("kraken", "BTC-EUR"), GROUPS) == "BTC-EUR"
    assert unit_of("USDC", (("USDT", "USDC"),)) == "USDT"
    assert parse_market("x", "BTCUSDT") is None and parse_market("x", "A-B-C") is None
