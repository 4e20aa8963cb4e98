"""The ingest runner: all I/O of one venue process, the same for every venue.

Per connection: connect, subscribe, read, app-level keepalive, a no-data watchdog, planned
reconnects, backoff. Per instrument: the sync state machine (``sync.py``) fed with live frames
and with REST snapshots injected as synthetic messages. Everything valid goes on the bus.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import WebSocketException

from common.bus import Publisher
from common.codec import levels_out, topic
from common.config import ConfigError, VenueConfig
from common.metrics import LatencyHistogram, ProcessStats, RateMeter
from common.model import (
    BookUpdate,
    ConnectionGap,
    ConnectionSpec,
    HttpRequest,
    Instrument,
    Reconnect,
    Reply,
    TradeBatch,
)
from services.ingest.backoff import Backoff
from services.ingest.recorder import Recorder
from services.ingest.rest import SNAPSHOT_DEADLINE_S, NotWanted, RestClient, RestError
from services.ingest.sync import (
    COVER_LEVELS,
    InstrumentSync,
    Publish,
    Resync,
    ResyncPace,
    SyncWaits,
)
from services.ingest.venue import VenueError, VenuePlugin

log = logging.getLogger("flowbook.ingest")

MAX_METADATA_PAGES = 100  # a venue that keeps returning a cursor is broken, not large
# after a checksum failure (of a venue whose checksum uses metadata), the metadata is read again
# at most this often; the resync waits for that read at most METADATA_WAIT_S
METADATA_RELOAD_EVERY_S = 60.0
METADATA_WAIT_S = 5.0
FIRST_DIFF_WAIT_S = 2.0  # REST venues: a new connection's snapshot waits for a diff this long


@dataclass
class _Conn:
    spec: ConnectionSpec
    ws: ClientConnection
    last_rx: float
    ops: list[float] = field(default_factory=list)  # when each subscribe request went out


VENUES_DIR = Path(__file__).resolve().parent / "venues"


def load_plugin(cfg: VenueConfig) -> VenuePlugin:
    """The venue's plugin, its own options checked; a ConfigError naming the plugins there are
    for a name that is not one."""
    name = cfg.plugin.replace("-", "_")
    available = sorted(p.stem for p in VENUES_DIR.glob("*.py") if not p.stem.startswith("_"))
    if name not in available:
        raise ConfigError(
            f"[venues.{cfg.name}]: no venue plugin {cfg.plugin!r} (plugins: {', '.join(available)};"
            f' a venue named otherwise sets plugin = "<one of them>")'
        )
    module = importlib.import_module(f"services.ingest.venues.{name}")
    plugin = module.PLUGIN(cfg)
    if not cfg.rest_url:  # every plugin reads its instruments (and most their books) over REST
        raise ConfigError(f"[venues.{cfg.name}]: missing required key 'rest_url'")
    return plugin


class IngestRunner:
    def __init__(
        self,
        cfg: VenueConfig,
        plugin: VenuePlugin,
        publisher: Publisher,
        cover_levels: int = COVER_LEVELS,
    ) -> None:
        self.cfg = cfg
        self.cover_levels = cover_levels  # levels a side a cut REST snapshot must cover
        self.plugin = plugin
        self.venue = cfg.name
        self.bus = publisher
        self.bus.snapshot_provider = self.snapshots_for
        self.rest = RestClient(self.venue, plugin.rest_weight_per_minute)
        self.recorder = Recorder(cfg.record_dir, self.venue) if cfg.record_dir else None
        self.syncs: dict[str, InstrumentSync] = {}
        self.conn_state: dict[str, str] = {}
        self.metadata_error: str | None = "loading instruments"
        self.frames = RateMeter()
        self.bytes = 0
        self.parse_errors = 0
        self.venue_errors = 0
        self.last_venue_error: str | None = None
        self.reconnects = 0
        self.budget_reconnects = 0  # resyncs done by reconnecting: the subscribe budget was near
        self.metadata_reloads = 0
        self._snapshot_backoff: dict[str, Backoff] = {}  # native -> waits between failed fetches
        self._metadata_reload: asyncio.Task | None = None
        self._metadata_reload_later: asyncio.TimerHandle | None = None
        self._metadata_reloaded_at = -METADATA_RELOAD_EVERY_S
        self.trades = 0
        self.latency = LatencyHistogram()
        self.proc = ProcessStats()
        self._tasks: set[asyncio.Task] = set()
        self._conns: dict[str, _Conn] = {}  # native symbol -> its open connection
        # kept across connections: where a retry is a reconnect (Coinbase), its back-off holds
        self.sync_waits = SyncWaits(plugin.sync_timeout_s)
        self.resync_pace = ResyncPace()
        self.refresh_pace = ResyncPace()  # refreshes do not use up the resyncs' allowance

    # -- start-up ---------------------------------------------------------------------------
    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        self.bus.attach(loop)
        self._spawn(self.bus.heartbeat_loop(self.stats))
        if self.recorder:
            self._spawn(self.recorder.flush_loop())
        instruments = await self._load_instruments()
        for inst in instruments:
            self.syncs[inst.native] = InstrumentSync(inst, self.plugin, self.cover_levels)
        specs = self.plugin.connections(instruments)
        await asyncio.gather(*(self._connection_loop(spec) for spec in specs))

    async def _fetch_metadata(self) -> list[Instrument]:
        """Download the venue's instrument metadata and have the plugin read it."""
        bodies = []
        for req in self.plugin.metadata_requests():
            page: HttpRequest | None = req
            while page is not None:
                if len(bodies) >= MAX_METADATA_PAGES:
                    raise ValueError(f"more than {MAX_METADATA_PAGES} pages")
                body = await self.rest.get(page)
                if self.recorder:
                    self.recorder.rest("meta", page.url, page.params, body)
                bodies.append(body)
                page = self.plugin.metadata_next(page, body)
        return self.plugin.parse_metadata(bodies)

    async def _load_instruments(self) -> list[Instrument]:
        backoff = Backoff()
        while True:
            try:
                instruments = await self._fetch_metadata()
                if not instruments:
                    # exiting would make supervisord restart us in a loop, each time downloading
                    # the metadata again: wait here, as for a failed download
                    raise ValueError(
                        f"none of {list(self.cfg.bases)} trades against {self.cfg.quote} here"
                    )
            except Exception as exc:  # any shape of answer: a restart loop would not help
                self.metadata_error = f"instrument metadata: {type(exc).__name__}: {exc}"
                delay = backoff.next_delay()
                log.warning(
                    "%s: %s; retrying in %.1fs",
                    self.venue,
                    self.metadata_error,
                    delay,
                    exc_info=not isinstance(exc, RestError | ValueError),
                )
                await asyncio.sleep(delay)
                continue
            missing = set(self.cfg.bases) - {i.base for i in instruments}
            if missing:
                log.warning("%s: no %s market for %s", self.venue, self.cfg.quote, sorted(missing))
            log.info(
                "%s: %d instruments: %s",
                self.venue,
                len(instruments),
                " ".join(i.symbol for i in instruments),
            )
            self.metadata_error = None
            return instruments

    # -- connections ------------------------------------------------------------------------
    async def _connection_loop(self, spec: ConnectionSpec) -> None:
        label = spec.label or spec.url
        backoff = Backoff()
        while True:
            self.conn_state[label] = "connecting"
            try:
                async with connect(
                    spec.url,
                    max_size=self.plugin.max_frame_bytes,
                    open_timeout=10,
                    close_timeout=2,
                    ping_interval=20,
                    ping_timeout=20,
                ) as ws:
                    backoff.connected()
                    self.conn_state[label] = "open"
                    log.info("%s: connected %s", self.venue, label)
                    await self._serve(spec, ws)
                    reason = "closed"
            except (OSError, WebSocketException, TimeoutError) as exc:
                reason = f"{type(exc).__name__}: {exc}"
            self.conn_state[label] = "down"
            self.reconnects += 1
            self._reset_books(spec.instruments, f"connection {reason}")
            delay = backoff.next_delay()
            log.warning(
                "%s: connection %s lost (%s); reconnecting in %.2fs",
                self.venue,
                label,
                reason,
                delay,
            )
            await asyncio.sleep(delay)

    async def _serve(self, spec: ConnectionSpec, ws: ClientConnection) -> None:
        for inst in spec.instruments:
            self.syncs[inst.native].reset("syncing")
        conn = _Conn(spec, ws, time.monotonic())
        for inst in spec.instruments:
            self._conns[inst.native] = conn
        for msg in spec.subscribe:
            await ws.send(msg)
        conn.ops += [time.monotonic()] * len(spec.subscribe)
        for inst in spec.instruments:
            self._snapshot_once_streaming(self.syncs[inst.native])
        parser = self.plugin.new_parser(spec)
        watch = asyncio.create_task(self._watchdog(conn))
        try:
            async for frame in ws:
                ts_recv = time.time_ns()
                conn.last_rx = time.monotonic()
                self.frames.count += 1
                self.bytes += len(frame)
                if self.recorder:
                    self.recorder.write(spec.label, ts_recv, frame)
                try:
                    events = parser.parse(frame, ts_recv)
                except VenueError as exc:
                    self._venue_error(str(exc), spec.label)
                    continue
                except Exception as exc:
                    self.parse_errors += 1
                    log.warning(
                        "%s: malformed frame skipped (%s: %s): %.200r",
                        self.venue,
                        type(exc).__name__,
                        exc,
                        frame,
                    )
                    continue
                for ev in events:
                    if type(ev) is BookUpdate:
                        ev.ts_recv = ts_recv
                        self._on_book(ev)
                    elif type(ev) is TradeBatch:
                        self._on_trades(ev, ts_recv)
                    elif type(ev) is Reply:
                        await ws.send(ev.text)
                    elif type(ev) is Reconnect:
                        log.info("%s: venue asks to reconnect: %s", self.venue, ev.reason)
                        return
                    elif type(ev) is ConnectionGap:
                        for inst in spec.instruments:  # each book is resynced by the reconnect
                            self.syncs[inst.native].counters.gaps += 1
                            self.syncs[inst.native].counters.resyncs += 1
                        log.warning(
                            "%s: %s: resync every book on %s", self.venue, ev.reason, spec.label
                        )
                        return
        finally:
            watch.cancel()
            for inst in spec.instruments:
                if self._conns.get(inst.native) is conn:
                    del self._conns[inst.native]

    async def _watchdog(self, conn: _Conn) -> None:
        """No data for ``watchdog_s``, or past the planned lifetime: close, reconnect. Also
        sends the venue's app-level ping."""
        spec, ws = conn.spec, conn.ws
        opened = last_ping = time.monotonic()
        plugin = self.plugin
        waits = self.sync_waits
        while True:
            await asyncio.sleep(0.5)
            now = time.monotonic()
            for inst in spec.instruments:
                sync = self.syncs[inst.native]
                waited = waits.overdue(inst.native, sync.state == "live", sync.generation, now)
                if waited is not None:
                    self._retry_sync(sync, waited)
            if now - conn.last_rx > plugin.watchdog_s:
                log.warning(
                    "%s: no data for %.1fs on %s: reconnecting",
                    self.venue,
                    now - conn.last_rx,
                    spec.label,
                )
                break
            if plugin.max_connection_age_s and now - opened > plugin.max_connection_age_s:
                log.info("%s: planned reconnect of %s", self.venue, spec.label)
                break
            if plugin.ping_interval_s and now - last_ping >= plugin.ping_interval_s:
                last_ping = now
                with contextlib.suppress(WebSocketException):
                    await ws.send(plugin.ping_message)
        # a stalled peer may never answer a close handshake: drop the TCP connection
        ws.transport.abort()

    def _venue_error(self, message: str, label: str) -> None:
        """The exchange said no (a refused subscription, a limit): an error, not noise."""
        self.venue_errors += 1
        self.last_venue_error = f"{label}: {message}"
        if self.venue_errors <= 100 or self.venue_errors % 1000 == 0:
            log.error("%s: the exchange reports an error on %s: %s", self.venue, label, message)

    # -- books and trades -------------------------------------------------------------------
    def _on_book(self, upd: BookUpdate) -> None:
        sync = self.syncs.get(upd.native)
        if sync is None:
            return
        action = sync.on_update(upd)
        if action is not None:
            self._act(sync, action, upd.ts_recv)
        elif sync.first_diff_pending and sync.buffer:
            self._request_snapshot(sync)
        if sync.refresh_wanted:
            self._refresh(sync)

    def _refresh(self, sync: InstrumentSync) -> None:
        """The live book's REST snapshot no longer covers enough levels: fetch another while the
        book stays live (paced like resyncs; sync.py has the rule)."""
        sync.start_refresh()
        delay = self.refresh_pace.delay(sync.inst.native, time.monotonic())
        log.info(
            "%s %s: price reached the end of the snapshot: refreshing it%s",
            self.venue,
            sync.inst.symbol,
            f" in {delay:g}s" if delay else "",
        )
        self._request_snapshot_in(delay, sync, lambda: sync.refreshing)

    def _snapshot_once_streaming(self, sync: InstrumentSync) -> None:
        """REST venues, on a new connection: the snapshot is fetched once the stream has
        delivered a first diff of the book (``_on_book``), as Binance's procedure orders it
        (exchanges.md 1.3): a snapshot taken before the stream starts can be older than its
        first event; it would be published live, then found too old and dropped. A book with
        no diff ``FIRST_DIFF_WAIT_S`` after the connection opened (a quiet market) gets its
        snapshot then; so does one whose stream starts later than that, which may then be
        found too old once, as before. Only the first diff after connecting fetches: a resync
        later has its own fetch, paced (``_act``)."""
        if not sync.rest_mode:
            return
        sync.first_diff_pending = True
        self._request_snapshot_in(FIRST_DIFF_WAIT_S, sync, lambda: sync.first_diff_pending)

    def _request_snapshot_in(
        self, delay: float, sync: InstrumentSync, still_wanted: Callable[[], bool]
    ) -> None:
        """``_request_snapshot`` after ``delay``, if the book was not reset meanwhile, is still
        connected and ``still_wanted()``."""
        current = self._while_current(sync)

        def fetch() -> None:
            if current() and still_wanted():
                self._request_snapshot(sync)

        if delay:
            asyncio.get_running_loop().call_later(delay, fetch)
        else:
            fetch()

    def _while_current(self, sync: InstrumentSync) -> Callable[[], bool]:
        """True while the book is not reset (``generation``) and its connection is open: a
        snapshot asked for now is then still of use."""
        generation, native = sync.generation, sync.inst.native
        return lambda: sync.generation == generation and native in self._conns

    def _request_snapshot(self, sync: InstrumentSync) -> None:
        """REST venues: fetch a snapshot now; diffs are buffered meanwhile and stitched to it.
        Whatever asked for it, the first diff after connecting need not ask again."""
        sync.first_diff_pending = False
        if sync.rest_mode and not sync.snapshot_requested:
            sync.snapshot_requested = True
            self._spawn(self._fetch_snapshot(sync))

    def _act(self, sync: InstrumentSync, action: Publish | Resync, ts_recv: int) -> None:
        inst = sync.inst
        if type(action) is Publish:
            if action.snapshot:
                self.bus.publish(
                    topic("book", self.venue, inst.symbol), self._snapshot_body(sync, ts_recv)
                )
            else:
                self.bus.publish(
                    topic("book", self.venue, inst.symbol),
                    {
                        "type": "delta",
                        "venue": self.venue,
                        "symbol": inst.symbol,
                        "state": "live",
                        "bids": levels_out(action.bids),
                        "asks": levels_out(action.asks),
                        "ts_exch": sync.last_ts_exch,
                        "ts_recv": ts_recv,
                    },
                )
            self.latency.record_ns(time.time_ns() - ts_recv)
            return
        if action.kind == "malformed":
            self.parse_errors += 1
        self._publish_state(sync, action.kind, ts_recv)
        delay = self.resync_pace.delay(inst.native, time.monotonic())
        log.warning(
            "%s %s: %s (%s): resync%s",
            self.venue,
            inst.symbol,
            action.kind,
            action.reason,
            f" in {delay:g}s (this book keeps failing)" if delay else "",
        )
        if delay:
            sync.counters.resyncs_delayed += 1
        reload = None
        if action.kind == "checksum" and self.plugin.checksum_uses_metadata:
            reload = self._reload_metadata_soon()
        generation = sync.generation
        if reload is not None:
            self._spawn(self._resync_after(reload, delay, sync, generation))
        else:
            self._resync_in(delay, sync, generation)

    async def _resync_after(
        self, reload: asyncio.Task, delay: float, sync: InstrumentSync, generation: int
    ) -> None:
        """Resync once the metadata read under way is done (its snapshot is then checked with
        what it read), or after ``METADATA_WAIT_S`` if the read takes longer."""
        await asyncio.wait({reload}, timeout=METADATA_WAIT_S)  # never raises for ``reload``
        self._resync_in(delay, sync, generation)

    def _resync_in(self, delay: float, sync: InstrumentSync, generation: int) -> None:
        if delay:
            asyncio.get_running_loop().call_later(delay, self._resync, sync, generation)
        else:
            self._resync(sync, generation)

    def _reload_metadata_soon(self) -> asyncio.Task | None:
        """A checksum can fail because the metadata it is computed with went stale (Kraken
        prints numbers with the pair's precision, which the venue may change): read the
        metadata again. Returns the read under way, if one is (the resync waits for it). At
        most one every ``METADATA_RELOAD_EVERY_S``: a failure sooner than that schedules one
        for the end of that time instead."""
        if self._metadata_reload is not None:
            return self._metadata_reload
        wait = self._metadata_reloaded_at + METADATA_RELOAD_EVERY_S - time.monotonic()
        if wait > 0:
            if self._metadata_reload_later is None:
                self._metadata_reload_later = asyncio.get_running_loop().call_later(
                    wait, self._start_metadata_reload
                )
            return None
        return self._start_metadata_reload()

    def _start_metadata_reload(self) -> asyncio.Task:
        if self._metadata_reload_later is not None:
            self._metadata_reload_later.cancel()
            self._metadata_reload_later = None
        if self._metadata_reload is not None:
            return self._metadata_reload
        self._metadata_reloaded_at = time.monotonic()
        self._metadata_reload = self._spawn(self._reload_metadata())
        return self._metadata_reload

    async def _reload_metadata(self) -> None:
        try:
            instruments = await self._fetch_metadata()
            self.metadata_reloads += 1
            self._note_metadata_changes(instruments)
        except Exception as exc:  # best effort: the next failure after the wait tries again
            log.warning(
                "%s: reading the instrument metadata again failed (%s: %s)",
                self.venue,
                type(exc).__name__,
                exc,
            )
        finally:
            self._metadata_reload = None

    def _note_metadata_changes(self, instruments: list[Instrument]) -> None:
        for inst in instruments:
            sync = self.syncs.get(inst.native)
            if sync is None:
                continue  # a new market needs a restart to be followed
            old = sync.inst
            if (old.price_precision, old.qty_precision) != (
                inst.price_precision,
                inst.qty_precision,
            ):
                log.warning(
                    "%s %s: the venue changed its precision: price %s -> %s decimals, "
                    "size %s -> %s",
                    self.venue,
                    inst.symbol,
                    old.price_precision,
                    inst.price_precision,
                    old.qty_precision,
                    inst.qty_precision,
                )
                sync.inst = inst

    def _resync(self, sync: InstrumentSync, generation: int) -> None:
        """Get a fresh snapshot of a book reset at ``generation`` (not if it was reset again
        since: a reconnect brings its own)."""
        if sync.generation != generation:
            return
        if sync.rest_mode:
            if self._conns.get(sync.inst.native) is not None:
                self._request_snapshot(sync)
        else:
            self._resubscribe(sync)

    def _retry_sync(self, sync: InstrumentSync, waited: float) -> None:
        """A book that stayed out of sync: ask again, as after a gap."""
        sync.counters.sync_retries += 1
        log.warning(
            "%s %s: still %s after %.0fs: asking for a snapshot again",
            self.venue,
            sync.inst.symbol,
            sync.state,
            waited,
        )
        if not sync.rest_mode:
            self._resubscribe(sync)
        elif not sync.snapshot_requested:  # else a fetch is under way, with its own retries
            self._request_snapshot(sync)

    def _resubscribe(self, sync: InstrumentSync) -> None:
        conn = self._conns.get(sync.inst.native)
        if conn is None:
            return  # not connected: the reconnect brings a fresh snapshot
        msgs = self.plugin.resubscribe(sync.inst)
        if msgs is None:
            self._spawn(conn.ws.close(4001, "resync"))
            return
        budget = self.plugin.subscribe_ops_per_hour
        if budget:
            now = time.monotonic()
            conn.ops = [t for t in conn.ops if now - t < 3600.0]
            if len(conn.ops) + len(msgs) > budget * 0.9:
                self.budget_reconnects += 1
                log.warning(
                    "%s %s: %d subscribe requests on %s in the last hour, of %d allowed: "
                    "reconnecting instead of resubscribing",
                    self.venue,
                    sync.inst.symbol,
                    len(conn.ops),
                    conn.spec.label or conn.spec.url,
                    budget,
                )
                self._spawn(conn.ws.close(4002, "subscribe budget"))
                return
            conn.ops += [now] * len(msgs)
        for m in msgs:
            self._spawn(conn.ws.send(m))

    def _publish_state(self, sync: InstrumentSync, reason: str, ts_recv: int) -> None:
        inst = sync.inst
        self.bus.publish(
            topic("book", self.venue, inst.symbol),
            {
                "type": "state",
                "venue": self.venue,
                "symbol": inst.symbol,
                "state": sync.state,
                "reason": reason,
                "ts_recv": ts_recv,
            },
        )

    def _snapshot_body(self, sync: InstrumentSync, ts_recv: int) -> dict[str, Any]:
        book = sync.book
        return {
            "type": "snapshot",
            "venue": self.venue,
            "symbol": sync.inst.symbol,
            "state": "live",
            "bids": levels_out(book.top_bids(len(book.bids))),
            "asks": levels_out(book.top_asks(len(book.asks))),
            "ts_exch": sync.last_ts_exch,
            "ts_recv": ts_recv,
        }

    def _reset_books(self, instruments: list[Instrument], reason: str) -> None:
        now = time.time_ns()
        for inst in instruments:
            sync = self.syncs[inst.native]
            sync.reset("syncing")
            self._publish_state(sync, reason, now)

    async def _fetch_snapshot(self, sync: InstrumentSync) -> None:
        generation = sync.generation
        still_wanted = self._while_current(sync)
        req = self.plugin.snapshot_request(sync.inst)
        try:
            body = await self.rest.get(
                req, still_wanted=still_wanted, deadline_s=SNAPSHOT_DEADLINE_S
            )
            if self.recorder:
                self.recorder.rest("snapshot", req.url, req.params, body)
        except NotWanted:
            return  # the book was reset while this waited its turn: its new fetch is asked for
        except RestError as exc:
            log.error("%s %s: snapshot failed: %s", self.venue, sync.inst.symbol, exc)
            await self._retry_snapshot_later(sync, still_wanted)
            return
        if sync.generation != generation:
            return
        ts_recv = time.time_ns()
        try:
            snap = self.plugin.parse_snapshot(sync.inst, body, ts_recv)
        except Exception as exc:
            self.parse_errors += 1
            log.warning(
                "%s %s: malformed snapshot (%s): %.200r", self.venue, sync.inst.symbol, exc, body
            )
            await self._retry_snapshot_later(sync, still_wanted)
            return
        self._snapshot_backoff.pop(sync.inst.native, None)
        snap.ts_recv = ts_recv
        self._on_book(snap)

    async def _retry_snapshot_later(
        self, sync: InstrumentSync, still_wanted: Callable[[], bool]
    ) -> None:
        """A snapshot refused or unreadable: ask again after a wait that doubles (1 s to 60 s,
        jittered) while it keeps failing, so a venue that says no is not asked every second."""
        backoff = self._snapshot_backoff.setdefault(
            sync.inst.native, Backoff(base_s=1.0, cap_s=60.0)
        )
        await asyncio.sleep(max(backoff.next_delay(), 0.5))
        if still_wanted():
            sync.snapshot_requested = False
            self._request_snapshot(sync)

    def _on_trades(self, batch: TradeBatch, ts_recv: int) -> None:
        by_native: dict[str, list[dict[str, Any]]] = {}
        for t in batch.trades:
            by_native.setdefault(t.native, []).append(
                {
                    "price": t.price,
                    "size": t.size,
                    "side": t.side,
                    "id": t.trade_id,
                    "ts_exch": t.ts_exch,
                }
            )
        for native, trades in by_native.items():
            sync = self.syncs.get(native)
            if sync is None:
                continue
            self.trades += len(trades)
            symbol = sync.inst.symbol
            self.bus.publish(
                topic("trade", self.venue, symbol),
                {
                    "type": "trades",
                    "venue": self.venue,
                    "symbol": symbol,
                    "trades": trades,
                    "ts_recv": ts_recv,
                },
            )

    # -- resync service and stats -----------------------------------------------------------
    def snapshots_for(self, prefixes: list[str]):
        now = time.time_ns()
        for sync in self.syncs.values():
            t = topic("book", self.venue, sync.inst.symbol)
            if not any(t.startswith(p) for p in prefixes):
                continue
            if sync.state == "live":
                yield t, self._snapshot_body(sync, now)
            else:
                yield (
                    t,
                    {
                        "type": "state",
                        "venue": self.venue,
                        "symbol": sync.inst.symbol,
                        "state": sync.state,
                        "reason": "resync requested",
                        "ts_recv": now,
                    },
                )

    def venue_state(self) -> str:
        if self.metadata_error or not self.conn_state:
            return "down"
        if any(s != "open" for s in self.conn_state.values()):
            return "down" if all(s != "open" for s in self.conn_state.values()) else "syncing"
        return "live" if all(s.state == "live" for s in self.syncs.values()) else "syncing"

    def stats(self) -> dict[str, Any]:
        now = time.monotonic()
        instruments = {}
        for sync in self.syncs.values():
            c = sync.counters
            instruments[sync.inst.symbol] = {
                "state": sync.state,
                "gaps": c.gaps,
                "resyncs": c.resyncs,
                "checksum_failures": c.checksum_failures,
                "crossed": c.crossed,
                "sync_retries": c.sync_retries,
                "resyncs_delayed": c.resyncs_delayed,
                "refreshes": c.refreshes,
                "refresh_failures": c.refresh_failures,
                "bids": len(sync.book.bids),
                "asks": len(sync.book.asks),
            }
        return {
            "venue": self.venue,
            "venue_state": self.venue_state(),
            "error": self.metadata_error,
            "venue_errors": self.venue_errors,
            "last_venue_error": self.last_venue_error,
            "connections": dict(self.conn_state),
            "instruments": instruments,
            "frames": self.frames.count,
            "msg_rate": self.frames.rate(now),
            "bytes": self.bytes,
            "trades": self.trades,
            "parse_errors": self.parse_errors,
            "reconnects": self.reconnects,
            "budget_reconnects": self.budget_reconnects,
            "metadata_reloads": self.metadata_reloads,
            "recording": self.recorder.stats() if self.recorder else None,
            "gaps": sum(s.counters.gaps for s in self.syncs.values()),
            "resyncs": sum(s.counters.resyncs for s in self.syncs.values()),
            "checksum_failures": sum(s.counters.checksum_failures for s in self.syncs.values()),
            "rest_calls": self.rest.calls,
            "rest_rate_limited": self.rest.rate_limited,
            "latency_us": {"ingest": self.latency.summary()},
            "process": self.proc.sample(),
        }

    def _spawn(self, coro) -> asyncio.Task:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task
