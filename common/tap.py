"""``flowbook-tap`` / ``python -m common.tap``: watch the bus.

    python -m common.tap 'bbo.all.' 'trade.'                  # the book builder, default endpoints
    python -m common.tap --config deploy/demo.toml --ingest 'book.binance.BTC'
    python -m common.tap --endpoint tcp://10.0.0.5:5551 --control tcp://10.0.0.5:5651 'book.'
    python -m common.tap --stats 'depth.'                     # per topic, every second

Prints one line per message: receive time, topic, ``#seq``, a compact body and the publish-to-
receive latency; a skipped seq (``!gap``) or a new publisher epoch (``!epoch``) is flagged on the
line where it is seen. ``--stats`` prints instead, every second and per topic: msg/s, total,
gaps, messages lost in them, epochs seen and the age of the last message.

Sources: ``--endpoint PUB`` (repeatable; ``--control CTL`` pairs with the endpoint in the same
position), the book builder of ``--config`` (plus every enabled venue's ingest with
``--ingest``); default ``tcp://127.0.0.1:5560`` (control 5660). Prefixes select topics by their
start (default: everything). On the first message from a source that has a control endpoint,
the tap asks it for a resync of the followed prefixes, so current books, depth and bbo show at
once (``--no-resync``: don't). The tap only watches: gaps are shown and counted, never repaired.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time
from dataclasses import dataclass, field
from typing import Any, TextIO

import orjson
import zmq

from common.codec import TRACE_FIELDS, DecodeError, decode

DEFAULT_PUB = "tcp://127.0.0.1:5560"
DEFAULT_CONTROL = "tcp://127.0.0.1:5660"
ENVELOPE = {"v", "epoch", "seq", "ts_pub", "ts_recv", "ts_exch", "ts_ingest_pub", "type"}
ENVELOPE |= {"venue", "symbol"}  # already in the topic
ENVELOPE |= TRACE_FIELDS
NOT_RESYNCED = ("hb.", "trade.")
PRICES = ("bid", "ask", "bids", "asks")
FIRST = ("state", "bid", "ask", "spread_bps", "crossed", "bids", "asks", "trades", "reason")


# -- per-topic sequence tracking ---------------------------------------------------------------
@dataclass
class TopicStats:
    epoch: str | None = None
    seq: int | None = None
    messages: int = 0
    window: int = 0  # messages since the last stats print
    gaps: int = 0  # seq jumps seen
    lost: int = 0  # messages missing in those jumps
    epochs: set[str] = field(default_factory=set)
    last_rx: float = 0.0


class SeqTracker:
    """``(epoch, seq)`` per topic key: counts gaps and lost messages exactly, and epochs."""

    def __init__(self) -> None:
        self.topics: dict[str, TopicStats] = {}

    def observe(self, key: str, epoch: Any, seq: Any, now: float) -> str:
        """Account one message; returns a flag for its line ('' if in sequence)."""
        st = self.topics.get(key)
        if st is None:
            st = self.topics[key] = TopicStats()
        st.messages += 1
        st.window += 1
        st.last_rx = now
        if not isinstance(seq, int) or not isinstance(epoch, str):
            return " !no-seq"
        flag = ""
        if epoch != st.epoch:
            if st.epoch is not None:
                flag = f" !epoch {epoch}"
            st.epochs.add(epoch)
            st.epoch = epoch
        elif st.seq is not None and seq != st.seq + 1:
            if seq > st.seq + 1:
                missed = seq - st.seq - 1
                st.gaps += 1
                st.lost += missed
                flag = f" !gap {missed} lost (#{st.seq + 1}..#{seq - 1})"
            else:
                flag = f" !seq back from #{st.seq}"
        st.seq = seq
        return flag


# -- one-line bodies ----------------------------------------------------------------------------
def _num(x: Any) -> str:
    return str(x)  # a float's str is its shortest round-trip form: the exchange's digits


def level_text(level: Any) -> str:
    """``[p, s]`` -> ``p x s``; a consolidated ``[p, total, {venue: size} | venue]`` adds its
    venues."""
    if not isinstance(level, list | tuple) or len(level) < 2:
        return "-" if level is None else str(level)
    text = f"{_num(level[0])}x{_num(level[1])}"
    if len(level) > 2:
        extra = level[2]
        if isinstance(extra, dict):
            text += "{" + ",".join(f"{v}:{_num(s)}" for v, s in extra.items()) + "}"
        else:
            text += f" {extra}"
    return text


def summarize(msg: dict[str, Any]) -> str:
    """A compact one-line rendering of a bus payload: the type, then prices first (bids, asks,
    bbo, trades), then every other field; envelope fields and empty values left out."""
    parts = [str(msg.get("type", "?"))]
    keys = [k for k in FIRST if k in msg] + [k for k in msg if k not in FIRST]
    for key in keys:
        val = msg[key]
        if key in ENVELOPE or (val in ({}, [], None) and key not in PRICES):
            continue
        if key in ("bids", "asks") and isinstance(val, list):
            shown = " ".join(level_text(lv) for lv in val[:3])
            more = f" +{len(val) - 3}" if len(val) > 3 else ""
            parts.append(f"{key}[{len(val)}]={shown}{more}")
        elif key in ("bid", "ask"):
            parts.append(f"{key}={level_text(val)}")
        elif key == "trades" and isinstance(val, list):
            shown = " ".join(
                f"{t.get('side', '?')} {_num(t.get('size'))}@{_num(t.get('price'))}"
                for t in val[:3]
                if isinstance(t, dict)
            )
            parts.append(f"trades[{len(val)}]={shown}{' ...' if len(val) > 3 else ''}")
        elif key == "stats" and isinstance(val, dict):
            parts.append(f"stats={{{len(val)} keys}}")
        elif isinstance(val, list) and all(isinstance(x, str) for x in val):
            parts.append(f"{key}={','.join(val)}")
        elif isinstance(val, dict | list):
            parts.append(f"{key}={orjson.dumps(val).decode()}")
        else:
            parts.append(f"{key}={_num(val)}")
    return " ".join(parts)


def clip(line: str, width: int) -> str:
    return line if width <= 0 or len(line) <= width else line[: width - 3] + "..."


# -- sources -------------------------------------------------------------------------------------
@dataclass
class Source:
    name: str
    pub: str
    control: str | None
    sub: zmq.Socket | None = None
    dealer: zmq.Socket | None = None
    resync_sent: bool = False


def sources_from(args: argparse.Namespace) -> list[Source]:
    out: list[Source] = []
    for i, ep in enumerate(args.endpoint or []):
        ctl = args.control[i] if args.control and i < len(args.control) else None
        out.append(Source(ep if len(args.endpoint) > 1 else "pub", ep, ctl))
    if args.config:
        from common.config import load

        cfg = load(args.config)
        out.append(Source("book", cfg.book.pub, cfg.book.control))
        if args.ingest:
            for v in cfg.enabled_venues():
                out.append(Source(f"ingest-{v.name}", v.pub, v.control))
    if not out:
        out.append(
            Source("book", DEFAULT_PUB, args.control[0] if args.control else DEFAULT_CONTROL)
        )
    return out


class Tap:
    def __init__(
        self,
        sources: list[Source],
        prefixes: list[str],
        *,
        stats: bool = False,
        resync: bool = True,
        width: int = 200,
        out: TextIO = sys.stdout,
        ctx: zmq.Context | None = None,
    ) -> None:
        self.sources = sources
        self.prefixes = prefixes or [""]
        self.stats_mode = stats
        self.resync = resync
        self.width = width
        self.out = out
        self.tracker = SeqTracker()
        self.shown = 0
        self.decode_errors = 0
        self.poller = zmq.Poller()
        ctx = ctx or zmq.Context.instance()
        for src in sources:
            src.sub = ctx.socket(zmq.SUB)
            src.sub.setsockopt(zmq.LINGER, 0)
            src.sub.setsockopt(zmq.RCVHWM, 1_000_000)
            for p in self.prefixes:
                src.sub.setsockopt(zmq.SUBSCRIBE, p.encode())
            if not self._wanted("hb."):  # heartbeats prove the subscription is up
                src.sub.setsockopt(zmq.SUBSCRIBE, b"hb.")
            src.sub.connect(src.pub)
            self.poller.register(src.sub, zmq.POLLIN)
            if src.control and resync:
                src.dealer = ctx.socket(zmq.DEALER)
                src.dealer.setsockopt(zmq.LINGER, 0)
                src.dealer.connect(src.control)
                self.poller.register(src.dealer, zmq.POLLIN)
        self._window_start = time.monotonic()

    def _wanted(self, topic: str) -> bool:
        return any(topic.startswith(p) for p in self.prefixes)

    def run(self, count: int = 0, duration: float = 0.0) -> int:
        start = time.monotonic()
        next_stats = start + 1.0
        while True:
            now = time.monotonic()
            if duration and now - start >= duration:
                break
            if not self.stats_mode:
                next_stats = now + 1.0
            wait = min(next_stats - now, duration - (now - start) if duration else 1.0)
            events = dict(self.poller.poll(max(int(wait * 1000), 0)))
            lines: list[str] = []
            for src in self.sources:
                if src.dealer is not None and src.dealer in events:
                    self._replies(src, lines)
                if src.sub in events:
                    self._drain(src, lines, count)
            if self.stats_mode and time.monotonic() >= next_stats:
                lines.extend(self.stats_lines())
                next_stats += 1.0
                if next_stats < time.monotonic():
                    next_stats = time.monotonic() + 1.0
            if lines:
                self.out.write("".join(line + "\n" for line in lines))
                self.out.flush()
            if count and self.shown >= count:
                break
        if self.stats_mode:
            self.out.write("".join(line + "\n" for line in self.stats_lines()))
            self.out.flush()
        return 0

    def _drain(self, src: Source, lines: list[str], count: int) -> None:
        assert src.sub is not None
        for _ in range(5000):
            try:
                frames = src.sub.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return
            if src.dealer is not None and not src.resync_sent:
                self._ask_resync(src, lines)
            topic = frames[0].decode("ascii", "replace")
            if not self._wanted(topic):
                continue
            self._message(src, topic, frames, lines)
            if count and self.shown >= count:
                return

    def _message(self, src: Source, topic: str, frames: list[bytes], lines: list[str]) -> None:
        now_ns = time.time_ns()
        key = topic if len(self.sources) == 1 else f"{src.name}:{topic}"
        try:
            if len(frames) != 2:
                raise DecodeError(f"{len(frames)} frames, expected 2")
            msg = decode(frames[1])
        except DecodeError as exc:
            self.decode_errors += 1
            if not self.stats_mode:
                lines.append(f"! {key}: bad frame: {exc}")
            return
        flag = self.tracker.observe(key, msg.get("epoch"), msg.get("seq"), time.monotonic())
        self.shown += 1
        if self.stats_mode:
            return
        ts_pub = msg.get("ts_pub")
        lat = f" +{(now_ns - ts_pub) / 1e6:.1f}ms" if isinstance(ts_pub, int) else ""
        stamp = time.strftime("%H:%M:%S", time.localtime(now_ns / 1e9))
        head = f"{stamp}.{now_ns // 1_000_000 % 1000:03d} {key} #{msg.get('seq')}{flag}"
        lines.append(clip(f"{head} {summarize(msg)}{lat}", self.width))

    def _ask_resync(self, src: Source, lines: list[str]) -> None:
        assert src.dealer is not None
        src.resync_sent = True
        topics = [p for p in self.prefixes if not p.startswith(NOT_RESYNCED)]
        if not topics:
            return
        try:
            src.dealer.send(orjson.dumps({"op": "resync", "topics": topics}), zmq.NOBLOCK)
        except zmq.Again:
            lines.append(f"# {src.name}: resync request not sent (control unreachable)")

    def _replies(self, src: Source, lines: list[str]) -> None:
        assert src.dealer is not None
        while True:
            try:
                reply = src.dealer.recv(zmq.NOBLOCK)
            except zmq.Again:
                return
            if self.stats_mode:
                continue
            try:
                body = orjson.loads(reply)
            except orjson.JSONDecodeError:
                body = {"ok": False, "error": "reply is not JSON"}
            state = "ok" if body.get("ok") else f"refused: {body.get('error')}"
            lines.append(f"# {src.name}: resync {state} (epoch {body.get('epoch')})")

    def stats_lines(self) -> list[str]:
        now = time.monotonic()
        elapsed = max(now - self._window_start, 1e-6)
        self._window_start = now
        topics = self.tracker.topics
        width = max([len(k) for k in topics] + [5])
        total_rate = sum(st.window for st in topics.values()) / elapsed
        lines = [
            f"--- {time.strftime('%H:%M:%S')} topics {len(topics)}  msg/s {total_rate:.1f}  "
            f"gaps {sum(st.gaps for st in topics.values())}  "
            f"lost {sum(st.lost for st in topics.values())}  bad frames {self.decode_errors}",
            f"{'topic':<{width}} {'msg/s':>8} {'total':>8} {'gaps':>5} {'lost':>6} "
            f"{'epochs':>6} {'age':>8}",
        ]
        for key in sorted(topics):
            st = topics[key]
            lines.append(
                f"{key:<{width}} {st.window / elapsed:>8.1f} {st.messages:>8} {st.gaps:>5} "
                f"{st.lost:>6} {len(st.epochs):>6} {now - st.last_rx:>7.2f}s"
            )
            st.window = 0
        return lines

    def close(self) -> None:
        for src in self.sources:
            for sock in (src.sub, src.dealer):
                if sock is not None:
                    sock.close(0)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(
        prog="flowbook-tap",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ap.add_argument("prefixes", nargs="*", help="topic prefixes, e.g. 'bbo.all.' (default: all)")
    ap.add_argument("--endpoint", action="append", metavar="PUB", help="a publisher's PUB")
    ap.add_argument("--control", action="append", metavar="CTL", help="its ROUTER (control)")
    ap.add_argument("--config", help="follow the book builder of this config file")
    ap.add_argument("--ingest", action="store_true", help="with --config: every venue's ingest")
    ap.add_argument("--stats", action="store_true", help="per-topic statistics every second")
    ap.add_argument("--no-resync", action="store_true", help="don't ask for snapshots at start")
    ap.add_argument("--count", type=int, default=0, help="exit after N messages")
    ap.add_argument("--duration", type=float, default=0.0, help="exit after S seconds")
    ap.add_argument("--width", type=int, default=200, help="clip lines (0: never)")
    args = ap.parse_args(argv)
    if args.ingest and not args.config:
        ap.error("--ingest needs --config")
    if args.control and len(args.control) > max(len(args.endpoint or []), 1):
        ap.error("more --control than --endpoint")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        sources = sources_from(args)
    except ValueError as exc:  # ConfigError
        print(f"flowbook-tap: {exc}", file=sys.stderr)
        return 2
    tap = Tap(
        sources,
        args.prefixes,
        stats=args.stats,
        resync=not args.no_resync,
        width=args.width,
    )
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        return tap.run(args.count, args.duration)
    except KeyboardInterrupt:
        return 0
    except BrokenPipeError:  # e.g. piped into head: exit quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    finally:
        tap.close()


if __name__ == "__main__":
    sys.exit(main())
