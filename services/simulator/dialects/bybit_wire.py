"""Bybit v5 wire formats (exchanges.md section 2): pure functions, no I/O.

Simulator symbols are ``<category>:<SYM>`` (``linear:BTCUSDT``) because spot and linear both
call BTC/USDT ``BTCUSDT``; the wire carries ``SYM`` alone. Spot numbers are minimal
(``"1922.1"``), linear ones are padded to the tick and lot step (``"65114.20"``); deletes are
``"0"`` in both (as in the real linear recording).
"""

from __future__ import annotations

import base64
import re
import uuid

import orjson

from ..assets import Instrument, fmt_dec, fmt_min
from ..book import TradeEvent

CATEGORIES = ("spot", "linear")
DEPTHS = (50, 200, 1000)  # level 1 (snapshot-only, re-pushed every 3 s) is not simulated
SPOT_ARGS_PER_REQUEST = 10
TOPIC_RE = re.compile(r"^(?:orderbook\.(\d+)|publicTrade)\.([A-Z0-9]+)$")
TICK_DIRECTIONS = ("PlusTick", "ZeroPlusTick", "MinusTick", "ZeroMinusTick")


def split(symbol: str) -> tuple[str, str]:
    """``"linear:BTCUSDT"`` -> ``("linear", "BTCUSDT")``."""
    category, _, wire = symbol.partition(":")
    return category, wire


def price_str(inst: Instrument, category: str, ticks: int) -> str:
    value = ticks * inst.tick_e8
    return fmt_min(value) if category == "spot" else fmt_dec(value, inst.price_decimals)


def size_str(inst: Instrument, category: str, lots: int) -> str:
    if lots == 0:
        return "0"
    value = lots * inst.step_e8
    return fmt_min(value) if category == "spot" else fmt_dec(value, inst.size_decimals)


def render_book(
    inst: Instrument,
    depth: int,
    kind: str,
    bids: list[tuple[int, int]],
    asks: list[tuple[int, int]],
    u: int,
    seq: int,
    ts_ms: int,
) -> bytes:
    """One ``orderbook.<depth>.<SYM>`` message; spot puts ``ts`` before ``type``, linear after."""
    category, wire = split(inst.symbol)
    data = {
        "s": wire,
        "b": [[price_str(inst, category, p), size_str(inst, category, q)] for p, q in bids],
        "a": [[price_str(inst, category, p), size_str(inst, category, q)] for p, q in asks],
        "u": u,
        "seq": seq,
    }
    topic = f"orderbook.{depth}.{wire}"
    if category == "spot":
        msg = {"topic": topic, "ts": ts_ms, "type": kind, "data": data, "cts": ts_ms}
    else:
        msg = {"topic": topic, "type": kind, "ts": ts_ms, "data": data, "cts": ts_ms}
    return orjson.dumps(msg)


def tick_direction(last_price: int | None, last_dir: str, price: int) -> str:
    """Bybit's ``L``: the move against the previous trade (zero ticks keep the last sign)."""
    if last_price is None or price == last_price:
        return "ZeroMinusTick" if last_dir in ("MinusTick", "ZeroMinusTick") else "ZeroPlusTick"
    return "PlusTick" if price > last_price else "MinusTick"


def render_trades(
    inst: Instrument, trades: list[TradeEvent], directions: list[str], seq: int
) -> bytes:
    """One ``publicTrade.<SYM>`` message with every fill of the event, in order (``S`` = the
    taker side; spot ids are numeric strings, linear ones UUIDs; ``L`` only on linear)."""
    category, wire = split(inst.symbol)
    data = []
    for t, direction in zip(trades, directions, strict=True):
        item = {
            "T": t.ts_ms,
            "s": wire,
            "S": "Sell" if t.taker_sell else "Buy",
            "v": size_str(inst, category, t.qty),
            "p": price_str(inst, category, t.price),
        }
        if category == "spot":
            item["i"] = str(t.trade_id)
        else:
            item["L"] = direction
            item["i"] = str(uuid.UUID(int=t.trade_id * 0x9E3779B97F4A7C15 % (1 << 128)))
        item.update({"BT": False, "RPI": False, "seq": seq})
        data.append(item)
    ts = trades[-1].ts_ms if trades else 0
    topic = f"publicTrade.{wire}"
    return orjson.dumps({"topic": topic, "type": "snapshot", "ts": ts, "data": data})


def reply(category: str, conn_id: str, op: str, req_id: str | None, ok: bool, text: str) -> bytes:
    """Ack of subscribe/unsubscribe/ping in the category's shape: spot says ``ret_msg`` =
    the op (``"pong"`` for ping) and echoes ``req_id`` only if one was sent; linear has an
    empty ``ret_msg`` on success (``"pong"`` for ping) and always a ``req_id``."""
    msg: dict = {"success": ok}
    if category == "spot":
        msg["ret_msg"] = text if not ok else "pong" if op == "ping" else op
        msg["conn_id"] = conn_id
        if req_id is not None:
            msg["req_id"] = req_id
    else:
        msg["ret_msg"] = text if not ok else "pong" if op == "ping" else ""
        msg["conn_id"] = conn_id
        msg["req_id"] = req_id or ""
    msg["op"] = op
    return orjson.dumps(msg)


# ---- REST ---------------------------------------------------------------------------------


def envelope(result: object, ts_ms: int, code: int = 0, text: str = "OK") -> dict:
    return {"retCode": code, "retMsg": text, "result": result, "retExtInfo": {}, "time": ts_ms}


def spot_info(inst: Instrument) -> dict:
    _, wire = split(inst.symbol)
    return {
        "symbol": wire,
        "baseCoin": inst.base,
        "quoteCoin": inst.quote,
        "innovation": "0",
        "status": "Trading",
        "marginTrading": "utaOnly",
        "stTag": "0",
        "lotSizeFilter": {
            "basePrecision": inst.step,
            "quotePrecision": "0.00000001",
            "minOrderQty": inst.step,
            "maxOrderQty": "1000000",
            "minOrderAmt": "5",
            "maxOrderAmt": "8000000",
        },
        "priceFilter": {"tickSize": inst.tick},
        "riskParameters": {"priceLimitRatioX": "0.005", "priceLimitRatioY": "0.01"},
        "symbolType": "",
    }


def linear_info(
    inst: Instrument, symbol: str, contract: str, quote: str, delivery_ms: int = 0
) -> dict:
    """A linear contract of ``inst``'s base: the served perpetual, or (metadata only) a dated
    future / a USDC perpetual, so that a client must filter by contractType and quoteCoin."""
    tick = fmt_dec(inst.tick_e8, inst.price_decimals)
    return {
        "symbol": symbol,
        "contractType": contract,
        "status": "Trading",
        "baseCoin": inst.base,
        "quoteCoin": quote,
        "launchTime": "1585526400000",
        "deliveryTime": str(delivery_ms),
        "deliveryFeeRate": "" if contract == "LinearPerpetual" else "0.0005",
        "priceScale": str(inst.price_decimals),
        "leverageFilter": {"minLeverage": "1", "maxLeverage": "100.00", "leverageStep": "0.01"},
        "priceFilter": {"minPrice": tick, "maxPrice": "1999999.80", "tickSize": tick},
        "lotSizeFilter": {
            "maxOrderQty": "1190000",
            "minOrderQty": inst.step,
            "qtyStep": inst.step,
            "postOnlyMaxOrderQty": "1190000",
            "maxMktOrderQty": "500000",
            "minNotionalValue": "5",
        },
        "unifiedMarginTrade": True,
        "fundingInterval": 480 if contract == "LinearPerpetual" else 0,
        "settleCoin": quote,
        "copyTrading": "both",
        "upperFundingRate": "0.00375",
        "lowerFundingRate": "-0.00375",
        "isPreListing": False,
        "preListingInfo": None,
        "riskParameters": {"priceLimitRatioX": "0.01", "priceLimitRatioY": "0.02"},
        "symbolType": "",
    }


def encode_cursor(offset: int, last: str) -> str:
    return base64.urlsafe_b64encode(f"first={last}&offset={offset}".encode()).decode()


def decode_cursor(cursor: str) -> int:
    """Offset of a cursor made by ``encode_cursor``; raises ValueError on anything else."""
    text = base64.urlsafe_b64decode(cursor.encode()).decode()
    return int(text.rpartition("&offset=")[2])
