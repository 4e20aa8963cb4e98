"""Bybit v5 public dialect, spot and linear perpetuals as one venue (exchanges.md section 2).

Coverage:

| channel / route | what is sent |
|---|---|
| WS `/v5/public/spot`, `/v5/public/linear` | one category per connection |
| op `subscribe`/`unsubscribe` (spot <= 10 args) | ack in the category's shape; `success: false` for a bad or repeated topic |
| op `ping` | pong in the category's shape |
| `orderbook.{50,200,1000}.SYM` | snapshot on subscribe, then deltas of the top-N window kept here (levels leaving it are deletes, levels entering it inserts); `u` +1 per message, `seq` = simulator update id |
| `publicTrade.SYM` | every fill of the event in one message; `S` taker side, `L` (linear), `i` numeric (spot) / UUID (linear) |
| `GET /v5/market/instruments-info` | spot list; linear list paged by `limit`/`cursor`, with the served LinearPerpetual plus (metadata only) a LinearFutures and a USDC perpetual per base |

Simulator symbols are `spot:BTCUSDT` and `linear:BTCUSDT` (use them with `/sim/book` and
`/sim/fault`). Faults: `gap` (an update applied but not sent: the next message of each depth
jumps `u` by 2), `stall`, `malformed`, `disconnect`, `planned_close` (Bybit sends no notice),
`rest429`/`rest500`/`slow_snapshot`/`rest_malformed` on instruments-info, and `reset`: the service "restarts" the
book's stream, sending a full snapshot with `u == 1` and counting on from there.
Not simulated: level 1 books (re-pushed every 3 s), the 21,000-character args limit, the
500-connections-per-5-minutes limit, the 10-minute idle cut.
"""

from __future__ import annotations

import itertools
import logging
import time
from collections.abc import Awaitable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import orjson
from sortedcontainers import SortedDict

from ..assets import Instrument, make_instrument
from ..book import BookUpdate, SimBook
from ..clients import Client
from . import register
from .base import Dialect, HttpReply, Query, rest_answer
from .bybit_wire import (
    CATEGORIES,
    DEPTHS,
    SPOT_ARGS_PER_REQUEST,
    TOPIC_RE,
    decode_cursor,
    encode_cursor,
    envelope,
    linear_info,
    render_book,
    render_trades,
    reply,
    split,
    spot_info,
    tick_direction,
)

if TYPE_CHECKING:
    from ..venue import VenueServer

log = logging.getLogger("simulator.bybit")

WS_PATHS = {f"/v5/public/{c}": c for c in CATEGORIES}
INFO_PATH = "/v5/market/instruments-info"
MAX_PAGE = 1000
DEFAULT_PAGE = 500
DELIVERY_MS = 1766736000000  # 2025-12-26 08:00 UTC, the metadata-only dated future


@dataclass(slots=True)
class Window:
    """What the ``orderbook.<depth>`` stream of one book has told its clients: the top
    ``depth`` levels (None while nobody listens) and the last ``u``."""

    depth: int
    u: int
    bids: dict[int, int] | None = None
    asks: dict[int, int] | None = None


@dataclass(slots=True)
class Stream:
    """Per-book state of the dialect."""

    last_sim_id: int
    windows: dict[int, Window] = field(default_factory=dict)
    last_trade_price: int | None = None
    last_direction: str = "ZeroPlusTick"


def _top(side: SortedDict, depth: int, is_bid: bool) -> dict[int, int]:
    n = min(depth, len(side))
    keys = side.islice(len(side) - n, len(side), reverse=True) if is_bid else side.islice(0, n)
    return {p: side[p] for p in keys}


def _diff(shown: dict[int, int], new: dict[int, int], is_bid: bool) -> list[tuple[int, int]]:
    changes = [(p, q) for p, q in new.items() if shown.get(p) != q]
    changes.extend((p, 0) for p in shown if p not in new)
    changes.sort(reverse=is_bid)
    return changes


@register
class BybitDialect(Dialect):
    name = "bybit"
    extra_faults = frozenset({"reset"})

    def __init__(self, venue: VenueServer) -> None:
        super().__init__(venue)
        self._streams: dict[str, Stream] = {}
        self._conn_ids = itertools.count(1)

    def instruments(self, base: str, quote: str) -> list[Instrument]:
        wire = f"{base}{quote}"
        return [make_instrument(self.venue.name, f"{c}:{wire}", base, quote) for c in CATEGORIES]

    # ---- WebSocket ------------------------------------------------------------------------

    def ws_accept(self, path: str, query: Query) -> HttpReply | None:
        if path in WS_PATHS:
            return None
        return HttpReply.json(404, {"retCode": 404, "retMsg": f"no stream endpoint {path}"})

    async def ws_session(self, client: Client) -> None:
        path = client.conn.request.path.partition("?")[0]
        client.state["category"] = WS_PATHS[path]
        client.state["conn_id"] = f"sim{next(self._conn_ids):06d}-{self.venue.port}"
        async for raw in client.conn:
            self._control(client, raw)

    def _control(self, client: Client, raw: str | bytes) -> None:
        category, conn_id = client.state["category"], client.state["conn_id"]
        try:
            msg = orjson.loads(raw)
        except orjson.JSONDecodeError:
            msg = None
        if not isinstance(msg, dict):
            client.push(reply(category, conn_id, "", None, False, "error:request not supported"))
            return
        op, req_id, args = msg.get("op"), msg.get("req_id"), msg.get("args", [])
        req_id = req_id if isinstance(req_id, str) else None
        if op == "ping":
            client.push(reply(category, conn_id, "ping", req_id, True, ""))
            return
        if op not in ("subscribe", "unsubscribe"):
            client.push(reply(category, conn_id, str(op), req_id, False, f"error:op {op!r}"))
            return
        if not isinstance(args, list) or not all(isinstance(a, str) for a in args):
            client.push(reply(category, conn_id, op, req_id, False, "error:args must be strings"))
            return
        if category == "spot" and len(args) > SPOT_ARGS_PER_REQUEST:
            text = f"error:at most {SPOT_ARGS_PER_REQUEST} args per request, got {len(args)}"
            client.push(reply(category, conn_id, op, req_id, False, text))
            return
        if op == "unsubscribe":
            for arg in args:
                client.subs.discard(f"{category}/{arg}")
            client.push(reply(category, conn_id, op, req_id, True, ""))
            return
        failed, books = [], []
        for arg in args:
            key = f"{category}/{arg}"
            match = TOPIC_RE.match(arg)
            symbol = f"{category}:{match.group(2)}" if match else ""
            depth = int(match.group(1)) if match and match.group(1) else None
            if not match or symbol not in self.venue.instruments or depth not in (None, *DEPTHS):
                failed.append(f"error:handler not found,topic:{arg}")
            elif key in client.subs:
                failed.append(f"error:already subscribed,topic:{arg}")
            else:
                client.subs.add(key)
                if depth is not None:
                    books.append((symbol, depth))
        client.push(reply(category, conn_id, op, req_id, not failed, ";".join(failed)))
        for symbol, depth in books:
            client.push(self._snapshot_for_subscriber(symbol, depth), symbol)

    def _stream(self, symbol: str) -> Stream:
        if not self._streams:  # first use: every book is at its last published id
            self._streams = {s: Stream(b.last_id) for s, b in self.venue.books.items()}
        return self._streams[symbol]

    def _window(self, stream: Stream, book: SimBook, depth: int) -> Window:
        win = stream.windows.get(depth)
        if win is None:
            win = stream.windows[depth] = Window(depth, 2 + book.last_id % 10_000_000)
        return win

    def _snapshot_for_subscriber(self, symbol: str, depth: int) -> bytes:
        book = self.venue.books[symbol]
        win = self._window(self._stream(symbol), book, depth)
        if win.bids is None or win.asks is None:  # nobody was listening: start from the book
            win.bids, win.asks = _top(book.bids, depth, True), _top(book.asks, depth, False)
        return self._render_snapshot(book, win)

    def _render_snapshot(self, book: SimBook, win: Window) -> bytes:
        assert win.bids is not None and win.asks is not None
        bids = sorted(win.bids.items(), reverse=True)
        asks = sorted(win.asks.items())
        ts = time.time_ns() // 1_000_000
        return render_book(book.inst, win.depth, "snapshot", bids, asks, win.u, book.last_id, ts)

    # ---- publishing -----------------------------------------------------------------------

    def publish(self, update: BookUpdate) -> None:
        inst = update.inst
        symbol = inst.symbol
        category, wire = split(symbol)
        book = self.venue.books[symbol]
        if not self._streams:
            self._stream(symbol).last_sim_id = update.first_id - 1
        stream = self._stream(symbol)
        dropped = update.first_id != stream.last_sim_id + 1  # gap fault: an update went unsent
        stream.last_sim_id = update.last_id
        reset = bool(self.venue.faults.other) and self.venue.faults.take("reset", symbol)
        if reset:
            log.info("bybit %s: reset fault: snapshot with u=1", symbol)
        if update.trades:
            directions = []
            for t in update.trades:
                stream.last_direction = tick_direction(
                    stream.last_trade_price, stream.last_direction, t.price
                )
                stream.last_trade_price = t.price
                directions.append(stream.last_direction)
            key = f"{category}/publicTrade.{wire}"
            if self.subscribed(key):
                frame = render_trades(inst, update.trades, directions, update.last_id)
                self.broadcast(key, frame, update)
        for depth in DEPTHS:
            key = f"{category}/orderbook.{depth}.{wire}"
            win = stream.windows.get(depth)
            if not self.subscribed(key):
                if win is not None:
                    win.bids = win.asks = None  # stop tracking; a subscriber restarts it
                continue
            win = self._window(stream, book, depth)
            if dropped:
                win.u += 1  # the message of the unsent update "was lost"
            if reset:
                win.u = 1
                win.bids, win.asks = _top(book.bids, depth, True), _top(book.asks, depth, False)
                self.broadcast(key, self._render_snapshot(book, win), update)
                continue
            bids = self._side_changes(win, book, update, True, dropped)
            asks = self._side_changes(win, book, update, False, dropped)
            if bids or asks:
                win.u += 1
                frame = render_book(
                    inst, depth, "delta", bids, asks, win.u, update.last_id, update.ts_ms
                )
                self.broadcast(key, frame, update)

    @staticmethod
    def _side_changes(
        win: Window, book: SimBook, update: BookUpdate, is_bid: bool, dropped: bool
    ) -> list[tuple[int, int]]:
        """Changes of one side of the window: levels changed inside it, levels that left it
        (deletes) and levels that entered it from below (inserts)."""
        shown = win.bids if is_bid else win.asks
        changed = update.bids if is_bid else update.asks
        if shown is None:
            shown = {}
        elif not dropped and len(shown) == win.depth:
            worst = min(shown) if is_bid else max(shown)
            if all((p < worst) if is_bid else (p > worst) for p, _ in changed):
                return []  # every change was deeper than the window
        new = _top(book.bids if is_bid else book.asks, win.depth, is_bid)
        if is_bid:
            win.bids = new
        else:
            win.asks = new
        return _diff(shown, new, is_bid)

    # ---- REST -----------------------------------------------------------------------------

    def http_get(self, path: str, query: Query) -> HttpReply | Awaitable[HttpReply]:
        if path == INFO_PATH:
            return self._instruments_info(query)
        if path == "/v5/market/time":
            now = time.time_ns()
            result = {"timeSecond": str(now // 10**9), "timeNano": str(now)}
            return HttpReply.json(200, envelope(result, now // 1_000_000))
        return HttpReply.json(404, {"retCode": 404, "retMsg": f"Not found: {path}"})

    async def _instruments_info(self, query: Query) -> HttpReply:
        now = time.time_ns() // 1_000_000
        category = query.get("category", "")
        if category not in CATEGORIES:
            return HttpReply.json(200, envelope({}, now, 10001, "params error: category"))
        wanted = query.get("symbol")
        fault = self.venue.faults.take_rest(f"{category}:{wanted}" if wanted else "")
        if fault is not None:
            log.info("bybit: %s fault on instruments-info %s", fault.kind, category)
        limit_hdrs = [("X-Bapi-Limit", "600"), ("X-Bapi-Limit-Reset-Timestamp", str(now + 1000))]
        if fault is not None and fault.kind == "rest429":
            body = envelope({}, now, 10006, "Too many visits!")
            hdrs = [*limit_hdrs, ("X-Bapi-Limit-Status", "0"), ("Retry-After", "1")]
            return HttpReply.json(429, body, hdrs)
        if fault is not None and fault.kind == "rest500":
            return HttpReply.json(500, envelope({}, now, 10016, "Internal server error."))
        items = self._info_items(category)
        if wanted:
            items = [i for i in items if i["symbol"] == wanted]
        result: dict = {"category": category, "list": items}
        if category == "linear":
            try:
                offset = decode_cursor(query["cursor"]) if query.get("cursor") else 0
                limit = int(query.get("limit", DEFAULT_PAGE))
            except ValueError:
                return HttpReply.json(200, envelope({}, now, 10001, "params error: cursor/limit"))
            limit = min(max(limit, 1), MAX_PAGE)
            page = items[offset : offset + limit]
            more = offset + limit < len(items)
            cursor = encode_cursor(offset + limit, page[-1]["symbol"]) if more and page else ""
            result = {"category": category, "list": page, "nextPageCursor": cursor}
        hdrs = [*limit_hdrs, ("X-Bapi-Limit-Status", "599")]
        return await rest_answer(HttpReply.json(200, envelope(result, now), hdrs), fault)

    def _info_items(self, category: str) -> list[dict]:
        items = []
        for symbol, inst in self.venue.instruments.items():
            cat, wire = split(symbol)
            if cat != category:
                continue
            if category == "spot":
                items.append(spot_info(inst))
                continue
            items.append(linear_info(inst, wire, "LinearPerpetual", inst.quote))
            future = f"{wire}-26DEC25"
            items.append(linear_info(inst, future, "LinearFutures", inst.quote, DELIVERY_MS))
            items.append(linear_info(inst, f"{inst.base}PERP", "LinearPerpetual", "USDC"))
        items.sort(key=lambda i: i["symbol"])
        return items
