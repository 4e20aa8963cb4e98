"""Bybit v5 public streams, spot and linear perpetuals, as one venue (exchanges.md section 2).

One connection per category, ``<ws_url>/spot`` and ``<ws_url>/linear``, each subscribed to
``orderbook.<depth>.<SYM>`` and ``publicTrade.<SYM>``. Both categories name BTC/USDT
``BTCUSDT``, so books are keyed ``<category>:<SYM>`` (``linear:BTCUSDT``): the parser of a
connection knows its category from ``ConnectionSpec.extra``. Instruments come from
``GET /v5/market/instruments-info`` per category (linear: LinearPerpetual only, paginated with
``nextPageCursor``, followed through ``metadata_next``).

Integrity: the stream sends the snapshot on subscribe; a later snapshot, or any message with
``u == 1`` (service restart), resets the book; every delta must have ``u == previous u + 1``,
anything else is a gap and the runner sends ``resubscribe`` (unsubscribe + subscribe of that
one orderbook topic) for a fresh snapshot. The depth window is kept by the venue (levels that
leave the top N arrive as explicit deletes), so no truncation. No checksum.

| channel          | variant            | role     | action                        | evidence         |
|------------------|--------------------|----------|-------------------------------|------------------|
| orderbook.N.SYM  | snapshot           | snapshot | replace the book              | XRPUSDT ob500    |
| orderbook.N.SYM  | delta              | delta    | u +1 chain, absolute, 0 = del | same, 49 deltas  |
| orderbook.N.SYM  | any type, u == 1   | snapshot | replace (service restart)     | Bybit docs       |
| publicTrade.SYM  | snapshot, 1-1024   | trades   | all in order, S = taker side  | exchanges.md 2.3 |
| op (un)subscribe | spot/linear acks   | ignored  | success false -> ParseError   | exchanges.md 2.1 |
| op ping          | spot/linear pongs  | ignored  | []                            | Bybit docs       |
| instruments-info | spot; linear paged | metadata | Trading, LinearPerpetual only | Bybit docs       |

(XRPUSDT ob500: the real linear recording in ../shared/captures/bybit, 2024-12-01.)
"""

from __future__ import annotations

from typing import Any

import orjson

from common.config import ConfigError
from common.model import (
    BookUpdate,
    ConnectionSpec,
    Event,
    HttpRequest,
    Instrument,
    RawLevel,
    Trade,
    TradeBatch,
)
from services.ingest.venue import (
    FrameParser,
    ParseError,
    VenueError,
    VenuePlugin,
    Verdict,
    ms_to_ns,
)

INFO_PATH = "/v5/market/instruments-info"
CATEGORIES = ("spot", "linear")
DEPTHS = (1, 50, 200, 1000)  # orderbook.N: the depths the venue publishes
KINDS = {"spot": "spot", "linear": "perp"}
ARGS_PER_REQUEST = {"spot": 10, "linear": 200}  # spot: at most 10 args per subscribe request
MAX_ARGS_CHARS = 20_000  # the venue allows 21,000 characters of args per connection
SIDES = {"Buy": "buy", "Sell": "sell"}  # S is the taker side
CONTROL_OPS = frozenset({"subscribe", "unsubscribe", "ping", "pong"})


def precision(step: str) -> int:
    """Decimals of a tick/step string such as ``"0.010"`` -> 2."""
    return len(step.rstrip("0").partition(".")[2])


def split_native(native: str) -> tuple[str, str]:
    """``"linear:BTCUSDT"`` -> ``("linear", "BTCUSDT")`` (our own key, not a venue symbol)."""
    category, _, symbol = native.partition(":")
    return category, symbol


def _levels(raw: Any) -> list[RawLevel]:
    """Validated ``[price, size]`` string pairs (a bad one raises here, not in the book)."""
    out = []
    for price, size in raw:
        if not isinstance(price, str) or not isinstance(size, str):
            raise ParseError(f"level {price!r}, {size!r} is not a pair of strings")
        if float(price) <= 0 or float(size) < 0:
            raise ParseError(f"level {price!r}, {size!r} out of range")
        out.append((price, size))
    return out


class BybitParser(FrameParser):
    """Frames of one category's connection."""

    def __init__(self, category: str) -> None:
        self.category = category

    def parse(self, frame: str | bytes, ts_recv: int) -> list[Event]:
        msg = orjson.loads(frame)
        if not isinstance(msg, dict):
            raise ParseError("frame is not a JSON object")
        topic = msg.get("topic")
        if topic is None:
            if msg.get("op") in CONTROL_OPS or msg.get("type") == "COMMAND_RESP":
                if msg.get("success") is False:
                    raise VenueError(f"{msg.get('op')} refused: {msg.get('ret_msg')}")
                return []  # subscribe/unsubscribe ack or pong, spot or linear shape
            raise ParseError("frame has neither a topic nor an op")
        channel, _, _ = topic.partition(".")
        handler = self._handlers.get(channel)
        if handler is None:
            raise ParseError(f"unknown topic {topic!r}")
        return handler(self, msg)

    def _book(self, msg: dict[str, Any]) -> list[Event]:
        kind, data = msg["type"], msg["data"]
        if kind not in ("snapshot", "delta"):
            raise ParseError(f"unknown orderbook type {kind!r}")
        u = data["u"]
        if not isinstance(u, int):
            raise ParseError(f"u {u!r} is not an integer")
        return [
            BookUpdate(
                native=f"{self.category}:{data['s']}",
                is_snapshot=kind == "snapshot" or u == 1,  # u == 1: the service restarted
                bids=_levels(data["b"]),
                asks=_levels(data["a"]),
                last_id=u,
                ts_exch=ms_to_ns(msg["ts"]),
            )
        ]

    def _trades(self, msg: dict[str, Any]) -> list[Event]:
        trades = [
            Trade(
                native=f"{self.category}:{t['s']}",
                price=float(t["p"]),
                size=float(t["v"]),
                side=SIDES[t["S"]],
                trade_id=str(t["i"]),
                ts_exch=ms_to_ns(t["T"]),
            )
            for t in msg["data"]
        ]
        return [TradeBatch(trades)] if trades else []

    _handlers = {"orderbook": _book, "publicTrade": _trades}


class Bybit(VenuePlugin):
    snapshot_source = "stream"
    ping_interval_s = 20.0
    ping_message = '{"req_id":"flowbook","op":"ping"}'
    watchdog_s = 30.0
    rest_weight_per_minute = 600  # the venue allows 600 requests per 5 s per IP
    options = frozenset({"categories", "depth", "page_limit", "ping_interval_s"})

    def __init__(self, cfg) -> None:
        super().__init__(cfg)
        self.categories = tuple(self.option("categories", list, list(CATEGORIES)))
        unknown = set(self.categories) - set(CATEGORIES)
        if unknown or not self.categories:
            bad = sorted(unknown) or "none"
            raise ConfigError(f"[venues.{self.venue}] categories must be among {CATEGORIES}: {bad}")
        self.depth = self.option("depth", int, 50)
        if self.depth not in DEPTHS:
            # any other depth is refused by the venue, topic by topic (exchanges.md 2.2)
            raise ConfigError(f"[venues.{self.venue}] depth must be one of {DEPTHS}: {self.depth}")
        self.page_limit = self.option("page_limit", int, 1000)
        self.ping_interval_s = self.option("ping_interval_s", float, self.ping_interval_s)
        self.ws_url = cfg.ws_url.rstrip("/")

    # -- metadata ---------------------------------------------------------------------------
    def metadata_requests(self) -> list[HttpRequest]:
        url = self.cfg.rest_url + INFO_PATH
        reqs = []
        for category in self.categories:
            params = {"category": category}
            if category != "spot":  # spot is not paginated: limit/cursor are invalid there
                params["limit"] = str(self.page_limit)
            reqs.append(HttpRequest(url, params))
        return reqs

    def metadata_next(self, req: HttpRequest, body: bytes) -> HttpRequest | None:
        cursor = orjson.loads(body).get("result", {}).get("nextPageCursor")
        if not cursor or req.params.get("cursor") == cursor:
            return None
        return HttpRequest(req.url, {**req.params, "cursor": cursor}, req.weight)

    def parse_metadata(self, bodies: list[bytes]) -> list[Instrument]:
        found: dict[str, Instrument] = {}
        for body in bodies:
            doc = orjson.loads(body)
            if doc.get("retCode") != 0:
                raise ValueError(f"instruments-info: retCode {doc.get('retCode')}: {doc}")
            result = doc["result"]
            category = result["category"]
            if category not in self.categories:
                continue
            for item in result["list"]:
                if self._is_wanted(category, item):
                    inst = self._instrument(category, item)
                    found[inst.native] = inst
        order = {c: n for n, c in enumerate(self.categories)}
        return sorted(
            found.values(),
            key=lambda i: (order[split_native(i.native)[0]], self.cfg.bases.index(i.base)),
        )

    def _is_wanted(self, category: str, item: dict[str, Any]) -> bool:
        return (
            item.get("status") == "Trading"
            and item.get("baseCoin") in self.cfg.bases
            and item.get("quoteCoin") == self.cfg.quote
            and (category == "spot" or item.get("contractType") == "LinearPerpetual")
        )

    def _instrument(self, category: str, item: dict[str, Any]) -> Instrument:
        tick = item.get("priceFilter", {}).get("tickSize")
        lots = item.get("lotSizeFilter", {})
        step = lots.get("basePrecision") if category == "spot" else lots.get("qtyStep")
        return Instrument(
            venue=self.venue,
            native=f"{category}:{item['symbol']}",
            base=item["baseCoin"],
            quote=item["quoteCoin"],
            kind=KINDS[category],
            price_precision=precision(tick) if tick else None,
            qty_precision=precision(step) if step else None,
        )

    # -- transport --------------------------------------------------------------------------
    def _topics(self, symbol: str) -> list[str]:
        return [f"orderbook.{self.depth}.{symbol}", f"publicTrade.{symbol}"]

    def connections(self, instruments: list[Instrument]) -> list[ConnectionSpec]:
        specs = []
        for category in self.categories:
            chunk: list[Instrument] = []
            chars = 0
            for inst in (i for i in instruments if split_native(i.native)[0] == category):
                size = sum(len(t) for t in self._topics(split_native(inst.native)[1]))
                if chunk and chars + size > MAX_ARGS_CHARS:
                    specs.append(self._spec(category, chunk, len(specs)))
                    chunk, chars = [], 0
                chunk.append(inst)
                chars += size
            if chunk:
                specs.append(self._spec(category, chunk, len(specs)))
        return specs

    def _spec(self, category: str, instruments: list[Instrument], n: int) -> ConnectionSpec:
        args = [t for i in instruments for t in self._topics(split_native(i.native)[1])]
        per = ARGS_PER_REQUEST[category]
        subscribe = [self._op("subscribe", args[k : k + per]) for k in range(0, len(args), per)]
        return ConnectionSpec(
            url=f"{self.ws_url}/{category}",
            subscribe=subscribe,
            instruments=instruments,
            label=f"{self.venue}-{category}-{n}",
            extra={"category": category},
        )

    @staticmethod
    def _op(op: str, args: list[str]) -> str:
        return orjson.dumps({"req_id": op, "op": op, "args": args}).decode()

    def new_parser(self, conn: ConnectionSpec) -> FrameParser:
        return BybitParser(conn.extra["category"])

    def parse(self, frame: str | bytes, ts_recv: int) -> list[Event]:
        raise NotImplementedError("a Bybit frame needs its connection's category: new_parser")

    def resubscribe(self, inst: Instrument) -> list[str] | None:
        topic = f"orderbook.{self.depth}.{split_native(inst.native)[1]}"
        return [self._op("unsubscribe", [topic]), self._op("subscribe", [topic])]

    # -- integrity --------------------------------------------------------------------------
    def check_delta(self, last_id: int | None, update: BookUpdate, first: bool) -> Verdict:
        if last_id is None or update.last_id != last_id + 1:
            return Verdict.GAP  # a jump, a repeat or a step back: only a snapshot repairs it
        return Verdict.APPLY


PLUGIN = Bybit
