"""Binance Spot dialect (exchanges.md section 1).

Coverage:

| channel / route | variant | what is sent |
|---|---|---|
| WS `/stream?streams=a/b` | combined | `{"stream":name,"data":payload}` per event |
| WS `/ws/<name>`, `/ws` | raw | the payload alone |
| `<sym>@depth@100ms`, `<sym>@depth` | diff depth | `depthUpdate` with `U`/`u`, absolute qty, 0 deletes |
| `<sym>@trade` | trade | `trade` with `m` = buyer is maker |
| WS control | SUBSCRIBE, UNSUBSCRIBE, LIST_SUBSCRIPTIONS, SET/GET_PROPERTY combined | `{"result":..,"id":..}` or `{"code":2,"msg":..,"id":..}` |
| planned close | `!serverShutdown` | `{"e":"serverShutdown","E":ms}` then close 1000 |
| `GET /api/v3/depth` | symbol, limit (100, max 5000) | `lastUpdateId` consistent with `u` |
| `GET /api/v3/exchangeInfo` | symbol / symbols | PRICE_FILTER tickSize, LOT_SIZE stepSize |
| `GET /api/v3/ping`, `/api/v3/time` | | `{}`, `{"serverTime":ms}` |

Every level change consumes one update id, so a depth event has ``u == U + len(b) + len(a) - 1``.
Depth events are not batched per 100 ms / 1 s: each simulated book update is one event (the
``rate`` of the simulator sets the event rate), on whichever of the two streams was asked for.
Not simulated: the 5 msg/s inbound limit, REST weight enforcement, ``timeUnit``, other streams.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING
from urllib.parse import parse_qsl

import orjson

from ..assets import fmt8
from ..book import BookUpdate
from ..clients import Client
from . import register
from .base import Dialect, HttpReply, Query, rest_answer
from .binance_wire import (
    ERR_429,
    ERR_500,
    ERR_SYMBOL,
    MAX_LIMIT,
    RATE_LIMITS,
    STREAM_RE,
    depth_weight,
    render_depth,
    render_trades,
    symbol_info,
    wrap,
)

if TYPE_CHECKING:
    from ..venue import VenueServer

log = logging.getLogger("simulator.binance")


@register
class BinanceDialect(Dialect):
    name = "binance"
    stream_re = STREAM_RE  # the stream names served (a subclass may serve others)

    def __init__(self, venue: VenueServer) -> None:
        super().__init__(venue)
        self._weight_minute = 0
        self._weight_used = 0

    # ---- WebSocket ------------------------------------------------------------------------

    def ws_accept(self, path: str, query: Query) -> HttpReply | None:
        if path in ("/stream", "/ws") or path.startswith("/ws/"):
            return None
        return HttpReply.json(404, {"code": -1, "msg": f"no stream endpoint {path}"})

    async def ws_session(self, client: Client) -> None:
        self.open_streams(client, client.conn.request.path)
        async for raw in client.conn:
            client.push(orjson.dumps(self._control(client, raw)))

    def open_streams(self, client: Client, request_path: str) -> None:
        """Subscribe a new client to the streams named in its URL (``/stream?streams=``, ``/ws/``)."""
        path, _, query = request_path.partition("?")
        combined = path == "/stream"
        client.state["combined"] = combined
        if combined:
            names = [v for k, v in parse_qsl(query) if k == "streams"]
            streams = "/".join(names).split("/")
        else:
            streams = path[len("/ws/") :].split("/") if path.startswith("/ws/") else []
        for stream in filter(None, streams):
            if self._valid(stream):
                client.subs.add(stream)
            else:
                self._log_bad(client, stream)

    def _valid(self, stream: str) -> bool:
        match = self.stream_re.match(stream)
        return bool(match) and match.group(1).upper() in self.venue.instruments

    def _log_bad(self, client: Client, stream: str) -> None:
        log.warning("binance: client %s asked for unknown stream %r", client.peer, stream)

    def _control(self, client: Client, raw: str | bytes) -> dict:
        """Answer one live control request (subscribe etc.)."""
        try:
            msg = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            return {"code": 3, "msg": f"Invalid JSON: {exc}", "id": None}
        if not isinstance(msg, dict):
            return {"code": 2, "msg": "Invalid request: request must be an object", "id": None}
        mid, method, params = msg.get("id"), msg.get("method"), msg.get("params", [])
        if not isinstance(params, list):
            return {"code": 2, "msg": "Invalid request: params must be an array", "id": mid}
        if method in ("SUBSCRIBE", "UNSUBSCRIBE"):
            bad = [p for p in params if not isinstance(p, str) or not self.stream_re.match(p)]
            if bad:
                return {"code": 2, "msg": f"Invalid request: invalid stream {bad[0]!r}", "id": mid}
            for stream in params:
                if method == "UNSUBSCRIBE":
                    client.subs.discard(stream)
                elif self._valid(stream):
                    client.subs.add(stream)
                else:
                    self._log_bad(client, stream)
            return {"result": None, "id": mid}
        if method == "LIST_SUBSCRIPTIONS":
            return {"result": sorted(client.subs), "id": mid}
        if method in ("SET_PROPERTY", "GET_PROPERTY") and params and params[0] == "combined":
            if method == "GET_PROPERTY":
                return {"result": client.state["combined"], "id": mid}
            if len(params) == 2 and isinstance(params[1], bool):
                client.state["combined"] = params[1]
                return {"result": None, "id": mid}
            return {"code": 1, "msg": "Invalid value type: expected Boolean", "id": mid}
        if method in ("SET_PROPERTY", "GET_PROPERTY"):
            return {"code": 0, "msg": "Unknown property", "id": mid}
        return {"code": 2, "msg": f"Invalid request: unknown method {method!r}", "id": mid}

    # what USD-M futures (binance_perp.py) change: the trade stream and the event renderers
    trade_stream = "trade"
    render_trades = staticmethod(render_trades)
    render_depth = staticmethod(render_depth)

    def publish(self, update: BookUpdate) -> None:
        sym = update.inst.symbol.lower()
        if update.trades and self.subscribed(key := f"{sym}@{self.trade_stream}"):
            for data in self.render_trades(update):
                self.broadcast(key, self._framer(key, data), update)
        keys = [k for k in (f"{sym}@depth@100ms", f"{sym}@depth") if self.subscribed(k)]
        if keys:
            data = self.render_depth(update)
            for key in keys:
                self.broadcast(key, self._framer(key, data), update)

    @staticmethod
    def _framer(key: str, data: bytes) -> Callable[[Client], bytes]:
        wrapped: list[bytes] = []

        def frame(client: Client) -> bytes:
            if not client.state.get("combined"):
                return data
            if not wrapped:
                wrapped.append(wrap(key, data))
            return wrapped[0]

        return frame

    def shutdown_frame(self, client: Client) -> bytes | None:
        data = orjson.dumps({"e": "serverShutdown", "E": time.time_ns() // 1_000_000})
        return wrap("!serverShutdown", data) if client.state.get("combined") else data

    # ---- REST -----------------------------------------------------------------------------

    def http_get(self, path: str, query: Query) -> HttpReply | Awaitable[HttpReply]:
        if path == "/api/v3/depth":
            return self._depth(query)
        if path == "/api/v3/exchangeInfo":
            return self._exchange_info(query)
        if path == "/api/v3/ping":
            return HttpReply.json(200, {})
        if path == "/api/v3/time":
            return HttpReply.json(200, {"serverTime": time.time_ns() // 1_000_000})
        return HttpReply.json(404, {"code": -1, "msg": f"Not found: {path}"})

    def _weigh(self, weight: int) -> list[tuple[str, str]]:
        minute = int(time.time() // 60)
        if minute != self._weight_minute:
            self._weight_minute, self._weight_used = minute, 0
        self._weight_used += weight
        return [("X-MBX-USED-WEIGHT-1M", str(self._weight_used))]

    async def _depth(self, query: Query) -> HttpReply:
        venue = self.venue
        venue.stats.rest_depth_calls += 1
        symbol = query.get("symbol", "")
        if not symbol:
            msg = "Mandatory parameter 'symbol' was not sent, was empty/null, or malformed."
            return HttpReply.json(400, {"code": -1102, "msg": msg})
        if symbol not in venue.instruments:
            return HttpReply.json(400, ERR_SYMBOL)
        raw_limit = query.get("limit", "100")
        if not raw_limit.isdigit() or len(raw_limit) > 20:
            msg = "Illegal characters found in parameter 'limit'; legal range is '^[0-9]{1,20}$'."
            return HttpReply.json(400, {"code": -1100, "msg": msg})
        limit = min(max(int(raw_limit), 1), MAX_LIMIT)
        headers = self._weigh(depth_weight(limit))
        fault = venue.faults.take_rest(symbol)
        if fault is not None:
            log.info("binance %s: %s fault on REST depth", symbol, fault.kind)
        if fault is not None and fault.kind == "rest429":
            return HttpReply.json(429, ERR_429, [*headers, ("Retry-After", "1")])
        if fault is not None and fault.kind == "rest500":
            return HttpReply.json(500, ERR_500, headers)
        book, inst = venue.books[symbol], venue.instruments[symbol]
        bids, asks = book.top(limit)
        te, se = inst.tick_e8, inst.step_e8
        body = orjson.dumps(
            {
                "lastUpdateId": book.last_id,
                "bids": [[fmt8(p * te), fmt8(q * se)] for p, q in bids],
                "asks": [[fmt8(p * te), fmt8(q * se)] for p, q in asks],
            }
        )
        return await rest_answer(HttpReply(200, body, headers), fault)

    def _exchange_info(self, query: Query) -> HttpReply:
        instruments = self.venue.instruments
        wanted = list(instruments)
        try:
            if "symbol" in query:
                wanted = [query["symbol"]]
            elif "symbols" in query:
                wanted = orjson.loads(query["symbols"])
                if not isinstance(wanted, list) or not all(isinstance(s, str) for s in wanted):
                    raise ValueError
        except ValueError:
            return HttpReply.json(400, {"code": -1100, "msg": "Illegal characters in 'symbols'."})
        if any(s not in instruments for s in wanted):
            return HttpReply.json(400, ERR_SYMBOL)
        symbols = [symbol_info(instruments[s]) for s in wanted]
        body = {
            "timezone": "UTC",
            "serverTime": time.time_ns() // 1_000_000,
            "rateLimits": RATE_LIMITS,
            "exchangeFilters": [],
            "symbols": symbols,
        }
        return HttpReply.json(200, body, self._weigh(20))
