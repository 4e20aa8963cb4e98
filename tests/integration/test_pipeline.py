"""The whole pipeline on loopback with real processes: simulator -> ingest -> book builder ->
gateway -> a WebSocket client, whose book must equal the exchange's (the simulator's)."""

from __future__ import annotations

import httpx
import pytest

from common.config import load
from tests.procs import free_port, processes, venue_section, wait_until, write_config
from tests.simctl import SimControl
from tests.wsclient import WsClient

pytestmark = pytest.mark.integration


@pytest.fixture
def pipeline(tmp_path):
    path = write_config(
        tmp_path,
        venue_section("binance", sim_port=free_port(), bases=["BTC", "ETH"]),
        rate=100,
        book_extra="trace_hops = true",
        extra="trace_hops = true",
    )
    cfg = load(path)
    with processes(tmp_path) as start:
        start("simulator", ["-m", "services.simulator", "--config", str(path)])
        sim = SimControl(cfg.simulator["control_port"])
        wait_until(sim.healthy, 20, what="simulator up")
        start("ingest", ["-m", "services.ingest", "binance", "--config", str(path)])
        start("book", ["-m", "services.book", "--config", str(path)])
        start("gateway", ["-m", "services.gateway", "--config", str(path)])
        base = f"http://127.0.0.1:{cfg.gateway.port}"
        wait_until(
            lambda: httpx.get(f"{base}/healthz").json()["venues"].get("binance") == "live",
            40,
            what="binance live at the gateway",
        )
        client = WsClient(f"ws://127.0.0.1:{cfg.gateway.port}/ws")
        try:
            yield sim, client, base
        finally:
            client.close()
            sim.close()


def top_of_book(msg: dict | None) -> tuple | None:
    if not msg or msg.get("state") != "live" or not msg["bids"] or not msg["asks"]:
        return None
    return tuple(msg["bids"][0]), tuple(msg["asks"][0])


def client_equals_simulator(sim: SimControl, client: WsClient) -> bool:
    bids, asks = sim.book("binance", "BTCUSDT", 20)
    msg = client.get("depth", "binance", "BTC-USDT")
    return (
        msg is not None
        and msg.get("state") == "live"
        and [tuple(x) for x in msg["bids"]] == bids
        and [tuple(x) for x in msg["asks"]] == asks
    )


def converge(sim: SimControl, client: WsClient) -> None:
    sim.pause()
    try:
        wait_until(
            lambda: client_equals_simulator(sim, client),
            20,
            what="client's depth == simulator's book",
        )
    finally:
        sim.resume()


def test_client_book_equals_exchange_and_a_gap_is_repaired(pipeline):
    sim, client, base = pipeline
    client.subscribe("depth", "binance", "BTC-USDT", depth=20, interval_ms=0)
    client.subscribe("bbo", "all", "BTC-USD")
    client.subscribe("bbo", "binance", "BTC-USDT")
    wait_until(lambda: top_of_book(client.get("depth", "binance", "BTC-USDT")), 20, what="depth")
    assert client.of_type("snapshot"), "a snapshot comes first"
    sim.pause()  # the market holds still until both books are checked
    try:
        wait_until(
            lambda: client_equals_simulator(sim, client), 20, what="client's depth == simulator's"
        )
        # the consolidated BBO of a single venue is that venue's BBO
        bids, asks = sim.book("binance", "BTCUSDT", 1)

        def best_prices() -> tuple | None:
            bbo = client.get("bbo", "all", "BTC-USD") or {}
            return bbo.get("bid") and bbo.get("ask") and (bbo["bid"][0], bbo["ask"][0])

        wait_until(lambda: best_prices() == (bids[0][0], asks[0][0]), 20, what="consolidated bbo")
    finally:
        sim.resume()
    bbo = client.get("bbo", "all", "BTC-USD")
    assert bbo["bid"][2] == "binance" and bbo["ask"][2] == "binance"
    assert not bbo["crossed"]

    before = (
        wait_until(
            lambda: (
                httpx.get(f"{base}/api/status").json()["venues"]["binance"]["resyncs"] is not None
                and httpx.get(f"{base}/api/status").json()["venues"]["binance"]["resyncs"] + 0 + 1
            ),
            20,
            what="ingest stats reached the gateway",
        )
        - 1
    )
    sim.fault("binance", "gap", symbol="BTCUSDT")
    wait_until(
        lambda: (
            httpx.get(f"{base}/api/status").json()["venues"]["binance"]["resyncs"] == before + 1
        ),
        30,
        what="resync counter +1",
    )
    converge(sim, client)

    def binance_live() -> dict | None:
        venue = httpx.get(f"{base}/api/status").json()["venues"]["binance"]
        return venue if venue["state"] == "live" else None

    # the venue state follows the ingest's own report, carried in its heartbeat once a second,
    # so it may say "syncing" for up to a second after the book itself is whole again
    status = wait_until(binance_live, 10, 0.1, what="binance live again after the repair")
    assert status["gaps"] >= 1
    # the client saw every message carry the timestamps it needs to measure latency
    last = client.get("depth", "binance", "BTC-USDT")
    assert (
        last["ts_recv"]
        <= last["ts_ingest_pub"]
        <= last["ts_book_pub"]
        <= last["ts_gw"]
        <= last["_rx"]
    )
    # trace_hops: each bus hop of a bbo update split at the receiver's wake-up and decode (a
    # wake-up may come before the publish: the message arrived while the batch was read)
    bbo = wait_until(
        lambda: (m := client.get("bbo", "binance", "BTC-USDT")) and m["type"] == "update" and m,
        10,
        what="a bbo update",
    )
    path = ["ts_recv", "ts_ingest_pub", "ts_book_rx", "ts_book_pub", "ts_gw_rx", "ts_gw", "_rx"]
    assert [bbo[k] for k in path] == sorted(bbo[k] for k in path), bbo
    assert bbo["ts_book_wake"] <= bbo["ts_book_rx"] and bbo["ts_gw_wake"] <= bbo["ts_gw_rx"]


def test_bad_client_messages_get_errors_and_the_connection_stays_open(pipeline):
    _, client, _ = pipeline
    client.send("{not json")
    client.send({"op": "subscribe", "channel": "candles", "venue": "binance", "symbol": "BTC-USDT"})
    client.send({"op": "subscribe", "channel": "depth", "venue": "binance", "symbol": "NOPE-USDT"})
    client.send({"op": "dance"})
    wait_until(lambda: len(client.of_type("error")) >= 4, 10, what="four errors")
    codes = [e["code"] for e in client.of_type("error")]
    assert codes == ["bad_json", "unknown_channel", "unknown_symbol", "unknown_op"]
    client.send({"op": "ping"})
    wait_until(lambda: client.of_type("pong"), 10, what="pong after the errors")
    assert client.closed is None
