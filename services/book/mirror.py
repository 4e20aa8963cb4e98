"""One venue book as the book builder holds it: an ``OrderBook`` kept from the ingest stream.

A mirror is rebuilt by every ``snapshot`` and then follows ``delta`` messages, which the bus
``Subscriber`` delivers only when contiguous. Its sync state is ``live`` (usable), ``syncing``
(ingest said so with a ``state`` message) or ``stale`` (our copy lost sync: seq gap, new epoch,
bad message); a non-live book is cleared and stays out until its next snapshot. Independently,
its venue may be ``down`` (publisher silent): the book is kept, but excluded and reported
``down`` until the venue is heard from again.

Memory is bounded with hysteresis: once a side holds more than ``TRIM_FACTOR * keep`` levels it
is cut back to ``keep`` (``keep`` defaults to 5x the published depth). Past the cut, levels that
never change again are unknown, so the cut price of each side is kept as an edge: while the
published top ``depth`` levels lie inside the edges they are exact. Once the top ``2 * depth``
would reach past an edge, ``refresh_due`` asks ingest (which keeps the whole book) for a fresh
snapshot while the book stays live; only if the top ``depth`` reach past an edge before it comes
is ``covers_depth`` False and the book stale until it does.
"""

from __future__ import annotations

import math
from typing import Any, Protocol

from common.book import Level, OrderBook
from common.symbols import Market

LIVE, SYNCING, STALE, DOWN = "live", "syncing", "stale", "down"
# worst first wins when states are combined (a venue with one stale book is stale)
STATE_RANK = {LIVE: 0, SYNCING: 1, STALE: 2, DOWN: 3}
TRIM_FACTOR = 10

Timestamps = tuple[int | None, int | None, int | None]  # ts_exch, ts_recv, ts_ingest_pub


class BadMessage(ValueError):
    """An ingest message that cannot be applied (wrong shape or values)."""


class Health(Protocol):
    down: bool


def parse_levels(raw: Any) -> list[Level]:
    """``[[price, size], ...]`` with finite numbers, price > 0 and size >= 0, or BadMessage.
    Parsed completely before anything is applied, so a bad message never half-updates a book."""
    if not isinstance(raw, list):
        raise BadMessage(f"levels must be a list, got {type(raw).__name__}")
    out: list[Level] = []
    for lv in raw:
        if not isinstance(lv, list | tuple) or len(lv) != 2:
            raise BadMessage(f"level must be [price, size], got {lv!r:.60}")
        p, s = lv
        if type(p) not in (int, float) or type(s) not in (int, float):
            raise BadMessage(f"level values must be numbers, got {lv!r:.60}")
        p, s = float(p), float(s)
        if not (p > 0.0 and math.isfinite(p) and s >= 0.0 and math.isfinite(s)):
            raise BadMessage(f"level out of range: {lv!r:.60}")
        out.append((p, s))
    return out


def normalize_state(state: Any) -> str:
    """Ingest sync states -> mirror states: connecting/syncing -> syncing, stale -> stale."""
    if state == LIVE:
        return LIVE
    return STALE if state == STALE else SYNCING


class Mirror:
    __slots__ = (
        "ask_edge",
        "bid_edge",
        "book",
        "deltas",
        "depth",
        "group",
        "health",
        "ignored",
        "keep",
        "market",
        "reason",
        "refresh_asked",
        "refreshes",
        "snapshots",
        "symbol",
        "sync",
        "top_changed",
        "trims",
        "ts",
        "venue",
    )

    def __init__(
        self,
        venue: str,
        symbol: str,
        health: Health,
        keep: int,
        market: Market | None = None,
        group: str | None = None,
        depth: int = 50,
    ) -> None:
        self.venue = venue
        self.symbol = symbol
        self.health = health
        self.keep = keep
        self.market = market
        self.group = group
        self.book = OrderBook()
        self.sync = SYNCING
        self.reason: str | None = "no snapshot yet"
        self.ts: Timestamps = (None, None, None)
        self.snapshots = 0
        self.deltas = 0
        self.ignored = 0
        self.trims = 0
        self.refreshes = 0  # snapshots asked for ahead of the edges
        self.refresh_asked = False
        self.depth = depth  # levels published per side
        self.top_changed = True  # the last delta changed the best ``depth`` levels
        self.bid_edge = -math.inf  # bids below it, and asks above ask_edge, were cut
        self.ask_edge = math.inf

    @property
    def state(self) -> str:
        return DOWN if self.health.down else self.sync

    @property
    def live(self) -> bool:
        return self.sync == LIVE and not self.health.down

    def top_key(self) -> tuple[str, Level | None, Level | None]:
        """What a ``bbo`` message shows: changes exactly when one must be published."""
        if not self.live:
            return (self.state, None, None)
        book = self.book
        return (LIVE, book.best_bid(), book.best_ask())

    def snapshot(self, bids: list[Level], asks: list[Level], state: Any, ts: Timestamps) -> None:
        self.snapshots += 1
        self.ts = ts
        if normalize_state(state) != LIVE:
            self.invalidate(normalize_state(state), "snapshot not live")
            return
        self.book.replace(bids, asks)
        self.sync = LIVE
        self.reason = None
        self.bid_edge, self.ask_edge = -math.inf, math.inf
        self.refresh_asked = False
        self._trim()

    def delta(self, bids: list[Level], asks: list[Level], ts: Timestamps) -> bool:
        """Apply a contiguous delta; False (ignored) if there is no live copy to apply it to."""
        if self.sync != LIVE:
            self.ignored += 1
            return False
        self.deltas += 1
        self.ts = ts
        book = self.book
        # A change below the depth-th level cannot change the published top levels (an insert
        # or delete above it shifts them and is seen as a change above it).
        bid_floor, ask_ceiling = book.nth_prices(self.depth)
        changed = False
        for price, size in bids:
            book.set_level(True, price, size)
            changed = changed or price >= bid_floor
        for price, size in asks:
            book.set_level(False, price, size)
            changed = changed or price <= ask_ceiling
        self.top_changed = changed
        self._trim()
        return True

    def invalidate(self, state: str, reason: str) -> None:
        """Our copy is unusable until the next snapshot."""
        self.sync = state
        self.reason = reason
        self.book.clear()

    def _within_edges(self, n: int) -> bool:
        """The top ``n`` levels of each side lie inside what was never cut (always True for a
        book that was never trimmed)."""
        if self.bid_edge == -math.inf and self.ask_edge == math.inf:
            return True
        bid, ask = self.book.nth_prices(n)
        return bid >= self.bid_edge and ask <= self.ask_edge

    def refresh_due(self) -> bool:
        """The top ``2 * depth`` levels of a side reach past its edge and no snapshot has been
        asked for since the last: time to ask, while the top ``depth`` are still exact."""
        return not self.refresh_asked and not self._within_edges(2 * self.depth)

    def covers_depth(self) -> bool:
        """The published top ``depth`` levels are exact (see the module docstring)."""
        return self._within_edges(self.depth)

    def _trim(self) -> None:
        book = self.book
        n_bids, n_asks = len(book.bids), len(book.asks)
        if not book.trim(self.keep, TRIM_FACTOR):
            return
        self.trims += 1
        if len(book.bids) < n_bids:
            self.bid_edge = max(self.bid_edge, book.bids.keys()[0] if book.bids else math.inf)
        if len(book.asks) < n_asks:
            self.ask_edge = min(self.ask_edge, book.asks.keys()[-1] if book.asks else -math.inf)
