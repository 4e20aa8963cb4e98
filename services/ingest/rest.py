"""REST calls of the ingest runner: httpx behind a token bucket that honours 429/418."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

import httpx

from common.model import HttpRequest

log = logging.getLogger("flowbook.ingest.rest")


class RestError(RuntimeError):
    """A REST call that failed after its retries, with the venue's answer."""


METADATA_DEADLINE_S = 120.0
SNAPSHOT_DEADLINE_S = 30.0  # a book waits for its snapshot no longer than a sync timeout


class NotWanted(RuntimeError):
    """The caller no longer wants the answer of a call that was waiting its turn."""


class TokenBucket:
    """``capacity`` weight per ``period_s``, refilled continuously. ``block(s)`` stops every
    call for ``s`` seconds (the venue's Retry-After)."""

    def __init__(self, capacity: int, period_s: float = 60.0) -> None:
        self.capacity = float(capacity)
        self.rate = capacity / period_s
        self.tokens = float(capacity)
        self.stamp = time.monotonic()
        self.blocked_until = 0.0
        self.lock = asyncio.Lock()

    def block(self, seconds: float) -> None:
        self.blocked_until = max(self.blocked_until, time.monotonic() + seconds)

    async def acquire(self, weight: int) -> None:
        async with self.lock:
            while True:
                now = time.monotonic()
                if now < self.blocked_until:
                    await asyncio.sleep(self.blocked_until - now)
                    continue
                self.tokens = min(self.capacity, self.tokens + (now - self.stamp) * self.rate)
                self.stamp = now
                if self.tokens >= weight:
                    self.tokens -= weight
                    return
                await asyncio.sleep((weight - self.tokens) / self.rate)


class RestClient:
    def __init__(self, venue: str, weight_per_minute: int, timeout_s: float = 10.0) -> None:
        self.venue = venue
        self.bucket = TokenBucket(weight_per_minute)
        self.client = httpx.AsyncClient(timeout=timeout_s, headers={"User-Agent": "flowbook"})
        self.calls = 0
        self.rate_limited = 0
        self.errors = 0

    async def get(
        self,
        req: HttpRequest,
        attempts: int = 5,
        still_wanted: Callable[[], bool] | None = None,
        deadline_s: float = METADATA_DEADLINE_S,
    ) -> bytes:
        """GET with the bucket, honouring 429/418 Retry-After (doubling the wait when there is
        none); retries 5xx and network errors with exponential backoff; raises RestError when
        out of attempts, and ``NotWanted`` when ``still_wanted()`` turns false before an attempt
        (a book reset while this one waited for the bucket). Each attempt has ``deadline_s`` as
        a whole (default 120 s: Binance's exchangeInfo is megabytes): httpx's own timeout
        (``timeout_s``) is per read, and a trickling answer would hold it for ever."""
        delay = 0.5
        last = ""
        for _ in range(attempts):
            await self.bucket.acquire(req.weight)
            if still_wanted is not None and not still_wanted():
                raise NotWanted(f"{self.venue} GET {req.url}: no longer wanted")
            self.calls += 1
            try:
                async with asyncio.timeout(deadline_s):
                    resp = await self.client.get(req.url, params=req.params or None)
            except TimeoutError:
                self.errors += 1
                last = f"no complete answer within {deadline_s:g}s"
                log.warning("%s GET %s: %s", self.venue, req.url, last)
            except httpx.HTTPError as exc:
                self.errors += 1
                last = f"{type(exc).__name__}: {exc}"
                log.warning("%s GET %s failed: %s", self.venue, req.url, last)
            else:
                if resp.status_code == 200:
                    return resp.content
                last = f"HTTP {resp.status_code}: {resp.text[:200]}"
                if resp.status_code in (418, 429):
                    self.rate_limited += 1
                    wait = _retry_after(resp, default=delay)
                    delay = min(delay * 2, 30.0)
                    log.warning("%s rate-limited on %s, waiting %.1fs", self.venue, req.url, wait)
                    self.bucket.block(wait)
                    continue
                self.errors += 1
                log.warning("%s GET %s: %s", self.venue, req.url, last)
                if 400 <= resp.status_code < 500:
                    raise RestError(f"{self.venue} GET {req.url} {req.params}: {last}")
            await asyncio.sleep(delay)
            delay = min(delay * 2, 30.0)
        raise RestError(f"{self.venue} GET {req.url} {req.params}: {last}")

    async def close(self) -> None:
        await self.client.aclose()


def _retry_after(resp: httpx.Response, default: float) -> float:
    try:
        return max(float(resp.headers.get("Retry-After", default)), 0.1)
    except ValueError:
        return default
