"""OrderBook: set/delete/top-N/trim, and a hypothesis test against a plain dict model."""

from __future__ import annotations

import math

from hypothesis import given, settings
from hypothesis import strategies as st

from common.book import OrderBook, best_prices, nth_price

prices = st.integers(min_value=1, max_value=400).map(lambda i: i / 4)
sizes = st.sampled_from([0.0, 0.0, 0.5, 1.0, 2.25, 10.0])
ops = st.lists(st.tuples(st.booleans(), prices, sizes), max_size=300)


def test_set_replace_delete_and_unknown_delete():
    b = OrderBook()
    b.set_level(True, 100.0, 1.0)
    b.set_level(True, 101.0, 2.0)
    b.set_level(True, 100.0, 3.0)
    b.set_level(False, 102.0, 1.0)
    b.set_level(False, 999.0, 0.0)  # deleting an unknown level is normal
    assert b.best_bid() == (101.0, 2.0) and b.best_ask() == (102.0, 1.0)
    b.set_level(True, 101.0, 0.0)
    assert b.best_bid() == (100.0, 3.0)
    assert b.top(5) == ([(100.0, 3.0)], [(102.0, 1.0)])
    assert not b.is_crossed()
    b.set_level(True, 102.0, 1.0)
    assert b.is_crossed()


def test_raw_levels_keep_exchange_strings():
    b = OrderBook(keep_raw=True)
    b.apply_raw([("30233.6", "3")], [("30238.8", "2"), ("30240", "1")])
    assert b.top_raw(1) == ([("30233.6", "3")], [("30238.8", "2")])
    b.apply_raw([], [("30238.8", "0")])
    assert b.top_raw(5)[1] == [("30240", "1")]


def test_truncate_reports_removed_levels_and_trim_has_hysteresis():
    b = OrderBook()
    b.apply([(float(p), 1.0) for p in range(1, 31)], [(float(p), 1.0) for p in range(31, 61)])
    gone_bids, gone_asks = b.truncate(25)
    assert sorted(gone_bids) == [1.0, 2.0, 3.0, 4.0, 5.0]
    assert sorted(gone_asks) == [56.0, 57.0, 58.0, 59.0, 60.0]
    b = OrderBook()
    b.apply([(float(p), 1.0) for p in range(1, 101)], [])
    assert not b.trim(10)  # 100 levels = 10 x 10: not past the threshold yet
    b.set_level(True, 0.5, 1.0)
    assert b.trim(10)
    assert len(b.bids) == 10 and b.best_bid() == (100.0, 1.0)


@settings(max_examples=300, deadline=None)
@given(ops, st.integers(min_value=1, max_value=20))
def test_matches_a_dict_model(operations, n):
    book = OrderBook()
    model = {True: {}, False: {}}
    for is_bid, price, size in operations:
        book.set_level(is_bid, price, size)
        if size == 0:
            model[is_bid].pop(price, None)
        else:
            model[is_bid][price] = size
    want_bids = sorted(model[True].items(), reverse=True)[:n]
    want_asks = sorted(model[False].items())[:n]
    assert book.top(n) == (want_bids, want_asks)
    assert len(book) == len(model[True]) + len(model[False])
    assert book.best_bid() == (want_bids[0] if want_bids else None)
    assert book.best_ask() == (want_asks[0] if want_asks else None)


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.tuples(st.booleans(), prices, sizes), min_size=20, max_size=300),
    st.integers(min_value=0, max_value=25),
    st.one_of(st.none(), prices),
    st.sampled_from([1, 2, 1000]),
)
def test_best_prices_and_nth_price_match_a_sorted_model(operations, n, limit, load):
    """The sublist walks agree with a sorted list, also across sortedcontainers' sublists
    (a load of 1 or 2 splits a side of more than 2 or 4 levels into sublists)."""
    book = OrderBook()
    book.bids._list._reset(load)
    book.asks._list._reset(load)
    for is_bid, price, size in operations:
        book.set_level(is_bid, price, size)
    bids = sorted(book.bids, reverse=True)
    asks = sorted(book.asks)
    want_bids = [p for p in bids[:n] if limit is None or p >= limit]
    want_asks = [p for p in asks[:n] if limit is None or p <= limit]
    assert best_prices(book.bids, n, True, limit) == want_bids
    assert best_prices(book.asks, n, False, limit) == want_asks
    if n >= 1:
        assert nth_price(book.bids, n, True) == (bids[n - 1] if len(bids) >= n else -math.inf)
        assert nth_price(book.asks, n, False) == (asks[n - 1] if len(asks) >= n else math.inf)
    assert book.top(n) == (
        [(p, book.bids[p]) for p in bids[:n]],
        [(p, book.asks[p]) for p in asks[:n]],
    )
