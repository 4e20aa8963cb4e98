"""The simulator's OKX dialect, driven update by update in-process and read over a real loopback
WebSocket by the real OKX plugin and sync: acks, snapshots and updates parse, every checksum
verifies, the client's book equals the simulator's, and the checksum, gap and reset faults look on
the wire the way OKX's would (a reset is accepted, the others are repaired by a resubscribe)."""

from __future__ import annotations

import asyncio
import itertools

import httpx
import orjson
from websockets.asyncio.client import connect

from common.model import BookUpdate, TradeBatch
from services.ingest.sync import InstrumentSync, Resync
from services.ingest.venue import ParseError
from services.simulator.faults import FaultRequest
from services.simulator.market import Market
from services.simulator.venue import VenueServer
from tests.venues import plugin_for

BASES = ["BTC", "DOGE"]


class Harness:
    """One simulated OKX venue and one client doing what the ingest runner does."""

    def __init__(self) -> None:
        self.market = Market(3)
        self.venue = VenueServer("okx", "127.0.0.1", 0, "USDT", BASES, self.market, 3, 0)
        self.plugin = plugin_for("okx", bases=tuple(BASES))
        self.syncs: dict[str, InstrumentSync] = {}
        self.resyncs: list[tuple[str, str]] = []
        self.frames: list[dict] = []
        self.trades: list = []
        self.errors: list[str] = []
        self.ts = 1_700_000_000_000

    async def start(self) -> None:
        await self.venue.start()
        url = f"http://127.0.0.1:{self.venue.port}/api/v5/public/instruments"
        async with httpx.AsyncClient() as http:
            body = (await http.get(url, params={"instType": "SPOT"})).content
        insts = self.plugin.parse_metadata([body])
        self.syncs = {i.native: InstrumentSync(i, self.plugin) for i in insts}
        (spec,) = self.plugin.connections(insts)
        self.ws = await connect(f"ws://127.0.0.1:{self.venue.port}/ws/v5/public")
        for msg in spec.subscribe:
            await self.ws.send(msg)
        await self.barrier()

    async def barrier(self) -> None:
        """Handle frames until the text ``pong``: every frame queued before the ping."""
        await self.ws.send("ping")
        while (frame := await asyncio.wait_for(self.ws.recv(), 10)) != "pong":
            self.frames.append(orjson.loads(frame))
            try:
                events = self.plugin.parse(frame, 0)
            except ParseError as exc:  # as the runner does: counted and skipped
                self.errors.append(str(exc))
                continue
            for ev in events:
                if isinstance(ev, BookUpdate):
                    out = self.syncs[ev.native].on_update(ev)
                    if isinstance(out, Resync):
                        self.resyncs.append((ev.native, out.kind))
                        for m in self.plugin.resubscribe(self.syncs[ev.native].inst):
                            await self.ws.send(m)
                elif isinstance(ev, TradeBatch):
                    self.trades.extend(ev.trades)

    def step(self, n: int, symbol: str | None = None) -> None:
        for i in range(n):
            sym = symbol or self.venue.symbols[i % len(self.venue.symbols)]
            self.ts += 7
            self.venue._emit(self.market.update(self.venue.books[sym], self.ts, i % 3))

    def equal(self, symbol: str) -> bool:
        sim = self.venue.books[symbol]
        te, se = sim.inst.tick_e8, sim.inst.step_e8
        bids, asks = sim.top(1000)
        book = self.syncs[symbol].book
        return (
            self.syncs[symbol].state == "live"
            and dict(book.bids) == {p * te / 1e8: q * se / 1e8 for p, q in bids}
            and dict(book.asks) == {p * te / 1e8: q * se / 1e8 for p, q in asks}
        )

    def books_of(self, symbol: str) -> list[dict]:
        arg = {"channel": "books", "instId": symbol}
        return [f for f in self.frames if "action" in f and f["arg"] == arg]


def run(scenario) -> None:
    async def main() -> None:
        h = Harness()
        await h.start()
        try:
            await scenario(h)
        finally:
            await h.ws.close()
            await h.venue.stop()

    asyncio.run(main())


def test_subscribe_snapshot_updates_trades_and_every_checksum():
    async def scenario(h: Harness) -> None:
        assert sorted(h.syncs) == ["BTC-USDT", "DOGE-USDT"]
        assert h.syncs["DOGE-USDT"].inst.price_precision == 5
        acks = [f for f in h.frames if f.get("event") == "subscribe"]
        assert len(acks) == 4 and all(a["connId"] for a in acks)
        h.step(300)
        await h.barrier()
        assert h.resyncs == [] and all(h.equal(s) for s in h.syncs)
        snap, *updates = h.books_of("BTC-USDT")
        assert snap["action"] == "snapshot" and snap["data"][0]["prevSeqId"] == -1
        chain = [snap["data"][0]] + [u["data"][0] for u in updates]
        assert all(b["prevSeqId"] == a["seqId"] for a, b in itertools.pairwise(chain))
        assert all(d["checksum"] != 0 for d in chain) and len(chain) == 151
        assert len(h.trades) > 50 and {t.side for t in h.trades} == {"buy", "sell"}

    run(scenario)


def test_checksum_and_gap_faults_resubscribe_reset_is_accepted():
    async def scenario(h: Harness) -> None:
        h.venue.inject(FaultRequest("okx", "checksum", "BTC-USDT"))
        h.step(10, "BTC-USDT")
        await h.barrier()  # the resync resubscribed; the new snapshot is on its way
        h.step(5)
        await h.barrier()
        assert h.resyncs == [("BTC-USDT", "checksum")] and h.equal("BTC-USDT")
        assert [f["event"] for f in h.frames if f.get("event")][-2:] == ["unsubscribe", "subscribe"]

        h.venue.inject(FaultRequest("okx", "gap", "DOGE-USDT"))
        h.step(10, "DOGE-USDT")
        await h.barrier()
        h.step(5)
        await h.barrier()
        assert h.resyncs[-1] == ("DOGE-USDT", "gap") and h.equal("DOGE-USDT")

        before = len(h.books_of("BTC-USDT"))
        h.venue.inject(FaultRequest("okx", "reset", "BTC-USDT"))
        h.step(6, "BTC-USDT")
        await h.barrier()
        last, reset, after = (f["data"][0] for f in h.books_of("BTC-USDT")[before - 1 : before + 2])
        assert reset["prevSeqId"] == last["seqId"] and reset["seqId"] == 3
        assert after["prevSeqId"] == 3 and after["seqId"] > 3
        assert len(h.resyncs) == 2 and h.equal("BTC-USDT")

    run(scenario)


def test_bad_requests_get_okx_errors():
    async def scenario(h: Harness) -> None:
        n = len(h.frames)
        await h.ws.send('{"op":"subscribe","args":[{"channel":"books","instId":"NOPE-USDT"}]}')
        await h.ws.send("not json")
        await h.barrier()
        errors = [f for f in h.frames[n:] if f.get("event") == "error"]
        assert [e["code"] for e in errors] == ["60018", "60012"]
        assert len(h.errors) == 2 and "60018" in h.errors[0]

    run(scenario)
