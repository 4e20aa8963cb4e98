"""The real OKX recording (cryptofeed ``OKX.ws.1.0``, 2022-05-13, ``books`` 400 levels for
BTC-USDT spot, UNI-USD-SWAP and BTC-USD-220527, with real non-zero checksums and no
seqId/prevSeqId) replayed through the real parser and sync machine."""

from __future__ import annotations

import zlib
from decimal import Decimal

import orjson
import pytest

from common.model import BookUpdate, TradeBatch
from services.ingest.sync import Publish
from services.ingest.venue import ParseError
from tests.captures import read_cf1
from tests.venues import SyncLog, plugin_for, sync_for

pytestmark = pytest.mark.captures

BOOKS = ("BTC-USDT", "UNI-USD-SWAP", "BTC-USD-220527")


def frames() -> list[str]:
    return [text for kind, _, _, text in read_cf1("okx/OKX.ws.1.0") if kind == "recv"]


def reference(msgs: list[dict]) -> dict[str, tuple[dict, dict, int]]:
    """Each book rebuilt independently (Decimal keys, original strings kept), with the checksum
    of its final state computed the docs' way."""
    out: dict[str, tuple[dict, dict, int]] = {}
    for msg in msgs:
        inst_id = msg["arg"]["instId"]
        d = msg["data"][0]
        if msg["action"] == "snapshot":
            out[inst_id] = ({}, {}, 0)
        bids, asks, _ = out[inst_id]
        for side, levels in ((bids, d["bids"]), (asks, d["asks"])):
            for px, sz, *_ in levels:
                if Decimal(sz) == 0:
                    side.pop(Decimal(px), None)
                else:
                    side[Decimal(px)] = (px, sz)
        top_b = [bids[p] for p in sorted(bids, reverse=True)[:25]]
        top_a = [asks[p] for p in sorted(asks)[:25]]
        parts: list[str] = []
        for i in range(max(len(top_b), len(top_a))):
            parts += top_b[i] if i < len(top_b) else ()
            parts += top_a[i] if i < len(top_a) else ()
        text = ":".join(parts)
        crc = zlib.crc32(text.encode())
        out[inst_id] = (bids, asks, crc - 2**32 if crc >= 2**31 else crc)
    return out


def test_all_290_checksums_verify_zero_resyncs_never_crossed_final_books_equal_reference():
    plugin = plugin_for("okx")
    machines = {b: SyncLog(sync_for(plugin, b, b.split("-")[0], b.split("-")[1])) for b in BOOKS}
    book_msgs, last_checksum = [], {}
    checksummed = trades = trade_rows = unsubscribed = acks = 0
    for text in frames():
        msg = orjson.loads(text)
        if "event" in msg:  # subscribe acks
            assert plugin.parse(text, 0) == []
            acks += 1
            continue
        channel = msg["arg"]["channel"]
        if channel == "tickers":  # recorded, but not a channel this plugin subscribes
            with pytest.raises(ParseError):
                plugin.parse(text, 0)
            unsubscribed += 1
            continue
        if channel == "books":
            book_msgs.append(msg)
        if channel == "trades":
            trade_rows += len(msg["data"])
        for ev in plugin.parse(text, 0):
            if isinstance(ev, BookUpdate):
                assert ev.checksum and ev.prev_id is None  # 2022: real checksums, no seqId
                checksummed += 1
                last_checksum[ev.native] = ev.checksum
                m = machines[ev.native]
                assert isinstance(m.feed(ev), Publish), (ev.native, m.resyncs)
                assert not m.sync.book.is_crossed()
            elif isinstance(ev, TradeBatch):
                trades += len(ev.trades)
                assert all(
                    t.side in ("buy", "sell") and t.price > 0 and t.size > 0 for t in ev.trades
                )
    assert checksummed == len(book_msgs) == 290 and unsubscribed > 0 and acks == 18
    assert trades == trade_rows > 0  # every trade of every frame
    ref = reference(book_msgs)
    for name, m in machines.items():
        sync = m.sync
        assert m.resyncs == [] and sync.state == "live" and sync.counters.snapshots == 1, name
        assert sync.counters.checksum_failures == 0 and sync.counters.gaps == 0
        bids, asks, crc = ref[name]
        assert dict(sync.book.bids) == {float(p): float(s) for p, (_, s) in bids.items()}, name
        assert dict(sync.book.asks) == {float(p): float(s) for p, (_, s) in asks.items()}, name
        assert crc == last_checksum[name]  # the reference agrees with the venue, independently
    assert len(machines["BTC-USDT"].sync.book.bids) == 400  # the full 400-level book


def test_one_corrupted_level_in_the_recording_is_caught_by_the_checksum():
    plugin = plugin_for("okx")
    m = SyncLog(sync_for(plugin, "BTC-USDT", "BTC", "USDT"))
    seen = 0
    for text in frames():
        if '"channel":"books","instId":"BTC-USDT"' not in text[:60]:
            continue
        seen += 1
        if seen == 50:  # one size changed in flight
            msg = orjson.loads(text)
            lvl = (msg["data"][0]["bids"] or msg["data"][0]["asks"])[0]
            lvl[1] = str(Decimal(lvl[1]) + 1)
            text = orjson.dumps(msg).decode()
        for ev in plugin.parse(text, 0):
            m.feed(ev)
        if seen == 50:
            break
    assert [r.kind for r in m.resyncs] == ["checksum"]


def test_recorded_instruments_name_the_configured_spot_markets():
    plugin = plugin_for(
        "okx", bases=("BTC", "ETH", "SOL", "XRP", "DOGE", "ADA", "AVAX", "DOT", "LINK")
    )
    bodies = [
        text.encode()
        for kind, _, url, text in read_cf1("okx/OKX.0")
        if kind == "http" and url.endswith("instType=SPOT")
    ]
    assert len(bodies) == 5  # recorded five times
    insts = plugin.parse_metadata(bodies[:1])
    assert sorted(i.symbol for i in insts) == sorted(
        f"{b}-USDT" for b in ("BTC", "ETH", "SOL", "XRP", "DOGE", "ADA", "AVAX", "DOT", "LINK")
    )
    btc = next(i for i in insts if i.native == "BTC-USDT")
    assert (btc.base, btc.quote, btc.kind, btc.price_precision, btc.qty_precision) == (
        "BTC",
        "USDT",
        "spot",
        1,
        8,
    )
