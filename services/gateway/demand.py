"""Which ``depth.*`` topics the gateway follows on the bus.

The book builder builds a conflated depth topic only while some subscriber holds it (its PUB is
an XPUB), so the gateway subscribes to a depth topic while a client wants it: a WebSocket depth
subscription, or an HTTP ``/api/book`` request. When the last one goes, the topic is kept for
``linger_s`` (a dashboard switching back and forth, repeated HTTP polls) and then dropped,
together with the gateway's copy of it, which would otherwise go stale unnoticed.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

log = logging.getLogger("flowbook.gateway")

LINGER_S = 30.0


class DepthDemand:
    def __init__(
        self,
        follow: Callable[[str], None],
        unfollow: Callable[[str], None],
        *,
        linger_s: float = LINGER_S,
    ) -> None:
        self.follow = follow
        self.unfollow = unfollow
        self.linger_s = linger_s
        self.count: dict[str, int] = {}
        self.followed: set[str] = set()
        self._drops: dict[str, asyncio.TimerHandle] = {}

    def want(self, topic: str) -> None:
        self.count[topic] = self.count.get(topic, 0) + 1
        handle = self._drops.pop(topic, None)
        if handle is not None:
            handle.cancel()
        if topic not in self.followed:
            self.followed.add(topic)
            self.follow(topic)

    def release(self, topic: str) -> None:
        n = self.count.get(topic, 0) - 1
        if n > 0:
            self.count[topic] = n
            return
        self.count.pop(topic, None)
        if topic in self.followed and topic not in self._drops:
            loop = asyncio.get_running_loop()
            self._drops[topic] = loop.call_later(self.linger_s, self._drop, topic)

    def touch(self, topic: str) -> None:
        """Follow ``topic`` for at least ``linger_s`` (an HTTP request)."""
        self.want(topic)
        self.release(topic)

    def _drop(self, topic: str) -> None:
        self._drops.pop(topic, None)
        if self.count.get(topic, 0) == 0 and topic in self.followed:
            self.followed.discard(topic)
            self.unfollow(topic)

    def close(self) -> None:
        for handle in self._drops.values():
            handle.cancel()
        self._drops.clear()
