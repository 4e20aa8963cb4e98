"""Running a service's event loop: uvloop when it is installed, else the standard loop.

uvloop (libuv) cuts the event loop's and the WebSocket transports' CPU per message, which is
most of what ingest and the gateway spend (docs/BENCHMARKS.md). ``FLOWBOOK_LOOP=asyncio``
forces the standard loop, e.g. to compare the two or to rule uvloop out when debugging.

Before the loop starts, glibc's mmap threshold is pinned at its default 128 KiB. Left dynamic,
the first freed block above it (orjson's parse buffer for a 20 KB instruments list, a large REST
body) raises the threshold for the rest of the process; the standard loop's 256 KiB buffer per
socket read then comes from the heap instead of its own mapping, the heap fragments and RSS grew
by ~1.4 MB a minute (Bybit ingest) while the memory in use stayed flat.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
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


M_MMAP_THRESHOLD = -3  # glibc mallopt parameter
MMAP_THRESHOLD = 128 * 1024  # glibc's default


def pin_mmap_threshold() -> bool:
    """Fix glibc's mmap threshold (see the module docstring); False where there is no glibc."""
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name)
        return bool(libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD))
    except (OSError, AttributeError, TypeError) as exc:
        log.info("mmap threshold left to the allocator (%s: %s)", type(exc).__name__, exc)
        return False


def run(main: Coroutine[Any, Any, T]) -> T:
    pin_mmap_threshold()
    if loop_name() == "uvloop":
        import uvloop

        return uvloop.run(main)
    return asyncio.run(main)
