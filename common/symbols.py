"""Instrument names and consolidation groups.

A market is ``venue:SYMBOL`` with ``SYMBOL`` = ``BASE-QUOTE`` (spot) or ``BASE-QUOTE-PERP``.
Quotes that are one currency for consolidation (``[book] quote_groups``, default USD, USDT and
USDC) form one group named after its first member, the group's unit: ``BTC-USDT`` on Binance and
``BTC-USD`` on Kraken are both in ``BTC-USD``; perpetuals form their own groups (``BTC-USD-PERP``).
A quote in no configured group is a group of its own (``BTC-EUR``).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Market:
    venue: str
    symbol: str
    base: str
    quote: str
    perp: bool

    @property
    def key(self) -> str:
        return f"{self.venue}:{self.symbol}"


def parse_market(venue: str, symbol: str) -> Market | None:
    """``BASE-QUOTE`` or ``BASE-QUOTE-PERP``; None for any other shape."""
    parts = symbol.split("-")
    if len(parts) == 3 and parts[2] == "PERP":
        perp = True
    elif len(parts) == 2:
        perp = False
    else:
        return None
    base, quote = parts[0], parts[1]
    if not base or not quote:
        return None
    return Market(venue, symbol, base, quote, perp)


def unit_of(quote: str, quote_groups: tuple[tuple[str, ...], ...]) -> str:
    """The unit (first member) of the quote group holding ``quote``; ``quote`` if none does."""
    for group in quote_groups:
        if quote in group:
            return group[0]
    return quote


def group_of(market: Market, quote_groups: tuple[tuple[str, ...], ...]) -> str:
    name = f"{market.base}-{unit_of(market.quote, quote_groups)}"
    return f"{name}-PERP" if market.perp else name


def group_name(symbol: str, quote_groups: tuple[tuple[str, ...], ...]) -> str | None:
    """Consolidation group of a ``BASE-QUOTE[-PERP]`` symbol (``BTC-USDT`` -> ``BTC-USD``)."""
    market = parse_market("", symbol)
    return group_of(market, quote_groups) if market else None
