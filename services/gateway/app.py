"""The gateway process: one Subscriber on the book builder's PUB, one websockets server that
speaks both WebSocket (``/ws``) and plain HTTP, and the hub in between. All on one event loop:
the ZeroMQ sockets are read through their FD (``Subscriber.start``), no extra threads.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed

from common.bus import Subscriber, Upstream
from common.codec import GATEWAY_TRACE
from common.config import Config
from services.gateway.clients import CLOSE_TRY_AGAIN
from services.gateway.demand import DepthDemand
from services.gateway.http import HttpApi
from services.gateway.hub import Hub
from services.gateway.metrics import GatewayCollector, GatewayStats, make_registry
from services.gateway.settings import Settings, from_config
from services.gateway.state import MarketState

log = logging.getLogger("flowbook.gateway")

# What the gateway follows on the book builder's PUB (hb. is added by the Subscriber); depth.*
# topics are followed one by one while clients want them (services/gateway/demand.py).
PREFIXES = ["bbo.", "trade.", "status.", "hb."]
SHUTDOWN_GRACE_S = 3.0


class Gateway:
    def __init__(self, cfg: Config, settings: Settings | None = None) -> None:
        self.cfg = cfg
        self.settings = settings or from_config(cfg)
        self.state = MarketState.from_config(cfg, trades_ring=self.settings.trades_ring)
        self.stats = GatewayStats()
        self.hub = Hub(self.state, self.settings, self.stats)
        self.collector = GatewayCollector(
            self.state,
            self.stats,
            self.hub.gauges,
            self.hub.proc,
            bus_stats=lambda: self.subscriber.stats.as_dict(),
        )
        self.registry = make_registry(self.collector)
        self.http = HttpApi(self.state, self.hub, self.stats, self.settings, self.registry)
        self.subscriber = Subscriber(
            [Upstream(cfg.book.pub, cfg.book.control, "book")],
            PREFIXES,
            self.hub.on_bus,
            on_upstream=self._on_upstream,
            stale_after_s=cfg.book.stale_after_s,
            trace=GATEWAY_TRACE if self.settings.trace_hops else None,
        )
        self.demand = DepthDemand(self.subscriber.add_prefix, self._unfollow)
        self.hub.demand = self.demand
        self.http.demand = self.demand

    def _unfollow(self, topic: str) -> None:
        self.subscriber.remove_prefix(topic)
        self.state.forget(topic)

    def _on_upstream(self, name: str, alive: bool) -> None:
        self.hub.on_book(name, alive)
        if alive:  # the prices held from before are not vouched for until sent again
            self.subscriber.refresh()

    async def handler(self, ws: ServerConnection) -> None:
        """One WebSocket connection: read requests until it closes; the writer is separate."""
        if self.hub.full():  # raced past the check in process_request
            self.stats.rejected += 1
            await ws.close(CLOSE_TRY_AGAIN, "too many clients")
            return
        client = self.hub.add(ws)
        try:
            while True:  # until the socket closes, also when the gateway is closing it
                data = await ws.recv(decode=False)
                client.on_frame(data if isinstance(data, bytes) else bytes(data))
        except ConnectionClosed:
            pass
        finally:
            client.detach()

    async def _await_catalog(self, timeout_s: float, stop: asyncio.Event) -> None:
        """Listen once the book builder has sent every venue's status (its instruments), or
        after ``timeout_s`` if it is down: clients reconnecting right after a gateway restart
        would otherwise have their symbols checked against the configured guess
        (``MarketState.symbols``) and get ``unknown_symbol`` for a real ``BASE-QUOTE-PERP``."""
        loop = asyncio.get_running_loop()
        start = loop.time()
        venues = [v.name for v in self.cfg.enabled_venues()]
        log.info("waiting up to %.1fs for the venues' statuses before listening", timeout_s)
        while not all(v in self.state.status for v in venues):
            if stop.is_set():
                return
            if loop.time() - start >= timeout_s:
                missing = [v for v in venues if v not in self.state.status]
                log.warning(
                    "no status yet for %s after %.1fs: listening anyway", missing, timeout_s
                )
                return
            await asyncio.sleep(0.02)
        log.info("venue statuses received in %.2fs", loop.time() - start)

    async def run(self, stop: asyncio.Event) -> None:
        s = self.settings
        loop = asyncio.get_running_loop()
        self.subscriber.start(loop)
        ticks = loop.create_task(self.hub.run_ticks())
        try:
            await self._await_catalog(s.catalog_wait_s, stop)
            if stop.is_set():
                return
            server = await serve(
                self.handler,
                s.host,
                s.port,
                process_request=self.http.process_request,
                compression="deflate" if s.compression else None,
                max_size=s.max_frame_bytes,
                write_limit=s.send_buffer_bytes,
                ping_interval=s.ping_interval_s,
                ping_timeout=s.ping_timeout_s,
                close_timeout=s.close_timeout_s,
                server_header="flowbook-gateway",
            )
            log.info(
                "listening on http://%s:%d (WebSocket /ws), following book builder at %s",
                s.host,
                s.port,
                self.cfg.book.pub,
            )
            await stop.wait()
            log.info("shutting down: closing %d client(s)", len(self.hub.clients))
            server.close(close_connections=False)
            await self.hub.close_all(1001, "gateway shutting down")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(server.wait_closed(), SHUTDOWN_GRACE_S)
        finally:
            ticks.cancel()
            self.demand.close()
            self.subscriber.close()
