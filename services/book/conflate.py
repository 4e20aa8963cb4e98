"""Latest-value conflation per topic: at most one emit per interval, never losing the last state.

``touch(key)`` says the state behind ``key`` changed. The first touch after a quiet interval is
emitted at the end of the current loop iteration (so a drained burst costs one emit); touches
within ``interval`` of the previous emit schedule one trailing emit at ``previous + interval``.
``emit(key)`` reads the state when it runs, so whatever was touched last is always what goes
out, at most ``interval`` late.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

log = logging.getLogger("flowbook.book")


class Conflator:
    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        interval_s: float,
        emit: Callable[[str], None],
    ) -> None:
        self.loop = loop
        self.interval = interval_s
        self.emit = emit
        self._last: dict[str, float] = {}
        self._pending: dict[str, asyncio.Handle] = {}

    def touch(self, key: str) -> None:
        if key in self._pending:
            return
        last = self._last.get(key)
        now = self.loop.time()
        if last is None or now >= last + self.interval:
            self._pending[key] = self.loop.call_soon(self._fire, key)
        else:
            self._pending[key] = self.loop.call_at(last + self.interval, self._fire, key)

    def pending(self) -> int:
        return len(self._pending)

    def _fire(self, key: str) -> None:
        del self._pending[key]
        self._last[key] = self.loop.time()
        try:
            self.emit(key)
        except Exception:
            log.exception("conflated publish of %s failed", key)

    def close(self) -> None:
        for handle in self._pending.values():
            handle.cancel()
        self._pending.clear()
