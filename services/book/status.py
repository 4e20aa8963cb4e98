"""Per-venue health as the book builder sees it, and the ``status.<venue>`` message.

A venue is ``down`` while its ingest publisher is silent (the Subscriber's liveness) or has sent
no heartbeat for ``stale_after_s`` (counted from first contact until the first heartbeat).
Otherwise its state is the worst of its instruments' states (``stale`` > ``syncing`` > ``live``)
and of the ingest's own ``venue_state``: an ingest that reports its exchange down is ``down``.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from services.book.mirror import DOWN, LIVE, STATE_RANK, SYNCING, Mirror


class VenueStatus:
    __slots__ = (
        "down",
        "first_seen",
        "hb_stats",
        "last_hb",
        "last_msg",
        "name",
        "published_key",
        "upstream_alive",
    )

    def __init__(self, name: str) -> None:
        self.name = name
        self.down = True
        self.upstream_alive = False
        self.first_seen: float | None = None
        self.last_msg: float | None = None
        self.last_hb: float | None = None
        self.hb_stats: dict[str, Any] | None = None
        self.published_key: tuple[Any, ...] | None = None

    def seen(self, now: float, data: bool) -> None:
        """A message from the venue's ingest; ``data``: a book or trade message, i.e. the
        exchange sent something (``last_msg_age_s``), not only a heartbeat."""
        if data:
            self.last_msg = now
        if self.first_seen is None:
            self.first_seen = now

    def compute_down(self, now: float, stale_after_s: float) -> bool:
        if not self.upstream_alive:
            return True
        since = self.last_hb if self.last_hb is not None else self.first_seen
        return since is None or now - since > stale_after_s

    def instruments(self, mirrors: Iterable[Mirror]) -> dict[str, str]:
        out = {m.symbol: m.state for m in mirrors}
        if self.hb_stats and isinstance(self.hb_stats.get("instruments"), dict):
            for symbol in self.hb_stats["instruments"]:
                out.setdefault(str(symbol), DOWN if self.down else SYNCING)
        return dict(sorted(out.items()))

    def state(self, instruments: dict[str, str]) -> str:
        if self.down:
            return DOWN
        states = list(instruments.values())
        ingest_state = (self.hb_stats or {}).get("venue_state")
        if ingest_state == DOWN:
            states.append(DOWN)
        elif ingest_state not in (None, LIVE):
            states.append(SYNCING)
        if not states:
            return SYNCING
        return max(states, key=lambda s: STATE_RANK.get(s, STATE_RANK[SYNCING]))

    def body(self, mirrors: Iterable[Mirror], now: float) -> dict[str, Any]:
        instruments = self.instruments(mirrors)
        return {
            "type": "status",
            "venue": self.name,
            "state": self.state(instruments),
            "instruments": instruments,
            "last_msg_age_s": None if self.last_msg is None else round(now - self.last_msg, 3),
            "last_hb_age_s": None if self.last_hb is None else round(now - self.last_hb, 3),
            # a down ingest's last stats (msg rate, CPU, RSS) would be exported as current
            "stats": None if self.down else self.hb_stats,
        }
