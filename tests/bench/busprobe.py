"""The measuring ZeroMQ subscriber: ``python -m tests.bench.busprobe --config FILE``.

Follows the book builder's PUB (``bbo.`` and ``hb.``) and every ingest PUB (``hb.`` only). For
every ``bbo.<venue>.<symbol>`` (kind ``venue``) and ``bbo.all.<group>`` (kind ``all``) message it
records, from the timestamps the message carries and its own receive time (same host clock):

* ``ingest``          ts_ingest_pub - ts_recv   (ingest read -> ingest publish)
* ``book``            ts_pub - ts_ingest_pub    (ingest publish -> book builder publish)
* ``recv_to_book``    ts_pub - ts_recv          (ingest read -> book builder publish)
* ``bus``             receive - ts_pub          (book builder publish -> this subscriber)

and checks ``(epoch, seq)`` per topic: a skipped seq is a lost message (``lost``). It keeps the
latest heartbeat of the book builder and of every ingest process, and reports them at ``start``
and ``stop``; ``lag`` answers how far behind the pipeline is (the harness waits for it to
drain a backlog before the next step) so the harness can take differences (frames, gaps, resyncs). Protocol: probe.py.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import time
from typing import Any

import orjson
import zmq

from common.config import load
from tests.bench.probe import Commands, Stages, reply, run_commands

INGEST_KEYS = (
    "venue_state",
    "frames",
    "bytes",
    "trades",
    "gaps",
    "resyncs",
    "parse_errors",
    "reconnects",
    "checksum_failures",
    "latency_us",
    "process",
)
BOOK_KEYS = (
    "messages_in",
    "messages_out",
    "bad_messages",
    "published",
    "subscriber",
    "resyncs_requested",
    "latency_us",
    "latency_us_by_venue",
    "process",
    "books",
)


def _hb_view(service: str, stats: dict[str, Any]) -> dict[str, Any]:
    keys = BOOK_KEYS if service == "book" else INGEST_KEYS
    return {k: stats.get(k) for k in keys}


class BusProbe:
    def __init__(self, book_pub: str, ingest_pubs: list[str]) -> None:
        ctx = zmq.Context.instance()
        self.book = ctx.socket(zmq.SUB)
        self.book.setsockopt(zmq.RCVHWM, 1_000_000)
        self.book.setsockopt(zmq.SUBSCRIBE, b"bbo.")
        self.book.setsockopt(zmq.SUBSCRIBE, b"hb.")
        self.book.connect(book_pub)
        self.ingest = ctx.socket(zmq.SUB)
        self.ingest.setsockopt(zmq.SUBSCRIBE, b"hb.")
        for ep in ingest_pubs:
            self.ingest.connect(ep)
        self.stages = Stages()
        self.recording = False
        self.label = ""
        self.t0 = 0.0
        self.seq: dict[str, tuple[str, int]] = {}
        self.lag_ns = 0  # receive - ts_recv of the latest venue bbo (recording or not)
        self.lag_at = 0.0
        self.last_recv: dict[str, int] = {}
        self.hb: dict[str, dict[str, Any]] = {}
        self.hb_at_start: dict[str, dict[str, Any]] = {}

    def on_bbo(self, topic: bytes, payload: bytes, rx: int) -> None:
        msg = orjson.loads(payload)
        t = topic.decode()
        epoch, seq = msg.get("epoch"), msg.get("seq")
        last = self.seq.get(t)
        self.seq[t] = (epoch, seq)
        recv = msg.get("ts_recv")
        if isinstance(recv, int) and not t.startswith("bbo.all."):
            self.lag_ns, self.lag_at = rx - recv, time.monotonic()
        if not self.recording:
            return
        st = self.stages
        kind = "all" if t.startswith("bbo.all.") else "venue"
        st.count(f"{kind}_messages")
        if last is not None and last[0] == epoch and isinstance(seq, int) and seq != last[1] + 1:
            st.count("lost", max(seq - last[1] - 1, 1))
        if msg.get("state") != "live":
            st.count(f"{kind}_not_live")
            return
        if kind == "venue":
            st.count(f"venue.{msg.get('venue')}")
        recv, ing, pub = msg.get("ts_recv"), msg.get("ts_ingest_pub"), msg.get("ts_pub")
        if isinstance(recv, int) and recv <= self.last_recv.get(t, 0):
            # the same source timestamps again: republished (a venue back up, a resync, a rate
            # change), not caused by new exchange data; not a latency sample
            st.count(f"{kind}_republished")
            return
        if isinstance(recv, int):
            self.last_recv[t] = recv
        if isinstance(recv, int) and isinstance(ing, int) and isinstance(pub, int):
            st.record(f"{kind}.ingest", ing - recv)
            st.record(f"{kind}.book", pub - ing)
            st.record(f"{kind}.recv_to_book", pub - recv)
            st.record(f"{kind}.bus", rx - pub)
            if kind == "venue":
                st.record(f"venue.recv_to_book.{msg.get('venue')}", pub - recv)

    def on_hb(self, payload: bytes) -> None:
        msg = orjson.loads(payload)
        service = msg.get("service", "?")
        stats = msg.get("stats") or {}
        self.hb[service] = {"uptime_s": msg.get("uptime_s"), **_hb_view(service, stats)}

    def start(self, label: str) -> None:
        self.stages.reset()
        self.label = label
        self.t0 = time.monotonic()
        self.hb_at_start = {k: dict(v) for k, v in self.hb.items()}
        self.recording = True

    def stop(self) -> dict[str, Any]:
        self.recording = False
        return {
            "probe": "bus",
            "label": self.label,
            "duration_s": round(time.monotonic() - self.t0, 3),
            **self.stages.report(),
            "hb_start": self.hb_at_start,
            "hb_end": self.hb,
        }

    def lag(self) -> dict[str, Any]:
        """How far behind the pipeline is: ingest read -> here for the latest bbo message."""
        age = time.monotonic() - self.lag_at if self.lag_at else None
        return {"lag_us": self.lag_ns / 1000, "age_s": age}

    def run(self) -> None:
        cmds = Commands()
        poller = zmq.Poller()
        poller.register(self.book, zmq.POLLIN)
        poller.register(self.ingest, zmq.POLLIN)
        poller.register(cmds.fd, zmq.POLLIN)
        reply({"ready": True})
        book, ingest = self.book, self.ingest
        while True:
            events = dict(poller.poll(1000))
            if book in events:
                for _ in range(500):  # then look at the commands again
                    try:
                        topic, payload = book.recv_multipart(zmq.NOBLOCK)
                    except zmq.Again:
                        break
                    rx = time.time_ns()
                    if topic.startswith(b"bbo."):
                        self.on_bbo(topic, payload, rx)
                    elif topic == b"hb.book":
                        self.on_hb(payload)
            if ingest in events:
                while True:
                    try:
                        _, payload = ingest.recv_multipart(zmq.NOBLOCK)
                    except zmq.Again:
                        break
                    self.on_hb(payload)
            if cmds.fd in events and not run_commands(cmds, self.start, self.stop, self.lag):
                return


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tests.bench.busprobe", description=__doc__)
    ap.add_argument("--config", required=True)
    args = ap.parse_args(argv)
    cfg = load(args.config)
    probe = BusProbe(cfg.book.pub, [v.pub for v in cfg.enabled_venues()])
    with contextlib.suppress(KeyboardInterrupt):
        probe.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
