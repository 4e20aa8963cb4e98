"""A real ``common.bus.Publisher`` for tests, on its own event-loop thread, with the truth.

``ThreadPublisher`` keeps the book of every ``book.*`` topic it publishes and the digest of that
book at every ``(epoch, topic, seq)``, so a subscriber can check each book it is handed against
what the publisher had at that seq. Its snapshot provider answers resyncs with full books (and
the latest message of every other topic), as an ingest or the book builder does.
"""

from __future__ import annotations

import asyncio
import random
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

import zmq

from common.book import OrderBook
from common.bus import Publisher
from tests.procs import free_port

T = TypeVar("T")


def digest(book: OrderBook) -> int:
    return hash((tuple(book.bids.items()), tuple(book.asks.items())))


class ThreadPublisher:
    def __init__(
        self, service: str = "test", *, sndhwm: int = 200_000, heartbeat_s: float = 0.2
    ) -> None:
        self.service = service
        self.pub_ep = f"tcp://127.0.0.1:{free_port()}"
        self.control_ep = f"tcp://127.0.0.1:{free_port()}"
        self.sndhwm = sndhwm
        self.heartbeat_s = heartbeat_s
        self.books: dict[str, OrderBook] = {}
        self.latest: dict[str, dict[str, Any]] = {}
        self.truth: dict[tuple[str, str, int], int] = {}
        self.rng = random.Random(5)
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.pub: Publisher = self.call(self._open)
        self._hb: asyncio.Task | None = None
        self.call(self._start_heartbeat)

    # -- plumbing -------------------------------------------------------------------------------
    def call(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn(*args)`` on the publisher's loop thread and return its result."""

        async def run() -> T:
            return fn(*args)

        return asyncio.run_coroutine_threadsafe(run(), self.loop).result(30)

    def _open(self) -> Publisher:
        deadline = time.monotonic() + 10
        while True:  # a just-closed endpoint may take a moment to be free again
            try:
                pub = Publisher(self.service, self.pub_ep, self.control_ep, sndhwm=self.sndhwm)
                break
            except zmq.ZMQError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        pub.snapshot_provider = self._snapshots
        pub.attach(self.loop)
        return pub

    def _start_heartbeat(self) -> None:
        if self.heartbeat_s:
            self._hb = self.loop.create_task(
                self.pub.heartbeat_loop(lambda: {"books": len(self.books)}, self.heartbeat_s)
            )

    def restart(self) -> str:
        """Close the publisher and open a new one (new epoch) on the same endpoints."""

        def reopen() -> str:
            if self._hb:
                self._hb.cancel()
            self.pub.close()
            self.pub = self._open()
            self._start_heartbeat()
            return self.pub.epoch

        return self.call(reopen)

    def close(self) -> None:
        async def stop() -> None:
            if self._hb:
                self._hb.cancel()
                await asyncio.sleep(0)
            self.pub.close()
            self.loop.stop()

        asyncio.run_coroutine_threadsafe(stop(), self.loop)
        self.thread.join(5)

    # -- publishing (call these through ``call``) -------------------------------------------
    def _send_book(self, topic: str, body: dict[str, Any]) -> None:
        seq = self.pub._seq.get(topic, 0) + 1  # the seq publish() will stamp
        self.truth[(self.pub.epoch, topic, seq)] = digest(self.books[topic])
        self.pub.publish(topic, body)

    def _snapshot_body(self, topic: str) -> dict[str, Any]:
        book = self.books[topic]
        return {
            "type": "snapshot",
            "state": "live",
            "bids": [[p, s] for p, s in book.top_bids(len(book.bids))],
            "asks": [[p, s] for p, s in book.top_asks(len(book.asks))],
        }

    def _snapshots(self, prefixes: list[str]):
        for topic in list(self.books):
            if any(topic.startswith(p) for p in prefixes):
                seq = self.pub._seq.get(topic, 0) + 1
                self.truth[(self.pub.epoch, topic, seq)] = digest(self.books[topic])
                yield topic, self._snapshot_body(topic)
        for topic, body in list(self.latest.items()):
            if any(topic.startswith(p) for p in prefixes):
                yield topic, dict(body)

    def new_book(self, topic: str, levels: int = 20, mid: float = 100.0) -> None:
        book = self.books[topic] = OrderBook()
        book.apply(
            [(round(mid - 0.01 * (i + 1), 2), float(i + 1)) for i in range(levels)],
            [(round(mid + 0.01 * (i + 1), 2), float(i + 1)) for i in range(levels)],
        )
        self._send_book(topic, self._snapshot_body(topic))

    def delta(self, topic: str, changes: int = 3, mid: float = 100.0) -> None:
        """Random level changes (some deletes) that never cross the book."""
        rng, book = self.rng, self.books[topic]
        bids, asks = [], []
        for _ in range(changes):
            side = bids if rng.random() < 0.5 else asks
            off = 0.01 * rng.randint(1, 150)
            price = round(mid - off if side is bids else mid + off, 2)
            size = 0.0 if rng.random() < 0.2 else float(rng.randint(1, 500)) / 10
            side.append((price, size))
        book.apply(bids, asks)
        self._send_book(
            topic,
            {"type": "delta", "state": "live", "bids": [list(x) for x in bids], "asks": asks},
        )

    def deltas(self, topics: list[str], n: int, changes: int = 3) -> None:
        for i in range(n):
            self.delta(topics[i % len(topics)], changes)

    def skip(self, topic: str, n: int) -> None:
        """Lose ``n`` messages of ``topic`` on the way (their seqs are never sent)."""
        self.pub._seq[topic] = self.pub._seq.get(topic, 0) + n

    def message(self, topic: str, body: dict[str, Any], keep: bool = True) -> int:
        """A stateless message (depth, bbo, trades); ``keep``: resync republishes it."""
        if keep:
            self.latest[topic] = dict(body)
        return self.pub.publish(topic, dict(body))
