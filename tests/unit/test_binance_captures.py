"""Real Binance recordings replayed through the real parser and sync code."""

from __future__ import annotations

from decimal import Decimal

import orjson
import pytest

from common.model import BookUpdate, TradeBatch
from services.ingest.sync import Publish, Resync
from tests.captures import read_cf1, read_hbt
from tests.venues import SyncLog, plugin_for, sync_for

pytestmark = pytest.mark.captures


def reference_book(frames: list[str]) -> tuple[dict, dict]:
    """Rebuilt independently with Decimal dicts and the pre-2024 wording of the algorithm:
    start from the snapshot, apply every diff (wherever it sat in the file) with
    u > lastUpdateId, in order."""
    snap = next(orjson.loads(f) for f in frames if f.startswith('{"lastUpdateId"'))
    bids = {Decimal(p): Decimal(q) for p, q in snap["bids"]}
    asks = {Decimal(p): Decimal(q) for p, q in snap["asks"]}
    last = snap["lastUpdateId"]
    for frame in frames:
        if frame.startswith('{"lastUpdateId"'):
            continue
        d = orjson.loads(frame)["data"]
        if d["u"] <= last:
            continue
        for side, key in ((bids, "b"), (asks, "a")):
            for p, q in d[key]:
                if Decimal(q) == 0:
                    side.pop(Decimal(p), None)
                else:
                    side[Decimal(p)] = Decimal(q)
        last = d["u"]
    return bids, asks


@pytest.mark.parametrize("symbol", ["btcusdt", "ethusdt"])
def test_hftbacktest_two_days_zero_gaps_never_crossed_equal_to_reference(symbol):
    plugin = plugin_for("binance")
    m = SyncLog(sync_for(plugin, symbol.upper(), symbol[:3].upper(), "USDT"))
    depth_frames: list[str] = []
    trades = trade_frames = 0
    for day in ("20240808", "20240809"):
        for ts, frame in read_hbt(f"binance/{symbol}_{day}.gz"):
            if frame.startswith('{"lastUpdateId"'):
                inst = m.sync.inst
                out = m.feed(plugin.parse_snapshot(inst, frame.encode(), ts))
                depth_frames.append(frame)
                continue
            if "@bookTicker" in frame[:40]:
                continue
            trade_frames += '@trade"' in frame[:40]
            for ev in plugin.parse(frame, ts):
                if isinstance(ev, BookUpdate):
                    depth_frames.append(frame)
                    out = m.feed(ev)
                    if isinstance(out, Publish):
                        assert not m.sync.book.is_crossed()
                elif isinstance(ev, TradeBatch):
                    trades += len(ev.trades)
                    assert all(t.side in ("buy", "sell") and t.price > 0 for t in ev.trades)
    assert m.resyncs == [], m.resyncs[:3]
    assert m.sync.state == "live" and m.sync.counters.gaps == 0
    assert len(m.published) > 6000  # one snapshot + ~6,450 diffs applied over 11 minutes
    assert trades == trade_frames > 14000  # every trade of every frame, none dropped
    ref_bids, ref_asks = reference_book(depth_frames)
    book = m.sync.book
    assert dict(book.bids) == {float(p): float(q) for p, q in ref_bids.items()}
    assert dict(book.asks) == {float(p): float(q) for p, q in ref_asks.items()}
    assert book.best_bid()[0] < book.best_ask()[0]


def test_cryptofeed_2021_four_symbols_sync_with_their_rest_snapshots():
    plugin = plugin_for("binance")
    snapshots = {}
    for kind, ts, url, text in read_cf1("binance/BINANCE.http.0.0"):
        if kind == "http" and "/depth" in url:
            symbol = url.split("symbol=")[1].split("&")[0]
            snapshots[symbol] = (ts, text)
    assert set(snapshots) == {"NKNUSDT", "BLZETH", "LRCBTC", "RUNEEUR"}
    machines = {s: SyncLog(sync_for(plugin, s, s[:3], s[3:])) for s in snapshots}
    pending = dict(snapshots)
    for kind, ts, _, text in read_cf1("binance/BINANCE.ws.1.0"):
        if kind != "recv" or "@depth" not in text[:40]:
            continue
        # inject each REST snapshot where it was received, as the runner does
        for sym, (snap_ts, body) in list(pending.items()):
            if snap_ts <= ts:
                m = machines[sym]
                m.feed(plugin.parse_snapshot(m.sync.inst, body.encode(), snap_ts))
                del pending[sym]
        for ev in plugin.parse(text, ts):
            machines[ev.native].feed(ev)
    for sym, m in machines.items():
        assert not [r for r in m.resyncs if isinstance(r, Resync)], (sym, m.resyncs)
        assert m.sync.state == "live", sym
        assert not m.sync.book.is_crossed()
