"""Per-client conflation, bounded queues, trade backlog notices and the writer, with a fake
socket; the hub's index and snapshots; the stats payload."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import socket
import time
from collections.abc import AsyncIterator
from dataclasses import replace
from socket import SO_RCVBUF, SO_SNDBUF, SOL_SOCKET
from typing import Any

import orjson
import pytest
from websockets.asyncio.client import connect
from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed

from services.gateway.clients import Client, Item, outgoing
from services.gateway.hub import Hub
from services.gateway.metrics import GatewayStats
from services.gateway.settings import Settings
from services.gateway.state import MarketState


class FakeWS:
    """The parts of a websockets connection the client writer uses: ``send_context`` (whose
    exit waits while ``block`` is clear, like flow control on a full socket), the sans-I/O
    ``protocol`` (a frame here is the message and a newline) and the ``transport``. What was
    written counts as sent once that wait is over."""

    remote_address = ("127.0.0.1", 4242)

    def __init__(self, block: bool = False) -> None:
        self.sent: list[dict[str, Any]] = []
        self.block = asyncio.Event()
        if not block:
            self.block.set()
        self.protocol = self
        self.transport: FakeWS | None = self
        self._frames: list[bytes] = []
        self._written: list[bytes] = []
        self.writes = 0  # socket writes

    @contextlib.asynccontextmanager
    async def send_context(self) -> AsyncIterator[None]:
        yield
        await self.block.wait()
        self.sent += [orjson.loads(f) for f in self._written]
        self._written.clear()

    def send_text(self, data: bytes) -> None:
        assert isinstance(data, bytes) and b"\n" not in data
        self._frames.append(data + b"\n")

    def data_to_send(self) -> list[bytes]:
        out, self._frames = self._frames, []
        return out

    def write(self, data: bytes) -> None:
        assert data.endswith(b"\n")
        self.writes += 1
        self._written += data.splitlines()

    def is_closing(self) -> bool:
        return False

    def abort(self) -> None:
        self.transport = None


def make_hub(**settings: Any) -> Hub:
    state = MarketState(venues=[("binance", ["BTC-USDT", "ETH-USDT"]), ("kraken", ["BTC-USD"])])
    state.set_book_alive(True)
    return Hub(state, replace(Settings(), **settings), GatewayStats())


def depth(n: int, venue: str = "binance", symbol: str = "BTC-USDT") -> dict[str, Any]:
    return {
        "v": 1,
        "epoch": "e",
        "seq": n,
        "ts_pub": time.time_ns(),
        "type": "depth",
        "venue": venue,
        "symbol": symbol,
        "state": "live",
        "bids": [[100.0 - i, float(n)] for i in range(50)],
        "asks": [[101.0 + i, float(n)] for i in range(50)],
        "ts_recv": n,
        "ts_ingest_pub": n,
    }


def trade(first: int, n: int = 1) -> dict[str, Any]:
    return {
        "v": 1,
        "seq": first,
        "ts_pub": time.time_ns(),
        "type": "trades",
        "venue": "binance",
        "symbol": "BTC-USDT",
        "trades": [{"price": 1.0, "size": 1.0, "side": "buy", "id": first + i} for i in range(n)],
        "ts_recv": first,
    }


def subscribe(client: Client, **req: Any) -> None:
    client.on_frame(orjson.dumps({"op": "subscribe", **req}))


async def settle(*clients: Client) -> None:
    for _ in range(50):
        await asyncio.sleep(0)
        if all(not c.control and not c.dirty for c in clients):
            break
    await asyncio.sleep(0)


def kinds(ws: FakeWS) -> list[str]:
    return [m["type"] for m in ws.sent]


def test_outgoing_strips_envelope_and_cuts_depth():
    out = outgoing("depth", depth(3), "update", 2)
    assert out["type"] == "update" and out["channel"] == "depth"
    assert len(out["bids"]) == 2 and out["bids"][0] == [100.0, 3.0]
    assert "seq" not in out and "epoch" not in out and "v" not in out and "ts_pub" not in out
    assert out["ts_book_pub"] > 0 and out["ts_recv"] == 3
    status = outgoing("status", {"type": "status", "state": "live", "stats": {"x": 1}})
    assert "stats" not in status
    item = Item("depth", "depth.binance.BTC-USDT", depth(1), 1)
    assert item.body(5) is item.body(5)  # encoded once per depth
    assert orjson.loads(item.body(5) + b"}")["bids"] == depth(1)["bids"][:5]


def test_interval_zero_sends_every_update_in_order():
    async def run() -> None:
        hub = make_hub()
        ws = FakeWS()
        c = hub.add(ws)  # type: ignore[arg-type]
        subscribe(
            c, channel="depth", venue="binance", symbol="BTC-USDT", depth=3, interval_ms=0, id=1
        )
        await settle(c)
        assert kinds(ws) == ["subscribed", "snapshot"] and ws.sent[1]["state"] == "unknown"
        for n in range(1, 6):
            hub.on_bus("depth.binance.BTC-USDT", depth(n))
            await settle(c)
        ups = [m for m in ws.sent if m["type"] == "update"]
        assert [m["bids"][0][1] for m in ups] == [1.0, 2.0, 3.0, 4.0, 5.0]
        assert all(len(m["bids"]) == 3 and m["id"] == 1 and m["ts_gw"] > 0 for m in ups)
        assert hub.stats.messages_sent == 7 and hub.stats.latency.hist.get_total_count() == 5

    asyncio.run(run())


def test_updates_that_arrive_in_one_loop_turn_go_out_in_one_socket_write():
    async def run() -> None:
        hub = make_hub()
        ws = FakeWS()
        c = hub.add(ws)  # type: ignore[arg-type]
        subscribe(c, channel="depth", venue="binance", symbol="BTC-USDT", interval_ms=0)
        subscribe(c, channel="depth", venue="binance", symbol="ETH-USDT", interval_ms=0)
        await settle(c)
        writes = ws.writes
        for n in range(1, 4):
            hub.on_bus("depth.binance.BTC-USDT", depth(n))
            hub.on_bus("depth.binance.ETH-USDT", depth(10 + n, symbol="ETH-USDT"))
        await settle(c)
        ups = [(m["symbol"], m["bids"][0][1]) for m in ws.sent if m["type"] == "update"]
        assert sorted(ups) == [("BTC-USDT", 1.0), ("BTC-USDT", 2.0), ("BTC-USDT", 3.0),
                               ("ETH-USDT", 11.0), ("ETH-USDT", 12.0), ("ETH-USDT", 13.0)]  # fmt: skip
        assert [b for s, b in ups if s == "BTC-USDT"] == [1.0, 2.0, 3.0]
        assert ws.writes == writes + 1 and hub.stats.messages_sent == len(ws.sent)

    asyncio.run(run())


def test_a_burst_larger_than_the_send_buffer_goes_out_in_chunks_in_order():
    async def run() -> None:
        hub = make_hub(send_buffer_bytes=2000)  # ~3 depth-50 updates per chunk
        ws = FakeWS()
        c = hub.add(ws)  # type: ignore[arg-type]
        subscribe(c, channel="depth", venue="binance", symbol="BTC-USDT", depth=50, interval_ms=0)
        subscribe(c, channel="bbo", venue="binance", symbol="BTC-USDT", id=2)
        await settle(c)
        writes = ws.writes
        for n in range(1, 41):
            hub.on_bus("depth.binance.BTC-USDT", depth(n))
        await settle(c)
        ups = [m["bids"][0][1] for m in ws.sent if m["type"] == "update"]
        assert ups == [float(n) for n in range(1, 41)]  # each once, in order
        assert ws.writes - writes >= 10  # several chunks, not one write
        assert hub.stats.messages_sent == c.sent == len(ws.sent)

    asyncio.run(run())


def test_a_message_that_cannot_be_encoded_closes_the_client_with_1011():
    """On a real connection: orjson refuses to encode past 254 nested levels; the client is
    closed with 1011 and a reason, not dropped."""

    async def run() -> None:
        hub = make_hub()
        served: asyncio.Future[Client] = asyncio.get_running_loop().create_future()

        async def handler(ws: ServerConnection) -> None:
            client = hub.add(ws)
            served.set_result(client)
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.shield(client.writer)  # type: ignore[arg-type]
            await ws.wait_closed()

        async with serve(handler, "127.0.0.1", 0, compression=None) as server:
            port = server.sockets[0].getsockname()[1]
            async with connect(f"ws://127.0.0.1:{port}", close_timeout=5) as peer:
                c = await asyncio.wait_for(served, 10)
                c.push(
                    {"type": "error", "deep": functools.reduce(lambda x, _: [x], range(300), [])}
                )
                with pytest.raises(ConnectionClosed):
                    await asyncio.wait_for(peer.recv(), 10)
                assert peer.close_code == 1011 and peer.close_reason == "internal error"

    asyncio.run(run())


def test_a_blocked_client_keeps_only_bounded_latest_values():
    async def run() -> None:
        hub = make_hub(queue_per_topic=4, trades_backlog=10)
        ws = FakeWS(block=True)
        c = hub.add(ws)  # type: ignore[arg-type]
        subscribe(c, channel="depth", venue="binance", symbol="BTC-USDT", interval_ms=0)
        subscribe(c, channel="depth", venue="binance", symbol="ETH-USDT", interval_ms=50)
        subscribe(c, channel="trades", venue="all", id="t")
        await settle(c)
        assert c.blocked_since is not None  # stuck in the first send
        for n in range(1, 101):
            hub.on_bus("depth.binance.BTC-USDT", depth(n))
            hub.on_bus("depth.binance.ETH-USDT", depth(n, symbol="ETH-USDT"))
            hub.on_bus("trade.binance.BTC-USDT", trade(n * 10, 3))
        slots = {s.topic: len(s.items) for sub in c.subs.values() for s in sub.slots.values()}
        assert slots == {"depth.binance.BTC-USDT": 4, "depth.binance.ETH-USDT": 1, "*": 3}
        assert hub.stats.dropped == 96 and hub.stats.conflated == 99
        assert hub.stats.trades_dropped == 300 - 9  # 3 batches of 3 <= 10 kept
        ws.block.set()  # the client reads again
        await settle(c)
        await asyncio.sleep(0.08)  # the 50 ms interval of the ETH subscription
        await settle(c)
        ups = [m for m in ws.sent if m["type"] == "update"]
        btc = [
            m["bids"][0][1] for m in ups if m["symbol"] == "BTC-USDT" and m["channel"] == "depth"
        ]
        assert btc == [97.0, 98.0, 99.0, 100.0]  # the latest 4, in order
        eth = [m["bids"][0][1] for m in ups if m["symbol"] == "ETH-USDT"]
        assert eth == [100.0]  # conflated: only the latest
        notice = next(m for m in ws.sent if m.get("code") == "trades_dropped")
        assert notice["count"] == 291 and notice["id"] == "t" and notice["type"] == "error"
        trades = [m for m in ups if m["channel"] == "trades"]
        assert len(trades) == 1, "backlog batched into one update per topic"
        assert [t["id"] for t in trades[0]["trades"]][-3:] == [1000, 1001, 1002]
        assert len(trades[0]["trades"]) == 9

    asyncio.run(run())


def test_interval_limits_rate_and_delivers_latest():
    async def run() -> None:
        hub = make_hub()
        ws = FakeWS()
        c = hub.add(ws)  # type: ignore[arg-type]
        hub.on_bus("depth.binance.BTC-USDT", depth(0))
        subscribe(c, channel="depth", venue="binance", symbol="BTC-USDT", interval_ms=100)
        await settle(c)
        t0 = time.monotonic()
        n = 0
        while time.monotonic() - t0 < 0.35:
            n += 1
            hub.on_bus("depth.binance.BTC-USDT", depth(n))
            await asyncio.sleep(0.005)

        def updates() -> list[dict]:
            return [m for m in ws.sent if m["type"] == "update"]

        deadline = time.monotonic() + 10
        while not (updates() and updates()[-1]["bids"][0][1] == float(n)):
            assert time.monotonic() < deadline, "the latest value was never delivered"
            await asyncio.sleep(0.01)
        ups = updates()
        # conflated: one update per interval_ms at most, whatever came meanwhile (+ the trailing)
        assert 2 <= len(ups) <= (time.monotonic() - t0) / 0.1 + 2, (len(ups), n)
        gaps = [b["ts_gw"] - a["ts_gw"] for a, b in zip(ws.sent[1:], ws.sent[2:], strict=False)]
        assert min(gaps) >= 80_000_000

    asyncio.run(run())


def test_index_routes_trades_by_venue_symbol_and_group():
    async def run() -> None:
        hub = make_hub()
        wss = [FakeWS() for _ in range(5)]
        cs = [hub.add(ws) for ws in wss]  # type: ignore[arg-type]
        subscribe(cs[0], channel="trades")
        subscribe(cs[1], channel="trades", venue="all", symbol="BTC-USD")  # the group
        subscribe(cs[2], channel="trades", venue="kraken")
        subscribe(cs[3], channel="trades", venue=["binance"], symbol="BTC-USDT")
        subscribe(cs[4], channel="trades", venue="binance", symbol="BTC-USD")  # binance's member
        await settle(*cs)
        hub.on_bus("trade.binance.BTC-USDT", trade(1))
        hub.on_bus("trade.kraken.BTC-USD", {**trade(2), "venue": "kraken", "symbol": "BTC-USD"})
        hub.on_bus("trade.binance.ETH-USDT", {**trade(3), "symbol": "ETH-USDT"})
        await settle(*cs)
        got = [[(m["venue"], m["symbol"]) for m in ws.sent if m["type"] == "update"] for ws in wss]
        assert got[0] == [("binance", "BTC-USDT"), ("kraken", "BTC-USD"), ("binance", "ETH-USDT")]
        assert got[1] == [("binance", "BTC-USDT"), ("kraken", "BTC-USD")]
        assert got[2] == [("kraken", "BTC-USD")]
        assert got[3] == [("binance", "BTC-USDT")]
        assert got[4] == [("binance", "BTC-USDT")]

    asyncio.run(run())


def test_unsubscribe_and_replace():
    async def run() -> None:
        hub = make_hub()
        ws = FakeWS()
        c = hub.add(ws)  # type: ignore[arg-type]
        subscribe(c, channel="bbo", venue="binance", symbol="BTC-USDT", id="a")
        subscribe(c, channel="bbo", venue="binance", symbol="BTC-USDT", id="a", interval_ms=10)
        assert len(c.subs) == 1 and next(iter(c.subs.values())).spec.interval_ms == 10
        assert sum(len(s) for s in hub.index.values()) == 1
        c.on_frame(orjson.dumps({"op": "unsubscribe", "id": "a"}))
        assert not c.subs and not hub.index
        c.on_frame(orjson.dumps({"op": "unsubscribe", "id": "a"}))
        await settle(c)
        assert kinds(ws)[-2:] == ["unsubscribed", "error"]
        assert ws.sent[-1]["code"] == "not_subscribed"

    asyncio.run(run())


def test_rate_limit_and_flood_close():
    async def run() -> None:
        hub = make_hub(max_messages_per_s=5.0)
        ws = FakeWS()
        c = hub.add(ws)  # type: ignore[arg-type]
        closed: list[tuple[int, str]] = []
        c.close = lambda code, reason: closed.append((code, reason))  # type: ignore[method-assign]
        for i in range(10):
            c.on_frame(orjson.dumps({"op": "ping", "id": i}))
        await settle(c)
        assert kinds(ws).count("pong") == 5
        assert [m["code"] for m in ws.sent if m["type"] == "error"] == ["rate_limited"] * 5
        for _ in range(60):
            c.on_frame(b'{"op":"ping"}')
        assert closed and closed[0][0] == 1008

    asyncio.run(run())


def test_replies_not_read_close_the_client():
    async def run() -> None:
        hub = make_hub(max_control_queue=10, max_messages_per_s=1000.0)
        ws = FakeWS(block=True)
        c = hub.add(ws)  # type: ignore[arg-type]
        closed: list[int] = []
        c.close = lambda code, reason: closed.append(code)  # type: ignore[method-assign]
        for _ in range(12):
            c.on_frame(b'{"op":"ping"}')
        await settle(c)
        assert closed[0] == 1008

    asyncio.run(run())


def test_watch_slow_closes_a_blocked_client():
    async def run() -> None:
        hub = make_hub(slow_client_timeout_s=0.05, close_timeout_s=0.05)
        ws = FakeWS(block=True)
        c = hub.add(ws)  # type: ignore[arg-type]
        closed: list[tuple[int, str]] = []
        c.close = lambda code, reason: closed.append((code, reason))  # type: ignore[method-assign]
        c.on_frame(b'{"op":"ping"}')
        await settle(c)
        hub.watch_slow()
        assert not closed
        await asyncio.sleep(0.1)
        hub.watch_slow()
        assert closed and closed[0][0] == 4000 and "slow client" in closed[0][1]
        assert hub.stats.slow_closed == 1

    asyncio.run(run())


def test_stats_and_status_ticks():
    async def run() -> None:
        hub = make_hub()
        ws = FakeWS()
        c = hub.add(ws)  # type: ignore[arg-type]
        hub.on_bus(
            "status.binance",
            {"ts_pub": 1, "state": "live", "instruments": {}, "stats": {"gaps": 2}},
        )
        hub.on_bus("hb.book", {"ts_pub": 1, "uptime_s": 5.0, "stats": {"latency_us": {}}})
        subscribe(c, channel="stats", venue="binance")
        subscribe(c, channel="status")
        await settle(c)
        snap = next(m for m in ws.sent if m["type"] == "snapshot" and m["channel"] == "stats")
        assert snap["venue"] == "binance" and snap["venues"]["binance"]["gaps"] == 2
        assert snap["book"]["uptime_s"] == 5.0 and snap["gateway"]["clients"] == 1
        status = next(m for m in ws.sent if m["type"] == "snapshot" and m["channel"] == "status")
        assert status["venues"]["binance"]["state"] == "live"
        assert status["venues"]["kraken"]["state"] == "down"
        hub.stats_tick()
        await settle(c)
        assert ws.sent[-1]["type"] == "update" and ws.sent[-1]["channel"] == "stats"
        hub.on_book("book", False)
        await settle(c)
        downs = [m for m in ws.sent if m["channel"] == "status" and m["type"] == "update"]
        assert {m["venue"]: m["state"] for m in downs} == {"binance": "down"}
        assert downs[-1]["book"] == "down"

    asyncio.run(run())


def test_a_burst_to_a_client_that_keeps_up_is_not_thinned():
    async def run() -> None:
        hub = make_hub(queue_per_topic=4, trades_backlog=10)
        ws = FakeWS()
        c = hub.add(ws)  # type: ignore[arg-type]
        subscribe(c, channel="bbo", venue="binance", symbol="BTC-USDT")
        subscribe(c, channel="trades", venue="all")
        await settle(c)
        for n in range(1, 41):  # one event-loop turn, as one bus drain delivers them
            hub.on_bus("bbo.binance.BTC-USDT", {**depth(n), "type": "bbo", "bid": [n, 1]})
            hub.on_bus("trade.binance.BTC-USDT", trade(n * 10, 2))
        await settle(c)
        bids = [m["bid"][0] for m in ws.sent if m["type"] == "update" and m["channel"] == "bbo"]
        assert bids == list(range(1, 41))
        trades = [t for m in ws.sent if m["channel"] == "trades" for t in m.get("trades", [])]
        assert len(trades) == 80 and hub.stats.dropped == 0 and hub.stats.trades_dropped == 0

    asyncio.run(run())


def test_a_client_that_stops_reading_holds_at_most_two_buffers_in_the_real_socket():
    """A real websockets server and client on loopback, with small kernel socket buffers: the
    client stops reading (its library's queue holds one message, then TCP pushes back). However
    many updates the writer has collected, the server's socket buffer stays within
    ``send_buffer_bytes`` plus one chunk of at most that, and the writer shows as blocked."""

    async def run() -> None:
        limit = 16_384
        hub = make_hub(send_buffer_bytes=limit, queue_per_topic=10_000)
        served: asyncio.Future[Client] = asyncio.get_running_loop().create_future()

        async def handler(ws: ServerConnection) -> None:
            ws.transport.get_extra_info("socket").setsockopt(SOL_SOCKET, SO_SNDBUF, 4096)
            client = hub.add(ws)
            served.set_result(client)
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.shield(client.writer)  # type: ignore[arg-type]

        async with serve(handler, "127.0.0.1", 0, write_limit=limit, compression=None) as server:
            sock = socket.socket()
            sock.setsockopt(SOL_SOCKET, SO_RCVBUF, 4096)
            sock.connect(server.sockets[0].getsockname())
            sock.setblocking(False)
            peer = await connect("ws://gateway/ws", sock=sock, max_queue=1, close_timeout=1)
            c = await asyncio.wait_for(served, 10)
            try:
                subscribe(
                    c, channel="depth", venue="binance", symbol="BTC-USDT", depth=50, interval_ms=0
                )
                most = 0
                for n in range(1, 2001):  # ~1.6 kB each, 400 (~640 kB) per loop turn
                    hub.on_bus("depth.binance.BTC-USDT", depth(n))
                    if n % 400 == 0:
                        for _ in range(5):
                            await asyncio.sleep(0)
                            most = max(most, c.ws.transport.get_write_buffer_size())
                assert c.blocked_since is not None  # stuck in a drain, not finished
                assert limit < most <= 2 * limit + 4096, most
            finally:
                c.detach()
                peer.transport.abort()

    asyncio.run(run())
