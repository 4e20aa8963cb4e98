"""``BookFollower``: complete books from the bus, for programs that only want to read them.

It sits on ``common.bus.Subscriber`` (prefix subscription, resync on gap or publisher restart)
and hands out whole values, never fragments:

* ``book.*`` topics: an ``OrderBook`` per topic, built from the snapshot and the contiguous deltas
  the Subscriber lets through. It is dropped (delivered as ``None``) when the topic goes
  ``state`` (syncing, stale) or the Subscriber declares the copy unusable; the next snapshot
  brings it back.
* every other topic (``depth.*``, ``bbo.*``, ``status.*``, ``trade.*``): each message is complete
  in itself; the latest is kept in ``latest``.
* a publisher that goes down (disconnected, or silent for ``stale_after_s``, 3 s): every value
  that came from it, books and latest messages alike (trades aside), is withdrawn and delivered
  as ``None``, since nobody vouches for it any more; ``down`` names the publishers that are
  down. When it is heard again, everything is asked for afresh and comes back as it arrives.

Delivery: ``on_book(topic, value)`` for every change, or ``async for topic, value in
follower.updates()``, which conflates: a topic that changed several times while the consumer was
busy is yielded once, with its current value. An ``OrderBook`` is live (the follower keeps
updating it): read it when you get it.

Example::

    import asyncio
    from common.bus import Upstream
    from common.follow import BookFollower

    async def main() -> None:
        book_builder = Upstream("tcp://127.0.0.1:5560", "tcp://127.0.0.1:5660", "book")
        follower = BookFollower([book_builder], ["depth.all.BTC-USD", "bbo.all."])
        follower.start()
        async for topic, value in follower.updates():
            if value is not None and topic.startswith("depth."):
                print(topic, value["bids"][:1], value["asks"][:1])

    asyncio.run(main())
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

from common.book import OrderBook
from common.bus import Subscriber, Upstream

Value = OrderBook | dict[str, Any] | None
OnBook = Callable[[str, Value], None]


class BookFollower:
    def __init__(
        self,
        upstreams: list[Upstream],
        prefixes: list[str],
        on_book: OnBook | None = None,
        **subscriber_options: Any,
    ) -> None:
        self.on_book = on_book
        self.books: dict[str, OrderBook] = {}
        self.latest: dict[str, dict[str, Any]] = {}
        self.seq: dict[str, int] = {}  # seq of the message behind each topic's current value
        self.down: set[str] = set()  # names of the publishers that are down
        self._changed: dict[str, None] = {}  # ordered set of topics not yet iterated
        self._wake: asyncio.Event | None = None
        self.sub = Subscriber(
            upstreams,
            prefixes,
            self._on_message,
            on_stale=self._on_stale,
            on_upstream=self._on_upstream,
            **subscriber_options,
        )

    def start(self, loop: asyncio.AbstractEventLoop | None = None) -> None:
        self.sub.start(loop)

    def get(self, topic: str) -> Value:
        """The current value of ``topic``: its book, its latest message, or None."""
        book = self.books.get(topic)
        return book if book is not None else self.latest.get(topic)

    async def updates(self) -> AsyncIterator[tuple[str, Value]]:
        """Yield ``(topic, current value)`` for every topic that changed (conflated)."""
        self._wake = asyncio.Event()
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._changed:
                topic = next(iter(self._changed))
                del self._changed[topic]
                yield topic, self.get(topic)

    def close(self) -> None:
        self.sub.close()

    def _on_message(self, topic: str, msg: dict[str, Any]) -> None:
        if topic.startswith("hb."):
            return
        if not topic.startswith("book."):
            self.latest[topic] = msg
        else:
            kind = msg.get("type")
            if kind == "snapshot":
                book = self.books[topic] = OrderBook()
                book.apply(map(tuple, msg["bids"]), map(tuple, msg["asks"]))
            elif kind == "delta" and topic in self.books:
                self.books[topic].apply(map(tuple, msg["bids"]), map(tuple, msg["asks"]))
            elif kind == "state":
                self.books.pop(topic, None)
            else:
                return
        self.seq[topic] = msg.get("seq", 0)
        self._notify(topic)

    def _on_stale(self, topic: str, reason: str) -> None:
        if self.books.pop(topic, None) is not None:
            self._notify(topic)

    def _on_upstream(self, name: str, alive: bool) -> None:
        if alive:
            if name in self.down:
                self.down.discard(name)
                self.sub.refresh()
            return
        self.down.add(name)
        for topic in self.sub.topics_from(name):
            if topic.startswith("trade."):
                continue
            had = self.books.pop(topic, None) is not None
            had = self.latest.pop(topic, None) is not None or had
            if topic.startswith("book."):
                self.sub.resync(topic, "publisher down")  # its deltas may go on: not from here
            if had:
                self._notify(topic)

    def _notify(self, topic: str) -> None:
        if self.on_book is not None:
            self.on_book(topic, self.get(topic))
        if self._wake is not None:
            self._changed[topic] = None
            self._wake.set()
