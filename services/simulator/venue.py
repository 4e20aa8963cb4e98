"""One simulated venue: a websockets server (WebSocket + plain HTTP GET on one port), its
clients, stats, faults and paced book updates, speaking the venue's dialect."""

from __future__ import annotations

import asyncio
import email.utils
import http
import inspect
import logging
import random
import time
from dataclasses import asdict, dataclass
from urllib.parse import parse_qsl

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from .assets import Instrument
from .book import BookUpdate, SimBook
from .clients import Client
from .dialects import Dialect, HttpReply, get_dialect
from .faults import DIALECT_KINDS, FaultError, FaultRequest, FaultState
from .market import Market, stable_seed

log = logging.getLogger("simulator.venue")

MAX_BURST_S = 0.25  # a pump that fell further behind than this drops the backlog


@dataclass
class VenueStats:
    rest_depth_calls: int = 0
    rest_calls: int = 0
    ws_connections_total: int = 0
    ws_connections_open: int = 0
    messages_sent: int = 0


class VenueServer:
    """Serves one venue's dialect on ``host:port`` from the shared market."""

    def __init__(
        self,
        name: str,
        host: str,
        port: int,
        quote: str,
        bases: list[str],
        market: Market,
        seed: int,
        rate: float,
        levels: int | None = None,
    ) -> None:
        self.name, self.host, self.port = name, host, port
        self.dialect: Dialect = get_dialect(name)(self)
        self.instruments: dict[str, Instrument] = {}
        for base in bases:
            for inst in self.dialect.instruments(base, quote):
                self.instruments[inst.symbol] = inst
        self.books: dict[str, SimBook] = {
            s: market.add_book(i, levels=levels) if levels else market.add_book(i)
            for s, i in self.instruments.items()
        }
        self.symbols = list(self.instruments)
        self.market = market
        self.stats = VenueStats()
        self.faults = FaultState()
        self.clients: set[Client] = set()
        self.rng = random.Random(stable_seed(seed, name, "venue"))
        self.rate = float(rate)
        self._t0: float | None = None
        self._done = 0
        self._trade_acc = 0.0
        self._server: Server | None = None

    # ---- sockets --------------------------------------------------------------------------

    async def start(self) -> None:
        self._server = await serve(
            self._handler,
            self.host,
            self.port,
            process_request=self._process_request,
            compression=None,
            ping_interval=20,
            ping_timeout=60,
            open_timeout=None,
            max_size=2**20,
        )
        self.port = self._server.sockets[0].getsockname()[1]
        log.info(
            "%s: serving %d symbols on %s:%d", self.name, len(self.symbols), self.host, self.port
        )

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()  # closes every WebSocket with 1001 (going away)
            try:
                await asyncio.wait_for(self._server.wait_closed(), 5.0)
            except TimeoutError:  # e.g. a slow_snapshot reply still sleeping
                log.warning("%s: connections still open at shutdown", self.name)

    async def _process_request(self, conn: ServerConnection, request: Request) -> Response | None:
        path, _, qs = request.path.partition("?")
        query = dict(parse_qsl(qs, keep_blank_values=True))
        if request.headers.get("Upgrade", "").lower() == "websocket":
            reply = self.dialect.ws_accept(path, query)
            return None if reply is None else _response(reply)
        self.stats.rest_calls += 1
        if request.method != "GET":
            return _response(HttpReply.json(405, {"error": "only GET is served"}))
        result = self.dialect.http_get(path, query)
        reply = await result if inspect.isawaitable(result) else result
        log.debug("%s: GET %s -> %d", self.name, request.path, reply.status)
        return _response(reply)

    async def _handler(self, conn: ServerConnection) -> None:
        client = Client(conn, self.name, self.stats)
        late = self.faults.take_late_stream()
        if late:
            client.stalls.add(None, time.monotonic() + late)
            log.info("%s: stream of %s held back %.1fs", self.name, client.peer, late)
        self.clients.add(client)
        self.stats.ws_connections_total += 1
        self.stats.ws_connections_open += 1
        log.info("%s: ws open %s %s", self.name, client.peer, conn.request.path)
        try:
            await self.dialect.ws_session(client)
        except ConnectionClosed:
            pass
        finally:
            self.clients.discard(client)
            self.stats.ws_connections_open -= 1
            await client.aclose()
            log.info("%s: ws closed %s (%s)", self.name, client.peer, conn.close_code)

    # ---- market pump ----------------------------------------------------------------------

    def rebase(self) -> None:
        """Restart rate pacing from now (after a pause or a rate change)."""
        self._t0 = None

    def set_rate(self, rate: float) -> None:
        self.rate = float(rate)
        self.rebase()

    def pump(self, now: float, trade_ratio: float) -> int:
        """Generate and publish the book updates due at ``now`` (loop time); returns how many."""
        if self._t0 is None:
            self._t0, self._done = now, 0
        due = int((now - self._t0) * self.rate) - self._done
        if due <= 0 or not self.symbols:
            return 0
        cap = max(1, int(self.rate * MAX_BURST_S))
        if due > cap:
            log.warning("%s: pump %d updates behind; dropping the backlog", self.name, due - cap)
            due, self._t0, self._done = cap, now, -cap
        symbols, books, rng, market = self.symbols, self.books, self.rng, self.market
        for _ in range(due):
            book = books[symbols[rng.randrange(len(symbols))]]
            self._trade_acc += trade_ratio
            n_trades = int(self._trade_acc)
            self._trade_acc -= n_trades
            self._emit(market.update(book, time.time_ns() // 1_000_000, n_trades))
        self._done += due
        return due

    def _emit(self, update: BookUpdate) -> None:
        symbol, faults = update.inst.symbol, self.faults
        if faults.gaps and faults.take_gap(symbol):
            log.info(
                "%s %s: gap fault: update ids %d-%d applied, not sent",
                self.name,
                symbol,
                update.first_id,
                update.last_id,
            )
            self.dialect.lost(update)
            return
        taken, armed_for = faults.take_malformed(symbol) if faults.malformed else (False, None)
        update.corrupt = taken
        self.dialect.publish(update)
        if not taken:
            return
        if update.corrupt:  # still set: no client got a frame of this update to truncate
            faults.return_malformed(armed_for)
            return
        log.info(
            "%s %s: malformed fault: truncated frame before update %d",
            self.name,
            symbol,
            update.first_id,
        )

    # ---- control --------------------------------------------------------------------------

    def inject(self, req: FaultRequest) -> dict:
        """Arm or perform a fault; returns the JSON answer of the control API."""
        self.check(req)
        target = self.faults.arm(req, self.symbols, self.rng)
        clients = list(self.clients)
        if req.kind == "stall":
            end = time.monotonic() + req.duration_s
            for client in clients:
                client.stalls.add(req.symbol, end)
        elif req.kind == "disconnect":
            for client in clients:
                client.abort()
        elif req.kind == "planned_close":
            for client in clients:
                frame = self.dialect.shutdown_frame(client)
                if frame is not None:
                    client.push(frame)
                client.close_after_flush(1000, "server shutdown")
        log.warning("%s %s: fault %s armed (%s)", self.name, target or "*", req.kind, req)
        return {
            "ok": True,
            "venue": self.name,
            "kind": req.kind,
            "symbol": target or None,
            "connections": len(clients),
        }

    def check(self, req: FaultRequest) -> None:
        """Raise FaultError if this venue's dialect cannot produce the fault."""
        if req.kind in DIALECT_KINDS and req.kind not in self.dialect.extra_faults:
            raise FaultError(f"venue {self.name!r} has no {req.kind!r} fault")

    def stats_json(self) -> dict:
        return {**asdict(self.stats), "faults": dict(self.faults.counts)}


def _response(reply: HttpReply) -> Response:
    headers = Headers(
        [
            ("Date", email.utils.formatdate(usegmt=True)),
            ("Connection", "close"),
            ("Content-Type", reply.content_type),
            ("Content-Length", str(len(reply.body))),
            *reply.headers,
        ]
    )
    status = http.HTTPStatus(reply.status)
    return Response(status.value, status.phrase, headers, reply.body)
