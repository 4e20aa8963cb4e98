"""Binance Spot: combined stream ``<sym>@depth@100ms`` + ``<sym>@trade``, REST depth snapshot.

Integrity (../shared/docs/exchanges.md section 1.3): buffer diffs, fetch ``/api/v3/depth``,
drop diffs with ``u <= lastUpdateId``, the first applied diff must straddle
``U <= lastUpdateId + 1 <= u``, every later one must have ``U == previous u + 1``; otherwise the
instrument alone resyncs. Trades: ``m`` is "buyer is maker", so the taker sold when it is true.

| channel        | variant        | role     | action                       | evidence                |
|----------------|----------------|----------|------------------------------|-------------------------|
| depth@100ms    | depthUpdate    | delta    | U/u chain, absolute sizes    | hftbacktest 2024 BTC/ETH |
| /api/v3/depth  | lastUpdateId   | snapshot | stitched by straddle rule    | same, + cryptofeed 2021 |
| trade          | trade          | trade    | taker = sell if m else buy   | hftbacktest 2024        |
| !serverShutdown| serverShutdown | control  | reconnect now                | Binance docs            |
| (subscribe ack)| result/id      | ignored  |                              | Binance docs            |
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson

from common.config import ConfigError
from common.model import (
    BookUpdate,
    ConnectionSpec,
    Event,
    HttpRequest,
    Instrument,
    Reconnect,
    Trade,
    TradeBatch,
)
from services.ingest.venue import ParseError, VenueError, VenuePlugin, Verdict, ms_to_ns

STREAMS_PER_CONNECTION = 400  # spot allows 1024 streams a connection


def precision(step: str) -> int:
    """Decimals of a tick/step string such as ``"0.01000000"`` -> 2."""
    frac = step.rstrip("0").partition(".")[2]
    return len(frac)


class BinanceSpot(VenuePlugin):
    snapshot_source = "rest"
    watchdog_s = 30.0
    max_connection_age_s = 23.5 * 3600
    rest_weight_per_minute = 3000  # half the venue's 6,000/min: leave room for other users
    kind = "spot"
    info_path = "/api/v3/exchangeInfo"
    depth_path = "/api/v3/depth"
    depth_stream = "depth@100ms"
    trade_stream = "trade"
    options = frozenset({"snapshot_limit"})
    # 1000 levels (weight 50) covered +-0.33% of BTC's price in the 2024 captures: the book is
    # refreshed when the price reaches the snapshot's end (sync.py). Up to 5000 (weight 250)
    snapshot_limits: Sequence[int] = range(1, 5001)
    default_snapshot_limit = 1000
    streams_per_connection = STREAMS_PER_CONNECTION

    def __init__(self, cfg) -> None:
        super().__init__(cfg)
        self.snapshot_limit = self.option("snapshot_limit", int, self.default_snapshot_limit)
        if self.snapshot_limit not in self.snapshot_limits:
            allowed = self.snapshot_limits
            shown = f"{allowed[0]}..{allowed[-1]}" if len(allowed) > 10 else allowed
            raise ConfigError(f"{self.venue}: snapshot_limit must be one of {shown}")
        self.snapshot_levels = self.snapshot_limit

    # -- metadata ---------------------------------------------------------------------------
    def metadata_requests(self) -> list[HttpRequest]:
        return [HttpRequest(self.cfg.rest_url + self.info_path, weight=20)]

    def _is_wanted(self, sym: dict[str, Any]) -> bool:
        return (
            sym.get("status") == "TRADING"
            and sym.get("baseAsset") in self.cfg.bases
            and sym.get("quoteAsset") == self.cfg.quote
        )

    def parse_metadata(self, bodies: list[bytes]) -> list[Instrument]:
        out = []
        for sym in orjson.loads(bodies[0])["symbols"]:
            if not self._is_wanted(sym):
                continue
            filters = {f["filterType"]: f for f in sym.get("filters", [])}
            tick = filters.get("PRICE_FILTER", {}).get("tickSize")
            step = filters.get("LOT_SIZE", {}).get("stepSize")
            out.append(
                Instrument(
                    venue=self.venue,
                    native=sym["symbol"],
                    base=sym["baseAsset"],
                    quote=sym["quoteAsset"],
                    kind=self.kind,
                    price_precision=precision(tick) if tick else None,
                    qty_precision=precision(step) if step else None,
                )
            )
        return out

    # -- transport --------------------------------------------------------------------------
    def connections(self, instruments: list[Instrument]) -> list[ConnectionSpec]:
        streams = [
            (inst, [self.stream(inst, self.depth_stream), self.stream(inst, self.trade_stream)])
            for inst in instruments
        ]
        return self.combined(self.cfg.ws_url, streams, self.venue)

    @staticmethod
    def stream(inst: Instrument, name: str) -> str:
        return f"{inst.native.lower()}@{name}"

    def combined(
        self, url: str, streams: list[tuple[Instrument, list[str]]], label: str, owns: bool = True
    ) -> list[ConnectionSpec]:
        """Combined-stream connections ``url?streams=a/b/...`` of at most STREAMS_PER_CONNECTION
        streams. ``owns``: the books of these instruments live on it (a reconnect resyncs them)."""
        specs = []
        width = max((len(names) for _, names in streams), default=1)
        per_conn = max(1, self.streams_per_connection // width)
        for i in range(0, len(streams), per_conn):
            chunk = streams[i : i + per_conn]
            names = "/".join(n for _, pair in chunk for n in pair)
            specs.append(
                ConnectionSpec(
                    url=f"{url}?streams={names}",
                    subscribe=[],
                    instruments=[inst for inst, _ in chunk] if owns else [],
                    label=f"{label}-{i // per_conn}",
                )
            )
        return specs

    # -- parsing ----------------------------------------------------------------------------
    def parse(self, frame: str | bytes, ts_recv: int) -> list[Event]:
        msg = orjson.loads(frame)
        data = msg.get("data") if isinstance(msg, dict) else None
        if data is None:
            if isinstance(msg, dict) and "result" in msg and "id" in msg:
                return []  # subscribe ack
            if isinstance(msg, dict) and "code" in msg and "msg" in msg:
                raise VenueError(f"error {msg['code']}: {msg['msg']}")
            raise ParseError("no 'data' in combined-stream frame")
        kind = data.get("e")
        handler = self._handlers.get(kind)
        if handler is None:
            raise ParseError(f"unknown event type {kind!r}")
        return handler(self, data)

    def _depth(self, d: dict[str, Any]) -> list[Event]:
        return [
            BookUpdate(
                native=d["s"],
                is_snapshot=False,
                bids=d["b"],
                asks=d["a"],
                first_id=d["U"],
                last_id=d["u"],
                prev_id=d.get("pu"),
                ts_exch=ms_to_ns(d["E"]),
            )
        ]

    def _trade(self, d: dict[str, Any]) -> list[Event]:
        trade = Trade(
            native=d["s"],
            price=float(d["p"]),
            size=float(d["q"]),
            side="sell" if d["m"] else "buy",
            trade_id=str(d["t"]),
            ts_exch=ms_to_ns(d["T"]),
        )
        return [TradeBatch([trade])]

    def _shutdown(self, d: dict[str, Any]) -> list[Event]:
        return [Reconnect("serverShutdown")]

    _handlers = {"depthUpdate": _depth, "trade": _trade, "serverShutdown": _shutdown}

    # -- snapshots and integrity ------------------------------------------------------------
    def snapshot_request(self, inst: Instrument) -> HttpRequest:
        limit = self.snapshot_limit
        return HttpRequest(
            self.cfg.rest_url + self.depth_path,
            {"symbol": inst.native, "limit": str(limit)},
            weight=self.depth_weight(limit),
        )

    @staticmethod
    def depth_weight(limit: int) -> int:
        return 5 if limit <= 100 else 25 if limit <= 500 else 50 if limit <= 1000 else 250

    def parse_snapshot(self, inst: Instrument, body: bytes, ts_recv: int) -> BookUpdate:
        snap = orjson.loads(body)
        return BookUpdate(
            native=inst.native,
            is_snapshot=True,
            bids=snap["bids"],
            asks=snap["asks"],
            last_id=snap["lastUpdateId"],
            ts_recv=ts_recv,
        )

    def check_delta(self, last_id: int | None, update: BookUpdate, first: bool) -> Verdict:
        if last_id is None:
            return Verdict.GAP
        if update.last_id <= last_id:
            return Verdict.SKIP
        if first:
            ok = update.first_id <= last_id + 1 <= update.last_id
        else:
            ok = update.first_id == last_id + 1
        return Verdict.APPLY if ok else Verdict.GAP


PLUGIN = BinanceSpot
