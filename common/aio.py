"""Running a service's event loop: uvloop when it is installed, else the standard loop.

uvloop (libuv) cuts the event loop's and the WebSocket transports' CPU per message, which is
most of what ingest and the gateway spend (docs/BENCHMARKS.md). ``FLOWBOOK_LOOP=asyncio``
forces the standard loop, e.g. to compare the two or to rule uvloop out when debugging.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Coroutine
from typing import Any, TypeVar

log = logging.getLogger("flowbook")

T = TypeVar("T")


def loop_name() -> str:
    """``uvloop`` or ``asyncio``: the loop ``run`` will use."""
    if os.environ.get("FLOWBOOK_LOOP", "").lower() == "asyncio":
        return "asyncio"
    try:
        import uvloop  # noqa: F401
    except ImportError:
        return "asyncio"
    return "uvloop"


def run(main: Coroutine[Any, Any, T]) -> T:
    if loop_name() == "uvloop":
        import uvloop

        return uvloop.run(main)
    return asyncio.run(main)
