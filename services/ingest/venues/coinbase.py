"""Coinbase Advanced Trade: ``level2`` (delivered as ``l2_data``), ``market_trades``, ``heartbeats``.

Integrity (../shared/docs/exchanges.md section 4.1): there is no checksum and no per-product
sequence. ``sequence_num`` counts every message of one CONNECTION, across all channels and
products, from the first frame on. The stateful parser of each connection (``new_parser``)
checks it: a jump emits ``ConnectionGap`` and the runner reconnects, so every book on that
connection is dropped and rebuilt from the fresh full-book snapshots. A repeated or older number
is a duplicate and is skipped (one more than 1000 behind is no repeat: a gap). A frame that
cannot be read does not consume its number, so it counts as lost: the next frame shows the jump
(a truncated copy followed by the intact frame with the same number is harmless). Except a
trade, heartbeat or ack frame whose number could be read: it held no book data, so it is
skipped and counted without resyncing the books. A book that crosses itself is resynced by
reconnecting too (``resubscribe`` returns None): the venue has no per-product resync that keeps
the sequence.

Books: a ``snapshot`` event is the ENTIRE book (BTC-USD: ~46k levels, a 5 MB frame, hence
``max_frame_bytes``); ``update`` events carry absolute ``new_quantity`` per level, ``"0"``
deletes; sides are ``bid`` and ``offer``. ``ts_exch`` of a book message is the envelope's
``timestamp`` (one parse per message, not one per level).

Trades: ``side`` is the MAKER side (exchanges.md: every SELL printed at the ask), so the taker
side is the opposite. The ``snapshot`` of recent trades sent on subscribe is skipped: those trades
happened before we connected and would be published again on every reconnect. The trades of an
``update`` are emitted oldest first (sorted by time, then trade id), whatever the venue's order.

| channel       | variant        | role     | action                                   | evidence          |
|---------------|----------------|----------|------------------------------------------|-------------------|
| l2_data       | snapshot       | snapshot | replace the product's book               | 2026 capture (doc)|
| l2_data       | update         | delta    | absolute sizes, "0" deletes, bid/offer   | 2026 capture (doc)|
| market_trades | update         | trade    | taker = opposite of maker ``side``       | 2026 capture, legacy ``match`` replay |
| market_trades | snapshot       | ignored  | old trades, newest first                 | AT docs           |
| heartbeats    | heartbeat      | ignored  | keeps channels open (1/s), has a number  | 2026 capture (doc)|
| subscriptions | ack            | ignored  | has a number                             | 2026 capture (doc)|
| (all)         | sequence_num   | control  | +1 per frame per connection, else resync | 2026 capture (doc)|
| (none)        | type=error     | error    | raised: logged and counted               | AT docs           |
| market/products | SPOT, online | metadata | base/quote ids; ``alias`` products skipped | AT docs, ccxt   |
"""

from __future__ import annotations

import calendar
from typing import Any

import orjson

from common.model import (
    BookUpdate,
    ConnectionGap,
    ConnectionSpec,
    Event,
    HttpRequest,
    Instrument,
    Trade,
    TradeBatch,
)
from services.ingest.venue import FrameParser, ParseError, VenueError, VenuePlugin

CHANNELS = ("level2", "market_trades", "heartbeats")
MAX_REPEAT_BACK = 1000  # a frame this far behind the last one is no repeat: frames all after it
BOOKLESS_CHANNELS = frozenset(("market_trades", "heartbeats", "subscriptions"))
TAKER_SIDE = {"BUY": "sell", "SELL": "buy"}  # the venue's side is the maker's
_SECONDS: dict[str, int] = {}  # "2026-08-09T21:05:48" -> unix seconds (memo of a pure function)


def decimals(step: str) -> int:
    """Decimals of an increment string such as ``"0.01000000"`` -> 2."""
    return len(step.rstrip("0").partition(".")[2])


def ts_ns(text: str) -> int:
    """RFC 3339 UTC time with 0-9 fractional digits (``2026-08-09T21:05:48.483587501Z``) -> ns."""
    head, rest = text[:19], text[19:]
    secs = _SECONDS.get(head)
    if secs is None:
        if len(head) != 19 or head[10] != "T":
            raise ParseError(f"bad timestamp {text!r}")
        secs = calendar.timegm(
            (int(head[:4]), int(head[5:7]), int(head[8:10]), int(head[11:13]), int(head[14:16]),
             int(head[17:19]), 0, 0, 0)
        )  # fmt: skip
        if len(_SECONDS) > 10_000:
            _SECONDS.clear()
        _SECONDS[head] = secs
    if rest == "Z":
        return secs * 1_000_000_000
    if rest[:1] != "." or rest[-1:] != "Z" or not rest[1:-1].isdigit():
        raise ParseError(f"bad timestamp {text!r}")
    return secs * 1_000_000_000 + int(rest[1:-1][:9].ljust(9, "0"))


class CoinbaseAdvanced(VenuePlugin):
    snapshot_source = "stream"
    watchdog_s = 10.0  # heartbeats arrive every second
    max_frame_bytes = 16 * 1024 * 1024  # full-book snapshots: 5 MB for BTC-USD in 2026
    rest_weight_per_minute = 300  # public REST: 10 requests/s per IP; we need one call
    products_path = "/api/v3/brokerage/market/products"
    options = frozenset({"products_per_connection", "max_frame_bytes"})

    def __init__(self, cfg) -> None:
        super().__init__(cfg)
        self.per_connection = self.option("products_per_connection", int, 10)
        self.max_frame_bytes = self.option("max_frame_bytes", int, self.max_frame_bytes)

    # -- metadata ---------------------------------------------------------------------------
    def metadata_requests(self) -> list[HttpRequest]:
        return [HttpRequest(self.cfg.rest_url + self.products_path, {"product_type": "SPOT"})]

    def _is_wanted(self, p: dict[str, Any]) -> bool:
        return (
            p.get("product_type") == "SPOT"
            and p.get("base_currency_id") in self.cfg.bases
            and p.get("quote_currency_id") == self.cfg.quote
            and str(p.get("status", "")).lower() == "online"
            and not p.get("trading_disabled")
            and not p.get("is_disabled")
            # an alias (BTC-USDC -> "BTC-USD") has no book of its own on public channels
            and not p.get("alias")
        )

    def parse_metadata(self, bodies: list[bytes]) -> list[Instrument]:
        out: list[Instrument] = []
        seen: set[str] = set()
        for p in orjson.loads(bodies[0])["products"]:
            if not self._is_wanted(p) or p["base_currency_id"] in seen:
                continue
            seen.add(p["base_currency_id"])
            tick = p.get("price_increment") or p.get("quote_increment")
            step = p.get("base_increment")
            out.append(
                Instrument(
                    venue=self.venue,
                    native=p["product_id"],
                    base=p["base_currency_id"],
                    quote=p["quote_currency_id"],
                    price_precision=decimals(tick) if tick else None,
                    qty_precision=decimals(step) if step else None,
                )
            )
        return out

    # -- transport --------------------------------------------------------------------------
    def connections(self, instruments: list[Instrument]) -> list[ConnectionSpec]:
        specs = []
        n = self.per_connection
        for i in range(0, len(instruments), n):
            chunk = instruments[i : i + n]
            ids = [inst.native for inst in chunk]
            subscribe = [
                orjson.dumps({"type": "subscribe", "product_ids": ids, "channel": ch}).decode()
                for ch in CHANNELS
            ]
            specs.append(
                ConnectionSpec(self.cfg.ws_url, subscribe, chunk, label=f"{self.venue}-{i // n}")
            )
        return specs

    def new_parser(self, conn: ConnectionSpec) -> FrameParser:
        return ConnectionParser(self)

    # -- parsing (stateless; the runner goes through ConnectionParser) ----------------------
    def parse(self, frame: str | bytes, ts_recv: int) -> list[Event]:
        return self.parse_message(orjson.loads(frame))

    def parse_message(self, msg: dict[str, Any]) -> list[Event]:
        handler = self._handlers.get(msg.get("channel"))
        if handler is None:
            raise ParseError(f"unexpected channel {msg.get('channel')!r}")
        return handler(self, msg)

    def _l2(self, msg: dict[str, Any]) -> list[Event]:
        seq, ts = msg["sequence_num"], ts_ns(msg["timestamp"])
        out: list[Event] = []
        for ev in msg["events"]:
            kind = ev["type"]
            if kind not in ("snapshot", "update"):
                raise ParseError(f"unknown l2_data event type {kind!r}")
            bids: list[tuple[str, str]] = []
            asks: list[tuple[str, str]] = []
            for u in ev["updates"]:
                level = (u["price_level"], u["new_quantity"])
                if not (float(level[0]) > 0 and float(level[1]) >= 0):  # bad ones raise here
                    raise ParseError(f"bad level {level!r}")
                side = u["side"]
                if side == "bid":
                    bids.append(level)
                elif side == "offer":
                    asks.append(level)
                else:
                    raise ParseError(f"unknown book side {side!r}")
            native = ev["product_id"]
            out.append(BookUpdate(native, kind == "snapshot", bids, asks, last_id=seq, ts_exch=ts))
        return out

    def _trades(self, msg: dict[str, Any]) -> list[Event]:
        trades: list[Trade] = []
        for ev in msg["events"]:
            kind = ev["type"]
            if kind == "snapshot":
                continue  # trades from before we connected (see the module docstring)
            if kind != "update":
                raise ParseError(f"unknown market_trades event type {kind!r}")
            for t in ev["trades"]:
                side = TAKER_SIDE.get(t["side"])
                if side is None:
                    raise ParseError(f"unknown trade side {t['side']!r}")
                tid = str(t["trade_id"])
                trades.append(
                    Trade(t["product_id"], float(t["price"]), float(t["size"]), side, tid,
                          ts_ns(t["time"]))
                )  # fmt: skip
        if not trades:
            return []
        trades.sort(key=lambda t: (t.ts_exch, int(t.trade_id) if t.trade_id.isdigit() else 0))
        return [TradeBatch(trades)]

    def _nothing(self, msg: dict[str, Any]) -> list[Event]:
        return []

    _handlers = {
        "l2_data": _l2,
        "market_trades": _trades,
        "heartbeats": _nothing,
        "subscriptions": _nothing,
    }


class ConnectionParser(FrameParser):
    """The frames of ONE connection: ``sequence_num`` must grow by exactly 1 per frame."""

    def __init__(self, plugin: CoinbaseAdvanced) -> None:
        self.plugin = plugin
        self.last_seq: int | None = None
        self.duplicates = 0

    def parse(self, frame: str | bytes, ts_recv: int) -> list[Event]:
        msg = orjson.loads(frame)
        if type(msg) is not dict:
            raise ParseError("frame is not a JSON object")
        seq = msg.get("sequence_num")
        if type(seq) is not int:
            if msg.get("type") == "error":
                raise VenueError(f"error: {msg.get('message')!r}")
            raise ParseError("no integer sequence_num")
        last = self.last_seq
        if last is not None and seq <= last:
            if last - seq > MAX_REPEAT_BACK:  # the numbering started over: not a repeat
                self.last_seq = seq
                return [ConnectionGap(f"sequence_num went back {last} -> {seq}")]
            self.duplicates += 1
            return []
        if last is not None and seq != last + 1:
            self.last_seq = seq
            lost = seq - last - 1
            return [ConnectionGap(f"sequence_num jumped {last} -> {seq} ({lost} lost)")]
        try:
            events = self.plugin.parse_message(msg)
        except Exception:
            if msg.get("channel") in BOOKLESS_CHANNELS:  # no book data lost: skipped, counted
                self.last_seq = seq
            raise  # a book frame stays unconsumed: the next one resyncs the connection's books
        self.last_seq = seq
        return events


PLUGIN = CoinbaseAdvanced
