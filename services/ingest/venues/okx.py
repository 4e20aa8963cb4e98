"""OKX v5 public WebSocket: ``books`` (400 levels, snapshot then incremental) and ``trades``.

Integrity (../shared/docs/exchanges.md section 5.2), per instId: the WS sends the snapshot on
subscribe (``prevSeqId = -1``); each update's ``prevSeqId`` must equal the last ``seqId``. An
update with ``seqId == prevSeqId`` and empty sides is a heartbeat, one with ``seqId < prevSeqId``
(its ``prevSeqId`` still matching) a sequence reset after maintenance: both are accepted. A
mismatch resubscribes that instId's ``books`` (unsubscribe + subscribe: a fresh snapshot); a repeat
of the message just applied is skipped. A non-zero ``checksum`` is verified with the legacy CRC32
over the top 25 bids and asks interleaved ``bid:ask`` as the ORIGINAL strings, as a signed int32;
``0`` means none (deprecated since 2026-06-23). Pre-2023 frames carry no ``seqId``: the checksum
is then the only check. Keepalive: text ``ping`` -> ``pong``. Trades: ``side`` is the taker side.

| channel    | variant           | role      | action                                | evidence            |
|------------|-------------------|-----------|---------------------------------------|---------------------|
| books      | action=snapshot   | snapshot  | replace book, checksum if non-zero    | OKX.ws.1.0 (2022)   |
| books      | action=update     | delta     | prevSeqId chain, checksum if non-zero | OKX.ws.1.0, OKX docs|
| books      | seqId == prevSeqId| heartbeat | accepted, nothing to apply            | OKX docs            |
| books      | seqId < prevSeqId | reset     | accepted, chain continues from seqId  | OKX docs            |
| trades     | data[]            | trade     | every fill in order, side = taker     | OKX.ws.1.0          |
| (event)    | subscribe/unsub.  | ack       | ignored                               | OKX.ws.1.0          |
| (event)    | error             | error     | raised: logged and counted            | OKX docs            |
| (event)    | notice 64008      | control   | reconnect now (service upgrade)       | OKX docs            |
| (text)     | pong              | keepalive | ignored                               | OKX docs            |
| /api/v5/public/instruments | SPOT | metadata | baseCcy/quoteCcy/tickSz/lotSz, live  | OKX.0 (2022)        |
"""

from __future__ import annotations

import zlib
from typing import Any

import orjson

from common.book import OrderBook
from common.model import (
    BookUpdate,
    ConnectionSpec,
    Event,
    HttpRequest,
    Instrument,
    RawLevel,
    Reconnect,
    Trade,
    TradeBatch,
)
from services.ingest.venue import ParseError, VenueError, VenuePlugin, Verdict

BOOKS, TRADES = "books", "trades"
INSTRUMENTS_PER_CONNECTION = 10  # 20 channels: OKX advises < 30 per connection for 400-level books
CHECKSUM_DEPTH = 25
SERVICE_UPGRADE = "64008"  # notice: the connection closes in 30 s
SIDES = {"buy": "buy", "sell": "sell"}  # anything else is malformed (KeyError)


def decimals(step: str) -> int:
    """Decimals of a tick/lot string: ``"0.01"`` -> 2, ``"1"`` -> 0."""
    return len(step.rstrip("0").partition(".")[2]) if "." in step else 0


def checksum(bids: list[RawLevel], asks: list[RawLevel]) -> int:
    """OKX legacy book checksum: ``bid1px:bid1sz:ask1px:ask1sz:...`` over the best 25 a side
    (a shorter side just ends), CRC32 as a signed 32-bit int."""
    parts: list[str] = []
    for bid, ask in zip(bids, asks, strict=False):
        parts += bid
        parts += ask
    common = min(len(bids), len(asks))
    for level in bids[common:] or asks[common:]:
        parts += level
    crc = zlib.crc32(":".join(parts).encode())
    return crc - (1 << 32) if crc >= 1 << 31 else crc


def _op(op: str, args: list[dict[str, str]]) -> str:
    return orjson.dumps({"op": op, "args": args}).decode()


class Okx(VenuePlugin):
    snapshot_source = "stream"
    keep_raw_levels = True  # the checksum is over the exchange's own strings
    ping_message = "ping"
    watchdog_s = 30.0
    rest_weight_per_minute = 300  # instruments: 20 requests / 2 s per IP
    options = frozenset({"subscribe_ops_per_hour"})

    def __init__(self, cfg) -> None:
        super().__init__(cfg)
        # "480 subscribe/unsubscribe/login per connection per hour" (exchanges.md 5.1)
        self.subscribe_ops_per_hour = self.option("subscribe_ops_per_hour", int, 480)
        # "send 'ping' when nothing came for N < 30 s": pinging on a fixed period well inside
        # both the venue's 30 s and our watchdog keeps a quiet connection provably alive
        self.ping_interval_s = min(20.0, self.watchdog_s / 2)

    # -- metadata ---------------------------------------------------------------------------
    def metadata_requests(self) -> list[HttpRequest]:
        url = self.cfg.rest_url + "/api/v5/public/instruments"
        return [HttpRequest(url, {"instType": "SPOT"})]

    def parse_metadata(self, bodies: list[bytes]) -> list[Instrument]:
        body = orjson.loads(bodies[0])
        if body.get("code") != "0":
            raise ValueError(f"instruments: code {body.get('code')!r}: {body.get('msg')!r}")
        return [
            Instrument(
                venue=self.venue,
                native=d["instId"],
                base=d["baseCcy"],
                quote=d["quoteCcy"],
                kind="spot",
                price_precision=decimals(d["tickSz"]),
                qty_precision=decimals(d["lotSz"]),
            )
            for d in body["data"]
            if d.get("state") == "live"
            and d.get("baseCcy") in self.cfg.bases
            and d.get("quoteCcy") == self.cfg.quote
        ]

    # -- transport --------------------------------------------------------------------------
    def connections(self, instruments: list[Instrument]) -> list[ConnectionSpec]:
        specs = []
        n = INSTRUMENTS_PER_CONNECTION
        for i in range(0, len(instruments), n):
            chunk = instruments[i : i + n]
            args = [
                {"channel": ch, "instId": inst.native} for inst in chunk for ch in (BOOKS, TRADES)
            ]
            label = f"{self.venue}-{i // n}"
            specs.append(ConnectionSpec(self.cfg.ws_url, [_op("subscribe", args)], chunk, label))
        return specs

    def resubscribe(self, inst: Instrument) -> list[str]:
        args = [{"channel": BOOKS, "instId": inst.native}]
        return [_op("unsubscribe", args), _op("subscribe", args)]

    # -- parsing ----------------------------------------------------------------------------
    def parse(self, frame: str | bytes, ts_recv: int) -> list[Event]:
        if frame in ("pong", b"pong"):
            return []
        msg = orjson.loads(frame)
        if "event" in msg:
            return self._event(msg)
        arg = msg["arg"]
        handler = self._handlers.get(arg["channel"])
        if handler is None:
            raise ParseError(f"unsubscribed channel {arg['channel']!r}")
        return handler(self, msg)

    def _event(self, msg: dict[str, Any]) -> list[Event]:
        event = msg["event"]
        if event in ("subscribe", "unsubscribe"):
            return []
        if event == "notice" and msg.get("code") == SERVICE_UPGRADE:
            return [Reconnect(f"notice {SERVICE_UPGRADE}: {msg.get('msg')}")]
        if event == "notice":
            return []
        if event == "error":
            raise VenueError(f"error {msg.get('code')}: {msg.get('msg')}")
        raise ParseError(f"unknown event {event!r} {msg.get('code')}: {msg.get('msg')}")

    def _books(self, msg: dict[str, Any]) -> list[Event]:
        action = msg["action"]
        if action not in ("snapshot", "update"):
            raise ParseError(f"unknown books action {action!r}")
        native = msg["arg"]["instId"]
        return [
            BookUpdate(
                native=native,
                is_snapshot=action == "snapshot",
                bids=[(lvl[0], lvl[1]) for lvl in d["bids"]],
                asks=[(lvl[0], lvl[1]) for lvl in d["asks"]],
                last_id=d.get("seqId"),
                prev_id=d.get("prevSeqId"),
                checksum=d.get("checksum"),
                ts_exch=int(d["ts"]) * 1_000_000,
            )
            for d in msg["data"]
        ]

    def _trades(self, msg: dict[str, Any]) -> list[Event]:
        trades = [
            Trade(
                native=d["instId"],
                price=float(d["px"]),
                size=float(d["sz"]),
                side=SIDES[d["side"]],  # the taker's side
                trade_id=d["tradeId"],
                ts_exch=int(d["ts"]) * 1_000_000,
            )
            for d in msg["data"]
        ]
        return [TradeBatch(trades)]

    _handlers = {BOOKS: _books, TRADES: _trades}

    # -- integrity --------------------------------------------------------------------------
    def check_delta(self, last_id: int | None, update: BookUpdate, first: bool) -> Verdict:
        if update.prev_id is None:
            return Verdict.APPLY  # a pre-2023 feed: no sequence, the checksum alone decides
        if update.prev_id == last_id:
            return Verdict.APPLY  # incl. heartbeats (seqId == prevSeqId) and resets (seqId <)
        if update.last_id == last_id:
            return Verdict.SKIP  # the message just applied, again
        return Verdict.GAP

    def verify(self, inst: Instrument, book: OrderBook, update: BookUpdate) -> str | None:
        if not update.checksum:
            return None  # 0 (or absent): no checksum
        got = checksum(*book.top_raw(CHECKSUM_DEPTH))
        if got != update.checksum:
            return f"checksum {got} != venue's {update.checksum}"
        return None


PLUGIN = Okx
