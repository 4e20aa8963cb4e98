"""A bus client for tests: follows publishers with the real ``common.bus.Subscriber`` on its own
event-loop thread and mirrors every ``book.*`` topic, so a test can compare books."""

from __future__ import annotations

import asyncio
import threading
from collections import defaultdict
from typing import Any

from common.book import OrderBook
from common.bus import Subscriber, Upstream


class BusMirror:
    def __init__(self, upstreams: list[Upstream], prefixes: list[str]) -> None:
        self.upstreams = upstreams
        self.prefixes = prefixes
        self.books: dict[str, OrderBook] = {}
        self.states: dict[str, str] = {}
        self.state_log: dict[str, list[str]] = defaultdict(list)  # every change of state
        # the ts_recv (ns) of the message behind each change: timed by the publisher, not by us
        self.state_times: dict[str, list[int | None]] = defaultdict(list)
        self.latest: dict[str, dict[str, Any]] = {}
        self.counts: dict[str, int] = defaultdict(int)
        self.heartbeats: dict[str, dict[str, Any]] = {}
        self.lock = threading.Lock()
        self.loop = asyncio.new_event_loop()
        self.sub: Subscriber | None = None
        self._ready = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()
        self._ready.wait(10)

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.sub = Subscriber(
            self.upstreams, self.prefixes, self._on_message, on_stale=self._on_stale
        )
        self.sub.start(self.loop)
        self._ready.set()
        self.loop.run_forever()

    def _set_state(self, topic: str, state: str, ts_recv: int | None = None) -> None:
        if self.states.get(topic) != state:
            self.state_log[topic].append(state)
            self.state_times[topic].append(ts_recv)
        self.states[topic] = state

    def _on_message(self, topic: str, msg: dict[str, Any]) -> None:
        with self.lock:
            self.counts[topic] += 1
            self.latest[topic] = msg
            if topic.startswith("hb."):
                self.heartbeats[topic[3:]] = msg
            if not topic.startswith("book."):
                return
            kind = msg.get("type")
            if kind == "snapshot":
                book = self.books[topic] = OrderBook()
                book.apply(map(tuple, msg["bids"]), map(tuple, msg["asks"]))
                self._set_state(topic, "live", msg.get("ts_recv"))
            elif kind == "delta" and topic in self.books:
                self.books[topic].apply(map(tuple, msg["bids"]), map(tuple, msg["asks"]))
            elif kind == "state":
                self._set_state(topic, msg["state"], msg.get("ts_recv"))
                self.books.pop(topic, None)

    def _on_stale(self, topic: str, reason: str) -> None:
        with self.lock:
            self._set_state(topic, "stale")
            self.books.pop(topic, None)

    def top(self, topic: str, n: int) -> tuple[list, list] | None:
        with self.lock:
            book = self.books.get(topic)
            return book.top(n) if book is not None and self.states.get(topic) == "live" else None

    def count(self, topic: str) -> int:
        with self.lock:
            return self.counts.get(topic, 0)

    def stats(self, service: str) -> dict[str, Any] | None:
        with self.lock:
            hb = self.heartbeats.get(service)
            return hb["stats"] if hb else None

    def close(self) -> None:
        def stop() -> None:
            if self.sub:
                self.sub.close()
            self.loop.stop()

        self.loop.call_soon_threadsafe(stop)
        self.thread.join(5)
