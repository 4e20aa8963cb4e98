"""Raw-frame recording: every exchange frame and REST answer with its receive time, zstd-compressed,
one file per venue and hour, replayable by ``python -m services.simulator --replay``.

File ``<dir>/<venue>-<YYYYMMDDTHHMM>Z[_<part>].frames.zst``: a sequence of independent zstd frames
(one per flush, at least every second, so a killed process loses at most that much). A process
never appends to an existing file: a restart within the hour writes the next ``_<part>``. Inside,
one record per line, ``<ts_ns> <tag> <label> <payload>``:

| tag    | label              | payload                                              |
|--------|--------------------|------------------------------------------------------|
| `hdr`  | venue              | JSON `{"format":"flowbook-frames","version":1,...}`  |
| `ws`   | connection label   | the text frame, verbatim (it has no line break)      |
| `wsx`  | connection label   | base64 of a text frame that has a line break         |
| `wsb`  | connection label   | base64 of a binary frame                             |
| `rest` | `meta`/`snapshot`  | `<url with query> <base64 of the response body>`     |

``ts_ns`` is ``time.time_ns()`` when the runner got the frame or body. Records are in the order
the runner saw them, which the replay keeps (a snapshot sits exactly between the stream frames
that came before and after it). ``read_recording`` reads every complete record; a truncated or
corrupted zstd frame costs only its own records (reading resumes at the next frame's magic).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import mmap
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO
from urllib.parse import urlencode

import orjson
import zstandard

log = logging.getLogger("flowbook.ingest.recorder")

FORMAT = "flowbook-frames"
VERSION = 1
SUFFIX = ".frames.zst"
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
FLUSH_EVERY_S = 0.5
READ_CHUNK = 1 << 20


@dataclass(frozen=True, slots=True)
class Record:
    """One recorded event. ``data``: a WS frame (``str`` text, ``bytes`` binary), a REST body
    (``bytes``), or the header's JSON (``str``). ``url`` is set for REST records."""

    ts_ns: int
    kind: str  # "ws" | "rest" | "hdr"
    label: str
    data: str | bytes
    url: str = ""


class Recorder:
    """Writes one venue's recording. Never raises into the ingest: an I/O error is logged once
    and recording stops until the next file is due (the next hour: a disk that filled may have
    room again); ``failed`` says why, ``stats()`` tells the heartbeat."""

    def __init__(self, directory: str | Path, venue: str, rotate_s: int = 3600) -> None:
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.venue = venue
        self.rotate_s = rotate_s
        self.path: Path | None = None
        self.records = 0
        self.failed: str | None = None
        self.failures = 0
        self._failed_slot: int | None = None
        self._slot: int | None = None
        self._raw: BinaryIO | None = None
        self._out: zstandard.ZstdCompressionWriter | None = None
        self._dirty = False

    def path_for(self, slot: int, part: int = 0) -> Path:
        stamp = time.strftime("%Y%m%dT%H%MZ", time.gmtime(slot * self.rotate_s))
        return self.dir / f"{self.venue}-{stamp}{f'_{part}' if part else ''}{SUFFIX}"

    # -- writing ----------------------------------------------------------------------------
    def write(self, label: str, ts_recv_ns: int, frame: str | bytes) -> None:
        """One WebSocket frame as received on connection ``label``."""
        if isinstance(frame, bytes):
            tag, payload = "wsb", base64.b64encode(frame)
        elif "\n" in frame:
            tag, payload = "wsx", base64.b64encode(frame.encode("utf-8", "surrogatepass"))
        else:
            tag, payload = "ws", frame.encode("utf-8", "surrogatepass")
        self._line(ts_recv_ns, tag, label, payload)

    def rest(
        self,
        role: str,
        url: str,
        params: dict[str, str] | None,
        body: bytes,
        ts_ns: int | None = None,
    ) -> None:
        """One REST answer the runner got: ``role`` is ``meta`` (instrument metadata, served at
        once on replay) or ``snapshot`` (held on replay until the stream reaches this point)."""
        full = f"{url}?{urlencode(params)}" if params else url
        payload = full.replace(" ", "%20").encode() + b" " + base64.b64encode(body)
        self._line(time.time_ns() if ts_ns is None else ts_ns, "rest", role, payload)

    def _line(self, ts_ns: int, tag: str, label: str, payload: bytes) -> None:
        slot = ts_ns // 1_000_000_000 // self.rotate_s
        if self.failed:
            if self._failed_slot is not None and slot <= self._failed_slot:
                return
            log.warning("%s: recording again after: %s", self.venue, self.failed)
            self.failed = None
        label = "".join(label.split()) or "-"
        try:
            if self._slot is None or slot > self._slot:  # never back: clocks may step
                self._open(slot, ts_ns)
            assert self._out is not None
            self._out.write(b"%d %s %s %s\n" % (ts_ns, tag.encode(), label.encode(), payload))
        except (OSError, zstandard.ZstdError) as exc:
            self._fail(exc)
            return
        self._dirty = True
        self.records += 1

    def _open(self, slot: int, ts_ns: int) -> None:
        self.close()
        part = 0
        while (path := self.path_for(slot, part)).exists():
            part += 1
        self._slot, self.path = slot, path
        self._raw = open(path, "xb")  # noqa: SIM115 - lives as long as the hour's file
        self._out = zstandard.ZstdCompressor(level=3, write_checksum=True).stream_writer(
            self._raw, closefd=False
        )
        header = {"format": FORMAT, "version": VERSION, "venue": self.venue, "started_ns": ts_ns}
        self._out.write(b"%d hdr %s %s\n" % (ts_ns, self.venue.encode(), orjson.dumps(header)))
        self._dirty = True
        self.failed = None  # the previous file's close may have failed: this one is fine
        log.info("%s: recording frames to %s", self.venue, path)

    def flush(self) -> None:
        """End the current zstd frame and hand it to the OS (no-op if nothing was written)."""
        if not self._dirty or self._out is None or self._raw is None:
            return
        try:
            self._out.flush(zstandard.FLUSH_FRAME)
            self._raw.flush()
        except (OSError, zstandard.ZstdError) as exc:
            self._fail(exc)
        self._dirty = False

    async def flush_loop(self, interval_s: float = FLUSH_EVERY_S) -> None:
        """Run beside the ingest: flush every ``interval_s`` (a crash loses at most that)."""
        while True:
            await asyncio.sleep(interval_s)
            self.flush()

    def close(self) -> None:
        self.flush()
        raw = self._raw
        self._out = self._raw = None  # the writer's own close would add an empty zstd frame
        if raw is not None:
            try:
                raw.close()
            except OSError as exc:
                log.error("%s: closing recording %s: %s", self.venue, self.path, exc)

    def stats(self) -> dict[str, object]:
        return {
            "path": str(self.path) if self.path else None,
            "records": self.records,
            "failed": self.failed,
            "failures": self.failures,
        }

    def _fail(self, exc: Exception) -> None:
        self.failed = f"{type(exc).__name__}: {exc}"
        self.failures += 1
        self._failed_slot = self._slot
        log.error("%s: recording to %s stopped: %s", self.venue, self.path, self.failed)
        raw = self._raw
        self._out = self._raw = None
        if raw is not None:
            with contextlib.suppress(OSError):
                raw.close()


# -- reading --------------------------------------------------------------------------------
def _parse(line: bytes) -> Record | None:
    try:
        ts, tag, label, payload = line.split(b" ", 3)
        ts_ns, label_s = int(ts), label.decode()
        if tag == b"ws":
            return Record(ts_ns, "ws", label_s, payload.decode("utf-8", "surrogatepass"))
        if tag == b"wsx":
            text = base64.b64decode(payload, validate=True).decode("utf-8", "surrogatepass")
            return Record(ts_ns, "ws", label_s, text)
        if tag == b"wsb":
            return Record(ts_ns, "ws", label_s, base64.b64decode(payload, validate=True))
        if tag == b"rest":
            url, body = payload.split(b" ", 1)
            body_b = base64.b64decode(body, validate=True)
            return Record(ts_ns, "rest", label_s, body_b, url.decode())
        if tag == b"hdr":
            return Record(ts_ns, "hdr", label_s, payload.decode())
    except (ValueError, UnicodeDecodeError):
        pass
    return None


def _frames(mm: mmap.mmap | bytes, name: str) -> Iterator[bytes]:
    """Decompressed zstd frames of ``mm``, each cut to its last complete line. A damaged or
    truncated frame yields what decoded before the damage; reading goes on at the next frame."""
    size = len(mm)
    pos = mm.find(ZSTD_MAGIC, 0)
    while 0 <= pos < size:
        start = pos
        dobj = zstandard.ZstdDecompressor().decompressobj()
        out: list[bytes] = []
        problem = "truncated"
        try:
            while pos < size:
                chunk = mm[pos : pos + READ_CHUNK]
                out.append(dobj.decompress(chunk))
                if dobj.eof:
                    pos += len(chunk) - len(dobj.unused_data)
                    problem = ""
                    break
                pos += len(chunk)
        except zstandard.ZstdError as exc:
            problem = f"damaged ({exc})"
            pos = start + 1
        data = b"".join(out)
        if problem:
            data = data[: data.rfind(b"\n") + 1]
            log.warning(
                "%s: %s zstd frame at byte %d: kept %d bytes", name, problem, start, len(data)
            )
        yield data
        if pos < size and mm[pos : pos + 4] != ZSTD_MAGIC:
            nxt = mm.find(ZSTD_MAGIC, pos)
            if problem == "" and nxt != pos:
                log.warning(
                    "%s: %d bytes of garbage at byte %d skipped",
                    name,
                    (nxt if nxt >= 0 else size) - pos,
                    pos,
                )
            pos = nxt


def read_recording(path: str | Path) -> Iterator[Record]:
    """Every readable record of one recording file, in order. Damaged lines are skipped."""
    path = Path(path)
    with open(path, "rb") as fh:
        if path.stat().st_size == 0:
            return
        with mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as mm:
            for data in _frames(mm, path.name):
                for line in data.split(b"\n"):
                    if not line:
                        continue
                    rec = _parse(line)
                    if rec is None:
                        log.warning("%s: unreadable record skipped: %.120r", path.name, line)
                        continue
                    yield rec


def recording_venue(path: str | Path) -> str:
    """The venue of a recording: from its header, else from the file name."""
    for rec in read_recording(path):
        if rec.kind == "hdr":
            return rec.label
        break
    return Path(path).name.split("-", 1)[0]
