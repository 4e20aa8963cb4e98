"""Binance Spot wire formats (exchanges.md section 1): pure functions, no I/O."""

from __future__ import annotations

import re

import orjson

from ..assets import Instrument, fmt8
from ..book import BookUpdate

STREAM_RE = re.compile(r"^([a-z0-9]+)@(depth|depth@100ms|trade)$")
MAX_LIMIT = 5000
ERR_SYMBOL = {"code": -1121, "msg": "Invalid symbol."}
ERR_429 = {
    "code": -1003,
    "msg": "Too many requests; current limit of IP(127.0.0.1) is 6000 requests per minute."
    " Please use the websocket for live updates to avoid polling the API.",
}
ERR_500 = {"code": -1000, "msg": "An unknown error occured while processing the request."}
RATE_LIMITS = [
    {"rateLimitType": "REQUEST_WEIGHT", "interval": "MINUTE", "intervalNum": 1, "limit": 6000},
    {"rateLimitType": "ORDERS", "interval": "SECOND", "intervalNum": 10, "limit": 100},
    {"rateLimitType": "ORDERS", "interval": "DAY", "intervalNum": 1, "limit": 200000},
    {"rateLimitType": "RAW_REQUESTS", "interval": "MINUTE", "intervalNum": 5, "limit": 61000},
]


def depth_weight(limit: int) -> int:
    return 5 if limit <= 100 else 25 if limit <= 500 else 50 if limit <= 1000 else 250


def render_depth(update: BookUpdate) -> bytes:
    """The ``depthUpdate`` payload of one book event (unwrapped)."""
    inst = update.inst
    te, se = inst.tick_e8, inst.step_e8
    return orjson.dumps(
        {
            "e": "depthUpdate",
            "E": update.ts_ms,
            "s": inst.symbol,
            "U": update.first_id,
            "u": update.last_id,
            "b": [[fmt8(p * te), fmt8(q * se)] for p, q in update.bids],
            "a": [[fmt8(p * te), fmt8(q * se)] for p, q in update.asks],
        }
    )


def render_trades(update: BookUpdate) -> list[bytes]:
    """One ``trade`` payload per fill of the event (unwrapped)."""
    inst = update.inst
    return [
        orjson.dumps(
            {
                "e": "trade",
                "E": t.ts_ms,
                "s": inst.symbol,
                "t": t.trade_id,
                "p": fmt8(t.price * inst.tick_e8),
                "q": fmt8(t.qty * inst.step_e8),
                "T": t.ts_ms,
                "m": t.taker_sell,  # buyer is maker <=> the taker sold
                "M": True,
            }
        )
        for t in update.trades
    ]


def wrap(stream: str, data: bytes) -> bytes:
    return b'{"stream":"' + stream.encode() + b'","data":' + data + b"}"


def symbol_info(inst: Instrument) -> dict:
    return {
        "symbol": inst.symbol,
        "status": "TRADING",
        "baseAsset": inst.base,
        "baseAssetPrecision": 8,
        "quoteAsset": inst.quote,
        "quotePrecision": 8,
        "quoteAssetPrecision": 8,
        "orderTypes": ["LIMIT", "LIMIT_MAKER", "MARKET", "STOP_LOSS_LIMIT", "TAKE_PROFIT_LIMIT"],
        "icebergAllowed": True,
        "ocoAllowed": True,
        "isSpotTradingAllowed": True,
        "isMarginTradingAllowed": True,
        "filters": [
            {
                "filterType": "PRICE_FILTER",
                "minPrice": fmt8(inst.tick_e8),
                "maxPrice": "1000000.00000000",
                "tickSize": fmt8(inst.tick_e8),
            },
            {
                "filterType": "LOT_SIZE",
                "minQty": fmt8(inst.step_e8),
                "maxQty": "9000000.00000000",
                "stepSize": fmt8(inst.step_e8),
            },
        ],
        "permissions": [],
        "permissionSets": [["SPOT"]],
    }
