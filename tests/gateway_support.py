"""Helpers for the gateway tests (no tests here): a fake book builder publishing on a real
``common.bus.Publisher``, WebSocket and HTTP clients, message factories, and a gateway fixture
helper that starts ``python -m services.gateway`` as a real process."""

from __future__ import annotations

import asyncio
import base64
import concurrent.futures
import contextlib
import os
import socket
import struct
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import orjson
from prometheus_client.parser import text_string_to_metric_families
from websockets.sync.client import ClientConnection, connect

from common.bus import Publisher
from common.config import load
from tests.procs import Proc, free_port, venue_section, wait_until, write_config

VENUES = {"binance": ("USDT", ["BTC", "ETH"]), "kraken": ("USD", ["BTC", "ETH"])}


# -- the fake book builder ------------------------------------------------------------------------
class FakeBook:
    """Acts as the book builder: a real Publisher (PUB + ROUTER) on its own event-loop thread,
    heartbeats ``hb.book`` and the venue statuses it is given, and answers resync requests with
    the latest message of every ``depth.``/``bbo.``/``status.`` topic it published."""

    def __init__(self, pub: str, control: str, *, hb_interval: float = 0.5) -> None:
        self.pub_endpoint, self.control_endpoint = pub, control
        self.hb_interval = hb_interval
        self.latest: dict[str, dict[str, Any]] = {}
        self.statuses: dict[str, dict[str, Any]] = {}
        self.heartbeats = True
        self.resyncs: list[list[str]] = []
        self.loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()
        if not self._ready.wait(10) or self._error:
            raise RuntimeError(f"fake book builder did not start: {self._error!r}")

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        try:
            self.pub = Publisher("book", self.pub_endpoint, self.control_endpoint)
        except BaseException as exc:
            self._error = exc
            self._ready.set()
            return
        self.pub.attach(self.loop)
        self.pub.snapshot_provider = self._snapshots
        self._beat_task = self.loop.create_task(self._beat())
        self._ready.set()
        self.loop.run_forever()

    def _snapshots(self, prefixes: list[str]) -> list[tuple[str, dict[str, Any]]]:
        self.resyncs.append(list(prefixes))
        return [
            (t, dict(m)) for t, m in self.latest.items() if any(t.startswith(p) for p in prefixes)
        ]

    async def _beat(self) -> None:
        while True:
            if self.heartbeats:
                for venue, status in self.statuses.items():
                    self.pub.publish(f"status.{venue}", dict(status))
                self.pub.heartbeat(book_stats())
            await asyncio.sleep(self.hb_interval)

    def call(self, fn: Callable[..., Any], *args: Any, timeout: float = 30.0) -> Any:
        fut: concurrent.futures.Future[Any] = concurrent.futures.Future()

        def run() -> None:
            try:
                fut.set_result(fn(*args))
            except BaseException as exc:
                fut.set_exception(exc)

        self.loop.call_soon_threadsafe(run)
        return fut.result(timeout)

    def publish(self, topic: str, body: dict[str, Any]) -> dict[str, Any]:
        """Publish one message; returns it as sent (with v, epoch, seq, ts_pub)."""
        return self.publish_many([(topic, body)])[0]

    def publish_many(self, items: list[tuple[str, dict[str, Any]]]) -> list[dict[str, Any]]:
        def run() -> list[dict[str, Any]]:
            out = []
            for topic, body in items:
                msg = dict(body)
                self.pub.publish(topic, msg)
                if not topic.startswith("trade."):
                    self.latest[topic] = msg
                out.append(msg)
            return out

        return self.call(run)

    def set_status(self, venue: str, state: str = "live", **stats: Any) -> None:
        def run() -> None:
            self.statuses[venue] = status_msg(venue, state, **stats)

        self.call(run)

    def close(self) -> None:
        async def stop() -> None:
            self._beat_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._beat_task
            self.pub.close()
            self.loop.stop()

        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(stop(), self.loop)
        self.thread.join(5)
        if not self.thread.is_alive():
            self.loop.close()


# -- message factories ----------------------------------------------------------------------------
def now() -> int:
    return time.time_ns()


def levels(start: float, step: float, n: int, size: float = 1.0) -> list[list[float]]:
    return [[round(start + i * step, 8), round(size + i * 0.001, 8)] for i in range(n)]


def depth_msg(venue: str, symbol: str, mid: float = 100.0, n: int = 50, **extra: Any) -> dict:
    t = now()
    msg = {
        "type": "depth",
        "venue": venue,
        "symbol": symbol,
        "state": "live",
        "bids": levels(mid - 0.01, -0.01, n),
        "asks": levels(mid + 0.01, 0.01, n),
        "ts_exch": t - 3_000_000,
        "ts_recv": t - 2_000_000,
        "ts_ingest_pub": t - 1_000_000,
    }
    msg.update(extra)
    return msg


def consolidated_msg(group: str, mid: float = 100.0, n: int = 50) -> dict:
    t = now()
    return {
        "type": "depth",
        "venue": "all",
        "symbol": group,
        "state": "live",
        "bids": [
            [round(mid - 0.01 * (i + 1), 8), 3.0, {"binance": 1.0, "kraken": 2.0}] for i in range(n)
        ],
        "asks": [
            [round(mid + 0.01 * (i + 1), 8), 3.0, {"binance": 1.5, "kraken": 1.5}] for i in range(n)
        ],
        "venues": ["binance", "kraken"],
        "excluded": {},
        "conversion": {"USDT": 1.0},
        "ts_exch": t - 3_000_000,
        "ts_recv": t - 2_000_000,
        "ts_ingest_pub": t - 1_000_000,
    }


def bbo_msg(venue: str, symbol: str, bid: float, ask: float) -> dict:
    t = now()
    return {
        "type": "bbo",
        "venue": venue,
        "symbol": symbol,
        "state": "live",
        "bid": [bid, 1.5],
        "ask": [ask, 2.5],
        "spread_bps": round((ask - bid) / bid * 1e4, 4),
        "ts_exch": t - 3_000_000,
        "ts_recv": t - 2_000_000,
        "ts_ingest_pub": t - 1_000_000,
    }


def trade_msg(venue: str, symbol: str, first_id: int, n: int = 1, price: float = 100.0) -> dict:
    t = now()
    return {
        "type": "trades",
        "venue": venue,
        "symbol": symbol,
        "trades": [
            {
                "price": price + i * 0.01,
                "size": 0.5,
                "side": "buy" if i % 2 else "sell",
                "id": first_id + i,
                "ts_exch": t - 3_000_000,
            }
            for i in range(n)
        ],
        "ts_recv": t - 2_000_000,
        "ts_ingest_pub": t - 1_000_000,
    }


def latency(count: int = 100) -> dict[str, float]:
    return {
        "p50": 120.0,
        "p90": 250.0,
        "p99": 800.0,
        "p99.9": 1500.0,
        "max": 2000.0,
        "mean": 150.0,
        "count": count,
    }


def status_msg(venue: str, state: str = "live", **stats: Any) -> dict:
    quote, bases = VENUES.get(venue, ("USD", ["BTC"]))
    instruments = {f"{b}-{quote}": state for b in bases}
    instruments[f"BTC-{quote}-PERP"] = state  # only known from the status, not the config
    return {
        "type": "status",
        "venue": venue,
        "state": state,
        "instruments": instruments,
        "last_msg_age_s": 0.05,
        "stats": {
            "msg_rate": 42.0,
            "frames": 1000,
            "gaps": 3,
            "resyncs": 4,
            "reconnects": 1,
            "parse_errors": 2,
            "checksum_failures": 5,
            "budget_reconnects": 7,
            "metadata_reloads": 8,
            "rest_calls": 6,
            "latency_us": {"ingest": latency()},
            "process": {"pid": 4242, "cpu_percent": 12.5, "rss_bytes": 50_000_000},
            **stats,
        },
    }


def book_stats() -> dict[str, Any]:
    return {
        "messages": 10,
        "latency_us": {"book": latency(), "consolidate": latency(50)},
        "process": {"pid": 4343, "cpu_percent": 7.5, "rss_bytes": 60_000_000},
    }


# -- the gateway process --------------------------------------------------------------------------
class GatewayEnv:
    """Config on free ports; start the gateway and the fake book builder in either order."""

    def __init__(self, tmp: Path, start: Callable[..., Proc], gateway_extra: str = "") -> None:
        venues = "".join(
            venue_section(v, sim_port=free_port(), quote=q, bases=b) for v, (q, b) in VENUES.items()
        )
        self.config = write_config(tmp, venues, extra=gateway_extra)
        self.cfg = load(self.config)
        self.port = self.cfg.gateway.port
        self.url = f"http://127.0.0.1:{self.port}"
        self.ws_url = f"ws://127.0.0.1:{self.port}/ws"
        self._start = start
        self.proc: Proc | None = None
        self.book: FakeBook | None = None

    def start_book(self) -> FakeBook:
        self.book = FakeBook(self.cfg.book.pub, self.cfg.book.control)
        return self.book

    def start_gateway(self, wait_book: bool = True) -> Proc:
        self.proc = self._start("gateway", ["-m", "services.gateway", "--config", str(self.config)])
        wait_until(lambda: http_get(self.url + "/healthz")[0] in (200, 503), 30, what="gateway up")
        if wait_book:
            wait_until(
                lambda: http_get(self.url + "/healthz")[0] == 200, 30, what="gateway follows book"
            )
        return self.proc

    def get(
        self, path: str, headers: dict[str, str] | None = None
    ) -> tuple[int, dict[str, str], bytes]:
        return http_get(self.url + path, headers)

    def get_json(self, path: str) -> tuple[int, Any]:
        status, _, body = http_get(self.url + path)
        return status, orjson.loads(body)

    def client(self) -> WsClient:
        return WsClient(self.ws_url)

    def metric(self, name: str, labels: dict[str, str] | None = None) -> float | None:
        _, _, body = self.get("/metrics")
        for family in text_string_to_metric_families(body.decode()):
            for sample in family.samples:
                if sample.name == name and all(
                    sample.labels.get(k) == v for k, v in (labels or {}).items()
                ):
                    return sample.value
        return None

    def close(self) -> None:
        if self.book is not None:
            self.book.close()


def http_get(url: str, headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    req = urllib.request.Request(url, headers=headers or {})
    try:
        with opener.open(req, timeout=10) as resp:
            return resp.status, dict(resp.headers.items()), resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers.items()), exc.read()


class WsClient:
    """A websockets (sync) client that decodes JSON and waits on conditions with deadlines."""

    def __init__(self, url: str, **kwargs: Any) -> None:
        self.ws: ClientConnection = connect(
            url, proxy=None, open_timeout=10, compression=None, legacy=True, **kwargs
        )
        self.received: list[dict[str, Any]] = []

    def send(self, msg: dict[str, Any] | str | bytes) -> None:
        self.ws.send(msg if isinstance(msg, str | bytes) else orjson.dumps(msg).decode())

    def recv(self, timeout: float = 10.0) -> dict[str, Any]:
        msg = orjson.loads(self.ws.recv(timeout))
        msg["_rx"] = time.time_ns()
        self.received.append(msg)
        return msg

    def expect(
        self, pred: Callable[[dict[str, Any]], Any], timeout: float = 15.0, what: str = ""
    ) -> dict[str, Any]:
        """The next message matching ``pred`` (others are skipped), within ``timeout``."""
        deadline = time.monotonic() + timeout
        skipped: list[dict[str, Any]] = []
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"no message {what or pred} in {timeout}s; got {skipped[-5:]}")
            try:
                msg = self.recv(left)
            except TimeoutError:
                continue
            if pred(msg):
                return msg
            skipped.append(msg)

    def request(self, msg: dict[str, Any] | str | bytes, timeout: float = 15.0) -> dict[str, Any]:
        """Send, then return the next reply (subscribed/unsubscribed/pong/error)."""
        self.send(msg)
        return self.expect(
            lambda m: m["type"] in ("subscribed", "unsubscribed", "pong", "error"),
            timeout,
            "reply",
        )

    def ping_ok(self) -> bool:
        reply = self.request({"op": "ping", "id": "alive"})
        return reply["type"] == "pong" and reply.get("id") == "alive"

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.ws.close()


@contextlib.contextmanager
def clients(env: GatewayEnv, n: int = 1) -> Iterator[list[WsClient]]:
    made = [env.client() for _ in range(n)]
    try:
        yield made
    finally:
        for c in made:
            c.close()


# -- a raw WebSocket client that never reads ------------------------------------------------------
class RawWs:
    """Does the opening handshake by hand, sends masked text frames, and reads only when told:
    with a tiny receive buffer, it is the slowest client there is."""

    def __init__(self, port: int, rcvbuf: int = 4096) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.settimeout(10)
        self.sock.connect(("127.0.0.1", port))
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall(
            (
                f"GET /ws HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
                f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                "Sec-WebSocket-Version: 13\r\n\r\n"
            ).encode()
        )
        buf = b""
        while b"\r\n\r\n" not in buf:
            chunk = self.sock.recv(4096)
            if not chunk:
                raise ConnectionError("closed during handshake")
            buf += chunk
        head, _, self.buf = buf.partition(b"\r\n\r\n")
        if not head.startswith(b"HTTP/1.1 101"):
            raise ConnectionError(f"handshake refused: {head[:200]!r}")

    def send_text(self, text: str) -> None:
        payload = text.encode()
        mask = os.urandom(4)
        n = len(payload)
        if n < 126:
            header = struct.pack("!BB", 0x81, 0x80 | n)
        elif n < 65536:
            header = struct.pack("!BBH", 0x81, 0x80 | 126, n)
        else:
            header = struct.pack("!BBQ", 0x81, 0x80 | 127, n)
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        self.sock.sendall(header + mask + masked)

    def read_until_close(self, timeout: float = 60.0) -> tuple[int | None, str, int]:
        """Read frames until a close frame or EOF: (close code or None, reason, data frames)."""
        deadline = time.monotonic() + timeout
        frames = 0
        buf = self.buf
        while time.monotonic() < deadline:
            while len(buf) >= 2:
                opcode = buf[0] & 0x0F
                n = buf[1] & 0x7F
                off = 2
                if n == 126:
                    if len(buf) < 4:
                        break
                    n, off = struct.unpack("!H", buf[2:4])[0], 4
                elif n == 127:
                    if len(buf) < 10:
                        break
                    n, off = struct.unpack("!Q", buf[2:10])[0], 10
                if len(buf) < off + n:
                    break
                payload, buf = buf[off : off + n], buf[off + n :]
                if opcode == 0x8:
                    code = struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else None
                    return code, payload[2:].decode(errors="replace"), frames
                frames += 1
            try:
                chunk = self.sock.recv(1 << 20)
            except TimeoutError:
                continue
            except ConnectionResetError:
                return None, "reset", frames
            if not chunk:
                return None, "eof", frames
            buf += chunk
        raise AssertionError(f"no close frame within {timeout}s ({frames} frames read)")

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()
