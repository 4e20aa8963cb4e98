"""The gateway as a real process on loopback, the test acting as the book builder with a real
``Publisher``: WebSocket subscriptions (snapshot then updates, depth cut and conflation, bbo,
trades), protocol errors, limits, HTTP routes, /metrics, resync at start, clean exit."""

from __future__ import annotations

import http.client
import itertools
import signal
import time

import pytest
from prometheus_client.parser import text_string_to_metric_families
from websockets.exceptions import ConnectionClosed, InvalidStatus

from tests.gateway_support import (
    GatewayEnv,
    bbo_msg,
    clients,
    consolidated_msg,
    depth_msg,
    http_get,
    trade_msg,
)
from tests.procs import processes, wait_until

pytestmark = pytest.mark.integration

EXTRA = "max_subscriptions = 8\nmax_messages_per_s = 1000\n"
TS_KEYS = ("ts_exch", "ts_recv", "ts_ingest_pub")


def make_env(tmp_path, start, extra: str = EXTRA, book_first: bool = True) -> GatewayEnv:
    env = GatewayEnv(tmp_path, start, extra)
    if book_first:
        book = env.start_book()
        book.set_status("binance")
        book.set_status("kraken", "syncing")
        env.start_gateway()
    return env


@pytest.fixture
def env(tmp_path):
    with processes(tmp_path) as start:
        env = make_env(tmp_path, start)
        try:
            yield env
        finally:
            env.close()


def is_(kind: str, **fields):
    return lambda m: m.get("type") == kind and all(m.get(k) == v for k, v in fields.items())


def same_source(got: dict, sent: dict, depth: int | None = None, resent: bool = False) -> None:
    """A forwarded message carries the published data and timestamps, plus ts_gw (``resent``:
    the book builder published it again, on a resync, so its ``ts_pub`` is later)."""
    for key in TS_KEYS:
        assert got[key] == sent[key], key
    if resent:
        assert got["ts_book_pub"] >= sent["ts_pub"]
    else:
        assert got["ts_book_pub"] == sent["ts_pub"]
    assert got["ts_gw"] >= sent["ts_pub"]
    assert got["venue"] == sent["venue"] and got["symbol"] == sent["symbol"]
    if depth is not None:
        assert got["bids"] == sent["bids"][:depth]
        assert got["asks"] == sent["asks"][:depth]
    assert "seq" not in got and "epoch" not in got and "ts_pub" not in got


# -- depth ----------------------------------------------------------------------------------------
def test_depth_snapshot_then_every_update_cut_to_depth(env):
    book = env.book
    first = book.publish("depth.binance.BTC-USDT", depth_msg("binance", "BTC-USDT", 100.0))
    wait_until(lambda: env.get("/api/book/binance/BTC-USDT")[0] == 200, 15, what="depth held")
    with clients(env) as (c,):
        reply = c.request(
            {
                "op": "subscribe",
                "channel": "depth",
                "venue": "binance",
                "symbol": "BTC-USDT",
                "depth": 5,
                "interval_ms": 0,
                "id": "d1",
            }
        )
        assert reply["type"] == "subscribed", reply
        assert reply["depth"] == 5 and reply["interval_ms"] == 0 and reply["id"] == "d1"
        snap = c.expect(is_("snapshot", channel="depth"), what="snapshot")
        assert snap["id"] == "d1" and snap["state"] == "live"
        # the gateway follows a depth topic on demand (here since the HTTP request), so it got
        # this one as the answer to its resync request
        same_source(snap, first, depth=5, resent=True)
        sent = [
            book.publish("depth.binance.BTC-USDT", depth_msg("binance", "BTC-USDT", 100.0 + i))
            for i in range(1, 6)
        ]
        for msg in sent:  # interval 0: every update, in order
            got = c.expect(is_("update", channel="depth"), what="depth update")
            assert got["id"] == "d1"
            same_source(got, msg, depth=5)
            assert len(got["bids"]) == 5 and len(got["asks"]) == 5


def test_depth_conflated_to_interval_delivers_latest(env):
    book = env.book
    book.publish("depth.all.BTC-USD", consolidated_msg("BTC-USD", 100.0))
    with clients(env) as (c,):
        reply = c.request(
            {"op": "subscribe", "channel": "depth", "venue": "all", "symbol": "BTC-USD"}
        )
        assert reply["type"] == "subscribed" and reply["interval_ms"] == 100
        assert reply["depth"] == 20  # the default
        snap = c.expect(is_("snapshot", channel="depth", venue="all"))
        assert len(snap["bids"]) == 20 and snap["bids"][0][2] == {"binance": 1.0, "kraken": 2.0}
        assert snap["venues"] == ["binance", "kraken"] and snap["conversion"] == {"USDT": 1.0}
        sent = [
            book.publish("depth.all.BTC-USD", consolidated_msg("BTC-USD", 100.0 + i))
            for i in range(1, 41)
        ]
        last = sent[-1]
        got = c.expect(
            lambda m: m["type"] == "update" and m["ts_book_pub"] == last["ts_pub"],
            what="the latest consolidated depth",
        )
        same_source(got, last, depth=20)
        updates = [m for m in c.received if m["type"] == "update"]
        assert len(updates) < len(sent), "40 updates in a burst must be conflated"
        rx = [m["ts_gw"] for m in updates]
        # at most one per interval (100 ms; the margin is for a loaded machine)
        assert all(b - a >= 60_000_000 for a, b in itertools.pairwise(rx)), rx


# -- bbo ------------------------------------------------------------------------------------------
def test_bbo_every_change_for_several_venues(env):
    book = env.book
    book.publish("bbo.binance.BTC-USDT", bbo_msg("binance", "BTC-USDT", 99.0, 99.1))
    wait_until(lambda: env.metric("flowbook_gateway_bus_messages_total", {"kind": "bbo"}), 15)
    with clients(env) as (c,):
        reply = c.request(
            {
                "op": "subscribe",
                "channel": "bbo",
                "venue": ["binance", "kraken"],
                "symbol": "BTC-USDT",
            }
        )
        assert reply["type"] == "error" and reply["code"] == "unknown_symbol", reply
        reply = c.request(
            {"op": "subscribe", "channel": "bbo", "venue": "binance", "symbol": "btc-usdt"}
        )
        assert reply["type"] == "subscribed" and reply["symbol"] == "BTC-USDT"
        assert reply["interval_ms"] == 0
        snap = c.expect(is_("snapshot", channel="bbo"))
        assert snap["bid"] == [99.0, 1.5] and snap["ask"] == [99.1, 2.5]
        reply = c.request(
            {"op": "subscribe", "channel": "bbo", "venue": "kraken", "symbol": "BTC-USD"}
        )
        assert reply["type"] == "subscribed"
        empty = c.expect(is_("snapshot", channel="bbo", venue="kraken"))
        assert empty["state"] == "unknown" and empty["bid"] is None
        sent = []
        for i in range(30):
            sent.append(
                book.publish(
                    "bbo.binance.BTC-USDT", bbo_msg("binance", "BTC-USDT", 99 + i, 100 + i)
                )
            )
            if i % 10 == 0:
                sent.append(
                    book.publish("bbo.kraken.BTC-USD", bbo_msg("kraken", "BTC-USD", 98 + i, 99 + i))
                )
        got = [c.expect(is_("update", channel="bbo")) for _ in sent]
        # every change, in order per topic (not across topics)
        for venue in ("binance", "kraken"):
            mine = [m for m in got if m["venue"] == venue]
            theirs = [m for m in sent if m["venue"] == venue]
            assert len(mine) == len(theirs)
            for g, msg in zip(mine, theirs, strict=True):
                same_source(g, msg)
                assert g["bid"] == msg["bid"] and g["ask"] == msg["ask"]
                assert g["spread_bps"] == msg["spread_bps"]


# -- trades ---------------------------------------------------------------------------------------
def test_trades_for_all_venues_and_for_a_group(env):
    book = env.book
    book.publish("trade.binance.BTC-USDT", trade_msg("binance", "BTC-USDT", 1, n=3))
    wait_until(lambda: env.metric("flowbook_gateway_bus_messages_total", {"kind": "trade"}), 15)
    with clients(env, 3) as (everything, group, one):
        assert (
            everything.request({"op": "subscribe", "channel": "trades", "venue": "all"})["type"]
            == "subscribed"
        )
        snap = everything.expect(is_("snapshot", channel="trades"))
        assert [t["id"] for t in snap["trades"]] == [1, 2, 3]
        assert snap["trades"][0]["venue"] == "binance" and snap["trades"][0]["symbol"] == "BTC-USDT"
        r = group.request(
            {"op": "subscribe", "channel": "trades", "venue": "all", "symbol": "BTC-USD", "id": 7}
        )
        assert r["type"] == "subscribed" and r["id"] == 7
        assert len(group.expect(is_("snapshot", channel="trades"))["trades"]) == 3
        r = one.request({"op": "subscribe", "channel": "trades", "venue": ["kraken"]})
        assert r["type"] == "subscribed" and r["venue"] == ["kraken"]
        assert one.expect(is_("snapshot", channel="trades"))["trades"] == []

        sent = [
            book.publish("trade.binance.BTC-USDT", trade_msg("binance", "BTC-USDT", 10, n=2)),
            book.publish("trade.kraken.BTC-USD", trade_msg("kraken", "BTC-USD", 20, n=1)),
            book.publish("trade.kraken.ETH-USD", trade_msg("kraken", "ETH-USD", 30, n=4)),
        ]

        def trades_of(client, count):
            ids = []
            while len(ids) < count:
                m = client.expect(is_("update", channel="trades"))
                ids += [(m["venue"], t["id"]) for t in m["trades"]]
                for key in ("ts_recv", "ts_ingest_pub", "ts_book_pub", "ts_gw"):
                    assert isinstance(m[key], int)
            return ids

        assert trades_of(everything, 7) == [
            ("binance", 10), ("binance", 11), ("kraken", 20),
            ("kraken", 30), ("kraken", 31), ("kraken", 32), ("kraken", 33),
        ]  # fmt: skip
        assert trades_of(group, 3) == [("binance", 10), ("binance", 11), ("kraken", 20)]
        assert trades_of(one, 5) == [("kraken", 20), *[("kraken", i) for i in range(30, 34)]]
        # nothing else: the group subscriber did not get ETH
        assert group.ping_ok()
        assert not [m for m in group.received if m["type"] == "update" and m["symbol"] == "ETH-USD"]
        msg = next(m for m in everything.received if m.get("symbol") == "ETH-USD")
        assert msg["trades"][0]["price"] == sent[2]["trades"][0]["price"]
        assert msg["trades"][0]["side"] == "sell" and msg["ts_book_pub"] == sent[2]["ts_pub"]


# -- stats and status -----------------------------------------------------------------------------
def test_stats_and_status_channels(env):
    book = env.book
    with clients(env) as (c,):
        assert c.request({"op": "subscribe", "channel": "status"})["type"] == "subscribed"
        snap = c.expect(is_("snapshot", channel="status"))
        assert snap["book"] == "live"
        assert snap["venues"]["binance"]["state"] == "live"
        assert snap["venues"]["kraken"]["state"] == "syncing"
        assert snap["venues"]["binance"]["instruments"]["BTC-USDT-PERP"] == "live"
        assert snap["quote_groups"] == [list(g) for g in env.cfg.book.quote_groups]
        c.expect(is_("update", channel="status", venue="kraken", state="syncing"))
        book.set_status("kraken", "live")
        c.expect(is_("update", channel="status", venue="kraken", state="live"))

        assert c.request({"op": "subscribe", "channel": "depth", "venue": "binance", "symbol": "ETH-USDT", "interval_ms": 0})["type"] == "subscribed"  # fmt: skip
        book.publish("depth.binance.ETH-USDT", depth_msg("binance", "ETH-USDT"))
        # a topic followed only from this subscription on: its first message is the snapshot
        c.expect(lambda m: m.get("channel") == "depth" and m["type"] == "snapshot")
        r = c.request({"op": "subscribe", "channel": "stats", "venue": "binance"})
        assert r["type"] == "subscribed"
        snap = c.expect(is_("snapshot", channel="stats"))
        assert list(snap["venues"]) == ["binance"]
        upd = c.expect(is_("update", channel="stats"), timeout=10)
        v = upd["venues"]["binance"]
        assert v["state"] == "live" and v["gaps"] == 3 and v["latency_us"]["ingest"]["p99"] == 800.0
        assert upd["book"]["state"] == "live" and upd["book"]["latency_us"]["book"]["p50"] == 120.0
        gw = upd["gateway"]
        assert gw["clients"] == 1 and gw["messages_sent"] > 0
        assert gw["latency_us"]["book_to_send"]["count"] >= 1
        assert gw["process"]["rss_bytes"] > 0


# -- bad input ------------------------------------------------------------------------------------
BAD = [
    ("{not json", "bad_json"),
    (b"\xff\xfe", "bad_json"),
    ("[1, 2]", "bad_request"),
    ({"channel": "depth"}, "bad_request"),
    ({"op": "fly"}, "unknown_op"),
    ({"op": "subscribe"}, "bad_request"),
    ({"op": "subscribe", "channel": "candles", "venue": "binance"}, "unknown_channel"),
    ({"op": "subscribe", "channel": "depth", "venue": "nasdaq", "symbol": "BTC-USDT"}, "unknown_venue"),
    ({"op": "subscribe", "channel": "depth", "venue": "binance", "symbol": "FOO-BAR"}, "unknown_symbol"),
    ({"op": "subscribe", "channel": "depth", "venue": "all", "symbol": "BTC-USDT"}, "unknown_symbol"),
    ({"op": "subscribe", "channel": "trades", "venue": "all", "symbol": "NOPE-USD"}, "unknown_symbol"),
    ({"op": "subscribe", "channel": "depth", "venue": "binance"}, "bad_request"),
    ({"op": "subscribe", "channel": "depth", "venue": "binance", "symbol": "BTC-USDT", "depth": 0}, "bad_request"),
    ({"op": "subscribe", "channel": "depth", "venue": "binance", "symbol": "BTC-USDT", "depth": 51}, "bad_request"),
    ({"op": "subscribe", "channel": "depth", "venue": "binance", "symbol": "BTC-USDT", "interval_ms": -1}, "bad_request"),
    ({"op": "subscribe", "channel": "bbo", "venue": [], "symbol": "BTC-USDT"}, "bad_request"),
    ({"op": "subscribe", "channel": "bbo", "venue": 5, "symbol": "BTC-USDT"}, "bad_request"),
    ({"op": "subscribe", "channel": "bbo", "venue": "binance", "symbol": "BTC USDT"}, "bad_request"),
    ({"op": "subscribe", "channel": "bbo", "venue": "binance", "symbol": "BTC-USDT", "id": {"a": 1}}, "bad_request"),
    ({"op": "unsubscribe", "id": "never"}, "not_subscribed"),
    ({"op": "unsubscribe", "channel": "bbo", "venue": "binance", "symbol": "BTC-USDT"}, "not_subscribed"),
    ({"op": "unsubscribe"}, "bad_request"),
]  # fmt: skip


def test_bad_input_gets_error_codes_and_connection_stays_open(env):
    with clients(env, 2) as (c, other):
        assert other.request({"op": "subscribe", "channel": "bbo", "venue": "binance", "symbol": "BTC-USDT"})["type"] == "subscribed"  # fmt: skip
        for msg, code in BAD:
            reply = c.request(msg)
            assert reply["type"] == "error" and reply["code"] == code, (msg, reply)
            assert isinstance(reply["message"], str) and reply["message"]
            if isinstance(msg, dict):
                assert reply["request"] == msg
        assert c.ping_ok()
        # oversize request (the limit is 4096 bytes by default)
        big = {
            "op": "subscribe",
            "channel": "bbo",
            "venue": "binance",
            "symbol": "BTC-USDT",
            "pad": "x" * 5000,
        }
        reply = c.request(big)
        assert reply["code"] == "message_too_large" and "request" not in reply
        assert c.ping_ok()
        # too many subscriptions (8 in this config); an unsubscribe frees a place
        for i in range(8):
            r = c.request({"op": "subscribe", "channel": "trades", "venue": "all", "id": i})
            assert r["type"] == "subscribed", r
        too_many = {"op": "subscribe", "channel": "trades", "venue": "all", "id": 99}
        r = c.request(too_many)
        assert r["code"] == "too_many_subscriptions" and r["id"] == 99
        assert r["request"] == too_many
        r = c.request({"op": "subscribe", "channel": "trades", "venue": "all", "id": 3})
        assert r["type"] == "subscribed", "re-subscribing an id replaces it"
        assert c.request({"op": "unsubscribe", "id": 0})["type"] == "unsubscribed"
        assert c.request({"op": "subscribe", "channel": "trades", "venue": "all", "id": 99})["type"] == "subscribed"  # fmt: skip
        # the other client saw none of it and still gets its data
        env.book.publish("bbo.binance.BTC-USDT", bbo_msg("binance", "BTC-USDT", 1.0, 2.0))
        got = other.expect(is_("update", channel="bbo"))
        assert got["bid"][0] == 1.0
        assert not [m for m in other.received if m["type"] == "error"]
    assert env.proc.alive()


def test_rate_limit(tmp_path):
    with processes(tmp_path) as start:
        env = make_env(tmp_path, start, "max_messages_per_s = 10\n")
        try:
            with clients(env) as (c,):
                sent_at = time.time_ns()
                for i in range(60):
                    c.send({"op": "ping", "id": i})
                replies = [c.expect(lambda m: m["type"] in ("pong", "error")) for _ in range(60)]
                done_at = time.time_ns()
                limited = [r for r in replies if r["type"] == "error"]
                assert limited and all(r["code"] == "rate_limited" for r in limited)
                assert limited[0]["request"]["op"] == "ping" and "id" in limited[0]
                # a burst of 10, plus 10/s refilled over the time the gateway took to read them,
                # which lies within the time from our first send to our last reply
                window_s = (done_at - sent_at) / 1e9
                assert 60 - len(limited) <= 10 + 10 * window_s + 1
                wait_until(c.ping_ok, 15, what="a ping answered once the bucket refilled")
                assert env.proc.alive()
            with clients(env, 2) as (flood, other):
                # ten times the limit within a second: closed with 1008 (policy), others served
                with pytest.raises(ConnectionClosed) as info:
                    for _ in range(1000):
                        flood.send(b'{"op":"ping"}')
                    for _ in range(2000):
                        flood.recv(10)
                assert info.value.rcvd is not None and info.value.rcvd.code == 1008
                assert "flooding" in info.value.rcvd.reason
                assert other.ping_ok()
        finally:
            env.close()


def test_max_clients(tmp_path):
    with processes(tmp_path) as start:
        env = make_env(tmp_path, start, "max_clients = 2\n")
        try:
            with clients(env, 2) as (a, b):
                with pytest.raises(InvalidStatus) as info:
                    env.client()
                assert info.value.response.status_code == 503
                assert a.ping_ok() and b.ping_ok()
            wait_until(lambda: env.metric("flowbook_gateway_clients") == 0, 15)
            with clients(env) as (c,):
                assert c.ping_ok()
        finally:
            env.close()


# -- HTTP -----------------------------------------------------------------------------------------
def test_http_routes(env):
    book = env.book
    sent = book.publish("depth.binance.BTC-USDT", depth_msg("binance", "BTC-USDT", 50.0))
    book.publish("depth.all.BTC-USD", consolidated_msg("BTC-USD"))
    wait_until(lambda: env.get("/api/book/all/BTC-USD")[0] == 200, 15, what="book held")

    status, health = env.get_json("/healthz")
    assert status == 200 and health["ok"] is True and health["book"] == "live"
    assert health["venues"] == {"binance": "live", "kraken": "syncing"}

    status, body = env.get_json("/api/book/binance/BTC-USDT?depth=3")
    assert status == 200 and body["bids"] == sent["bids"][:3] and body["asks"] == sent["asks"][:3]
    # the gateway's start-up resync may have republished it: same source, a later ts_pub
    assert body["ts_book_pub"] >= sent["ts_pub"] and body["ts_recv"] == sent["ts_recv"]
    status, body = env.get_json("/api/book/binance/btc-usdt")
    assert status == 200 and len(body["bids"]) == 20
    status, body = env.get_json("/api/book/all/BTC-USD?depth=2")
    assert status == 200 and body["bids"][0][2] == {"binance": 1.0, "kraken": 2.0}
    for path, code, err in [
        ("/api/book/nasdaq/BTC-USDT", 404, "unknown_venue"),
        ("/api/book/binance/NOPE-USDT", 404, "unknown_symbol"),
        ("/api/book/kraken/ETH-USD", 404, "no_data"),
        ("/api/book/binance/BTC-USDT?depth=0", 400, "bad_request"),
        ("/api/book/binance/BTC-USDT?depth=x", 400, "bad_request"),
        ("/api/book/binance/BTC-USDT?depth=", 400, "bad_request"),
        ("/api/book/binance/BTC-USDT?depth=1_0", 400, "bad_request"),
        ("/api/book/binance/BTC-USDT?depth=%D9%A3", 400, "bad_request"),  # an Arabic-Indic 3
        ("/" + "a" * 300, 404, "not_found"),  # a file name too long for the OS
        ("/assets/" + "b" * 256 + ".js", 404, "not_found"),
        ("/api/nothing", 404, "not_found"),
        ("/no/such/page", 404, "not_found"),
        ("/ws", 426, "upgrade_required"),
    ]:
        status, body = env.get_json(path)
        assert (status, body["code"]) == (code, err), path

    status, body = env.get_json("/api/status")
    assert status == 200 and body["book"]["state"] == "live"
    b = body["venues"]["binance"]
    assert b["state"] == "live" and b["msg_rate"] == 42.0 and b["gaps"] == 3
    assert (b["resyncs"], b["reconnects"], b["parse_errors"], b["checksum_failures"]) == (
        4,
        1,
        2,
        5,
    )
    assert (b["budget_reconnects"], b["metadata_reloads"]) == (7, 8)
    assert b["last_msg_age_s"] == 0.05
    assert body["venues"]["kraken"]["state"] == "syncing"

    status, body = env.get_json("/api/instruments")
    assert status == 200
    assert body["venues"]["binance"]["symbols"]["BTC-USDT"] == "live"
    assert body["venues"]["binance"]["symbols"]["BTC-USDT-PERP"] == "live"
    assert body["venues"]["kraken"]["symbols"]["ETH-USD"] == "syncing"
    grp = body["groups"]["BTC-USD"]
    assert {"venue": "kraken", "symbol": "BTC-USD"} in grp["members"]
    assert {"venue": "binance", "symbol": "BTC-USDT"} in grp["members"]
    assert grp["venues"] == ["binance", "kraken"]
    assert "BTC-USD-PERP" in body["groups"]

    status, headers, _ = env.get("/api/status", {"Origin": "http://example.org"})
    assert headers.get("Access-Control-Allow-Origin") == "*"
    status, headers, page = env.get("/")
    assert status == 200 and headers["Content-Type"].startswith("text/html")
    if b"make web" in page:  # the dashboard is not built: the page says so and links the API
        assert b"/api/status" in page and b"/metrics" in page


def test_metrics(env):
    env.book.publish("depth.binance.BTC-USDT", depth_msg("binance", "BTC-USDT"))
    with clients(env) as (c,):
        c.request({"op": "subscribe", "channel": "depth", "venue": "binance", "symbol": "BTC-USDT", "interval_ms": 0})  # fmt: skip
        # the snapshot first: an update published before the gateway follows the topic would
        # become that snapshot, and the loop below would wait for it as an update
        c.expect(is_("snapshot", channel="depth"))
        c.request({"op": "fly"})
        for i in range(3):
            env.book.publish("depth.binance.BTC-USDT", depth_msg("binance", "BTC-USDT", 100 + i))
            c.expect(is_("update", channel="depth"))
        status, headers, body = env.get("/metrics")
    assert status == 200 and headers["Content-Type"].startswith("text/plain")
    families = {f.name: f for f in text_string_to_metric_families(body.decode())}
    expected = {
        "flowbook_venue_state": "gauge",
        "flowbook_instrument_state": "gauge",
        "flowbook_venue_messages_per_second": "gauge",
        "flowbook_venue_last_message_age_seconds": "gauge",
        "flowbook_venue_frames": "counter",
        "flowbook_venue_gaps": "counter",
        "flowbook_venue_resyncs": "counter",
        "flowbook_venue_reconnects": "counter",
        "flowbook_venue_parse_errors": "counter",
        "flowbook_venue_checksum_failures": "counter",
        "flowbook_venue_metadata_reloads": "counter",
        "flowbook_stage_latency_seconds": "summary",
        "flowbook_stage_latency_max_seconds": "gauge",
        "flowbook_process_cpu_percent": "gauge",
        "flowbook_process_rss_bytes": "gauge",
        "flowbook_book_up": "gauge",
        "flowbook_gateway_clients": "gauge",
        "flowbook_gateway_subscriptions": "gauge",
        "flowbook_gateway_messages_sent": "counter",
        "flowbook_gateway_messages_dropped": "counter",
        "flowbook_gateway_messages_conflated": "counter",
        "flowbook_gateway_trades_dropped": "counter",
        "flowbook_gateway_slow_clients_closed": "counter",
        "flowbook_gateway_client_errors": "counter",
        "flowbook_gateway_bus_messages": "counter",
        "flowbook_gateway_send_latency_seconds": "histogram",
    }
    for name, kind in expected.items():
        assert name in families, name
        assert families[name].type == kind, name

    def sample(family, suffix="", **labels):
        for s in families[family].samples:
            if s.name == family + suffix and all(s.labels.get(k) == v for k, v in labels.items()):
                return s.value
        raise AssertionError(f"no sample {family}{suffix} {labels}")

    assert sample("flowbook_venue_gaps", "_total", venue="binance") == 3
    assert sample("flowbook_venue_state", venue="kraken", state="syncing") == 1
    assert sample("flowbook_venue_state", venue="kraken", state="live") == 0
    assert sample("flowbook_stage_latency_seconds", service="ingest-binance", stage="ingest", quantile="0.99") == pytest.approx(800e-6)  # fmt: skip
    assert sample("flowbook_stage_latency_seconds", service="book", stage="consolidate", quantile="0.5") == pytest.approx(120e-6)  # fmt: skip
    assert sample("flowbook_process_rss_bytes", service="book") == 60_000_000
    assert sample("flowbook_process_cpu_percent", service="ingest-kraken") == 12.5
    assert sample("flowbook_process_rss_bytes", service="gateway") > 1_000_000
    assert sample("flowbook_book_up") == 1
    assert sample("flowbook_gateway_clients") == 1
    assert sample("flowbook_gateway_client_errors", "_total", code="unknown_op") == 1
    assert sample("flowbook_gateway_messages_sent", "_total") >= 5
    assert sample("flowbook_gateway_send_latency_seconds", "_count") >= 3
    assert sample("flowbook_gateway_send_latency_seconds", "_bucket", le="+Inf") >= 3


# -- start-up, book builder liveness, shutdown ----------------------------------------------------
def test_gateway_started_after_the_book_builder_gets_the_state_by_resync(tmp_path):
    with processes(tmp_path) as start:
        env = GatewayEnv(tmp_path, start, EXTRA)
        book = env.start_book()
        # the fake book builder republishes depth/bbo only when asked for a resync
        sent = book.publish("depth.binance.ETH-USDT", depth_msg("binance", "ETH-USDT", 7.0))
        book.publish("bbo.kraken.BTC-USD", bbo_msg("kraken", "BTC-USD", 5.0, 6.0))
        try:
            env.start_gateway(wait_book=False)
            wait_until(lambda: book.resyncs, 30, what="a resync request")
            _, body = wait_until(
                lambda: (r := env.get_json("/api/book/binance/ETH-USDT"))[0] == 200 and r,
                30,
                what="the depth from the resync",
            )
            assert body["bids"] == sent["bids"][:20] and body["ts_recv"] == sent["ts_recv"]
            assert any("bbo." in p for p in book.resyncs[0])
            # depth topics are followed on demand: /api/book asked for this one by itself
            assert ["depth.binance.ETH-USDT"] in book.resyncs
            with clients(env) as (c,):
                c.request({"op": "subscribe", "channel": "bbo", "venue": "kraken", "symbol": "BTC-USD"})  # fmt: skip
                snap = c.expect(is_("snapshot", channel="bbo"))
                assert snap["bid"] == [5.0, 1.5] and snap["state"] == "live"
        finally:
            env.close()


def test_book_builder_down_and_back(tmp_path):
    with processes(tmp_path) as start:
        env = make_env(tmp_path, start, EXTRA, book_first=False)
        try:
            env.start_gateway(wait_book=False)
            status, health = env.get_json("/healthz")
            assert status == 503 and health == {
                "ok": False,
                "book": "down",
                "venues": {"binance": "down", "kraken": "down"},
            }
            book = env.start_book()
            book.set_status("binance")
            wait_until(lambda: env.get_json("/healthz")[0] == 200, 30, what="healthy")
            book.publish("bbo.binance.BTC-USDT", bbo_msg("binance", "BTC-USDT", 99.5, 100.5))
            book.publish("depth.binance.BTC-USDT", depth_msg("binance", "BTC-USDT", 100.0))
            book.publish("bbo.kraken.BTC-USD", bbo_msg("kraken", "BTC-USD", 99.0, 101.0))
            wait_until(lambda: env.get("/api/book/binance/BTC-USDT")[0] == 200, 15, what="depth")
            bbo_sub = {
                "op": "subscribe",
                "channel": "bbo",
                "venue": "binance",
                "symbol": "BTC-USDT",
            }
            with clients(env, 3) as (c, d, late):
                c.request({"op": "subscribe", "channel": "status", "venue": "binance"})
                c.expect(is_("snapshot", channel="status"))
                d.request(bbo_sub)
                d.expect(is_("snapshot", channel="bbo", state="live", bid=[99.5, 1.5]))
                book.heartbeats = False  # silent for [book] stale_after_s (3 s): down
                c.expect(is_("update", channel="status", venue="binance", state="down"), 20)
                assert env.get_json("/healthz")[0] == 503
                # nothing vouches for the last prices now: withheld, never shown as live
                down = d.expect(is_("update", channel="bbo", state="down"), 20)
                assert (
                    down["bid"] is None and down["ask"] is None and "book builder" in down["reason"]
                )
                late.request(bbo_sub)
                snap = late.expect(is_("snapshot", channel="bbo"))
                assert snap["state"] == "down" and snap["bid"] is None
                status, body = env.get_json("/api/book/binance/BTC-USDT")
                assert status == 200 and body["state"] == "down" and body["bids"] == []
                # back without kraken's book (say its ingest is still down): that one is not
                # vouched for again, so it stays withheld; binance's comes back when resent
                book.call(lambda: book.latest.pop("bbo.kraken.BTC-USD"))
                book.heartbeats = True
                c.expect(is_("update", channel="status", venue="binance", state="live"), 20)
                back = d.expect(is_("update", channel="bbo", state="live"), 20)
                assert back["bid"] == [99.5, 1.5]  # a quiet book is shown again at once
                late.request({**bbo_sub, "venue": "kraken", "symbol": "BTC-USD"})
                kraken = late.expect(is_("snapshot", channel="bbo", venue="kraken"))
                assert kraken["state"] == "down" and kraken["bid"] is None, kraken
            assert env.get_json("/healthz")[0] == 200
            status, body = env.get_json("/api/book/binance/BTC-USDT")
            assert body["state"] == "live" and body["bids"][0] == [99.99, 1.0]
        finally:
            env.close()


def test_a_started_gateway_listens_once_it_knows_the_venues_instruments(tmp_path):
    """Clients reconnecting right after a gateway restart must not be checked against the
    configured BASE-QUOTE guess: BTC-USDT-PERP exists only in the venue's status."""
    with processes(tmp_path) as start:
        env = make_env(tmp_path, start, EXTRA + "catalog_wait_s = 60\n", book_first=False)
        try:
            book = env.start_book()  # no venue status yet
            env.proc = env._start(
                "gateway", ["-m", "services.gateway", "--config", str(env.config)]
            )
            wait_until(lambda: book.resyncs, 30, what="the gateway following the book builder")
            with pytest.raises(OSError):  # it knows no instruments yet: not listening
                http_get(env.url + "/healthz")
            for venue in ("binance", "kraken"):
                book.set_status(venue)
            wait_until(lambda: http_get(env.url + "/healthz")[0] == 200, 30, what="listening")
            with clients(env) as (c,):
                sub = {"op": "subscribe", "channel": "bbo", "venue": "binance"}
                reply = c.request({**sub, "symbol": "BTC-USDT-PERP"})
                assert reply["type"] == "subscribed", reply
        finally:
            env.close()


def test_sigterm_while_waiting_for_the_book_builder_exits_at_once(tmp_path):
    with processes(tmp_path) as start:
        env = make_env(tmp_path, start, EXTRA + "catalog_wait_s = 60\n", book_first=False)
        try:
            env.proc = env._start(
                "gateway", ["-m", "services.gateway", "--config", str(env.config)]
            )
            wait_until(lambda: "statuses before listening" in env.proc.log_text(), 30)
            env.proc.popen.send_signal(signal.SIGTERM)
            assert env.proc.popen.wait(15) == 0  # not after catalog_wait_s
            assert "listening on" not in env.proc.log_text()
        finally:
            env.close()


def test_sigterm_closes_clients_and_exits_cleanly(env):
    with clients(env) as (c,):
        c.request({"op": "subscribe", "channel": "trades", "venue": "all"})
        env.proc.popen.send_signal(signal.SIGTERM)
        with pytest.raises(ConnectionClosed) as info:
            for _ in range(100):
                c.recv(10)
        assert info.value.rcvd is not None and info.value.rcvd.code == 1001
    assert env.proc.popen.wait(15) == 0
    assert "Traceback" not in env.proc.log_text()


def test_dashboard_is_served_from_web_dir(tmp_path):
    web = tmp_path / "web"
    (web / "assets").mkdir(parents=True)
    (web / "index.html").write_text("<!doctype html><title>flowbook dashboard</title>")
    (web / "assets" / "app-1234.js").write_text("console.log('flowbook')")
    (tmp_path / "secret.txt").write_text("not for you")
    with processes(tmp_path) as start:
        env = make_env(tmp_path, start, f'web_dir = "{web}"\n', book_first=False)
        env.start_gateway(wait_book=False)
        status, headers, body = env.get("/")
        assert status == 200 and b"flowbook dashboard" in body
        assert headers["Content-Type"].startswith("text/html")
        status, headers, body = env.get("/assets/app-1234.js")
        assert status == 200 and body == b"console.log('flowbook')"
        assert "javascript" in headers["Content-Type"] and "immutable" in headers["Cache-Control"]
        conn = http.client.HTTPConnection("127.0.0.1", env.port, timeout=10)
        for path in ("/../secret.txt", "/assets/../../secret.txt", "/%2e%2e/secret.txt"):
            conn.request("GET", path)
            resp = conn.getresponse()
            assert resp.status == 404, path
            assert b"not for you" not in resp.read()
            conn.close()
