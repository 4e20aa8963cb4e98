"""The stack under a real supervisord: crash and restart processes the way an operator or a
fault would, and watch what a WebSocket client of the gateway sees."""

from __future__ import annotations

import os
import signal

import httpx
import pytest

from tests.procs import free_port, venue_section, wait_until, write_config
from tests.simctl import SimControl
from tests.stack import SupervisedStack
from tests.wsclient import WsClient

pytestmark = pytest.mark.e2e


@pytest.fixture
def stack(tmp_path):
    venues = venue_section("binance", sim_port=free_port(), bases=["BTC", "ETH"]) + venue_section(
        "kraken",
        sim_port=free_port(),
        quote="USD",
        bases=["BTC", "ETH"],
        ws_path="/v2",
        extra="depth = 25",
    )
    path = write_config(tmp_path, venues, rate=60)
    st = SupervisedStack(path, tmp_path / "run")
    try:
        st.wait_running()
        sim = SimControl(st.cfg.simulator["control_port"])
        base = f"http://127.0.0.1:{st.cfg.gateway.port}"

        def all_live() -> bool:
            venues = httpx.get(f"{base}/healthz").json()["venues"]
            return venues.get("binance") == "live" and venues.get("kraken") == "live"

        wait_until(all_live, 60, 0.2, what="both venues live at the gateway")
        client = WsClient(f"ws://127.0.0.1:{st.cfg.gateway.port}/ws")
        yield st, sim, client
        client.close()
        sim.close()
    except BaseException:
        for name in ("simulator", "binance", "kraken", "book", "gateway"):
            print(f"----- {name} -----\n{st.log(name)[-3000:]}")
        raise
    finally:
        st.stop()


def merged_top(sim: SimControl, n: int) -> tuple[list, list]:
    """Brute-force consolidation of the two exchanges' books, 1:1 quotes."""
    totals: dict[bool, dict[float, float]] = {True: {}, False: {}}
    for venue, symbol in (("binance", "BTCUSDT"), ("kraken", "BTC/USD")):
        bids, asks = sim.book(venue, symbol, 25)
        for is_bid, levels in ((True, bids), (False, asks)):
            for price, size in levels:
                totals[is_bid][price] = totals[is_bid].get(price, 0.0) + size
    bids = sorted(totals[True].items(), reverse=True)[:n]
    asks = sorted(totals[False].items())[:n]
    return bids, asks


def consolidated_equals_exchanges(sim: SimControl, client: WsClient, n: int = 10) -> bool:
    msg = client.get("depth", "all", "BTC-USD")
    if not msg or sorted(msg.get("venues", [])) != ["binance", "kraken"]:
        return False
    want_bids, want_asks = merged_top(sim, n)
    got_bids = [(p, pytest.approx(t)) for p, t, _ in msg["bids"][:n]]
    got_asks = [(p, pytest.approx(t)) for p, t, _ in msg["asks"][:n]]
    return got_bids == want_bids and got_asks == want_asks


def converge(sim: SimControl, client: WsClient) -> None:
    sim.pause()
    try:
        wait_until(
            lambda: consolidated_equals_exchanges(sim, client),
            30,
            what="consolidated book == merge of the exchanges' books",
        )
    finally:
        sim.resume()


def test_crashes_and_restarts_recover_without_rest_calls(stack):
    st, sim, client = stack
    client.subscribe("depth", "all", "BTC-USD", depth=20, interval_ms=0)
    client.subscribe("depth", "binance", "BTC-USDT", depth=5, interval_ms=0)
    converge(sim, client)

    # kill -9 one ingest: the consolidated book drops that venue within the 3 s liveness
    # window, the other venue never stops updating, and supervisord brings it back.
    old = st.pid("ingest:kraken")
    os.kill(old, signal.SIGKILL)
    wait_until(
        lambda: "kraken" in (client.get("depth", "all", "BTC-USD") or {}).get("excluded", {}),
        10,
        0.02,
        what="kraken excluded",
    )
    seen = len(client.messages)
    wait_until(
        lambda: sum(1 for m in client.messages[seen:] if m.get("venue") == "binance") > 5,
        10,
        what="binance keeps updating while kraken is down",
    )
    wait_until(lambda: st.pid("ingest:kraken") not in (0, old), 30, what="supervisord restart")
    converge(sim, client)

    # kill -9 the book builder: it resyncs from the ingest processes, with no REST call to any
    # exchange, and gateway clients get correct consolidated books again.
    rest_before = sim.stats("binance")["rest_depth_calls"]
    old_book = st.pid("book")
    os.kill(old_book, signal.SIGKILL)
    wait_until(lambda: st.pid("book") not in (0, old_book), 30, what="book builder restarted")
    converge(sim, client)
    assert sim.stats("binance")["rest_depth_calls"] == rest_before

    # an operator restarts one venue alone: book builder and gateway keep running
    book_pid, gw_pid = st.pid("book"), st.pid("gateway")
    out = st.ctl("restart", "ingest:binance")
    assert "started" in out, out
    converge(sim, client)
    assert (st.pid("book"), st.pid("gateway")) == (book_pid, gw_pid)
    assert client.closed is None
