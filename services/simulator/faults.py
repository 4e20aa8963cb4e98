"""Fault requests (validated) and the per-venue state of armed faults.

Kinds (DESIGN.md section 7): ``disconnect`` and ``planned_close`` act at once on every WebSocket
of the venue; ``gap`` (next ``count`` updates of the symbol are applied but not sent), ``malformed``
(a truncated copy of the next ``count`` frames is sent before the real one), ``stall`` (the
connections open at that moment get nothing for ``duration_s`` but stay open; the market keeps
moving, so their stream resumes with an id jump; new connections are not stalled), ``late_stream``
(the next ``count`` connections get no frame for their first ``duration_s``: a stream that starts
after the connection opened), ``rest429``/``rest500``/``slow_snapshot``/``rest_malformed``
(the next ``count`` REST snapshot calls fail, are answered ``duration_s`` late, or are answered
200 with the body cut in half), ``checksum``
(the next ``count`` book frames carry a wrong checksum; only for dialects that list it in
``Dialect.extra_faults`` and consume it with ``FaultState.take("checksum", symbol)``), ``reset``
(the venue restarts the book's stream: a fresh snapshot mid-stream, its sequence restarted; same
dialect rule), ``seqgap`` (the next frame skips one number of a per-connection sequence, e.g.
Coinbase ``sequence_num``; same dialect rule), ``refuse`` (the next ``count`` subscribe requests
for the symbol are answered with the venue's rate-limit error and not carried out; same rule),
``precision`` (from the next frame of the symbol on, the venue prints its prices with one more
decimal and says so in its metadata, as when an exchange refines a pair's precision; same rule).
"""

from __future__ import annotations

import random
from collections.abc import Iterable
from dataclasses import dataclass, field

KINDS = (
    "disconnect",
    "gap",
    "stall",
    "late_stream",
    "malformed",
    "rest429",
    "rest500",
    "slow_snapshot",
    "rest_malformed",
    "planned_close",
    "checksum",
    "reset",
    "seqgap",
    "refuse",
    "precision",
)
REST_KINDS = ("rest429", "rest500", "slow_snapshot", "rest_malformed")
# only for dialects that list them in ``extra_faults``
DIALECT_KINDS = ("checksum", "reset", "seqgap", "refuse", "precision")


class FaultError(ValueError):
    """A fault request that cannot be applied (unknown venue, kind, symbol, bad field)."""


@dataclass(frozen=True, slots=True)
class FaultRequest:
    venue: str
    kind: str
    symbol: str | None = None
    duration_s: float = 5.0
    count: int = 1


def parse_fault(obj: object, symbols_by_venue: dict[str, Iterable[str]]) -> FaultRequest:
    """Validate a JSON fault request against the served venues and their symbols."""
    if not isinstance(obj, dict):
        raise FaultError("body must be a JSON object")
    venue, kind, symbol = obj.get("venue"), obj.get("kind"), obj.get("symbol")
    for key, value in (("venue", venue), ("kind", kind), ("symbol", symbol)):
        if value is not None and not isinstance(value, str):
            raise FaultError(f"{key!r} must be a string, got {value!r}")
    if venue not in symbols_by_venue:
        raise FaultError(f"unknown venue {venue!r}; served: {sorted(symbols_by_venue)}")
    if kind not in KINDS:
        raise FaultError(f"unknown fault kind {kind!r}; known: {list(KINDS)}")
    if symbol is not None and symbol not in set(symbols_by_venue[venue]):
        known = sorted(symbols_by_venue[venue])
        raise FaultError(
            f"unknown symbol {symbol!r} for venue {venue!r} (as the venue writes them: "
            f"{', '.join(known[:4])}{', ...' if len(known) > 4 else ''})"
        )
    try:
        duration = float(obj.get("duration_s", 5.0))
        count = int(obj.get("count", 1))
    except (TypeError, ValueError) as exc:
        raise FaultError(f"bad duration_s/count: {exc}") from None
    if not 0 <= duration <= 3600 or not 1 <= count <= 1_000_000:
        raise FaultError("duration_s must be in [0, 3600] and count in [1, 1000000]")
    return FaultRequest(venue, kind, symbol, duration, count)


@dataclass(slots=True)
class RestFault:
    kind: str
    symbol: str | None
    remaining: int
    duration_s: float


@dataclass
class FaultState:
    """Armed faults of one venue. Keys ``None`` mean "any symbol"."""

    gaps: dict[str, int] = field(default_factory=dict)
    malformed: dict[str | None, int] = field(default_factory=dict)
    rest: list[RestFault] = field(default_factory=list)
    other: dict[tuple[str, str | None], int] = field(default_factory=dict)  # dialect-specific
    counts: dict[str, int] = field(default_factory=dict)
    late_streams: list[float] = field(default_factory=list)  # durations, one per connection

    def arm(self, req: FaultRequest, symbols: list[str], rng: random.Random) -> str:
        """Record a fault; returns the symbol it targets ("" for the whole venue)."""
        self.counts[req.kind] = self.counts.get(req.kind, 0) + 1
        symbol = req.symbol
        if req.kind == "gap":
            symbol = symbol or rng.choice(symbols)
            self.gaps[symbol] = self.gaps.get(symbol, 0) + req.count
        elif req.kind == "malformed":
            self.malformed[symbol] = self.malformed.get(symbol, 0) + req.count
        elif req.kind == "late_stream":
            self.late_streams += [req.duration_s] * req.count
        elif req.kind in REST_KINDS:
            self.rest.append(RestFault(req.kind, symbol, req.count, req.duration_s))
        elif req.kind in DIALECT_KINDS:
            key = (req.kind, symbol)
            self.other[key] = self.other.get(key, 0) + req.count
        return symbol or ""

    def take(self, kind: str, symbol: str) -> bool:
        """Consume one armed dialect-specific fault (e.g. ``checksum``) for ``symbol``."""
        return bool(self.other) and (
            _take(self.other, (kind, symbol)) or _take(self.other, (kind, None))
        )

    def take_late_stream(self) -> float | None:
        """How long a new connection's stream is held back, if a ``late_stream`` is armed."""
        return self.late_streams.pop(0) if self.late_streams else None

    def take_gap(self, symbol: str) -> bool:
        return _take(self.gaps, symbol)

    def take_malformed(self, symbol: str) -> tuple[bool, str | None]:
        """Consume one armed ``malformed`` fault for ``symbol``: its own, else one armed for any
        symbol. Returns (taken, the key it was armed under), for ``return_malformed``."""
        if _take(self.malformed, symbol):
            return True, symbol
        return _take(self.malformed, None), None

    def return_malformed(self, key: str | None) -> None:
        """Re-arm a taken ``malformed`` fault that reached no client: its update sent no frame
        (every change beyond the depth a client subscribed to, say), so the next one carries it."""
        self.malformed[key] = self.malformed.get(key, 0) + 1

    def take_rest(self, symbol: str) -> RestFault | None:
        """The REST fault that applies to the next snapshot call for ``symbol``, if any."""
        for fault in self.rest:
            if fault.symbol in (None, symbol):
                fault.remaining -= 1
                if fault.remaining <= 0:
                    self.rest.remove(fault)
                return fault
        return None


@dataclass
class Stalls:
    """Stall deadlines of one connection (monotonic time), per symbol or ``None`` for all."""

    until: dict[str | None, float] = field(default_factory=dict)

    def add(self, symbol: str | None, end: float) -> None:
        self.until[symbol] = max(self.until.get(symbol, 0.0), end)

    def active(self, symbol: str | None, now: float) -> bool:
        until = self.until
        for key in (None, symbol) if symbol is not None else (None,):
            end = until.get(key)
            if end is not None:
                if now < end:
                    return True
                del until[key]
        return False


def _take(counter: dict, key: object) -> bool:
    left = counter.get(key)
    if not left:
        return False
    if left <= 1:
        del counter[key]
    else:
        counter[key] = left - 1
    return True
