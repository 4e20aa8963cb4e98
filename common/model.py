"""Normalized types shared by every process.

Semantics, written down once:
* A price level is ``(price, size)``; ``size == 0`` deletes the level. Sizes are absolute, never
  increments. Levels of one message are applied in array order.
* A snapshot discards all prior state of that book.
* ``Trade.side`` is the TAKER (aggressor) side, ``"buy"`` or ``"sell"``, whatever the venue's own
  convention (Binance ``m`` is inverted, Coinbase ``side`` is the maker).
* Timestamps are integer nanoseconds: ``ts_exch`` from the venue (None if it gives none),
  ``ts_recv`` when ingest read the frame off its socket.
* Instrument names are ``BASE-QUOTE`` (spot) and ``BASE-QUOTE-PERP`` (perpetuals), built from the
  venue's metadata, never by slicing the venue's own symbol.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

Side = Literal["buy", "sell"]
MarketKind = Literal["spot", "perp"]
SyncState = Literal["connecting", "syncing", "live", "stale"]
RawLevel = tuple[str, str]


@dataclass(frozen=True, slots=True)
class Instrument:
    venue: str
    native: str
    base: str
    quote: str
    kind: MarketKind = "spot"
    price_precision: int | None = None
    qty_precision: int | None = None

    @property
    def symbol(self) -> str:
        name = f"{self.base}-{self.quote}"
        return f"{name}-PERP" if self.kind == "perp" else name


@dataclass(slots=True)
class BookUpdate:
    """One book message of a venue, levels as the exchange's own strings.

    ``first_id``/``last_id``/``prev_id`` carry the venue's sequencing fields (Binance U/u/pu,
    Bybit u, OKX seqId/prevSeqId); the venue plugin's sync rule gives them meaning.
    """

    native: str
    is_snapshot: bool
    bids: list[RawLevel]
    asks: list[RawLevel]
    first_id: int | None = None
    last_id: int | None = None
    prev_id: int | None = None
    checksum: int | None = None
    ts_exch: int | None = None
    ts_recv: int = 0


@dataclass(frozen=True, slots=True)
class Trade:
    native: str
    price: float
    size: float
    side: Side
    trade_id: str
    ts_exch: int | None = None


@dataclass(slots=True)
class TradeBatch:
    trades: list[Trade]
    ts_recv: int = 0


@dataclass(frozen=True, slots=True)
class Reconnect:
    """The venue asked us to reconnect (planned shutdown) or the connection is unusable."""

    reason: str


@dataclass(frozen=True, slots=True)
class ConnectionGap:
    """A per-connection sequence broke: every book on the connection must resync."""

    reason: str


@dataclass(frozen=True, slots=True)
class Reply:
    """Text the runner must send back on the same connection (e.g. an app-level pong)."""

    text: str


Event = BookUpdate | TradeBatch | Reconnect | ConnectionGap | Reply


@dataclass(slots=True)
class ConnectionSpec:
    """One WebSocket connection a venue needs: where, what to send after connecting, and for
    which instruments (a reconnect resyncs exactly these)."""

    url: str
    subscribe: list[str]
    instruments: list[Instrument]
    label: str = ""
    extra: dict = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class HttpRequest:
    url: str
    params: dict[str, str] = field(default_factory=dict)
    weight: int = 1
