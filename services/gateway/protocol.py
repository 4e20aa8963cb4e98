"""The ``/ws`` JSON protocol: request parsing and validation, error codes (see PROTOCOL.md).

Nothing here does I/O: ``parse`` turns one inbound frame into a ``Subscribe``, ``Unsubscribe``
or ``Ping`` request, or raises ``ProtocolError(code, message, request)``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Protocol

import orjson

CHANNELS = ("depth", "bbo", "trades", "stats", "status")
OPS = ("subscribe", "unsubscribe", "ping")
ERROR_CODES = (
    "bad_json",
    "bad_request",
    "unknown_op",
    "unknown_channel",
    "unknown_venue",
    "unknown_symbol",
    "too_many_subscriptions",
    "message_too_large",
    "rate_limited",
    "not_subscribed",
    "trades_dropped",  # a notice, not an answer to a request
    "internal_error",
)
# Default interval_ms per channel: depth is conflated, the others are sent as they come.
DEFAULT_INTERVAL_MS = {"depth": 100, "bbo": 0, "trades": 0, "stats": 0, "status": 0}
MAX_INTERVAL_MS = 60_000
MAX_VENUES = 32
MAX_ID_CHARS = 64
SYMBOL_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,39}$")
VENUE_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,31}$")
_MISSING: Any = object()

SubId = str | int


class ProtocolError(Exception):
    """A request the gateway cannot serve: ``code`` (stable, for programs) and a message."""

    def __init__(self, code: str, message: str, request: Any = _MISSING) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.request = request

    def to_message(self) -> dict[str, Any]:
        out: dict[str, Any] = {"type": "error", "code": self.code, "message": self.message}
        if self.request is not _MISSING:
            out["request"] = self.request
            if isinstance(self.request, dict) and _valid_id(self.request.get("id")):
                out["id"] = self.request["id"]
        return out


class Catalog(Protocol):
    """What the validator needs to know about venues and symbols (``MarketState``)."""

    def venues(self) -> list[str]: ...
    def known_venue(self, venue: str) -> bool: ...
    def symbols(self, venue: str) -> set[str]: ...
    def groups(self) -> set[str]: ...


@dataclass(frozen=True)
class Subscribe:
    channel: str
    venues: tuple[str, ...] | None  # None: every venue (trades, stats, status with "all")
    symbol: str | None
    depth: int
    interval_ms: int
    id: SubId | None
    venue_echo: str | list[str]  # the venue field as the client should see it
    request: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @property
    def key(self) -> tuple[Any, ...]:
        """Identity of a subscription: its id if given, else what it selects."""
        if self.id is not None:
            return ("id", self.id)
        return ("sel", self.channel, _venue_set(self.venues), self.symbol)

    def selects(self, channel: str, venues: tuple[str, ...] | None, symbol: str | None) -> bool:
        """Same channel, venues (in any order) and symbol."""
        return (
            self.channel == channel
            and _venue_set(self.venues) == _venue_set(venues)
            and self.symbol == symbol
        )

    def echo(self) -> dict[str, Any]:
        out: dict[str, Any] = {"channel": self.channel, "venue": self.venue_echo}
        if self.symbol is not None:
            out["symbol"] = self.symbol
        if self.channel == "depth":
            out["depth"] = self.depth
        out["interval_ms"] = self.interval_ms
        if self.id is not None:
            out["id"] = self.id
        return out


@dataclass(frozen=True)
class Unsubscribe:
    id: SubId | None
    channel: str | None
    venues: tuple[str, ...] | None
    symbol: str | None
    request: dict[str, Any]


@dataclass(frozen=True)
class Ping:
    id: SubId | None


Request = Subscribe | Unsubscribe | Ping


def _valid_id(value: Any) -> bool:
    if isinstance(value, bool):
        return False
    if isinstance(value, int):
        return abs(value) < 2**53
    return isinstance(value, str) and 0 < len(value) <= MAX_ID_CHARS


def loads(data: bytes | str) -> Any:
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise ProtocolError("bad_json", f"request is not valid JSON: {exc}") from None


def parse(data: bytes | str, catalog: Catalog, *, max_depth: int, default_depth: int) -> Request:
    """One inbound frame -> a request; ``ProtocolError`` for anything unusable."""
    req = loads(data)
    if not isinstance(req, dict):
        raise ProtocolError("bad_request", "request must be a JSON object", req)
    op = req.get("op")
    if op is None:
        raise ProtocolError("bad_request", "missing field 'op'", req)
    if op not in OPS:
        raise ProtocolError("unknown_op", f"unknown op {op!r}; ops: {', '.join(OPS)}", req)
    sid = req.get("id")
    if sid is not None and not _valid_id(sid):
        raise ProtocolError(
            "bad_request", f"'id' must be a string of 1..{MAX_ID_CHARS} chars or an integer", req
        )
    if op == "ping":
        return Ping(sid)
    if op == "unsubscribe":
        return _unsubscribe(req, sid)
    return _subscribe(req, sid, catalog, max_depth, default_depth)


def _channel(req: dict[str, Any]) -> str:
    channel = req.get("channel")
    if channel is None:
        raise ProtocolError("bad_request", "missing field 'channel'", req)
    if channel not in CHANNELS:
        raise ProtocolError(
            "unknown_channel", f"unknown channel {channel!r}; channels: {', '.join(CHANNELS)}", req
        )
    return str(channel)


def _venues(req: dict[str, Any], channel: str) -> tuple[tuple[str, ...] | None, str | list[str]]:
    """(venues or None for every venue, the normalized echo). Format only, not existence."""
    venue = req.get("venue")
    if venue is None:
        if channel in ("depth", "bbo"):
            raise ProtocolError(
                "bad_request", "missing field 'venue' (a venue name, \"all\" or a list)", req
            )
        return None, "all"
    names = [venue] if isinstance(venue, str) else venue
    if not isinstance(names, list) or not names or len(names) > MAX_VENUES:
        raise ProtocolError(
            "bad_request",
            f"'venue' must be a venue name, \"all\" or a list of 1..{MAX_VENUES}",
            req,
        )
    out: list[str] = []
    for name in names:
        if not isinstance(name, str) or not VENUE_RE.match(name):
            raise ProtocolError("bad_request", f"'venue' has an invalid name {name!r}", req)
        if name not in out:
            out.append(name)
    if channel not in ("depth", "bbo") and "all" in out:
        return None, "all"  # every venue: "all" covers the others
    echo: str | list[str] = out[0] if isinstance(venue, str) else out
    return tuple(out), echo


def _venue_set(venues: tuple[str, ...] | None) -> frozenset[str] | None:
    return None if venues is None else frozenset(venues)


def _symbol(req: dict[str, Any], channel: str) -> str | None:
    symbol = req.get("symbol")
    if channel in ("stats", "status"):
        return None  # these channels are per venue; a symbol is ignored
    if symbol is None:
        if channel in ("depth", "bbo"):
            raise ProtocolError("bad_request", "missing field 'symbol'", req)
        return None
    if not isinstance(symbol, str) or not SYMBOL_RE.match(symbol):
        raise ProtocolError(
            "bad_request", "'symbol' must be an instrument name like \"BTC-USDT\"", req
        )
    return symbol.upper()


def _int_field(req: dict[str, Any], key: str, default: int, lo: int, hi: int) -> int:
    value = req.get(key, default)
    if value is None:
        return default
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if not isinstance(value, int) or isinstance(value, bool) or not lo <= value <= hi:
        raise ProtocolError("bad_request", f"'{key}' must be an integer {lo}..{hi}", req)
    return value


def _subscribe(
    req: dict[str, Any], sid: SubId | None, catalog: Catalog, max_depth: int, default_depth: int
) -> Subscribe:
    channel = _channel(req)
    venues, echo = _venues(req, channel)
    for venue in venues or ():
        if venue == "all":
            continue
        if not catalog.known_venue(venue):
            known = ", ".join(["all", *catalog.venues()])
            raise ProtocolError("unknown_venue", f"unknown venue {venue!r}; venues: {known}", req)
    symbol = _symbol(req, channel)
    if symbol is not None:
        _check_symbol(req, channel, venues, symbol, catalog)
    # only the depth channel has a depth: elsewhere the field is ignored, not validated
    depth = (
        _int_field(req, "depth", default_depth, 1, max_depth)
        if channel == "depth"
        else default_depth
    )
    interval = _int_field(req, "interval_ms", DEFAULT_INTERVAL_MS[channel], 0, MAX_INTERVAL_MS)
    return Subscribe(channel, venues, symbol, depth, interval, sid, echo, req)


def _check_symbol(
    req: dict[str, Any],
    channel: str,
    venues: tuple[str, ...] | None,
    symbol: str,
    catalog: Catalog,
) -> None:
    if channel in ("depth", "bbo"):
        # every venue asked for must list the symbol ("all" = consolidated groups)
        for venue in venues or ():
            if symbol not in catalog.symbols(venue):
                where = "consolidated groups" if venue == "all" else f"venue {venue!r}"
                raise ProtocolError(
                    "unknown_symbol",
                    f"unknown symbol {symbol!r} for {where}: not in its instrument list "
                    "(as the venue's status reports it; the configured pairs until it does)",
                    req,
                )
        return
    # trades: a symbol of one of the venues, or a consolidated group (all its members)
    if symbol in catalog.groups():
        return
    for venue in venues if venues is not None else catalog.venues():
        if symbol in catalog.symbols(venue):
            return
    raise ProtocolError(
        "unknown_symbol",
        f"unknown symbol {symbol!r}: not in the instrument list of the venue(s) asked for "
        "(as their status reports it; the configured pairs until it does)",
        req,
    )


def _unsubscribe(req: dict[str, Any], sid: SubId | None) -> Unsubscribe:
    if sid is not None:
        return Unsubscribe(sid, None, None, None, req)
    if req.get("channel") is None:
        raise ProtocolError("bad_request", "unsubscribe needs 'id' or 'channel'", req)
    channel = _channel(req)
    venues, _ = _venues(req, channel)
    symbol = _symbol(req, channel)
    return Unsubscribe(None, channel, venues, symbol, req)
