"""Readers for the real recordings in ../shared/captures (formats in its SOURCES.md).

The files are read in place, never copied into the repository. A test that needs them skips
with a clear reason when the folder is absent, and fails instead when FLOWBOOK_REQUIRE_CAPTURES=1
(CI sets it).
"""

from __future__ import annotations

import gzip
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

CAPTURES = Path(
    os.environ.get("FLOWBOOK_CAPTURES", Path(__file__).resolve().parents[2] / "shared" / "captures")
)


def capture(rel: str) -> Path:
    """Path of a capture file, or skip (fail under FLOWBOOK_REQUIRE_CAPTURES=1) if absent."""
    path = CAPTURES / rel
    if not path.exists():
        reason = f"capture {path} not found (the real recordings live in ../shared/captures beside the checkout)"
        if os.environ.get("FLOWBOOK_REQUIRE_CAPTURES") == "1":
            pytest.fail(reason + " and FLOWBOOK_REQUIRE_CAPTURES=1")
        pytest.skip(reason)
    return path


def read_hbt(rel: str) -> Iterator[tuple[int, str]]:
    """hftbacktest collector files: ``<local_ts_ns> <raw frame>`` per line, gzip."""
    with gzip.open(capture(rel), "rt") as fh:
        for line in fh:
            ts, _, frame = line.rstrip("\n").partition(" ")
            if frame:
                yield int(ts), frame


def read_cf1(rel: str) -> Iterator[tuple[str, int, str, str]]:
    """cryptofeed v1 dumps. Yields ``(kind, ts_ns, where, text)`` with kind ``recv`` (a frame
    received), ``send`` (sent by the client), ``connect`` or ``http`` (a REST body; ``where``
    is the URL)."""
    with open(capture(rel), errors="replace") as fh:
        for raw in fh:
            line = raw.rstrip("\n")
            if not line or line.startswith("configuration:"):
                continue
            if line.startswith(("wss://", "https://", "http://", "ws://")):
                url, _, rest = line.partition(" ")
                arrow, _, rest = rest.partition(" ")
                ts, _, text = rest.partition(": ")
                kind = {"<->": "connect", "<-": "send", "->": "http"}.get(arrow, "other")
                yield kind, int(float(ts.rstrip(":")) * 1e9), url, text
                continue
            ts, _, text = line.partition(": ")
            yield "recv", int(float(ts) * 1e9), "", text
