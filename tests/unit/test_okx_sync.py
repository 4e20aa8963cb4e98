"""The OKX v5 ``books`` rule on hand-made frames through the real parser and sync machine
(exchanges.md 5.2): ``prevSeqId`` chain per instId, heartbeats, sequence resets, resubscribe on a
mismatch, the legacy CRC32 checksum when non-zero."""

from __future__ import annotations

import zlib

import orjson
import pytest

from common.model import Reconnect, TradeBatch
from services.ingest.sync import Publish, Resync
from services.ingest.venue import ParseError
from services.ingest.venues.okx import checksum
from tests.venues import SyncLog, plugin_for, sync_for

BIDS = [["100.0", "1.5", "0", "2"], ["99.5", "2", "0", "1"]]
ASKS = [["100.5", "0.25", "0", "1"], ["101", "3", "0", "4"]]


def plugin():
    return plugin_for("okx")


def reference_checksum(bids, asks) -> int:
    """The docs' example, written independently of the plugin: interleave bid:ask strings."""
    parts = []
    for i in range(25):
        if i < len(bids):
            parts.append(f"{bids[i][0]}:{bids[i][1]}")
        if i < len(asks):
            parts.append(f"{asks[i][0]}:{asks[i][1]}")
    value = zlib.crc32(":".join(parts).encode())
    return value if value < 2**31 else value - 2**32


def books(action, bids=(), asks=(), seq=None, prev=None, check=0, inst="BTC-USDT") -> bytes:
    data = {"asks": [list(a) for a in asks], "bids": [list(b) for b in bids], "ts": "1652459225393"}
    data["checksum"] = check
    if seq is not None:
        data["prevSeqId"], data["seqId"] = prev, seq
    return orjson.dumps(
        {"arg": {"channel": "books", "instId": inst}, "action": action, "data": [data]}
    )


class Machine(SyncLog):
    def __init__(self) -> None:
        self.plugin = plugin()
        super().__init__(sync_for(self.plugin, "BTC-USDT", "BTC", "USDT"))

    def send(self, frame: bytes):
        (upd,) = self.plugin.parse(frame, 0)
        return self.feed(upd)

    def snapshot(self, seq=10, check=0):
        return self.send(books("snapshot", BIDS, ASKS, seq=seq, prev=-1, check=check))

    def update(self, seq, prev, bids=(), asks=(), check=0):
        return self.send(books("update", bids, asks, seq=seq, prev=prev, check=check))


def test_snapshot_replaces_the_book_and_keeps_the_exchange_strings():
    m = Machine()
    assert isinstance(m.snapshot(), Publish)
    book = m.sync.book
    assert book.best_bid() == (100.0, 1.5) and book.best_ask() == (100.5, 0.25)
    assert book.top_raw(2) == ([("100.0", "1.5"), ("99.5", "2")], [("100.5", "0.25"), ("101", "3")])
    assert m.sync.last_id == 10 and m.sync.state == "live"
    assert isinstance(m.update(15, 10, bids=[["99.5", "0", "0", "0"]]), Publish)
    assert isinstance(m.snapshot(seq=40), Publish)  # a new snapshot discards the old book
    assert len(m.sync.book.bids) == 2 and m.sync.last_id == 40


def test_docs_chain_with_heartbeat_and_sequence_reset_is_accepted():
    """-1 -> 10, 10 -> 15, 15 -> 15 (no change), 15 -> 3 (reset), 3 -> 5 (exchanges.md 5.2)."""
    m = Machine()
    m.snapshot(seq=10)
    assert isinstance(m.update(15, 10, bids=[["100.0", "0", "0", "0"]]), Publish)
    heartbeat = m.update(15, 15)
    assert isinstance(heartbeat, Publish) and heartbeat.bids == heartbeat.asks == []
    assert isinstance(m.update(3, 15, asks=[["100.5", "1", "0", "1"]]), Publish)
    assert isinstance(m.update(5, 3, bids=[["99.8", "4", "0", "1"]]), Publish)
    assert m.resyncs == [] and m.sync.last_id == 5
    assert m.sync.book.best_bid() == (99.8, 4.0) and m.sync.book.best_ask() == (100.5, 1.0)


def test_prevseqid_mismatch_is_a_gap_and_the_fix_is_a_books_resubscribe():
    m = Machine()
    m.snapshot(seq=10)
    out = m.update(20, 17)  # 10 -> 17 missing
    assert isinstance(out, Resync) and out.kind == "gap"
    assert m.sync.state == "syncing" and len(m.sync.book) == 0
    assert m.update(21, 20) is None  # ignored until the new snapshot
    unsub, sub = (orjson.loads(x) for x in m.plugin.resubscribe(m.sync.inst))
    assert unsub == {"op": "unsubscribe", "args": [{"channel": "books", "instId": "BTC-USDT"}]}
    assert sub == {"op": "subscribe", "args": [{"channel": "books", "instId": "BTC-USDT"}]}
    assert isinstance(m.snapshot(seq=30), Publish) and m.sync.state == "live"


def test_duplicate_is_skipped_out_of_order_is_a_gap():
    m = Machine()
    m.snapshot(seq=10)
    m.update(15, 10, bids=[["99.9", "1", "0", "1"]])
    assert m.update(15, 10, bids=[["99.9", "1", "0", "1"]]) is None  # the same message again
    assert m.sync.counters.skipped == 1 and m.sync.state == "live"
    out = m.update(25, 20)  # arrived before 15 -> 20
    assert isinstance(out, Resync) and out.kind == "gap" and m.sync.counters.gaps == 1


def test_checksum_is_verified_when_non_zero_and_a_mismatch_resyncs():
    m = Machine()
    good = reference_checksum(BIDS, ASKS)
    assert (
        good != 0 and checksum([tuple(b[:2]) for b in BIDS], [tuple(a[:2]) for a in ASKS]) == good
    )
    assert isinstance(m.snapshot(check=good), Publish)
    after = [BIDS[0], ["99.5", "7", "0", "3"]]
    ok = reference_checksum(after, ASKS)
    assert isinstance(m.update(11, 10, bids=[["99.5", "7", "0", "3"]], check=ok), Publish)
    out = m.update(12, 11, asks=[["101", "2", "0", "1"]], check=ok)  # checksum of the old book
    assert isinstance(out, Resync) and out.kind == "checksum"
    assert m.sync.counters.checksum_failures == 1 and m.sync.state == "syncing"


def test_checksum_uses_the_original_strings_not_the_numbers():
    m = Machine()
    m.snapshot()
    m.update(11, 10, bids=[["99.50", "2.0", "0", "1"]])  # same level, other spelling
    bids = [BIDS[0], ["99.50", "2.0", "0", "1"]]
    assert isinstance(m.update(12, 11, check=reference_checksum(bids, ASKS)), Publish)
    m2 = Machine()
    m2.snapshot()
    m2.update(11, 10, bids=[["99.50", "2.0", "0", "1"]])
    assert isinstance(m2.update(12, 11, check=reference_checksum(BIDS, ASKS)), Resync)


def test_zero_checksum_means_none_and_a_crossing_update_resyncs():
    m = Machine()
    m.snapshot(check=0)
    assert isinstance(m.update(11, 10, check=0), Publish)
    out = m.update(12, 11, bids=[["100.5", "1", "0", "1"]])
    assert isinstance(out, Resync) and out.kind == "crossed"


def test_legacy_frames_without_seqid_rely_on_the_checksum_alone():
    p = plugin()
    (upd,) = p.parse(books("update", BIDS, ASKS, check=5), 0)
    assert upd.prev_id is None and upd.last_id is None and upd.checksum == 5
    m = Machine()
    m.send(books("snapshot", BIDS, ASKS, check=reference_checksum(BIDS, ASKS)))
    assert m.sync.state == "live"
    assert isinstance(m.send(books("update", check=reference_checksum(BIDS, ASKS))), Publish)


def test_trades_are_all_emitted_in_order_with_the_taker_side():
    frame = {
        "arg": {"channel": "trades", "instId": "BTC-USDT"},
        "data": [
            {"instId": "BTC-USDT", "tradeId": "338476307", "px": "30236", "sz": "0.0002",
             "side": "buy", "ts": "1652459224818"},
            {"instId": "BTC-USDT", "tradeId": "338476308", "px": "30235.9", "sz": "0.01",
             "side": "sell", "ts": "1652459224819", "count": "3"},
        ],
    }  # fmt: skip
    (batch,) = plugin().parse(orjson.dumps(frame), 0)
    assert isinstance(batch, TradeBatch)
    got = [(t.native, t.trade_id, t.price, t.size, t.side, t.ts_exch) for t in batch.trades]
    assert got == [
        ("BTC-USDT", "338476307", 30236.0, 0.0002, "buy", 1652459224818 * 1_000_000),
        ("BTC-USDT", "338476308", 30235.9, 0.01, "sell", 1652459224819 * 1_000_000),
    ]


def test_acks_pong_and_notices_are_control_not_data():
    p = plugin()
    assert p.parse("pong", 0) == []
    ack = {"event": "subscribe", "arg": {"channel": "books", "instId": "BTC-USDT"}, "connId": "a4"}
    assert p.parse(orjson.dumps(ack), 0) == []
    assert p.parse(orjson.dumps({**ack, "event": "unsubscribe"}), 0) == []
    notice = {"event": "notice", "code": "64008", "msg": "The connection will soon be closed"}
    (ev,) = p.parse(orjson.dumps(notice), 0)
    assert isinstance(ev, Reconnect)


@pytest.mark.parametrize(
    "frame",
    [
        b'{"arg":{"channel":"books","instId":"BTC-USDT"},"action":"snapshot","data":[{"asks":[["1"',
        b'{"event":"error","code":"60018","msg":"Wrong URL or channel:books,instId:X doesn\'t exist."}',
        b'{"arg":{"channel":"tickers","instId":"BTC-USDT"},"data":[]}',
        b'{"arg":{"channel":"books","instId":"BTC-USDT"},"action":"partial","data":[]}',
        b'{"arg":{"channel":"trades","instId":"BTC-USDT"},"data":[{"instId":"BTC-USDT",'
        b'"tradeId":"1","px":"1","sz":"1","side":"maker","ts":"1"}]}',
        b"[1,2,3]",
    ],
)
def test_malformed_or_unexpected_frames_raise(frame):
    with pytest.raises((ParseError, ValueError, KeyError, TypeError, AttributeError)):
        plugin().parse(frame, 0)


def test_instruments_name_the_configured_spot_markets_from_metadata():
    def inst(inst_id, base, quote, state="live", tick="0.1", lot="0.00000001"):
        return {"instId": inst_id, "instType": "SPOT", "baseCcy": base, "quoteCcy": quote,
                "state": state, "tickSz": tick, "lotSz": lot}  # fmt: skip

    body = {
        "code": "0",
        "msg": "",
        "data": [
            inst("BTC-USDT", "BTC", "USDT"),
            inst("ETH-USDC", "ETH", "USDC"),
            inst("DOGE-USDT", "DOGE", "USDT", tick="0.00001", lot="1"),
            inst("SOL-USDT", "SOL", "USDT", state="suspend"),
        ],
    }
    p = plugin_for("okx", bases=("BTC", "ETH", "DOGE", "SOL"))
    got = [
        (i.native, i.symbol, i.price_precision, i.qty_precision)
        for i in p.parse_metadata([orjson.dumps(body)])
    ]
    assert got == [("BTC-USDT", "BTC-USDT", 1, 8), ("DOGE-USDT", "DOGE-USDT", 5, 0)]
    (req,) = p.metadata_requests()
    assert req.url.endswith("/api/v5/public/instruments") and req.params == {"instType": "SPOT"}
    with pytest.raises(ValueError):
        p.parse_metadata([b'{"code":"50011","msg":"Too Many Requests","data":[]}'])


def test_one_connection_subscribes_books_and_trades_of_each_instrument():
    p = plugin()
    insts = [sync_for(p, f"{b}-USDT", b, "USDT").inst for b in ("BTC", "ETH")]
    (spec,) = p.connections(insts)
    assert spec.url == "ws://127.0.0.1:1/ws" and spec.instruments == insts
    (sub,) = spec.subscribe
    assert orjson.loads(sub) == {
        "op": "subscribe",
        "args": [
            {"channel": "books", "instId": "BTC-USDT"},
            {"channel": "trades", "instId": "BTC-USDT"},
            {"channel": "books", "instId": "ETH-USDT"},
            {"channel": "trades", "instId": "ETH-USDT"},
        ],
    }
    assert p.ping_message == "ping" and p.ping_interval_s == 15.0 and p.keep_raw_levels
    assert plugin_for("okx", watchdog_s=4.0).ping_interval_s == 2.0


@pytest.mark.parametrize(("n_bids", "n_asks"), [(3, 1), (1, 3), (2, 0), (0, 2), (25, 25)])
def test_checksum_interleaves_sides_of_unequal_length_like_the_docs(n_bids, n_asks):
    bids = [(f"{100 - i * 0.5:g}", f"{i + 1}") for i in range(n_bids)]
    asks = [(f"{100.5 + i * 0.5:g}", f"0.{i + 1}") for i in range(n_asks)]
    assert checksum(bids, asks) == reference_checksum(bids, asks)
