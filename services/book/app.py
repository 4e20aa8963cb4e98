"""The book builder process: bus I/O around the ``Engine``.

One ``Subscriber`` per enabled venue (prefixes ``book.``, ``trade.``, ``hb.``) feeds the engine;
one ``Publisher("book")`` sends what it builds, answers resync requests from the engine's current
state and sends ``hb.book``. ``depth.*`` goes through a ``Conflator``, and only for topics some
subscriber holds (the PUB is an XPUB that reports subscriptions); a ticker checks liveness
four times a second, and every ``status.<venue>`` goes out once a second, the venues spread
over the second.

A Subscriber per venue rather than one over all of them: one Subscriber's reaction to a
publisher restart (new heartbeat epoch) also marks the *other* publishers' books stale and asks
the restarted one for them, so a restart of one ingest would freeze the other venues' books.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from typing import Any

from common.bus import Publisher, Subscriber, Upstream, covers
from common.codec import BOOK_TRACE
from common.config import Config, ConfigError
from common.metrics import ProcessStats, RateMeter
from services.book.conflate import Conflator
from services.book.engine import Engine, Settings
from services.book.rates import parse_references

log = logging.getLogger("flowbook.book")

PREFIXES = ["book.", "trade.", "hb."]
TICK_S = 0.25
STATUS_EVERY_S = 1.0
KEEP_FACTOR = 5  # mirrors keep 5x the published depth (trimmed past 10x that)


def settings_from(cfg: Config) -> Settings:
    book = cfg.book
    where = f"{cfg.path} [book]"
    keep = book.options.get("keep_levels", book.depth * KEEP_FACTOR)
    if not isinstance(keep, int) or isinstance(keep, bool) or keep < 2 * book.depth:
        # the margin past the published depth: a trimmed book is resnapshotted when its top
        # `depth` levels reach the cut, which with keep == depth would be at every delete
        raise ConfigError(
            f"{where}: keep_levels must be an integer >= 2 x depth ({2 * book.depth})"
        )
    refs = parse_references(book.options.get("reference"), f"{where} reference")
    trace = book.options.get("trace_hops", False)
    if not isinstance(trace, bool):
        raise ConfigError(f"{where}: 'trace_hops' must be true or false, got {trace!r}")
    venues = {v.name: v for v in cfg.enabled_venues()}
    for ref in refs.values():
        v = venues.get(ref.venue)
        if v is None:
            log.warning("reference %s: venue %s is not enabled; 1:1 instead", ref.quote, ref.venue)
        elif ref.base_of_book not in v.bases or ref.quote_of_book != v.quote:
            raise ConfigError(
                f"{where} reference: {ref.venue} does not carry {ref.symbol} (its markets are"
                f" {', '.join(v.bases)} in {v.quote}): add {ref.base_of_book!r} to"
                f" [venues.{ref.venue}] bases"
                + ("" if ref.quote_of_book == v.quote else f", quoted in {ref.quote_of_book}")
            )
    return Settings(
        depth=book.depth,
        stale_after_s=book.stale_after_s,
        quote_groups=book.quote_groups,
        keep=keep,
        references=refs,
        trace_hops=trace,
    )


class BookBuilder:
    def __init__(self, cfg: Config, *, publisher: Publisher | None = None) -> None:
        self.cfg = cfg
        settings = settings_from(cfg)
        venues = cfg.enabled_venues()
        self.engine = Engine(
            settings,
            [v.name for v in venues],
            self._publish,
            self._touch,
            resync=self._resync,
            refresh=self._refresh,
            forget=self._forget,
            wake=self._wake,
        )
        self.publisher = publisher or Publisher(
            "book", cfg.book.pub, cfg.book.control, track_subscriptions=True
        )
        self.subs: dict[str, Subscriber] = {}
        for v in venues:
            self.subs[v.name] = Subscriber(
                [Upstream(v.pub, v.control, v.name)],
                PREFIXES,
                functools.partial(self.engine.on_message, v.name),
                on_stale=self.engine.on_stale,
                on_upstream=self.engine.set_upstream,
                stale_after_s=cfg.book.stale_after_s,
                trace=BOOK_TRACE if settings.trace_hops else None,
            )
        self.proc = ProcessStats()
        self.rate_in = RateMeter()
        self.rate_out = RateMeter()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._conflator: Conflator | None = None
        self._wake_pending = False

    # -- hooks of the engine ----------------------------------------------------------------
    def _publish(self, topic: str, body: dict[str, Any]) -> None:
        self.publisher.publish(topic, body)

    def _touch(self, topic: str) -> None:
        """Conflated ``depth.*`` is built only while some subscriber receives the topic."""
        if self._conflator is not None and self.publisher.wanted(topic):
            self._conflator.touch(topic)

    def _on_subscription(self, prefix: str, added: bool) -> None:
        """A new subscription: send its depth topics' current value once, even if unchanged
        since it was last published (the subscriber was not there to get it)."""
        if not added or self._conflator is None:
            return
        for topic in self.engine.depth_topics():
            if covers(prefix, topic, self.engine.has_depth_topic):
                self.engine.forget_published(topic)
                self._conflator.touch(topic)

    def _resync(self, venue: str, topic: str, reason: str) -> None:
        """Ask the venue's ingest for a fresh snapshot of ``topic`` (our copy is unusable)."""
        self.subs[venue].resync(topic, reason)

    def _forget(self, venue: str, topic: str) -> None:
        """The venue's ingest no longer carries ``topic``."""
        self.subs[venue].forget(topic)

    def _refresh(self, venue: str, topic: str) -> None:
        """Ask the venue's ingest for a fresh snapshot of ``topic``; our copy stays in use."""
        self.subs[venue].request_snapshot(topic)

    def _wake(self) -> None:
        if self._loop is not None and not self._wake_pending:
            self._wake_pending = True
            self._loop.call_soon(self._flush_status)

    def _flush_status(self) -> None:
        self._wake_pending = False
        self.engine.flush_status()

    # -- running ----------------------------------------------------------------------------
    async def run(self, stop: asyncio.Event | None = None) -> None:
        loop = asyncio.get_running_loop()
        self._loop = loop
        self._conflator = Conflator(
            loop, self.cfg.book.depth_interval_ms / 1000.0, self.engine.depth_message
        )
        self.publisher.snapshot_provider = self.engine.snapshots
        self.publisher.on_subscription = self._on_subscription
        self.publisher.is_topic = self.engine.has_depth_topic
        self.publisher.attach(loop)
        for sub in self.subs.values():
            sub.start(loop)
        log.info(
            "book builder up: pub %s control %s, following %s",
            self.cfg.book.pub,
            self.cfg.book.control,
            ", ".join(self.subs) or "no venue",
        )
        tasks = [
            loop.create_task(self.publisher.heartbeat_loop(self.stats)),
            loop.create_task(self._ticker()),
            loop.create_task(self._status_round()),
        ]
        try:
            if stop is None:
                await asyncio.Future()
            else:
                await stop.wait()
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _ticker(self) -> None:
        while True:
            try:
                self.engine.tick()
            except Exception:
                log.exception("book builder tick failed")
            await asyncio.sleep(TICK_S)

    async def _status_round(self) -> None:
        """Every venue's status once per ``STATUS_EVERY_S``, one venue at a time and evenly
        spread: each carries its ingest's statistics (a few KB), and all of them at once made
        a ~0.5 ms burst that the bbo messages behind it waited for, here and in the gateway."""
        names = list(self.engine.venues)
        if not names:
            return
        loop = asyncio.get_running_loop()
        pause = STATUS_EVERY_S / len(names)
        due = loop.time()
        while True:
            for name in names:
                try:
                    self.engine.publish_status(name)
                except Exception:
                    log.exception("status of %s failed", name)
                # absolute times: late wake-ups do not add up over a round; after a long
                # stall the round restarts from now instead of catching up in a burst
                due = max(due + pause, loop.time() - STATUS_EVERY_S)
                await asyncio.sleep(max(0.0, due - loop.time()))

    def stats(self) -> dict[str, Any]:
        now = time.monotonic()
        sub: dict[str, int] = {}
        for s in self.subs.values():
            for k, v in s.stats.as_dict().items():
                sub[k] = sub.get(k, 0) + v
        self.rate_in.count = self.engine.messages_in
        self.rate_out.count = self.publisher.messages
        stats = self.engine.stats()
        stats.update(
            {
                "messages_out": self.publisher.messages,
                "msg_rate_in": self.rate_in.rate(now),
                "msg_rate_out": self.rate_out.rate(now),
                "subscriber": sub,
                "resyncs_requested": sub.get("resyncs", 0),
                "resync_requests_served": self.publisher.resync_requests,
                "conflation_pending": self._conflator.pending() if self._conflator else 0,
                "process": self.proc.sample(),
            }
        )
        return stats

    def close(self) -> None:
        if self._conflator is not None:
            self._conflator.close()
        for sub in self.subs.values():
            with contextlib.suppress(Exception):
                sub.close()
        self.publisher.close()
