"""A synthetic book builder for the dashboard's browser tests and screenshots.

``python -m tests.browser.fakefeed --config FILE`` binds the ``[book]`` PUB/ROUTER endpoints of
the config and publishes what the real book builder would for six venues (binance, binance-perp,
bybit, kraken, coinbase, okx) and the nine bases: consolidated ``depth.all.*`` and ``bbo.all.*``
with per-venue sizes, per-venue ``bbo.*``, ``trade.*`` bursts, ``status.*`` with ingest stats, and
``hb.book``. It answers resync requests with the latest of every topic, like the book builder.

It is deterministic where tests look: BTC spot is always crossed by kraken (kraken's bid is above
the other venues' best ask), and every consolidated BTC-USD level at the best bid carries several
venues, so that switching a venue off changes the totals. Only the gateway is real.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import math
import random
import signal
import sys
import time
from typing import Any

from common.bus import Publisher
from common.config import load

log = logging.getLogger("fakefeed")

BASES = {  # base: (start price, tick, typical size)
    "BTC": (65000.0, 0.1, 0.4),
    "ETH": (3400.0, 0.01, 4.0),
    "SOL": (150.0, 0.001, 60.0),
    "XRP": (0.6, 0.0001, 9000.0),
    "DOGE": (0.15, 0.00001, 40000.0),
    "ADA": (0.45, 0.0001, 12000.0),
    "AVAX": (35.0, 0.001, 150.0),
    "DOT": (7.0, 0.001, 700.0),
    "LINK": (15.0, 0.001, 350.0),
}
# venue: list of (quote, perp), price offset in bps, half spread in ticks, depth weight
VENUES: dict[str, tuple[list[tuple[str, bool]], float, int, float]] = {
    "binance": ([("USDT", False)], 0.0, 1, 1.6),
    "binance-perp": ([("USDT", True)], 0.3, 1, 1.8),
    "bybit": ([("USDT", False), ("USDT", True)], 0.05, 1, 1.0),
    "kraken": ([("USD", False)], -0.02, 2, 0.7),
    "coinbase": ([("USD", False)], -0.05, 1, 1.1),
    "okx": ([("USDT", False)], 0.03, 1, 0.9),
}
LEVELS = 50


def rnd(x: float, tick: float) -> float:
    decimals = max(0, -math.floor(math.log10(tick) + 1e-9))
    return float(f"{round(x / tick) * tick:.{decimals}f}")


def symbol(base: str, quote: str, perp: bool) -> str:
    return f"{base}-{quote}-PERP" if perp else f"{base}-{quote}"


def group(base: str, perp: bool) -> str:
    return f"{base}-USD-PERP" if perp else f"{base}-USD"


class Feed:
    def __init__(self, pub: str, control: str, seed: int = 5) -> None:
        self.rng = random.Random(seed)
        self.publisher = Publisher("book", pub, control)
        self.publisher.snapshot_provider = self.snapshots
        self.latest: dict[str, dict[str, Any]] = {}
        self.mid = {b: p for b, (p, _, _) in BASES.items()}
        self.trade_id = 1000
        self.started = time.monotonic()
        self.down: set[str] = set()
        self.bases = list(BASES)
        self.burst = 0  # extra trades per venue and step on BTC spot (load tests)

    # -- books ----------------------------------------------------------------------------------
    def venue_book(self, venue: str, base: str, perp: bool) -> tuple[list, list]:
        _, tick, size = BASES[base]
        _, off_bps, half, weight = VENUES[venue]
        mid = self.mid[base] * (1 + (off_bps + (0.1 if perp else 0.0)) / 1e4)
        if base == "BTC" and not perp:
            # BTC spot: every venue on one price grid (levels shared), except kraken whose bids
            # are above everyone's asks: crossed by kraken alone
            mid = self.mid[base] * (1 + (0.12 if venue == "kraken" else 0.0) / 1e4)
        best_bid = rnd(mid - half * tick, tick)
        best_ask = rnd(mid + half * tick, tick)
        if best_ask <= best_bid:
            best_ask = rnd(best_bid + tick, tick)
        rng = self.rng
        bids, asks = [], []
        for side, best, sign in ((bids, best_bid, -1), (asks, best_ask, 1)):
            p = best
            while len(side) < LEVELS:
                s = size * weight * rng.lognormvariate(-0.7, 0.9) * (1 + len(side) / 30)
                side.append([p, round(s, 5 if size < 10 else 2)])
                p = rnd(p + sign * tick * rng.choice((1, 1, 1, 2, 3)), tick)
        return bids, asks

    def markets(self, base: str, perp: bool) -> list[tuple[str, str]]:
        out = []
        for venue, (quotes, *_rest) in VENUES.items():
            if venue in self.down:
                continue
            for quote, is_perp in quotes:
                if is_perp == perp:
                    out.append((venue, symbol(base, quote, is_perp)))
        return out

    def excluded(self, base: str, perp: bool) -> dict[str, str]:
        out = {}
        for venue in sorted(self.down):
            if any(p == perp for _, p in VENUES[venue][0]):
                out[venue] = "down"
        return out

    def publish(self, topic: str, body: dict[str, Any]) -> None:
        self.latest[topic] = body
        self.publisher.publish(topic, dict(body))

    def stamps(self) -> dict[str, int]:
        t = time.time_ns()
        lat = int(self.rng.uniform(150_000, 900_000))
        return {"ts_exch": t - lat - 2_000_000, "ts_recv": t - lat, "ts_ingest_pub": t - lat // 3}

    def step_group(self, base: str, perp: bool) -> None:
        g = group(base, perp)
        books = {}
        for venue, sym in self.markets(base, perp):
            bids, asks = self.venue_book(venue, base, perp)
            books[(venue, sym)] = (bids, asks)
            self.publish(
                f"bbo.{venue}.{sym}",
                {
                    "type": "bbo",
                    "venue": venue,
                    "symbol": sym,
                    "state": "live",
                    "bid": bids[0],
                    "ask": asks[0],
                    "spread_bps": round(
                        (asks[0][0] - bids[0][0]) / ((asks[0][0] + bids[0][0]) / 2) * 1e4, 4
                    ),
                    **self.stamps(),
                },
            )
        merged = {}
        for name, rev in (("bids", True), ("asks", False)):
            acc: dict[float, dict[str, float]] = {}
            for (venue, _sym), book in books.items():
                for p, s in book[0 if name == "bids" else 1]:
                    per = acc.setdefault(p, {})
                    per[venue] = round(per.get(venue, 0.0) + s, 8)
            merged[name] = [
                [p, round(sum(acc[p].values()), 8), acc[p]]
                for p in sorted(acc, reverse=rev)[:LEVELS]
            ]
        venues = sorted({v for v, _ in books})
        head = {
            "venue": "all",
            "symbol": g,
            "state": "live",
            "unit": "USD",
            "venues": venues,
            "excluded": self.excluded(base, perp),
            "conversion": {
                f"{v}:{s}": {"quote": s.split("-")[1], "rate": 1.0, "source": "1:1"}
                for v, s in books
            },
            **self.stamps(),
        }
        self.publish(f"depth.all.{g}", {"type": "depth", **head, **merged})
        bid, ask = merged["bids"][0], merged["asks"][0]
        crossed = bid[0] >= ask[0]
        top = lambda per: min(per.items(), key=lambda kv: (-kv[1], kv[0]))[0]  # noqa: E731
        self.publish(
            f"bbo.all.{g}",
            {
                "type": "bbo",
                **head,
                "bid": [bid[0], bid[1], top(bid[2])],
                "ask": [ask[0], ask[1], top(ask[2])],
                "bid_venues": bid[2],
                "ask_venues": ask[2],
                "spread_bps": round((ask[0] - bid[0]) / ((ask[0] + bid[0]) / 2) * 1e4, 4),
                "crossed": crossed,
                "crossed_size": round(min(bid[1], ask[1]), 6) if crossed else 0.0,
            },
        )
        # trades: a burst now and then, same price repeated (aggregated by the tape)
        for venue, sym in self.markets(base, perp):
            if self.burst or self.rng.random() < (0.5 if base == "BTC" else 0.15):
                bids, asks = books[(venue, sym)]
                side = self.rng.choice(("buy", "sell"))
                price = asks[0][0] if side == "buy" else bids[0][0]
                n = (
                    self.burst
                    if self.burst and base == "BTC"
                    else self.rng.choice((1, 1, 1, 2, 4, 8))
                )
                t = time.time_ns()
                trades = []
                for _ in range(n):
                    if self.burst:  # spread over the top levels, both sides
                        side = self.rng.choice(("buy", "sell"))
                        price = (asks if side == "buy" else bids)[self.rng.randrange(3)][0]
                    self.trade_id += 1
                    size = round(BASES[base][2] * self.rng.lognormvariate(-1.5, 1.1), 5)
                    trades.append(
                        {
                            "price": price,
                            "size": size,
                            "side": side,
                            "id": str(self.trade_id),
                            "ts_exch": t - 1_500_000,
                        }
                    )
                self.publisher.publish(
                    f"trade.{venue}.{sym}",
                    {
                        "type": "trades",
                        "venue": venue,
                        "symbol": sym,
                        "trades": trades,
                        **self.stamps(),
                    },
                )

    def status(self) -> None:
        up = time.monotonic() - self.started
        for i, (venue, (quotes, *_r)) in enumerate(VENUES.items()):
            syms = {symbol(b, q, p): "live" for b in BASES for q, p in quotes}
            state = "down" if venue in self.down else "live"
            if state == "down":
                syms = dict.fromkeys(syms, "down")
            lat = {
                "p50": 140.0 + 20 * i,
                "p90": 300.0 + 40 * i,
                "p99": 900.0 + 300 * i,
                "p99.9": 2500.0,
                "max": 4000.0 + 500 * i,
                "mean": 200.0,
                "count": 1000,
            }
            self.publish(
                f"status.{venue}",
                {
                    "type": "status",
                    "venue": venue,
                    "state": state,
                    "instruments": syms,
                    "last_msg_age_s": 0.01,
                    "last_hb_age_s": 0.4,
                    "stats": {
                        "venue": venue,
                        "venue_state": state,
                        "msg_rate": round(40 + 15 * i + 5 * math.sin(up / 7 + i), 1),
                        "frames": int(up * 50),
                        "trades": int(up * 10),
                        "gaps": i % 3,
                        "resyncs": i % 3,
                        "reconnects": 1 if venue == "okx" else 0,
                        "parse_errors": 0,
                        "checksum_failures": 1 if venue == "kraken" else 0,
                        "latency_us": {"ingest": lat},
                        "process": {
                            "pid": 41000 + i,
                            "cpu_percent": round(3 + 2.5 * i + self.rng.random(), 1),
                            "rss_bytes": (38 + 3 * i) * 1024 * 1024,
                        },
                    },
                },
            )
        lat = {
            "p50": 480.0,
            "p90": 1500.0,
            "p99": 6200.0,
            "p99.9": 12000.0,
            "max": 15000.0,
            "mean": 700.0,
            "count": 5000,
        }
        self.publisher.heartbeat(
            {
                "messages_in": int(up * 300),
                "msg_rate_in": 300.0,
                "msg_rate_out": 600.0,
                "latency_us": {
                    "recv_to_pub": lat,
                    "ingest_pub_to_pub": lat,
                    "depth_recv_to_pub": {**lat, "p50": 9000.0, "p90": 30000.0, "p99": 52000.0},
                },
                "process": {"pid": 42000, "cpu_percent": 21.5, "rss_bytes": 61 * 1024 * 1024},
            }
        )

    def snapshots(self, prefixes: list[str]) -> list[tuple[str, dict[str, Any]]]:
        return [
            (t, dict(m)) for t, m in self.latest.items() if any(t.startswith(p) for p in prefixes)
        ]

    async def run(self, stop: asyncio.Event, interval: float) -> None:
        self.publisher.attach(asyncio.get_running_loop())
        next_status = 0.0
        while not stop.is_set():
            for base in self.bases:
                tick = BASES[base][1]
                drift = self.rng.gauss(0, 0.6) / 1e4
                self.mid[base] = max(tick * 100, self.mid[base] * (1 + drift))
                for perp in (False, True):
                    self.step_group(base, perp)
            if time.monotonic() >= next_status:
                next_status = time.monotonic() + 1.0
                self.status()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), interval)
        self.publisher.pub.close()
        self.publisher.control.close()


async def amain(args: argparse.Namespace) -> None:
    cfg = load(args.config)
    feed = Feed(cfg.book.pub, cfg.book.control, seed=args.seed)
    feed.down = set(args.down.split(",")) if args.down else set()
    feed.bases = args.bases.split(",") if args.bases else list(BASES)
    feed.burst = args.burst
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print(f"fakefeed publishing on {cfg.book.pub}", flush=True)
    await feed.run(stop, args.interval)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tests.browser.fakefeed", description=__doc__)
    ap.add_argument("--config", required=True)
    ap.add_argument("--interval", type=float, default=0.2, help="seconds between book steps")
    ap.add_argument("--seed", type=int, default=5)
    ap.add_argument("--down", default="", help="comma-separated venues reported down")
    ap.add_argument("--bases", default="", help="comma-separated bases to publish (default: all)")
    ap.add_argument("--burst", type=int, default=0, help="trades per venue per step on BTC spot")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO)
    asyncio.run(amain(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
