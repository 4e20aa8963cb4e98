"""Raw-frame recording: every exchange frame with its receive time, zstd-compressed, one file
per venue and hour.

File format (one record per line inside the zstd stream), designed to be replayed by the
simulator: ``<ts_recv_ns> <connection label> <frame text>``; the label has no spaces.
Binary frames are written as ``b64:`` + base64.
"""

from __future__ import annotations

import base64
import logging
import time
from pathlib import Path
from typing import BinaryIO

import zstandard

log = logging.getLogger("flowbook.ingest.recorder")


class Recorder:
    def __init__(self, directory: str | Path, venue: str, rotate_s: int = 3600) -> None:
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.venue = venue
        self.rotate_s = rotate_s
        self._slot: int | None = None
        self._raw: BinaryIO | None = None
        self._out = None
        self.records = 0

    def path_for(self, slot: int) -> Path:
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(slot * self.rotate_s))
        return self.dir / f"{self.venue}-{stamp}.frames.zst"

    def write(self, label: str, ts_recv_ns: int, frame: str | bytes) -> None:
        slot = ts_recv_ns // 1_000_000_000 // self.rotate_s
        if slot != self._slot:
            self._open(slot)
        if isinstance(frame, bytes):
            text = "b64:" + base64.b64encode(frame).decode()
        else:
            text = frame.replace("\n", " ")
        self._out.write(f"{ts_recv_ns} {label.replace(' ', '_') or '-'} {text}\n".encode())
        self.records += 1

    def _open(self, slot: int) -> None:
        self.close()
        self._slot = slot
        path = self.path_for(slot)
        self._raw = open(path, "ab")  # noqa: SIM115 - lives as long as the hour's file
        self._out = zstandard.ZstdCompressor(level=3).stream_writer(self._raw, closefd=False)
        log.info("%s: recording frames to %s", self.venue, path)

    def flush(self) -> None:
        if self._out is not None:
            self._out.flush(zstandard.FLUSH_FRAME)

    def close(self) -> None:
        if self._out is not None:
            self._out.flush(zstandard.FLUSH_FRAME)
            self._out.close()
            self._raw.close()
        self._out = self._raw = None


def read_recording(path: str | Path):
    """Yield ``(ts_recv_ns, label, frame)`` from a recording file (all its zstd frames)."""
    with open(path, "rb") as fh:
        reader = zstandard.ZstdDecompressor().stream_reader(fh, read_across_frames=True)
        buf = b""
        while chunk := reader.read(1 << 16):
            buf += chunk
            *lines, buf = buf.split(b"\n")
            for line in lines:
                ts, label, text = line.decode().split(" ", 2)
                frame: str | bytes = base64.b64decode(text[4:]) if text.startswith("b64:") else text
                yield int(ts), label, frame
