"""Reconnect delays: exponential backoff with full jitter, reset after a healthy minute."""

from __future__ import annotations

import random
import time

MAX_DOUBLINGS = 30  # past the cap long before; 2.0**1024 would overflow after ~4 h of failures


class Backoff:
    def __init__(self, base_s: float = 0.5, cap_s: float = 30.0, healthy_s: float = 60.0) -> None:
        self.base_s = base_s
        self.cap_s = cap_s
        self.healthy_s = healthy_s
        self.attempt = 0
        self.connected_at: float | None = None

    def connected(self) -> None:
        self.connected_at = time.monotonic()

    def next_delay(self) -> float:
        """Delay before the next attempt. A connection that stayed up ``healthy_s`` resets the
        sequence, so one blip after a long healthy run retries fast."""
        if self.connected_at is not None and time.monotonic() - self.connected_at >= self.healthy_s:
            self.attempt = 0
        self.connected_at = None
        ceiling = min(self.cap_s, self.base_s * 2.0 ** min(self.attempt, MAX_DOUBLINGS))
        self.attempt += 1
        return random.uniform(0, ceiling)
