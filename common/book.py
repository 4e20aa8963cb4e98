"""A price-level order book on sortedcontainers.

Both sides are ``SortedDict`` keyed by float price in ascending order; the best bid is the last
bid key, the best ask the first ask key. A float is exact enough here: every exchange price has
at most 15 significant digits, so ``float(s)`` round-trips to the exchange's digits. Where a
venue checksum needs the exchange's own strings, ``keep_raw=True`` keeps them beside the floats.
"""

from __future__ import annotations

import math
from bisect import bisect_left, bisect_right
from collections.abc import Iterable

from sortedcontainers import SortedDict

Level = tuple[float, float]


# ``SortedDict`` keeps its keys in a ``SortedList`` of sorted sublists (``_list._lists``), and its
# own slicing, indexing and bisection are pure Python. Reading the best levels is on the path of
# every message, so the two functions below walk the sublists directly, with C slicing and
# ``bisect``: a third to a half of the cost.
def best_prices(side: SortedDict, n: int, bids: bool, limit: float | None = None) -> list[float]:
    """The best ``n`` prices of one side of a book, best first; with ``limit``, only those at
    or better than it (bids >= limit, asks <= limit)."""
    out: list[float] = []
    if n <= 0:
        return out
    if bids:
        for sub in reversed(side._list._lists):
            want = n - len(out)
            start = len(sub) - want if len(sub) > want else 0
            if limit is not None and sub[start] < limit:
                part = sub[bisect_left(sub, limit, start) :]
                part.reverse()
                out += part
                break
            part = sub[start:]
            part.reverse()
            out += part
            if len(out) >= n:
                break
    else:
        for sub in side._list._lists:
            want = n - len(out)
            end = want if len(sub) > want else len(sub)
            if limit is not None and sub[end - 1] > limit:
                out += sub[: bisect_right(sub, limit, 0, end)]
                break
            out += sub[:end]
            if len(out) >= n:
                break
    return out


def nth_price(side: SortedDict, n: int, bids: bool) -> float:
    """The ``n``-th best price of one side (n >= 1); -inf for bids, +inf for asks, when the side
    has fewer levels."""
    if bids:
        for sub in reversed(side._list._lists):
            if n <= len(sub):
                return sub[-n]
            n -= len(sub)
        return -math.inf
    for sub in side._list._lists:
        if n <= len(sub):
            return sub[n - 1]
        n -= len(sub)
    return math.inf


class OrderBook:
    __slots__ = ("asks", "bids", "keep_raw", "raw_asks", "raw_bids")

    def __init__(self, keep_raw: bool = False) -> None:
        self.bids: SortedDict = SortedDict()
        self.asks: SortedDict = SortedDict()
        self.keep_raw = keep_raw
        self.raw_bids: dict[float, tuple[str, str]] = {}
        self.raw_asks: dict[float, tuple[str, str]] = {}

    def __len__(self) -> int:
        return len(self.bids) + len(self.asks)

    def clear(self) -> None:
        self.bids.clear()
        self.asks.clear()
        self.raw_bids.clear()
        self.raw_asks.clear()

    def set_level(self, is_bid: bool, price: float, size: float) -> None:
        """Insert or replace a level; size 0 deletes it (deleting an unknown level is normal)."""
        side = self.bids if is_bid else self.asks
        if size == 0.0:
            side.pop(price, None)
        else:
            side[price] = size

    def apply_raw(self, bids: Iterable[tuple[str, str]], asks: Iterable[tuple[str, str]]) -> None:
        """Apply levels given as the exchange's strings, in array order."""
        for is_bid, levels, raw in ((True, bids, self.raw_bids), (False, asks, self.raw_asks)):
            side = self.bids if is_bid else self.asks
            for px, sz in levels:
                price = float(px)
                size = float(sz)
                if size == 0.0:
                    side.pop(price, None)
                    if self.keep_raw:
                        raw.pop(price, None)
                else:
                    side[price] = size
                    if self.keep_raw:
                        raw[price] = (px, sz)

    def replace_raw(self, bids: Iterable[tuple[str, str]], asks: Iterable[tuple[str, str]]) -> None:
        self.clear()
        self.apply_raw(bids, asks)

    def apply(self, bids: Iterable[Level], asks: Iterable[Level]) -> None:
        for price, size in bids:
            self.set_level(True, price, size)
        for price, size in asks:
            self.set_level(False, price, size)

    def replace(self, bids: Iterable[Level], asks: Iterable[Level]) -> None:
        self.clear()
        self.apply(bids, asks)

    # ``SortedDict.peekitem`` is pure Python; the last key of its sorted list's last sublist is
    # the same thing at a quarter of the cost, and this is called on every message.
    def best_bid(self) -> Level | None:
        bids = self.bids
        if not bids:
            return None
        price = bids._list._lists[-1][-1]
        return (price, bids[price])

    def best_ask(self) -> Level | None:
        asks = self.asks
        if not asks:
            return None
        price = asks._list._lists[0][0]
        return (price, asks[price])

    def nth_prices(self, n: int) -> tuple[float, float]:
        """The n-th best bid and ask prices (n >= 1); -inf / +inf for a side with fewer levels."""
        return nth_price(self.bids, n, True), nth_price(self.asks, n, False)

    def is_crossed(self) -> bool:
        return (
            bool(self.bids)
            and bool(self.asks)
            and self.bids.peekitem(-1)[0] >= self.asks.peekitem(0)[0]
        )

    def top_bids(self, n: int) -> list[Level]:
        prices = best_prices(self.bids, n, True)
        return list(zip(prices, map(self.bids.__getitem__, prices), strict=True))

    def top_asks(self, n: int) -> list[Level]:
        prices = best_prices(self.asks, n, False)
        return list(zip(prices, map(self.asks.__getitem__, prices), strict=True))

    def top(self, n: int) -> tuple[list[Level], list[Level]]:
        return self.top_bids(n), self.top_asks(n)

    def top_raw(self, n: int) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
        """Top n levels as the exchange's strings (needs keep_raw). Called on every update of a
        checksummed venue, so it reads prices off the key views without looking up sizes."""
        if n <= 0:
            return [], []
        raw_bids, raw_asks = self.raw_bids, self.raw_asks
        bids = [raw_bids[p] for p in best_prices(self.bids, n, True)]
        asks = [raw_asks[p] for p in best_prices(self.asks, n, False)]
        return bids, asks

    def truncate(self, depth: int) -> tuple[list[float], list[float]]:
        """Keep only the best ``depth`` levels a side (Kraken sends no deletes for levels that
        fall out of the subscribed depth). Returns the removed bid and ask prices, so that the
        deletes can be passed on to consumers of the book."""
        gone_bids: list[float] = []
        gone_asks: list[float] = []
        while len(self.bids) > depth:
            price, _ = self.bids.popitem(0)
            self.raw_bids.pop(price, None)
            gone_bids.append(price)
        while len(self.asks) > depth:
            price, _ = self.asks.popitem(-1)
            self.raw_asks.pop(price, None)
            gone_asks.append(price)
        return gone_bids, gone_asks

    def trim(self, keep: int, factor: int = 10) -> bool:
        """Bound memory with hysteresis: once a side holds more than ``factor * keep`` levels,
        cut it back to ``keep``. Returns True if anything was cut."""
        if len(self.bids) <= factor * keep and len(self.asks) <= factor * keep:
            return False
        if keep:
            self.truncate(keep)
        else:
            self.clear()
        return True
