"""``python -m services.simulator --config deploy/demo.toml [--venues binance,...]
[--control-port N] [--rate N] [--log-level INFO]``
``python -m services.simulator --config FILE --replay REC [REC ...] [--speed N]``

Serves every enabled venue that has a ``sim_port`` (or the ones named) in its own dialect, plus the
HTTP control API, until SIGTERM/SIGINT. Prints one line per listening port to stdout. With
``--replay`` it serves an ingest recording (``record_dir``) instead, see ``replay.py``: recorded
pace times ``--speed`` (default 1; 0: as fast as possible).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys

from common import aio
from common.logs import setup_logging

from .config import load_config
from .engine import Simulator
from .replay import Replayer, load_records

log = logging.getLogger("simulator")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m services.simulator", description=__doc__)
    p.add_argument(
        "--config",
        default=os.environ.get("FLOWBOOK_CONFIG", "deploy/demo.toml"),
        help="TOML file (default: $FLOWBOOK_CONFIG, else deploy/demo.toml)",
    )
    p.add_argument("--venues", help="comma-separated venues to serve (default: all enabled)")
    p.add_argument("--control-port", type=int, help="override [simulator] control_port (0: any)")
    p.add_argument("--rate", type=float, help="override [simulator] rate (updates/s per venue)")
    p.add_argument("--log-level", help="default: $FLOWBOOK_LOG_LEVEL, else INFO")
    p.add_argument("--replay", nargs="+", metavar="REC", help="serve these recording files")
    p.add_argument("--speed", type=float, default=1.0, help="replay pace factor, 0: max speed")
    return p.parse_args(argv)


async def amain(args: argparse.Namespace) -> int:
    venues = [v.strip() for v in args.venues.split(",") if v.strip()] if args.venues else None
    if args.replay:
        rec_venue, records = load_records(args.replay)
        cfg = load_config(args.config, [rec_venue], args.control_port, args.rate)
        sim: Simulator | Replayer = Replayer(cfg, rec_venue, records, args.speed)
    else:
        cfg = load_config(args.config, venues, args.control_port, args.rate)
        sim = Simulator(cfg)
    if not sim.venues:
        log.error("no venue to simulate in %s", args.config)
        return 2
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, sim.stop)
    await sim.start()
    host = cfg.host
    print(f"control http://{host}:{sim.control_port}/sim", flush=True)
    for name, venue in sim.venues.items():
        print(f"venue {name} ws://{host}:{venue.port} http://{host}:{venue.port}", flush=True)
    if not args.replay:
        log.info(
            "simulating %s at %g updates/s per venue, seed %d",
            ",".join(sim.venues),
            cfg.rate,
            cfg.seed,
        )
    try:
        await sim.run()
    finally:
        log.info("shutting down")
        await sim.close()
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    setup_logging("simulator", args.log_level)
    logging.getLogger("websockets").setLevel(logging.WARNING)
    try:
        return aio.run(amain(args))
    except (ValueError, LookupError, OSError) as exc:  # ConfigError, FaultError included
        log.error("%s", exc)
        return 2


if __name__ == "__main__":
    sys.exit(main())
