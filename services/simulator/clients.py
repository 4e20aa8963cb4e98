"""One connected WebSocket client: its subscriptions and a bounded outgoing queue.

Frames are queued synchronously by the market pump (many per asyncio tick) and written by one
writer task per client, so the pump never awaits a socket and a slow client only delays itself.
What was queued since its last wake-up goes out in one write (up to ``CHUNK_BYTES``), as an
exchange sends the messages of one batch: one syscall a frame was 39% of a simulator's CPU.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from typing import Any

from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed

from common.wsbatch import send_texts

from .faults import Stalls

log = logging.getLogger("simulator.clients")

MAX_QUEUE = 200_000  # frames; a client this far behind is disconnected like a slow consumer
CHUNK_BYTES = 256 * 1024  # frames written at once, at most (and at least one)


class Client:
    """Wrapper of a server connection used by dialects."""

    def __init__(self, conn: ServerConnection, venue: str, stats: Any) -> None:
        self.conn = conn
        self.venue = venue
        self.stats = stats  # has messages_sent (int)
        self.subs: set[str] = set()  # dialect-defined subscription keys
        self.state: dict[str, Any] = {}  # dialect-defined per-connection state
        self.stalls = Stalls()  # stall fault: frames dropped until these deadlines
        self._queue: deque[bytes] = deque()
        self._wake = asyncio.Event()
        self._close: tuple[int, str] | None = None
        self._writer = asyncio.get_running_loop().create_task(self._write_loop())

    @property
    def peer(self) -> str:
        addr = self.conn.remote_address
        return f"{addr[0]}:{addr[1]}" if addr else "?"

    def push(self, frame: bytes, symbol: str | None = None) -> None:
        """Queue one text frame (UTF-8 bytes) about ``symbol`` (dropped while stalled)."""
        if self._close is not None:
            return
        if self.stalls.until and self.stalls.active(symbol, time.monotonic()):
            return
        self._queue.append(frame)
        if len(self._queue) > MAX_QUEUE:
            log.warning(
                "%s: client %s is %d frames behind; closing",
                self.venue,
                self.peer,
                len(self._queue),
            )
            self._queue.clear()
            self.close_after_flush(1008, "slow consumer")
        self._wake.set()

    def close_after_flush(self, code: int = 1000, reason: str = "") -> None:
        """Send what is queued, then close with a close frame."""
        if self._close is None:
            self._close = (code, reason)
            self._wake.set()

    def abort(self) -> None:
        """Drop the TCP connection at once, without a close frame."""
        self._queue.clear()
        transport = self.conn.transport
        if transport is not None:
            transport.abort()

    async def _write_loop(self) -> None:
        conn, queue = self.conn, self._queue
        try:
            while True:
                await self._wake.wait()
                self._wake.clear()
                while queue:  # what the pump queued since the last wake-up, in few writes
                    batch = [queue.popleft()]
                    size = len(batch[0])
                    while queue and size < CHUNK_BYTES:
                        batch.append(queue.popleft())
                        size += len(batch[-1])
                    if await send_texts(conn, batch):
                        self.stats.messages_sent += len(batch)
                if self._close is not None:
                    await conn.close(*self._close)
                    return
        except ConnectionClosed:
            pass

    async def aclose(self) -> None:
        """Stop the writer (the connection is closing or closed); a pending close may finish."""
        if self._close is None:
            self._writer.cancel()
        with contextlib.suppress(asyncio.CancelledError, TimeoutError):
            await asyncio.wait_for(self._writer, 5.0)
