"""Logging set-up shared by every process: one line per record, with the service name."""

from __future__ import annotations

import logging
import os


def setup_logging(service: str) -> None:
    name = os.environ.get("FLOWBOOK_LOG_LEVEL", "INFO").upper()
    level = logging.getLevelNamesMapping().get(name)
    logging.basicConfig(
        level=logging.INFO if level is None else level,
        format=f"%(asctime)s %(levelname)s {service} %(name)s: %(message)s",
    )
    if level is None:
        logging.getLogger("flowbook").warning(
            "FLOWBOOK_LOG_LEVEL=%r is not a log level (DEBUG, INFO, WARNING, ERROR): INFO", name
        )
    logging.getLogger("httpx").setLevel(logging.WARNING)
    logging.getLogger("httpcore").setLevel(logging.WARNING)
