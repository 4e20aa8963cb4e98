"""``python -m services.gateway [--config FILE]``: the WebSocket/HTTP gateway process."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys

from common import aio
from common.config import ConfigError, load
from common.logs import setup_logging
from common.sched import apply_realtime
from services.gateway.app import Gateway
from services.gateway.settings import from_config

log = logging.getLogger("flowbook.gateway")


async def _main(gateway: Gateway) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await gateway.run(stop)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m services.gateway", description=__doc__)
    ap.add_argument("--config", help="config file (default $FLOWBOOK_CONFIG or deploy/demo.toml)")
    args = ap.parse_args(argv)
    setup_logging("gateway")
    logging.getLogger("websockets").setLevel(logging.WARNING)
    try:
        cfg = load(args.config)
        gateway = Gateway(cfg, from_config(cfg))
    except ConfigError as exc:
        print(f"flowbook gateway: {exc}", file=sys.stderr)
        return 2
    apply_realtime(cfg.realtime_priority_for("gateway"), "gateway")
    try:
        aio.run(_main(gateway))
    except OSError as exc:
        log.error("cannot serve on %s:%d: %s", gateway.settings.host, gateway.settings.port, exc)
        return 1
    except KeyboardInterrupt:
        pass
    log.info("stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
