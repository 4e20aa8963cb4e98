"""One simulated L2 book in integer ticks/lots, recording every level change as update ids."""

from __future__ import annotations

from dataclasses import dataclass, field

from sortedcontainers import SortedDict

from .assets import Instrument


@dataclass(frozen=True, slots=True)
class TradeEvent:
    """One fill against the top of the book. ``taker_sell`` means the aggressor sold."""

    trade_id: int
    price: int  # ticks
    qty: int  # lots
    taker_sell: bool
    ts_ms: int


@dataclass(slots=True)
class BookUpdate:
    """Level changes of one book event, with absolute sizes (0 deletes) and its update ids.

    Every level change consumes one update id: ``last_id == first_id + len(bids) + len(asks) - 1``,
    and the next update of the same book starts at ``last_id + 1``. Trades that caused some of the
    changes ride along in ``trades`` (they happened before the changes were published).
    """

    inst: Instrument
    first_id: int
    last_id: int
    bids: list[tuple[int, int]]  # (price ticks, qty lots), best first
    asks: list[tuple[int, int]]
    trades: list[TradeEvent] = field(default_factory=list)
    ts_ms: int = 0
    corrupt: bool = False  # fault: send a truncated copy of the first frame first


class SimBook:
    """Price-ordered bids and asks plus the pending changes of the event being built."""

    __slots__ = ("_changes", "asks", "bids", "inst", "last_id", "next_trade_id", "offset")

    def __init__(self, inst: Instrument, first_id: int, first_trade_id: int, offset: float) -> None:
        self.inst = inst
        self.bids: SortedDict = SortedDict()  # price ticks -> qty lots (best = last)
        self.asks: SortedDict = SortedDict()  # price ticks -> qty lots (best = first)
        self.last_id = first_id  # update id of the last committed change
        self.next_trade_id = first_trade_id
        self.offset = offset  # venue offset from the shared mid, in ticks
        self._changes: dict[tuple[bool, int], int] = {}

    def set(self, is_bid: bool, price: int, qty: int) -> None:
        """Set a level to an absolute size (<= 0 removes it) and record the change."""
        side = self.bids if is_bid else self.asks
        if qty <= 0:
            qty = 0
            side.pop(price, None)
        else:
            side[price] = qty
        self._changes[(is_bid, price)] = qty

    def best_bid(self) -> tuple[int, int] | None:
        return self.bids.peekitem(-1) if self.bids else None

    def best_ask(self) -> tuple[int, int] | None:
        return self.asks.peekitem(0) if self.asks else None

    @property
    def pending(self) -> int:
        """Number of level changes recorded since the last commit."""
        return len(self._changes)

    def discard_changes(self) -> None:
        """Forget pending changes (used while building the initial book: it has no ids)."""
        self._changes.clear()

    def commit(self, ts_ms: int, trades: list[TradeEvent]) -> BookUpdate | None:
        """Turn the pending changes into one event with fresh update ids (None if no change)."""
        if not self._changes:
            return None
        bids = sorted(((p, q) for (b, p), q in self._changes.items() if b), reverse=True)
        asks = sorted((p, q) for (b, p), q in self._changes.items() if not b)
        self._changes.clear()
        first = self.last_id + 1
        self.last_id = first + len(bids) + len(asks) - 1
        return BookUpdate(self.inst, first, self.last_id, bids, asks, trades, ts_ms)

    def top(self, depth: int) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
        """Best ``depth`` levels of each side, best first."""
        nb, na = min(depth, len(self.bids)), min(depth, len(self.asks))
        bids = [self.bids.peekitem(-1 - i) for i in range(nb)]
        asks = [self.asks.peekitem(i) for i in range(na)]
        return bids, asks
