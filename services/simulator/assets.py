"""Static facts of the simulated assets and exact fixed-point formatting.

Prices and sizes are integers internally: a price is a count of the instrument's ticks, a size a
count of its lot steps. ``*_e8`` values are the same quantities in units of 1e-8, from which any
decimal string is produced exactly (no floats on the wire).
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from functools import lru_cache

E8 = 100_000_000

START_PRICES: dict[str, float] = {
    "BTC": 65000.0,
    "ETH": 3000.0,
    "SOL": 150.0,
    "XRP": 0.55,
    "DOGE": 0.12,
    "ADA": 0.40,
    "AVAX": 30.0,
    "DOT": 6.0,
    "LINK": 14.0,
}
TICKS: dict[str, str] = {
    "BTC": "0.01",
    "ETH": "0.01",
    "SOL": "0.01",
    "AVAX": "0.01",
    "LINK": "0.01",
    "XRP": "0.0001",
    "ADA": "0.0001",
    "DOGE": "0.00001",
    "DOT": "0.001",
}
LOT_STEPS: dict[str, str] = {
    "BTC": "0.00001",
    "ETH": "0.0001",
    "SOL": "0.001",
    "XRP": "0.1",
    "DOGE": "1",
    "ADA": "0.1",
    "AVAX": "0.01",
    "DOT": "0.01",
    "LINK": "0.01",
}
# Value of one unit of the quote currency in USD: stablecoins are treated as ~1.0 USD.
QUOTE_USD: dict[str, float] = {"USD": 1.0, "USDT": 1.0, "USDC": 1.0}


def to_e8(text: str) -> int:
    """Exact decimal string -> integer count of 1e-8 (raises if finer than 1e-8)."""
    value = Decimal(text) * E8
    if value != value.to_integral_value():
        raise ValueError(f"{text} is finer than 1e-8")
    return int(value)


# Number formatting was the largest part of a simulator's CPU (Kraken prints every level of its
# checksum's top 10 on each update): prices near the top and common sizes repeat, so the
# formatted strings are cached.
@lru_cache(maxsize=1 << 13, typed=True)
def fmt8(value_e8: int) -> str:
    """1e-8 units -> Binance-style string with exactly 8 decimals ("65000.01000000")."""
    whole, frac = divmod(value_e8, E8)
    return f"{whole}.{frac:08d}"


@lru_cache(maxsize=1 << 13, typed=True)
def fmt_dec(value_e8: int, decimals: int) -> str:
    """1e-8 units -> string with exactly ``decimals`` decimals (truncating finer digits)."""
    if decimals >= 8:
        return fmt8(value_e8) + "0" * (decimals - 8)
    scaled = value_e8 // 10 ** (8 - decimals)
    if decimals == 0:
        return str(scaled)
    whole, frac = divmod(scaled, 10**decimals)
    return f"{whole}.{frac:0{decimals}d}"


@lru_cache(maxsize=1 << 13, typed=True)
def fmt_min(value_e8: int) -> str:
    """1e-8 units -> shortest plain decimal string ("65000.01", "2", "0.00012")."""
    text = fmt8(value_e8).rstrip("0")
    return text[:-1] if text.endswith(".") else text


@lru_cache(maxsize=1 << 13, typed=True)
def decimals_of(text: str) -> int:
    """Number of decimals of a tick/step string: "0.01" -> 2, "1" -> 0."""
    exponent = Decimal(text).normalize().as_tuple().exponent
    return max(0, -int(exponent))


@dataclass(frozen=True, slots=True)
class Instrument:
    """One tradable market of one venue, named in the venue's own notation."""

    venue: str
    symbol: str  # native symbol, e.g. "BTCUSDT" (Binance), "BTC-USD" (Coinbase)
    base: str
    quote: str
    tick: str  # price tick as a decimal string
    step: str  # size step as a decimal string
    tick_e8: int
    step_e8: int

    @property
    def price_decimals(self) -> int:
        return decimals_of(self.tick)

    @property
    def size_decimals(self) -> int:
        return decimals_of(self.step)


def make_instrument(venue: str, symbol: str, base: str, quote: str) -> Instrument:
    """Instrument with the simulator's tick and lot step for ``base``."""
    if base not in START_PRICES:
        raise ValueError(f"no simulated market for base asset {base!r}")
    if quote not in QUOTE_USD:
        raise ValueError(f"quote currency {quote!r} is not simulated (known: {sorted(QUOTE_USD)})")
    tick, step = TICKS[base], LOT_STEPS[base]
    return Instrument(venue, symbol, base, quote, tick, step, to_e8(tick), to_e8(step))
