"""Kraken Spot wire formats (exchanges.md section 3): pure functions, no I/O.

Prices and quantities go out as JSON number literals printed with the pair's precision
(``"qty":0.00100000``), as Kraken v2 sends them, via ``orjson.Fragment``.
"""

from __future__ import annotations

import time
import zlib
from dataclasses import replace
from datetime import UTC, datetime

import orjson

from ..assets import Instrument, fmt_dec, make_instrument, to_e8
from ..book import BookUpdate

DEPTHS = (10, 25, 100, 500, 1000)
DEFAULT_DEPTH = 10
QTY_DECIMALS = 8
# pair_decimals of the real */USD pairs (instrument snapshot, 2024); other bases: 4
PRICE_DECIMALS = {
    "BTC": 1,
    "ETH": 2,
    "SOL": 2,
    "XRP": 5,
    "DOGE": 7,
    "ADA": 6,
    "AVAX": 2,
    "DOT": 4,
    "LINK": 5,
}
# REST asset codes that kept their legacy X/Z prefix, and the v1/wsname spelling of renamed ones
REST_CODES = {"BTC": "XXBT", "ETH": "XETH", "XRP": "XXRP", "DOGE": "XXDG", "USD": "ZUSD"}
WS1_NAMES = {"BTC": "XBT", "DOGE": "XDG"}
Levels = list[tuple[int, int]]  # (price ticks, qty lots), best first


def kraken_instrument(venue: str, base: str, quote: str) -> Instrument:
    """``BTC/USD`` with Kraken's tick (10**-pair_decimals) and lot step (1e-8)."""
    inst = make_instrument(venue, f"{base}/{quote}", base, quote)
    tick, step = _unit(PRICE_DECIMALS.get(base, 4)), _unit(QTY_DECIMALS)
    return replace(inst, tick=tick, step=step, tick_e8=to_e8(tick), step_e8=to_e8(step))


def finer(inst: Instrument) -> Instrument:
    """The pair printed with one more price decimal (same prices, same ``tick_e8``)."""
    return replace(inst, tick=_unit(inst.price_decimals + 1))


def _unit(decimals: int) -> str:
    """10**-decimals as a plain decimal string: 1 -> "0.1"."""
    return "0." + "0" * (decimals - 1) + "1" if decimals else "1"


def rfc3339(ts_ms: int) -> str:
    secs, ms = divmod(ts_ms, 1000)
    return datetime.fromtimestamp(secs, UTC).strftime("%Y-%m-%dT%H:%M:%S") + f".{ms:03d}000Z"


def now_rfc3339() -> str:
    return rfc3339(time.time_ns() // 1_000_000)


def _num(inst: Instrument, ticks: int, is_price: bool) -> str:
    if is_price:
        return fmt_dec(ticks * inst.tick_e8, inst.price_decimals)
    return fmt_dec(ticks * inst.step_e8, inst.size_decimals)


def checksum(inst: Instrument, bids: Levels, asks: Levels) -> int:
    """CRC32 of the top 10 asks (best first) then bids: digits of price and qty as printed,
    leading zeros stripped (exchanges.md 3.2)."""
    parts = []
    for levels in (asks[:10], bids[:10]):
        for p, q in levels:
            parts.append(_num(inst, p, True).replace(".", "").lstrip("0"))
            parts.append(_num(inst, q, False).replace(".", "").lstrip("0"))
    return zlib.crc32("".join(parts).encode())


def _levels(inst: Instrument, levels: Levels) -> list[dict]:
    return [
        {
            "price": orjson.Fragment(_num(inst, p, True)),
            "qty": orjson.Fragment(_num(inst, q, False)),
        }
        for p, q in levels
    ]


def render_book(
    inst: Instrument, kind: str, bids: Levels, asks: Levels, crc: int, ts_ms: int | None
) -> bytes:
    data: dict = {
        "symbol": inst.symbol,
        "bids": _levels(inst, bids),
        "asks": _levels(inst, asks),
        "checksum": crc,
    }
    if ts_ms is not None:
        data["timestamp"] = rfc3339(ts_ms)
    return orjson.dumps({"channel": "book", "type": kind, "data": [data]})


def render_trades(update: BookUpdate, inst: Instrument) -> bytes:
    """All fills of one event in one ``trade`` message, in order; ``side`` is the taker's."""
    data = [
        {
            "symbol": inst.symbol,
            "side": "sell" if t.taker_sell else "buy",
            "price": orjson.Fragment(_num(inst, t.price, True)),
            "qty": orjson.Fragment(_num(inst, t.qty, False)),
            "ord_type": "market",
            "trade_id": t.trade_id,
            "timestamp": rfc3339(t.ts_ms),
        }
        for t in update.trades
    ]
    return orjson.dumps({"channel": "trade", "type": "update", "data": data})


def asset_pair(inst: Instrument) -> tuple[str, dict]:
    """The ``AssetPairs`` entry of one market, keyed like the real one (``XXBTZUSD``)."""
    base, quote = REST_CODES.get(inst.base, inst.base), REST_CODES.get(inst.quote, inst.quote)
    ws_base, ws_quote = WS1_NAMES.get(inst.base, inst.base), WS1_NAMES.get(inst.quote, inst.quote)
    altname = ws_base + ws_quote
    legacy = inst.base in REST_CODES and inst.base != "DOGE"
    key = base + quote if legacy else altname
    return key, {
        "altname": altname,
        "wsname": f"{ws_base}/{ws_quote}",
        "aclass_base": "currency",
        "base": base,
        "aclass_quote": "currency",
        "quote": quote,
        "lot": "unit",
        "cost_decimals": 5,
        "pair_decimals": inst.price_decimals,
        "lot_decimals": inst.size_decimals,
        "lot_multiplier": 1,
        "leverage_buy": [],
        "leverage_sell": [],
        "fees": [[0, 0.4], [10000, 0.35]],
        "fees_maker": [[0, 0.25], [10000, 0.2]],
        "fee_volume_currency": "ZUSD",
        "margin_call": 80,
        "margin_stop": 40,
        "ordermin": "0.0001",
        "costmin": "0.5",
        "tick_size": inst.tick,
        "status": "online",
    }


def reply(method: str, req_id: object, **fields: object) -> bytes:
    """A method response (ack, error, pong) with Kraken's ``time_in``/``time_out``."""
    now = now_rfc3339()
    msg: dict = {"method": method}
    if req_id is not None:
        msg["req_id"] = req_id
    msg.update(fields)
    msg["time_in"] = msg["time_out"] = now
    return orjson.dumps(msg)


def status_frame(connection_id: int) -> bytes:
    data = {"version": "2.0.10", "system": "online", "api_version": "v2"}
    data["connection_id"] = connection_id
    return orjson.dumps({"channel": "status", "type": "update", "data": [data]})


HEARTBEAT = b'{"channel":"heartbeat"}'
