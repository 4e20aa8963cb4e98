"""Kraken Spot WebSocket v2: ``book`` (depth 25) and ``trade``; the snapshot comes on subscribe.

Integrity (../shared/docs/exchanges.md section 3.2): there are no sequence numbers; every book
message carries a CRC32 of the top 10 levels. The sync applies all levels of a message,
truncates each side to the subscribed depth (``book_depth``: Kraken sends no delete for a level
pushed out of scope), then ``verify`` compares ``book_checksum``; a mismatch resyncs that
instrument and ``resubscribe`` asks for a fresh snapshot on the open connection.

Numbers: v2 sends JSON numbers (``0.00100000`` on the wire, ``0.001`` once decoded). Every level
is re-printed with the pair's precision (AssetPairs ``pair_decimals``/``lot_decimals``, or the v2
``instrument`` channel's ``price_precision``/``qty_precision``), which gives back the wire text
exactly while ``value * 10**precision < 2**52`` (a double's error, half a unit in its 53rd bit,
is then below half a unit of the last decimal); the book keeps those strings for the checksum.
A frame with a larger value (45M of an 8-decimal asset) is parsed again with Decimals.
Trades: ``side`` is already the taker side.

| channel     | variant        | role     | action                                   | evidence                 |
|-------------|----------------|----------|------------------------------------------|--------------------------|
| book        | snapshot       | snapshot | reset; checksum verified                 | PKS orderbook-v2.json    |
| book        | update         | delta    | all levels, truncate to depth, CRC32     | same: 510/510 checksums  |
| trade       | update         | trade    | batch in order, side = taker             | Kraken docs (S18)        |
| trade       | snapshot       | ignored  | old trades (we subscribe snapshot=false) | Kraken docs (S18)        |
| heartbeat   | -              | ignored  | keeps the 5 s watchdog fed               | Kraken docs (S14)        |
| status      | update         | ignored  | system status on connect                 | ccxt live frames (S21)   |
| (method)    | subscribe, pong| ignored  | an ack with success=false raises         | ccxt live frames (S21)   |
| AssetPairs  | REST metadata  | metadata | wsname + X/Z codes -> BTC/USD, BTC-USD   | cryptofeed KRAKEN.0 2021 |
| instrument  | snapshot       | metadata | same, from ``symbol``/precisions         | kraken-data-recorder     |
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Iterable
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import orjson

from common.book import OrderBook
from common.config import ConfigError
from common.model import (
    BookUpdate,
    ConnectionSpec,
    Event,
    HttpRequest,
    Instrument,
    RawLevel,
    Trade,
    TradeBatch,
)
from services.ingest.venue import ParseError, VenueError, VenuePlugin

DEPTHS = (10, 25, 100, 500, 1000)
CHECKSUM_LEVELS = 10
SYMBOLS_PER_CONNECTION = 50
LEGACY_ASSETS = {"XBT": "BTC", "XDG": "DOGE"}  # REST/v1 codes whose v2 name differs
NO_BOOK = ("delisted", "work_in_progress")  # pair statuses without a live book


def asset_name(code: str, ws_part: str) -> str | None:
    """A REST asset code (``XXBT``, ``ZUSD``, ``ADA``) as v2 names it (``BTC``, ``USD``, ``ADA``).
    ``ws_part`` is the same asset in the pair's ``wsname``: the code, or the code without its
    legacy X/Z prefix; anything else is not guessed (None: the pair is left out)."""
    if code != ws_part and not (code[:1] in ("X", "Z") and code[1:] == ws_part):
        return None
    return LEGACY_ASSETS.get(ws_part, ws_part)


class _Inexact(Exception):
    """A number a float cannot carry to the pair's precision: re-read the frame exactly."""


def book_checksum(asks: Iterable[RawLevel], bids: Iterable[RawLevel]) -> int:
    """Kraken's book CRC32 (v2 and v1): the top 10 asks best first, then the top 10 bids best
    first, each price then qty as printed with the pair's precision, ``.`` removed, leading
    zeros stripped; unsigned. (Verified on every update: one flat list, no helper calls.)"""
    fields = [x.replace(".", "").lstrip("0") for level in asks for x in level]
    fields += [x.replace(".", "").lstrip("0") for level in bids for x in level]
    return zlib.crc32("".join(fields).encode())


def rfc3339_ns(text: str) -> int:
    """``2023-07-30T15:29:58.343415Z`` -> integer ns since the epoch (any fraction length)."""
    head, _, frac = text.rstrip("Z").partition(".")
    secs = int(datetime.fromisoformat(head).replace(tzinfo=UTC).timestamp())
    return secs * 1_000_000_000 + int((frac + "000000000")[:9])


class KrakenSpot(VenuePlugin):
    snapshot_source = "stream"
    keep_raw_levels = True
    checksum_uses_metadata = True  # numbers are re-printed with the pair's precision
    watchdog_s = 5.0  # heartbeats come every second when idle (Kraken's own advice: ~5 s)
    ping_interval_s = 30.0
    ping_message = '{"method":"ping"}'
    rest_weight_per_minute = 60  # public REST: about one call a second
    pairs_path = "/0/public/AssetPairs"
    options = frozenset({"depth"})

    def __init__(self, cfg) -> None:
        super().__init__(cfg)
        depth = self.option("depth", int, 25)
        if depth not in DEPTHS:
            raise ConfigError(f"[venues.{cfg.name}] depth must be one of {DEPTHS}, not {depth}")
        self.book_depth = depth
        self.precision: dict[str, tuple[int, int]] = {}  # v2 symbol -> (price, qty) decimals
        self.exact_below: dict[str, tuple[float, float]] = {}  # floats print back exactly below

    # -- metadata ---------------------------------------------------------------------------
    def metadata_requests(self) -> list[HttpRequest]:
        return [HttpRequest(self.cfg.rest_url + self.pairs_path)]

    def parse_metadata(self, bodies: list[bytes]) -> list[Instrument]:
        """REST ``AssetPairs``, or a v2 ``instrument`` snapshot (same facts, v2 names)."""
        doc = orjson.loads(bodies[0])
        if doc.get("channel") == "instrument":
            rows = [
                (p["symbol"], p["base"], p["quote"], p["price_precision"], p["qty_precision"],
                 p["status"])
                for p in doc["data"]["pairs"]
            ]  # fmt: skip
        else:
            if doc.get("error"):
                raise ValueError(f"AssetPairs error: {doc['error']}")
            rows = []
            for pair in doc["result"].values():
                if "wsname" not in pair:  # dark-pool ".d" pairs have no WebSocket book
                    continue
                ws_base, _, ws_quote = pair["wsname"].partition("/")
                base, quote = asset_name(pair["base"], ws_base), asset_name(pair["quote"], ws_quote)
                if base is None or quote is None:
                    continue
                pp, qp = pair["pair_decimals"], pair["lot_decimals"]
                status = pair.get("status", "online")
                rows.append((f"{base}/{quote}", base, quote, pp, qp, status))  # the v2 symbol
        out = []
        for native, base, quote, pp, qp, status in rows:
            if base not in self.cfg.bases or quote != self.cfg.quote or status in NO_BOOK:
                continue
            if self.precision.get(native, (pp, qp)) != (pp, qp):  # read again, changed
                self.exact_below.pop(native, None)
            self.precision[native] = (pp, qp)
            out.append(Instrument(self.venue, native, base, quote, "spot", pp, qp))
        return out

    # -- transport --------------------------------------------------------------------------
    def _sub(self, method: str, channel: str, symbols: list[str], **params: Any) -> str:
        body = {"channel": channel, "symbol": symbols, **params}
        return orjson.dumps({"method": method, "params": body}).decode()

    def connections(self, instruments: list[Instrument]) -> list[ConnectionSpec]:
        specs = []
        for i in range(0, len(instruments), SYMBOLS_PER_CONNECTION):
            chunk = instruments[i : i + SYMBOLS_PER_CONNECTION]
            symbols = [inst.native for inst in chunk]
            subscribe = [
                self._sub("subscribe", "book", symbols, depth=self.book_depth, snapshot=True),
                self._sub("subscribe", "trade", symbols, snapshot=False),
            ]
            label = f"{self.venue}-{i // SYMBOLS_PER_CONNECTION}"
            specs.append(ConnectionSpec(self.cfg.ws_url, subscribe, chunk, label))
        return specs

    def resubscribe(self, inst: Instrument) -> list[str] | None:
        """Unsubscribe then subscribe the one book: the venue answers with a fresh snapshot."""
        return [
            self._sub("unsubscribe", "book", [inst.native], depth=self.book_depth),
            self._sub("subscribe", "book", [inst.native], depth=self.book_depth, snapshot=True),
        ]

    # -- parsing ----------------------------------------------------------------------------
    def parse(self, frame: str | bytes, ts_recv: int) -> list[Event]:
        msg = orjson.loads(frame)
        if not isinstance(msg, dict):
            raise ParseError("frame is not a JSON object")
        channel = msg.get("channel")
        if channel is None:
            return self._method(msg)
        handler = self._channels.get(channel)
        if handler is None:
            raise ParseError(f"unknown channel {channel!r}")
        try:
            return handler(self, msg)
        except _Inexact:  # rare: keep every digit the venue sent, for the checksum
            return handler(self, json.loads(frame, parse_float=Decimal))

    def _method(self, msg: dict[str, Any]) -> list[Event]:
        method = msg.get("method")
        if method is None and (error := msg.get("error") or msg.get("Error")):
            raise VenueError(str(error))  # a rate limit: {"Error":"Exceeded msg rate"}
        if method not in ("subscribe", "unsubscribe", "pong"):
            raise ParseError(f"unknown message (method {method!r})")
        if msg.get("success") is False:
            raise VenueError(f"{method} refused: {msg.get('error')}")
        return []

    def _levels(self, levels: list[dict[str, Any]], symbol: str) -> list[RawLevel]:
        pp, qp = self.precision[symbol]
        out = [(f"{lv['price']:.{pp}f}", f"{lv['qty']:.{qp}f}") for lv in levels]
        bounds = self.exact_below.get(symbol)
        if bounds is None:
            bounds = self.exact_below[symbol] = (2.0**52 / 10**pp, 2.0**52 / 10**qp)
        p_max, q_max = bounds
        for lv in levels:
            p, q = lv["price"], lv["qty"]
            if (p >= p_max or q >= q_max) and (type(p) is float or type(q) is float):
                raise _Inexact
        return out

    def _book(self, msg: dict[str, Any]) -> list[Event]:
        kind = msg["type"]
        if kind not in ("snapshot", "update"):
            raise ParseError(f"unknown book message type {kind!r}")
        out: list[Event] = []
        for d in msg["data"]:
            symbol = d["symbol"]
            if symbol not in self.precision:
                raise ParseError(f"book of {symbol!r}, a symbol without metadata")
            ts = d.get("timestamp")
            checksum = d["checksum"]
            if not isinstance(checksum, int):
                raise ParseError(f"checksum {checksum!r} is not an integer")
            out.append(
                BookUpdate(
                    native=symbol,
                    is_snapshot=kind == "snapshot",
                    bids=self._levels(d["bids"], symbol),
                    asks=self._levels(d["asks"], symbol),
                    checksum=checksum,
                    ts_exch=rfc3339_ns(ts) if ts else None,
                )
            )
        return out

    def _trade(self, msg: dict[str, Any]) -> list[Event]:
        if msg["type"] != "update":
            return []  # a snapshot repeats old trades
        trades = []
        for d in msg["data"]:
            side = d["side"]
            if side not in ("buy", "sell"):
                raise ParseError(f"trade side {side!r}")
            trades.append(
                Trade(
                    native=d["symbol"],
                    price=float(d["price"]),
                    size=float(d["qty"]),
                    side=side,
                    trade_id=str(d["trade_id"]),
                    ts_exch=rfc3339_ns(d["timestamp"]),
                )
            )
        return [TradeBatch(trades)] if trades else []

    def _ignore(self, msg: dict[str, Any]) -> list[Event]:
        return []

    _channels = {"book": _book, "trade": _trade, "heartbeat": _ignore, "status": _ignore}

    # -- integrity --------------------------------------------------------------------------
    def verify(self, inst: Instrument, book: OrderBook, update: BookUpdate) -> str | None:
        if update.checksum is None:  # v1 snapshots (replayed in tests) carry none
            return None
        bids, asks = book.top_raw(CHECKSUM_LEVELS)
        ours = book_checksum(asks, bids)
        if ours != update.checksum:
            return f"checksum {ours} != venue's {update.checksum}"
        return None


PLUGIN = KrakenSpot
