"""The real Bybit recording (linear XRPUSDT ``orderbook.500``, 2024-12-01, BYB format: one raw
v5 message per line) replayed through the real parser and sync code."""

from __future__ import annotations

from decimal import Decimal

import orjson
import pytest

from common.model import BookUpdate, ConnectionSpec
from services.ingest.sync import Publish
from tests.captures import capture
from tests.venues import SyncLog, plugin_for, sync_for

pytestmark = pytest.mark.captures

FILE = "bybit/2024-12-01_XRPUSDT_ob500.data"


def read_byb(rel: str) -> list[bytes]:
    with open(capture(rel), "rb") as fh:
        return [line.rstrip(b"\n") for line in fh if line.strip()]


def reference_book(frames: list[bytes]) -> tuple[dict, dict, list[int]]:
    """Rebuilt independently with Decimal dicts straight from the JSON: a snapshot replaces,
    a delta sets absolute sizes, 0 deletes. Also returns every message's ``u``."""
    bids: dict[Decimal, Decimal] = {}
    asks: dict[Decimal, Decimal] = {}
    us = []
    for frame in frames:
        msg = orjson.loads(frame)
        data = msg["data"]
        us.append(data["u"])
        if msg["type"] == "snapshot":
            bids.clear()
            asks.clear()
        for side, key in ((bids, "b"), (asks, "a")):
            for p, q in data[key]:
                if Decimal(q) == 0:
                    side.pop(Decimal(p), None)
                else:
                    side[Decimal(p)] = Decimal(q)
    return bids, asks, us


def ob500_plugin():
    """Bybit as it was when the capture was made: linear depth 500 was removed on 2025-11-19
    (exchanges.md 2.2), so the config no longer accepts it."""
    plugin = plugin_for("bybit", bases=("XRP",), depth=200)
    plugin.depth = 500
    return plugin


def test_xrpusdt_ob500_u_chain_contiguous_500_a_side_never_crossed_equal_to_reference():
    frames = read_byb(FILE)
    assert len(frames) == 50
    plugin = ob500_plugin()
    parser = plugin.new_parser(ConnectionSpec("ws://x", [], [], extra={"category": "linear"}))
    m = SyncLog(sync_for(plugin, "linear:XRPUSDT", "XRP", "USDT", "perp"))
    sizes = []
    for frame in frames:
        (upd,) = parser.parse(frame, 0)
        assert isinstance(upd, BookUpdate) and upd.native == "linear:XRPUSDT"
        out = m.feed(upd)
        assert isinstance(out, Publish), out
        book = m.sync.book
        sizes.append((len(book.bids), len(book.asks)))
        assert not book.is_crossed()
    assert m.resyncs == [] and m.sync.counters.gaps == 0 and m.sync.state == "live"
    assert [p.snapshot for p in m.published] == [True] + [False] * 49
    assert set(sizes) == {(500, 500)}  # the venue keeps the window: explicit deletes
    ref_bids, ref_asks, us = reference_book(frames)
    assert us == list(range(20254869, 20254919))  # the chain the sync accepted, by hand
    assert m.sync.last_id == 20254918
    book = m.sync.book
    assert dict(book.bids) == {float(p): float(q) for p, q in ref_bids.items()}
    assert dict(book.asks) == {float(p): float(q) for p, q in ref_asks.items()}
    (best_bid, _), (best_ask, _) = book.best_bid(), book.best_ask()
    assert best_bid == float(max(ref_bids)) and best_ask == float(min(ref_asks))
    assert best_bid < best_ask


def test_xrpusdt_ob500_one_dropped_delta_is_detected_as_a_gap():
    frames = read_byb(FILE)
    plugin = ob500_plugin()
    parser = plugin.new_parser(ConnectionSpec("ws://x", [], [], extra={"category": "linear"}))
    m = SyncLog(sync_for(plugin, "linear:XRPUSDT", "XRP", "USDT", "perp"))
    for n, frame in enumerate(frames):
        if n == 20:
            continue  # lost on the way
        for upd in parser.parse(frame, 0):
            m.feed(upd)
    assert [r.kind for r in m.resyncs] == ["gap"]
    assert m.sync.counters.gaps == 1 and m.sync.state == "syncing"
