"""The bus Subscriber against a real Publisher over ZeroMQ on loopback.

Every book the Subscriber hands out is checked, at the seq it was delivered with, against the
publisher's own book at that seq: nothing wrong is ever delivered, whatever is lost on the way
(late join, high-water-mark overflow, publisher restart). Trades are counted, not repaired.
Also: ``common.follow.BookFollower`` and ``examples/follow_btc.py`` against the same publisher.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import subprocess
import threading
from collections import defaultdict
from typing import Any

import orjson
import pytest

from common.book import OrderBook
from common.bus import Subscriber, Upstream
from common.follow import BookFollower
from tests.buspub import ThreadPublisher, digest
from tests.procs import PY, ROOT, until, wait_until

pytestmark = pytest.mark.integration

TOPICS = [f"book.test.S{i}-USD" for i in range(4)]
PAD = "x" * 4000  # makes every message big: a flood overflows socket buffers fast


class CheckedMirror:
    """A Subscriber on its own loop thread that mirrors ``book.*`` topics and checks every
    delivered book against the publisher's truth at that (epoch, seq)."""

    def __init__(self, pub: ThreadPublisher, prefixes: list[str], rcvhwm: int = 200_000) -> None:
        self.pub = pub
        self.books: dict[str, OrderBook] = {}
        self.checked = 0
        self.wrong: list[str] = []
        self.stale: list[tuple[str, str]] = []
        self.trades: dict[str, list[int]] = defaultdict(list)  # delivered trade seqs
        self.delivered: dict[str, int] = defaultdict(int)  # book messages, per topic
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        upstream = [Upstream(pub.pub_ep, pub.control_ep, "test")]

        def make() -> Subscriber:
            sub = Subscriber(
                upstream, prefixes, self._on_message, on_stale=self._on_stale, rcvhwm=rcvhwm
            )
            sub.start(self.loop)
            return sub

        self.sub: Subscriber = self.call(make)

    def call(self, fn, *args):
        async def run():
            return fn(*args)

        return asyncio.run_coroutine_threadsafe(run(), self.loop).result(30)

    def _on_message(self, topic: str, msg: dict[str, Any]) -> None:
        if topic.startswith("trade."):
            self.trades[topic].append(msg["seq"])
            return
        if not topic.startswith("book."):
            return
        self.delivered[topic] += 1
        if msg["type"] == "snapshot":
            self.books[topic] = OrderBook()
        book = self.books.get(topic)
        if book is None:
            self.wrong.append(f"{topic} #{msg['seq']}: delta delivered before any snapshot")
            return
        book.apply(map(tuple, msg["bids"]), map(tuple, msg["asks"]))
        want = self.pub.truth.get((msg["epoch"], topic, msg["seq"]))
        self.checked += 1
        if want != digest(book):
            self.wrong.append(f"{topic} #{msg['seq']} ({msg['type']}): book differs from truth")

    def _on_stale(self, topic: str, reason: str) -> None:
        self.stale.append((topic, reason))
        self.books.pop(topic, None)

    def block(self) -> threading.Event:
        """Stop the subscriber's loop (nothing is read) until the returned event is set."""
        gate = threading.Event()
        self.loop.call_soon_threadsafe(gate.wait, 60)
        return gate

    def equal_to_publisher(self) -> bool:
        truth = self.pub.call(lambda: {t: digest(b) for t, b in self.pub.books.items()})
        ours = self.call(
            lambda: {t: digest(b) for t, b in self.books.items() if self.sub.usable(t)}
        )
        return ours == truth

    def close(self) -> None:
        async def stop() -> None:
            self.sub.close()
            await asyncio.sleep(0)  # let the cancelled watcher task finish
            self.loop.stop()

        asyncio.run_coroutine_threadsafe(stop(), self.loop)
        self.thread.join(5)


@pytest.fixture
def pub():
    p = ThreadPublisher()
    yield p
    p.close()


def test_late_joiner_gets_every_book_by_resync(pub: ThreadPublisher) -> None:
    for t in TOPICS:
        pub.call(pub.new_book, t)
    pub.call(pub.deltas, TOPICS, 400)
    mirror = CheckedMirror(pub, ["book."])
    try:
        wait_until(mirror.equal_to_publisher, 20, what="every book via resync")
        assert set(mirror.books) == set(TOPICS)
        pub.call(pub.deltas, TOPICS, 400)  # and it keeps up with the live stream
        wait_until(mirror.equal_to_publisher, 20, what="books follow the deltas")
        assert mirror.checked > 400
        assert mirror.wrong == []
    finally:
        mirror.close()


def test_prefixes_added_and_removed_while_running(pub: ThreadPublisher) -> None:
    """add_prefix: the topics under it arrive whole (snapshot first, by resync); remove_prefix:
    nothing more is delivered and the topics are forgotten."""
    for t in TOPICS:
        pub.call(pub.new_book, t)
    mirror = CheckedMirror(pub, ["book.test.S0-"])
    try:
        wait_until(lambda: set(mirror.books) == {TOPICS[0]}, 20, what="the first prefix")
        mirror.call(mirror.sub.add_prefix, "book.test.S1-")
        pub.call(pub.deltas, TOPICS, 50)
        wait_until(lambda: set(mirror.books) == set(TOPICS[:2]), 20, what="the added prefix")
        wait_until(
            lambda: (
                mirror.call(lambda: {t: digest(b) for t, b in mirror.books.items()})
                == pub.call(lambda: {t: digest(pub.books[t]) for t in TOPICS[:2]})
            ),
            20,
            what="both books equal the publisher's",
        )
        mirror.call(mirror.sub.remove_prefix, "book.test.S1-")
        assert TOPICS[1] not in mirror.call(lambda: dict(mirror.sub.topics))
        checked = mirror.checked
        pub.call(pub.deltas, [TOPICS[1]], 50)
        pub.call(pub.deltas, [TOPICS[0]], 1)  # a marker behind them on the same socket
        wait_until(lambda: mirror.checked > checked, 20, what="the marker delta")
        assert mirror.checked == checked + 1, "a removed prefix is still delivered"
        assert mirror.wrong == []
    finally:
        mirror.close()


def test_slow_consumer_overflow_is_detected_and_repaired(tmp_path) -> None:
    pub = ThreadPublisher(sndhwm=10)
    mirror = None
    try:
        for t in TOPICS:
            pub.call(pub.new_book, t)
        mirror = CheckedMirror(pub, ["book."], rcvhwm=10)
        wait_until(mirror.equal_to_publisher, 20, what="initial books")
        gate = mirror.block()

        def flood() -> None:  # ~24 MB: far beyond both HWMs and the kernel's socket buffers
            for i in range(6000):
                topic = TOPICS[i % len(TOPICS)]
                pub.delta(topic)
                pub.pub.publish(f"{topic}.pad", {"type": "pad", "pad": PAD})

        pub.call(flood)
        gate.set()
        wait_until(lambda: mirror.sub.stats.gaps > 0, 20, what="gap detected by seq")
        wait_until(mirror.equal_to_publisher, 30, what="books repaired by resync")
        assert mirror.stale, "the gap must be reported through on_stale"
        assert mirror.sub.stats.resyncs >= 2
        pub.call(pub.deltas, TOPICS, 200)
        wait_until(mirror.equal_to_publisher, 20, what="live again after the repair")
        assert mirror.wrong == [], mirror.wrong[:5]
        assert mirror.checked > len(TOPICS)
    finally:
        if mirror is not None:
            mirror.close()
        pub.close()


def test_publisher_restart_triggers_resync(pub: ThreadPublisher) -> None:
    for t in TOPICS:
        pub.call(pub.new_book, t)
    mirror = CheckedMirror(pub, ["book."])
    try:
        wait_until(mirror.equal_to_publisher, 20, what="initial books")
        old = pub.pub.epoch
        wait_until(lambda: mirror.sub.links[0].hb_epoch == old, 20, what="a heartbeat")
        new = pub.restart()
        assert new != old

        def resynced(epoch: str) -> bool:
            epochs = mirror.call(lambda: {mirror.sub.topics[t].epoch for t in TOPICS})
            return epochs == {epoch} and mirror.equal_to_publisher()

        # the dead connection, or the new epoch's heartbeat, makes the subscriber ask again
        wait_until(lambda: resynced(new), 20, what="books resynced in the new epoch")
        # the disconnect may already have triggered the resync; the new epoch is still seen
        wait_until(lambda: mirror.sub.stats.epochs_seen == 1, 20, what="the new epoch seen")
        pub.call(pub.deltas, TOPICS, 100)
        wait_until(mirror.equal_to_publisher, 20, what="books follow the new epoch")
        # a second restart, now with data first: a topic's new epoch also means resync
        newer = pub.restart()
        pub.call(pub.deltas, TOPICS, 100)
        wait_until(lambda: resynced(newer), 20, what="books resynced after a second restart")
        assert {t for t, _ in mirror.stale} == set(TOPICS)
        assert mirror.wrong == []
    finally:
        mirror.close()


def test_trade_gaps_are_counted_as_lost_not_repaired() -> None:
    pub = ThreadPublisher(sndhwm=10)
    mirror = None
    topic = "trade.test.S0-USD"
    trade = {"type": "trades", "trades": [{"price": 1.0, "size": 1.0, "side": "buy"}], "pad": PAD}
    try:
        mirror = CheckedMirror(pub, ["trade."], rcvhwm=10)
        wait_until(lambda: mirror.sub.links[0].alive, 20, what="subscriber connected")
        pub.call(pub.message, topic, trade, False)
        wait_until(lambda: mirror.trades[topic], 20, what="first trade")
        requests_before = pub.pub.resync_requests
        gate = mirror.block()
        pub.call(lambda: [pub.message(topic, trade, False) for _ in range(6000)])
        gate.set()
        last = 0

        def last_one_arrived() -> bool:  # a loss at the very end would be invisible: end live
            nonlocal last
            if not mirror.trades[topic] or mirror.trades[topic][-1] != last:
                last = pub.call(pub.message, topic, trade, False)
                return False
            return True

        wait_until(last_one_arrived, 30, interval=0.2, what="a trade after the flood arrives")
        seqs = mirror.call(lambda: list(mirror.trades[topic]))
        assert seqs == sorted(set(seqs)), "trades delivered in order, never twice"
        lost = mirror.sub.stats.lost_trades
        assert lost > 0
        assert lost + len(seqs) == seqs[-1]  # every published trade is delivered or counted
        assert pub.pub.resync_requests == requests_before, "trade gaps are not repaired"
    finally:
        if mirror is not None:
            mirror.close()
        pub.close()


def test_book_follower_gives_whole_books_and_latest_depth(pub: ThreadPublisher) -> None:
    pub.call(pub.new_book, TOPICS[0])
    depth = {"type": "depth", "state": "live", "bids": [[99.0, 1.0]], "asks": [[101.0, 2.0]]}
    pub.call(pub.message, "depth.all.S0-USD", depth)
    got: queue.Queue = queue.Queue()
    loop = asyncio.new_event_loop()
    calls: list[tuple[str, bool]] = []  # (topic, has a value) per on_book callback
    follower = BookFollower(
        [Upstream(pub.pub_ep, pub.control_ep, "test")],
        ["book.", "depth."],
        lambda topic, value: calls.append((topic, value is not None)),
    )

    async def consume() -> None:
        follower.start()
        try:
            async for topic, value in follower.updates():
                got.put((topic, digest(value) if isinstance(value, OrderBook) else value))
        except asyncio.CancelledError:
            pass
        finally:
            follower.close()

    thread = threading.Thread(target=loop.run_until_complete, args=(consume(),), daemon=True)
    thread.start()
    try:
        seen: dict[str, Any] = {}

        def latest(topic: str) -> Any:
            while not got.empty():
                t, v = got.get()
                seen[t] = v
            return seen.get(topic, "unset")

        def book_ok() -> bool:
            return latest(TOPICS[0]) == pub.call(lambda: digest(pub.books[TOPICS[0]]))

        wait_until(book_ok, 20, what="book via resync")
        wait_until(
            lambda: isinstance(d := latest("depth.all.S0-USD"), dict) and d["asks"] == [[101, 2]],
            20,
            what="latest depth via resync",
        )
        pub.call(pub.deltas, TOPICS[:1], 50)
        wait_until(book_ok, 20, what="book follows deltas")
        # the venue lost sync: the book is gone until the next snapshot
        pub.call(lambda: pub.pub.publish(TOPICS[0], {"type": "state", "state": "syncing"}))
        wait_until(lambda: latest(TOPICS[0]) is None, 20, what="book dropped on state")
        book_calls = [has for topic, has in calls if topic == TOPICS[0]]
        assert len(book_calls) >= 52 and book_calls[-1] is False  # snapshot, 50 deltas, state
    finally:
        loop.call_soon_threadsafe(lambda: [t.cancel() for t in asyncio.all_tasks(loop)])
        thread.join(5)


def test_book_follower_withdraws_what_a_silent_publisher_sent(pub: ThreadPublisher) -> None:
    """A publisher that stops (no heartbeat, no data, connection open: a stopped process) no
    longer vouches for its values: the follower delivers None for its book and its depth, and
    brings both back once the publisher is heard again."""
    pub.call(pub.new_book, TOPICS[0])
    depth = {"type": "depth", "state": "live", "bids": [[99.0, 1.0]], "asks": [[101.0, 2.0]]}
    pub.call(pub.message, "depth.all.S0-USD", depth)
    got: queue.Queue = queue.Queue()
    loop = asyncio.new_event_loop()
    follower = BookFollower(
        [Upstream(pub.pub_ep, pub.control_ep, "test")],
        ["book.", "depth."],
        lambda topic, value: got.put((topic, value is not None)),
        stale_after_s=1.0,
    )
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    asyncio.run_coroutine_threadsafe(asyncio.to_thread(lambda: None), loop).result(10)
    loop.call_soon_threadsafe(follower.start, loop)
    history: dict[str, list[bool]] = defaultdict(list)

    def has(topic: str, value: bool) -> bool:
        while not got.empty():
            t, v = got.get()
            history[t].append(v)
        return bool(history[topic]) and history[topic][-1] is value

    try:
        wait_until(
            lambda: has(TOPICS[0], True) and has("depth.all.S0-USD", True), 20, what="values"
        )
        # silent from now on, also to resync requests (as a stopped process is)
        pub.call(lambda: pub._hb.cancel())
        pub.call(setattr, pub.pub, "snapshot_provider", lambda prefixes: iter(()))
        wait_until(lambda: has(TOPICS[0], False), 20, what="book withdrawn")
        wait_until(lambda: has("depth.all.S0-USD", False), 20, what="depth withdrawn")
        assert follower.down == {"test"}
        assert follower.get(TOPICS[0]) is None and follower.get("depth.all.S0-USD") is None
        pub.call(setattr, pub.pub, "snapshot_provider", pub._snapshots)
        pub.call(pub.deltas, TOPICS[:1], 5)  # heard again: its data and heartbeats resume
        pub.call(pub._start_heartbeat)
        wait_until(lambda: has(TOPICS[0], True), 20, what="book back (a new snapshot)")
        wait_until(lambda: has("depth.all.S0-USD", True), 20, what="depth back")
        assert digest(follower.get(TOPICS[0])) == pub.call(lambda: digest(pub.books[TOPICS[0]]))
        assert follower.down == set()
    finally:
        loop.call_soon_threadsafe(follower.close)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)


async def book_received_then_deltas(pub: ThreadPublisher, n: int) -> Subscriber:
    """A messages()-mode Subscriber of ``book.`` that has received the snapshot of TOPICS[0]
    (nobody iterating yet), and ``n`` deltas of it published after that."""
    pub.call(pub.new_book, TOPICS[0])
    sub = Subscriber([Upstream(pub.pub_ep, pub.control_ep, "test")], ["book."])
    sub.start()
    await asyncio.to_thread(wait_until, lambda: sub.usable(TOPICS[0]), 20, what="snapshot")
    await asyncio.to_thread(pub.call, pub.deltas, TOPICS[:1], n)
    return sub


def test_messages_mode_keeps_what_arrives_before_the_consumer_iterates(
    pub: ThreadPublisher,
) -> None:
    """``async for ... in sub.messages()`` entered only after the first snapshot was received
    still starts with that snapshot, not with the deltas after it."""

    async def main() -> list[dict[str, Any]]:
        sub = await book_received_then_deltas(pub, 3)  # busy elsewhere until then
        try:
            out: list[dict[str, Any]] = []

            async def take() -> None:
                async for topic, msg in sub.messages():
                    if topic == TOPICS[0]:
                        out.append(msg)
                        if len(out) == 4:
                            return

            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(take(), 20)
            return out
        finally:
            sub.close()

    msgs = asyncio.run(main())
    assert [m["type"] for m in msgs] == ["snapshot", "delta", "delta", "delta"]
    assert [m["seq"] for m in msgs] == list(range(msgs[0]["seq"], msgs[0]["seq"] + 4))


def test_follow_btc_example_prints_consolidated_bbo(pub: ThreadPublisher) -> None:
    bbo = {
        "type": "bbo",
        "venue": "all",
        "symbol": "BTC-USD",
        "state": "live",
        "venues": ["binance", "kraken"],
        "excluded": {},
        "bid": [65000.5, 1.5, "binance"],
        "ask": [65001.25, 0.75, "kraken"],
        "bid_venues": {"binance": 1.0, "kraken": 0.5},
        "ask_venues": {"kraken": 0.75},
        "spread_bps": 0.1154,
        "crossed": False,
    }
    depth = {"type": "depth", "venue": "all", "symbol": "BTC-USD", "state": "live"}
    depth |= {"venues": ["binance", "kraken"], "bids": [[65000.5, 1.5, {"binance": 1.0}]] * 3}
    depth["asks"] = [[65001.25, 0.75, {"kraken": 0.75}]] * 2
    pub.call(pub.message, "depth.all.BTC-USD", depth)
    pub.call(pub.message, "bbo.all.BTC-USD", bbo)  # before the example starts: resync only
    proc = subprocess.Popen(
        [
            *(PY, "examples/follow_btc.py", "--endpoint", pub.pub_ep, "--control", pub.control_ep),
            *("--silent-after", "1"),
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines: queue.Queue = queue.Queue()
    threading.Thread(target=lambda: [lines.put(x) for x in proc.stdout], daemon=True).start()
    out: list[str] = []

    def printed(text: str) -> bool:
        while not lines.empty():
            out.append(lines.get())
        return any(text in line for line in out)

    try:
        wait_until(lambda: printed("# resync: start"), 20, what="resync at start")
        wait_until(
            lambda: printed("bid 65000.5 x 1.5 [binance:1.0 kraken:0.5]  ask 65001.25 x 0.75"),
            20,
            what="bbo from the resync",
        )
        pub.call(pub.skip, "bbo.all.BTC-USD", 3)
        pub.call(pub.message, "bbo.all.BTC-USD", {**bbo, "bid": [65000.75, 2.0, "kraken"]})
        wait_until(lambda: printed("3 message(s) missed"), 20, what="gap noticed")
        wait_until(lambda: printed("bid 65000.75 x 2.0"), 20, what="new bbo")
        perp = {**bbo, "symbol": "BTC-USD-PERP", "bid": [99999.5, 1.0, "bybit"]}
        pub.call(pub.message, "bbo.all.BTC-USD-PERP", perp)  # matches the prefix BTC-USD
        pub.call(pub.message, "bbo.all.BTC-USD", {**bbo, "bid": [65000.8, 2.0, "kraken"]})
        wait_until(lambda: printed("bid 65000.8 x 2.0"), 20, what="bbo after the perp one")
        assert not printed("99999.5"), "a BTC-USD-PERP update was shown as BTC-USD"
        assert printed("depth 3x2 from binance,kraken")
        assert printed("spread 0.75 (0.1154 bps)")
        pub.restart()  # a new epoch: the example asks again and shows the current bbo
        wait_until(lambda: printed("publisher restarted"), 20, what="restart noticed")
        wait_until(lambda: printed("#1 bid 65000.8 x 2.0"), 20, what="bbo of the new epoch")
        pub.call(lambda: pub._hb.cancel())  # the book builder stops: nothing comes any more
        wait_until(lambda: printed("book builder silent for 1s: down"), 20, what="silence noticed")
        pub.call(pub._start_heartbeat)
        wait_until(lambda: printed("# resync: book builder heard again"), 20, what="back")
    finally:
        proc.terminate()
        proc.wait(10)
        print("".join(out))


class _CuttableProxy:
    """A TCP proxy on loopback whose connections can be cut (a network blip)."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.writers: list[asyncio.StreamWriter] = []
        self.open = True

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if not self.open:
            writer.close()
            return
        up_r, up_w = await asyncio.open_connection("127.0.0.1", self.target_port)
        self.writers += [writer, up_w]

        async def pipe(a: asyncio.StreamReader, b: asyncio.StreamWriter) -> None:
            try:
                while data := await a.read(65536):
                    b.write(data)
                    await b.drain()
            except (ConnectionError, OSError):
                pass
            finally:
                b.close()

        await asyncio.gather(pipe(reader, up_w), pipe(up_r, writer))

    def cut(self) -> None:
        for w in self.writers:
            w.transport.abort()
        self.writers.clear()


def test_reconnect_to_the_same_publisher_resyncs_stateless_topics() -> None:
    """A bbo published while the TCP link was down is not lost: after the reconnect the
    Subscriber asks for the current state (the publisher's epoch did not change)."""
    import zmq

    from common.bus import Publisher

    async def main() -> None:
        loop = asyncio.get_running_loop()
        pub = Publisher("t", "tcp://127.0.0.1:*", "tcp://127.0.0.1:*", track_subscriptions=True)
        current = {"bbo.x.A": 1}
        pub.snapshot_provider = lambda prefixes: [
            (t, {"type": "bbo", "value": v})
            for t, v in current.items()
            if any(t.startswith(p) for p in prefixes)
        ]
        pub.attach(loop)
        port = int(pub.pub.getsockopt_string(zmq.LAST_ENDPOINT).rsplit(":", 1)[1])
        control = pub.control.getsockopt_string(zmq.LAST_ENDPOINT)
        proxy = _CuttableProxy(port)
        server = await asyncio.start_server(proxy.handle, "127.0.0.1", 0)
        via = f"tcp://127.0.0.1:{server.sockets[0].getsockname()[1]}"

        async def beat() -> None:
            while True:
                pub.heartbeat({})
                await asyncio.sleep(0.2)

        beats = loop.create_task(beat())
        seen: dict[str, Any] = {}
        states: list[bool] = []
        sub = Subscriber(
            [Upstream(via, control, "t")],
            ["bbo."],
            lambda t, m: seen.__setitem__(t, m.get("value", seen.get(t))),
            on_upstream=lambda _, alive: states.append(alive),
            stale_after_s=1.0,
        )
        sub.start(loop)
        try:
            await until(lambda: seen.get("bbo.x.A") == 1)
            proxy.open = False
            proxy.cut()
            await until(lambda: states and states[-1] is False)
            current["bbo.x.A"] = 2
            pub.publish("bbo.x.A", {"type": "bbo", "value": 2})  # nobody connected
            proxy.open = True
            await until(lambda: seen.get("bbo.x.A") == 2)
        finally:
            beats.cancel()
            sub.close()
            pub.close()
            server.close()
            await asyncio.sleep(0)  # let the cancelled tasks finish

    asyncio.run(main())


def test_every_subscriber_of_a_prefix_is_reported_to_the_publisher() -> None:
    """XPUB_VERBOSE: a second subscriber of the same topic is reported too, so the book builder
    can send it the current value; the prefix is dropped only when the last one leaves."""
    import zmq

    from common.bus import Publisher

    async def main() -> None:
        loop = asyncio.get_running_loop()
        pub = Publisher("t", "tcp://127.0.0.1:*", "tcp://127.0.0.1:*", track_subscriptions=True)
        events: list[tuple[str, bool]] = []
        pub.on_subscription = lambda p, added: events.append((p, added))
        pub.attach(loop)
        endpoint = pub.pub.getsockopt_string(zmq.LAST_ENDPOINT)
        ctx = zmq.Context.instance()
        subs = []
        try:
            for _ in range(2):
                s = ctx.socket(zmq.SUB)
                s.setsockopt(zmq.LINGER, 0)
                s.setsockopt(zmq.SUBSCRIBE, b"depth.x.A")
                s.connect(endpoint)
                subs.append(s)
            await until(lambda: events.count(("depth.x.A", True)) == 2)
            assert pub.wanted("depth.x.A") and not pub.wanted("depth.x.B")
            subs[0].close(0)
            await asyncio.sleep(0.3)  # time for a wrong "dropped" to arrive
            assert pub.wanted("depth.x.A"), "the second subscriber still holds it"
            subs[1].close(0)
            await until(lambda: ("depth.x.A", False) in events)
            assert not pub.wanted("depth.x.A")
        finally:
            for s in subs:
                s.close(0)
            pub.close()

    asyncio.run(main())


def test_a_socket_that_fails_stops_being_read_instead_of_spinning(caplog) -> None:
    """A ZeroMQ error other than EAGAIN (here: the context is terminated under the reader)
    makes ``FdReader`` log it and drop the FD from the loop. Left registered, a readable FD
    would call the reader again and again: a busy loop, which under real-time scheduling
    takes a whole CPU."""
    import zmq

    from common.bus import FdReader

    async def scenario() -> tuple[int, bool]:
        loop = asyncio.get_running_loop()
        ctx = zmq.Context()
        pub = ctx.socket(zmq.PUB)
        port = pub.bind_to_random_port("tcp://127.0.0.1")
        sub = ctx.socket(zmq.SUB)
        sub.subscribe(b"")
        sub.connect(f"tcp://127.0.0.1:{port}")
        got: list[list[bytes]] = []
        reader = FdReader(sub, got.append, loop)
        await until(lambda: pub.send_multipart([b"t", b"1"]) or got, 10, "first message")
        pub.close(0)
        term = threading.Thread(target=ctx.term, daemon=True)  # returns once sub is closed
        term.start()

        def terminating() -> bool:
            try:
                sub.getsockopt(zmq.EVENTS)
            except zmq.ContextTerminated:
                return True
            return False

        await until(terminating, 10, "the context terminating")
        reader.drain()  # what the loop calls when the FD is readable
        still_watched = loop.remove_reader(reader.fd)
        sub.close(0)
        term.join(10)
        return len(got), still_watched

    with caplog.at_level("ERROR", logger="flowbook.bus"):
        received, still_watched = asyncio.run(scenario())
    assert received >= 1
    assert not still_watched, "the failed socket's FD is still registered with the loop"
    assert "no longer reading it" in caplog.text


def test_control_socket_says_how_many_topics_a_resync_covers(pub: ThreadPublisher) -> None:
    """A resync naming nothing the publisher has (a misspelt group) is answered ``matched: 0``
    rather than a bare ok followed by silence; an empty list is refused."""
    import zmq

    for t in TOPICS[:2]:
        pub.call(pub.new_book, t)
    dealer = zmq.Context.instance().socket(zmq.DEALER)
    dealer.setsockopt(zmq.LINGER, 0)
    dealer.connect(pub.control_ep)

    def ask(req: dict[str, Any]) -> dict[str, Any]:
        dealer.send(orjson.dumps(req))
        assert dealer.poll(10_000), "no reply"
        return orjson.loads(dealer.recv())

    try:
        assert ask({"op": "resync", "topics": ["book.test."]})["matched"] == 2
        assert ask({"op": "resync", "topics": [TOPICS[0]]})["matched"] == 1
        nothing = ask({"op": "resync", "topics": ["book.test.S0-USDT"]})
        assert nothing["ok"] is True and nothing["matched"] == 0
        empty = ask({"op": "resync", "topics": []})
        assert empty["ok"] is False and "empty" in empty["error"]
        assert ask({"op": "resync"})["matched"] >= 2  # no topics: every topic (heartbeats too)
    finally:
        dealer.close()


def test_a_consumer_that_falls_behind_is_told_and_gets_the_book_again(
    pub: ThreadPublisher, monkeypatch: pytest.MonkeyPatch
) -> None:
    """messages() mode with a small bound: the deltas past it are lost, so right after the last
    queued one comes a ``state`` message (stale); once the consumer reads again, a snapshot
    brings the book back, equal to the publisher's."""
    import common.bus

    monkeypatch.setattr(common.bus, "QUEUE_MAX", 10)

    async def main() -> list[dict[str, Any]]:
        sub = await book_received_then_deltas(pub, 30)  # and we do not read
        try:
            await asyncio.to_thread(
                wait_until, lambda: sub.stats.overflows > 0, 20, what="overflow"
            )
            got: list[dict[str, Any]] = []

            async def take() -> None:
                async for topic, msg in sub.messages():
                    if topic == TOPICS[0]:
                        got.append(msg)
                        if msg["type"] == "snapshot" and len(got) > 1:
                            return

            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(take(), 30)
            return got
        finally:
            sub.close()

    got = asyncio.run(main())
    kinds = [m["type"] for m in got]
    assert kinds[0] == "snapshot" and "state" in kinds, kinds
    stale = kinds.index("state")
    assert got[stale]["state"] == "stale" and kinds[1:stale] == ["delta"] * (stale - 1)
    assert kinds[-1] == "snapshot", kinds  # the book again, after the notice
    book = OrderBook()
    book.apply(map(tuple, got[-1]["bids"]), map(tuple, got[-1]["asks"]))
    assert digest(book) == pub.call(lambda: digest(pub.books[TOPICS[0]]))


def test_a_topic_on_two_publishers_is_followed_from_one(pub: ThreadPublisher) -> None:
    """``trade.*`` is published by ingest and again by the book builder, each with its own epoch
    and seq. One Subscriber on both delivers each trade once, from the first publisher heard,
    and still counts that publisher's gaps; if it goes away, the other takes over."""
    other = ThreadPublisher("other")
    topic = "trade.test.S0-USD"
    got: list[tuple[str, int]] = []
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    ups = [
        Upstream(pub.pub_ep, pub.control_ep, "test"),
        Upstream(other.pub_ep, other.control_ep, "other"),
    ]

    def on_message(t: str, msg: dict[str, Any]) -> None:
        if t == topic:
            got.append((msg["epoch"], msg["trades"][0]["id"]))

    async def make() -> Subscriber:
        sub = Subscriber(ups, ["trade."], on_message, stale_after_s=3.0)
        sub.start()
        return sub

    sub = asyncio.run_coroutine_threadsafe(make(), loop).result(10)
    try:
        wait_until(lambda: all(lk.joined for lk in sub.links), 20, what="both heard")

        def trade(p: ThreadPublisher, i: int) -> None:
            p.call(p.message, topic, {"type": "trades", "trades": [{"id": i}]}, False)

        for i in range(1, 6):  # the same trades, sent by both
            trade(pub, i)
            trade(other, i)
        wait_until(lambda: len(got) >= 5 and sub.stats.duplicates >= 5, 20, what="trades")
        first = got[0][0]
        assert [i for _, i in got] == [1, 2, 3, 4, 5] and {e for e, _ in got} == {first}
        assert sub.stats.lost_trades == 0  # the two seq series did not break each other
        source = pub if first == pub.pub.epoch else other
        spare = other if source is pub else pub
        source.call(source.skip, topic, 2)  # its next trade is 2 seqs late
        trade(source, 6)
        trade(spare, 6)
        wait_until(lambda: sub.stats.lost_trades == 2, 20, what="the first publisher's gap")
        source.call(lambda: source._hb.cancel())  # it goes silent: the other takes over
        wait_until(lambda: not all(lk.alive for lk in sub.links), 20, what="first one down")
        trade(spare, 7)
        wait_until(lambda: got[-1] == (spare.pub.epoch, 7), 20, what="trade from the other")
    finally:
        loop.call_soon_threadsafe(sub.close)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)
        other.close()


def test_a_forgotten_topic_is_not_asked_for_until_its_publisher_snapshots_it(
    pub: ThreadPublisher,
) -> None:
    """``forget``: the consumer says the publisher no longer carries a topic. A message of it
    still on its way (here after a lost one) is neither delivered nor a reason to ask for a
    snapshot; a snapshot from the publisher makes it followed again."""
    for t in TOPICS:
        pub.call(pub.new_book, t)
    mirror = CheckedMirror(pub, ["book."])
    try:
        wait_until(mirror.equal_to_publisher, 20, what="initial books")
        gone, others = TOPICS[0], TOPICS[1:]
        mirror.call(mirror.sub.forget, gone)
        before = mirror.call(lambda: (mirror.delivered[gone], mirror.sub.stats.resyncs))
        pub.call(pub.skip, gone, 1)
        pub.call(pub.delta, gone)
        counts = mirror.call(lambda: {t: mirror.delivered[t] for t in others})
        pub.call(pub.deltas, others, 30)  # sent after it: once they are in, so was it
        wait_until(
            lambda: mirror.call(lambda: all(mirror.delivered[t] > counts[t] + 9 for t in others)),
            20,
            what="the other topics' deltas",
        )
        assert mirror.call(lambda: (mirror.delivered[gone], mirror.sub.stats.resyncs)) == before
        assert not mirror.call(lambda: mirror.sub.usable(gone))
        pub.call(pub.new_book, gone)
        wait_until(lambda: mirror.call(lambda: mirror.sub.usable(gone)), 20, what="followed again")
        wait_until(mirror.equal_to_publisher, 20, what="every book whole")
        assert mirror.wrong == []
    finally:
        mirror.close()
