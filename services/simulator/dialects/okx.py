"""OKX v5 public dialect (exchanges.md section 5).

Coverage:

| channel / route | variant | what is sent |
|---|---|---|
| WS `/ws/v5/public` | text `ping` | text `pong` |
| `{"op":"subscribe"/"unsubscribe","args":[{channel,instId}]}` | books, trades | one ack per arg `{"event":..,"arg":..,"connId":..}` (with `id` if given); errors `{"event":"error","code":"60012"/"60018",..}`; `60014` for a subscribe the `refuse` fault refuses |
| `books` | snapshot on subscribe, then update | 400 levels `[px, sz, "0", orders]`, `prevSeqId`/`seqId` (snapshot `-1`), legacy CRC32 `checksum` of the top 25 |
| `trades` | data[] | every fill of an event in one message, in order, `side` = taker |
| planned close | notice | `{"event":"notice","code":"64008",..}` then close |
| `GET /api/v5/public/instruments` | instType=SPOT (others: empty), instId | `baseCcy`, `quoteCcy`, `tickSz`, `lotSz`, `state` |

Sequence: a book event covering simulator update ids ``first..last`` is published with
``prevSeqId = first - 1 - offset`` and ``seqId = last - offset``, so a lost event (``gap``,
``stall``) breaks the ``prevSeqId`` chain. Faults of this dialect: ``checksum`` (the next book
frame of the symbol carries a wrong checksum, the levels stay right) and ``reset`` (the symbol's
sequence restarts: the next update has ``seqId`` 3 below ``prevSeqId``, which still matches, as
OKX does after maintenance; the book is unaffected). Every simulated book stays under 400 levels
a side, so the 400-level view is the whole book and ``/sim/book`` is what a client holds.
REST faults (``rest429``/``rest500``/``slow_snapshot``/``rest_malformed``) apply to the
instruments call.
Not simulated: the 60 s no-change heartbeat update, other channels, REST market books, limits.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections.abc import Awaitable
from typing import TYPE_CHECKING

import orjson

from ..assets import Instrument, make_instrument
from ..book import BookUpdate
from ..clients import Client
from . import register
from .base import Dialect, HttpReply, Query, cut_short
from .okx_wire import (
    book_checksum,
    instrument_info,
    render_book,
    render_trades,
    snapshot_levels,
    update_levels,
)

if TYPE_CHECKING:
    from ..venue import VenueServer

log = logging.getLogger("simulator.okx")

WS_PATH = "/ws/v5/public"
CHANNELS = ("books", "trades")
INST_TYPES = ("SPOT", "MARGIN", "SWAP", "FUTURES", "OPTION")
RESET_SEQ = 3  # seqId after a ``reset`` fault


@register
class OkxDialect(Dialect):
    name = "okx"
    extra_faults = frozenset({"checksum", "reset", "refuse"})

    def __init__(self, venue: VenueServer) -> None:
        super().__init__(venue)
        self._offset: dict[str, int] = {}  # symbol -> simulator id minus published seqId
        self._conn_ids = itertools.count(0x1A2B3C00)

    def instrument(self, base: str, quote: str) -> Instrument:
        return make_instrument(self.venue.name, f"{base}-{quote}", base, quote)

    # ---- WebSocket ------------------------------------------------------------------------

    def ws_accept(self, path: str, query: Query) -> HttpReply | None:
        if path == WS_PATH:
            return None
        return HttpReply.json(404, {"code": "404", "msg": f"no WebSocket endpoint {path}"})

    async def ws_session(self, client: Client) -> None:
        client.state["conn_id"] = f"{next(self._conn_ids):08x}"
        async for raw in client.conn:
            if raw == "ping":
                client.push(b"pong")
                continue
            for frame in self._control(client, raw):  # pushed before any later book event
                client.push(frame, None)

    def _error(self, client: Client, code: str, msg: str, mid: object = None) -> bytes:
        err = {"event": "error", "code": code, "msg": msg, "connId": client.state["conn_id"]}
        return orjson.dumps({"id": mid, **err} if mid is not None else err)

    def _control(self, client: Client, raw: str | bytes) -> list[bytes]:
        try:
            msg = orjson.loads(raw)
        except orjson.JSONDecodeError:
            return [self._error(client, "60012", f"Invalid request: {str(raw)[:100]}")]
        if not isinstance(msg, dict):
            return [self._error(client, "60012", "Invalid request: not an object")]
        op, args, mid = msg.get("op"), msg.get("args"), msg.get("id")
        if op not in ("subscribe", "unsubscribe") or not isinstance(args, list) or not args:
            return [self._error(client, "60012", f"Invalid request: {str(raw)[:100]}", mid)]
        out = []
        for arg in args:
            channel = arg.get("channel") if isinstance(arg, dict) else None
            inst_id = arg.get("instId") if isinstance(arg, dict) else None
            if channel not in CHANNELS or inst_id not in self.venue.instruments:
                text = f"Wrong URL or channel:{channel},instId:{inst_id} doesn't exist."
                out.append(self._error(client, "60018", text, mid))
                continue
            faults = self.venue.faults
            if op == "subscribe" and faults.other and faults.take("refuse", inst_id):
                out.append(self._error(client, "60014", "Requests too frequent.", mid))
                continue
            ack = {"event": op, "arg": {"channel": channel, "instId": inst_id}}
            ack["connId"] = client.state["conn_id"]
            out.append(orjson.dumps({"id": mid, **ack} if mid is not None else ack))
            key = f"{channel}:{inst_id}"
            if op == "unsubscribe":
                client.subs.discard(key)
                continue
            client.subs.add(key)
            if channel == "books":
                out.append(self._snapshot(inst_id))
        return out

    def _snapshot(self, symbol: str) -> bytes:
        book = self.venue.books[symbol]
        bids, asks = snapshot_levels(book)
        seq = book.last_id - self._offset.get(symbol, 0)
        now = time.time_ns() // 1_000_000
        return render_book(book, "snapshot", bids, asks, seq, -1, now, book_checksum(book))

    def publish(self, update: BookUpdate) -> None:
        symbol = update.inst.symbol
        faults = self.venue.faults
        prev = update.first_id - 1 - self._offset.get(symbol, 0)
        if faults.other and faults.take("reset", symbol):
            self._offset[symbol] = update.last_id - RESET_SEQ
            log.info("okx %s: reset fault: seqId %d -> %d", symbol, prev, RESET_SEQ)
        seq = update.last_id - self._offset.get(symbol, 0)
        if update.trades and self.subscribed(key := f"trades:{symbol}"):
            self.broadcast(key, render_trades(update), update)
        if self.subscribed(key := f"books:{symbol}"):
            book = self.venue.books[symbol]
            checksum = book_checksum(book)
            if faults.other and faults.take("checksum", symbol):
                log.info("okx %s: checksum fault on seqId %d", symbol, seq)
                checksum = checksum ^ 1 or 2
            bids, asks = update_levels(update)
            frame = render_book(book, "update", bids, asks, seq, prev, update.ts_ms, checksum)
            self.broadcast(key, frame, update)

    def shutdown_frame(self, client: Client) -> bytes | None:
        text = "The connection will soon be closed for a service upgrade. Please reconnect."
        notice = {"event": "notice", "code": "64008", "msg": text}
        return orjson.dumps({**notice, "connId": client.state.get("conn_id", "")})

    # ---- REST -----------------------------------------------------------------------------

    def http_get(self, path: str, query: Query) -> HttpReply | Awaitable[HttpReply]:
        if path == "/api/v5/public/instruments":
            return self._instruments(query)
        return HttpReply.json(404, {"code": "50000", "msg": f"Not Found: {path}", "data": []})

    async def _instruments(self, query: Query) -> HttpReply:
        inst_type = query.get("instType", "")
        if inst_type not in INST_TYPES:
            msg = f"Parameter instType error: {inst_type!r}"
            return HttpReply.json(400, {"code": "51000", "msg": msg, "data": []})
        fault = self.venue.faults.take_rest("")  # armed for no symbol: any REST call
        if fault is not None:
            log.info("okx: %s fault on REST instruments", fault.kind)
            if fault.kind == "rest429":
                body = {"code": "50011", "msg": "Too Many Requests", "data": []}
                return HttpReply.json(429, body, [("Retry-After", "1")])
            if fault.kind == "rest500":
                body = {"code": "50001", "msg": "Service temporarily unavailable", "data": []}
                return HttpReply.json(503, body)
            if fault.kind == "slow_snapshot":
                await asyncio.sleep(fault.duration_s)  # then answers with what holds by then
        wanted = query.get("instId")
        data = [
            instrument_info(inst)
            for inst in self.venue.instruments.values()
            if inst_type == "SPOT" and wanted in (None, inst.symbol)
        ]
        return cut_short(HttpReply.json(200, {"code": "0", "msg": "", "data": data}), fault)
