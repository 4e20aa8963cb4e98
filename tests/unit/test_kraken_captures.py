"""Real Kraken recordings through the real plugin and sync: every checksum verifies (v2 with
the pair's precision from a real instrument snapshot; v1 from the strings as received), zero
resyncs, never crossed, and the final books equal ones rebuilt independently."""

from __future__ import annotations

import json
from decimal import Decimal

import orjson
import pytest

from common.model import BookUpdate, Instrument
from services.ingest.sync import InstrumentSync, Publish
from services.ingest.venues.kraken import book_checksum
from tests.captures import capture, read_cf1
from tests.venues import SyncLog, plugin_for

pytestmark = pytest.mark.captures

BASES = ("BTC", "ETH", "SOL", "XRP", "DOGE", "ADA", "AVAX", "DOT", "LINK")


def instrument_snapshot() -> bytes:
    return capture("kraken/instrument_snapshot.json").read_bytes()


def reference(messages, depth: int, levels) -> tuple[dict, dict]:
    """Decimal dicts: snapshot resets, every level applied in order, truncated to ``depth``."""
    bids: dict[Decimal, Decimal] = {}
    asks: dict[Decimal, Decimal] = {}
    for is_snapshot, msg_bids, msg_asks in map(levels, messages):
        if is_snapshot:
            bids, asks = {}, {}
        for side, lv in ((bids, msg_bids), (asks, msg_asks)):
            for p, q in lv:
                if Decimal(q) == 0:
                    side.pop(Decimal(p), None)
                else:
                    side[Decimal(p)] = Decimal(q)
        bids = dict(sorted(bids.items(), reverse=True)[:depth])
        asks = dict(sorted(asks.items())[:depth])
    return bids, asks


def as_floats(side: dict[Decimal, Decimal]) -> dict[float, float]:
    return {float(p): float(q) for p, q in side.items()}


def test_v2_orderbook_all_510_checksums_verify_with_the_instrument_precisions():
    plugin = plugin_for("kraken", quote="USD", bases=BASES, depth=10)
    insts = {i.native: i for i in plugin.parse_metadata([instrument_snapshot()])}
    assert sorted(i.symbol for i in insts.values()) == sorted(f"{b}-USD" for b in BASES)
    btc = insts["BTC/USD"]
    assert (btc.price_precision, btc.qty_precision) == (1, 8)
    assert (insts["DOGE/USD"].price_precision, insts["XRP/USD"].price_precision) == (7, 5)
    doc = json.loads(capture("kraken/orderbook-v2.json").read_text())
    messages = [doc["init"], *doc["updates"]]
    m = SyncLog(InstrumentSync(btc, plugin))
    checked = 0
    for msg in messages:
        # the fixture re-serialised Kraken's numbers as floats; orjson reads them the same way
        for ev in plugin.parse(orjson.dumps(msg), 0):
            assert isinstance(ev, BookUpdate) and ev.checksum is not None
            out = m.feed(ev)
            assert isinstance(out, Publish), (checked, out)
            assert not m.sync.book.is_crossed()
            checked += 1
    assert checked == 510 and m.resyncs == []
    assert m.sync.counters.checksum_failures == 0 and m.sync.state == "live"
    book = m.sync.book
    assert len(book.bids) == len(book.asks) == 10
    # an independent rebuild from the fixture's numbers, with Decimal
    ref_bids, ref_asks = reference(
        [m["data"][0] | {"snapshot": m["type"] == "snapshot"} for m in messages],
        10,
        lambda d: (
            d["snapshot"],
            [(repr(lv["price"]), repr(lv["qty"])) for lv in d["bids"]],
            [(repr(lv["price"]), repr(lv["qty"])) for lv in d["asks"]],
        ),
    )
    assert dict(book.bids) == as_floats(ref_bids) and dict(book.asks) == as_floats(ref_asks)
    assert book.best_bid() == (29430.4, 11.93517449) and book.best_ask() == (29430.5, 0.00560461)
    assert doc["updates"][-1]["data"][0]["checksum"] == 2438878880


def v1_levels(msg: list) -> tuple[bool, list, list]:
    """A v1 book frame ``[channelID, {..}, ({..},) channelName, pair]``: levels ``[price,
    volume, timestamp(, "r")]`` as strings, ``as``/``bs`` in snapshots, ``a``/``b`` in updates,
    asks and bids possibly in two dicts."""
    parts = msg[1:-2]
    snapshot = any("as" in d or "bs" in d for d in parts)
    bids = [(lv[0], lv[1]) for d in parts for lv in d.get("bs", d.get("b", []))]
    asks = [(lv[0], lv[1]) for d in parts for lv in d.get("as", d.get("a", []))]
    return snapshot, bids, asks


def v1_update(msg: list) -> BookUpdate:
    """v1 framing is read here (flowbook speaks v2); the checksum is the plugin's."""
    snapshot, bids, asks = v1_levels(msg)
    crc = next((int(d["c"]) for d in msg[1:-2] if "c" in d), None)
    return BookUpdate(msg[-1], snapshot, bids, asks, checksum=crc)


def replay_v1(messages: list, depth: int) -> tuple[dict[str, SyncLog], int]:
    plugin = plugin_for("kraken", quote="USD", depth=depth)
    machines: dict[str, SyncLog] = {}
    checked = 0
    for msg in messages:
        if not (isinstance(msg, list) and msg[-2].startswith("book-")):
            continue
        upd = v1_update(msg)
        m = machines.get(upd.native)
        if m is None:  # v1: the checksum digits are the strings as received, no metadata
            base, quote = upd.native.split("/")
            inst = Instrument(plugin.venue, upd.native, base, quote)
            m = machines[upd.native] = SyncLog(InstrumentSync(inst, plugin))
        out = m.feed(upd)
        assert isinstance(out, Publish), (upd.native, checked, out)
        assert not m.sync.book.is_crossed()
        checked += upd.checksum is not None
    return machines, checked


def test_v1_cryptofeed_book_1000_ten_pairs_all_4269_checksums_verify():
    frames = [
        orjson.loads(text)
        for kind, _, _, text in read_cf1("kraken/KRAKEN.ws.50.0")
        if kind == "recv" and text.startswith("[")
    ]
    machines, checked = replay_v1(frames, 1000)
    assert checked == 4269
    assert len(machines) == 10 and all(m.resyncs == [] for m in machines.values())
    assert all(m.sync.state == "live" for m in machines.values())
    for pair, m in machines.items():
        ref_bids, ref_asks = reference([f for f in frames if f[-1] == pair], 1000, v1_levels)
        assert dict(m.sync.book.bids) == as_floats(ref_bids), pair
        assert dict(m.sync.book.asks) == as_floats(ref_asks), pair
    # the book-1000 snapshot of XMR/USD is deeper than the top 10 the checksum covers
    assert len(machines["XMR/USD"].sync.book.bids) > 100


def test_v1_python_kraken_sdk_book_10_all_979_checksums_verify():
    doc = json.loads(capture("kraken/orderbook-v1.json").read_text())
    frames = [*doc["init"], *doc["updates"]]
    machines, checked = replay_v1(frames, 10)
    (m,) = machines.values()
    assert checked == 979 and m.resyncs == [] and m.sync.state == "live"
    ref_bids, ref_asks = reference(frames_of(frames), 10, v1_levels)
    assert dict(m.sync.book.bids) == as_floats(ref_bids)
    assert dict(m.sync.book.asks) == as_floats(ref_asks)
    # and the plugin's checksum over the final top 10 is the last one Kraken sent
    last_c = next(int(d["c"]) for f in reversed(frames_of(frames)) for d in f[1:-2] if "c" in d)
    bids, asks = m.sync.book.top_raw(10)
    assert book_checksum(asks, bids) == last_c


def frames_of(frames: list) -> list:
    return [f for f in frames if isinstance(f, list)]


def test_asset_pairs_2021_and_instrument_channel_2024_agree_on_names_and_precisions():
    """The REST naming rule (wsname, XBT -> BTC, XDG -> DOGE, X/Z codes) gives the v2 symbols:
    every 2021 pair still listed in 2024 maps onto its v2 symbol, and precisions agree except
    for three pairs whose tick Kraken changed in between."""
    body = next(
        text.encode()
        for kind, _, url, text in read_cf1("kraken/KRAKEN.0")
        if kind == "http" and url.endswith("/AssetPairs")
    )
    rest_plugin = plugin_for("kraken", quote="USD", bases=BASES)
    rest = {i.native: i for i in rest_plugin.parse_metadata([body])}
    # 2021: no SOL or AVAX market on Kraken yet; XXBT, XETH, XXRP, XXDG kept their legacy codes
    assert sorted(rest) == ["ADA/USD", "BTC/USD", "DOGE/USD", "DOT/USD", "ETH/USD", "LINK/USD",
                            "XRP/USD"]  # fmt: skip
    ws_plugin = plugin_for("kraken", quote="USD", bases=BASES)
    v2 = {i.native: i for i in ws_plugin.parse_metadata([instrument_snapshot()])}
    for native, inst in rest.items():
        assert (inst.symbol, inst.price_precision, inst.qty_precision) == (
            v2[native].symbol,
            v2[native].price_precision,
            v2[native].qty_precision,
        )
    # every pair, every quote, configured with the 2024 instrument channel's own v2 names
    pairs_v2 = orjson.loads(instrument_snapshot())["data"]["pairs"]
    bases = tuple({p["base"] for p in pairs_v2})
    rest_all, v2_all = {}, {}
    for quote in {p["quote"] for p in pairs_v2}:
        plugin = plugin_for("kraken", quote=quote, bases=bases)
        rest_all.update((i.native, i) for i in plugin.parse_metadata([body]))
        v2_all.update((i.native, i) for i in plugin.parse_metadata([instrument_snapshot()]))
    common = set(rest_all) & set(v2_all)
    changed = {
        n
        for n in common
        if (rest_all[n].price_precision, rest_all[n].qty_precision)
        != (v2_all[n].price_precision, v2_all[n].qty_precision)
    }
    assert len(common) == 272 and changed == {"DASH/BTC", "FLOW/ETH", "USDT/USD"}
    assert len(rest_all) == 293  # 304 pairs less the 11 dark-pool ".d" ones; 21 since delisted
