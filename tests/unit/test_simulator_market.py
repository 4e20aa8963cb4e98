"""The simulated market: books never cross, stay deep, track the mid, and their events replay."""

from __future__ import annotations

import statistics

from services.simulator.assets import START_PRICES, fmt8, fmt_dec, fmt_min, make_instrument
from services.simulator.book import BookUpdate
from services.simulator.market import MAX_LEVELS, Market

STEPS = 10_000


def make_market(seed: int = 7) -> tuple[Market, list]:
    market = Market(seed)
    books = [
        market.add_book(make_instrument("binance", f"{b}USDT", b, "USDT")) for b in START_PRICES
    ]
    return market, books


def run(market: Market, books: list, steps: int, check=None) -> list[BookUpdate]:
    updates = []
    for i in range(steps):
        if i % 9 == 0:
            market.step_mids()
        book = books[(i * 7) % len(books)]
        shadow = (dict(book.bids), dict(book.asks)) if check else None
        update = market.update(book, 1_700_000_000_000 + i, n_trades=1 if i % 3 == 0 else 0)
        if check:
            check(book, update, shadow)
        updates.append(update)
    return updates


def test_books_never_cross_stay_deep_and_ids_chain():
    market, books = make_market()
    last = {b.inst.symbol: b.last_id for b in books}

    def check(book, update, _shadow):
        bb, ba = book.best_bid()[0], book.best_ask()[0]
        assert bb < ba, f"{book.inst.symbol} crossed: {bb} >= {ba}"
        assert 50 <= len(book.bids) <= MAX_LEVELS and 50 <= len(book.asks) <= MAX_LEVELS
        assert update.first_id == last[book.inst.symbol] + 1
        assert update.last_id == update.first_id + len(update.bids) + len(update.asks) - 1
        last[book.inst.symbol] = update.last_id
        assert all(p > 0 and q >= 0 for p, q in update.bids + update.asks)

    run(market, books, STEPS, check)


def test_events_replay_to_the_same_book():
    """Absolute sizes with 0 = delete: applying the events to the initial book gives the book."""
    market, books = make_market(3)
    replicas = {b.inst.symbol: (dict(b.bids), dict(b.asks)) for b in books}
    for update in run(market, books, 3000):
        bids, asks = replicas[update.inst.symbol]
        for side, levels in ((bids, update.bids), (asks, update.asks)):
            for price, qty in levels:
                if qty:
                    side[price] = qty
                else:
                    side.pop(price, None)
    for book in books:
        assert replicas[book.inst.symbol] == (dict(book.bids), dict(book.asks))


def test_trades_take_liquidity_from_the_top():
    market, books = make_market(5)
    seen = 0

    def check(book, update, shadow):
        nonlocal seen
        changed = {(True, p): q for p, q in update.bids} | {(False, p): q for p, q in update.asks}
        for trade in update.trades:
            seen += 1
            is_bid = trade.taker_sell  # a taker sell hits the bids
            before = shadow[0] if is_bid else shadow[1]
            assert trade.price in before and 0 < trade.qty <= before[trade.price]
            assert (is_bid, trade.price) in changed
            better = [p for p in before if (p > trade.price if is_bid else p < trade.price)]
            # every better level was taken first (deleted; a later add may reuse the price)
            assert all((is_bid, p) in changed for p in better), "trade skipped levels"

    run(market, books, 3000, check)
    assert seen > 500


def test_spread_is_a_few_ticks_and_books_track_the_shared_mid():
    market, books = make_market(11)
    spreads: list[int] = []

    def check(book, _update, _shadow):
        spreads.append(book.best_ask()[0] - book.best_bid()[0])
        mid = (book.best_ask()[0] + book.best_bid()[0]) / 2
        assert abs(mid - market.ref_ticks(book)) / market.ref_ticks(book) < 0.002

    run(market, books, 5000, check)
    assert statistics.median(spreads) <= 6
    by_base = {b.inst.base: b for b in books}
    btc = by_base["BTC"]
    price = btc.best_bid()[0] * btc.inst.tick_e8 / 1e8
    assert abs(price / market.mids["BTC"] - 1) < 0.002


def test_same_seed_same_market():
    a = run(*make_market(42), 2000)
    b = run(*make_market(42), 2000)
    c = run(*make_market(43), 2000)
    key = [(u.inst.symbol, u.first_id, u.bids, u.asks, [t.price for t in u.trades]) for u in a]
    assert key == [
        (u.inst.symbol, u.first_id, u.bids, u.asks, [t.price for t in u.trades]) for u in b
    ]
    assert key != [
        (u.inst.symbol, u.first_id, u.bids, u.asks, [t.price for t in u.trades]) for u in c
    ]


def test_venues_have_independent_books_around_one_mid():
    market = Market(1)
    a = market.add_book(make_instrument("binance", "ETHUSDT", "ETH", "USDT"))
    b = market.add_book(make_instrument("bybit", "ETHUSDT", "ETH", "USDT"))
    assert dict(a.bids) != dict(b.bids)
    for i in range(500):
        market.step_mids()
        market.update(a, i)
        market.update(b, i)
    mid_a = (a.best_bid()[0] + a.best_ask()[0]) / 2
    mid_b = (b.best_bid()[0] + b.best_ask()[0]) / 2
    assert abs(mid_a - mid_b) / mid_a < 0.001


def test_exact_formatting():
    assert fmt8(6_500_001_000_000) == "65000.01000000"
    assert fmt8(0) == "0.00000000"
    assert fmt8(1_000) == "0.00001000"
    assert fmt_dec(6_500_001_000_000, 2) == "65000.01"
    assert fmt_dec(12_000_000, 0) == "0"
    assert fmt_min(6_500_001_000_000) == "65000.01"
    assert fmt_min(200_000_000) == "2"
    inst = make_instrument("binance", "DOGEUSDT", "DOGE", "USDT")
    assert (inst.tick_e8, inst.step_e8, inst.price_decimals, inst.size_decimals) == (1000, E8, 5, 0)


E8 = 100_000_000
