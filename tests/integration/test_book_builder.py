"""The book builder as a real process (``python -m services.book``) between fake ingest
publishers (real ``common.bus.Publisher`` objects in this test, on their own event-loop
threads, serving resync requests from their books like the ingest runner) and a plain ZeroMQ
SUB/DEALER client in the test thread, all on loopback."""

from __future__ import annotations

import asyncio
import contextlib
import random
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest
import zmq

from common.book import OrderBook
from common.bus import RESYNC_RETRY_S, Publisher
from tests.procs import free_port, processes, wait_until

pytestmark = pytest.mark.integration

DEPTH = 50
STALE_AFTER_S = 3.0


# -- fake ingest ------------------------------------------------------------------------------
class FakeIngest:
    """One venue's ingest process, played by a real bus Publisher on its own loop thread."""

    def __init__(self, venue: str, pub: str, control: str) -> None:
        self.venue = venue
        self.pub_ep, self.ctl_ep = pub, control
        self.books: dict[str, OrderBook] = {}
        self.requests: list[list[str]] = []  # prefixes of every resync the publisher served
        self.request_times: list[float] = []
        self.heartbeating = True
        self.last_hb_at = 0.0  # time.monotonic() of the last heartbeat sent
        self.lock = threading.Lock()
        self.loop = asyncio.new_event_loop()
        self.bus: Publisher | None = None
        self._hb: asyncio.Task | None = None
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.call(self._open)

    def call(self, fn: Callable[..., Any], *args: Any) -> Any:
        """Run ``fn`` on the fake's loop thread (its sockets live there) and return its result."""

        async def run() -> Any:
            return fn(*args)

        return asyncio.run_coroutine_threadsafe(run(), self.loop).result(10)

    def _open(self) -> None:
        deadline = time.monotonic() + 10
        while True:  # after a restart the old sockets may hold the ports for a moment
            try:
                self.bus = Publisher(f"ingest-{self.venue}", self.pub_ep, self.ctl_ep)
                break
            except zmq.ZMQError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        self.bus.snapshot_provider = self._snapshots
        self.bus.attach(self.loop)
        self._hb = self.loop.create_task(self._heartbeats())

    def _close(self) -> None:
        if self._hb:
            self._hb.cancel()
        if self.bus:
            self.bus.close()

    async def _heartbeats(self) -> None:
        while True:
            if self.heartbeating and self.bus:
                with self.lock:
                    instruments = {s: {"state": "live"} for s in self.books}
                self.bus.heartbeat(
                    {"venue": self.venue, "venue_state": "live", "instruments": instruments}
                )
                self.last_hb_at = time.monotonic()
            await asyncio.sleep(0.5)

    def _snapshots(self, prefixes: list[str]):
        with self.lock:
            self.requests.append(list(prefixes))
            self.request_times.append(time.monotonic())
            topics = [(f"book.{self.venue}.{s}", s) for s in self.books]
        for topic, symbol in topics:
            if any(topic.startswith(p) for p in prefixes):
                yield topic, self._snapshot_body(symbol)

    def _snapshot_body(self, symbol: str) -> dict[str, Any]:
        with self.lock:
            book = self.books[symbol]
            bids, asks = book.top(len(book))
        now = time.time_ns()
        return {
            "type": "snapshot",
            "venue": self.venue,
            "symbol": symbol,
            "state": "live",
            "bids": [list(x) for x in bids],
            "asks": [list(x) for x in asks],
            "ts_exch": now - 5_000_000,
            "ts_recv": now,
        }

    # what a test does with it
    def snapshot(self, symbol: str, bids: list, asks: list) -> None:
        with self.lock:
            book = self.books[symbol] = OrderBook()
            book.apply(bids, asks)
        self.call(
            lambda: self.bus.publish(f"book.{self.venue}.{symbol}", self._snapshot_body(symbol))
        )

    def delta(self, symbol: str, bids: list, asks: list, *, lose: bool = False) -> None:
        """Apply a delta; publish it, or (``lose``) only consume its seq number, as if the
        message had been dropped on the way."""
        with self.lock:
            self.books[symbol].apply(bids, asks)
        topic = f"book.{self.venue}.{symbol}"
        now = time.time_ns()
        body = {
            "type": "delta",
            "venue": self.venue,
            "symbol": symbol,
            "state": "live",
            "bids": [list(x) for x in bids],
            "asks": [list(x) for x in asks],
            "ts_exch": now - 1_000_000,
            "ts_recv": now,
        }

        def send() -> None:
            if lose:
                self.bus._seq[topic] = self.bus._seq.get(topic, 0) + 1
            else:
                self.bus.publish(topic, body)

        self.call(send)

    def raw(self, topic: str, body: dict[str, Any]) -> None:
        self.call(lambda: self.bus.publish(topic, body))

    def top(self, symbol: str, n: int = DEPTH) -> tuple[list, list]:
        with self.lock:
            bids, asks = self.books[symbol].top(n)
        return [list(x) for x in bids], [list(x) for x in asks]

    def requested(self, topic: str, since: float = 0.0) -> bool:
        """A resync request covering ``topic`` was served after ``since``."""
        with self.lock:
            return any(
                at >= since and any(topic.startswith(p) for p in r)
                for at, r in zip(self.request_times, self.requests, strict=True)
            )

    def restart(self) -> None:
        """A new process life: same endpoints and books, new epoch."""
        self.call(self._close)
        self.call(self._open)

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.call(self._close)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


# -- a consumer of the book builder, in the test thread ---------------------------------------
class Tap:
    def __init__(self, pub: str, control: str) -> None:
        ctx = zmq.Context.instance()
        self.pub_ep = pub
        self.sub = ctx.socket(zmq.SUB)
        self.sub.setsockopt(zmq.SUBSCRIBE, b"")
        self.sub.setsockopt(zmq.LINGER, 0)
        self.sub.connect(pub)
        self.dealer = ctx.socket(zmq.DEALER)
        self.dealer.setsockopt(zmq.LINGER, 0)
        self.dealer.connect(control)
        self.latest: dict[str, dict[str, Any]] = {}
        self.log: list[tuple[float, str, dict[str, Any]]] = []

    def drain(self) -> bool:
        while True:
            try:
                topic, payload = self.sub.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return True
            msg = orjson.loads(payload)
            t = topic.decode()
            self.latest[t] = msg
            self.log.append((time.monotonic(), t, msg))

    def get(self, topic: str) -> dict[str, Any] | None:
        self.drain()
        return self.latest.get(topic)

    def wait(self, cond: Callable[[], Any], timeout: float = 20.0, what: str = "") -> Any:
        return wait_until(lambda: self.drain() and cond(), timeout, 0.02, what)

    def resync(self, prefixes: list[str]) -> None:
        self.dealer.send(orjson.dumps({"op": "resync", "topics": prefixes}))

    def close(self) -> None:
        if not self.sub.closed:
            self.sub.close(0)
            self.dealer.close(0)


# -- expected books ---------------------------------------------------------------------------
def merged(books: dict[str, OrderBook], n: int = DEPTH) -> tuple[list, list]:
    """Brute force: every level of every book, summed at equal prices."""
    out = []
    for bids in (True, False):
        acc: dict[float, dict[str, float]] = {}
        for venue, book in books.items():
            for p, s in (book.bids if bids else book.asks).items():
                acc.setdefault(p, {})[venue] = s
        out.append([[p, sum(acc[p].values()), acc[p]] for p in sorted(acc, reverse=bids)[:n]])
    return out[0], out[1]


def depth_is(tap: Tap, topic: str, bids: list, asks: list) -> bool:
    msg = tap.get(topic)
    return bool(msg and msg["state"] == "live" and msg["bids"] == bids and msg["asks"] == asks)


def all_is(tap: Tap, fakes: dict[str, FakeIngest], symbols: dict[str, str]) -> bool:
    books = {}
    for venue, symbol in symbols.items():
        with fakes[venue].lock:
            books[venue] = OrderBook()
            books[venue].apply(*fakes[venue].books[symbol].top(10_000))
    bids, asks = merged(books)
    msg = tap.get("depth.all.BTC-USD")
    return bool(
        msg
        and msg["bids"] == bids
        and msg["asks"] == asks
        and sorted(msg["venues"]) == sorted(symbols)
        and msg["excluded"] == {}
    )


def ladder(mid: float, n: int, rng: random.Random) -> tuple[list, list]:
    bids = [(mid - 0.5 * (i + 1), rng.randint(1, 40) * 0.25) for i in range(n)]
    asks = [(mid + 0.5 * (i + 1), rng.randint(1, 40) * 0.25) for i in range(n)]
    return bids, asks


def random_delta(mid: float, rng: random.Random) -> tuple[list, list]:
    """A few level changes that keep a book around ``mid`` uncrossed (size 0 deletes)."""
    bids, asks = [], []
    for _ in range(rng.randint(1, 4)):
        size = rng.choice([0.0, 0.25, 1.0, rng.randint(1, 40) * 0.25])
        if rng.random() < 0.5:
            bids.append((mid - 0.5 * rng.randint(1, 80), size))
        else:
            asks.append((mid + 0.5 * rng.randint(1, 80), size))
    return bids, asks


# -- the stack ----------------------------------------------------------------------------------
def write_config(tmp: Path, venues: dict[str, tuple[str, str]]) -> Path:
    sections = "".join(
        f"""
[venues.{name}]
pub = "{pub}"
control = "{ctl}"
ws_url = "ws://127.0.0.1:9/unused"
quote = "USD"
bases = ["BTC"]
"""
        for name, (pub, ctl) in venues.items()
    )
    path = tmp / "book.toml"
    path.write_text(
        f"""
[book]
pub = "tcp://127.0.0.1:{free_port()}"
control = "tcp://127.0.0.1:{free_port()}"
depth = {DEPTH}
depth_interval_ms = 20
stale_after_s = {STALE_AFTER_S}
{sections}"""
    )
    return path


@pytest.fixture
def stack(tmp_path):
    """Fake ingests for binance (BTC-USDT, ETH-USDT) and kraken (BTC-USD) with books, the book
    builder process, and a tap that has already received everything through a resync."""
    rng = random.Random(7)
    endpoints = {
        v: (f"tcp://127.0.0.1:{free_port()}", f"tcp://127.0.0.1:{free_port()}")
        for v in ("binance", "kraken")
    }
    fakes = {v: FakeIngest(v, *eps) for v, eps in endpoints.items()}
    fakes["binance"].snapshot("BTC-USDT", *ladder(100.0, 80, rng))
    fakes["binance"].snapshot("ETH-USDT", *ladder(10.0, 10, rng))
    fakes["kraken"].snapshot("BTC-USD", *ladder(100.25, 60, rng))
    path = write_config(tmp_path, endpoints)
    from common.config import load

    book = load(path).book
    tap = Tap(book.pub, book.control)
    try:
        with processes(tmp_path) as start:
            proc = start("book", ["-m", "services.book", "--config", str(path)])
            # the builder asked the fake ingests for their books at start (no REST anywhere)
            for fake in fakes.values():
                wait_until(lambda f=fake: ["book.", "trade."] in f.requests, 20, what="resync")
            tap.wait(lambda: "status.binance" in tap.latest, 20, what="tap connected")
            tap.resync(["depth.", "bbo.", "status."])  # as a (re)starting gateway does
            yield proc, fakes, tap, rng
            assert proc.alive(), "book builder died"
            proc.stop(signal.SIGTERM)
            assert proc.popen.returncode == 0, "SIGTERM must exit cleanly"
    finally:
        tap.close()
        for fake in fakes.values():
            fake.close()


SYMS = {"binance": "BTC-USDT", "kraken": "BTC-USD"}


def test_venue_and_consolidated_books_follow_the_ingest_books(stack):
    _, fakes, tap, rng = stack
    b, k = fakes["binance"], fakes["kraken"]
    tap.wait(lambda: depth_is(tap, "depth.binance.BTC-USDT", *b.top("BTC-USDT")), what="depth")
    tap.wait(lambda: depth_is(tap, "depth.binance.ETH-USDT", *b.top("ETH-USDT")), what="eth")
    tap.wait(lambda: all_is(tap, fakes, SYMS), what="depth.all == merge of both books")

    # a burst of deltas on both venues: conflated, but the last state always arrives
    for i in range(300):
        fake, symbol, mid = (b, "BTC-USDT", 100.0) if i % 2 else (k, "BTC-USD", 100.25)
        fake.delta(symbol, *random_delta(mid, rng))
    tap.wait(lambda: depth_is(tap, "depth.binance.BTC-USDT", *b.top("BTC-USDT")), what="depth")
    tap.wait(lambda: depth_is(tap, "depth.kraken.BTC-USD", *k.top("BTC-USD")), what="kraken")
    tap.wait(lambda: all_is(tap, fakes, SYMS), what="depth.all after the burst")
    bbo = tap.get("bbo.binance.BTC-USDT")
    bids, asks = b.top("BTC-USDT", 1)
    assert bbo["bid"] == bids[0] and bbo["ask"] == asks[0] and bbo["state"] == "live"
    for topic in ("depth.binance.BTC-USDT", "bbo.binance.BTC-USDT", "depth.all.BTC-USD"):
        msg = tap.get(topic)
        for field in ("ts_exch", "ts_recv", "ts_ingest_pub", "ts_pub"):
            assert isinstance(msg[field], int), (topic, field)
        assert msg["ts_recv"] <= msg["ts_ingest_pub"] <= msg["ts_pub"]
    seqs = [m["seq"] for _, t, m in tap.log if t == "bbo.binance.BTC-USDT"]
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs))), "bbo is never conflated"

    # kraken's bid above binance's best ask: bbo.all says crossed, with the size
    best_ask = b.top("BTC-USDT", 1)[1][0]
    k.delta("BTC-USD", [(best_ask[0] + 0.5, 0.75)], [])
    want = min(0.75, sum(s for p, s in b.books["BTC-USDT"].asks.items() if p <= best_ask[0] + 0.5))
    tap.wait(lambda: (tap.get("bbo.all.BTC-USD") or {}).get("crossed") is True, what="crossed")
    ball = tap.get("bbo.all.BTC-USD")
    assert ball["crossed_size"] == want and ball["bid"] == [best_ask[0] + 0.5, 0.75, "kraken"]
    k.delta("BTC-USD", [(best_ask[0] + 0.5, 0.0)], [])
    tap.wait(lambda: tap.get("bbo.all.BTC-USD")["crossed"] is False, what="uncrossed")

    # trades pass through with the ingest's publish time
    k.raw(
        "trade.kraken.BTC-USD",
        {
            "type": "trades",
            "venue": "kraken",
            "symbol": "BTC-USD",
            "ts_recv": time.time_ns(),
            "trades": [{"price": 100.0, "size": 0.5, "side": "buy", "id": "t1", "ts_exch": 1}],
        },
    )
    tap.wait(lambda: tap.get("trade.kraken.BTC-USD"), what="trade")
    trade = tap.get("trade.kraken.BTC-USD")
    assert trade["trades"][0]["id"] == "t1" and isinstance(trade["ts_ingest_pub"], int)

    # a bad message is counted and skipped; the book is resynced and the process lives on
    k.raw(
        "book.kraken.BTC-USD",
        {
            "type": "delta",
            "venue": "kraken",
            "symbol": "BTC-USD",
            "bids": "garbage",
            "asks": [],
            "ts_recv": 1,
        },
    )
    tap.wait(
        lambda: (tap.get("hb.book") or {}).get("stats", {}).get("bad_messages") == 1,
        what="bad message counted",
    )
    tap.wait(lambda: all_is(tap, fakes, SYMS), what="depth.all after the bad message")
    hb = tap.wait(
        lambda: (
            (s := tap.get("hb.book")["stats"])["venues"] == {"binance": "live", "kraken": "live"}
            and s
        ),
        what="hb.book with both venues live",
    )
    assert hb["latency_us"]["recv_to_pub"]["count"] > 0
    assert hb["latency_us"]["ingest_pub_to_pub"]["count"] > 0
    assert tap.get("status.kraken")["stats"]["venue"] == "kraken"


def test_seq_gap_makes_the_builder_ask_for_a_resync_and_recover(stack):
    _, fakes, tap, _rng = stack
    b = fakes["binance"]
    tap.wait(lambda: all_is(tap, fakes, SYMS), what="depth.all")
    # lose a delta that moves the top of book, then send a normal one: a seq gap
    best_bid = b.top("BTC-USDT", 1)[0][0][0]
    gap_at = time.monotonic()
    b.delta("BTC-USDT", [(best_bid + 0.25, 3.0)], [], lose=True)
    b.delta("BTC-USDT", [(best_bid - 30.0, 1.25)], [])
    # the builder saw the gap: its copy is stale (excluded, said so) until a snapshot comes
    tap.wait(
        lambda: any(t == "bbo.binance.BTC-USDT" and m["state"] == "stale" for _, t, m in tap.log),
        what="book marked stale",
    )
    wait_until(lambda: b.requested("book.binance.BTC-USDT", gap_at), 20, what="resync request")
    tap.wait(lambda: depth_is(tap, "depth.binance.BTC-USDT", *b.top("BTC-USDT")), what="depth")
    assert tap.get("bbo.binance.BTC-USDT")["bid"] == [best_bid + 0.25, 3.0]
    tap.wait(lambda: all_is(tap, fakes, SYMS), what="depth.all recovered")
    hb = tap.wait(lambda: tap.get("hb.book")["stats"]["subscriber"]["gaps"] >= 1, what="gap")
    assert hb


def test_silent_ingest_is_excluded_within_stale_after_and_comes_back(stack):
    _, fakes, tap, _rng = stack
    k = fakes["kraken"]
    tap.wait(lambda: all_is(tap, fakes, SYMS), what="depth.all")
    k.heartbeating = False

    def excluded() -> bool:
        msg = tap.get("depth.all.BTC-USD")
        return msg["excluded"] == {"kraken": "down"} and msg["venues"] == ["binance"]

    tap.wait(excluded, STALE_AFTER_S + 10, what="kraken excluded")
    at = next(
        t
        for t, topic, m in tap.log
        if topic == "depth.all.BTC-USD" and m["excluded"] == {"kraken": "down"}
    )
    last_hb = k.last_hb_at  # read now: one being sent as the flag changed has been sent
    assert at - last_hb >= STALE_AFTER_S - 0.1, "excluded before stale_after_s"
    b_top = fakes["binance"].top("BTC-USDT")
    assert tap.get("depth.all.BTC-USD")["bids"] == [[p, s, {"binance": s}] for p, s in b_top[0]]
    tap.wait(lambda: tap.get("status.kraken")["state"] == "down", what="status down")
    assert tap.get("bbo.kraken.BTC-USD")["state"] == "down"
    assert tap.get("bbo.all.BTC-USD")["excluded"] == {"kraken": "down"}

    k.heartbeating = True
    tap.wait(lambda: all_is(tap, fakes, SYMS), 10, what="kraken back in depth.all")
    tap.wait(lambda: tap.get("status.kraken")["state"] == "live", what="status live")


def test_restart_of_one_ingest_leaves_the_other_venue_alone(stack):
    _, fakes, tap, _rng = stack
    b = fakes["binance"]
    tap.wait(lambda: all_is(tap, fakes, SYMS), what="depth.all")
    start = len(tap.log)
    b.restart()  # new epoch; the books are the same until the next change
    b.delta("BTC-USDT", [(99.75, 9.0)], [])
    tap.wait(
        lambda: (
            b.requested("book.") and depth_is(tap, "depth.binance.BTC-USDT", *b.top("BTC-USDT"))
        ),
        what="binance resynced",
    )
    tap.wait(lambda: all_is(tap, fakes, SYMS), what="depth.all with both venues")
    kraken_states = [m["state"] for _, t, m in tap.log[start:] if t == "depth.kraken.BTC-USD"]
    assert all(s == "live" for s in kraken_states), kraken_states
    assert all("kraken" in m["venues"] for _, t, m in tap.log[start:] if t == "depth.all.BTC-USD")


def test_a_book_an_ingest_restarted_without_is_dropped_not_stale_for_ever(stack):
    """binance's ingest comes back without ETH-USDT (its config changed): the venue's status
    lists BTC-USDT only and is live, ETH-USDT's last bbo says down, and the builder stops asking
    for it (it asked every RESYNC_RETRY_S for ever)."""
    _, fakes, tap, _rng = stack
    b = fakes["binance"]
    tap.wait(lambda: all_is(tap, fakes, SYMS), what="depth.all")
    b.call(lambda: b.books.pop("ETH-USDT"))
    b.restart()
    tap.wait(
        lambda: (
            tap.get("status.binance")["instruments"] == {"BTC-USDT": "live"}
            and tap.get("status.binance")["state"] == "live"
        ),
        what="binance live with BTC-USDT only",
    )
    assert tap.get("bbo.binance.ETH-USDT")["state"] == "down"
    since = time.monotonic()
    time.sleep(RESYNC_RETRY_S + 0.5)
    assert not b.requested("book.binance.ETH-USDT", since), "still asking for a dropped book"


def test_depth_is_built_only_for_topics_someone_subscribes_to(stack):
    """The builder's PUB is an XPUB: a depth topic nobody holds is not built; a subscriber that
    arrives gets its current value at once (no resync request needed), then every change."""
    _, fakes, tap, rng = stack
    b = fakes["binance"]
    tap.wait(lambda: all_is(tap, fakes, SYMS), what="depth.all")
    narrow = zmq.Context.instance().socket(zmq.SUB)  # bbo and hb only
    narrow.setsockopt(zmq.LINGER, 0)
    narrow.setsockopt(zmq.SUBSCRIBE, b"bbo.binance.")
    narrow.setsockopt(zmq.SUBSCRIBE, b"hb.book")
    narrow.connect(tap.pub_ep)
    tap.close()  # the tap held every topic: now nobody holds depth.*
    seen: dict[bytes, list[dict]] = {}

    def read(topic: bytes) -> list[dict]:
        while narrow.poll(20):
            t, payload = narrow.recv_multipart()
            seen.setdefault(t, []).append(orjson.loads(payload))
        return seen.get(topic, [])

    def depth_published_after(t_ns: int) -> int:
        hb = wait_until(
            lambda: [m for m in read(b"hb.book") if m["ts_pub"] > t_ns], 10, what="a heartbeat"
        )[0]
        return hb["stats"]["published"].get("depth", 0)

    try:
        wait_until(lambda: read(b"hb.book"), 10, what="connected")
        before = depth_published_after(time.time_ns())
        best_bid = b.top("BTC-USDT", 1)[0][0][0]
        for i in range(5):  # each one changes the top of book, so each one is a bbo
            b.delta("BTC-USDT", [(best_bid, 50.0 + i)], [])
        wait_until(
            lambda: [m["bid"] for m in read(b"bbo.binance.BTC-USDT")][-1] == [best_bid, 54.0],
            10,
            what="bbo flowing",
        )
        # a heartbeat sent after the last bbo plus the conflation interval (50 ms)
        after = depth_published_after(time.time_ns() + 200_000_000)
        assert after == before, "depth built for a topic nobody subscribes to"

        narrow.setsockopt(zmq.SUBSCRIBE, b"depth.binance.BTC-USDT")
        first = wait_until(lambda: read(b"depth.binance.BTC-USDT"), 10, what="depth at once")[0]
        bids, asks = b.top("BTC-USDT")
        assert first["bids"] == bids and first["asks"] == asks and first["state"] == "live"
        b.delta("BTC-USDT", *random_delta(100.0, rng))
        bids, asks = b.top("BTC-USDT")
        wait_until(
            lambda: read(b"depth.binance.BTC-USDT")[-1]["bids"] == bids,
            10,
            what="depth follows the book while subscribed",
        )
    finally:
        narrow.close(0)
