"""``python -m services.ingest <venue> [--config FILE]``: one venue's ingest process."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import sys

import zmq

from common import aio
from common.bus import Publisher
from common.config import ConfigError, load
from common.logs import setup_logging
from common.sched import apply_realtime
from services.ingest.runner import IngestRunner, load_plugin

log = logging.getLogger("flowbook.ingest")


async def _serve(runner: IngestRunner) -> None:
    """Run until SIGTERM (supervisord's stop), then unwind so the recorder is closed."""
    task = asyncio.current_task()
    assert task is not None
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
    with contextlib.suppress(asyncio.CancelledError):
        await runner.run()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m services.ingest", description=__doc__)
    ap.add_argument("venue", help="venue name, a [venues.<name>] section of the config")
    ap.add_argument("--config", help="config file (default $FLOWBOOK_CONFIG or deploy/demo.toml)")
    args = ap.parse_args(argv)
    setup_logging(f"ingest-{args.venue}")
    try:
        cfg = load(args.config)
        venue = cfg.venue(args.venue)
        if not venue.enabled:
            print(f"flowbook ingest: venue {venue.name} is disabled in {cfg.path}", file=sys.stderr)
            return 2
        plugin = load_plugin(venue)
    except ConfigError as exc:
        print(f"flowbook ingest: {exc}", file=sys.stderr)
        return 2
    try:
        publisher = Publisher(f"ingest-{venue.name}", venue.pub, venue.control)
    except zmq.ZMQError as exc:
        print(f"flowbook ingest: cannot open the bus endpoints: {exc}", file=sys.stderr)
        return 2
    # twice the published depth stays known while a refresh is on its way
    runner = IngestRunner(venue, plugin, publisher, cover_levels=2 * cfg.book.depth)
    apply_realtime(cfg.realtime_priority_for("ingest"), f"ingest-{venue.name}")
    try:
        aio.run(_serve(runner))
    except KeyboardInterrupt:
        pass
    finally:
        if runner.recorder:
            runner.recorder.close()
        publisher.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
