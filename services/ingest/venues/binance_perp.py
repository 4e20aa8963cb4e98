"""Binance USD-M perpetuals: the Spot plugin with the futures differences (exchanges.md 1.3).

What differs from Spot, and nothing else:

* REST ``/fapi/v1/depth`` (limits 5..1000, weight 2/5/10/20) and ``/fapi/v1/exchangeInfo``, where
  only ``contractType == "PERPETUAL"`` symbols are kept; instruments are ``BASE-QUOTE-PERP``.
* Diff events carry ``pu`` (the previous event's ``u``); update ids are not contiguous, so the
  chain is ``pu == previous u``. After the snapshot: drop ``u < lastUpdateId``; the first applied
  event must straddle ``U <= lastUpdateId <= u`` (not ``lastUpdateId + 1`` as on Spot).
* Trades come from ``<sym>@aggTrade``: the USD-M stream list documents Aggregate Trade Streams
  only (no raw ``@trade``), one message per taker order and price; ``m`` = buyer is maker.
* Since 2026-04-23 ``fstream`` routes by path: ``/public`` carries ``@depth``, ``/market`` carries
  ``@aggTrade``, and the bare legacy ``/stream`` no longer delivers ``/market`` streams. With the
  option ``trade_ws_url`` (the ``/market`` URL) trades get their own connection, which owns no
  book (its reconnect resyncs nothing); without it both go on ``ws_url`` (simulator, legacy).

| channel           | variant        | role     | action                               | evidence        |
|-------------------|----------------|----------|--------------------------------------|-----------------|
| depth@100ms       | depthUpdate    | delta    | pu chain, straddle on lastUpdateId   | Binance docs S6 |
| /fapi/v1/depth    | lastUpdateId   | snapshot | stitched by the straddle rule        | Binance docs    |
| aggTrade          | aggTrade       | trade    | taker = sell if m else buy, id ``a`` | Binance docs    |
| /fapi/v1/exchangeInfo | PERPETUAL  | metadata | baseAsset/quoteAsset, tick/step      | Binance docs    |
| (Spot's)          | serverShutdown, acks | control | as Spot                        | Binance docs    |
"""

from __future__ import annotations

from typing import Any

from common.model import BookUpdate, ConnectionSpec, Event, Instrument, Trade, TradeBatch
from services.ingest.venue import ParseError, Verdict, ms_to_ns
from services.ingest.venues.binance import BinanceSpot

FAPI_DEPTH_LIMITS = (5, 10, 20, 50, 100, 500, 1000)


class BinancePerp(BinanceSpot):
    kind = "perp"
    info_path = "/fapi/v1/exchangeInfo"
    depth_path = "/fapi/v1/depth"
    trade_stream = "aggTrade"
    rest_weight_per_minute = 1200  # half the venue's 2,400/min
    options = frozenset({"snapshot_limit", "trade_ws_url"})
    snapshot_limits = FAPI_DEPTH_LIMITS
    default_snapshot_limit = 1000
    streams_per_connection = 200  # USD-M: "a maximum of 200 streams" a connection

    def __init__(self, cfg) -> None:
        super().__init__(cfg)
        self.trade_ws_url: str | None = self.option("trade_ws_url", str, None)

    def _is_wanted(self, sym: dict[str, Any]) -> bool:
        return sym.get("contractType") == "PERPETUAL" and super()._is_wanted(sym)

    @staticmethod
    def depth_weight(limit: int) -> int:
        return 2 if limit <= 50 else 5 if limit <= 100 else 10 if limit <= 500 else 20

    def connections(self, instruments: list[Instrument]) -> list[ConnectionSpec]:
        if not self.trade_ws_url:
            return super().connections(instruments)
        depth = [(i, [self.stream(i, self.depth_stream)]) for i in instruments]
        trades = [(i, [self.stream(i, self.trade_stream)]) for i in instruments]
        return self.combined(self.cfg.ws_url, depth, f"{self.venue}-public") + self.combined(
            self.trade_ws_url, trades, f"{self.venue}-market", owns=False
        )

    # -- parsing ----------------------------------------------------------------------------
    def _depth(self, d: dict[str, Any]) -> list[Event]:
        if "pu" not in d:
            raise ParseError("futures depthUpdate without 'pu'")
        return BinanceSpot._depth(self, d)

    def _agg_trade(self, d: dict[str, Any]) -> list[Event]:
        trade = Trade(
            native=d["s"],
            price=float(d["p"]),
            size=float(d["q"]),
            side="sell" if d["m"] else "buy",
            trade_id=str(d["a"]),
            ts_exch=ms_to_ns(d["T"]),
        )
        return [TradeBatch([trade])]

    _handlers = {**BinanceSpot._handlers, "depthUpdate": _depth, "aggTrade": _agg_trade}
    del _handlers["trade"]

    # -- snapshots and integrity ------------------------------------------------------------
    def check_delta(self, last_id: int | None, update: BookUpdate, first: bool) -> Verdict:
        if last_id is None:
            return Verdict.GAP
        if update.last_id < last_id or (update.last_id == last_id and not first):
            return Verdict.SKIP  # older than the book, or a repeat of the last applied event
        if first:  # the snapshot falls inside the first applied event
            return Verdict.APPLY if update.first_id <= last_id else Verdict.GAP
        return Verdict.APPLY if update.prev_id == last_id else Verdict.GAP


PLUGIN = BinancePerp
