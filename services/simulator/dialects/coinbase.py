"""Coinbase Advanced Trade dialect (exchanges.md section 4.1).

Coverage:

| channel / route | variant | what is sent |
|---|---|---|
| WS `/` | subscribe / unsubscribe, one `channel` per message | `subscriptions` ack listing every channel |
| `level2` | `l2_data` snapshot | the ENTIRE book (`sim_levels` makes it several MB), sides `bid`/`offer` |
| `level2` | `l2_data` update | absolute `new_quantity`, `"0"` deletes |
| `market_trades` | snapshot, update | recent trades newest first on subscribe; `side` = MAKER side |
| `heartbeats` | heartbeat | every second, `current_time` as a Go time string |
| every channel | `sequence_num` | per CONNECTION, +1 per frame, across all channels and products |
| bad request | `{"type":"error","message":..}` | no `sequence_num` |
| `GET /api/v3/brokerage/market/products` | `product_type` | SPOT products, a `-USDC` alias of each USD one, a FUTURE |

Faults: ``gap`` (an update is applied but never sent: the clients that should have had it see a
``sequence_num`` jump), ``seqgap`` (the next frame of a symbol skips one ``sequence_num``, no data
lost), ``stall`` (frames are dropped, their numbers spent: the stream resumes with a jump),
``malformed`` (a truncated copy first, then the intact frame with the same number), ``disconnect``,
``planned_close`` (no notice: Coinbase sends none), ``rest429``/``rest500``/``slow_snapshot``/
``rest_malformed`` on the products call. Not simulated: the subscribe deadline, JWT auth, rate limits, batching of
trades over 250 ms, other channels.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Awaitable
from typing import TYPE_CHECKING

import orjson

from ..assets import Instrument, make_instrument
from ..book import BookUpdate, TradeEvent
from ..clients import Client
from . import register
from .base import Dialect, HttpReply, Query, rest_answer
from .coinbase_wire import (
    CHANNELS,
    ERR_429,
    ERR_500,
    FUTURE_PRODUCT,
    HEARTBEAT_S,
    PRODUCTS_PATH,
    RECENT_TRADES,
    envelope,
    error_frame,
    heartbeat_events,
    l2_events,
    product_info,
    rfc3339,
    subscriptions_events,
    trades_events,
)

if TYPE_CHECKING:
    from ..venue import VenueServer

log = logging.getLogger("simulator.coinbase")


@register
class CoinbaseDialect(Dialect):
    name = "coinbase"
    extra_faults = frozenset({"seqgap"})

    def __init__(self, venue: VenueServer) -> None:
        super().__init__(venue)
        self._recent: dict[str, deque[TradeEvent]] = {}
        self._next_id: dict[str, int] = {}  # per symbol: first id of the next update
        self._started = time.monotonic_ns()

    def instrument(self, base: str, quote: str) -> Instrument:
        return make_instrument(self.venue.name, f"{base}-{quote}", base, quote)

    # ---- WebSocket ------------------------------------------------------------------------

    def ws_accept(self, path: str, query: Query) -> HttpReply | None:
        if path in ("", "/"):
            return None
        return HttpReply.json(404, {"error": "NOT_FOUND", "message": f"no endpoint {path}"})

    async def ws_session(self, client: Client) -> None:
        client.state["seq"] = 0  # the next sequence_num of this connection
        beats = asyncio.get_running_loop().create_task(self._heartbeats(client))
        try:
            async for raw in client.conn:
                self._control(client, raw)
        finally:
            beats.cancel()

    @staticmethod
    def _frame(client: Client, channel: str, events: bytes, ts_ns: int) -> bytes:
        seq = client.state["seq"]
        client.state["seq"] = seq + 1
        return envelope(channel, seq, ts_ns, events)

    async def _heartbeats(self, client: Client) -> None:
        while True:
            await asyncio.sleep(HEARTBEAT_S)
            if any(k.startswith("heartbeats:") for k in client.subs):
                now = time.time_ns()
                events = heartbeat_events(now, time.monotonic_ns() - self._started)
                client.push(self._frame(client, "heartbeats", events, now))

    def _control(self, client: Client, raw: str | bytes) -> None:
        """One subscribe/unsubscribe request: ack, then the snapshots of what was added."""
        try:
            msg = orjson.loads(raw)
        except orjson.JSONDecodeError:
            client.push(error_frame("failed to parse the message"))
            return
        if not isinstance(msg, dict) or msg.get("type") not in ("subscribe", "unsubscribe"):
            client.push(error_frame("type must be subscribe or unsubscribe"))
            return
        channel, ids = msg.get("channel"), msg.get("product_ids", [])
        if channel not in CHANNELS:
            client.push(error_frame(f"Failed to subscribe: unknown channel {channel!r}"))
            return
        if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
            client.push(error_frame("product_ids must be a list of strings"))
            return
        unknown = [i for i in ids if i not in self.venue.instruments]
        if unknown or (not ids and channel != "heartbeats"):
            client.push(error_frame(f"Failed to subscribe: bad product_ids {unknown or ids}"))
            return
        keys = {f"{channel}:{i}" for i in ids or [""]}
        if msg["type"] == "unsubscribe":
            client.subs.difference_update(keys)
        else:
            client.subs.update(keys)
        now = time.time_ns()
        client.push(self._frame(client, "subscriptions", subscriptions_events(client.subs), now))
        if msg["type"] == "unsubscribe":
            return
        for pid in ids:
            inst = self.venue.instruments[pid]
            if channel == "level2":
                book = self.venue.books[pid]
                bids = [(p, q) for p, q in reversed(book.bids.items())]
                events = l2_events("snapshot", inst, bids, book.asks.items(), rfc3339(now, 6))
                client.push(self._frame(client, "l2_data", events, now), pid)
            elif channel == "market_trades":
                recent = reversed(self._recent.get(pid, ()))
                events = trades_events("snapshot", inst, recent)
                client.push(self._frame(client, "market_trades", events, now), pid)

    def publish(self, update: BookUpdate) -> None:
        inst = update.inst
        pid = inst.symbol
        book_key, trade_key = f"level2:{pid}", f"market_trades:{pid}"
        if update.trades:
            self._recent.setdefault(pid, deque(maxlen=RECENT_TRADES)).extend(update.trades)
        # a skipped id range means the generic ``gap`` fault dropped an update: it was lost in
        # transit, so every connection that should have received it sees a sequence jump
        lost = self._next_id.get(pid, update.first_id) != update.first_id
        self._next_id[pid] = update.last_id + 1
        wanted = [c for c in self.venue.clients if book_key in c.subs or trade_key in c.subs]
        if not wanted:
            return
        if lost or self.venue.faults.take("seqgap", pid):
            log.info("coinbase %s: sequence_num skipped on %d connection(s)", pid, len(wanted))
            for client in wanted:
                client.state["seq"] += 1
        now = time.time_ns()
        if update.trades:
            events = trades_events("update", inst, reversed(update.trades))
            self.broadcast(
                trade_key, lambda c: self._frame(c, "market_trades", events, now), update
            )
        events = l2_events(
            "update", inst, update.bids, update.asks, rfc3339(update.ts_ms * 1_000_000, 6)
        )
        self.broadcast(book_key, lambda c: self._frame(c, "l2_data", events, now), update)

    # ---- REST -----------------------------------------------------------------------------

    def http_get(self, path: str, query: Query) -> HttpReply | Awaitable[HttpReply]:
        if path == PRODUCTS_PATH:
            return self._products(query)
        return HttpReply.json(404, {"error": "NOT_FOUND", "message": f"no route {path}"})

    async def _products(self, query: Query) -> HttpReply:
        fault = self.venue.faults.take_rest("")
        if fault is not None:
            log.info("coinbase: %s fault on REST products", fault.kind)
        if fault is not None and fault.kind == "rest429":
            return HttpReply.json(429, ERR_429, [("Retry-After", "1")])
        if fault is not None and fault.kind == "rest500":
            return HttpReply.json(500, ERR_500)
        products = []
        for inst in self.venue.instruments.values():
            if inst.quote == "USD":  # the USDC market is an alias of the unified USD book
                alias = f"{inst.base}-USDC"
                products.append(product_info(inst, alias_to=[alias]))
                usdc = make_instrument(self.venue.name, alias, inst.base, "USDC")
                products.append(product_info(usdc, alias=inst.symbol))
            else:
                products.append(product_info(inst))
        products.append(FUTURE_PRODUCT)
        kind = query.get("product_type")
        if kind:
            products = [p for p in products if p["product_type"] == kind]
        body = orjson.dumps({"products": products, "num_products": len(products)})
        return await rest_answer(HttpReply(200, body), fault)
