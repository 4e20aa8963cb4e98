"""Bus payload encoding: one orjson object per message, schema version ``v``.

Prices and sizes are JSON numbers in shortest round-trip form (orjson writes floats that way), so
a consumer gets back the exchange's digits. Levels travel as ``[[price, size], ...]``.
"""

from __future__ import annotations

from typing import Any

import orjson

SCHEMA_VERSION = 1


BOOK_TRACE = "ts_book"  # the book builder's Subscriber(trace=...) prefix ([book] trace_hops)
GATEWAY_TRACE = "ts_gw"  # the gateway's ([gateway] trace_hops)


def trace_fields(prefix: str) -> tuple[str, str]:
    """The receive stamps a ``Subscriber(trace=prefix)`` adds: woke to read, decoded."""
    return f"{prefix}_wake", f"{prefix}_rx"


#: every receive stamp of the pipeline (``[book]``/``[gateway]`` ``trace_hops``): measurement,
#: not data, so two messages that differ only there carry the same data
TRACE_FIELDS = frozenset(trace_fields(BOOK_TRACE) + trace_fields(GATEWAY_TRACE))


class DecodeError(ValueError):
    """A bus frame that is not a valid flowbook payload."""


def encode(payload: dict[str, Any]) -> bytes:
    return orjson.dumps(payload)


def decode(frame: bytes) -> dict[str, Any]:
    try:
        obj = orjson.loads(frame)
    except orjson.JSONDecodeError as exc:
        raise DecodeError(f"not JSON: {exc}") from exc
    if not isinstance(obj, dict):
        raise DecodeError(f"payload is {type(obj).__name__}, not an object")
    version = obj.get("v")
    if version != SCHEMA_VERSION:
        raise DecodeError(f"schema version {version!r}, this build speaks {SCHEMA_VERSION}")
    return obj


def levels_out(levels: list[tuple[float, float]]) -> list[list[float]]:
    return [[p, s] for p, s in levels]


def topic(kind: str, venue: str, symbol: str | None = None) -> str:
    """``kind.venue.symbol``: kind first, so a prefix subscription selects a kind."""
    return f"{kind}.{venue}.{symbol}" if symbol else f"{kind}.{venue}"
