"""Logging set-up shared by every process: one line per record, with the service name."""

from __future__ import annotations

import logging
import os


def setup_logging(service: str, level_name: str | None = None) -> None:
    """``level_name`` (default: ``$FLOWBOOK_LOG_LEVEL``, else INFO); one that is not a level is
    warned about and INFO used, so a typo does not stop the process."""
    source = "--log-level" if level_name else "FLOWBOOK_LOG_LEVEL"
    name = (level_name or os.environ.get("FLOWBOOK_LOG_LEVEL") or "INFO").upper()
    level = logging.getLevelNamesMapping().get(name)
    logging.basicConfig(
        level=logging.INFO if level is None else level,
        format=f"%(asctime)s %(levelname)s {service} %(name)s: %(message)s",
    )
    if level is None:
        logging.getLogger("flowbook").warning(
            "%s=%r is not a log level (DEBUG, INFO, WARNING, ERROR): INFO", source, name
        )
    logging.getLogger("httpx").setLevel(logging.WARNING)
    logging.getLogger("httpcore").setLevel(logging.WARNING)
