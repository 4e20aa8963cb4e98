"""A WebSocket client of the gateway for tests: a real connection on its own thread that keeps
every message it receives and the latest snapshot/update per subscription."""

from __future__ import annotations

import contextlib
import threading
import time
from typing import Any

import orjson
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect


class WsClient:
    def __init__(self, url: str, open_timeout: float = 10.0) -> None:
        self.ws = connect(url, open_timeout=open_timeout, max_size=None).__enter__()
        self.messages: list[dict[str, Any]] = []
        self.latest: dict[tuple, dict[str, Any]] = {}
        self.lock = threading.Lock()
        self.closed: tuple[int | None, str | None] | None = None
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        try:
            for raw in self.ws:
                msg = orjson.loads(raw)
                msg["_rx"] = time.time_ns()
                with self.lock:
                    self.messages.append(msg)
                    if msg.get("type") in ("snapshot", "update"):
                        key = (msg.get("channel"), msg.get("venue"), msg.get("symbol"))
                        self.latest[key] = msg
        except ConnectionClosed as exc:
            self.closed = (
                exc.rcvd.code if exc.rcvd else None,
                exc.rcvd.reason if exc.rcvd else None,
            )
        except OSError:
            self.closed = (None, "socket error")
        else:
            self.closed = (None, "closed")

    def send(self, obj: dict[str, Any] | str | bytes) -> None:
        self.ws.send(obj if isinstance(obj, str | bytes) else orjson.dumps(obj).decode())

    def subscribe(self, channel: str, venue: Any, symbol: str | None = None, **kw: Any) -> None:
        req = {"op": "subscribe", "channel": channel, "venue": venue, **kw}
        if symbol is not None:
            req["symbol"] = symbol
        self.send(req)

    def get(self, channel: str, venue: Any, symbol: str | None) -> dict[str, Any] | None:
        with self.lock:
            return self.latest.get((channel, venue, symbol))

    def of_type(self, kind: str) -> list[dict[str, Any]]:
        with self.lock:
            return [m for m in self.messages if m.get("type") == kind]

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.ws.close()
        self.thread.join(5)
