"""Binance USD-M perpetuals dialect: the Spot dialect with the futures differences.

Coverage (what differs from ``binance.py``; everything else is inherited):

| channel / route | variant | what is sent |
|---|---|---|
| WS `/public/stream`, `/public/ws/..` | routed (2026) | `@depth`, `@depth@100ms` only |
| WS `/market/stream`, `/market/ws/..` | routed (2026) | `@aggTrade` only |
| WS `/stream`, `/ws/..` | legacy | every stream (as before the 2026-04-23 retirement) |
| `<sym>@depth@100ms`, `<sym>@depth` | diff depth | `depthUpdate` with `E`, `T`, `U`, `u`, `pu` |
| `<sym>@aggTrade` | aggregate trade | one per fill: `a`, `f` = `l`, `m` = buyer is maker |
| `GET /fapi/v1/depth` | limit 5..1000 (default 500) | `lastUpdateId`, `E`, `T` |
| `GET /fapi/v1/exchangeInfo` | | `contractType` PERPETUAL, PRICE_FILTER, LOT_SIZE |

Update ids are not contiguous, as on the real futures engine: a simulator update id ``n`` is
published as ``4 n`` (``U = 4 first``, ``u = 4 last``, ``pu = 4 (first - 1)``), and a REST
snapshot taken at simulator id ``L`` says ``lastUpdateId = 4 (L + 1)``: it falls inside the
next event's ``[U, u]``, so only the futures rules (``pu`` chain, ``U <= lastUpdateId <= u``)
sync; the Spot rule (``U == prev u + 1``) fails at once. Gaps and stalls break the ``pu`` chain.
Sizes and prices are printed with the instrument's tick and step decimals (``"65000.10"``).
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Awaitable

import orjson

from ..assets import Instrument, fmt_dec
from ..book import BookUpdate
from ..clients import Client
from . import register
from .base import HttpReply, Query, rest_answer
from .binance import BinanceDialect
from .binance_wire import ERR_429, ERR_500, ERR_SYMBOL

log = logging.getLogger("simulator.binance-perp")

STREAM_RE = re.compile(r"^([a-z0-9]+)@(depth|depth@100ms|aggTrade)$")
ROUTES = {"/public": ("depth", "depth@100ms"), "/market": ("aggTrade",)}
LIMITS = (5, 10, 20, 50, 100, 500, 1000)
ID_SCALE = 4
RATE_LIMITS = [
    {"rateLimitType": "REQUEST_WEIGHT", "interval": "MINUTE", "intervalNum": 1, "limit": 2400},
    {"rateLimitType": "ORDERS", "interval": "MINUTE", "intervalNum": 1, "limit": 1200},
    {"rateLimitType": "ORDERS", "interval": "SECOND", "intervalNum": 10, "limit": 300},
]


def split_route(path: str) -> tuple[str | None, str]:
    """``/public/stream?x`` -> ``("/public", "/stream?x")``; legacy paths have no route."""
    for route in ROUTES:
        if path.startswith(route + "/"):
            return route, path[len(route) :]
    return None, path


def render_depth(update: BookUpdate) -> bytes:
    inst = update.inst
    pd, sd = inst.price_decimals, inst.size_decimals
    te, se = inst.tick_e8, inst.step_e8
    return orjson.dumps(
        {
            "e": "depthUpdate",
            "E": update.ts_ms,
            "T": update.ts_ms,
            "s": inst.symbol,
            "U": ID_SCALE * update.first_id,
            "u": ID_SCALE * update.last_id,
            "pu": ID_SCALE * (update.first_id - 1),
            "b": [[fmt_dec(p * te, pd), fmt_dec(q * se, sd)] for p, q in update.bids],
            "a": [[fmt_dec(p * te, pd), fmt_dec(q * se, sd)] for p, q in update.asks],
        }
    )


def render_agg_trades(update: BookUpdate) -> list[bytes]:
    inst = update.inst
    return [
        orjson.dumps(
            {
                "e": "aggTrade",
                "E": t.ts_ms,
                "s": inst.symbol,
                "a": t.trade_id,
                "p": fmt_dec(t.price * inst.tick_e8, inst.price_decimals),
                "q": fmt_dec(t.qty * inst.step_e8, inst.size_decimals),
                "f": t.trade_id,
                "l": t.trade_id,
                "T": t.ts_ms,
                "m": t.taker_sell,
            }
        )
        for t in update.trades
    ]


def symbol_info(inst: Instrument) -> dict:
    return {
        "symbol": inst.symbol,
        "pair": inst.symbol,
        "contractType": "PERPETUAL",
        "deliveryDate": 4133404800000,
        "onboardDate": 1569398400000,
        "status": "TRADING",
        "baseAsset": inst.base,
        "quoteAsset": inst.quote,
        "marginAsset": inst.quote,
        "pricePrecision": inst.price_decimals,
        "quantityPrecision": inst.size_decimals,
        "underlyingType": "COIN",
        "filters": [
            {"filterType": "PRICE_FILTER", "tickSize": inst.tick, "minPrice": inst.tick},
            {"filterType": "LOT_SIZE", "stepSize": inst.step, "minQty": inst.step},
        ],
    }


@register
class BinancePerpDialect(BinanceDialect):
    name = "binance-perp"
    stream_re = STREAM_RE
    trade_stream = "aggTrade"
    render_trades = staticmethod(render_agg_trades)
    render_depth = staticmethod(render_depth)

    # ---- WebSocket ------------------------------------------------------------------------

    def ws_accept(self, path: str, query: Query) -> HttpReply | None:
        return super().ws_accept(split_route(path)[1], query)

    def open_streams(self, client: Client, request_path: str) -> None:
        route, rest = split_route(request_path)
        client.state["route"] = route
        super().open_streams(client, rest)
        self._unroute(client)

    def _control(self, client: Client, raw: str | bytes) -> dict:
        reply = super()._control(client, raw)
        self._unroute(client)
        return reply

    @staticmethod
    def _unroute(client: Client) -> None:
        """A routed connection silently never delivers the other route's streams."""
        route = client.state.get("route")
        if route is not None:
            client.subs = {s for s in client.subs if s.partition("@")[2] in ROUTES[route]}

    # ---- REST -----------------------------------------------------------------------------

    def http_get(self, path: str, query: Query) -> HttpReply | Awaitable[HttpReply]:
        if path == "/fapi/v1/depth":
            return self._depth(query)
        if path == "/fapi/v1/exchangeInfo":
            body = {
                "timezone": "UTC",
                "serverTime": time.time_ns() // 1_000_000,
                "rateLimits": RATE_LIMITS,
                "exchangeFilters": [],
                "assets": [],
                "symbols": [symbol_info(i) for i in self.venue.instruments.values()],
            }
            return HttpReply.json(200, body, self._weigh(1))
        if path == "/fapi/v1/ping":
            return HttpReply.json(200, {})
        if path == "/fapi/v1/time":
            return HttpReply.json(200, {"serverTime": time.time_ns() // 1_000_000})
        return HttpReply.json(404, {"code": -1, "msg": f"Not found: {path}"})

    async def _depth(self, query: Query) -> HttpReply:
        venue = self.venue
        venue.stats.rest_depth_calls += 1
        symbol = query.get("symbol", "")
        if symbol not in venue.instruments:
            return HttpReply.json(400, ERR_SYMBOL)
        raw = query.get("limit", "500")
        if not raw.isdigit() or int(raw) not in LIMITS:
            msg = f"Illegal limit {raw!r}; valid limits are {list(LIMITS)}."
            return HttpReply.json(400, {"code": -1100, "msg": msg})
        limit = int(raw)
        headers = self._weigh(
            2 if limit <= 50 else 5 if limit <= 100 else 10 if limit <= 500 else 20
        )
        fault = venue.faults.take_rest(symbol)
        if fault is not None:
            log.info("binance-perp %s: %s fault on REST depth", symbol, fault.kind)
            if fault.kind == "rest429":
                return HttpReply.json(429, ERR_429, [*headers, ("Retry-After", "1")])
            if fault.kind == "rest500":
                return HttpReply.json(500, ERR_500, headers)
        book, inst = venue.books[symbol], venue.instruments[symbol]
        bids, asks = book.top(limit)
        pd, sd, te, se = inst.price_decimals, inst.size_decimals, inst.tick_e8, inst.step_e8
        now = time.time_ns() // 1_000_000
        body = orjson.dumps(
            {
                "lastUpdateId": ID_SCALE * (book.last_id + 1),
                "E": now,
                "T": now,
                "bids": [[fmt_dec(p * te, pd), fmt_dec(q * se, sd)] for p, q in bids],
                "asks": [[fmt_dec(p * te, pd), fmt_dec(q * se, sd)] for p, q in asks],
            }
        )
        return await rest_answer(HttpReply(200, body, headers), fault)
