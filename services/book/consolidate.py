"""Consolidated books: one per base asset and market kind across quote-equivalent markets.

The contract of ``depth.all.<GROUP>`` and ``bbo.all.<GROUP>``, written once:

* Group. Markets ``BASE-QUOTE[-PERP]`` whose quotes are in one ``[book] quote_groups`` entry
  form the group ``BASE-UNIT[-PERP]``, UNIT being the entry's first member (``symbols.py``).
* Inclusion. A market is included while its mirror is live: synced from a snapshot and its
  venue not down. Every other market of the group is listed in ``excluded`` with its state
  (``stale``, ``syncing`` or ``down``), keyed by venue (``venue:SYMBOL`` if the venue has more
  than one market in the group). ``venues`` lists the venues with an included market.
* Prices. A market quoted in the unit is taken as is. Another member's prices are multiplied by
  a rate: the mid of the book ``[book] reference`` names for that quote (``{USDT =
  "kraken:USDT-USD"}``; an inverse book ``USD-USDT`` gives 1/mid), else 1 ("1:1"). Converted
  prices are rounded to 15 significant digits (float noise only; order is kept). If the
  reference book is not live the last mid it had while live is used, marked ``"live": false``; before any mid
  was seen the rate is 1 with a ``"note"``. ``conversion`` states quote, rate and source for
  every included market. Sizes are base-asset quantities, never converted.
* Levels. A ``depth.all`` level is ``[price, total, {venue: size}]``: the sizes of every
  included market at that (converted) price, per venue and summed. The top N prices per side,
  bids descending, asks ascending. Only each market's best levels covering N distinct converted
  prices are read: they hold everything in the consolidated top N, so the result is exactly the
  merge of the full books. With one venue it is that venue's book.
* BBO. ``bid = [price, total size at it, venue with the largest size there (ties: by name)]``,
  likewise ``ask``; ``bid_venues``/``ask_venues`` give each venue's size at those prices;
  ``spread_bps = (ask - bid) / mid * 1e4`` (negative when crossed). ``crossed`` is true when a
  market's bid is >= another market's ask (a locked market counts). ``crossed_size`` is the
  base quantity that could trade at crossing prices among the included markets' top N levels:
  the largest volume matchable between bids and asks with bid price >= ask price, each level
  used up to its size (0 when not crossed). One market's levels never match each other, since
  ingest publishes only uncrossed books.
* Timing. ``depth.all`` is rebuilt at most once per ``depth_interval_ms`` per group (latest
  value, trailing publish), ``bbo.all`` on every change of an included market's top of book, of
  inclusion or of a rate, and while crossed on every change of an included market's top N
  levels (``crossed_size`` reads them); each is published only when its content changed. Their ``ts_exch``,
  ``ts_recv`` and ``ts_ingest_pub``: a ``bbo.all`` built on an included market's update carries
  that update's; any other build (a market back or leaving, a rate moving, ``depth.all``, a
  resync) those of the newest data among the included markets (the largest ``ts_recv``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from itertools import repeat
from operator import itemgetter
from typing import Any

from common.book import Level, OrderBook, best_prices, nth_price
from services.book.mirror import LIVE, STATE_RANK, Mirror, Timestamps

ConsLevel = list[Any]  # [price, total, {venue: size}]
RateFn = Callable[[Mirror], tuple[float, dict[str, Any]]]


def round15(x: float) -> float:
    return float(f"{x:.15g}")


def convert(price: float, rate: float) -> float:
    return price if rate == 1.0 else round15(price * rate)


@dataclass(slots=True)
class Source:
    """One included market: its venue, book and conversion rate to the group's unit."""

    venue: str
    book: OrderBook
    rate: float = 1.0


def iter_levels(book: OrderBook, bids: bool, rate: float = 1.0) -> Iterator[Level]:
    """Converted levels of one side, best first, lazily."""
    side = book.bids if bids else book.asks
    prices = reversed(side) if bids else iter(side)
    if rate == 1.0:
        return ((p, side[p]) for p in prices)
    return ((convert(p, rate), side[p]) for p in prices)


def best_levels(book: OrderBook, bids: bool, n: int, rate: float = 1.0) -> list[Level]:
    """Best-first converted levels covering ``n`` distinct converted prices (and every level
    that converts to the n-th price, should rounding make two prices equal)."""
    if rate == 1.0:
        return book.top_bids(n) if bids else book.top_asks(n)
    out: list[Level] = []
    distinct = 0
    last = None
    for conv, size in iter_levels(book, bids, rate):
        if conv != last:
            if distinct == n:
                break
            distinct += 1
            last = conv
        out.append((conv, size))
    return out


def best_level(book: OrderBook, bids: bool, rate: float = 1.0) -> Level | None:
    """The best converted price and the size there (levels that round to it summed)."""
    if rate == 1.0:
        return book.best_bid() if bids else book.best_ask()
    levels = best_levels(book, bids, 1, rate)
    if not levels:
        return None
    if len(levels) == 1:
        return levels[0]
    return (levels[0][0], round15(sum(s for _, s in levels)))


def _levels_within(
    src: Source, bids: bool, limit: float, n: int, converted: list[Level] | None = None
) -> tuple[list[float], list[float]]:
    """Prices and sizes, best first, of one side's levels priced at or better than ``limit``
    (bids >= it, asks <= it) among its top ``n`` (``best_levels``; ``converted``: those, if
    already read)."""
    if src.rate == 1.0:
        side = src.book.bids if bids else src.book.asks
        prices = best_prices(side, n, bids, limit)
        return prices, list(map(side.__getitem__, prices))
    levels = converted if converted is not None else best_levels(src.book, bids, n, src.rate)
    kept = [lv for lv in levels if (lv[0] >= limit if bids else lv[0] <= limit)]
    return [p for p, _ in kept], [size for _, size in kept]


def _cutoff(
    sources: list[Source], n: int, bids: bool, converted: list[list[Level] | None]
) -> float:
    """A price the consolidated top ``n`` cannot go beyond: the best of the markets' n-th best
    (converted) prices, since that market alone has n distinct prices at or better than it."""
    cutoff = -math.inf if bids else math.inf
    for src, levels in zip(sources, converted, strict=True):
        side = src.book.bids if bids else src.book.asks
        if len(side) < n:
            continue
        if levels is None:
            nth = nth_price(side, n, bids)
        else:
            if len({p for p, _ in levels}) < n:
                continue
            nth = levels[-1][0]
        if nth > cutoff if bids else nth < cutoff:
            cutoff = nth
    return cutoff


def merge_side(sources: Iterable[Source], n: int, bids: bool) -> list[ConsLevel]:
    """The top ``n`` consolidated levels of one side. Each market's levels are read only down
    to ``_cutoff``; they are merged by one sort (a merge of already sorted runs), then read
    best first until ``n`` distinct prices."""
    sources = list(sources)
    if n <= 0:
        return []
    # a converted market's best levels are read once, for the cutoff and the merge
    converted = [
        None if src.rate == 1.0 else best_levels(src.book, bids, n, src.rate) for src in sources
    ]
    cutoff = (
        _cutoff(sources, n, bids, converted)
        if len(sources) > 1
        else (-math.inf if bids else math.inf)
    )
    rows: list[tuple[float, str, float]] = []
    for src, levels in zip(sources, converted, strict=True):
        prices, sizes = _levels_within(src, bids, cutoff, n, levels)
        rows += zip(prices, repeat(src.venue), sizes, strict=False)
    rows.sort(key=itemgetter(0), reverse=bids)  # stable: markets keep their order at a price
    out: list[ConsLevel] = []
    last = None
    left = n
    per: dict[str, float] = {}
    shared: list[ConsLevel] = []  # levels of more than one market: totals summed at the end
    for price, venue, size in rows:
        if price != last:
            if not left:
                break
            left -= 1
            last = price
            per = {venue: size}
            out.append([price, size, per])
        else:
            if out[-1][1] is not None:
                out[-1][1] = None
                shared.append(out[-1])
            prev = per.get(venue)
            per[venue] = size if prev is None else round15(prev + size)
    for level in shared:
        per = level[2]
        level[1] = next(iter(per.values())) if len(per) == 1 else round15(sum(per.values()))
    return out


def _top_venue(per: dict[str, float]) -> str:
    return min(per.items(), key=lambda kv: (-kv[1], kv[0]))[0]


Tops = list[tuple[str, Level | None, Level | None]]  # (venue, best bid, best ask) per market


def tops_of(sources: list[Source]) -> Tops:
    return [
        (s.venue, best_level(s.book, True, s.rate), best_level(s.book, False, s.rate))
        for s in sources
    ]


def is_crossed(sources: list[Source], tops: Tops | None = None) -> bool:
    """Some market's best bid >= another market's best ask."""
    tops = tops_of(sources) if tops is None else tops
    for i, (_, bid, _) in enumerate(tops):
        if bid is None:
            continue
        for j, (_, _, ask) in enumerate(tops):
            if i != j and ask is not None and bid[0] >= ask[0]:
                return True
    return False


def crossed_size(sources: list[Source], n: int, tops: Tops | None = None) -> float:
    """Largest volume matchable between bids and asks (top ``n`` levels of each market) with
    bid price >= ask price. Bids are taken in ascending price, each filled from the pool of
    asks priced at or below it: every ask in the pool suits every later (higher) bid too, so
    filling the most constrained bid first is optimal."""
    tops = tops_of(sources) if tops is None else tops
    best_bid = max((b[0] for _, b, _ in tops if b is not None), default=None)
    best_ask = min((a[0] for _, _, a in tops if a is not None), default=None)
    if best_bid is None or best_ask is None or best_bid < best_ask:
        return 0.0
    events: list[tuple[float, int, float]] = []
    for src, (_, bid, ask) in zip(sources, tops, strict=True):
        if bid is not None and bid[0] >= best_ask:  # else none of its bids cross
            prices, sizes = _levels_within(src, True, best_ask, n)
            events.extend(zip(prices, repeat(1), sizes, strict=False))
        if ask is not None and ask[0] <= best_bid:
            prices, sizes = _levels_within(src, False, best_bid, n)
            events.extend(zip(prices, repeat(0), sizes, strict=False))
    events.sort()  # at equal price, asks (0) join the pool before bids (1) take from it
    pool = matched = 0.0
    for _, kind, size in events:
        if kind == 0:
            pool += size
        else:
            take = min(pool, size)
            pool -= take
            matched += take
    return round15(matched)


def spread_bps(bid: float | None, ask: float | None) -> float | None:
    if bid is None or ask is None:
        return None
    mid = (bid + ask) / 2.0
    return round((ask - bid) / mid * 1e4, 4) if mid > 0 else None


def _best_of(tops: Tops, bids: bool) -> tuple[list[Any] | None, dict[str, float]]:
    """``[price, total, top venue]`` and {venue: size} at the best price across markets."""
    k = 1 if bids else 2
    best: float | None = None
    for top in tops:
        lv = top[k]
        if lv is not None and (best is None or (lv[0] > best if bids else lv[0] < best)):
            best = lv[0]
    if best is None:
        return None, {}
    per: dict[str, float] = {}
    for top in tops:
        lv = top[k]
        if lv is not None and lv[0] == best:
            prev = per.get(top[0])
            per[top[0]] = lv[1] if prev is None else round15(prev + lv[1])
    total = next(iter(per.values())) if len(per) == 1 else round15(sum(per.values()))
    return [best, total, _top_venue(per)], per


def bbo_fields(sources: list[Source], n: int) -> dict[str, Any]:
    """The price part of a ``bbo.all`` message (see the module docstring)."""
    tops = tops_of(sources)
    bid, bid_venues = _best_of(tops, True)
    ask, ask_venues = _best_of(tops, False)
    out: dict[str, Any] = {
        "bid": bid,
        "ask": ask,
        "bid_venues": bid_venues,
        "ask_venues": ask_venues,
    }
    out["spread_bps"] = spread_bps(bid[0] if bid else None, ask[0] if ask else None)
    crossed = bid is not None and ask is not None and bid[0] >= ask[0] and is_crossed(sources, tops)
    out["crossed"] = crossed
    out["crossed_size"] = crossed_size(sources, n, tops) if crossed else 0.0
    return out


class Group:
    """The markets of one consolidated book and what was last published for it."""

    __slots__ = ("_split", "cross", "members", "name", "unit")

    def __init__(self, name: str, unit: str) -> None:
        self.name = name
        self.unit = unit
        self.members: dict[str, Mirror] = {}  # market key -> mirror
        # (best ask, best bid) as last built if crossed: crossed_size then depends on the levels
        # between them, not only on the best prices
        self.cross: tuple[float, float] | None = None
        self._split: tuple[list[Source], list[str], dict[str, str], dict[str, Any]] | None = None

    def latest_ts(self) -> Timestamps:
        """The timestamps of the included market whose data is the newest (largest ``ts_recv``):
        read at each build, so a market that comes back or leaves counts at once."""
        best: Timestamps = (None, None, None)
        for m in self.members.values():
            if m.live and (m.ts[1] or 0) > (best[1] or 0):
                best = m.ts
        return best

    def add(self, mirror: Mirror) -> None:
        assert mirror.market is not None
        self.members[mirror.market.key] = mirror
        self.members = dict(sorted(self.members.items()))
        self._split = None

    def remove(self, mirror: Mirror) -> None:
        assert mirror.market is not None
        self.members.pop(mirror.market.key, None)
        self._split = None

    def invalidate(self) -> None:
        """A member's inclusion or a conversion rate changed: ``split`` computes again."""
        self._split = None

    def split(
        self, rate_of: RateFn
    ) -> tuple[list[Source], list[str], dict[str, str], dict[str, Any]]:
        """Included sources, included venues, excluded {venue: state}, conversion info. Kept
        until ``invalidate`` (the caller's duty when a member's state or a rate changes): the
        parts change far less often than the prices, and are read on every update. Not to be
        modified by the caller."""
        if self._split is None:
            self._split = self._compute_split(rate_of)
        return self._split

    def _compute_split(
        self, rate_of: RateFn
    ) -> tuple[list[Source], list[str], dict[str, str], dict[str, Any]]:
        per_venue: dict[str, int] = {}
        for m in self.members.values():
            per_venue[m.venue] = per_venue.get(m.venue, 0) + 1
        sources: list[Source] = []
        venues: list[str] = []
        excluded: dict[str, str] = {}
        conversion: dict[str, Any] = {}
        for key, m in self.members.items():
            if m.live:
                rate, info = rate_of(m)
                sources.append(Source(m.venue, m.book, rate))
                conversion[key] = info
                if m.venue not in venues:
                    venues.append(m.venue)
            else:
                excluded[key if per_venue[m.venue] > 1 else m.venue] = m.state
        return sources, venues, excluded, conversion

    def state(self, venues: list[str], excluded: dict[str, str]) -> str:
        if venues or not excluded:
            return LIVE
        return min(excluded.values(), key=STATE_RANK.__getitem__)

    def _head(self, kind: str, rate_of: RateFn) -> tuple[dict[str, Any], list[Source]]:
        sources, venues, excluded, conversion = self.split(rate_of)
        body: dict[str, Any] = {
            "type": kind,
            "venue": "all",
            "symbol": self.name,
            "state": self.state(venues, excluded),
            "unit": self.unit,
            "venues": venues,
            "excluded": excluded,
            "conversion": conversion,
        }
        return body, sources

    def depth_body(self, rate_of: RateFn, n: int) -> dict[str, Any]:
        body, sources = self._head("depth", rate_of)
        body["bids"] = merge_side(sources, n, True)
        body["asks"] = merge_side(sources, n, False)
        return body

    def bbo_body(self, rate_of: RateFn, n: int) -> dict[str, Any]:
        body, sources = self._head("bbo", rate_of)
        body.update(bbo_fields(sources, n))
        return body
