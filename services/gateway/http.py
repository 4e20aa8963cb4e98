"""Plain HTTP on the WebSocket port (``process_request`` of ``websockets.serve``).

``/healthz``, ``/api/instruments``, ``/api/status``, ``/api/book/<venue|all>/<symbol>?depth=N``,
``/metrics`` (Prometheus text), ``/`` and its assets (the dashboard in ``web/dist``, or a page
saying it is not built). ``/ws`` goes on to the WebSocket handshake. Anything else is a JSON 404.
One request per connection (``Connection: close``): that is how websockets answers HTTP.
"""

from __future__ import annotations

import asyncio
import email.utils
import http
import logging
import mimetypes
import time
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import orjson
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry
from websockets.asyncio.server import ServerConnection
from websockets.datastructures import Headers
from websockets.http11 import Request, Response

from services.gateway.clients import outgoing
from services.gateway.demand import DepthDemand
from services.gateway.hub import Hub
from services.gateway.metrics import GatewayStats, render
from services.gateway.settings import Settings
from services.gateway.state import MarketState, table

log = logging.getLogger("flowbook.gateway")

JSON = "application/json"
HTML = "text/html; charset=utf-8"

NOT_BUILT = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>flowbook</title>
<style>body{font-family:system-ui,sans-serif;margin:3em;max-width:46em;line-height:1.5}
code{background:#f2f2f2;padding:.1em .3em}</style></head>
<body><h1>flowbook gateway</h1>
<p>The dashboard is not built. Run <code>make web</code> to build it into
<code>services/gateway/web/dist</code>, then reload this page.</p>
<p>The API works without it:</p>
<ul>
<li><a href="/healthz">/healthz</a> &mdash; book builder and venue health</li>
<li><a href="/api/status">/api/status</a> &mdash; per-venue state, rates, gaps, resyncs</li>
<li><a href="/api/instruments">/api/instruments</a> &mdash; venues, symbols, consolidated groups</li>
<li><code>/api/book/&lt;venue|all&gt;/&lt;symbol&gt;?depth=N</code> &mdash; latest depth, e.g.
<code>/api/book/all/BTC-USD?depth=10</code></li>
<li><a href="/metrics">/metrics</a> &mdash; Prometheus metrics</li>
<li><code>ws://&lt;host&gt;/ws</code> &mdash; WebSocket API (subscribe to depth, bbo, trades,
stats, status)</li>
</ul></body></html>
"""


def response(
    status: int,
    body: bytes,
    content_type: str,
    headers: list[tuple[str, str]] | None = None,
    *,
    head: bool = False,
) -> Response:
    all_headers = Headers(
        [
            ("Date", email.utils.formatdate(usegmt=True)),
            ("Connection", "close"),
            ("Content-Length", str(len(body))),
            ("Content-Type", content_type),
            *(headers or []),
        ]
    )
    phrase = http.HTTPStatus(status).phrase
    return Response(status, phrase, all_headers, b"" if head else body)


class HttpApi:
    def __init__(
        self,
        state: MarketState,
        hub: Hub,
        stats: GatewayStats,
        settings: Settings,
        registry: CollectorRegistry,
    ) -> None:
        self.state = state
        self.hub = hub
        self.stats = stats
        self.settings = settings
        self.registry = registry
        self.web_dir = settings.web_dir
        self.demand: DepthDemand | None = None  # set by the Gateway

    # -- entry point ------------------------------------------------------------------------------
    async def process_request(self, conn: ServerConnection, request: Request) -> Response | None:
        try:
            url = urlsplit(request.path)
        except ValueError:
            return self.error(400, "bad_request", "unparseable request target")
        path = url.path
        if path == "/ws":
            if request.headers.get("Upgrade", "").lower() != "websocket":
                return self.error(
                    426, "upgrade_required", "/ws is the WebSocket endpoint: connect with ws://"
                )
            if self.hub.full():
                self.stats.rejected += 1
                return self.error(
                    503,
                    "too_many_clients",
                    f"the gateway serves at most {self.settings.max_clients} clients",
                )
            return None
        self.stats.http_requests += 1
        origin = request.headers.get("Origin")
        cors = self.cors_headers(origin) if path.startswith("/api/") or path == "/healthz" else []
        if request.method == "OPTIONS" and cors:
            return response(
                204,
                b"",
                "text/plain",
                [
                    *cors,
                    ("Access-Control-Allow-Methods", "GET, HEAD, OPTIONS"),
                    ("Access-Control-Max-Age", "600"),
                ],
            )
        if request.method not in ("GET", "HEAD"):
            return self.error(
                405, "method_not_allowed", "only GET is supported", [("Allow", "GET, HEAD")]
            )
        try:
            resp = await self.route(path, parse_qs(url.query, keep_blank_values=True))
        except Exception:
            log.exception("HTTP %s failed", request.path[:200])
            resp = self.error(500, "internal_error", "the request failed")
        for key, value in cors:
            resp.headers[key] = value
        if request.method == "HEAD":
            resp.body = b""
        return resp

    def cors_headers(self, origin: str | None) -> list[tuple[str, str]]:
        allowed = self.settings.cors_origins
        if "*" in allowed:
            return [("Access-Control-Allow-Origin", "*")]
        if origin and origin in allowed:
            return [("Access-Control-Allow-Origin", origin), ("Vary", "Origin")]
        return []

    async def route(self, path: str, query: dict[str, list[str]]) -> Response:
        if path == "/healthz":
            return self.healthz()
        if path == "/metrics":
            return response(200, render(self.registry), CONTENT_TYPE_LATEST)
        if path == "/api/instruments":
            return self.json(200, self.instruments())
        if path == "/api/status":
            return self.json(200, self.status())
        if path.startswith("/api/book/"):
            return await self.book(path[len("/api/book/") :], query)
        if path.startswith("/api/") or path == "/api":
            return self.error(404, "not_found", f"no API route {path!r}")
        return self.static(path)

    # -- helpers ----------------------------------------------------------------------------------
    def json(
        self, status: int, body: Any, headers: list[tuple[str, str]] | None = None
    ) -> Response:
        data = orjson.dumps(body, option=orjson.OPT_NON_STR_KEYS)
        return response(status, data, JSON, [("Cache-Control", "no-store"), *(headers or [])])

    def error(
        self, status: int, code: str, message: str, headers: list[tuple[str, str]] | None = None
    ) -> Response:
        return self.json(status, {"type": "error", "code": code, "message": message}, headers)

    # -- routes -----------------------------------------------------------------------------------
    def healthz(self) -> Response:
        state = self.state
        now = time.monotonic()
        body = {
            "ok": state.book_alive,
            "book": "live" if state.book_alive else "down",
            "venues": {v: state.venue_state(v, now) for v in state.venues()},
        }
        return self.json(200 if state.book_alive else 503, body)

    def instruments(self) -> dict[str, Any]:
        state = self.state
        now = time.monotonic()
        venues = {
            v: {"state": state.venue_state(v, now), "symbols": state.instrument_states(v)}
            for v in state.venues()
        }
        groups: dict[str, Any] = {}
        for group in sorted(state.groups()):
            members = [
                {"venue": v, "symbol": s}
                for v in state.venues()
                for s in sorted(state.symbols(v))
                if state.group(s) == group
            ]
            latest = state.latest.get(f"depth.all.{group}") or state.latest.get(f"bbo.all.{group}")
            groups[group] = {
                "members": members,
                "venues": (latest or {}).get("venues", []),
                "excluded": (latest or {}).get("excluded", {}),
                "live": latest is not None and state.book_alive,
            }
        return {"venues": venues, "groups": groups, "book": "live" if state.book_alive else "down"}

    def status(self) -> dict[str, Any]:
        state = self.state
        now = time.monotonic()
        venues: dict[str, Any] = {}
        for venue in state.venues():
            msg = state.status.get(venue) or {}
            stats = table(msg, "stats")
            venues[venue] = {
                "state": state.venue_state(venue, now),
                "last_msg_age_s": msg.get("last_msg_age_s"),
                "status_age_s": round(now - state.status_at[venue], 3)
                if venue in state.status_at
                else None,
                "msg_rate": stats.get("msg_rate"),
                "gaps": stats.get("gaps"),
                "resyncs": stats.get("resyncs"),
                "reconnects": stats.get("reconnects"),
                "parse_errors": stats.get("parse_errors"),
                "venue_errors": stats.get("venue_errors"),
                "last_venue_error": stats.get("last_venue_error"),
                "checksum_failures": stats.get("checksum_failures"),
                "budget_reconnects": stats.get("budget_reconnects"),
                "metadata_reloads": stats.get("metadata_reloads"),
                "instruments": state.instrument_states(venue),
            }
        hb = state.heartbeats.get("book") or {}
        book = {
            "state": "live" if state.book_alive else "down",
            "uptime_s": hb.get("uptime_s"),
            "last_heartbeat_age_s": round(now - state.hb_at["book"], 3)
            if "book" in state.hb_at
            else None,
        }
        return {"book": book, "venues": venues, "gateway": self.hub.gateway_stats()}

    async def book(self, rest: str, query: dict[str, list[str]]) -> Response:
        parts = [unquote(p) for p in rest.split("/")]
        if len(parts) != 2 or not all(parts):
            return self.error(404, "not_found", "use /api/book/<venue|all>/<symbol>?depth=N")
        venue, symbol = parts[0], parts[1].upper()
        depth = self.settings.default_depth
        if "depth" in query:
            text = query["depth"][-1]  # ASCII digits only: int() also takes "1_0" and "٣"
            depth = int(text) if text.isascii() and text.isdigit() and len(text) < 6 else 0
            if not 1 <= depth <= self.settings.max_depth:
                return self.error(
                    400, "bad_request", f"depth must be an integer 1..{self.settings.max_depth}"
                )
        if venue != "all" and not self.state.known_venue(venue):
            known = ", ".join(["all", *self.state.venues()])
            return self.error(404, "unknown_venue", f"unknown venue {venue!r}; venues: {known}")
        if not self.state.known_symbol(venue, symbol):
            return self.error(404, "unknown_symbol", f"unknown symbol {symbol!r} for {venue!r}")
        topic = f"depth.{venue}.{symbol}"
        msg = self.state.served(topic)
        if self.demand is not None:
            # followed for a while from now; if it was not followed yet, wait for its first value
            self.demand.touch(topic)
            deadline = time.monotonic() + self.settings.snapshot_wait_s
            while msg is None and time.monotonic() < deadline:
                await asyncio.sleep(0.005)
                msg = self.state.served(topic)
        if msg is None:
            return self.error(
                404, "no_data", f"no depth for {venue} {symbol} from the book builder yet"
            )
        body = outgoing("depth", msg, "snapshot", depth)
        del body["type"], body["channel"]
        body["depth"] = depth
        body["ts_gw"] = time.time_ns()
        return self.json(200, body)

    def static(self, path: str) -> Response:
        root = self.web_dir
        index = root / "index.html"
        if path in ("/", "/index.html"):
            if index.is_file():
                return self.file(index, cache=False)
            return response(200, NOT_BUILT.encode(), HTML, [("Cache-Control", "no-store")])
        if root.is_dir():
            try:
                base = root.resolve()
                target = (base / unquote(path).lstrip("/")).resolve()
                found = target.is_relative_to(base) and target.is_file()
            except (OSError, ValueError):  # a name too long, a NUL: no such file
                found = False
            if found:
                return self.file(target, cache="/assets/" in path)
        return self.error(404, "not_found", f"no such path {path!r}")

    def file(self, path: Path, *, cache: bool) -> Response:
        ctype = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        if ctype.startswith("text/") or ctype in ("application/javascript", "image/svg+xml"):
            ctype += "; charset=utf-8"
        control = "public, max-age=31536000, immutable" if cache else "no-cache"
        return response(200, path.read_bytes(), ctype, [("Cache-Control", control)])
