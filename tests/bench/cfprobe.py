"""cryptofeed on the simulator: ``python -m tests.bench.cfprobe --venue binance=PORT ... --bases BTC,ETH``.

cryptofeed (PyPI, XFree86 licence; a benchmark-only dependency, ``.[bench]``) runs its own
Binance, Bybit and Coinbase L2 book handlers, pointed at the simulator's loopback ports. Only
this harness is changed, never cryptofeed or the simulator:

* the class attributes ``websocket_endpoints`` and ``rest_endpoints`` of each exchange class
  point at ``127.0.0.1:<port>`` (Coinbase's public ``/api/v3/brokerage/market/products``, SPOT
  only; Bybit's public spot and linear streams);
* cryptofeed refuses any WebSocket address that is not ``wss://``; the simulator speaks plain
  ``ws://`` on loopback, so ``WSAsyncConn`` is subclassed to accept it (nothing else changes).

Subscribed: L2 book and trades of every symbol (as flowbook's ingest does), so both read the
same frames (except Binance trades: cryptofeed asks for ``<sym>@aggTrade``, which the simulator
does not serve; it serves ``@trade``). Measured per book callback: receipt time (cryptofeed's ``time.time()`` as its read loop gets the
frame) -> our L2 book callback (``book.<venue>``), i.e. JSON parse with Decimals, book update
and callback dispatch, the same work as flowbook's ingest read -> publish; and the NBBO
callback (``nbbo``: cryptofeed's ``NBBO`` over every feed, per symbol) -> receipt of the frame
that caused it. Frames read are counted per venue (``frames.<venue>``). cryptofeed runs on
uvloop, its default. Protocol: probe.py.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import sys
import time
from typing import Any

from tests.bench.probe import Commands, Stages, reply, run_commands

CF_VENUES = ("binance", "bybit", "coinbase")


def _patch(ports: dict[str, int]) -> dict[str, Any]:
    """Point the exchange classes at the simulator; return {venue: class}."""
    import cryptofeed.feed as cf_feed
    from cryptofeed.connection import RestEndpoint, Routes, WebsocketEndpoint, WSAsyncConn
    from cryptofeed.defines import FUTURES, L2_BOOK, PERPETUAL, SPOT, TRADES
    from cryptofeed.exchanges import Binance, Bybit, Coinbase

    class LoopbackWS(WSAsyncConn):
        """cryptofeed's WebSocket connection, allowed to use ws:// on loopback; counts frames."""

        frames: dict[str, int] = {}

        def __init__(self, address: str, conn_id: str, **kwargs: Any) -> None:
            secure = "wss://" + address.removeprefix("ws://")
            super().__init__(secure, conn_id, **kwargs)
            self.address = address
            self._venue = conn_id

        async def read(self):
            frames = LoopbackWS.frames
            venue = self._venue
            async for data in super().read():
                frames[venue] = frames.get(venue, 0) + 1
                yield data

    cf_feed.WSAsyncConn = LoopbackWS
    classes: dict[str, Any] = {}
    if "binance" in ports:
        base = f"127.0.0.1:{ports['binance']}"
        Binance.websocket_endpoints = [WebsocketEndpoint(f"ws://{base}")]
        Binance.rest_endpoints = [
            RestEndpoint(
                f"http://{base}",
                routes=Routes(
                    "/api/v3/exchangeInfo",
                    l2book="/api/v3/depth?symbol={}&limit={}",
                    authentication="/api/v3/userDataStream",
                ),
            )
        ]
        classes["binance"] = Binance
    if "bybit" in ports:
        base = f"127.0.0.1:{ports['bybit']}"
        book, trades = Bybit.websocket_channels[L2_BOOK], Bybit.websocket_channels[TRADES]
        Bybit.websocket_endpoints = [
            WebsocketEndpoint(
                f"ws://{base}/v5/public/linear",
                instrument_filter=("TYPE", (FUTURES, PERPETUAL)),
                channel_filter=(book, trades),
                options={"compression": None},
            ),
            WebsocketEndpoint(
                f"ws://{base}/v5/public/spot",
                instrument_filter=("TYPE", (SPOT)),
                channel_filter=(book, trades),
                options={"compression": None},
            ),
        ]
        info = "/v5/market/instruments-info?&category={}&status=Trading&limit=1000"
        Bybit.rest_endpoints = [
            RestEndpoint(
                f"http://{base}", routes=Routes([info.format("linear"), info.format("spot")])
            )
        ]
        classes["bybit"] = Bybit
    if "coinbase" in ports:
        base = f"127.0.0.1:{ports['coinbase']}"
        Coinbase.websocket_endpoints = [
            WebsocketEndpoint(f"ws://{base}", options={"compression": None})
        ]
        Coinbase.rest_endpoints = [
            RestEndpoint(
                f"http://{base}/api/v3/brokerage/market",
                routes=Routes("/products?product_type=SPOT", l3book="/product_book?product_id={}"),
            )
        ]
        classes["coinbase"] = Coinbase
    return classes


def symbols_for(venue: str, bases: list[str], perp: bool) -> list[str]:
    if venue == "coinbase":
        return [f"{b}-USD" for b in bases]
    syms = [f"{b}-USDT" for b in bases]
    if venue == "bybit" and perp:
        syms += [f"{b}-USDT-PERP" for b in bases]
    return syms


class CfProbe:
    def __init__(self, ports: dict[str, int], bases: list[str], perp: bool) -> None:
        self.ports = ports
        self.bases = bases
        self.perp = perp
        self.stages = Stages()
        self.recording = False
        self.label = ""
        self.t0 = 0.0
        self.nbbo_receipt = 0.0
        self.frames_at_start: dict[str, int] = {}
        self.ws_cls: Any = None

    def start(self, label: str) -> None:
        self.stages.reset()
        self.label = label
        self.t0 = time.monotonic()
        self.frames_at_start = dict(self.ws_cls.frames)
        self.recording = True

    def stop(self) -> dict[str, Any]:
        self.recording = False
        frames = {
            k: v - self.frames_at_start.get(k, 0) for k, v in sorted(self.ws_cls.frames.items())
        }
        return {
            "probe": "cryptofeed",
            "label": self.label,
            "duration_s": round(time.monotonic() - self.t0, 3),
            **self.stages.report(),
            "frames": frames,
        }

    def build(self) -> Any:
        from cryptofeed import FeedHandler
        from cryptofeed.defines import L2_BOOK, TRADES
        from cryptofeed.nbbo import NBBO

        classes = _patch(self.ports)
        import cryptofeed.feed as cf_feed

        self.ws_cls = cf_feed.WSAsyncConn
        config = {
            "uvloop": True,
            "log": {"filename": "/dev/null", "level": "WARNING"},
            # Coinbase signs every subscribe (even public channels) with these
            "coinbase": {"key_id": "bench", "key_secret": "bench"},
        }
        stages = self.stages
        probe = self

        def book_cb_for(venue: str):
            stage = f"book.{venue}"

            async def book_cb(book: Any, receipt: float) -> None:
                if probe.recording:
                    ns = int((time.time() - receipt) * 1e9)
                    stages.record(stage, ns)
                    stages.record("book", ns)
                    stages.count(stage)

            return book_cb

        class MeasuredNBBO(NBBO):
            """cryptofeed's NBBO, which also remembers the receipt time of the frame behind the
            book it is called with. cryptofeed 2.4's Coinbase handler drops the asks of every
            level2 snapshot (it filters on side "ask"; the feed says "offer"), and NBBO then
            raises IndexError on the empty side, which tears the Coinbase connection down; such
            calls are counted (``nbbo_empty_side``) and skipped instead."""

            async def __call__(self, book: Any, receipt_timestamp: float) -> None:
                probe.nbbo_receipt = receipt_timestamp
                try:
                    await super().__call__(book, receipt_timestamp)
                except IndexError:
                    if probe.recording:
                        stages.count(f"nbbo_empty_side.{book.exchange.lower()}")

        async def nbbo_cb(symbol, bid, bid_size, ask, ask_size, bid_feed, ask_feed) -> None:
            if probe.recording:
                stages.record("nbbo", int((time.time() - probe.nbbo_receipt) * 1e9))
                stages.count("nbbo")

        async def trade_cb(trade: Any, receipt: float) -> None:
            if probe.recording:
                stages.count(f"trade.{trade.exchange.lower()}")

        all_symbols = sorted({s for v in classes for s in symbols_for(v, self.bases, self.perp)})
        nbbo = MeasuredNBBO(nbbo_cb, all_symbols)
        fh = FeedHandler(config=config)
        for venue, cls in classes.items():
            fh.add_feed(
                cls(
                    channels=[L2_BOOK, TRADES],
                    symbols=symbols_for(venue, self.bases, self.perp),
                    callbacks={L2_BOOK: [book_cb_for(venue), nbbo], TRADES: trade_cb},
                    config=config,
                )
            )
        return fh

    def run(self) -> None:
        fh = self.build()  # installs uvloop's policy (cryptofeed's default) and loads symbols
        loop = asyncio.new_event_loop()  # a uvloop loop once FeedHandler set the policy
        asyncio.set_event_loop(loop)
        fh.run(start_loop=False, install_signal_handlers=False)
        cmds = Commands()

        def on_stdin() -> None:
            if not run_commands(cmds, self.start, self.stop):
                loop.stop()

        loop.add_reader(cmds.fd, on_stdin)
        loop.call_later(0.5, lambda: reply({"ready": True}))
        try:
            loop.run_forever()
        finally:
            loop.remove_reader(cmds.fd)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tests.bench.cfprobe", description=__doc__)
    ap.add_argument("--venue", action="append", default=[], help="NAME=SIM_PORT, repeatable")
    ap.add_argument("--bases", default="BTC,ETH,SOL,XRP,DOGE,ADA,AVAX,DOT,LINK")
    ap.add_argument("--no-perp", action="store_true", help="Bybit spot only")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    ports = {}
    for item in args.venue:
        name, _, port = item.partition("=")
        if name not in CF_VENUES:
            ap.error(f"cryptofeed venues are {CF_VENUES}, not {name!r}")
        ports[name] = int(port)
    probe = CfProbe(ports, [b for b in args.bases.split(",") if b], not args.no_perp)
    with contextlib.suppress(KeyboardInterrupt):
        probe.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
