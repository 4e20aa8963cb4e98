"""Soak: the demo stack (every venue) under a real supervisord at a high simulator rate for a
while, printing the RSS of every flowbook process as it goes, to show memory stays flat.

    .venv/bin/python scripts/soak.py --minutes 10 --rate 300

Not a test (nothing is asserted on time); it prints a table, the growth of each process between
the first sample after ``--warmup`` seconds and the last, and the least-squares trend over that
span (samples are noisy: the book builder's queues come and go with the load).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.procs import free_port, venue_section, wait_until, write_config
from tests.stack import SupervisedStack

VENUES = {
    "binance": ("USDT", "/stream", ""),
    "binance-perp": ("USDT", "/stream", ""),
    "bybit": ("USDT", "/v5/public", ""),
    "kraken": ("USD", "/v2", "depth = 25"),
    "coinbase": ("USD", "/", ""),
    "okx": ("USDT", "/ws/v5/public", ""),
}
PROGRAMS = [f"ingest:{v}" for v in VENUES] + ["book", "gateway"]


def slope(ts: list[float], ys: list[float]) -> float:
    """Least-squares slope of ys over ts, per minute (0 with fewer than two points)."""
    n = len(ts)
    if n < 2:
        return 0.0
    mt, my = sum(ts) / n, sum(ys) / n
    var = sum((t - mt) ** 2 for t in ts)
    return (
        60.0 * sum((t - mt) * (y - my) for t, y in zip(ts, ys, strict=True)) / var if var else 0.0
    )


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=10.0)
    ap.add_argument("--rate", type=int, default=300, help="book updates/s per venue")
    ap.add_argument("--every", type=float, default=30.0, help="seconds between samples")
    ap.add_argument(
        "--warmup",
        type=float,
        default=120.0,
        help="seconds after every venue is live before the baseline sample (books fill up,"
        " buffers and histograms reach their size)",
    )
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="flowbook-soak-"))
    sections = "".join(
        venue_section(v, sim_port=free_port(), quote=q, ws_path=p, extra=x)
        for v, (q, p, x) in VENUES.items()
    )
    stack = SupervisedStack(write_config(tmp, sections, rate=args.rate), tmp / "run")
    try:
        stack.wait_running()
        import httpx

        base = f"http://127.0.0.1:{stack.cfg.gateway.port}/healthz"
        wait_until(
            lambda: all(s == "live" for s in httpx.get(base).json()["venues"].values()),
            120,
            0.5,
            what="every venue live",
        )
        print(
            f"soak: {len(VENUES)} venues x 9 bases at {args.rate} updates/s per venue, "
            f"{args.minutes} min; RSS in MB",
            flush=True,
        )
        print(
            "t_s   " + " ".join(f"{p.split(':')[-1]:>12}" for p in PROGRAMS) + "       total",
            flush=True,
        )
        samples: list[list[float]] = []
        times: list[float] = []
        start = time.monotonic()
        while True:
            row = []
            for prog in PROGRAMS:
                try:
                    row.append(psutil.Process(stack.pid(prog)).memory_info().rss / 2**20)
                except (psutil.Error, ValueError):
                    row.append(float("nan"))
            samples.append(row)
            t = time.monotonic() - start
            times.append(t)
            print(
                f"{t:5.0f} " + " ".join(f"{x:12.1f}" for x in row) + f" {sum(row):11.1f}",
                flush=True,
            )
            if t >= args.minutes * 60:
                break
            time.sleep(args.every)
        b0 = next((i for i, t in enumerate(times) if t >= args.warmup), len(times) - 1)
        first, last = samples[b0], samples[-1]
        print(
            f"growth from t={times[b0]:.0f}s to the end (MB): "
            + ", ".join(
                f"{p.split(':')[-1]} {b - a:+.1f}"
                for p, a, b in zip(PROGRAMS, first, last, strict=True)
            )
        )
        print(
            "trend from then on, least squares (MB/min): "
            + ", ".join(
                f"{p.split(':')[-1]} {slope(times[b0:], [r[i] for r in samples[b0:]]):+.2f}"
                for i, p in enumerate(PROGRAMS)
            )
        )
        status = httpx.get(base.replace("healthz", "api/status")).json()["venues"]
        print(
            "venues: "
            + ", ".join(
                f"{v} {s['state']} gaps={s['gaps']} resyncs={s['resyncs']}"
                for v, s in status.items()
            )
        )
    finally:
        stack.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
