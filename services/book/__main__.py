"""``python -m services.book [--config FILE]``: the book builder process."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys

import zmq

from common import aio
from common.config import ConfigError, load
from common.logs import setup_logging
from common.sched import apply_realtime
from services.book.app import BookBuilder

log = logging.getLogger("flowbook.book")


async def _serve(builder: BookBuilder) -> None:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await builder.run(stop)
    log.info("book builder stopping")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m services.book", description=__doc__)
    ap.add_argument("--config", help="config file (default $FLOWBOOK_CONFIG or deploy/demo.toml)")
    args = ap.parse_args(argv)
    setup_logging("book")
    try:
        cfg = load(args.config)
        builder = BookBuilder(cfg)
    except ConfigError as exc:
        print(f"flowbook book: {exc}", file=sys.stderr)
        return 2
    except zmq.ZMQError as exc:
        print(f"flowbook book: cannot open the bus endpoints: {exc}", file=sys.stderr)
        return 2
    apply_realtime(cfg.realtime_priority_for("book"), "book")
    try:
        aio.run(_serve(builder))
    except KeyboardInterrupt:
        pass
    finally:
        builder.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
