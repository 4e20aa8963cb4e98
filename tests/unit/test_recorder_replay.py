"""The simulator's replay of a recording, in process: stream order, the snapshot rendezvous,
REST answers, pacing and the control API."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

import httpx
import orjson
import pytest
from websockets.asyncio.client import connect

from services.ingest.recorder import Record, Recorder
from services.simulator import replay
from services.simulator.config import SimConfig, VenueSpec
from services.simulator.replay import Replayer, ReplayVenue, load_records, replay_handler

MS = 1_000_000
T0 = 1_700_000_000 * 10**9
DEPTH = "/api/v3/depth?symbol=BTCUSDT&limit=1000"


def recording(step_ms: int = 1) -> list[Record]:
    frames = [Record(T0 + i * step_ms * MS, "ws", "c-0", f"f{i}") for i in range(1, 11)]
    frames.append(Record(T0 + 11 * step_ms * MS, "ws", "c-0", b"\x00binary"))
    snap = Record(T0 + 5 * step_ms * MS + 1, "rest", "snapshot", b'{"id":5}', f"http://h:1{DEPTH}")
    meta = Record(T0, "rest", "meta", b'{"symbols":[]}', "http://h:1/api/v3/exchangeInfo?b=2&a=1")
    return [meta, *frames[:5], snap, *frames[5:]]


async def until(cond: Callable[[], object], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.005)


def run(test: Callable[[ReplayVenue], Awaitable[None]], speed: float = 0, step_ms: int = 1):
    async def main() -> None:
        venue = ReplayVenue("binance", "127.0.0.1", 0, recording(step_ms), speed)
        await venue.start()
        play = asyncio.create_task(venue.play())
        try:
            await test(venue)
        finally:
            play.cancel()
            await venue.stop()

    asyncio.run(main())


async def read_all(ws, n: int) -> list[str | bytes]:
    return [await asyncio.wait_for(ws.recv(), 10) for _ in range(n)]


def test_stream_waits_at_the_recorded_snapshot_until_it_is_requested() -> None:
    async def test(venue: ReplayVenue) -> None:
        base = f"http://127.0.0.1:{venue.port}"
        async with connect(f"ws://127.0.0.1:{venue.port}/stream?streams=btcusdt@depth") as ws:
            assert await read_all(ws, 5) == ["f1", "f2", "f3", "f4", "f5"]
            point = venue.points[replay.url_key("/api/v3/depth", "symbol=BTCUSDT&limit=1000")][0]
            await until(lambda: venue.position == 5)  # parked on the snapshot, f6 not sent
            assert venue.frames_sent == 5 and not point.reached.is_set() and not venue.done
            async with httpx.AsyncClient() as http:
                r = await http.get(f"{base}/api/v3/depth?limit=1000&symbol=BTCUSDT")
                assert (r.status_code, r.content) == (200, b'{"id":5}')
                rest = await read_all(ws, 6)
                assert rest == ["f6", "f7", "f8", "f9", "f10", b"\x00binary"]
                await until(lambda: venue.done)
                r = await http.get(f"{base}/api/v3/exchangeInfo?a=1&b=2")  # any param order
                assert (r.status_code, r.content) == (200, b'{"symbols":[]}')
                assert (await http.get(f"{base}{DEPTH}")).status_code == 503  # one recorded
                assert (await http.get(f"{base}/api/v3/ticker")).status_code == 404
            assert venue.replay_json() | {"speed": 0} == {
                "frames_sent": 11,
                "frames_total": 11,
                "frames_dropped": 0,
                "snapshots_recorded": 1,
                "snapshots_served": 1,
                "events_done": 12,
                "events_total": 12,
                "speed": 0,
                "started": True,
                "done": True,
            }
            # after the last frame the connection stays open, idle
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(ws.recv(), 0.2)

    run(test)


def test_a_snapshot_nobody_asks_for_is_passed_after_the_hold(monkeypatch) -> None:
    monkeypatch.setattr(replay, "HOLD_S", 0.2)

    async def test(venue: ReplayVenue) -> None:
        async with connect(f"ws://127.0.0.1:{venue.port}/ws") as ws:
            assert len(await read_all(ws, 11)) == 11
            await until(lambda: venue.done)
            async with httpx.AsyncClient() as http:  # a late request still gets it, at once
                r = await http.get(f"http://127.0.0.1:{venue.port}{DEPTH}")
                assert r.content == b'{"id":5}'

    run(test)


def test_recorded_pace_times_speed() -> None:
    async def test(venue: ReplayVenue) -> None:
        async with connect(f"ws://127.0.0.1:{venue.port}/ws") as ws:
            t0 = time.monotonic()
            async with httpx.AsyncClient() as http:
                await http.get(f"http://127.0.0.1:{venue.port}{DEPTH}")
            await read_all(ws, 11)
            # 10 steps of 100 ms recorded, at speed 4: 250 ms (the replay clock started a bit
            # before our t0); as fast as possible would take a few ms
            assert time.monotonic() - t0 >= 0.2

    run(test, speed=4, step_ms=100)


def test_control_api_in_replay_mode(tmp_path) -> None:
    rec = Recorder(tmp_path, "binance")
    for r in recording():
        if r.kind == "ws":
            rec.write(r.label, r.ts_ns, r.data)
        else:
            rec.rest(r.label, r.url, None, bytes(r.data), r.ts_ns)
    rec.close()
    venue, records = load_records(list(tmp_path.iterdir()))
    assert venue == "binance" and len(records) == 13
    cfg = SimConfig(control_port=0, venues=[VenueSpec("binance", 0, "USDT", ("BTC",))])

    async def main() -> None:
        rep = Replayer(cfg, venue, records, 0)
        handle = replay_handler(rep)
        status, stats = await handle("GET", "/sim/stats", {}, b"")
        assert status == 200 and stats["replay"]["frames_total"] == 11
        assert stats["replay"]["done"] is False and stats["paused"] is False
        status, _ = await handle("POST", "/sim/pause", {}, b"")
        assert status == 200 and rep.paused
        fault = orjson.dumps({"venue": "binance", "kind": "gap"})
        assert (await handle("POST", "/sim/fault", {}, fault))[0] == 400
        assert (await handle("POST", "/sim/rate", {}, b'{"rate": 5}'))[0] == 400
        query = {"venue": "binance", "symbol": "BTCUSDT"}
        assert (await handle("GET", "/sim/book", query, b""))[0] == 400

    asyncio.run(main())
    with pytest.raises(ValueError, match="sim_port"):
        Replayer(SimConfig(), "binance", records, 0)


def test_a_client_asking_again_while_held_gets_the_same_snapshot() -> None:
    async def test(venue: ReplayVenue) -> None:
        url = f"http://127.0.0.1:{venue.port}{DEPTH}"
        async with connect(f"ws://127.0.0.1:{venue.port}/ws") as ws, httpx.AsyncClient() as http:
            first, retry = await asyncio.gather(http.get(url), http.get(url))
            assert first.content == retry.content == b'{"id":5}'
            assert len(await read_all(ws, 11)) == 11
            assert venue.snapshots_served == 1
            assert (await http.get(url)).status_code == 503

    run(test)
