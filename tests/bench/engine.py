"""What the book builder's logic costs per message, without sockets or an event loop:
``python -m tests.bench.engine [--messages 200000] [--profile]``.

The simulator's market model (``services/simulator/market.py``: shared mids, one book per venue
market, the same random walk the benchmarked simulators run) produces the ingest messages of 6
venues x 9 bases; they are encoded and decoded as on the bus and fed to ``Engine.on_message``;
what the engine publishes is encoded with orjson as the Publisher would. Conflated ``depth.*``
topics are built every ``--depth-interval-ms`` of simulated time at ``--rate`` messages/s. The
figure is CPU time per ingest message, split into the unconflated path and the depth builds.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import random
import time
from typing import Any

import orjson

from common.codec import SCHEMA_VERSION
from services.book.engine import Engine, Settings
from services.simulator.assets import fmt8, make_instrument
from services.simulator.market import Market

VENUES = {
    "binance": "USDT",
    "binance-perp": "USDT",
    "bybit": "USDT",
    "coinbase": "USD",
    "kraken": "USD",
    "okx": "USDT",
}
BASES = ("BTC", "ETH", "SOL", "XRP", "DOGE", "ADA", "AVAX", "DOT", "LINK")


def _levels(inst: Any, levels: list[tuple[int, int]]) -> list[list[float]]:
    return [[float(fmt8(p * inst.tick_e8)), float(fmt8(q * inst.step_e8))] for p, q in levels]


def make_stream(n: int, seed: int = 11, depth: int = 50) -> list[tuple[str, str, bytes]]:
    """(venue, topic, encoded bus payload): one snapshot per book, then ``n`` deltas."""
    market = Market(seed)
    books = []
    for venue, quote in VENUES.items():
        for base in BASES:
            symbol = f"{base}-{quote}" + ("-PERP" if venue.endswith("perp") else "")
            inst = make_instrument(venue, symbol, base, quote)
            books.append((venue, symbol, inst, market.add_book(inst)))
    seqs: dict[str, int] = {}
    out: list[tuple[str, str, bytes]] = []

    def emit(venue: str, symbol: str, body: dict[str, Any]) -> None:
        topic = f"book.{venue}.{symbol}"
        seqs[topic] = seqs.get(topic, 0) + 1
        now = time.time_ns()
        body.update(
            v=SCHEMA_VERSION,
            epoch="e",
            seq=seqs[topic],
            venue=venue,
            symbol=symbol,
            ts_exch=now,
            ts_recv=now,
            ts_pub=now,
        )
        out.append((venue, topic, orjson.dumps(body)))

    for venue, symbol, inst, book in books:
        bids, asks = book.top(10_000)
        emit(
            venue,
            symbol,
            {
                "type": "snapshot",
                "state": "live",
                "bids": _levels(inst, bids),
                "asks": _levels(inst, asks),
            },
        )
    rng = random.Random(seed)
    for i in range(n):
        if i % len(books) == 0:
            market.step_mids()
        venue, symbol, inst, book = books[rng.randrange(len(books))]
        up = market.update(book, i)
        emit(
            venue,
            symbol,
            {"type": "delta", "bids": _levels(inst, up.bids), "asks": _levels(inst, up.asks)},
        )
    return out


def run(stream: list[tuple[str, str, bytes]], rate: float, depth_interval_ms: float) -> dict:
    published: dict[str, int] = {}
    touched: set[str] = set()
    engine: Engine

    def publish(topic: str, body: dict[str, Any]) -> None:
        body["ts_pub"] = time.time_ns()
        orjson.dumps(body)
        kind = topic[: topic.index(".")]
        published[kind] = published.get(kind, 0) + 1

    engine = Engine(Settings(), list(VENUES), publish, touched.add)
    for venue in VENUES:
        engine.set_upstream(venue, True)
    every = max(1, int(rate * depth_interval_ms / 1000.0))
    on_message = engine.on_message
    t_msg = t_depth = 0.0
    for i, (venue, topic, frame) in enumerate(stream):
        t0 = time.perf_counter()
        on_message(venue, topic, orjson.loads(frame))
        t1 = time.perf_counter()
        t_msg += t1 - t0
        if i % every == 0 and touched:
            for t in sorted(touched):
                engine.depth_message(t)
            touched.clear()
            t_depth += time.perf_counter() - t1
    n = len(stream)
    return {
        "messages": n,
        "us_per_message": round(t_msg / n * 1e6, 2),
        "depth_us_per_message": round(t_depth / n * 1e6, 2),
        "published": published,
        "bad": engine.bad,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--messages", type=int, default=100_000)
    ap.add_argument("--rate", type=float, default=2000.0, help="msgs/s the stream stands for")
    ap.add_argument("--depth-interval-ms", type=float, default=50.0)
    ap.add_argument("--profile", action="store_true")
    args = ap.parse_args()
    stream = make_stream(args.messages)
    if args.profile:
        prof = cProfile.Profile()
        prof.enable()
        res = run(stream, args.rate, args.depth_interval_ms)
        prof.disable()
        pstats.Stats(prof).sort_stats("tottime").print_stats(25)
    else:
        res = run(stream, args.rate, args.depth_interval_ms)
    print(orjson.dumps(res, option=orjson.OPT_INDENT_2).decode())


if __name__ == "__main__":
    main()
