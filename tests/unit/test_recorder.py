"""The ingest recorder: the file format, hourly rotation, flushing, and damaged files."""

from __future__ import annotations

import asyncio
import errno
from pathlib import Path

import pytest

from services.ingest.recorder import Record, Recorder, read_recording, recording_venue

HOUR_NS = 3600 * 10**9
T0 = 1_700_000_000 * 10**9 // HOUR_NS * HOUR_NS  # the start of an hour (2023-11-14 22:00 UTC)


def records(path: Path) -> list[Record]:
    return [r for r in read_recording(path) if r.kind != "hdr"]


def test_every_kind_of_frame_reads_back_exactly(tmp_path: Path) -> None:
    rec = Recorder(tmp_path, "binance")
    frames: list[str | bytes] = [
        '{"stream":"btcusdt@depth","data":{"e":"depthUpdate"}}',
        "b64:not base64, just text that looks like a tag",
        '{"a": "two\nlines"}\r\n',
        "ünïcödé ✓ with  double  spaces ",
        b"\x00\x01binary\n\xff",
        "",
    ]
    for i, frame in enumerate(frames):
        rec.write("binance-0" if i % 2 else "binance 1", T0 + i, frame)
    rec.rest("meta", "http://127.0.0.1:9101/api/v3/exchangeInfo", None, b'{"symbols":[]}', T0 + 10)
    depth = "http://127.0.0.1:9101/api/v3/depth"
    rec.rest("snapshot", depth, {"symbol": "BTCUSDT", "limit": "1000"}, b"{\n}", T0 + 11)
    rec.close()
    (path,) = tmp_path.iterdir()
    assert path.name == "binance-20231114T2200Z.frames.zst"
    assert recording_venue(path) == "binance"
    got = list(read_recording(path))
    assert got[0].kind == "hdr" and got[0].label == "binance"
    ws = [r for r in got if r.kind == "ws"]
    assert [r.data for r in ws] == frames
    assert [r.ts_ns for r in ws] == [T0 + i for i in range(len(frames))]
    assert {r.label for r in ws} == {"binance-0", "binance1"}  # labels never hold spaces
    rest = [r for r in got if r.kind == "rest"]
    assert [(r.label, r.url, r.data) for r in rest] == [
        ("meta", "http://127.0.0.1:9101/api/v3/exchangeInfo", b'{"symbols":[]}'),
        ("snapshot", f"{depth}?symbol=BTCUSDT&limit=1000", b"{\n}"),
    ]


def test_one_file_per_hour_and_never_appending_to_an_old_one(tmp_path: Path) -> None:
    rec = Recorder(tmp_path, "kraken")
    for i in range(5):
        rec.write("k", T0 + HOUR_NS - 2 + i, f"frame {i}")  # 2 in one hour, 3 in the next
    rec.write("k", T0 + 5, "late: the clock stepped back")  # stays in the current file
    rec.close()
    first, second = sorted(tmp_path.iterdir())
    assert (first.name, second.name) == (
        "kraken-20231114T2200Z.frames.zst",
        "kraken-20231114T2300Z.frames.zst",
    )
    assert [r.data for r in records(first)] == ["frame 0", "frame 1"]
    assert [r.data for r in records(second)] == [
        "frame 2",
        "frame 3",
        "frame 4",
        "late: the clock stepped back",
    ]
    again = Recorder(tmp_path, "kraken")  # a restart within the hour: a new part
    again.write("k", T0 + HOUR_NS + 10, "after restart")
    again.close()
    assert (tmp_path / "kraken-20231114T2300Z_1.frames.zst").exists()
    assert [r.data for r in records(second)][-1] == "late: the clock stepped back"


def write_frames(path_dir: Path, batches: int, per_batch: int) -> Path:
    rec = Recorder(path_dir, "bybit")
    for b in range(batches):
        for i in range(per_batch):
            rec.write("c", T0 + b * 1000 + i, f'{{"batch":{b},"i":{i},"pad":"{"x" * 50}"}}')
        rec.flush()  # one zstd frame per batch, as the runner's periodic flush does
    assert rec.path is not None
    path = rec.path
    rec.close()
    return path


def frame_starts(data: bytes) -> list[int]:
    return [i for i in range(len(data)) if data[i : i + 4] == b"\x28\xb5\x2f\xfd"]


def test_a_truncated_tail_costs_only_the_unfinished_frame(tmp_path: Path) -> None:
    path = write_frames(tmp_path, 3, 200)
    data = path.read_bytes()
    whole = records(path)
    assert len(whole) == 600
    starts = frame_starts(data)
    assert len(starts) == 3  # the header shares the first frame with batch 0
    for size in range(0, len(data), 7):  # killed after any byte
        path.write_bytes(data[:size])
        got = records(path)
        assert got == whole[: len(got)], "a prefix of the records, each one intact"
        finished = sum(1 for s in starts[1:] if s <= size)  # frames complete before the cut
        assert len(got) >= 200 * finished
    path.write_bytes(data)
    assert records(path) == whole


def test_a_damaged_frame_in_the_middle_is_skipped(tmp_path: Path) -> None:
    path = write_frames(tmp_path, 3, 200)
    whole = records(path)
    data = bytearray(path.read_bytes())
    frames_at = frame_starts(bytes(data))
    assert len(frames_at) == 3
    mid = (frames_at[1] + frames_at[2]) // 2
    data[mid : mid + 8] = b"\xde\xad\xbe\xef" * 2
    path.write_bytes(bytes(data))
    got = records(path)
    assert got[:200] == whole[:200] and got[-200:] == whole[-200:]
    assert all(r in whole for r in got)  # nothing invented


def test_flushed_records_are_readable_while_recording(tmp_path: Path) -> None:
    async def main() -> None:
        rec = Recorder(tmp_path, "okx")
        task = asyncio.create_task(rec.flush_loop(0.05))
        rec.write("c", T0, "first")
        deadline = asyncio.get_running_loop().time() + 10
        while not (rec.path and [r.data for r in records(rec.path)] == ["first"]):
            assert asyncio.get_running_loop().time() < deadline, "never flushed"
            await asyncio.sleep(0.02)
        task.cancel()
        rec.close()

    asyncio.run(main())


def test_a_write_error_stops_recording_without_raising(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    rec = Recorder(tmp_path, "coinbase")
    rec.write("c", T0, "kept")
    rec.flush()

    class DiskFull:
        def write(self, _: bytes) -> int:
            raise OSError(errno.ENOSPC, "No space left on device")

        flush = write

    rec._out = DiskFull()  # type: ignore[assignment]
    rec.write("c", T0 + 1, "lost")
    assert rec.failed and "No space left" in rec.failed
    rec.write("c", T0 + 2, "ignored")
    rec.rest("snapshot", "http://x/depth", None, b"{}", ts_ns=T0 + 3)
    rec.flush()
    assert rec.stats()["failed"] and rec.stats()["failures"] == 1
    first = rec.path
    # the next hour's file is tried again (the disk may have room by then)
    rec.write("c", T0 + HOUR_NS, "next hour")
    rec.close()
    assert [r.data for r in records(first)] == ["kept"]
    assert rec.path != first and [r.data for r in records(rec.path)] == ["next hour"]
    assert rec.stats() == {"path": str(rec.path), "records": 2, "failed": None, "failures": 1}
    assert "recording to" in caplog.text and "recording again" in caplog.text
