"""OKX v5 wire formats (exchanges.md section 5): pure functions, no I/O.

Prices and sizes are printed in OKX's shortest form (``"65000.1"``, ``"2"``, ``"0.0002"``); the
same formatting is used in snapshots and updates, so the CRC32 the client computes over the
strings it holds equals the one computed here over the simulator's book.
"""

from __future__ import annotations

import zlib

import orjson

from ..assets import Instrument, fmt_min
from ..book import BookUpdate, SimBook

BOOK_DEPTH = 400  # ``books``: the server maintains 400 levels a side
CHECKSUM_DEPTH = 25
Level = list[str]  # [price, size, "0" (deprecated liquidated orders), number of orders]


def level(inst: Instrument, price: int, qty: int) -> Level:
    orders = "0" if qty == 0 else str(1 + qty % 7)
    return [fmt_min(price * inst.tick_e8), fmt_min(qty * inst.step_e8), "0", orders]


def crc(bids: list[Level], asks: list[Level]) -> int:
    """The legacy checksum: best 25 a side interleaved ``bid:ask``, CRC32 as a signed int32."""
    parts: list[str] = []
    for i in range(max(len(bids), len(asks))):
        if i < len(bids):
            parts += bids[i][:2]
        if i < len(asks):
            parts += asks[i][:2]
    value = zlib.crc32(":".join(parts).encode())
    return value - (1 << 32) if value >= 1 << 31 else value


def book_checksum(book: SimBook) -> int:
    bids, asks = book.top(CHECKSUM_DEPTH)
    inst = book.inst
    return crc([level(inst, p, q) for p, q in bids], [level(inst, p, q) for p, q in asks])


def render_book(
    book: SimBook,
    action: str,
    bids: list[Level],
    asks: list[Level],
    seq: int,
    prev_seq: int,
    ts_ms: int,
    checksum: int,
) -> bytes:
    data = {
        "asks": asks,
        "bids": bids,
        "ts": str(ts_ms),
        "checksum": checksum,
        "prevSeqId": prev_seq,
        "seqId": seq,
    }
    arg = {"channel": "books", "instId": book.inst.symbol}
    return orjson.dumps({"arg": arg, "action": action, "data": [data]})


def snapshot_levels(book: SimBook) -> tuple[list[Level], list[Level]]:
    bids, asks = book.top(BOOK_DEPTH)
    inst = book.inst
    return [level(inst, p, q) for p, q in bids], [level(inst, p, q) for p, q in asks]


def update_levels(update: BookUpdate) -> tuple[list[Level], list[Level]]:
    inst = update.inst
    return (
        [level(inst, p, q) for p, q in update.bids],
        [level(inst, p, q) for p, q in update.asks],
    )


def render_trades(update: BookUpdate) -> bytes:
    """Every fill of the event in one ``trades`` message, in order; ``side`` is the taker's."""
    inst = update.inst
    data = [
        {
            "instId": inst.symbol,
            "tradeId": str(t.trade_id),
            "px": fmt_min(t.price * inst.tick_e8),
            "sz": fmt_min(t.qty * inst.step_e8),
            "side": "sell" if t.taker_sell else "buy",
            "ts": str(t.ts_ms),
            "count": "1",
        }
        for t in update.trades
    ]
    return orjson.dumps({"arg": {"channel": "trades", "instId": inst.symbol}, "data": data})


def instrument_info(inst: Instrument) -> dict[str, str]:
    return {
        "alias": "",
        "baseCcy": inst.base,
        "category": "1",
        "ctMult": "",
        "ctType": "",
        "ctVal": "",
        "ctValCcy": "",
        "expTime": "",
        "instFamily": "",
        "instId": inst.symbol,
        "instType": "SPOT",
        "lever": "10",
        "listTime": "1548133413000",
        "lotSz": inst.step,
        "maxLmtSz": "9999999999",
        "maxMktSz": "1000000",
        "minSz": inst.step,
        "quoteCcy": inst.quote,
        "settleCcy": "",
        "state": "live",
        "tickSz": inst.tick,
        "uly": "",
    }
