"""Conversion rates between the quotes of a consolidation group (see consolidate.py).

``[book] reference`` maps a quote to a venue book that prices it in the group's unit, e.g.
``reference = {USDT = "kraken:USDT-USD"}``: a BTC-USDT price times the USDT-USD mid is a USD
price. A book the other way round (``USD-USDT``) gives 1/mid. Without a reference, 1:1.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from common.config import ConfigError
from common.symbols import parse_market
from services.book.mirror import Mirror


@dataclass(frozen=True, slots=True)
class Reference:
    quote: str
    venue: str
    symbol: str
    base_of_book: str
    quote_of_book: str

    @property
    def source(self) -> str:
        return f"ref:{self.venue} {self.symbol} mid"


def parse_references(table: Any, where: str = "[book] reference") -> dict[str, Reference]:
    """``{QUOTE: "venue:SYMBOL"}`` -> References; the book must involve QUOTE."""
    if table is None:
        return {}
    if not isinstance(table, dict):
        raise ConfigError(f'{where}: must be a table like {{USDT = "kraken:USDT-USD"}}')
    refs: dict[str, Reference] = {}
    for quote, spec in table.items():
        q = str(quote).upper()
        if not isinstance(spec, str) or spec.count(":") != 1:
            raise ConfigError(f'{where}: {quote} must be "venue:SYMBOL", got {spec!r}')
        venue, symbol = spec.split(":")
        market = parse_market(venue, symbol)
        if market is None or market.perp or q not in (market.base, market.quote):
            raise ConfigError(f"{where}: {quote} = {spec!r} is not a spot book of {q}")
        refs[q] = Reference(q, venue, symbol, market.base, market.quote)
    return refs


class Rates:
    """Rate of a market's quote in its group's unit, from live reference mids."""

    def __init__(
        self, refs: dict[str, Reference], mirror_of: Callable[[str, str], Mirror | None]
    ) -> None:
        self.refs = refs
        self.mirror_of = mirror_of
        self.last: dict[str, float] = {}  # quote -> last reference mid seen
        self.ref_books = {(r.venue, r.symbol): r.quote for r in refs.values()}

    def rate(self, quote: str, unit: str) -> tuple[float, dict[str, Any]]:
        if quote == unit:
            return 1.0, {"quote": quote, "rate": 1.0, "source": "1:1"}
        ref = self.refs.get(quote)
        if ref is None:
            return 1.0, {"quote": quote, "rate": 1.0, "source": "1:1"}
        if (ref.base_of_book, ref.quote_of_book) not in ((quote, unit), (unit, quote)):
            return 1.0, {
                "quote": quote,
                "rate": 1.0,
                "source": "1:1",
                "note": f"reference {ref.venue} {ref.symbol} does not price {quote} in {unit}",
            }
        mid = self._mid(ref)
        live = mid is not None
        if mid is None:
            mid = self.last.get(quote)
            if mid is None:
                return 1.0, {
                    "quote": quote,
                    "rate": 1.0,
                    "source": "1:1",
                    "note": f"reference {ref.venue} {ref.symbol} not available yet",
                }
        else:
            self.last[quote] = mid
        rate = mid if ref.base_of_book == quote else 1.0 / mid
        rate = float(f"{rate:.12g}")
        return rate, {"quote": quote, "rate": rate, "source": ref.source, "live": live}

    def observe(self, quote: str) -> None:
        """The reference book of ``quote`` changed: remember its mid while it is live, so that
        its last mid is known when it goes out, even if no market used the rate meanwhile."""
        ref = self.refs.get(quote)
        mid = self._mid(ref) if ref is not None else None
        if mid is not None:
            self.last[quote] = mid

    def _mid(self, ref: Reference) -> float | None:
        m = self.mirror_of(ref.venue, ref.symbol)
        if m is None or not m.live:
            return None
        bid, ask = m.book.best_bid(), m.book.best_ask()
        if bid is None or ask is None:
            return None
        return (bid[0] + ask[0]) / 2.0

    def for_mirror(self, mirror: Mirror, unit: str) -> tuple[float, dict[str, Any]]:
        assert mirror.market is not None
        return self.rate(mirror.market.quote, unit)
