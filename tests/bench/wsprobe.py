"""The measuring WebSocket client: ``python -m tests.bench.wsprobe --url ws://.../ws --subs FILE``.

Subscribes the unconflated ``bbo`` channel for every instrument (kind ``venue``) and every
consolidated group (``venue: "all"``, kind ``all``), plus ``stats``, on one connection (asyncio,
as DESIGN.md section 9 recommends for a client; on uvloop like flowbook's services and
cryptofeed, which takes 15-20 µs off the measured WebSocket hop at p50 against the standard
loop). For every ``bbo`` update it records, from the
timestamps in the message and its own receive time (``time.time_ns()`` as the frame is handed
over by the websockets library; same host clock):

* ``ingest``   ts_ingest_pub - ts_recv    (ingest read -> ingest publish)
* ``book``     ts_book_pub - ts_ingest_pub (-> book builder publish)
* ``gateway``  ts_gw - ts_book_pub        (-> gateway WebSocket send)
* ``ws``       receive - ts_gw            (-> this client's receive)
* ``e2e``      receive - ts_recv          (ingest read -> client receive)

With ``trace_hops`` on in ``[book]`` and ``[gateway]`` (the harness sets both unless
``--no-trace-hops``), each bus hop splits into three (``hop.*``):

* ``to_book``     ts_book_wake - ts_ingest_pub (ZeroMQ transport until the book builder wakes)
* ``book_wait``   ts_book_rx - ts_book_wake    (decode, and messages before it in the same read)
* ``book_work``   ts_book_pub - ts_book_rx     (sequence check, apply, build, stamp)
* ``to_gateway``, ``gateway_wait``, ``gateway_work`` likewise, up to ``ts_gw``

A message published after the read that delivered it began (``ts_book_wake`` < its
``ts_ingest_pub``) did not wake the process: its ``to_book`` is 0 and its ``book_wait`` counts
from its publish. So the three parts always add up to the stage.

The gateway's own counters (sent, dropped, conflated) come from the ``stats`` channel and are
reported at ``start`` and ``stop``. Protocol: probe.py.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
import time
from typing import Any

import orjson
from websockets.asyncio.client import connect

from common import aio
from common.codec import BOOK_TRACE, GATEWAY_TRACE, trace_fields
from tests.bench.probe import Commands, Stages, reply, run_commands

TRACE_KEYS = trace_fields(BOOK_TRACE) + trace_fields(GATEWAY_TRACE)  # wake, rx; wake, rx
GATEWAY_KEYS = ("messages_sent", "dropped", "conflated", "slow_closed", "clients", "errors")


class WsProbe:
    def __init__(self, url: str, subs: list[dict[str, Any]]) -> None:
        self.url = url
        self.subs = subs
        self.stages = Stages()
        self.recording = False
        self.label = ""
        self.t0 = 0.0
        self.gateway: dict[str, Any] = {}
        self.gateway_at_start: dict[str, Any] = {}
        self.errors: list[dict[str, Any]] = []
        self.snapshots = 0
        self.last_recv: dict[tuple[Any, Any], int] = {}

    def start(self, label: str) -> None:
        self.stages.reset()
        self.label = label
        self.t0 = time.monotonic()
        self.gateway_at_start = dict(self.gateway)
        self.recording = True

    def stop(self) -> dict[str, Any]:
        self.recording = False
        return {
            "probe": "ws",
            "label": self.label,
            "duration_s": round(time.monotonic() - self.t0, 3),
            **self.stages.report(),
            "gateway_start": self.gateway_at_start,
            "gateway_end": dict(self.gateway),
            "errors": self.errors[-10:],
        }

    def on_bbo(self, msg: dict[str, Any], rx: int) -> None:
        st = self.stages
        kind = "all" if msg.get("venue") == "all" else "venue"
        st.count(f"{kind}_messages")
        if msg.get("state") != "live":
            st.count(f"{kind}_not_live")
            return
        recv, ing = msg.get("ts_recv"), msg.get("ts_ingest_pub")
        book, gw = msg.get("ts_book_pub"), msg.get("ts_gw")
        key = (msg.get("venue"), msg.get("symbol"))
        if isinstance(recv, int) and recv <= self.last_recv.get(key, 0):
            st.count(f"{kind}_republished")  # same source as before: not new exchange data
            return
        if isinstance(recv, int):
            self.last_recv[key] = recv
        if not (
            isinstance(recv, int)
            and isinstance(ing, int)
            and isinstance(book, int)
            and isinstance(gw, int)
        ):
            st.count(f"{kind}_no_timestamps")
            return
        st.record(f"{kind}.ingest", ing - recv)
        st.record(f"{kind}.book", book - ing)
        st.record(f"{kind}.gateway", gw - book)
        st.record(f"{kind}.ws", rx - gw)
        st.record(f"{kind}.e2e", rx - recv)
        st.record(f"{kind}.recv_to_book", book - recv)
        trace = [msg.get(k) for k in TRACE_KEYS]
        if all(isinstance(t, int) for t in trace):
            book_wake, book_rx, gw_wake, gw_rx = trace
            st.record(f"{kind}.hop.to_book", book_wake - ing)
            st.record(f"{kind}.hop.book_wait", book_rx - max(book_wake, ing))
            st.record(f"{kind}.hop.book_work", book - book_rx)
            st.record(f"{kind}.hop.to_gateway", gw_wake - book)
            st.record(f"{kind}.hop.gateway_wait", gw_rx - max(gw_wake, book))
            st.record(f"{kind}.hop.gateway_work", gw - gw_rx)

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        cmds = Commands()
        done = asyncio.Event()

        def on_stdin() -> None:
            if not run_commands(cmds, self.start, self.stop):
                done.set()

        loop.add_reader(cmds.fd, on_stdin)
        async with connect(self.url, max_size=None, compression=None, open_timeout=30) as ws:
            for sub in self.subs:
                await ws.send(orjson.dumps(sub).decode())
            await ws.send(orjson.dumps({"op": "subscribe", "channel": "stats"}).decode())
            reader = asyncio.ensure_future(self._read(ws))
            waiter = asyncio.ensure_future(done.wait())
            await asyncio.wait([reader, waiter], return_when=asyncio.FIRST_COMPLETED)
            reader.cancel()
            if not done.is_set():
                print(
                    f"wsprobe: connection closed by the gateway: {ws.close_code} {ws.close_reason}",
                    file=sys.stderr,
                    flush=True,
                )
        loop.remove_reader(cmds.fd)

    async def _read(self, ws) -> None:
        subscribed = 0
        ready = False
        async for raw in ws:
            rx = time.time_ns()
            msg = orjson.loads(raw)
            kind = msg.get("type")
            if kind == "update":
                channel = msg.get("channel")
                if channel == "bbo":
                    if self.recording:
                        self.on_bbo(msg, rx)
                elif channel == "stats":
                    gw = msg.get("gateway") or {}
                    self.gateway = {k: gw.get(k) for k in GATEWAY_KEYS}
            elif kind == "snapshot":
                self.snapshots += 1
            elif kind == "subscribed":
                subscribed += 1
                if not ready and subscribed >= len(self.subs) + 1:
                    ready = True
                    reply({"ready": True, "subscriptions": subscribed})
            elif kind == "error":
                self.errors.append(msg)
                print(f"wsprobe: error from the gateway: {msg}", file=sys.stderr, flush=True)
                if not ready:
                    ready = True
                    reply({"ready": False, "error": msg})


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tests.bench.wsprobe", description=__doc__)
    ap.add_argument("--url", required=True)
    ap.add_argument("--subs", required=True, help="JSON file: list of subscribe requests")
    args = ap.parse_args(argv)
    with open(args.subs, "rb") as fh:
        subs = orjson.loads(fh.read())
    with contextlib.suppress(KeyboardInterrupt):
        aio.run(WsProbe(args.url, subs).run())
    return 0


if __name__ == "__main__":
    sys.exit(main())
