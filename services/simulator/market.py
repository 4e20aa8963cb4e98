"""The simulated market: a shared random-walk mid per base asset and one L2 book per venue market.

Every venue's book is independent (its own random stream and a small constant offset) but tracks
the shared mid of its base asset: levels that would cross the moving mid are removed, and the best
quotes are refreshed when they drift away, so books are never crossed and keep a spread of a few
ticks. Everything is deterministic given the seed and the order of calls.
"""

from __future__ import annotations

import math
import random
import zlib

from sortedcontainers import SortedDict

from .assets import E8, QUOTE_USD, START_PRICES, Instrument
from .book import BookUpdate, SimBook, TradeEvent

MIN_LEVELS = 100  # refill a side below this many levels (default book; 2/3 of its levels)
MAX_LEVELS = 200  # trim the farthest levels above this (default book; 4/3 of its levels)
INITIAL_LEVELS = 150
MID_VOL = 1e-5  # relative standard deviation of one mid step (one step per 0.1 s by default)
REQUOTE_GAP = 3  # a best quote farther than this many ticks from the mid is refreshed
NEAR_MEAN = 6.0  # mean distance (ticks) of near-the-top adds
NOTIONAL_USD = 3000.0  # median notional of a level


def stable_seed(*parts: object) -> int:
    """A seed derived from parts that is stable across runs (unlike ``hash``)."""
    return zlib.crc32(":".join(map(str, parts)).encode())


VENUE_OFFSET = 3e-7  # relative to the price


class Market:
    """Shared mids plus every (venue, symbol) book."""

    def __init__(self, seed: int) -> None:
        self.seed = seed
        self.mids: dict[str, float] = {}  # base -> USD mid
        self._mid_rng: dict[str, random.Random] = {}
        self.books: dict[tuple[str, str], SimBook] = {}
        self._rngs: dict[tuple[str, str], random.Random] = {}
        # per book: the least span of far adds (ticks), and the (min, max) levels of its bid
        # and ask sides, 2/3 and 4/3 of what each side got at creation (100-200 by default)
        self._span: dict[tuple[str, str], float] = {}
        self._bounds: dict[tuple[str, str], tuple[int, int, int, int]] = {}

    # ---- mids -----------------------------------------------------------------------------

    def step_mids(self, steps: int = 1) -> None:
        """Advance every base asset's mid by ``steps`` random-walk steps."""
        for base, rng in self._mid_rng.items():
            mid = self.mids[base]
            for _ in range(steps):
                mid *= math.exp(rng.gauss(0.0, MID_VOL))
            self.mids[base] = mid

    def ref_ticks(self, book: SimBook) -> float:
        """The book's fair mid in its own ticks (shared mid, quote conversion, venue offset)."""
        inst = book.inst
        price = self.mids[inst.base] / QUOTE_USD[inst.quote]
        return price * E8 / inst.tick_e8 + book.offset

    # ---- books ----------------------------------------------------------------------------

    def add_book(
        self, inst: Instrument, first_id: int | None = None, levels: int = INITIAL_LEVELS
    ) -> SimBook:
        """Create the book of one venue market with ~``levels`` levels a side around the mid
        (default 150; a deep book, e.g. for a venue whose snapshot is the whole book, asks for
        more; a side that has no room for them, like the bids of a cheap asset, gets fewer).
        Each side is then kept between 2/3 and 4/3 of what it got."""
        key = (inst.venue, inst.symbol)
        if key in self.books:
            return self.books[key]
        if inst.base not in self.mids:
            self.mids[inst.base] = START_PRICES[inst.base]
            self._mid_rng[inst.base] = random.Random(stable_seed(self.seed, "mid", inst.base))
        rng = random.Random(stable_seed(self.seed, inst.venue, inst.symbol))
        if first_id is None:
            first_id = rng.randrange(10**9, 5 * 10**10)
        book = SimBook(inst, first_id, rng.randrange(10**6, 10**9), 0.0)
        # venues disagree by a fraction of a basis point: enough for an occasional cross-venue
        # crossed market, as arbitrage allows in reality, not a permanent one
        book.offset = rng.uniform(-VENUE_OFFSET, VENUE_OFFSET) * self.ref_ticks(book)
        self.books[key] = book
        self._rngs[key] = rng
        self._span[key] = max(300.0, 2.0 * levels)
        ref = self.ref_ticks(book)
        bid_max, ask_min = math.ceil(ref) - 1, math.floor(ref) + 1
        for is_bid in (True, False):
            for _ in range(levels * 3):
                if len(book.bids if is_bid else book.asks) >= levels:
                    break
                self._add(book, rng, is_bid, bid_max, ask_min, self._far(book, rng))
        nb, na = min(levels, len(book.bids)), min(levels, len(book.asks))
        self._bounds[key] = (nb * 2 // 3, nb * 4 // 3, na * 2 // 3, na * 4 // 3)
        book.discard_changes()
        return book

    def update(self, book: SimBook, ts_ms: int, n_trades: int = 0) -> BookUpdate:
        """Build one book event: track the mid, ``n_trades`` trades, then 1-5 level changes."""
        key = (book.inst.venue, book.inst.symbol)
        rng, (min_bids, max_bids, min_asks, max_asks) = self._rngs[key], self._bounds[key]
        ref = self.ref_ticks(book)
        bid_max, ask_min = math.ceil(ref) - 1, math.floor(ref) + 1
        bids, asks = book.bids, book.asks
        while bids and bids.peekitem(-1)[0] > bid_max:
            book.set(True, bids.peekitem(-1)[0], 0)
        while asks and asks.peekitem(0)[0] < ask_min:
            book.set(False, asks.peekitem(0)[0], 0)
        trades: list[TradeEvent] = []
        for _ in range(n_trades):
            self._trade(book, rng, ts_ms, trades)
        for _ in range(rng.randint(1, 5)):
            self._op(book, rng, bid_max, ask_min)
        # market makers keep the best quotes near the mid
        if not bids or bids.peekitem(-1)[0] < bid_max - REQUOTE_GAP:
            self._add(book, rng, True, bid_max, ask_min, rng.randint(0, 2))
        if not asks or asks.peekitem(0)[0] > ask_min + REQUOTE_GAP:
            self._add(book, rng, False, bid_max, ask_min, rng.randint(0, 2))
        for is_bid, side, low, high in (
            (True, bids, min_bids, max_bids),
            (False, asks, min_asks, max_asks),
        ):
            for _ in range(3 * MIN_LEVELS):  # bounded work per event, even for a deep book
                if len(side) >= low:
                    break
                self._add(book, rng, is_bid, bid_max, ask_min, self._far(book, rng))
            while len(side) > high:
                book.set(is_bid, side.peekitem(0 if is_bid else -1)[0], 0)
        if not book.pending:  # every op was a no-op: republish the best bid as it is
            price, qty = bids.peekitem(-1)
            book.set(True, price, qty)
        update = book.commit(ts_ms, trades)
        assert update is not None
        return update

    # ---- building blocks ------------------------------------------------------------------

    def _far(self, book: SimBook, rng: random.Random) -> int:
        """A distance from the top, log-uniform up to ~0.5% of the price (at least 300 ticks,
        and twice the book's initial levels, so a deep book fits)."""
        span = max(self._span[(book.inst.venue, book.inst.symbol)], self.ref_ticks(book) * 0.005)
        return int(math.exp(rng.uniform(0.0, math.log(span))))

    def _qty(self, book: SimBook, rng: random.Random, price: int) -> int:
        inst = book.inst
        notional_quote = NOTIONAL_USD / QUOTE_USD[inst.quote]
        lots = notional_quote * E8 / (max(price, 1) * inst.tick_e8) * E8 / inst.step_e8
        return max(1, int(lots * rng.lognormvariate(0.0, 1.2)))

    def _add(
        self, book: SimBook, rng: random.Random, is_bid: bool, bid_max: int, ask_min: int, d: int
    ) -> None:
        price = bid_max - d if is_bid else ask_min + d
        if price >= 1:
            book.set(is_bid, price, self._qty(book, rng, price))

    def _pick(self, side: SortedDict, rng: random.Random, is_bid: bool) -> int:
        """A level price, biased toward the top of the book."""
        idx = min(len(side) - 1, int(rng.expovariate(1 / 15.0)))
        return side.peekitem(-1 - idx if is_bid else idx)[0]

    def _op(self, book: SimBook, rng: random.Random, bid_max: int, ask_min: int) -> None:
        is_bid = rng.random() < 0.5
        side = book.bids if is_bid else book.asks
        r = rng.random()
        if not side or r < 0.45:
            near = rng.random() < 0.7
            d = int(rng.expovariate(1 / NEAR_MEAN)) if near else self._far(book, rng)
            self._add(book, rng, is_bid, bid_max, ask_min, d)
        elif r < 0.75:
            book.set(is_bid, self._pick(side, rng, is_bid), 0)
        else:
            price = self._pick(side, rng, is_bid)
            book.set(is_bid, price, max(1, int(side[price] * rng.uniform(0.3, 2.0))))

    def _trade(self, book: SimBook, rng: random.Random, ts_ms: int, out: list[TradeEvent]) -> None:
        """A taker order against the top: a partial fill, or a sweep of 1-2 levels."""
        taker_sell = rng.random() < 0.5
        side = book.bids if taker_sell else book.asks
        levels = 2 if rng.random() < 0.1 else 1
        for n in range(levels):
            if not side:
                return
            price, qty = side.peekitem(-1 if taker_sell else 0)
            full = n < levels - 1 or rng.random() < 0.15
            take = qty if full else max(1, int(qty * rng.uniform(0.02, 0.9)))
            take = min(take, qty)
            out.append(TradeEvent(book.next_trade_id, price, take, taker_sell, ts_ms))
            book.next_trade_id += 1
            book.set(taker_sell, price, qty - take)
