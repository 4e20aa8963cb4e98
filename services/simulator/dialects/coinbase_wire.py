"""Coinbase Advanced Trade wire formats (exchanges.md section 4.1): pure functions, no I/O."""

from __future__ import annotations

import time
from collections.abc import Iterable

import orjson

from ..assets import Instrument, fmt_min
from ..book import TradeEvent

CHANNELS = ("level2", "market_trades", "heartbeats")
PRODUCTS_PATH = "/api/v3/brokerage/market/products"
HEARTBEAT_S = 1.0
RECENT_TRADES = 50  # trades in the market_trades snapshot sent on subscribe
ERR_429 = {"error": "RATE_LIMIT_EXCEEDED", "message": "Too many requests", "error_details": ""}
ERR_500 = {"error": "INTERNAL", "message": "internal error", "error_details": ""}
# a product the plugin must not take for a spot market (product_type FUTURE, no base id)
FUTURE_PRODUCT = {
    "product_id": "BIT-26DEC30-CDE",
    "base_currency_id": "",
    "quote_currency_id": "USD",
    "product_type": "FUTURE",
    "status": "",
    "trading_disabled": False,
    "is_disabled": False,
    "alias": "",
    "alias_to": [],
    "price_increment": "5",
    "base_increment": "1",
    "display_name": "BTC 26 DEC 30",
}


def rfc3339(ns: int, digits: int = 9) -> str:
    """``2026-08-09T21:05:48.483587501Z`` (envelope ``timestamp``: 9 digits; events: 6)."""
    secs, frac = divmod(ns, 1_000_000_000)
    head = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(secs))
    return f"{head}.{frac // 10 ** (9 - digits):0{digits}d}Z"


def go_time(ns: int, uptime_ns: int) -> str:
    """The heartbeat's Go ``time.Time`` string: ``2026-08-09 21:05:48.854840045 +0000 UTC m=+41691.260485341``."""
    secs, frac = divmod(ns, 1_000_000_000)
    head = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(secs))
    return f"{head}.{frac:09d} +0000 UTC m=+{uptime_ns / 1e9:.9f}"


def envelope(channel: str, seq: int, ts_ns: int, events: bytes) -> bytes:
    """One message: ``channel``, ``timestamp``, ``sequence_num`` (per connection), ``events``."""
    head = f'{{"channel":"{channel}","timestamp":"{rfc3339(ts_ns)}","sequence_num":{seq},"events":'
    return head.encode() + events + b"}"


def l2_events(
    kind: str,
    inst: Instrument,
    bids: Iterable[tuple[int, int]],
    asks: Iterable[tuple[int, int]],
    event_time: str,
) -> bytes:
    """``[{"type":"snapshot"|"update","product_id":..,"updates":[{"side":"bid"|"offer",..}]}]``."""
    te, se = inst.tick_e8, inst.step_e8
    head = f'{{"side":"%s","event_time":"{event_time}","price_level":"'
    bid, offer = head % "bid", head % "offer"
    parts = [f'{bid}{fmt_min(p * te)}","new_quantity":"{fmt_min(q * se)}"}}' for p, q in bids]
    parts += [f'{offer}{fmt_min(p * te)}","new_quantity":"{fmt_min(q * se)}"}}' for p, q in asks]
    pre = f'[{{"type":"{kind}","product_id":"{inst.symbol}","updates":['
    return pre.encode() + ",".join(parts).encode() + b"]}]"


def trades_events(kind: str, inst: Instrument, trades: Iterable[TradeEvent]) -> bytes:
    """``[{"type":..,"trades":[..]}]``, in the order given (the venue sends newest first).
    ``side`` is the MAKER side: a taker sell hits a resting BUY order."""
    te, se = inst.tick_e8, inst.step_e8
    rows = [
        {
            "product_id": inst.symbol,
            "trade_id": str(t.trade_id),
            "price": fmt_min(t.price * te),
            "size": fmt_min(t.qty * se),
            "time": rfc3339(t.ts_ms * 1_000_000, 6),
            "side": "BUY" if t.taker_sell else "SELL",
        }
        for t in trades
    ]
    return orjson.dumps([{"type": kind, "trades": rows}])


def heartbeat_events(ns: int, uptime_ns: int) -> bytes:
    return orjson.dumps(
        [{"current_time": go_time(ns, uptime_ns), "heartbeat_counter": uptime_ns // 1_000_000_000}]
    )


def subscriptions_events(subs: Iterable[str]) -> bytes:
    """The ack: every channel of the connection with its product ids."""
    by_channel: dict[str, list[str]] = {}
    for key in sorted(subs):
        channel, _, product = key.partition(":")
        ids = by_channel.setdefault(channel, [])
        if product:
            ids.append(product)
    return orjson.dumps([{"subscriptions": by_channel}])


def error_frame(message: str) -> bytes:
    """Errors carry no ``sequence_num``."""
    return orjson.dumps({"type": "error", "message": message})


def product_info(inst: Instrument, alias: str = "", alias_to: list[str] | None = None) -> dict:
    """One entry of ``GET /api/v3/brokerage/market/products`` (fields as in the live API)."""
    return {
        "product_id": inst.symbol,
        "price": "",
        "base_increment": inst.step,
        "quote_increment": inst.tick,
        "quote_min_size": "1",
        "quote_max_size": "150000000",
        "base_min_size": inst.step,
        "base_max_size": "3400",
        "base_name": inst.base,
        "quote_name": inst.quote,
        "watched": False,
        "is_disabled": False,
        "new": False,
        "status": "online",
        "cancel_only": False,
        "limit_only": False,
        "post_only": False,
        "trading_disabled": False,
        "auction_mode": False,
        "product_type": "SPOT",
        "quote_currency_id": inst.quote,
        "base_currency_id": inst.base,
        "fcm_trading_session_details": None,
        "mid_market_price": "",
        "alias": alias,
        "alias_to": alias_to or [],
        "base_display_symbol": inst.base,
        "quote_display_symbol": inst.quote,
        "view_only": False,
        "price_increment": inst.tick,
        "display_name": inst.symbol,
        "product_venue": "CBE",
    }
