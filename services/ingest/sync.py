"""Per-instrument sync state machine: ``connecting -> syncing -> live -> (gap|checksum) -> syncing``.

Plain data and pure decisions: ``InstrumentSync.on_update`` takes one normalized book message
(live, replayed or a synthetic REST snapshot) and returns what the runner must do. The venue's
own rule (``VenuePlugin.check_delta``/``verify``) decides continuity; this module owns the
buffering, the reset of one instrument alone, and the never-publish-a-crossed-book rule.

A REST snapshot cut at ``VenuePlugin.snapshot_levels`` a side covers prices down to its deepest
bid (up to its deepest ask); beyond them only levels that changed since are known (exchanges.md
1.3). When the price moves until fewer than ``cover_levels`` known levels remain on a side, the
book is *refreshed*: it stays live while a new snapshot is fetched, the diffs meanwhile are
applied and kept, and the snapshot with those diffs replaces the book (a full ``snapshot``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from common.book import OrderBook
from common.model import BookUpdate, Instrument, SyncState
from services.ingest.venue import VenuePlugin, Verdict

MAX_BUFFERED = 5000
KEPT_AFTER_FAILURE = MAX_BUFFERED // 2  # diffs kept for the next snapshot after a resync
MAX_SYNC_WAIT_S = 600.0
RESYNC_WINDOW_S = 60.0  # resyncs of one book counted over this window
RESYNC_FREE = 3  # that many in the window go at once; then 1 s, 2 s, ... up to MAX_RESYNC_DELAY_S
MAX_RESYNC_DELAY_S = 20.0
COVER_LEVELS = 100  # known levels a side a cut snapshot must still cover: 2x [book] depth (50)


@dataclass(slots=True)
class Publish:
    """Publish the book: a full snapshot, or the levels this update changed."""

    snapshot: bool
    bids: list[tuple[float, float]] = field(default_factory=list)
    asks: list[tuple[float, float]] = field(default_factory=list)


@dataclass(slots=True)
class Resync:
    """The book is unusable: tell consumers, then get a fresh snapshot (REST or resubscribe)."""

    reason: str
    kind: str  # "gap", "checksum", "crossed", "buffer", "stale_snapshot", "malformed"


@dataclass(slots=True)
class SyncCounters:
    gaps: int = 0
    checksum_failures: int = 0
    crossed: int = 0
    resyncs: int = 0
    snapshots: int = 0
    skipped: int = 0
    stale_snapshots: int = 0
    malformed: int = 0
    sync_retries: int = 0
    resyncs_delayed: int = 0
    refreshes: int = 0
    refresh_failures: int = 0


class InstrumentSync:
    def __init__(
        self, inst: Instrument, plugin: VenuePlugin, cover_levels: int = COVER_LEVELS
    ) -> None:
        self.inst = inst
        self.plugin = plugin
        self.rest_mode = plugin.snapshot_source == "rest"
        cut = plugin.snapshot_levels if self.rest_mode else 0
        # a cut snapshot of n levels cannot keep more than n/2 known while the price moves
        self.cover_levels = min(cover_levels, max(1, cut // 2)) if cut else 0
        self.bid_floor = -math.inf  # prices below it (and above ask_ceiling) were not in
        self.ask_ceiling = math.inf  # the snapshot: only those that changed since are known
        self.refreshing = False  # a snapshot to replace the live book is on its way
        self.refresh_wanted = False  # for the runner: fetch one
        self.book = OrderBook(keep_raw=plugin.keep_raw_levels)
        self.state: SyncState = "connecting"
        self.last_id: int | None = None
        self.buffer: list[BookUpdate] = []
        self.counters = SyncCounters()
        self.generation = 0  # bumped on every reset: a REST snapshot of an older one is dropped
        self.snapshot_requested = False
        # REST venues, on a new connection: the snapshot is fetched at the first diff (runner)
        self.first_diff_pending = False
        self.first_after_snapshot = False  # the next delta must straddle the snapshot's id
        self.last_ts_exch: int | None = None

    def reset(self, state: SyncState = "syncing") -> None:
        """Forget the book (connection lost, or a resync starts)."""
        self.state = state
        self.book.clear()
        self.buffer.clear()
        self.last_id = None
        self.generation += 1
        self.snapshot_requested = False
        self.first_diff_pending = False
        self.first_after_snapshot = False
        self.refreshing = self.refresh_wanted = False

    def on_update(self, upd: BookUpdate) -> Publish | Resync | None:
        """What to do after ``upd``. An update whose levels or ids cannot be applied (a price
        that is not a number, a string id: ValueError, TypeError) leaves the book half-changed:
        it is reset and resynced (kind ``malformed``), never published. Other exceptions are
        bugs and are raised."""
        try:
            return self._on_update(upd)
        except (ValueError, TypeError) as exc:  # bad values; a plugin's KeyError is a bug
            return self._fail("malformed", f"update not applicable ({type(exc).__name__}: {exc})")

    def _on_update(self, upd: BookUpdate) -> Publish | Resync | None:
        if upd.is_snapshot:
            if self.rest_mode and self.state == "live":
                if self.refreshing:
                    return self._on_refresh(upd)
                self.snapshot_requested = False  # a refresh given up meanwhile: not needed
                return None
            return self._on_snapshot(upd)
        if self.state != "live":
            if self.rest_mode:
                self.buffer.append(upd)
                if len(self.buffer) > MAX_BUFFERED:
                    return self._fail("buffer", f"{len(self.buffer)} diffs buffered, no snapshot")
            return None
        first = self.first_after_snapshot
        verdict = self.plugin.check_delta(self.last_id, upd, first)
        if verdict is Verdict.SKIP:
            self.counters.skipped += 1
            return None
        if verdict is Verdict.GAP:
            return self._fail_keeping("stale_snapshot" if first else "gap", upd, [upd])
        self.first_after_snapshot = False
        if self.refreshing:
            self.buffer.append(upd)
            if len(self.buffer) > MAX_BUFFERED:
                self._restart_refresh()
        return self._apply(upd, Publish(False))

    def _on_snapshot(self, snap: BookUpdate) -> Publish | Resync | None:
        self.book.replace_raw(snap.bids, snap.asks)
        self._set_coverage(snap)
        self.last_id = snap.last_id
        self.counters.snapshots += 1
        self.snapshot_requested = False
        if snap.ts_exch:
            self.last_ts_exch = snap.ts_exch
        if self.rest_mode:
            buffered, self.buffer = self.buffer, []
            self.last_id, stop, applied = self._stitch(self.book, snap.last_id, buffered)
            self.first_after_snapshot = not applied
            if stop is not None:
                kind = "gap" if applied else "stale_snapshot"
                return self._fail_keeping(kind, buffered[stop], buffered[stop:])
        if self.plugin.book_depth:
            self.book.truncate(self.plugin.book_depth)
        problem = self._check_book(snap)
        if problem:
            return problem
        self.state = "live"
        return Publish(True)

    def _stitch(
        self, book: OrderBook, last_id: int | None, diffs: list[BookUpdate]
    ) -> tuple[int | None, int | None, bool]:
        """Apply to ``book``, a snapshot at ``last_id``, the buffered ``diffs`` that follow it
        (the venue's first-diff rule, then continuity; older ones are skipped). Returns the
        last id applied, the index of the diff that does not follow (None if all did) and
        whether any was applied."""
        applied = False
        for i, upd in enumerate(diffs):
            verdict = self.plugin.check_delta(last_id, upd, not applied)
            if verdict is Verdict.SKIP:
                self.counters.skipped += 1
                continue
            if verdict is Verdict.GAP:
                return last_id, i, applied
            applied = True
            book.apply_raw(upd.bids, upd.asks)
            last_id = self.plugin.next_id(last_id, upd)
        return last_id, None, applied

    def _apply(self, upd: BookUpdate, out: Publish) -> Publish | Resync:
        book = self.book
        book.apply_raw(upd.bids, upd.asks)
        self.last_id = self.plugin.next_id(self.last_id, upd)
        if upd.ts_exch:
            self.last_ts_exch = upd.ts_exch
        out.bids = [(float(p), float(s)) for p, s in upd.bids]
        out.asks = [(float(p), float(s)) for p, s in upd.asks]
        if self.plugin.book_depth:
            gone_bids, gone_asks = book.truncate(self.plugin.book_depth)
            out.bids.extend((p, 0.0) for p in gone_bids)
            out.asks.extend((p, 0.0) for p in gone_asks)
        problem = self._check_book(upd)
        if problem:
            return problem
        if self.cover_levels and not self.refreshing and not self._covered():
            self.refresh_wanted = True
        return out

    # -- refreshing a cut snapshot ----------------------------------------------------------
    def _set_coverage(self, snap: BookUpdate) -> None:
        cut = self.plugin.snapshot_levels
        if not self.cover_levels:
            return
        full_bids, full_asks = len(snap.bids) < cut, len(snap.asks) < cut
        self.bid_floor = -math.inf if full_bids else min(float(p) for p, _ in snap.bids)
        self.ask_ceiling = math.inf if full_asks else max(float(p) for p, _ in snap.asks)

    def _covered(self) -> bool:
        """At least ``cover_levels`` known levels on each side (or the whole side is known)."""
        bids, asks = self.book.bids, self.book.asks
        need = self.cover_levels
        if self.bid_floor != -math.inf and len(bids) - bids.bisect_left(self.bid_floor) < need:
            return False
        return self.ask_ceiling == math.inf or asks.bisect_right(self.ask_ceiling) >= need

    def start_refresh(self) -> None:
        """The runner fetches a snapshot to replace the live book: keep the diffs from now on.
        A retry keeps them too, so a snapshot that lags the stream still finds its place."""
        self.refresh_wanted = False
        if not self.refreshing:
            self.refreshing = True
            self.buffer.clear()

    def _restart_refresh(self) -> None:
        """Too many diffs kept: start over with a fresh snapshot."""
        self.counters.refresh_failures += 1
        self.refreshing = False
        self.buffer.clear()
        self.refresh_wanted = True

    def _on_refresh(self, snap: BookUpdate) -> Publish | None:
        """A new snapshot for the live book: stitched to the diffs kept since the refresh
        started (the rule of a first snapshot), it replaces our book. If it does not fit (older
        than the first kept diff, or than our book), the live book is kept, still right within
        its coverage, the diffs stay kept and the runner is asked for another."""
        self.snapshot_requested = False
        book = OrderBook(keep_raw=self.plugin.keep_raw_levels)
        book.replace_raw(snap.bids, snap.asks)
        last_id, stop, applied = self._stitch(book, snap.last_id, self.buffer)
        if stop is not None:
            return self._retry_refresh()
        if applied and last_id != self.last_id:
            return self._retry_refresh()
        if not applied and self.last_id is not None and last_id < self.last_id:
            return self._retry_refresh()  # older than the book we have: it would go back
        if book.is_crossed() or self.plugin.verify(self.inst, book, snap):
            return self._retry_refresh()
        self.book = book
        self.last_id = last_id
        self.buffer = []
        self.refreshing = False
        # a snapshot newer than every diff kept: the next diff must straddle it
        self.first_after_snapshot = not applied
        self._set_coverage(snap)
        self.counters.refreshes += 1
        self.counters.snapshots += 1
        return Publish(True)

    def _retry_refresh(self) -> None:
        self.counters.refresh_failures += 1
        self.refresh_wanted = True

    def _check_book(self, upd: BookUpdate) -> Resync | None:
        failure = self.plugin.verify(self.inst, self.book, upd)
        if failure:
            return self._fail("checksum", failure)
        if self.book.is_crossed():
            bid, ask = self.book.best_bid(), self.book.best_ask()
            return self._fail("crossed", f"book crossed: bid {bid} >= ask {ask}")
        return None

    def _fail_keeping(self, kind: str, upd: BookUpdate, pending: list[BookUpdate]) -> Resync:
        """``upd`` does not follow the book: resync, keeping ``pending`` (``upd`` and the
        diffs received after it) for the next REST snapshot. Either the snapshot was too old
        (exchanges.md 1.3 step 3: fetch another, keep buffering) or a diff is missing. The next
        snapshot is asked for after these diffs came and may lag the stream: it still finds its
        place in them, and those it covers are skipped. Dropping them would make a lagging
        snapshot too old, and cost a fetch more. At most half the buffer limit is kept, the
        newest (a later start is as good a start), so the limit cannot trip at once."""
        resync = self._fail(kind, self._gap_text(upd))
        if self.rest_mode:
            self.buffer = pending[-KEPT_AFTER_FAILURE:]
        return resync

    def _fail(self, kind: str, reason: str) -> Resync:
        c = self.counters
        if kind in ("gap", "buffer"):
            c.gaps += 1
        elif kind == "checksum":
            c.checksum_failures += 1
        elif kind == "crossed":
            c.crossed += 1
        elif kind == "stale_snapshot":
            c.stale_snapshots += 1
        elif kind == "malformed":
            c.malformed += 1
        c.resyncs += 1
        self.reset("syncing")
        return Resync(reason, kind)

    def _gap_text(self, upd: BookUpdate) -> str:
        return (
            f"continuity broken at id {self.last_id}: update first={upd.first_id} "
            f"last={upd.last_id} prev={upd.prev_id}"
        )


class SyncWaits:
    """How long each book of a connection has been out of sync, for the runner's watchdog.
    ``overdue`` says when to ask again: after ``timeout_s``, then after twice as long each time
    (up to ``MAX_SYNC_WAIT_S``), so a venue that keeps refusing is not asked in a tight loop. A
    new resync (the generation changes) or the book going live starts the count again."""

    def __init__(self, timeout_s: float) -> None:
        self.timeout_s = timeout_s
        self._since: dict[str, tuple[int, float, float]] = {}  # key -> generation, since, wait

    def overdue(self, key: str, live: bool, generation: int, now: float) -> float | None:
        """Seconds waited if it is time to ask again, else None."""
        if live:
            self._since.pop(key, None)
            return None
        gen, since, wait = self._since.get(key, (None, now, self.timeout_s))
        if gen != generation:
            self._since[key] = (generation, now, wait if gen is not None else self.timeout_s)
            return None
        if now - since < wait:
            return None
        self._since[key] = (generation, now, min(wait * 2, MAX_SYNC_WAIT_S))
        return now - since


class ResyncPace:
    """How long to hold back the resync of a book that keeps failing (a venue that keeps
    sending updates that fail their checksum or cannot be applied): the first few in
    ``RESYNC_WINDOW_S`` go at once, then each waits twice as long as the one before, so a
    failing book costs a resubscribe every ``MAX_RESYNC_DELAY_S`` rather than one per round
    trip (and a warning each time)."""

    def __init__(self) -> None:
        self._times: dict[str, list[float]] = {}

    def delay(self, key: str, now: float) -> float:
        """Seconds to wait before the resync of ``key`` asked for at ``now``."""
        times = [t for t in self._times.get(key, ()) if now - t < RESYNC_WINDOW_S]
        times.append(now)
        self._times[key] = times
        extra = len(times) - RESYNC_FREE
        return 0.0 if extra <= 0 else min(MAX_RESYNC_DELAY_S, 2.0 ** (extra - 1))
