"""What the gateway knows about the market: the latest value of every topic of the book builder.

``depth.*`` and ``bbo.*``: the latest message per topic (each one is complete). ``trade.*``: a
ring of recent trades per instrument. ``status.<venue>``: the latest venue status. ``hb.*``: the
latest heartbeat per service. Plus the catalog used to validate requests: venues and symbols
from the configuration, from venue statuses (their instrument lists) and from topics seen.
"""

from __future__ import annotations

import itertools
import time
from collections import Counter, deque
from collections.abc import Iterable, Iterator
from typing import Any

from common.codec import TRACE_FIELDS
from common.config import Config
from common.symbols import group_name

VENUE_STATES = ("live", "syncing", "stale", "down")
# Keys of a bus payload that are the book builder's envelope, not data.
_ENVELOPE = frozenset(("v", "epoch", "seq", "ts_pub", "type"))
# what a depth/bbo message shows while its prices are withheld (as the book builder sends a book
# that is not live: no levels, no prices)
_WITHHELD: dict[str, Any] = {
    "bids": [],
    "asks": [],
    "bid": None,
    "ask": None,
    "spread_bps": None,
    "bid_venues": {},
    "ask_venues": {},
    "crossed": False,
    "crossed_size": 0.0,
}
BOOK_DOWN_REASON = "book builder down: last prices withheld"


def split_topic(topic: str) -> tuple[str, str, str]:
    """``kind.venue.symbol`` -> (kind, venue, symbol); missing parts are ''."""
    kind, _, rest = topic.partition(".")
    venue, _, symbol = rest.partition(".")
    return kind, venue, symbol


def table(msg: dict[str, Any], key: str) -> dict[str, Any]:
    """``msg[key]`` if it is an object, else an empty one (for fields of untrusted payloads)."""
    value = msg.get(key)
    return value if isinstance(value, dict) else {}


def _same_data(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """True if two messages of one topic carry the same data (a republished snapshot)."""
    if a.get("ts_recv") != b.get("ts_recv") or a.get("ts_ingest_pub") != b.get("ts_ingest_pub"):
        return False
    keys = (a.keys() | b.keys()) - _ENVELOPE - TRACE_FIELDS
    return all(a.get(k) == b.get(k) for k in keys)


def _trade_key(tid: Any) -> Any:
    """A trade id usable as a dict key (None for ids that cannot be, never looked up)."""
    return tid if isinstance(tid, str | int | float) else None


class MarketState:
    """Latest values per topic, trade rings, venue statuses, heartbeats and the catalog."""

    def __init__(
        self,
        *,
        venues: Iterable[tuple[str, Iterable[str]]] = (),
        quote_groups: tuple[tuple[str, ...], ...] = (("USD", "USDT", "USDC"),),
        trades_ring: int = 100,
        stale_after_s: float = 3.0,
    ) -> None:
        self.quote_groups = quote_groups
        self.trades_ring = trades_ring
        self.stale_after_s = stale_after_s
        self.latest: dict[str, dict[str, Any]] = {}  # depth./bbo. topic -> message
        self.trades: dict[str, deque[tuple[int, dict[str, Any]]]] = {}  # topic -> ring
        self._trade_ids: dict[str, deque[Any]] = {}  # the ids of each ring, oldest first
        self._trade_id_count: dict[str, Counter[Any]] = {}  # the same ids counted: O(1) lookups
        self.status: dict[str, dict[str, Any]] = {}  # venue -> latest status.<venue>
        self.status_at: dict[str, float] = {}  # venue -> monotonic arrival
        self.heartbeats: dict[str, dict[str, Any]] = {}  # service -> latest hb.<service>
        self.hb_at: dict[str, float] = {}
        self.book_alive = False
        self.book_changed_at = time.monotonic()
        # depth/bbo topics held from before the book builder last went down: withheld until it
        # sends them again (a restarted builder may never send a book it no longer has)
        self.unvouched: set[str] = set()
        self.config_symbols: dict[str, set[str]] = {v: set(s) for v, s in venues}
        self.seen_symbols: dict[str, set[str]] = {}  # venue (or "all") -> symbols on the bus
        self.bus_messages: dict[str, int] = {}  # kind -> count
        self.duplicates = 0
        self._arrival = itertools.count()
        self._groups: dict[str, str | None] = {}

    @classmethod
    def from_config(cls, cfg: Config, *, trades_ring: int = 100) -> MarketState:
        venues = [(v.name, [f"{base}-{v.quote}" for base in v.bases]) for v in cfg.enabled_venues()]
        return cls(
            venues=venues,
            quote_groups=cfg.book.quote_groups,
            trades_ring=trades_ring,
            stale_after_s=cfg.book.stale_after_s,
        )

    # -- updates from the bus -------------------------------------------------------------------
    def update(self, topic: str, msg: dict[str, Any]) -> bool:
        """Record ``msg``; True if it is news for clients (not a repeat of what we hold)."""
        kind, venue, symbol = split_topic(topic)
        self.bus_messages[kind] = self.bus_messages.get(kind, 0) + 1
        if kind in ("depth", "bbo"):
            if not venue or not symbol:
                return False
            self._see(venue, symbol)
            prev = self.latest.get(topic)
            self.latest[topic] = msg
            if topic in self.unvouched:  # sent again: news even if the data is the same
                self.unvouched.discard(topic)
                return True
            if prev is not None and _same_data(prev, msg):
                self.duplicates += 1
                return False
            return True
        if kind == "trade":
            if not venue or not symbol:
                return False
            self._see(venue, symbol)
            return self._add_trades(topic, venue, symbol, msg)
        if kind == "status":
            if not venue:
                return False
            self.status[venue] = msg
            self.status_at[venue] = time.monotonic()
            self.seen_symbols.setdefault(venue, set())
            instruments = msg.get("instruments")
            if isinstance(instruments, dict):
                self.seen_symbols[venue].update(k for k in instruments if isinstance(k, str))
            return True
        if kind == "hb":
            self.heartbeats[venue] = msg
            self.hb_at[venue] = time.monotonic()
            return False
        return False

    def served(self, topic: str) -> dict[str, Any] | None:
        """The latest ``depth.*``/``bbo.*`` message as clients may see it: while the book builder
        is down, and after until it sends that topic again, nothing vouches for its prices, so
        they are withheld and ``state`` is ``down`` (the gateway never hands out a frozen book
        marked ``live``)."""
        msg = self.latest.get(topic)
        if msg is None or (self.book_alive and topic not in self.unvouched):
            return msg
        out = {**msg, "state": "down", "reason": BOOK_DOWN_REASON}
        for key, empty in _WITHHELD.items():
            if key in out:
                out[key] = empty.copy() if isinstance(empty, list | dict) else empty
        return out

    def forget(self, topic: str) -> None:
        """Drop the latest value of a topic the gateway no longer follows."""
        self.latest.pop(topic, None)

    def _see(self, venue: str, symbol: str) -> None:
        symbols = self.seen_symbols.get(venue)
        if symbols is None:
            symbols = self.seen_symbols[venue] = set()
        symbols.add(symbol)

    def _add_trades(self, topic: str, venue: str, symbol: str, msg: dict[str, Any]) -> bool:
        trades = msg.get("trades")
        if not isinstance(trades, list):
            return False
        ring = self.trades.get(topic)
        if ring is None:
            ring = self.trades[topic] = deque(maxlen=self.trades_ring)
            self._trade_ids[topic] = deque(maxlen=self.trades_ring)
        ids = self._trade_ids[topic]
        held = self._trade_id_count.get(topic)
        if held is None:  # not setdefault, which would build a Counter on every message
            held = self._trade_id_count[topic] = Counter()
        ids_in = [_trade_key(t.get("id")) for t in trades if isinstance(t, dict)]
        if ids_in and None not in ids_in and all(i in held for i in ids_in):
            self.duplicates += 1  # a republished batch: already held and forwarded
            return False
        for t in trades:
            if isinstance(t, dict):
                ring.append((next(self._arrival), {**t, "venue": venue, "symbol": symbol}))
                if len(ids) == ids.maxlen:
                    old = ids[0]
                    held[old] -= 1
                    if held[old] <= 0:
                        del held[old]
                tid = _trade_key(t.get("id"))
                ids.append(tid)
                held[tid] += 1
        return msg.get("type") != "snapshot"

    def set_book_alive(self, alive: bool) -> bool:
        """Book builder liveness from the Subscriber; True if it changed."""
        if alive == self.book_alive:
            return False
        self.book_alive = alive
        if not alive:
            self.unvouched = set(self.latest)
        self.book_changed_at = time.monotonic()
        return True

    # -- queries --------------------------------------------------------------------------------
    def venues(self) -> list[str]:
        """Configured venues first, then venues only seen on the bus."""
        names = list(self.config_symbols)
        names += sorted(v for v in self.seen_symbols if v != "all" and v not in self.config_symbols)
        return names

    def known_venue(self, venue: str) -> bool:
        return venue != "all" and (venue in self.config_symbols or venue in self.seen_symbols)

    def symbols(self, venue: str) -> set[str]:
        """The venue's instruments as its ``status`` lists them (and any seen on the bus); only
        until it first reports some, the configured ``BASE-QUOTE`` pairs, which are a guess:
        a perpetuals venue names its markets ``BASE-QUOTE-PERP``, a base may not be listed."""
        if venue == "all":
            return self.groups()
        seen = self.seen_symbols.get(venue, set())
        instruments = (self.status.get(venue) or {}).get("instruments")
        if isinstance(instruments, dict) and instruments:
            return set(seen)
        return self.config_symbols.get(venue, set()) | seen

    def groups(self) -> set[str]:
        """Consolidated groups: seen as ``*.all.<GROUP>`` or derived from venues' symbols."""
        out = set(self.seen_symbols.get("all", ()))
        for venue in self.venues():
            for symbol in self.symbols(venue):
                group = self.group(symbol)
                if group:
                    out.add(group)
        return out

    def group(self, symbol: str) -> str | None:
        try:
            return self._groups[symbol]
        except KeyError:
            if len(self._groups) > 100_000:
                self._groups.clear()
            group = self._groups[symbol] = group_name(symbol, self.quote_groups)
            return group

    def known_symbol(self, venue: str, symbol: str) -> bool:
        return symbol in self.symbols(venue)

    def venue_state(self, venue: str, now: float | None = None) -> str:
        """What clients should believe: ``down`` while the book builder is down or the venue
        never reported, ``stale`` if its last status is older than ``stale_after_s``, counted
        from the book builder's return at the earliest (it brings fresh statuses within
        that; the ones from before its outage are not stale on the spot)."""
        if not self.book_alive:
            return "down"
        msg = self.status.get(venue)
        if msg is None:
            return "down"
        now = time.monotonic() if now is None else now
        since = max(self.status_at.get(venue, 0.0), self.book_changed_at)
        if now - since > self.stale_after_s:
            return "stale"
        state = msg.get("state")
        return state if state in VENUE_STATES else "down"

    def instrument_states(self, venue: str) -> dict[str, str]:
        """Per symbol: the state from the venue status, else from the latest depth/bbo."""
        out: dict[str, str] = {}
        status = self.status.get(venue) or {}
        instruments = status.get("instruments")
        for symbol in sorted(self.symbols(venue)):
            state = instruments.get(symbol) if isinstance(instruments, dict) else None
            if not isinstance(state, str):
                msg = self.latest.get(f"depth.{venue}.{symbol}") or self.latest.get(
                    f"bbo.{venue}.{symbol}"
                )
                state = msg.get("state") if msg else None
            out[symbol] = state if isinstance(state, str) else "unknown"
        if not self.book_alive:
            out = dict.fromkeys(out, "down")
        return out

    def recent_trades(self, topics: Iterable[str], limit: int) -> list[dict[str, Any]]:
        """The last ``limit`` trades over ``topics``, oldest first, in arrival order."""
        merged: list[tuple[int, dict[str, Any]]] = []
        for topic in topics:
            ring = self.trades.get(topic)
            if ring:
                merged.extend(ring)
        merged.sort(key=lambda e: e[0])
        return [t for _, t in merged[-limit:]]

    def trade_topics(self, venues: tuple[str, ...] | None, symbol: str | None) -> Iterator[str]:
        """Trade topics held that a trades subscription (venues None = all) selects."""
        for topic in self.trades:
            _, venue, sym = split_topic(topic)
            if venues is not None and venue not in venues:
                continue
            if symbol is not None and sym != symbol and self.group(sym) != symbol:
                continue
            yield topic
