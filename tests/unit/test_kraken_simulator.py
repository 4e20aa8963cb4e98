"""The simulator's Kraken dialect, driven update by update in-process, read over a real loopback
WebSocket by the real Kraken plugin and sync: its frames parse, every checksum verifies, the
client's truncated book equals the simulator's top N, and the gap and checksum faults break the
checksum exactly as a lost or corrupted message would, until a resubscribe repairs the book."""

from __future__ import annotations

import asyncio

import httpx
import orjson
from websockets.asyncio.client import connect

from common.model import BookUpdate, TradeBatch
from services.ingest.sync import InstrumentSync, Publish, Resync
from services.simulator.dialects.kraken_wire import asset_pair, kraken_instrument, render_book
from services.simulator.faults import FaultRequest
from services.simulator.market import Market
from services.simulator.venue import VenueServer
from tests.venues import plugin_for

BASES = ["BTC", "DOGE"]


class Harness:
    """One simulated Kraken venue and one client doing what the ingest runner does."""

    def __init__(self) -> None:
        self.market = Market(5)
        self.venue = VenueServer("kraken", "127.0.0.1", 0, "USD", BASES, self.market, 5, 0)
        self.plugin = plugin_for("kraken", quote="USD", bases=tuple(BASES))
        self.syncs: dict[str, InstrumentSync] = {}
        self.resyncs: list[tuple[str, Resync]] = []
        self.trades: list = []
        self.acks = 0
        self.malformed: list[str] = []  # frames that were not JSON, as the ingest skips them
        self.ts = 1_700_000_000_000

    async def start(self) -> None:
        await self.venue.start()
        base = f"http://127.0.0.1:{self.venue.port}"
        async with httpx.AsyncClient() as http:
            body = (await http.get(base + "/0/public/AssetPairs")).content
        insts = self.plugin.parse_metadata([body])
        self.syncs = {i.native: InstrumentSync(i, self.plugin) for i in insts}
        spec = self.plugin.connections(insts)[0]
        self.ws = await connect(f"ws://127.0.0.1:{self.venue.port}/v2")
        for msg in spec.subscribe:
            await self.ws.send(msg)
        await self.barrier()

    async def barrier(self) -> None:
        """Read and handle frames until the answer to a ping: every frame queued before it."""
        await self.ws.send('{"method":"ping","req_id":99}')
        while True:
            frame = await asyncio.wait_for(self.ws.recv(), 10)
            try:
                msg = orjson.loads(frame)
            except orjson.JSONDecodeError:
                self.malformed.append(frame)
                continue
            if msg.get("method") == "pong" and msg.get("req_id") == 99:
                return
            self.acks += msg.get("method") in ("subscribe", "unsubscribe")
            for ev in self.plugin.parse(frame, 0):
                if isinstance(ev, BookUpdate):
                    out = self.syncs[ev.native].on_update(ev)
                    if isinstance(out, Resync):
                        self.resyncs.append((ev.native, out))
                        inst = self.syncs[ev.native].inst
                        for m in self.plugin.resubscribe(inst):
                            await self.ws.send(m)
                elif isinstance(ev, TradeBatch):
                    self.trades.extend(ev.trades)

    def step(self, n: int, symbol: str | None = None) -> None:
        """``n`` market events, as the pump makes them (gap/malformed faults included)."""
        for i in range(n):
            sym = symbol or self.venue.symbols[i % len(self.venue.symbols)]
            self.ts += 7
            self.venue._emit(self.market.update(self.venue.books[sym], self.ts, i % 3))

    def equal(self, symbol: str, depth: int = 25) -> bool:
        sim = self.venue.books[symbol]
        inst = sim.inst
        bids, asks = sim.top(depth)
        want = (
            [(p * inst.tick_e8 / 1e8, q * inst.step_e8 / 1e8) for p, q in bids],
            [(p * inst.tick_e8 / 1e8, q * inst.step_e8 / 1e8) for p, q in asks],
        )
        got = self.syncs[symbol].book.top(depth + 5)
        return self.syncs[symbol].state == "live" and got == want

    async def close(self) -> None:
        await self.ws.close()
        await self.venue.stop()


def run(scenario) -> None:
    async def main() -> None:
        h = Harness()
        await h.start()
        try:
            await scenario(h)
        finally:
            await h.close()

    asyncio.run(main())


def test_metadata_subscribe_snapshot_and_updates_keep_every_checksum():
    async def scenario(h: Harness) -> None:
        assert sorted(s.inst.symbol for s in h.syncs.values()) == ["BTC-USD", "DOGE-USD"]
        assert h.syncs["DOGE/USD"].inst.price_precision == 7
        assert h.acks == 4  # one ack per symbol and channel
        assert all(h.equal(s) for s in h.syncs)
        h.step(600)
        await h.barrier()
        assert h.resyncs == []
        assert all(h.equal(s) for s in h.syncs)
        assert all(s.counters.snapshots == 1 for s in h.syncs.values())
        # trades: every fill of every event, in id order, sides normalized
        assert len(h.trades) > 300
        ids = [int(t.trade_id) for t in h.trades if t.native == "BTC/USD"]
        assert ids == sorted(ids) and len(set(ids)) == len(ids)
        assert {t.side for t in h.trades} == {"buy", "sell"}

    run(scenario)


def test_lost_messages_break_the_checksum_and_a_resubscribe_repairs_the_book():
    async def scenario(h: Harness) -> None:
        h.venue.inject(FaultRequest("kraken", "gap", "BTC/USD", count=30))
        h.step(80, "BTC/USD")
        await h.barrier()
        assert [(s, r.kind) for s, r in h.resyncs] == [("BTC/USD", "checksum")]
        await h.barrier()  # the snapshot answering the resubscribe
        assert h.equal("BTC/USD") and h.equal("DOGE/USD")
        h.step(200)
        await h.barrier()
        assert len(h.resyncs) == 1 and h.equal("BTC/USD")

    run(scenario)


def test_a_wrong_checksum_resyncs_and_the_fresh_snapshot_is_exact():
    async def scenario(h: Harness) -> None:
        h.step(50)
        await h.barrier()
        h.venue.inject(FaultRequest("kraken", "checksum", "DOGE/USD"))
        h.step(50)
        await h.barrier()
        await h.barrier()
        assert [(s, r.kind) for s, r in h.resyncs] == [("DOGE/USD", "checksum")]
        assert h.syncs["DOGE/USD"].counters.snapshots == 2
        assert h.equal("DOGE/USD") and h.equal("BTC/USD")

    run(scenario)


def test_a_malformed_fault_waits_for_an_update_that_sends_a_frame():
    """An update whose changes all lie beyond every client's depth sends nothing: the armed
    ``malformed`` fault stays armed and truncates the next frame actually sent (it was lost, and
    a test waiting for the parse error waited in vain)."""

    async def scenario(h: Harness) -> None:
        h.venue.inject(FaultRequest("kraken", "malformed", "BTC/USD"))
        book = h.venue.books["BTC/USD"]
        far = book.bids.peekitem(0)[0] - 5  # below the lowest bid: far past the top 25
        book.set(True, far, 7)
        h.venue._emit(book.commit(h.ts, []))
        await h.barrier()
        assert h.malformed == []  # nothing was sent, so nothing truncated
        h.step(20, "BTC/USD")
        await h.barrier()
        assert len(h.malformed) == 1 and h.resyncs == []
        assert h.malformed[0].startswith('{"channel":')
        assert h.equal("BTC/USD")

    run(scenario)


def test_deeper_subscription_truncation_and_levels_entering_the_view():
    """A depth-10 client sees levels pushed out without deletes and keeps exactly the top 10."""

    async def scenario(h: Harness) -> None:
        plugin = plugin_for("kraken", quote="USD", bases=tuple(BASES), depth=10)
        plugin.precision = h.plugin.precision
        sync = InstrumentSync(h.syncs["BTC/USD"].inst, plugin)
        pushed_out = 0
        async with connect(f"ws://127.0.0.1:{h.venue.port}/v2") as ws:

            async def drain() -> None:
                nonlocal pushed_out
                await ws.send('{"method":"ping","req_id":1}')
                while (frame := await asyncio.wait_for(ws.recv(), 10)) and "pong" not in frame:
                    for ev in plugin.parse(frame, 0):
                        if isinstance(ev, BookUpdate):
                            out = sync.on_update(ev)
                            assert isinstance(out, Publish), out
                            # the sync publishes deletes for levels truncated out of the view
                            pushed_out += len(out.bids) + len(out.asks) > len(ev.bids + ev.asks)

            await ws.send(plugin.connections([sync.inst])[0].subscribe[0])
            await drain()
            assert sync.state == "live"
            h.step(300, "BTC/USD")
            await drain()
            await h.barrier()  # the depth-25 client read its frames too
            assert h.resyncs == [] and h.equal("BTC/USD")
        assert sync.counters.checksum_failures == 0 and sync.state == "live"
        bids, asks = h.venue.books["BTC/USD"].top(10)
        assert [p for p, _ in sync.book.top_bids(50)] == [p / 10 for p, _ in bids]
        assert [p for p, _ in sync.book.top_asks(50)] == [p / 10 for p, _ in asks]
        assert pushed_out > 0  # some updates relied on the client's truncation

    run(scenario)


def test_wire_numbers_are_literals_with_the_pairs_precision_and_legacy_rest_names():
    btc = kraken_instrument("kraken", "BTC", "USD")
    assert (btc.symbol, btc.tick, btc.step) == ("BTC/USD", "0.1", "0.00000001")
    text = render_book(btc, "update", [(294302, 100_000)], [(294303, 0)], 7, 1690730998343)
    assert b'"bids":[{"price":29430.2,"qty":0.00100000}]' in text
    assert b'"asks":[{"price":29430.3,"qty":0.00000000}]' in text
    assert b'"timestamp":"2023-07-30T15:29:58.343000Z"' in text
    key, pair = asset_pair(btc)
    assert (key, pair["wsname"], pair["base"], pair["quote"]) == (
        "XXBTZUSD",
        "XBT/USD",
        "XXBT",
        "ZUSD",
    )
    key, pair = asset_pair(kraken_instrument("kraken", "DOGE", "USD"))
    assert (key, pair["wsname"], pair["base"], pair["pair_decimals"]) == (
        "XDGUSD",
        "XDG/USD",
        "XXDG",
        7,
    )
