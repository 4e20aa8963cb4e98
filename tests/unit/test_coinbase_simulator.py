"""The simulator's Coinbase dialect, checked on its own against exchanges.md section 4.1: frame
shapes as in the real examples, one ``sequence_num`` per connection across channels, a whole-book
snapshot that a client can follow to the simulator's exact book, and its faults. A VenueServer
runs in-process on a loopback port; the market is pumped by hand, so every step is deterministic.
"""

from __future__ import annotations

import asyncio
import itertools
from decimal import Decimal

import httpx
import orjson
import pytest
from websockets.asyncio.client import connect

from services.simulator.assets import make_instrument
from services.simulator.book import BookUpdate, TradeEvent
from services.simulator.config import ConfigError, load_config
from services.simulator.dialects.coinbase_wire import (
    envelope,
    l2_events,
    rfc3339,
    trades_events,
)
from services.simulator.faults import FaultRequest
from services.simulator.market import Market
from services.simulator.venue import VenueServer
from tests.venues import plugin_for

BTC = make_instrument("coinbase", "BTC-USD", "BTC", "USD")
T0 = 1786309548 * 1_000_000_000 + 483587501  # 2026-08-09T21:05:48.483587501Z


def test_l2_update_frame_has_the_real_shape():
    upd = BookUpdate(BTC, 1, 2, [(6_506_250, 583), (6_506_191, 0)], [], [], 0)
    frame = orjson.loads(
        envelope("l2_data", 14, T0, l2_events("update", BTC, upd.bids, upd.asks, rfc3339(T0, 6)))
    )
    assert list(frame) == ["channel", "timestamp", "sequence_num", "events"]  # no client_id
    assert frame["timestamp"] == "2026-08-09T21:05:48.483587501Z"
    assert frame["events"] == [
        {
            "type": "update",
            "product_id": "BTC-USD",
            "updates": [
                {
                    "side": "bid",
                    "event_time": "2026-08-09T21:05:48.483587Z",
                    "price_level": "65062.5",
                    "new_quantity": "0.00583",
                },
                {
                    "side": "bid",
                    "event_time": "2026-08-09T21:05:48.483587Z",
                    "price_level": "65061.91",
                    "new_quantity": "0",
                },
            ],
        }
    ]


def test_trade_side_is_the_maker_side():
    trades = [TradeEvent(1068572091, 6_508_367, 1_034, False, 1786309548167)]  # a taker buy
    (event,) = orjson.loads(trades_events("update", BTC, trades))
    assert event == {
        "type": "update",
        "trades": [
            {
                "product_id": "BTC-USD",
                "trade_id": "1068572091",
                "price": "65083.67",
                "size": "0.01034",
                "time": "2026-08-09T21:05:48.167000Z",
                "side": "SELL",  # the resting order that was hit sold
            }
        ],
    }


def test_sim_levels_config(tmp_path):
    def cfg(extra: str):
        path = tmp_path / "sim.toml"
        path.write_text(
            '[simulator]\n[venues.coinbase]\nenabled = true\nsim_port = 1\nquote = "USD"\n'
            f'bases = ["BTC"]\n{extra}\n'
        )
        return load_config(path)

    assert cfg("").venues[0].levels is None
    assert cfg("sim_levels = 20000").venues[0].levels == 20000
    with pytest.raises(ConfigError, match="sim_levels"):
        cfg('sim_levels = "many"')


class Session:
    """One Coinbase client connection to an in-process VenueServer."""

    def __init__(self, venue: VenueServer, ws) -> None:
        self.venue, self.ws = venue, ws
        self.books: dict[str, tuple[dict[Decimal, Decimal], dict[Decimal, Decimal]]] = {}
        self.seqs: list[int] = []

    async def recv(self) -> dict:
        msg = orjson.loads(await asyncio.wait_for(self.ws.recv(), 10))
        if "sequence_num" in msg:
            self.seqs.append(msg["sequence_num"])
        if msg.get("channel") == "l2_data":
            for ev in msg["events"]:
                if ev["type"] == "snapshot":
                    self.books[ev["product_id"]] = ({}, {})
                bids, asks = self.books[ev["product_id"]]
                for u in ev["updates"]:
                    side = bids if u["side"] == "bid" else asks
                    qty = Decimal(u["new_quantity"])
                    if qty:
                        side[Decimal(u["price_level"])] = qty
                    else:
                        side.pop(Decimal(u["price_level"]), None)
        return msg

    async def drain(self) -> None:
        """Read every frame the server has numbered so far on this connection."""
        await asyncio.sleep(0)
        (client,) = self.venue.clients
        while not self.seqs or self.seqs[-1] < client.state["seq"] - 1:
            await self.recv()

    async def until(self, cond) -> dict:
        while True:
            msg = await self.recv()
            if cond(msg):
                return msg

    def book_equals_simulator(self, symbol: str) -> bool:
        book, inst = self.venue.books[symbol], self.venue.instruments[symbol]
        te, se = Decimal(inst.tick), Decimal(inst.step)
        want = (
            {p * te: q * se for p, q in book.bids.items()},
            {p * te: q * se for p, q in book.asks.items()},
        )
        return self.books[symbol] == want


def run(scenario, levels: int | None = None):
    async def main():
        venue = VenueServer(
            "coinbase", "127.0.0.1", 0, "USD", ["BTC", "ETH"], Market(5), 5, 100.0, levels
        )
        await venue.start()
        try:
            async with connect(f"ws://127.0.0.1:{venue.port}/", max_size=2**25) as ws:
                await scenario(venue, Session(venue, ws))
        finally:
            await venue.stop()

    asyncio.run(main())


def pump(venue: VenueServer, t: list[float], n: int = 20) -> None:
    """Generate ``n`` market events now (the rate is 100/s: n / 100 seconds of market)."""
    t[0] += n / 100
    venue.pump(t[0], 0.5)


def subscribe(channel: str, ids=("BTC-USD", "ETH-USD")) -> str:
    return orjson.dumps(
        {"type": "subscribe", "product_ids": list(ids), "channel": channel}
    ).decode()


def test_one_sequence_per_connection_whole_book_snapshots_and_followable_updates():
    async def scenario(venue: VenueServer, s: Session):
        t = [0.0]
        venue.pump(t[0], 0.5)
        pump(venue, t)
        for ch in ("level2", "market_trades", "heartbeats"):
            await s.ws.send(subscribe(ch))
        ack = await s.recv()
        assert ack["channel"] == "subscriptions" and ack["sequence_num"] == 0
        assert ack["events"] == [{"subscriptions": {"level2": ["BTC-USD", "ETH-USD"]}}]
        for symbol in ("BTC-USD", "ETH-USD"):
            snap = await s.recv()
            assert snap["channel"] == "l2_data" and snap["events"][0]["type"] == "snapshot"
            assert s.book_equals_simulator(symbol)  # the ENTIRE book, not a top N
        await s.until(lambda m: m.get("channel") == "subscriptions")
        trades = await s.recv()
        (event,) = trades["events"]
        assert event["type"] == "snapshot"
        ids = [int(t["trade_id"]) for t in event["trades"]]
        assert ids and ids == sorted(ids, reverse=True)  # recent trades, newest first
        acks = await s.until(lambda m: m.get("channel") == "subscriptions")
        assert set(acks["events"][0]["subscriptions"]) == {"level2", "market_trades", "heartbeats"}
        for _ in range(10):
            pump(venue, t)
            await asyncio.sleep(0)
        await s.until(lambda m: m.get("channel") == "heartbeats")  # about one a second
        await s.drain()
        assert s.seqs == list(range(len(s.seqs)))  # all channels share one counter
        assert s.book_equals_simulator("BTC-USD") and s.book_equals_simulator("ETH-USD")

    run(scenario)


def test_seqgap_and_lost_updates_make_the_number_jump_malformed_does_not():
    async def scenario(venue: VenueServer, s: Session):
        t = [0.0]
        venue.pump(t[0], 0.5)
        await s.ws.send(subscribe("level2"))
        await s.recv(), await s.recv(), await s.recv()  # ack, two snapshots
        assert s.seqs == [0, 1, 2]

        def jumps(since: int) -> list[int]:
            seqs = s.seqs[since - 1 :]
            return [b - a for a, b in itertools.pairwise(seqs)]

        venue.inject(FaultRequest("coinbase", "seqgap", "BTC-USD"))
        pump(venue, t, 10)
        await s.drain()
        assert sorted(jumps(3)) == [1] * (len(s.seqs) - 4) + [2]  # one number skipped

        venue.inject(FaultRequest("coinbase", "gap", "ETH-USD"))  # applied, never sent
        before = len(s.seqs)
        pump(venue, t, 30)
        await s.drain()
        assert sorted(jumps(before))[-1] == 2 and not s.book_equals_simulator("ETH-USD")
        assert s.book_equals_simulator("BTC-USD")

        venue.inject(FaultRequest("coinbase", "malformed"))
        pump(venue, t, 1)
        raw = await asyncio.wait_for(s.ws.recv(), 10)
        with pytest.raises(orjson.JSONDecodeError):
            orjson.loads(raw)
        intact = await s.recv()
        assert intact["sequence_num"] == s.seqs[-2] + 1  # the broken copy spent no number

        await s.ws.send('{"type":"subscribe","channel":"level3","product_ids":["BTC-USD"]}')
        error = await s.until(lambda m: m.get("type") == "error")
        assert "sequence_num" not in error and "level3" in error["message"]

    run(scenario)


def test_deep_books_make_a_snapshot_of_several_megabytes():
    async def scenario(venue: VenueServer, s: Session):
        await s.ws.send(subscribe("level2", ["BTC-USD"]))
        await s.recv()
        raw = await asyncio.wait_for(s.ws.recv(), 10)
        assert len(raw) > 3_000_000
        assert len(orjson.loads(raw)["events"][0]["updates"]) > 30_000

    run(scenario, levels=25_000)


def test_products_serve_spot_markets_usdc_aliases_and_429():
    async def scenario(venue: VenueServer, s: Session):
        url = f"http://127.0.0.1:{venue.port}/api/v3/brokerage/market/products"
        async with httpx.AsyncClient() as http:
            r = await http.get(url, params={"product_type": "SPOT"})
            products = r.json()["products"]
            assert [p["product_id"] for p in products] == [
                "BTC-USD",
                "BTC-USDC",
                "ETH-USD",
                "ETH-USDC",
            ]
            assert products[0]["alias_to"] == ["BTC-USDC"] and products[1]["alias"] == "BTC-USD"
            plugin = plugin_for("coinbase", quote="USD", bases=("BTC", "ETH"))
            insts = plugin.parse_metadata([r.content])
            assert [i.symbol for i in insts] == ["BTC-USD", "ETH-USD"]
            assert (insts[0].price_precision, insts[0].qty_precision) == (2, 5)
            assert any(
                p["product_type"] == "FUTURE" for p in (await http.get(url)).json()["products"]
            )
            venue.inject(FaultRequest("coinbase", "rest429"))
            r = await http.get(url)
            assert r.status_code == 429 and r.headers["retry-after"] == "1"
            assert (await http.get(url)).status_code == 200

    run(scenario)
