"""The book builder's logic without sockets: ingest messages in, bus messages out.

``Engine`` keeps a ``Mirror`` per venue book, a ``Group`` per consolidated book and a
``VenueStatus`` per venue. Callers feed it what the bus ``Subscriber`` delivers
(``on_message``, ``on_stale``, ``set_upstream``) and call ``tick`` a few times a second; it
publishes unconflated messages (``bbo.*``, ``trade.*``, ``status.*``) through ``publish`` and
asks for conflated ones (``depth.*``) with ``touch(topic)``, to be built by ``depth_message``.

Every message it builds carries the source timestamps of the ingest message behind it:
``ts_exch`` (exchange), ``ts_recv`` (ingest read the frame) and ``ts_ingest_pub`` (ingest
published it); the bus Publisher adds ``ts_pub``. With ``[book] trace_hops`` the Subscriber
stamps ingest messages with ``ts_book_wake``/``ts_book_rx``; a ``bbo.*`` or ``trade.*`` message
built while one is applied carries them on if it carries that message's source timestamps (a
consolidated bbo rebuilt for another book's rate, or a venue back up on a heartbeat, does not).
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from common.book import Level
from common.codec import BOOK_TRACE, trace_fields
from common.metrics import LatencyHistogram
from common.symbols import group_of, parse_market, unit_of
from services.book.consolidate import Group, spread_bps
from services.book.mirror import (
    DOWN,
    LIVE,
    STALE,
    BadMessage,
    Mirror,
    Timestamps,
    normalize_state,
    parse_levels,
)
from services.book.rates import Rates, Reference
from services.book.status import VenueStatus

log = logging.getLogger("flowbook.book")

SYMBOL_RE = re.compile(r"[A-Za-z0-9_]+(-[A-Za-z0-9_]+)*")
BUS_FIELDS = ("v", "epoch", "seq", "ts_pub")
MAX_LOGGED_BAD = 100
LATENCY_SUMMARY_EVERY_S = 5.0
BAD_RESYNC_FIRST_S = 1.0
BAD_RESYNC_MAX_S = 60.0
TRACE_WAKE, TRACE_RX = trace_fields(BOOK_TRACE)

Publish = Callable[[str, dict[str, Any]], None]


@dataclass
class Settings:
    depth: int = 50
    stale_after_s: float = 3.0
    quote_groups: tuple[tuple[str, ...], ...] = (("USD", "USDT", "USDC"),)
    keep: int = 250
    references: dict[str, Reference] = field(default_factory=dict)
    trace_hops: bool = False  # the app's Subscribers stamp ts_book_wake/ts_book_rx


def _stamp(body: dict[str, Any], ts: Timestamps) -> dict[str, Any]:
    body["ts_exch"], body["ts_recv"], body["ts_ingest_pub"] = ts
    return body


class Engine:
    def __init__(
        self,
        settings: Settings,
        venues: Iterable[str],
        publish: Publish,
        touch: Callable[[str], None],
        *,
        resync: Callable[[str, str, str], None] | None = None,
        refresh: Callable[[str, str], None] | None = None,
        forget: Callable[[str, str], None] | None = None,
        wake: Callable[[], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settings = settings
        self.publish = publish
        self.touch = touch
        self.resync = resync
        self.refresh = refresh
        self.forget = forget  # (venue, book topic): no longer follow it
        self.wake = wake
        self.clock = clock
        self.venues = {v: VenueStatus(v) for v in venues}
        self.mirrors: dict[str, Mirror] = {}  # "venue.SYMBOL" -> mirror
        self.by_venue: dict[str, list[Mirror]] = {v: [] for v in self.venues}
        self.groups: dict[str, Group] = {}
        self.rates = Rates(settings.references, self.mirror_of)
        self.latency: dict[str, dict[str, LatencyHistogram]] = {}
        self.depth_latency = LatencyHistogram()
        self.messages_in = 0
        self.bad = 0
        self.bad_by_venue: dict[str, int] = {}
        self.published: dict[str, int] = {}
        self._last_key: dict[str, Any] = {}
        self._bbo_all_ts: dict[str, Timestamps] = {}  # bbo.all topic -> as last published
        self._status_dirty: set[str] = set()
        # "venue.SYMBOL" -> [due, wait, topic, reason]: books whose snapshots were refused
        self._bad_resyncs: dict[str, list[Any]] = {}
        self._latency_cache: tuple[float, dict[str, Any], dict[str, Any]] | None = None
        # (wake, rx, ts_recv, ts_pub) of the book/trade message being applied, if stamped
        self._trace: tuple[Any, Any, Any, Any] | None = None

    # -- lookups ----------------------------------------------------------------------------
    def mirror_of(self, venue: str, symbol: str) -> Mirror | None:
        return self.mirrors.get(f"{venue}.{symbol}")

    def _rate_fn(self, group: Group) -> Callable[[Mirror], tuple[float, dict[str, Any]]]:
        return lambda m: self.rates.for_mirror(m, group.unit)

    def _mirror(self, venue: str, symbol: str) -> Mirror:
        ident = f"{venue}.{symbol}"
        m = self.mirrors.get(ident)
        if m is not None:
            return m
        if not SYMBOL_RE.fullmatch(symbol) or len(symbol) > 40:
            raise BadMessage(f"bad symbol {symbol!r:.60}")
        market = parse_market(venue, symbol)
        groups = self.settings.quote_groups
        gname = group_of(market, groups) if market else None
        m = Mirror(
            venue,
            symbol,
            self.venues[venue],
            self.settings.keep,
            market,
            gname,
            self.settings.depth,
        )
        self.mirrors[ident] = m
        self.by_venue[venue].append(m)
        if market is None:
            log.warning("%s %s: not BASE-QUOTE[-PERP], left out of consolidation", venue, symbol)
        else:
            assert gname is not None
            group = self.groups.get(gname)
            if group is None:
                group = self.groups[gname] = Group(gname, unit_of(market.quote, groups))
            group.add(m)
            self.touch(f"depth.all.{gname}")
            self._group_bbo(group)
        self._mark_status(venue)
        return m

    # -- input ------------------------------------------------------------------------------
    def on_message(self, venue: str, topic: str, msg: dict[str, Any]) -> None:
        """One message the venue's Subscriber delivered. Never raises for bad input."""
        now = self.clock()
        self.messages_in += 1
        vs = self.venues.get(venue)
        if vs is None:
            return
        kind, _, rest = topic.partition(".")
        vs.seen(now, kind != "hb")
        if vs.down and vs.upstream_alive:
            self._refresh_venue(vs, now)  # data flows again: back before it is applied
        if TRACE_RX in msg:
            wake, rx = msg.pop(TRACE_WAKE, None), msg.pop(TRACE_RX)
            if kind in ("book", "trade"):
                self._trace = (wake, rx, msg.get("ts_recv"), msg.get("ts_pub"))
        try:
            if kind == "book":
                self._on_book(venue, rest, msg)
            elif kind == "trade":
                self._on_trades(venue, topic, rest, msg)
            elif kind == "hb":
                self._on_hb(vs, msg, now)
            else:
                raise BadMessage(f"unexpected topic kind {kind!r}")
        except (BadMessage, KeyError, TypeError, ValueError, AttributeError) as exc:
            self._bad(venue, topic, msg, exc)
        finally:
            self._trace = None

    def _symbol(self, venue: str, rest: str, msg: dict[str, Any]) -> str:
        topic_venue, _, symbol = rest.partition(".")
        if topic_venue != venue:
            raise BadMessage(f"topic of venue {topic_venue!r} on the {venue} link")
        if msg.get("symbol", symbol) != symbol or msg.get("venue", venue) != venue:
            raise BadMessage("venue/symbol of the payload differ from the topic's")
        return symbol

    def _on_book(self, venue: str, rest: str, msg: dict[str, Any]) -> None:
        symbol = self._symbol(venue, rest, msg)
        kind = msg.get("type")
        ts: Timestamps = (msg.get("ts_exch"), msg.get("ts_recv"), msg.get("ts_pub"))
        if kind == "delta":
            bids = parse_levels(msg.get("bids", []))
            asks = parse_levels(msg.get("asks", []))
            m = self._mirror(venue, symbol)
            before = m.top_key()
            if not m.delta(bids, asks, ts):
                return
            if not m.covers_depth():
                self._lost_sync(m, f"book.{venue}.{symbol}", "top levels reach past the trim")
                return
            if m.refresh_due() and self.refresh is not None:
                m.refresh_asked = True
                m.refreshes += 1
                self.refresh(venue, f"book.{venue}.{symbol}")
            group = self.groups.get(m.group) if m.group else None
            crossing = (
                group is not None
                and group.cross is not None
                and self._touches_cross(group, m, bids, asks)
            )
            self._changed(m, before, measure=True, depth=m.top_changed, crossing=crossing)
            return
        elif kind == "snapshot":
            bids = parse_levels(msg.get("bids", []))
            asks = parse_levels(msg.get("asks", []))
            m = self._mirror(venue, symbol)
            before = m.top_key()
            m.snapshot(bids, asks, msg.get("state", LIVE), ts)
        elif kind == "state":
            m = self._mirror(venue, symbol)
            before = m.top_key()
            m.ts = ts
            m.invalidate(normalize_state(msg.get("state")), str(msg.get("reason") or "ingest"))
        else:
            raise BadMessage(f"unknown book message type {kind!r}")
        self._changed(m, before, measure=True)

    def _on_trades(self, venue: str, topic: str, rest: str, msg: dict[str, Any]) -> None:
        self._symbol(venue, rest, msg)
        trades = msg.get("trades")
        if not isinstance(trades, list) or not all(isinstance(t, dict) for t in trades):
            raise BadMessage("trades must be a list of objects")
        body = {k: v for k, v in msg.items() if k not in BUS_FIELDS}
        body["ts_ingest_pub"] = msg.get("ts_pub")
        if "ts_exch" not in body:
            body["ts_exch"] = trades[-1].get("ts_exch") if trades else None
        self._send(topic, body, venue)

    def _on_hb(self, vs: VenueStatus, msg: dict[str, Any], now: float) -> None:
        stats = msg.get("stats")
        if not isinstance(stats, dict):
            raise BadMessage("heartbeat without stats")
        before = (vs.hb_stats or {}).get("venue_state")
        vs.last_hb = now
        vs.hb_stats = stats
        instruments = stats.get("instruments")
        if isinstance(instruments, dict):
            for symbol in instruments:
                if isinstance(symbol, str) and f"{vs.name}.{symbol}" not in self.mirrors:
                    self._mirror(vs.name, symbol)
            if instruments:  # the ingest's whole list (empty until it has read its metadata)
                for m in [m for m in self.by_venue[vs.name] if m.symbol not in instruments]:
                    self._drop_mirror(m)
        self._refresh_venue(vs, now)
        if stats.get("venue_state") != before:
            self._mark_status(vs.name)

    def _drop_mirror(self, m: Mirror) -> None:
        """The ingest no longer carries this book (its config changed across a restart): a
        last ``down`` for it, out of its group and of the venue's status, no longer followed.
        Kept, it would hold the venue ``stale`` and be asked for every 2 s for ever."""
        ident = f"{m.venue}.{m.symbol}"
        log.warning("%s %s: no longer carried by its ingest: dropped", m.venue, m.symbol)
        before = m.top_key()
        m.invalidate(DOWN, "no longer carried by its ingest")
        self._changed(m, before, depth=False)
        self._send(f"depth.{ident}", self.venue_depth(m))
        del self.mirrors[ident]
        self.by_venue[m.venue].remove(m)
        self._last_key.pop(f"depth.{ident}", None)
        group = self.groups.get(m.group) if m.group else None
        if group is not None:
            group.remove(m)
            self.touch(f"depth.all.{group.name}")
            self._group_bbo(group)
        if self.forget is not None:
            self.forget(m.venue, f"book.{ident}")
        self._mark_status(m.venue)

    def on_stale(self, topic: str, reason: str) -> None:
        """The Subscriber lost this book's sequence: our copy is unusable until a snapshot."""
        m = self.mirrors.get(topic.partition(".")[2])
        if m is not None and m.sync == LIVE:
            before = m.top_key()
            m.invalidate(STALE, reason)
            self._changed(m, before)

    def set_upstream(self, venue: str, alive: bool) -> None:
        vs = self.venues.get(venue)
        if vs is None:
            return
        vs.upstream_alive = alive
        self._refresh_venue(vs, self.clock())

    def _bad(self, venue: str, topic: str, msg: Any, exc: Exception) -> None:
        self.bad += 1
        self.bad_by_venue[venue] = self.bad_by_venue.get(venue, 0) + 1
        symbol = msg.get("symbol") if isinstance(msg, dict) else None
        if self.bad <= MAX_LOGGED_BAD or self.bad % 1000 == 0:
            log.warning(
                "bad message #%d from %s %s on %s skipped (%s: %s): %.200r",
                self.bad,
                venue,
                symbol,
                topic,
                type(exc).__name__,
                exc,
                msg,
            )
        if topic.startswith("book."):
            m = self.mirrors.get(topic.partition(".")[2])
            if m is None or m.venue != venue:
                return
            if m.sync == LIVE:
                self._lost_sync(m, topic, f"bad message: {exc}")
            else:  # a bad snapshot: none usable until another comes
                self._schedule_bad_resync(m, topic, f"bad message: {exc}")

    def _schedule_bad_resync(self, m: Mirror, topic: str, reason: str) -> None:
        """Ask for another snapshot of a book whose snapshot was refused, after 1 s, then twice
        as long each time it is refused again (up to a minute; ``tick`` asks). Asked at once,
        the ingest would answer at once with the same snapshot, for ever."""
        ident = f"{m.venue}.{m.symbol}"
        if ident not in self._bad_resyncs:
            now = self.clock()
            self._bad_resyncs[ident] = [now + BAD_RESYNC_FIRST_S, BAD_RESYNC_FIRST_S, topic, reason]

    def _due_bad_resyncs(self, now: float) -> None:
        for ident, entry in list(self._bad_resyncs.items()):
            due, wait, topic, reason = entry
            m = self.mirrors.get(ident)
            if m is None or m.sync == LIVE:  # a snapshot was taken (or the book dropped)
                del self._bad_resyncs[ident]
            elif now >= due:
                entry[1] = wait = min(wait * 2, BAD_RESYNC_MAX_S)
                entry[0] = now + wait
                if self.resync is not None:
                    self.resync(m.venue, topic, reason)

    def _lost_sync(self, m: Mirror, topic: str, reason: str) -> None:
        """Our copy of ``m`` is unusable: out until ingest republishes its snapshot."""
        before = m.top_key()
        m.invalidate(STALE, reason)
        self._changed(m, before)
        if self.resync is not None:
            self.resync(m.venue, topic, reason)

    # -- liveness ---------------------------------------------------------------------------
    def _refresh_venue(self, vs: VenueStatus, now: float) -> None:
        down = vs.compute_down(now, self.settings.stale_after_s)
        if down == vs.down:
            return
        mirrors = self.by_venue[vs.name]
        before = [m.top_key() for m in mirrors]
        vs.down = down
        if down:
            log.warning("%s is down: its books are excluded", vs.name)
        else:
            log.info("%s is up", vs.name)
        for m, b in zip(mirrors, before, strict=True):
            self._changed(m, b)
        self._mark_status(vs.name)

    def tick(self) -> None:
        """Liveness of every venue, statuses."""
        now = self.clock()
        for vs in self.venues.values():
            self._refresh_venue(vs, now)
        self._due_bad_resyncs(now)
        self.flush_status()

    # -- output -----------------------------------------------------------------------------
    def _send(self, topic: str, body: dict[str, Any], measure_venue: str | None = None) -> None:
        kind = topic[: topic.index(".")]
        trace = self._trace
        if (
            trace is not None
            and kind in ("bbo", "trade")
            and body.get("ts_recv") == trace[2]
            and body.get("ts_ingest_pub") == trace[3]
        ):
            body[TRACE_WAKE], body[TRACE_RX] = trace[0], trace[1]
        self.publish(topic, body)
        self.published[kind] = self.published.get(kind, 0) + 1
        if measure_venue is None:
            return
        ts_pub, ts_recv, ts_ing = body.get("ts_pub"), body.get("ts_recv"), body.get("ts_ingest_pub")
        hists = self.latency.get(measure_venue)
        if hists is None:
            hists = self.latency[measure_venue] = {
                "recv_to_pub": LatencyHistogram(),
                "ingest_pub_to_pub": LatencyHistogram(),
            }
        if isinstance(ts_pub, int) and isinstance(ts_recv, int):
            hists["recv_to_pub"].record_ns(max(ts_pub - ts_recv, 0))
        if isinstance(ts_pub, int) and isinstance(ts_ing, int):
            hists["ingest_pub_to_pub"].record_ns(max(ts_pub - ts_ing, 0))

    def _touches_cross(self, group: Group, m: Mirror, bids: list[Level], asks: list[Level]) -> bool:
        """A delta of ``m`` has a level in the crossing region of its crossed group (a bid at or
        above the group's best ask, an ask at or below its best bid): only those levels count in
        ``crossed_size``. Prices converted like the group's; a hair of tolerance for rounding."""
        assert group.cross is not None
        best_ask, best_bid = group.cross
        rate = self.rates.for_mirror(m, group.unit)[0]
        lo, hi = best_ask * (1 - 1e-12), best_bid * (1 + 1e-12)
        return any(p * rate >= lo for p, _ in bids) or any(p * rate <= hi for p, _ in asks)

    def _changed(
        self,
        m: Mirror,
        before: tuple[Any, ...],
        measure: bool = False,
        depth: bool = True,
        crossing: bool = True,
    ) -> None:
        """Publish what a change of mirror ``m`` implies (``depth``: its top levels changed;
        ``crossing``: a level in its group's crossing region may have changed)."""
        after = m.top_key()
        top_changed = after != before
        state_changed = after[0] != before[0]
        if top_changed:
            self._send(f"bbo.{m.venue}.{m.symbol}", self.venue_bbo(m), m.venue if measure else None)
        if depth:
            self.touch(f"depth.{m.venue}.{m.symbol}")
        group = self.groups.get(m.group) if m.group else None
        quote = None  # of the rate that ``m`` is the reference book of
        if top_changed and m.market is not None and not m.market.perp:
            quote = self.rates.ref_books.get((m.venue, m.symbol))
        if group is not None and (state_changed or quote is not None):
            # included or not, and so its venues, conversion, state; or, for a reference
            # book, a rate its own group may convert by (an inverse one: USD-USDT)
            group.invalidate()
        if group is not None and (after[0] == LIVE or state_changed):
            if depth:
                self.touch(f"depth.all.{group.name}")
            # crossed_size reads the crossing levels of every market: while crossed, a change
            # there counts even if no best price moved
            if top_changed or (depth and crossing and group.cross is not None):
                # built on this market's update: its timestamps (it may be older than another
                # member's newest data, when the venues' messages arrive out of order)
                self._group_bbo(group, m.ts if measure and after[0] == LIVE else None)
        if quote is not None:
            self.rates.observe(quote)
            self._rate_changed(quote)
        if state_changed:
            self._mark_status(m.venue)

    def _rate_changed(self, quote: str) -> None:
        for group in self.groups.values():
            if group.unit != quote and any(
                mm.market is not None and mm.market.quote == quote and mm.live
                for mm in group.members.values()
            ):
                group.invalidate()
                self.touch(f"depth.all.{group.name}")
                self._group_bbo(group)

    def venue_bbo(self, m: Mirror) -> dict[str, Any]:
        state, bid, ask = m.top_key()
        body: dict[str, Any] = {
            "type": "bbo",
            "venue": m.venue,
            "symbol": m.symbol,
            "state": state,
            "bid": [bid[0], bid[1]] if bid else None,
            "ask": [ask[0], ask[1]] if ask else None,
            "spread_bps": spread_bps(bid[0] if bid else None, ask[0] if ask else None),
        }
        if state != LIVE:
            body["reason"] = m.reason if not m.health.down else "publisher silent"
        return _stamp(body, m.ts)

    def venue_depth(self, m: Mirror) -> dict[str, Any]:
        n = self.settings.depth
        live = m.live
        body: dict[str, Any] = {
            "type": "depth",
            "venue": m.venue,
            "symbol": m.symbol,
            "state": m.state,
            "bids": list(map(list, m.book.top_bids(n))) if live else [],
            "asks": list(map(list, m.book.top_asks(n))) if live else [],
        }
        if not live:
            body["reason"] = m.reason if not m.health.down else "publisher silent"
        return _stamp(body, m.ts)

    def group_depth(self, group: Group) -> dict[str, Any]:
        body = group.depth_body(self._rate_fn(group), self.settings.depth)
        return _stamp(body, group.latest_ts())

    def group_bbo(self, group: Group) -> dict[str, Any]:
        """``bbo.all`` now, for a resync: with the timestamps it was last published with if its
        content has not changed since, so that a subscriber sees the same message again."""
        body = group.bbo_body(self._rate_fn(group), self.settings.depth)
        topic = f"bbo.all.{group.name}"
        last = self._bbo_all_ts.get(topic)
        same = last is not None and self._last_key.get(topic) == tuple(body.values())
        return _stamp(body, last if same else group.latest_ts())

    def _group_bbo(self, group: Group, ts: Timestamps | None = None) -> None:
        """Build and publish ``bbo.all`` if its content changed, stamped with ``ts`` (the
        update that caused it), else with the group's newest data (``latest_ts``)."""
        topic = f"bbo.all.{group.name}"
        body = group.bbo_body(self._rate_fn(group), self.settings.depth)
        group.cross = (body["ask"][0], body["bid"][0]) if body["crossed"] else None
        key = tuple(body.values())  # before the timestamps are stamped
        if self._last_key.get(topic) != key:
            self._last_key[topic] = key
            ts = group.latest_ts() if ts is None else ts
            self._bbo_all_ts[topic] = ts
            self._send(topic, _stamp(body, ts))

    def depth_topics(self) -> list[str]:
        """Every ``depth.*`` topic the engine can build."""
        return [f"depth.{ident}" for ident in self.mirrors] + [
            f"depth.all.{name}" for name in self.groups
        ]

    def has_depth_topic(self, topic: str) -> bool:
        """``topic`` names one ``depth.*`` topic the engine builds."""
        kind, _, ident = topic.partition(".")
        if kind != "depth":
            return False
        venue, _, symbol = ident.partition(".")
        return symbol in self.groups if venue == "all" else ident in self.mirrors

    def forget_published(self, topic: str) -> None:
        """Publish ``topic`` next time even if its content did not change."""
        self._last_key.pop(topic, None)

    def depth_message(self, topic: str) -> None:
        """Conflated publish of ``depth.<venue|all>.<symbol>``, if its content changed."""
        _, venue, symbol = topic.split(".", 2)
        if venue == "all":
            group = self.groups.get(symbol)
            if group is None:
                return
            body = self.group_depth(group)
        else:
            m = self.mirrors.get(f"{venue}.{symbol}")
            if m is None:
                return
            body = self.venue_depth(m)
        key = tuple(v for k, v in body.items() if not k.startswith("ts_"))
        if self._last_key.get(topic) == key:
            return
        self._last_key[topic] = key
        self._send(topic, body)
        ts_pub, ts_recv = body.get("ts_pub"), body.get("ts_recv")
        if body["state"] == LIVE and isinstance(ts_pub, int) and isinstance(ts_recv, int):
            self.depth_latency.record_ns(max(ts_pub - ts_recv, 0))

    # -- status -----------------------------------------------------------------------------
    def _mark_status(self, venue: str) -> None:
        if venue not in self._status_dirty:
            self._status_dirty.add(venue)
            if self.wake is not None:
                self.wake()

    def status_body(self, venue: str) -> dict[str, Any]:
        return self.venues[venue].body(self.by_venue[venue], self.clock())

    def flush_status(self) -> None:
        """Publish ``status.<venue>`` for venues whose status changed."""
        for name in sorted(self._status_dirty):
            self.publish_status(name, force=False)

    def publish_status(self, name: str, force: bool = True) -> None:
        """``status.<name>`` now (``force``) or only if its state or instruments changed."""
        self._status_dirty.discard(name)
        body = self.status_body(name)
        key = (body["state"], tuple(body["instruments"].items()))
        vs = self.venues[name]
        if force or key != vs.published_key:
            vs.published_key = key
            self._send(f"status.{name}", body)

    # -- resync service ---------------------------------------------------------------------
    def snapshots(self, prefixes: list[str]) -> Iterator[tuple[str, dict[str, Any]]]:
        """Current ``depth.*``, ``bbo.*`` (venue and ``all``) and ``status.*`` messages for the
        topics matching ``prefixes``: what a subscriber needs to start from."""
        prefixes = [p for p in prefixes if isinstance(p, str)] or [""]

        def wanted(t: str) -> bool:
            return any(t.startswith(p) for p in prefixes)

        for ident, m in list(self.mirrors.items()):
            if wanted(t := f"depth.{ident}"):
                yield t, self.venue_depth(m)
            if wanted(t := f"bbo.{ident}"):
                yield t, self.venue_bbo(m)
        for name, group in list(self.groups.items()):
            if wanted(t := f"depth.all.{name}"):
                yield t, self.group_depth(group)
            if wanted(t := f"bbo.all.{name}"):
                yield t, self.group_bbo(group)
        for name in self.venues:
            if wanted(t := f"status.{name}"):
                yield t, self.status_body(name)

    # -- stats ------------------------------------------------------------------------------
    def latency_stats(self) -> tuple[dict[str, Any], dict[str, Any]]:
        """(all venues, by venue) latency summaries, recomputed at most every
        ``LATENCY_SUMMARY_EVERY_S``: hdrh merges and reads its buckets in Python, which cost
        7% of the book builder's CPU at 2k msgs/s when done for every heartbeat."""
        now = self.clock()
        cache = self._latency_cache
        if (
            cache is not None
            and now - cache[0] < LATENCY_SUMMARY_EVERY_S
            and cache[2].keys() == self.latency.keys()  # a new venue is not held back
        ):
            return cache[1], cache[2]
        total = {"recv_to_pub": LatencyHistogram(), "ingest_pub_to_pub": LatencyHistogram()}
        by_venue: dict[str, Any] = {}
        for venue, hists in self.latency.items():
            by_venue[venue] = {}
            for stage, h in hists.items():
                total[stage].add(h)
                by_venue[venue][stage] = h.summary()
        overall = {
            "recv_to_pub": total["recv_to_pub"].summary(),
            "ingest_pub_to_pub": total["ingest_pub_to_pub"].summary(),
            "depth_recv_to_pub": self.depth_latency.summary(),
        }
        self._latency_cache = (now, overall, by_venue)
        return overall, by_venue

    def stats(self) -> dict[str, Any]:
        overall, by_venue = self.latency_stats()
        books: dict[str, int] = {}
        for m in self.mirrors.values():
            books[m.state] = books.get(m.state, 0) + 1
        return {
            "messages_in": self.messages_in,
            "bad_messages": self.bad,
            "bad_by_venue": dict(self.bad_by_venue),
            "published": dict(self.published),
            "books": books,
            "levels": sum(len(m.book) for m in self.mirrors.values()),
            "trims": sum(m.trims for m in self.mirrors.values()),
            "refreshes": sum(m.refreshes for m in self.mirrors.values()),
            "ignored_deltas": sum(m.ignored for m in self.mirrors.values()),
            "groups": len(self.groups),
            "latency_us": overall,
            "latency_us_by_venue": by_venue,
            "venues": {
                name: vs.state(vs.instruments(self.by_venue[name]))
                for name, vs in self.venues.items()
            },
        }
