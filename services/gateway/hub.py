"""Fan-out from the bus to clients: the subscription index, snapshots, the stats and status
ticks, and the slow-client watchdog.

The index maps a key to the subscriptions that want it: the topic itself for ``depth.*`` and
``bbo.*`` (``depth.all.BTC-USD`` is the consolidated book), ``trade.<venue|*>.<symbol|group|*>``
for trades and ``status.<venue|*>`` for statuses. An incoming message looks up a handful of
keys; nothing on this path awaits anything.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Coroutine, Iterator
from typing import Any

from websockets.asyncio.server import ServerConnection

from common.metrics import ProcessStats
from services.gateway.clients import CLOSE_SLOW, Client, Item, Subscription, outgoing
from services.gateway.demand import DepthDemand
from services.gateway.metrics import LATENCY_SAMPLES_PER_S, GatewayStats
from services.gateway.settings import Settings
from services.gateway.state import MarketState, split_topic, table

log = logging.getLogger("flowbook.gateway")


class Hub:
    def __init__(self, state: MarketState, settings: Settings, stats: GatewayStats) -> None:
        self.state = state
        self.settings = settings
        self.stats = stats
        self.clients: set[Client] = set()
        self.index: dict[str, set[Subscription]] = {}
        self.stats_subs: set[Subscription] = set()
        self.proc = ProcessStats()
        self._proc_sample: dict[str, Any] = self.proc.sample()
        self._last_status: dict[str, str] = {}  # venue -> state last sent to status subscribers
        self._tasks: set[asyncio.Task[Any]] = set()
        self._next_cid = 0
        self._sent_at_tick = (time.monotonic(), 0)
        self.demand: DepthDemand | None = None  # set by the Gateway

    # -- clients ----------------------------------------------------------------------------------
    def full(self) -> bool:
        return len(self.clients) >= self.settings.max_clients

    def add(self, ws: ServerConnection) -> Client:
        self._next_cid += 1
        client = Client(self, ws, self._next_cid)
        self.clients.add(client)
        self.stats.connections += 1
        client.writer = asyncio.get_running_loop().create_task(client.run_writer())
        return client

    def forget(self, client: Client) -> None:
        self.clients.discard(client)

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def register(self, sub: Subscription) -> None:
        if sub.spec.channel == "stats":
            self.stats_subs.add(sub)
            return
        for key in sub.keys:
            self.index.setdefault(key, set()).add(sub)
            if self.demand is not None and sub.spec.channel == "depth":
                self.demand.want(key)

    def unregister(self, sub: Subscription) -> None:
        if sub in self.stats_subs:
            self.stats_subs.discard(sub)
            return
        for key in sub.keys:
            subs = self.index.get(key)
            if subs is not None and sub in subs:
                subs.discard(sub)
                if not subs:
                    del self.index[key]
                if self.demand is not None and sub.spec.channel == "depth":
                    self.demand.release(key)

    def gauges(self) -> dict[str, float]:
        return {
            "clients": float(len(self.clients)),
            "subscriptions": float(sum(len(c.subs) for c in self.clients)),
        }

    # -- the bus side -----------------------------------------------------------------------------
    def on_bus(self, topic: str, msg: dict[str, Any]) -> None:
        """Subscriber callback: record, then offer to every matching subscription."""
        demand = self.demand
        if demand is not None and topic.startswith("depth.") and topic not in demand.followed:
            return  # a longer symbol under a followed prefix (BTC-USDT-PERP under BTC-USDT)
        if not self.state.update(topic, msg):
            return
        kind, venue, symbol = split_topic(topic)
        if kind == "status":
            self._last_status[venue] = str(msg.get("state"))
            self._offer_status(venue, {**msg, "book": "live"}, msg.get("ts_pub"))
            return
        index = self.index
        if not index:
            return
        if kind == "depth" or kind == "bbo":
            subs = index.get(topic)
            if subs:
                item = Item(kind, topic, msg, msg.get("ts_pub"))
                for sub in subs:
                    if sub.awaiting and topic in sub.awaiting:
                        self._deferred_snapshot(sub, topic, msg)
                    else:
                        sub.offer(topic, item)
        elif kind == "trade":
            group = self.state.group(symbol)
            keys = [topic, f"trade.{venue}.*", f"trade.*.{symbol}", "trade.*.*"]
            if group and group != symbol:
                keys += (f"trade.{venue}.{group}", f"trade.*.{group}")
            item = None
            for key in keys:
                subs = index.get(key)
                if subs:
                    if item is None:
                        item = Item("trades", topic, msg, msg.get("ts_pub"))
                    for sub in subs:
                        sub.offer(topic, item)

    def _offer_status(self, venue: str, msg: dict[str, Any], ts_pub: int | None) -> None:
        topic = f"status.{venue}"
        item = None
        for key in (topic, "status.*"):
            subs = self.index.get(key)
            if subs:
                if item is None:
                    item = Item("status", topic, msg, ts_pub)
                for sub in subs:
                    sub.offer(topic, item)

    def on_book(self, name: str, alive: bool) -> None:
        """Subscriber's liveness callback for the book builder."""
        if self.state.set_book_alive(alive):
            log.warning("book builder (%s) is %s", name, "live" if alive else "down")
            self.check_status()
            if not alive:
                self._reoffer_books()

    def _reoffer_books(self) -> None:
        """Book builder down: every depth/bbo subscriber gets its topic with the prices withheld.
        Each comes back when the book builder sends it again (the gateway asks it to)."""
        for key, subs in list(self.index.items()):
            kind = key.partition(".")[0]
            if kind != "depth" and kind != "bbo":
                continue
            msg = self.state.served(key)
            if msg is None:
                continue
            item = Item(kind, key, msg)  # no ts_pub: not a fresh message, not a latency sample
            for sub in subs:
                if not (sub.awaiting and key in sub.awaiting):
                    sub.offer(key, item)

    def check_status(self) -> None:
        """Tell status subscribers about venue states that changed without a status message
        (book builder down, status stale)."""
        now = time.monotonic()
        for venue in self.state.venues():
            current = self.state.venue_state(venue, now)
            last = self._last_status.get(venue)
            self._last_status[venue] = current
            if last is None or last == current:  # first look: the snapshot said it already
                continue
            status = self.state.status.get(venue) or {}
            msg = {
                "venue": venue,
                "state": current,
                "instruments": self.state.instrument_states(venue),
                "last_msg_age_s": status.get("last_msg_age_s"),
                "book": "live" if self.state.book_alive else "down",
            }
            self._offer_status(venue, msg, None)

    # -- snapshots --------------------------------------------------------------------------------
    def snapshots(self, sub: Subscription) -> Iterator[tuple[str | None, dict[str, Any]]]:
        """(slot topic or None, message) to send right after ``subscribed``."""
        spec = sub.spec
        sid = {"id": spec.id} if spec.id is not None else {}
        channel = spec.channel
        if channel in ("depth", "bbo"):
            for topic in sub.keys:
                msg = self.state.served(topic)
                if msg is None and channel == "depth" and self.demand is not None:
                    # followed from now on: the book builder sends it within milliseconds
                    sub.awaiting.add(topic)
                    loop = asyncio.get_running_loop()
                    loop.call_later(self.settings.snapshot_wait_s, self._snapshot_due, sub, topic)
                    continue
                yield topic, self._snapshot(sub, topic, msg)
        elif channel == "trades":
            topics = self.state.trade_topics(spec.venues, spec.symbol)
            trades = self.state.recent_trades(topics, self.settings.trades_ring)
            snap = {
                "type": "snapshot",
                "channel": "trades",
                "venue": spec.venue_echo,
                "symbol": spec.symbol,
                "trades": trades,
            }
            yield None, {**snap, **sid}
        elif channel == "status":
            yield None, {**self.status_snapshot(spec.venues, spec.venue_echo), **sid}
        else:
            snap = {"type": "snapshot", "channel": "stats", "venue": spec.venue_echo}
            yield None, {**snap, **self.stats_payload(spec.venues), **sid}

    def _snapshot(self, sub: Subscription, topic: str, msg: dict[str, Any] | None) -> dict:
        """The depth/bbo snapshot of one topic; ``state: unknown`` if nothing was received."""
        spec = sub.spec
        channel = spec.channel
        if msg is not None:
            snap = outgoing(channel, msg, "snapshot", sub.depth)
        else:
            snap = {"type": "snapshot", "channel": channel, "venue": split_topic(topic)[1]}
            snap["symbol"] = spec.symbol
            snap["state"] = "unknown"
            if channel == "depth":
                snap.update(bids=[], asks=[])
            else:
                snap.update(bid=None, ask=None)
        if spec.id is not None:
            snap["id"] = spec.id
        return snap

    def _snapshot_due(self, sub: Subscription, topic: str) -> None:
        if sub.active and topic in sub.awaiting:
            self._deferred_snapshot(sub, topic, self.state.served(topic))

    def _deferred_snapshot(self, sub: Subscription, topic: str, msg: dict | None) -> None:
        """The snapshot a subscription waited for; its update interval starts now."""
        sub.awaiting.discard(topic)
        sub.client.push(self._snapshot(sub, topic, msg))
        sub.slot(topic).last_sent = time.monotonic()

    def status_snapshot(
        self, venues: tuple[str, ...] | None, echo: str | list[str]
    ) -> dict[str, Any]:
        now = time.monotonic()
        out: dict[str, Any] = {}
        for venue in venues or self.state.venues():
            last = self.state.status.get(venue) or {}
            out[venue] = {
                "state": self.state.venue_state(venue, now),
                "instruments": self.state.instrument_states(venue),
                "last_msg_age_s": last.get("last_msg_age_s"),
            }
        return {
            "type": "snapshot",
            "channel": "status",
            "venue": echo,
            "book": "live" if self.state.book_alive else "down",
            "venues": out,
            "quote_groups": [list(g) for g in self.state.quote_groups],
        }

    # -- stats ------------------------------------------------------------------------------------
    def gateway_stats(self) -> dict[str, Any]:
        s = self.stats
        return {
            "clients": len(self.clients),
            "subscriptions": sum(len(c.subs) for c in self.clients),
            "connections": s.connections,
            "rejected": s.rejected,
            "requests": s.requests,
            "messages_sent": s.messages_sent,
            "bytes_sent": s.bytes_sent,
            "conflated": s.conflated,
            "dropped": s.dropped,
            "trades_dropped": s.trades_dropped,
            "slow_closed": s.slow_closed,
            "errors": dict(s.errors),
            "bus": dict(self.state.bus_messages),
            "latency_us": {"book_to_send": s.latency.summary()},
            "latency_sampled_every": s.latency_every,
            "process": self._proc_sample,
        }

    def stats_payload(self, venues: tuple[str, ...] | None) -> dict[str, Any]:
        """Per-venue stats (from status.<venue>), book builder and gateway stats."""
        now = time.monotonic()
        state = self.state
        per_venue: dict[str, Any] = {}
        for venue in venues or state.venues():
            msg = state.status.get(venue) or {}
            stats = table(msg, "stats")
            per_venue[venue] = {
                "state": state.venue_state(venue, now),
                "last_msg_age_s": msg.get("last_msg_age_s"),
                **stats,
            }
        book_hb = state.heartbeats.get("book") or {}
        book = {
            "state": "live" if state.book_alive else "down",
            "uptime_s": book_hb.get("uptime_s"),
            **table(book_hb, "stats"),
        }
        return {
            "venues": per_venue,
            "book": book,
            "gateway": self.gateway_stats(),
        }

    def stats_tick(self) -> None:
        """Once a second: the stats channel, and status changes without a status message."""
        self._proc_sample = self.proc.sample()
        now, sent = time.monotonic(), self.stats.messages_sent
        then, sent_then = self._sent_at_tick
        self._sent_at_tick = (now, sent)
        if now > then:
            rate = (sent - sent_then) / (now - then)
            self.stats.latency_every = max(1, int(rate // LATENCY_SAMPLES_PER_S))
        self.check_status()
        if not self.stats_subs:
            return
        payloads: dict[tuple[Any, ...], Item] = {}
        for sub in list(self.stats_subs):
            venues, echo = sub.spec.venues, sub.spec.venue_echo
            key = (venues, echo if isinstance(echo, str) else tuple(echo))
            item = payloads.get(key)
            if item is None:
                body = {"venue": echo, **self.stats_payload(venues)}
                item = payloads[key] = Item("stats", "stats", body)
            sub.offer("stats", item)

    def watch_slow(self) -> None:
        """Close clients whose current send has been blocked for ``slow_client_timeout_s``."""
        now = time.monotonic()
        limit = self.settings.slow_client_timeout_s
        for client in list(self.clients):
            since = client.blocked_since
            if since is not None and now - since > limit:
                self.stats.slow_closed += 1
                client.close(CLOSE_SLOW, f"slow client: nothing could be sent for {limit:g}s")

    async def run_ticks(self) -> None:
        interval = self.settings.stats_interval_s
        watch = min(1.0, self.settings.slow_client_timeout_s / 5)
        next_stats = time.monotonic() + interval
        while True:
            await asyncio.sleep(watch if watch < interval else interval)
            try:
                self.watch_slow()
                if time.monotonic() >= next_stats:
                    next_stats += interval
                    if next_stats < time.monotonic():
                        next_stats = time.monotonic() + interval
                    self.stats_tick()
            except Exception:
                log.exception("gateway tick failed")

    async def close_all(self, code: int, reason: str) -> None:
        for client in list(self.clients):
            client.close(code, reason)
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=self.settings.close_timeout_s + 2)
