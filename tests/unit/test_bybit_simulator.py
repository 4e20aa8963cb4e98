"""The simulator's Bybit dialect, without sockets: its frames go through the real ingest plugin
and sync machines, which must hold exactly the simulator's top-50 book after every event."""

from __future__ import annotations

import asyncio
import random
from types import SimpleNamespace

import orjson
import pytest

from common.model import BookUpdate as IngestUpdate
from common.model import ConnectionSpec, TradeBatch
from services.ingest.sync import Resync
from services.simulator.assets import fmt8
from services.simulator.faults import FaultRequest
from services.simulator.market import Market
from services.simulator.venue import VenueServer
from tests.venues import SyncLog, plugin_for, sync_for

SYMBOLS = ["spot:BTCUSDT", "linear:BTCUSDT", "spot:ETHUSDT", "linear:ETHUSDT"]


class Conn:
    """The part of a server connection a dialect session reads: its path and its messages."""

    def __init__(self, path: str, messages: list[dict]) -> None:
        self.request = SimpleNamespace(path=path)
        self.messages = [orjson.dumps(m) for m in messages]

    async def __aiter__(self):
        for m in self.messages:
            yield m


class Listener:
    """A connected client as the dialect sees it: subscriptions, state, and what it is sent."""

    def __init__(self, venue: VenueServer, category: str, messages: list[dict]) -> None:
        self.conn = Conn(f"/v5/public/{category}", messages)
        self.subs: set[str] = set()
        self.state: dict = {}
        self.frames: list[bytes] = []
        venue.clients.add(self)
        asyncio.run(venue.dialect.ws_session(self))

    def push(self, frame: bytes, symbol: str | None = None) -> None:
        self.frames.append(frame)

    def take(self) -> list[bytes]:
        out, self.frames = self.frames, []
        return out


def venue() -> VenueServer:
    return VenueServer("bybit", "127.0.0.1", 0, "USDT", ["BTC", "ETH"], Market(5), 5, 100.0)


def sub(args: list[str], op: str = "subscribe") -> dict:
    return {"req_id": "t", "op": op, "args": args}


def sim_top(v: VenueServer, symbol: str, depth: int = 50):
    book = v.books[symbol]
    te, se = book.inst.tick_e8, book.inst.step_e8
    bids, asks = book.top(depth)
    conv = [(float(fmt8(p * te)), float(fmt8(q * se))) for p, q in bids]
    return conv, [(float(fmt8(p * te)), float(fmt8(q * se))) for p, q in asks]


class Ingest:
    """The real parser + one sync machine per book, fed with one listener's frames."""

    def __init__(self, category: str) -> None:
        self.plugin = plugin_for("bybit")
        spec = ConnectionSpec("ws://x", [], [], extra={"category": category})
        self.parser = self.plugin.new_parser(spec)
        kind = "perp" if category == "linear" else "spot"
        self.logs = {
            f"{category}:{b}USDT": SyncLog(
                sync_for(self.plugin, f"{category}:{b}USDT", b, "USDT", kind)
            )
            for b in ("BTC", "ETH")
        }
        self.trades: list = []
        self.touched: set[str] = set()

    def feed(self, frames: list[bytes]) -> None:
        for frame in frames:
            for ev in self.parser.parse(frame, 0):
                if isinstance(ev, IngestUpdate):
                    self.logs[ev.native].feed(ev)
                    self.touched.add(ev.native)
                elif isinstance(ev, TradeBatch):
                    self.trades.extend(ev.trades)


def run(v: VenueServer, n: int, rng: random.Random, symbols=SYMBOLS) -> list:
    """Emit ``n`` book events (with trades) through the venue's fault path and dialect."""
    emitted = []
    for k in range(n):
        symbol = rng.choice(symbols)
        update = v.market.update(v.books[symbol], 1_700_000_000_000 + k, rng.randint(0, 2))
        emitted.append(update)
        v._emit(update)
    return emitted


def test_acks_and_pongs_have_each_category_shape():
    v = venue()
    spot = Listener(v, "spot", [{"op": "ping"}, sub(["publicTrade.BTCUSDT"])])
    linear = Listener(v, "linear", [{"op": "ping"}, sub(["orderbook.500.BTCUSDT"])])
    pong, ack = (orjson.loads(f) for f in spot.take())
    assert pong == {"success": True, "ret_msg": "pong", "conn_id": pong["conn_id"], "op": "ping"}
    assert ack["ret_msg"] == "subscribe" and ack["req_id"] == "t" and ack["success"]
    pong, nack = (orjson.loads(f) for f in linear.take())
    assert pong["req_id"] == "" and pong["ret_msg"] == "pong"
    assert nack["success"] is False and "orderbook.500.BTCUSDT" in nack["ret_msg"]
    assert spot.subs == {"spot/publicTrade.BTCUSDT"} and not linear.subs


def test_spot_subscribe_over_ten_args_is_refused():
    v = venue()
    args = ["orderbook.50.BTCUSDT", "publicTrade.BTCUSDT"] * 3 + ["publicTrade.ETHUSDT"] * 5
    client = Listener(v, "spot", [sub(args)])
    (nack,) = (orjson.loads(f) for f in client.take())
    assert nack["success"] is False and not client.subs


def test_ingest_books_equal_the_simulator_top_50_after_every_event_and_faults_are_seen():
    v = venue()
    rng = random.Random(1)
    topics = ["orderbook.50.BTCUSDT", "publicTrade.BTCUSDT", "orderbook.50.ETHUSDT"]
    spot, linear = Listener(v, "spot", [sub(topics)]), Listener(v, "linear", [sub(topics)])
    ingest = {"spot": Ingest("spot"), "linear": Ingest("linear")}
    for cat, client in (("spot", spot), ("linear", linear)):
        ingest[cat].feed(client.take())
    for _ in range(600):
        (update,) = run(v, 1, rng)
        for cat, client in (("spot", spot), ("linear", linear)):
            ingest[cat].feed(client.take())
        symbol = update.inst.symbol
        cat = symbol.partition(":")[0]
        sync = ingest[cat].logs[symbol].sync
        assert sync.state == "live"
        assert sync.book.top(60) == sim_top(v, symbol)
        assert (len(sync.book.bids), len(sync.book.asks)) == (50, 50)
    for ing in ingest.values():
        assert all(log.resyncs == [] for log in ing.logs.values())
    assert {t.native for t in ingest["linear"].trades} == {"linear:BTCUSDT"}

    # gap: one update of linear BTC applied but not sent -> u jumps, only that book resyncs
    v.inject(FaultRequest("bybit", "gap", "linear:BTCUSDT"))
    for _ in range(100):
        if ingest["linear"].logs["linear:BTCUSDT"].resyncs:
            break
        run(v, 1, rng, ["linear:BTCUSDT"])
        ingest["linear"].feed(linear.take())
    (gap,) = ingest["linear"].logs["linear:BTCUSDT"].resyncs
    assert isinstance(gap, Resync) and gap.kind == "gap"
    assert ingest["spot"].logs["spot:BTCUSDT"].resyncs == []
    # the runner's answer: unsubscribe + subscribe of that topic -> a fresh snapshot
    plugin = ingest["linear"].plugin
    inst = ingest["linear"].logs["linear:BTCUSDT"].sync.inst
    linear.conn = Conn("/v5/public/linear", [orjson.loads(m) for m in plugin.resubscribe(inst)])
    asyncio.run(v.dialect.ws_session(linear))
    ingest["linear"].feed(linear.take())
    sync = ingest["linear"].logs["linear:BTCUSDT"].sync
    assert sync.state == "live" and sync.book.top(60) == sim_top(v, "linear:BTCUSDT")

    # reset: a snapshot with u == 1 mid-stream replaces the book, no gap
    v.inject(FaultRequest("bybit", "reset", "linear:BTCUSDT"))
    run(v, 1, rng, ["linear:BTCUSDT"])
    frames = linear.take()
    assert any(orjson.loads(f).get("data", {}).get("u") == 1 for f in frames)
    ingest["linear"].feed(frames)
    run(v, 5, rng, ["linear:BTCUSDT"])
    ingest["linear"].feed(linear.take())
    log = ingest["linear"].logs["linear:BTCUSDT"]
    assert len(log.resyncs) == 1 and log.sync.state == "live" and 1 <= log.sync.last_id <= 6
    assert log.sync.book.top(60) == sim_top(v, "linear:BTCUSDT")


def test_trades_carry_every_fill_with_the_taker_side():
    v = venue()
    rng = random.Random(2)
    client = Listener(v, "linear", [sub(["publicTrade.ETHUSDT"])])
    client.take()
    ing = Ingest("linear")
    emitted = run(v, 300, rng, ["linear:ETHUSDT", "spot:ETHUSDT"])
    ing.feed(client.take())
    fills = [t for u in emitted if u.inst.symbol == "linear:ETHUSDT" for t in u.trades]
    assert len(fills) > 100
    assert [t.side for t in ing.trades] == ["sell" if f.taker_sell else "buy" for f in fills]
    inst = v.instruments["linear:ETHUSDT"]
    assert [t.price for t in ing.trades] == [float(fmt8(f.price * inst.tick_e8)) for f in fills]
    assert len({t.trade_id for t in ing.trades}) == len(fills)


def test_instruments_info_pages_through_the_plugin_and_429_fault():
    v = venue()
    plugin = plugin_for("bybit", page_limit=1)

    def get(req):
        path = req.url.removeprefix(plugin.cfg.rest_url)
        reply = asyncio.run(v.dialect.http_get(path, dict(req.params)))
        return reply

    bodies, pages = [], 0
    for req in plugin.metadata_requests():
        page = req
        while page is not None:
            reply = get(page)
            assert reply.status == 200
            bodies.append(reply.body)
            pages += 1
            page = plugin.metadata_next(page, reply.body)
    assert pages == 1 + 6  # spot in one answer; linear: 2 bases x (perp, future, USDC perp)
    insts = plugin.parse_metadata(bodies)
    assert [(i.symbol, i.native) for i in insts] == [
        ("BTC-USDT", "spot:BTCUSDT"),
        ("ETH-USDT", "spot:ETHUSDT"),
        ("BTC-USDT-PERP", "linear:BTCUSDT"),
        ("ETH-USDT-PERP", "linear:ETHUSDT"),
    ]
    assert insts[0].price_precision == 2 and insts[0].qty_precision == 5
    v.inject(FaultRequest("bybit", "rest429", None, count=1))
    reply = get(plugin.metadata_requests()[0])
    assert reply.status == 429 and ("Retry-After", "1") in reply.headers
    assert orjson.loads(reply.body)["retCode"] == 10006
    assert get(plugin.metadata_requests()[0]).status == 200


@pytest.mark.parametrize("path", ["/v5/public/inverse", "/stream"])
def test_other_ws_paths_are_refused(path):
    assert venue().dialect.ws_accept(path, {}).status == 404
