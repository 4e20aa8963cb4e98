"""Kraken Spot WebSocket v2 dialect (exchanges.md section 3).

Coverage:

| channel / route | variant | what is sent |
|---|---|---|
| WS `/v2` on connect | status | `{"channel":"status","type":"update","data":[{"system":"online",..}]}` |
| `subscribe` / `unsubscribe` | book (depth 10/25/100/500/1000, default 10), trade | one ack per symbol (`success`, `result`, `time_in`/`time_out`); errors with `success:false` |
| `book` | snapshot on subscribe, then update | top-N levels as JSON number literals printed with the pair's precision, CRC32 `checksum` of the top 10 |
| `trade` | update | every fill of an event in one message, in order, `side` = taker |
| `heartbeat` | | `{"channel":"heartbeat"}` each second a subscribed client got nothing else |
| `ping` | | `{"method":"pong","req_id":..,"time_in":..,"time_out":..}` |
| `GET /0/public/AssetPairs` | pair (optional) | legacy keys and codes (`XXBTZUSD`, `XXBT`/`ZUSD`, wsname `XBT/USD`), `pair_decimals`, `lot_decimals` |

Depth-limited views: per symbol and subscribed depth the dialect keeps the top N it last
described. An update sends the levels that changed or entered the view, and deletes only for
levels that left the book: a level pushed out of the view by a better one gets no delete, as on
Kraken, so the client must truncate. The ``gap`` fault advances the views without sending (a lost
message: the client's checksum breaks); the ``checksum`` fault sends one update with a wrong
checksum while the views stay correct, so a resubscribe restores the exact book.
Not simulated: v1 (`/`), other channels (ticker, ohlc, instrument, level3), REST Depth, rate limits.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import Awaitable
from typing import TYPE_CHECKING

import orjson
from sortedcontainers import SortedDict

from ..assets import Instrument
from ..book import BookUpdate
from ..clients import Client
from . import register
from .base import Dialect, HttpReply, Query, cut_short
from .kraken_wire import (
    DEFAULT_DEPTH,
    DEPTHS,
    HEARTBEAT,
    Levels,
    asset_pair,
    checksum,
    finer,
    kraken_instrument,
    render_book,
    render_trades,
    reply,
    status_frame,
)

if TYPE_CHECKING:
    from ..venue import VenueServer

log = logging.getLogger("simulator.kraken")

WS_PATH = "/v2"
HEARTBEAT_S = 1.0
View = tuple[dict[int, int], dict[int, int]]  # bids, asks: price ticks -> qty lots


def _side_diff(old: dict[int, int], new: Levels, full: SortedDict) -> Levels:
    """Deletes of levels gone from the book, then levels that changed or entered the view."""
    out = [(p, 0) for p in old if p not in full]
    out.extend((p, q) for p, q in new if old.get(p) != q)
    return out


@register
class KrakenDialect(Dialect):
    name = "kraken"
    extra_faults = frozenset({"checksum", "precision"})

    def __init__(self, venue: VenueServer) -> None:
        super().__init__(venue)
        self._views: dict[tuple[str, int], View] = {}  # (symbol, depth) -> last described top N
        self._conn_ids = itertools.count(1)
        self._printed: dict[str, Instrument] = {}  # symbol -> as printed after a precision fault

    def _as_printed(self, inst: Instrument) -> Instrument:
        return self._printed.get(inst.symbol, inst)

    def instrument(self, base: str, quote: str) -> Instrument:
        return kraken_instrument(self.venue.name, base, quote)

    # ---- WebSocket ------------------------------------------------------------------------

    def ws_accept(self, path: str, query: Query) -> HttpReply | None:
        if path == WS_PATH:
            return None
        return HttpReply.json(404, {"error": f"no WebSocket endpoint {path} (v2 is {WS_PATH})"})

    async def ws_session(self, client: Client) -> None:
        client.state["depth"] = {}  # symbol -> subscribed book depth
        client.state["idle"] = True
        client.push(status_frame(10**18 + next(self._conn_ids)))
        beat = asyncio.get_running_loop().create_task(self._heartbeats(client))
        try:
            async for raw in client.conn:
                self._control(client, raw)
        finally:
            beat.cancel()

    async def _heartbeats(self, client: Client) -> None:
        while True:
            await asyncio.sleep(HEARTBEAT_S)
            if client.subs and client.state["idle"]:
                client.push(HEARTBEAT)
            client.state["idle"] = True

    def _control(self, client: Client, raw: str | bytes) -> None:
        try:
            msg = orjson.loads(raw)
        except orjson.JSONDecodeError:
            msg = None
        if not isinstance(msg, dict) or not isinstance(msg.get("method"), str):
            client.push(reply("unknown", None, error="Malformed request", success=False))
            return
        method, req_id = msg["method"], msg.get("req_id")
        if method == "ping":
            client.push(reply("pong", req_id))
            return
        params = msg.get("params")
        if method not in ("subscribe", "unsubscribe") or not isinstance(params, dict):
            client.push(reply(method, req_id, error="Unsupported request", success=False))
            return
        channel, symbols = params.get("channel"), params.get("symbol")
        if channel not in ("book", "trade") or not isinstance(symbols, list):
            error = f"Channel {channel!r} not supported or symbol is not a list"
            client.push(reply(method, req_id, error=error, success=False))
            return
        depth = params.get("depth", DEFAULT_DEPTH)
        if channel == "book" and depth not in DEPTHS:
            client.push(reply(method, req_id, error=f"Invalid depth {depth}", success=False))
            return
        snapshot = params.get("snapshot", channel == "book")
        for symbol in symbols:
            self._one(client, method, req_id, channel, symbol, depth, snapshot is True)

    def _one(
        self,
        client: Client,
        method: str,
        req_id: object,
        channel: str,
        symbol: object,
        depth: int,
        snapshot: bool,
    ) -> None:
        key = f"{channel}:{symbol}"
        fail = None
        if not isinstance(symbol, str) or symbol not in self.venue.instruments:
            fail = f"Currency pair not supported {symbol}"
        elif method == "subscribe" and key in client.subs:
            fail = "Already subscribed"
        elif method == "unsubscribe" and key not in client.subs:
            fail = "Subscription Not Found"
        if fail:
            client.push(reply(method, req_id, error=fail, success=False, symbol=symbol))
            return
        result: dict = {"channel": channel, "symbol": symbol}
        if channel == "book":
            result["depth"] = depth
        if method == "unsubscribe":
            client.subs.discard(key)
            if channel == "book":
                del client.state["depth"][symbol]
            client.push(reply(method, req_id, result=result, success=True))
            return
        client.subs.add(key)
        result["snapshot"] = snapshot
        client.push(reply(method, req_id, result=result, success=True))
        if channel == "book":
            client.state["depth"][symbol] = depth
            bids, asks = self._view(symbol, depth)
            if snapshot:
                book = self.venue.books[symbol]
                inst = self._as_printed(book.inst)
                client.push(self._render(inst, "snapshot", bids, asks, None), symbol)

    # ---- views and frames -----------------------------------------------------------------

    def _view(self, symbol: str, depth: int) -> tuple[Levels, Levels]:
        """The current top ``depth`` of a book; starts tracking it for updates."""
        bids, asks = self.venue.books[symbol].top(depth)
        self._views[(symbol, depth)] = (dict(bids), dict(asks))
        return bids, asks

    def _render(
        self, inst: Instrument, kind: str, bids: Levels, asks: Levels, ts_ms: int | None
    ) -> bytes:
        return render_book(inst, kind, bids, asks, checksum(inst, bids, asks), ts_ms)

    def _advance(self, update: BookUpdate) -> list[tuple[int, Levels, Levels, Levels, Levels]]:
        """Move every view of the book to its new top N; per depth: (depth, bid and ask
        changes, new top bids and asks)."""
        symbol = update.inst.symbol
        book = self.venue.books[symbol]
        out = []
        for (sym, depth), (old_bids, old_asks) in self._views.items():
            if sym != symbol:
                continue
            bids, asks = book.top(depth)
            out.append(
                (
                    depth,
                    _side_diff(old_bids, bids, book.bids),
                    _side_diff(old_asks, asks, book.asks),
                    bids,
                    asks,
                )
            )
            self._views[(sym, depth)] = (dict(bids), dict(asks))
        return out

    def lost(self, update: BookUpdate) -> None:
        self._advance(update)

    def publish(self, update: BookUpdate) -> None:
        symbol = update.inst.symbol
        if self.venue.faults.other and self.venue.faults.take("precision", symbol):
            self._printed[symbol] = finer(self._as_printed(update.inst))
            decimals = self._printed[symbol].price_decimals
            log.info("kraken %s: prices now printed with %d decimals", symbol, decimals)
        inst = self._as_printed(update.inst)
        if update.trades and self.subscribed(key := f"trade:{symbol}"):
            self._send(key, None, render_trades(update, inst), update)
        key = f"book:{symbol}"
        for depth, d_bids, d_asks, bids, asks in self._advance(update):
            if not (d_bids or d_asks) or not self.subscribed(key):
                continue
            crc = checksum(inst, bids, asks)
            if self.venue.faults.other and self.venue.faults.take("checksum", symbol):
                log.info("kraken %s: checksum fault on depth %d", symbol, depth)
                crc ^= 0x5A5A5A5A
            frame = render_book(inst, "update", d_bids, d_asks, crc, update.ts_ms)
            self._send(key, depth, frame, update)

    def _send(self, key: str, depth: int | None, frame: bytes, update: BookUpdate) -> None:
        """Queue a frame to the clients subscribed to ``key`` (at ``depth`` for books)."""
        symbol = update.inst.symbol
        corrupt = update.corrupt
        for client in self.venue.clients:
            if key in client.subs and (depth is None or client.state["depth"][symbol] == depth):
                if corrupt:
                    client.push(frame[: len(frame) // 2], symbol)
                client.push(frame, symbol)
                client.state["idle"] = False
                update.corrupt = False

    # ---- REST -----------------------------------------------------------------------------

    def http_get(self, path: str, query: Query) -> HttpReply | Awaitable[HttpReply]:
        if path == "/0/public/AssetPairs":
            return self._asset_pairs(query)
        return HttpReply.json(404, {"error": ["EGeneral:Unknown method"]})

    async def _asset_pairs(self, query: Query) -> HttpReply:
        fault = self.venue.faults.take_rest("")
        if fault is not None:
            log.info("kraken: %s fault on AssetPairs", fault.kind)
            if fault.kind == "rest429":
                body = {"error": ["EAPI:Rate limit exceeded"]}
                return HttpReply.json(429, body, [("Retry-After", "1")])
            if fault.kind == "rest500":
                return HttpReply.json(500, {"error": ["EService:Unavailable"]})
            if fault.kind == "slow_snapshot":
                await asyncio.sleep(fault.duration_s)  # then answers with what holds by then
        pairs = dict(asset_pair(self._as_printed(i)) for i in self.venue.instruments.values())
        wanted = [w for w in query.get("pair", "").split(",") if w]
        if wanted:
            by_name = {**pairs, **{v["altname"]: v for v in pairs.values()}}
            if any(w not in by_name for w in wanted):
                return cut_short(
                    HttpReply.json(200, {"error": ["EQuery:Unknown asset pair"]}), fault
                )
            pairs = {k: v for k, v in pairs.items() if k in wanted or v["altname"] in wanted}
        return cut_short(HttpReply.json(200, {"error": [], "result": pairs}), fault)
