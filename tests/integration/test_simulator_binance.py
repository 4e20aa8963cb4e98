"""The simulator's Binance Spot dialect over real sockets: a client doing the documented sync
(REST snapshot + buffered diffs, ``U <= lastUpdateId+1 <= u``, then ``U == prev u + 1``) ends with
the simulator's book, and every fault is visible on the wire the way the brief says."""

from __future__ import annotations

import contextlib
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from decimal import Decimal
from pathlib import Path

import httpx
import orjson
import pytest
from websockets.exceptions import ConnectionClosed, ConnectionClosedOK
from websockets.sync.client import connect

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
TIMEOUT = 30.0  # deadline of every wait: generous for a loaded 2-core machine


def wait_for(cond, what: str, timeout: float = TIMEOUT):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = cond()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


class Sim:
    """The simulator as a subprocess on ports chosen by the OS (read from its stdout)."""

    def __init__(self, tmp: Path) -> None:
        cfg = tmp / "sim.toml"
        cfg.write_text(
            '[simulator]\nhost = "127.0.0.1"\ncontrol_port = 0\nrate = 200\ntrade_ratio = 0.3\n'
            'seed = 11\n\n[venues.binance]\nenabled = true\nsim_port = 0\nquote = "USDT"\n'
            'bases = ["BTC", "ETH", "SOL", "XRP"]\n'
        )
        self.log = tmp / "sim.log"
        self._log = open(self.log, "wb")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "services.simulator", "--config", str(cfg)],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=self._log,
            text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
            start_new_session=True,
        )
        lines: queue.Queue[str] = queue.Queue()
        threading.Thread(
            target=lambda: [lines.put(x) for x in self.proc.stdout], daemon=True
        ).start()
        ports: dict[str, int] = {}
        deadline = time.monotonic() + TIMEOUT
        while len(ports) < 2:
            try:
                words = lines.get(timeout=max(0.01, deadline - time.monotonic())).split()
            except queue.Empty:
                raise AssertionError(f"simulator did not start:\n{self.log.read_text()}") from None
            if words[0] == "control":
                ports["control"] = int(words[1].rsplit(":", 1)[1].split("/")[0])
            elif words[:2] == ["venue", "binance"]:
                ports["binance"] = int(words[2].rsplit(":", 1)[1])
        self.http = httpx.Client(timeout=TIMEOUT)
        self.ctl = f"http://127.0.0.1:{ports['control']}/sim"
        self.rest = f"http://127.0.0.1:{ports['binance']}"
        self.ws = f"ws://127.0.0.1:{ports['binance']}"

    def post(self, path: str, body: dict | None = None) -> httpx.Response:
        return self.http.post(f"{self.ctl}/{path}", json=body or {})

    def book(self, symbol: str, depth: int = 50) -> dict:
        params = {"venue": "binance", "symbol": symbol, "depth": depth}
        return self.http.get(f"{self.ctl}/book", params=params).raise_for_status().json()

    def stop(self) -> int:
        self.http.close()
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait(5)
        finally:
            self._log.close()


@pytest.fixture(scope="module")
def sim(tmp_path_factory):
    s = Sim(tmp_path_factory.mktemp("simulator"))
    try:
        yield s
    finally:
        assert s.stop() == 0, s.log.read_text()[-3000:]


class Follower:
    """A Binance Spot local book for one symbol, kept exactly as exchanges.md 1.3 says."""

    def __init__(self, sim: Sim, symbol: str) -> None:
        self.sim, self.symbol = sim, symbol
        low = symbol.lower()
        self._stack = contextlib.ExitStack()
        url = f"{sim.ws}/stream?streams={low}@depth@100ms/{low}@trade"
        self.ws = self._stack.enter_context(connect(url, max_size=None, max_queue=None))
        self.buffer: list[dict] = []
        self.bids: dict[Decimal, Decimal] | None = None
        self.asks: dict[Decimal, Decimal] = {}
        self.last_id = 0
        self.gaps: list[tuple[int, int]] = []  # (expected U, received U)
        self.applied = self.trades = self.malformed = 0
        self.last_event_ms: int | None = None
        self.max_event_gap_s = 0.0  # by the venue's event times: the test's reads may lag

    def pump(self, timeout: float = 0.5) -> None:
        """Read one frame (if any) and process it."""
        try:
            raw = self.ws.recv(timeout=timeout)
        except TimeoutError:
            return
        try:
            frame = orjson.loads(raw)
        except orjson.JSONDecodeError:
            self.malformed += 1
            return
        data = frame["data"]
        if self.last_event_ms is not None:
            gap_s = (data["E"] - self.last_event_ms) / 1000
            self.max_event_gap_s = max(self.max_event_gap_s, gap_s)
        self.last_event_ms = data["E"]
        assert data["s"] == self.symbol
        if frame["stream"].endswith("@trade"):
            assert data["e"] == "trade" and isinstance(data["m"], bool) and data["M"] is True
            self.trades += 1
        else:
            assert frame["stream"].endswith("@depth@100ms") and data["e"] == "depthUpdate"
            assert data["u"] == data["U"] + len(data["b"]) + len(data["a"]) - 1
            self._diff(data)

    def _diff(self, d: dict) -> None:
        if self.bids is None:
            self.buffer.append(d)
        elif d["u"] <= self.last_id:
            pass
        elif d["U"] > self.last_id + 1:
            self.gaps.append((self.last_id + 1, d["U"]))
            self.bids, self.buffer = None, [d]  # discard the book, resync
        else:
            assert d["U"] == self.last_id + 1 or self.applied == 0
            self._apply(d)

    def _apply(self, d: dict) -> None:
        for side, levels in ((self.bids, d["b"]), (self.asks, d["a"])):
            for price, qty in levels:
                if Decimal(qty):
                    side[Decimal(price)] = Decimal(qty)
                else:
                    side.pop(Decimal(price), None)
        self.last_id = d["u"]
        self.applied += 1

    def sync(self) -> None:
        """Snapshot + buffered diffs; retried until the straddle rule holds."""
        deadline = time.monotonic() + TIMEOUT
        while self.bids is None:
            assert time.monotonic() < deadline, "could not sync"
            while not self.buffer:
                self.pump()
            url = f"{self.sim.rest}/api/v3/depth"
            snap = httpx.get(url, params={"symbol": self.symbol, "limit": 5000}).json()
            lid = snap["lastUpdateId"]
            if lid < self.buffer[0]["U"]:
                continue  # snapshot older than the stream: fetch again
            pending = [d for d in self.buffer if d["u"] > lid]
            if pending and not pending[0]["U"] <= lid + 1 <= pending[0]["u"]:
                self.buffer = []  # ids missing between snapshot and stream: start over
                continue
            self.bids = {Decimal(p): Decimal(q) for p, q in snap["bids"]}
            self.asks = {Decimal(p): Decimal(q) for p, q in snap["asks"]}
            self.last_id, self.applied, self.buffer = lid, 0, []
            for d in pending:
                self._diff(d)

    def run_until(self, cond, what: str) -> None:
        wait_for(lambda: self.pump(0.05) or cond(), what)

    def top(self, depth: int = 50) -> tuple[list, list]:
        assert self.bids is not None
        bids = sorted(self.bids.items(), reverse=True)[:depth]
        asks = sorted(self.asks.items())[:depth]
        return [[float(p), float(q)] for p, q in bids], [[float(p), float(q)] for p, q in asks]

    def converge(self) -> dict:
        """Pause the market, read until the client is at the simulator's last id, compare."""
        self.sim.post("pause").raise_for_status()
        try:
            want = self.sim.book(self.symbol)
            self.run_until(lambda: self.last_id >= want["last_update_id"], "last frame")
            assert self.last_id == want["last_update_id"]
            assert self.top() == (want["bids"], want["asks"])
            bids, asks = want["bids"], want["asks"]
            assert len(bids) == len(asks) == 50 and bids[0][0] < asks[0][0]
            return want
        finally:
            self.sim.post("resume").raise_for_status()

    def __enter__(self) -> Follower:
        return self

    def __exit__(self, *exc: object) -> None:
        self._stack.close()


def test_documented_sync_ends_with_the_simulator_book(sim):
    with Follower(sim, "BTCUSDT") as f:
        f.sync()
        f.run_until(lambda: f.applied >= 30 and f.trades >= 3, "30 diffs and 3 trades")
        f.converge()
        assert f.gaps == []


def test_gap_fault_skips_ids_and_resync_converges(sim):
    with Follower(sim, "ETHUSDT") as f:
        f.sync()
        f.run_until(lambda: f.applied >= 5, "5 diffs")
        answer = sim.post("fault", {"venue": "binance", "kind": "gap", "symbol": "ETHUSDT"})
        assert answer.json()["symbol"] == "ETHUSDT"
        f.run_until(lambda: f.gaps, "a U jump")
        expected, got = f.gaps[0]
        assert got > expected
        f.sync()
        f.run_until(lambda: f.applied >= 5, "5 diffs after resync")
        f.converge()
        assert len(f.gaps) == 1


def test_malformed_frame_then_the_stream_carries_on(sim):
    with Follower(sim, "SOLUSDT") as f:
        f.sync()
        sim.post("fault", {"venue": "binance", "kind": "malformed", "symbol": "SOLUSDT"})
        f.run_until(lambda: f.malformed == 1, "a malformed frame")
        applied = f.applied
        f.run_until(lambda: f.applied >= applied + 5, "5 more diffs")
        assert f.gaps == [] and f.malformed == 1


def test_stall_silences_open_connections_only_then_resumes_with_a_gap(sim):
    stall_s = 4.0
    with Follower(sim, "XRPUSDT") as f:
        f.sync()
        f.run_until(lambda: f.applied >= 3, "3 diffs")
        fault = {"venue": "binance", "kind": "stall", "symbol": "XRPUSDT", "duration_s": stall_s}
        sim.post("fault", fault).raise_for_status()
        url = f"{sim.ws}/stream?streams=xrpusdt@depth@100ms"
        with connect(url, max_queue=None) as fresh:  # a new connection is not stalled
            first = orjson.loads(fresh.recv(timeout=TIMEOUT))["data"]
            assert first["s"] == "XRPUSDT"
            for _ in range(100):  # whatever the old connection got before its stall began
                f.pump(timeout=0)
            assert first["u"] > f.last_id  # the new one has what the stalled one has not
        f.run_until(lambda: f.gaps, "frames again, after a U jump")
        assert f.max_event_gap_s >= stall_s - 0.5
        assert f.ws.protocol.state.name == "OPEN"


def test_rest_faults(sim):
    url, params = f"{sim.rest}/api/v3/depth", {"symbol": "ETHUSDT", "limit": 10}
    sim.post("fault", {"venue": "binance", "kind": "rest429", "symbol": "ETHUSDT"})
    r = httpx.get(url, params=params)
    assert r.status_code == 429 and r.headers["Retry-After"] == "1"
    assert r.json()["code"] == -1003
    assert httpx.get(url, params=params).status_code == 200
    sim.post("fault", {"venue": "binance", "kind": "rest500", "count": 2})
    assert [httpx.get(url, params=params).status_code for _ in range(3)] == [500, 500, 200]
    sim.post("fault", {"venue": "binance", "kind": "slow_snapshot", "duration_s": 1.0})
    t0 = time.monotonic()
    r = httpx.get(url, params=params, timeout=TIMEOUT)
    assert r.status_code == 200 and time.monotonic() - t0 >= 0.9
    body = r.json()
    assert len(body["bids"]) == len(body["asks"]) == 10 and body["lastUpdateId"] > 0
    sim.post("fault", {"venue": "binance", "kind": "rest_malformed", "symbol": "ETHUSDT"})
    cut = httpx.get(url, params=params)
    assert cut.status_code == 200
    with pytest.raises(ValueError):
        cut.json()
    assert httpx.get(url, params=params).json()["lastUpdateId"] > 0
    bad = httpx.get(url, params={"symbol": "NOPEUSDT"})
    assert bad.status_code == 400 and bad.json() == {"code": -1121, "msg": "Invalid symbol."}


def test_disconnect_and_planned_close(sim):
    with (
        connect(f"{sim.ws}/ws/btcusdt@trade", max_queue=None) as raw,
        connect(f"{sim.ws}/stream") as idle,
    ):
        assert "e" in orjson.loads(raw.recv(timeout=TIMEOUT))  # raw stream: unwrapped payload
        answer = sim.post("fault", {"venue": "binance", "kind": "disconnect"}).json()
        assert answer["ok"] and answer["connections"] >= 2
        for ws in (raw, idle):
            with pytest.raises(ConnectionClosed) as info:
                while True:
                    ws.recv(timeout=TIMEOUT)
            assert info.value.rcvd is None  # abrupt: no close frame
    with connect(f"{sim.ws}/stream?streams=btcusdt@trade", max_queue=None) as ws:
        ws.recv(timeout=TIMEOUT)
        sim.post("fault", {"venue": "binance", "kind": "planned_close"}).raise_for_status()
        frames = []
        with pytest.raises(ConnectionClosedOK):
            while True:
                frames.append(orjson.loads(ws.recv(timeout=TIMEOUT)))
        assert frames[-1]["stream"] == "!serverShutdown"
        assert frames[-1]["data"]["e"] == "serverShutdown"


def test_live_subscribe_metadata_and_control_api(sim):
    with connect(f"{sim.ws}/stream", max_queue=None) as ws:
        ws.send(
            orjson.dumps({"method": "SUBSCRIBE", "params": ["ethusdt@trade"], "id": 1}).decode()
        )
        frames = [orjson.loads(ws.recv(timeout=TIMEOUT)) for _ in range(3)]
        assert frames[0] == {"result": None, "id": 1}
        assert {f["stream"] for f in frames[1:]} == {"ethusdt@trade"}
    info = httpx.get(f"{sim.rest}/api/v3/exchangeInfo").json()
    assert info["timezone"] == "UTC" and info["rateLimits"]
    assert [s["symbol"] for s in info["symbols"]] == ["BTCUSDT", "ETHUSDT", "SOLUSDT", "XRPUSDT"]
    one = httpx.get(f"{sim.rest}/api/v3/exchangeInfo", params={"symbol": "XRPUSDT"}).json()
    assert one["symbols"][0]["filters"][0]["tickSize"] == "0.00010000"
    stats = sim.http.get(f"{sim.ctl}/stats").json()["venues"]["binance"]
    assert stats["rest_depth_calls"] >= 1 and stats["ws_connections_total"] >= 1
    assert stats["messages_sent"] > 0 and isinstance(stats["faults"], dict)
    assert sim.http.get(f"{sim.ctl}/healthz").json() == {"ok": True}
    for body in (
        {"venue": "nope", "kind": "gap"},
        {"venue": "binance", "kind": "nope"},
        {"venue": "binance", "kind": "checksum"},  # Binance has no checksum
    ):
        r = sim.post("fault", body)
        assert r.status_code == 400 and "error" in r.json()
    r = sim.post("rate", {"rate": 250})
    assert r.json()["rates"] == {"binance": 250.0}
    assert sim.http.get(f"{sim.ctl}/book", params={"venue": "x"}).status_code == 400
