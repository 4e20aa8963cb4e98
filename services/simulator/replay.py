"""Replay of an ingest recording (``services/ingest/recorder.py``) in the recorded venue's dialect.

``python -m services.simulator --config FILE --replay REC [REC ...] [--speed N]`` serves the
recording's venue on its ``sim_port``, instead of the simulated market:

* WebSocket: when the first client connects the replay starts; every recorded frame goes to the
  client that holds its connection label, at recorded pace times ``--speed`` (0: as fast as
  possible). Labels are handed to clients in order of connection (the runner's connection URLs
  are not recorded). What clients send is ignored: the venue's answers are in the recording.
  After the last frame connections stay open, idle.
* REST: a ``meta`` answer (instrument metadata) is served at once for its URL (path + query, in
  any order). The n-th answer for a ``snapshot`` URL is the n-th recorded snapshot, held until
  the replay has sent every frame recorded before it; the replay in turn waits (at most
  ``HOLD_S``) at that point for the request. So stream and snapshot meet exactly as in the
  recorded run. Past the recorded snapshots: 503. Unknown URLs: 404.
* Control API as for the simulator (``/sim/pause`` and ``/sim/resume`` pause the replay);
  ``GET /sim/stats`` adds ``replay: {"frames_sent","frames_total","done",...}``. Faults, rates
  and ``/sim/book`` are refused in replay mode (400).

Several files of one venue are replayed in the order they were recorded.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from services.ingest.recorder import Record, read_recording

from .config import SimConfig
from .control import make_handler
from .dialects.base import HttpReply
from .faults import FaultError
from .minihttp import Handler, serve_json
from .venue import VenueStats, _response

log = logging.getLogger("simulator.replay")

HOLD_S = 10.0  # longest wait at a snapshot point for its request, or for a client of a label
YIELD_EVERY = 256  # frames between yields to the loop when replaying as fast as possible

UrlKey = tuple[str, tuple[tuple[str, str], ...]]


def url_key(path: str, query: str) -> UrlKey:
    return path, tuple(sorted(parse_qsl(query, keep_blank_values=True)))


@dataclass
class SnapshotPoint:
    """A recorded REST snapshot: where it sits in the stream, and its two rendezvous."""

    index: int
    body: bytes
    requested: asyncio.Event = field(default_factory=asyncio.Event)
    reached: asyncio.Event = field(default_factory=asyncio.Event)


def load_records(files: list[str | Path]) -> tuple[str, list[Record]]:
    """The venue and the records of ``files`` (one venue), ordered by recording start."""
    loaded = []
    for path in files:
        records = list(read_recording(path))
        header = next((r for r in records if r.kind == "hdr"), None)
        venue = header.label if header else Path(path).name.split("-", 1)[0]
        start = records[0].ts_ns if records else 0
        loaded.append((start, str(path), venue, records))
    venues = {v for _, _, v, _ in loaded}
    if len(venues) != 1:
        raise ValueError(f"recordings of several venues: {sorted(venues)}")
    loaded.sort(key=lambda x: (x[0], x[1]))
    events = [r for *_, records in loaded for r in records if r.kind != "hdr"]
    return venues.pop(), events


class ReplayVenue:
    """Serves one venue's recording on ``host:port`` (WebSocket frames and REST bodies)."""

    def __init__(self, name: str, host: str, port: int, records: list[Record], speed: float):
        self.name, self.host, self.port = name, host, port
        self.speed = speed
        self.rate = speed  # what /sim/stats shows as the venue's rate
        self.books: dict = {}  # no simulated market: /sim/book has nothing to show
        self.stats = VenueStats()
        self.events: list[Record] = []
        self.meta: dict[UrlKey, list[bytes]] = {}
        self.points: dict[UrlKey, list[SnapshotPoint]] = {}
        self.point_at: dict[int, SnapshotPoint] = {}
        self.labels: list[str] = []
        for rec in records:
            if rec.kind == "rest":
                parts = urlsplit(rec.url)
                key = url_key(parts.path, parts.query)
                if rec.label != "snapshot":
                    self.meta.setdefault(key, []).append(bytes(rec.data))
                    continue
                point = SnapshotPoint(len(self.events), bytes(rec.data))
                self.points.setdefault(key, []).append(point)
                self.point_at[point.index] = point
            elif rec.kind != "ws":
                continue  # a header
            elif rec.label not in self.labels:
                self.labels.append(rec.label)
            self.events.append(rec)
        self.frames_total = sum(1 for e in self.events if e.kind == "ws")
        self.frames_sent = 0
        self.frames_dropped = 0
        self.snapshots_served = 0
        self.position = 0
        self.done = False
        self.paused = False
        self._resumed = asyncio.Event()
        self._resumed.set()
        self._started = asyncio.Event()
        self._next_point: Counter[UrlKey] = Counter()
        self._meta_requests: Counter[UrlKey] = Counter()
        self._attached: dict[str, ServerConnection] = {}
        self._label_of: dict[ServerConnection, str] = {}
        self._spare: list[ServerConnection] = []
        self._absent: set[str] = set()  # labels no client took in time: frames dropped at once
        self._attach_event = asyncio.Event()
        self._server: Server | None = None

    # ---- sockets --------------------------------------------------------------------------
    async def start(self) -> None:
        self._server = await serve(
            self._handler,
            self.host,
            self.port,
            process_request=self._process_request,
            compression=None,
            ping_interval=20,
            ping_timeout=60,
            max_size=2**20,
        )
        self.port = self._server.sockets[0].getsockname()[1]
        log.info(
            "%s: replaying %d frames and %d snapshots on %s:%d",
            self.name,
            self.frames_total,
            len(self.point_at),
            self.host,
            self.port,
        )

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            try:
                await asyncio.wait_for(self._server.wait_closed(), 5.0)
            except TimeoutError:
                log.warning("%s: connections still open at shutdown", self.name)

    async def _process_request(self, conn: ServerConnection, request: Request) -> Response | None:
        if request.headers.get("Upgrade", "").lower() == "websocket":
            return None
        self.stats.rest_calls += 1
        path, _, query = request.path.partition("?")
        key = url_key(path, query)
        if key in self.points:
            self.stats.rest_depth_calls += 1
            n = self._next_point[key]  # the first one not served yet (a client that gave up
            if n >= len(self.points[key]):  # waiting and asks again gets the same one)
                msg = f"replay: only {len(self.points[key])} snapshot(s) of {path} were recorded"
                return _response(HttpReply.json(503, {"code": -1, "msg": msg}))
            point = self.points[key][n]
            point.requested.set()
            await point.reached.wait()
            if self._next_point[key] == n:
                self._next_point[key] = n + 1
                self.snapshots_served += 1
            return _response(HttpReply(200, point.body))
        if key in self.meta:
            bodies = self.meta[key]
            n = min(self._meta_requests[key], len(bodies) - 1)
            self._meta_requests[key] += 1
            return _response(HttpReply(200, bodies[n]))
        return _response(HttpReply.json(404, {"code": -1, "msg": f"replay: not recorded: {path}"}))

    async def _handler(self, conn: ServerConnection) -> None:
        self.stats.ws_connections_total += 1
        self.stats.ws_connections_open += 1
        self._attach(conn)
        self._started.set()
        try:
            async for _ in conn:  # requests are answered by the recording itself
                pass
        except ConnectionClosed:
            pass
        finally:
            self.stats.ws_connections_open -= 1
            self._detach(conn)

    def _attach(self, conn: ServerConnection) -> None:
        free = [lb for lb in self.labels if lb not in self._attached]
        if not free:
            self._spare.append(conn)
            return
        self._attached[free[0]] = conn
        self._absent.discard(free[0])
        self._label_of[conn] = free[0]
        log.info("%s: client %s gets connection %s", self.name, conn.remote_address, free[0])
        self._attach_event.set()

    def _detach(self, conn: ServerConnection) -> None:
        if conn in self._spare:
            self._spare.remove(conn)
        label = self._label_of.pop(conn, None)
        if label is not None and self._attached.get(label) is conn:
            del self._attached[label]
            if self._spare:
                self._attach(self._spare.pop(0))

    async def _client_for(self, label: str) -> ServerConnection | None:
        """The client holding ``label``; waits up to HOLD_S for one to connect (once: a label
        nobody took is then skipped until a client takes it)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + HOLD_S
        while (conn := self._attached.get(label)) is None:
            left = deadline - loop.time()
            if left <= 0 or label in self._absent:
                if label not in self._absent:
                    log.warning(
                        "%s: no client for connection %s: its frames dropped", self.name, label
                    )
                    self._absent.add(label)
                return None
            self._attach_event.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._attach_event.wait(), left)
        return conn

    # ---- the replay -----------------------------------------------------------------------
    def pause(self) -> None:
        self.paused = True
        self._resumed.clear()

    def resume(self) -> None:
        self.paused = False
        self._resumed.set()

    async def play(self) -> None:
        """Send every recorded event, in order, paced; meet each snapshot request on its spot."""
        await self._started.wait()
        log.info("%s: replay started (speed %s)", self.name, self.speed or "max")
        loop = asyncio.get_running_loop()
        speed = self.speed
        base_real, base_ts = loop.time(), self.events[0].ts_ns if self.events else 0
        for i, ev in enumerate(self.events):
            waited = False
            if self.paused:
                await self._resumed.wait()
                waited = True
            if speed > 0:
                delay = base_real + max(ev.ts_ns - base_ts, 0) / 1e9 / speed - loop.time()
                if delay > 0.0005:
                    await asyncio.sleep(delay)
            elif i % YIELD_EVERY == 0:
                await asyncio.sleep(0)
            t0 = loop.time()
            if ev.kind == "ws":
                await self._send(ev)
            else:
                await self._meet(self.point_at[i])
            self.position = i + 1
            if waited or loop.time() - t0 > 0.05:  # a wait is not part of the recorded pace
                base_real, base_ts = loop.time(), ev.ts_ns
        self.done = True
        log.info(
            "%s: replay done: %d/%d frames sent, %d snapshots served",
            self.name,
            self.frames_sent,
            self.frames_total,
            self.snapshots_served,
        )

    async def _send(self, ev: Record) -> None:
        conn = await self._client_for(ev.label)
        if conn is None:
            self.frames_dropped += 1
            return
        try:
            await conn.send(ev.data)
        except ConnectionClosed:
            self.frames_dropped += 1
            return
        self.frames_sent += 1
        self.stats.messages_sent += 1

    async def _meet(self, point: SnapshotPoint) -> None:
        if not point.requested.is_set():
            try:
                await asyncio.wait_for(point.requested.wait(), HOLD_S)
            except TimeoutError:
                log.warning("%s: recorded snapshot #%d never requested", self.name, point.index)
        point.reached.set()

    def stats_json(self) -> dict:
        return {**asdict(self.stats), "faults": {}}

    def replay_json(self) -> dict:
        return {
            "frames_sent": self.frames_sent,
            "frames_total": self.frames_total,
            "frames_dropped": self.frames_dropped,
            "snapshots_recorded": len(self.point_at),
            "snapshots_served": self.snapshots_served,
            "events_done": self.position,
            "events_total": len(self.events),
            "speed": self.speed,
            "started": self._started.is_set(),
            "done": self.done,
        }


class Replayer:
    """The simulator process in replay mode: the same surface as ``engine.Simulator``."""

    def __init__(self, cfg: SimConfig, venue: str, records: list[Record], speed: float) -> None:
        if speed < 0:
            raise ValueError("--speed must be >= 0 (0: as fast as possible)")
        spec = next((v for v in cfg.venues if v.name == venue), None)
        if spec is None:
            raise ValueError(f"venue {venue!r} of the recording has no sim_port in the config")
        self.cfg = cfg
        self.venue = ReplayVenue(venue, cfg.host, spec.port, records, speed)
        self.venues = {venue: self.venue}
        self.control_port = cfg.control_port
        self._control: asyncio.Server | None = None
        self._stop = asyncio.Event()

    @property
    def paused(self) -> bool:
        return self.venue.paused

    async def start(self) -> None:
        await self.venue.start()
        self._control = await serve_json(replay_handler(self), self.cfg.host, self.cfg.control_port)
        self.control_port = self._control.sockets[0].getsockname()[1]

    async def run(self) -> None:
        play = asyncio.create_task(self.venue.play())
        try:
            await self._stop.wait()
        finally:
            play.cancel()

    def stop(self) -> None:
        self._stop.set()

    async def close(self) -> None:
        if self._control is not None:
            self._control.close()
        await self.venue.stop()

    def pause(self) -> None:
        self.venue.pause()

    def resume(self) -> None:
        self.venue.resume()

    def set_rate(self, rate: float, venue: str | None = None) -> None:
        raise ValueError("replay mode: the pace is set by --speed")

    def inject(self, obj: object) -> dict:
        raise FaultError("replay mode: no faults")


def replay_handler(rep: Replayer) -> Handler:
    """The simulator's control API, with the replay's progress in ``/sim/stats``."""
    base = make_handler(rep)  # type: ignore[arg-type]  # duck-typed Simulator

    async def handle(
        method: str, path: str, query: dict[str, str], body: bytes
    ) -> tuple[int, object]:
        if method == "GET" and path == "/sim/stats":
            return 200, {
                "venues": {name: v.stats_json() for name, v in rep.venues.items()},
                "paused": rep.paused,
                "rate": {name: v.rate for name, v in rep.venues.items()},
                "replay": rep.venue.replay_json(),
            }
        return await base(method, path, query, body)

    return handle
