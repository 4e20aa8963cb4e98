"""The flowbook bus (DESIGN.md section 3): ZeroMQ PUB for data, ROUTER for control.

Publisher side: ``Publisher`` stamps every payload with ``v``, ``epoch``, a per-topic ``seq`` and
``ts_pub``, answers ``resync`` requests on its ROUTER by republishing snapshots through the same
PUB socket (so they are ordered with the updates), and sends ``hb.<service>`` every second.

Subscriber side: ``Subscriber`` is the clone-pattern client: it follows topic prefixes on one or
more publishers, tracks ``(epoch, seq)`` per topic, and when a stateful topic (``book.``) skips a
seq or changes epoch it marks that topic stale and asks the publisher for a snapshot. Stateless
topics (``depth.``, ``bbo.``: each message is complete) only count gaps; ``trade.`` gaps are lost
trades, counted. Liveness: a publisher silent for ``stale_after_s`` is reported down.

Sockets are plain (non-asyncio) ZeroMQ sockets read through ``loop.add_reader`` on their FD and
drained in batches with NOBLOCK: one wake-up per burst, not one await per message.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import time
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import orjson
import zmq

from common.codec import SCHEMA_VERSION, DecodeError, decode, trace_fields

log = logging.getLogger("flowbook.bus")

STATEFUL_PREFIXES = ("book.",)
LOSSY_PREFIXES = ("trade.",)
RESYNC_RETRY_S = 2.0
QUEUE_MAX = 100_000  # messages() mode: messages held for a consumer that is not reading
DRAIN_BATCH = 2000
# pyzmq's flags are enum.IntFlag members and ``flags | SNDMORE`` inside ``send_multipart`` builds
# a new enum object per frame: two sends with plain ints cost 1.1 us a publish in a burst
# against 2.5 us (paced, 9.0 against 10.6 us: waking libzmq's I/O thread dominates).
_NOBLOCK = int(zmq.NOBLOCK)
_NOBLOCK_MORE = int(zmq.NOBLOCK | zmq.SNDMORE)
SUBSCRIPTION_POLL_S = 0.1

SnapshotProvider = Callable[[list[str]], Iterable[tuple[str, dict[str, Any]]]]


def covers(prefix: str, topic: str, is_topic: Callable[[str], bool]) -> bool:
    """A subscription ``prefix`` wants ``topic``: the topic itself, or a longer topic when the
    prefix is not the name of a topic of its own."""
    return topic == prefix or (topic.startswith(prefix) and not is_topic(prefix))


def looks_like_topic(prefix: str) -> bool:
    """``kind.venue.symbol`` with a symbol: a subscriber's prefix naming one topic."""
    parts = prefix.split(".")
    return len(parts) == 3 and all(parts)


def _context() -> zmq.Context:
    return zmq.Context.instance()


class FdReader:
    """Calls ``on_frames`` for every multipart message on ``sock``, driven by the socket's FD.

    ZeroMQ's FD is edge-triggered, so each wake-up drains until EAGAIN; a large burst is split
    into batches with ``call_soon`` so other callbacks get their turn.
    """

    def __init__(
        self,
        sock: zmq.Socket,
        on_frames: Callable[[list[bytes]], None],
        loop: asyncio.AbstractEventLoop,
    ) -> None:
        self.sock = sock
        self.on_frames = on_frames
        self.loop = loop
        self.fd = sock.getsockopt(zmq.FD)  # kept: a closed socket can no longer tell it
        self.woke_ns = 0  # time.time_ns() at the start of the current drain
        loop.add_reader(self.fd, self.drain)
        loop.call_soon(self.drain)

    def drain(self) -> None:
        """Receive until EAGAIN. One ``zmq.Again`` per wake-up is cheaper than asking ``EVENTS``
        before each message: that makes libzmq process its command queue unthrottled, a
        ``getpid`` and a ``poll`` syscall per message."""
        sock = self.sock
        self.woke_ns = time.time_ns()
        for _ in range(DRAIN_BATCH):
            try:
                frames = sock.recv_multipart(_NOBLOCK)
            except zmq.Again:
                return
            except zmq.ZMQError as exc:
                # the socket is unusable (closed, context terminated): stop watching its FD,
                # which may stay readable and would make the loop spin on this callback
                log.error("recv failed on %s: %s; no longer reading it", sock, exc)
                self.close()
                return
            try:
                self.on_frames(frames)
            except Exception:
                log.exception("handler failed for frame on topic %r", frames[0][:80])
        self.loop.call_soon(self.drain)

    def close(self) -> None:
        with contextlib.suppress(ValueError, OSError):
            self.loop.remove_reader(self.fd)


class Publisher:
    """PUB + ROUTER pair of one service (ingest, book builder).

    With ``track_subscriptions`` the data socket is an XPUB: ZeroMQ then tells the publisher
    which topic prefixes its subscribers hold (the first subscriber of a prefix and the last
    one leaving, also by disconnecting), so that ``wanted(topic)`` can spare building messages
    nobody receives, and ``on_subscription(prefix, added)`` can send a new subscriber the
    current value of what it asked for.
    """

    def __init__(
        self,
        service: str,
        pub_endpoint: str,
        control_endpoint: str,
        *,
        sndhwm: int = 200_000,
        track_subscriptions: bool = False,
        ctx: zmq.Context | None = None,
    ) -> None:
        ctx = ctx or _context()
        self.service = service
        self.epoch = secrets.token_hex(6)
        self.started_ns = time.time_ns()
        self.track_subscriptions = track_subscriptions
        self.pub = ctx.socket(zmq.XPUB if track_subscriptions else zmq.PUB)
        if track_subscriptions:
            # every subscribe is reported (a second subscriber of a prefix must get its current
            # value too); an unsubscribe still only when the last holder leaves
            self.pub.setsockopt(zmq.XPUB_VERBOSE, 1)
        self.pub.setsockopt(zmq.SNDHWM, sndhwm)
        self.pub.setsockopt(zmq.LINGER, 0)
        self.pub.bind(pub_endpoint)
        self.control = ctx.socket(zmq.ROUTER)
        self.control.setsockopt(zmq.LINGER, 0)
        self.control.bind(control_endpoint)
        self.snapshot_provider: SnapshotProvider | None = None
        self.on_subscription: Callable[[str, bool], None] | None = None
        self.is_topic: Callable[[str], bool] = lambda _: False
        self.subscriptions: set[str] = set()  # prefixes some subscriber holds (XPUB only)
        self._wanted: dict[str, bool] = {}
        self._sub_reader: FdReader | None = None
        self._seq: dict[str, int] = {}
        self._pending_resync: set[str] = set()
        self._reader: FdReader | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.resync_requests = 0
        self.messages = 0

    def attach(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._reader = FdReader(self.control, self._on_control, loop)
        if self.track_subscriptions:
            self._sub_reader = FdReader(self.pub, self._on_subscription, loop)
            loop.call_later(SUBSCRIPTION_POLL_S, self._poll_subscriptions)

    def _poll_subscriptions(self) -> None:
        """A send on the XPUB can consume the FD's wake-up for a subscription that arrived
        meanwhile (the FD is edge-triggered), so the socket is also read on a timer."""
        if self._sub_reader is None or self._loop is None:
            return
        self._sub_reader.drain()
        self._loop.call_later(SUBSCRIPTION_POLL_S, self._poll_subscriptions)

    def _on_subscription(self, frames: list[bytes]) -> None:
        frame = frames[0]
        if not frame or frame[0] not in (0, 1):
            return
        prefix = frame[1:].decode("utf-8", "replace")
        added = frame[0] == 1
        if added:
            self.subscriptions.add(prefix)
        else:
            self.subscriptions.discard(prefix)
        self._wanted.clear()
        log.info("%s: subscription %s %r", self.service, "added" if added else "dropped", prefix)
        if self.on_subscription is not None:
            self.on_subscription(prefix, added)

    def wanted(self, topic: str) -> bool:
        """Some subscriber wants ``topic`` (always True without ``track_subscriptions``). A
        subscription that names a whole topic (``is_topic``) selects that topic only, not a
        longer one it is a prefix of (``depth.all.BTC-USD`` is not ``...BTC-USD-PERP``)."""
        if not self.track_subscriptions:
            return True
        known = self._wanted.get(topic)
        if known is None:
            known = self._wanted[topic] = any(
                covers(p, topic, self.is_topic) for p in self.subscriptions
            )
        return known

    def publish(self, topic: str, body: dict[str, Any]) -> int:
        """Stamp and send ``body`` on ``topic``; returns its seq. Never blocks (PUB drops at HWM,
        which subscribers detect by seq)."""
        seq = self._seq.get(topic, 0) + 1
        self._seq[topic] = seq
        body["v"] = SCHEMA_VERSION
        body["epoch"] = self.epoch
        body["seq"] = seq
        body["ts_pub"] = time.time_ns()
        data = orjson.dumps(body)  # before the first part: a failure must not strand it
        pub = self.pub
        pub.send(topic.encode(), _NOBLOCK_MORE)
        pub.send(data, _NOBLOCK)
        self.messages += 1
        return seq

    def _on_control(self, frames: list[bytes]) -> None:
        ident, payload = frames[0], frames[-1]
        try:
            req = orjson.loads(payload)
            op = req.get("op")
        except (orjson.JSONDecodeError, AttributeError):
            self._reply(ident, {"ok": False, "error": "request must be a JSON object"})
            return
        if op == "resync":
            prefixes = req.get("topics", [""])
            if not isinstance(prefixes, list) or not all(isinstance(p, str) for p in prefixes):
                self._reply(ident, {"ok": False, "error": "topics must be a list of strings"})
                return
            if not prefixes:
                self._reply(ident, {"ok": False, "error": "topics is empty (omit it for all)"})
                return
            self.resync_requests += 1
            first = not self._pending_resync
            self._pending_resync.update(prefixes)
            if first and self._loop is not None:
                self._loop.call_soon(self._flush_resyncs)
            # how many topics published here so far the prefixes cover: 0 is most likely a
            # misspelt name (a consolidated group is BASE-UNIT, e.g. BTC-USD)
            covered = tuple(prefixes)
            matched = sum(1 for t in self._seq if t.startswith(covered))
            self._reply(
                ident,
                {
                    "ok": True,
                    "op": "resync",
                    "epoch": self.epoch,
                    "topics": prefixes,
                    "matched": matched,
                },
            )
        elif op == "ping":
            self._reply(ident, {"ok": True, "op": "pong", "epoch": self.epoch})
        elif op == "topics":
            self._reply(ident, {"ok": True, "epoch": self.epoch, "topics": dict(self._seq)})
        else:
            self._reply(ident, {"ok": False, "error": f"unknown op {op!r}"})

    def _reply(self, ident: bytes, body: dict[str, Any]) -> None:
        try:
            self.control.send_multipart((ident, orjson.dumps(body)), zmq.NOBLOCK)
        except zmq.ZMQError as exc:
            log.warning("control reply to %r dropped: %s", ident, exc)

    def _flush_resyncs(self) -> None:
        """Coalesced: one snapshot per matching topic, however many requests named it."""
        prefixes = sorted(self._pending_resync)
        self._pending_resync.clear()
        if self.snapshot_provider is None:
            return
        for topic, body in self.snapshot_provider(prefixes):
            self.publish(topic, body)

    def heartbeat(self, stats: dict[str, Any]) -> None:
        self.publish(
            f"hb.{self.service}",
            {
                "type": "hb",
                "service": self.service,
                "pid": os.getpid(),
                "uptime_s": round((time.time_ns() - self.started_ns) / 1e9, 3),
                "stats": stats,
            },
        )

    async def heartbeat_loop(
        self, stats_fn: Callable[[], dict[str, Any]], interval_s: float = 1.0
    ) -> None:
        while True:
            try:
                self.heartbeat(stats_fn())
            except Exception:
                log.exception("heartbeat of %s failed", self.service)
            await asyncio.sleep(interval_s)

    def close(self) -> None:
        if self._reader:
            self._reader.close()
        if self._sub_reader:
            self._sub_reader.close()
            self._sub_reader = None
        self.pub.close(0)
        self.control.close(0)


@dataclass
class Upstream:
    """One publisher to follow: its PUB and ROUTER endpoints."""

    pub: str
    control: str
    name: str = ""


@dataclass
class TopicState:
    epoch: str
    seq: int
    usable: bool
    link: Any = None  # the _Link (publisher) the topic comes from


@dataclass
class SubscriberStats:
    messages: int = 0
    gaps: int = 0
    resyncs: int = 0
    lost_trades: int = 0
    decode_errors: int = 0
    epochs_seen: int = 0
    overflows: int = 0  # messages() mode: dropped because the consumer fell QUEUE_MAX behind
    duplicates: int = 0  # a topic also published by a second publisher: followed from one

    def as_dict(self) -> dict[str, int]:
        return dict(self.__dict__)


@dataclass
class _Link:
    upstream: Upstream
    sub: zmq.Socket
    dealer: zmq.Socket
    last_rx: float = 0.0
    alive: bool = False
    hb_epoch: str | None = None
    pending: dict[str, float] = field(default_factory=dict)
    readers: list[FdReader] = field(default_factory=list)
    sub_reader: FdReader | None = None
    joined: bool = False  # a message arrived, so our SUB subscriptions are active there
    dropped: bool = False  # the TCP connection dropped since the last message
    dealer_reader: FdReader | None = None


class Subscriber:
    """Follows topic prefixes on several publishers and keeps every stateful topic whole.

    ``on_message(topic, msg)`` gets only messages that are safe to apply: for ``book.`` topics, a
    ``snapshot`` first and then contiguous messages. ``on_stale(topic, reason)`` says a topic's
    copy became unusable (until its next snapshot). ``on_upstream(name, alive)`` reports liveness.

    ``trace="ts_x"`` stamps every message delivered with ``ts_x_wake`` (``time.time_ns()`` when
    this process woke to read the batch it came in) and ``ts_x_rx`` (when it was decoded). With
    the publisher's ``ts_pub`` that splits the hop into transport (until the wake-up), wait in
    the batch and work. A message published while the batch was being read (after
    ``ts_x_wake``) did not wake the process: its transport is part of its wait.
    """

    def __init__(
        self,
        upstreams: list[Upstream],
        prefixes: list[str],
        on_message: Callable[[str, dict[str, Any]], None] | None = None,
        *,
        on_stale: Callable[[str, str], None] | None = None,
        on_upstream: Callable[[str, bool], None] | None = None,
        stale_after_s: float = 3.0,
        rcvhwm: int = 200_000,
        trace: str | None = None,
        ctx: zmq.Context | None = None,
    ) -> None:
        ctx = ctx or _context()
        self.prefixes = list(prefixes)
        self._trace = trace_fields(trace) if trace else None
        self.on_message = on_message
        self.on_stale = on_stale
        self.on_upstream = on_upstream
        self.stale_after_s = stale_after_s
        self.stats = SubscriberStats()
        self.topics: dict[str, TopicState] = {}
        self._forgotten: set[str] = set()  # topics the publisher no longer publishes
        self._queue: asyncio.Queue | None = None
        self._awaiting: set[str] = set()  # prefixes added by add_prefix with nothing received
        self.links: list[_Link] = []
        for up in upstreams:
            sub = ctx.socket(zmq.SUB)
            sub.setsockopt(zmq.RCVHWM, rcvhwm)
            sub.setsockopt(zmq.LINGER, 0)
            for prefix in self.prefixes:
                sub.setsockopt(zmq.SUBSCRIBE, prefix.encode())
            if not any(p == "" or p.startswith("hb.") or p == "hb" for p in self.prefixes):
                sub.setsockopt(zmq.SUBSCRIBE, b"hb.")
            sub.connect(up.pub)
            dealer = ctx.socket(zmq.DEALER)
            dealer.setsockopt(zmq.LINGER, 0)
            dealer.connect(up.control)
            self.links.append(_Link(up, sub, dealer))
        self._task: asyncio.Task | None = None

    def start(self, loop: asyncio.AbstractEventLoop | None = None) -> None:
        loop = loop or asyncio.get_running_loop()
        now = time.monotonic()
        for link in self.links:
            link.last_rx = now
            link.sub_reader = FdReader(link.sub, lambda f, lk=link: self._on_frames(lk, f), loop)
            link.readers.append(link.sub_reader)
            link.dealer_reader = FdReader(
                link.dealer, lambda f, lk=link: self._on_reply(lk, f), loop
            )
            link.readers.append(link.dealer_reader)
            # A publisher that dies closes its TCP connection: report it down at once instead
            # of waiting stale_after_s for the missing heartbeats.
            monitor = link.sub.get_monitor_socket(zmq.EVENT_DISCONNECTED)
            link.readers.append(FdReader(monitor, lambda f, lk=link: self._on_disconnect(lk), loop))
        if self.on_message is None and self._queue is None:
            # from the start: a consumer that awaits something before iterating must still get
            # the first snapshots
            self._queue = asyncio.Queue()
        self._task = loop.create_task(self._watch())

    async def messages(self) -> AsyncIterator[tuple[str, dict[str, Any]]]:
        """Async-iterator mode: ``async for topic, msg in sub.messages()``. Messages are queued
        from ``start()`` on. A consumer ``QUEUE_MAX`` messages behind loses the newest
        (``overflows``): a lost ``trade.`` counts in ``lost_trades``; any other topic is asked
        for again, and a ``book.`` topic is first followed in the queue by a ``state`` message
        (``stale``, "consumer fell behind"): drop that book until its next ``snapshot``."""
        if self._queue is None:
            self._queue = asyncio.Queue()
        while True:
            yield await self._queue.get()

    def _deliver(self, topic: str, msg: dict[str, Any]) -> None:
        if self._awaiting:
            done = [p for p in self._awaiting if covers(p, topic, looks_like_topic)]
            if done:
                self._awaiting.difference_update(done)
                for link in self.links:
                    for p in done:
                        link.pending.pop(p, None)
        if self.on_message is not None:
            self.on_message(topic, msg)
        if self._queue is not None:
            if self._queue.qsize() < QUEUE_MAX:
                self._queue.put_nowait((topic, msg))
            else:
                self._overflow(topic)

    def _overflow(self, topic: str) -> None:
        self.stats.overflows += 1
        if self.stats.overflows == 1 or self.stats.overflows % 10_000 == 0:
            log.warning(
                "consumer %d messages behind: %d dropped so far (latest on %s)",
                QUEUE_MAX,
                self.stats.overflows,
                topic,
            )
        if topic.startswith(LOSSY_PREFIXES):
            self.stats.lost_trades += 1
            return
        if topic.startswith("hb."):
            return
        if topic.startswith(STATEFUL_PREFIXES) and self.usable(topic) and self._queue is not None:
            # past the bound, once per topic until its next snapshot: the consumer must know
            notice = {"type": "state", "state": "stale", "reason": "consumer fell behind"}
            self._queue.put_nowait((topic, notice))
        self.resync(topic, "consumer fell behind")  # the current value comes again

    def _on_frames(self, link: _Link, frames: list[bytes]) -> None:
        link.last_rx = time.monotonic()
        if not link.joined:
            # ZeroMQ's slow joiner: snapshots published before our subscription reaches the
            # publisher are lost. Any message received (at worst the next heartbeat) proves
            # the subscriptions are in place, so the initial resync is asked for only now.
            link.joined = True
            self._request(link, [p for p in self.prefixes if not p.startswith("hb")])
        elif link.dropped:
            # reconnected to the same publisher: what it sent meanwhile is lost, also on
            # stateless topics (a bbo that changed while we were away), so ask for all of it
            link.dropped = False
            self._request(link, [p for p in self.prefixes if not p.startswith("hb")])
        if not link.alive:
            link.alive = True
            if self.on_upstream:
                self.on_upstream(link.upstream.name, True)
        if len(frames) != 2:
            self.stats.decode_errors += 1
            return
        topic = frames[0].decode("ascii", "replace")
        try:
            msg = decode(frames[1])
        except DecodeError as exc:
            self.stats.decode_errors += 1
            log.warning("bad frame on %s from %s: %s", topic, link.upstream.name, exc)
            return
        if self._trace is not None and link.sub_reader is not None:
            msg[self._trace[0]] = link.sub_reader.woke_ns
            msg[self._trace[1]] = time.time_ns()
        self.stats.messages += 1
        if topic.startswith("hb."):
            self._on_heartbeat(link, msg)
        self._track(link, topic, msg)

    def _on_heartbeat(self, link: _Link, msg: dict[str, Any]) -> None:
        epoch = msg.get("epoch")
        if link.hb_epoch is not None and epoch != link.hb_epoch:
            log.info(
                "%s restarted (epoch %s -> %s): resync", link.upstream.name, link.hb_epoch, epoch
            )
            self.stats.epochs_seen += 1
            for topic, state in self.topics.items():
                if (
                    state.link is link
                    and state.usable
                    and topic.startswith(STATEFUL_PREFIXES)
                    and state.epoch != epoch
                ):
                    self._mark_stale(link, topic, "publisher restarted")
            self._request(link, [p for p in self.prefixes if not p.startswith("hb")])
        link.hb_epoch = epoch

    def _track(self, link: _Link, topic: str, msg: dict[str, Any]) -> None:
        epoch, seq = msg.get("epoch"), msg.get("seq")
        if self._forgotten and topic in self._forgotten:
            if msg.get("type") != "snapshot":
                return  # one in flight when it was forgotten: not a reason to ask for it
            self._forgotten.discard(topic)  # published again: followed again
        state = self.topics.get(topic)
        if state is not None and state.link is not link and state.link is not None:
            if state.link.alive:
                # the same topic from two publishers (trade.* is on ingest and the book builder):
                # followed from the first only, else each message comes twice and the two seq
                # series break each other's gap detection
                self.stats.duplicates += 1
                return
            # its publisher is down: this one takes over, from a fresh start (a book from the
            # first is not continued with the second's messages)
            if state.usable and topic.startswith(STATEFUL_PREFIXES) and self.on_stale:
                self.on_stale(topic, "its publisher is down; another one publishes it")
            state = None
        stateful = topic.startswith(STATEFUL_PREFIXES)
        if stateful and msg.get("type") == "snapshot":
            self.topics[topic] = TopicState(epoch, seq, True, link)
            link.pending.pop(topic, None)
            self._deliver(topic, msg)
            return
        if state is None or state.epoch != epoch:
            if stateful:
                was_usable = state is not None and state.usable
                self.topics[topic] = TopicState(epoch, seq, was_usable, link)
                self._mark_stale(link, topic, "no snapshot yet" if state is None else "new epoch")
                return
            self.topics[topic] = TopicState(epoch, seq, True, link)
            self._deliver(topic, msg)
            return
        expected = state.seq + 1
        state.seq = seq
        if seq != expected:
            missed = seq - expected
            self.stats.gaps += 1
            if topic.startswith(LOSSY_PREFIXES):
                self.stats.lost_trades += max(missed, 1)
                log.warning("lost %d message(s) on %s", missed, topic)
            elif stateful:
                self._mark_stale(link, topic, f"seq gap: expected {expected}, got {seq}")
                return
        if state.usable or not stateful:
            self._deliver(topic, msg)

    def _mark_stale(self, link: _Link, topic: str, reason: str) -> None:
        state = self.topics.get(topic)
        was_usable = state is not None and state.usable
        if state is not None:
            state.usable = False
        if was_usable:
            log.warning(
                "%s unusable: %s; asking %s for a snapshot", topic, reason, link.upstream.name
            )
            if self.on_stale:
                self.on_stale(topic, reason)
        self._request(link, [topic])

    def _request(self, link: _Link, topics: list[str]) -> None:
        now = time.monotonic()
        wanted = [
            t
            for t in topics
            if not any(
                t.startswith(p) and now - at < RESYNC_RETRY_S for p, at in link.pending.items()
            )
        ]
        if not wanted:
            return
        for t in wanted:
            link.pending[t] = now
        self.stats.resyncs += 1
        try:
            link.dealer.send(orjson.dumps({"op": "resync", "topics": wanted}), zmq.NOBLOCK)
        except zmq.Again:
            log.warning("resync request to %s not sent (queue full)", link.upstream.name)
        # The send can consume the FD's wake-up for a reply that already arrived (ZeroMQ's FD
        # is edge-triggered): read the DEALER once more on the next loop turn.
        if link.dealer_reader is not None:
            link.dealer_reader.loop.call_soon(link.dealer_reader.drain)

    def _on_disconnect(self, link: _Link) -> None:
        link.dropped = link.joined
        if not link.alive:
            return
        link.alive = False
        log.warning("%s disconnected: down", link.upstream.name)
        for topic, state in self.topics.items():
            if state.link is link and state.usable and topic.startswith(STATEFUL_PREFIXES):
                self._mark_stale(link, topic, "publisher disconnected")
        if self.on_upstream:
            self.on_upstream(link.upstream.name, False)

    def _on_reply(self, link: _Link, frames: list[bytes]) -> None:
        try:
            reply = orjson.loads(frames[-1])
        except orjson.JSONDecodeError:
            return
        if not reply.get("ok"):
            log.warning("control reply from %s: %s", link.upstream.name, reply)
            return
        # A prefix request is done once the publisher has answered: its snapshots are on the
        # way. A topic that still has no usable copy stays pending until its snapshot arrives.
        for t in reply.get("topics") or ():
            state = self.topics.get(t)
            if (state is None or state.usable) and t not in self._awaiting:
                link.pending.pop(t, None)

    def refresh(self) -> None:
        """Ask every publisher again for the current state of everything followed (heartbeats
        aside), e.g. after it was silent: what it holds may differ from what we last got."""
        for link in self.links:
            if link.joined:
                self._request(link, [p for p in self.prefixes if not p.startswith("hb")])

    def request_snapshot(self, topic: str) -> None:
        """Ask the topic's publisher to send it again while our copy stays usable: the snapshot
        comes in sequence and replaces it (a book builder mirror cut short, before it runs out
        of levels)."""
        state = self.topics.get(topic)
        links = [state.link] if state is not None and state.link is not None else self.links
        for link in links:
            self._request(link, [topic])

    def forget(self, topic: str) -> None:
        """The publisher no longer publishes ``topic``: stop tracking it and asking for it
        (until it publishes a snapshot of it again)."""
        self._forgotten.add(topic)
        self.topics.pop(topic, None)
        for link in self.links:
            link.pending.pop(topic, None)

    def resync(self, topic: str, reason: str) -> None:
        """Declare a topic's copy unusable (e.g. the consumer could not apply a message) and ask
        its publisher for a snapshot."""
        state = self.topics.get(topic)
        if state is None or state.link is None:
            self.request_snapshot(topic)  # no copy yet: ask every publisher
            return
        self._mark_stale(state.link, topic, reason)

    async def _watch(self) -> None:
        """Liveness per publisher, and retry of resyncs that got no snapshot."""
        while True:
            await asyncio.sleep(0.25)
            now = time.monotonic()
            for link in self.links:
                if link.dealer_reader is not None:
                    link.dealer_reader.drain()  # a reply whose wake-up a send consumed
                if link.alive and now - link.last_rx > self.stale_after_s:
                    link.alive = False
                    log.warning("%s silent for %.1fs: down", link.upstream.name, now - link.last_rx)
                    if self.on_upstream:
                        self.on_upstream(link.upstream.name, False)
                overdue = [t for t, at in link.pending.items() if now - at >= RESYNC_RETRY_S]
                for t in overdue:
                    del link.pending[t]
                waiting = [t for t, s in self.topics.items() if not s.usable and t in overdue] + [
                    t for t in overdue if t in self.prefixes
                ]
                if waiting:
                    self._request(link, waiting)

    def add_prefix(self, prefix: str) -> None:
        """Follow one more topic prefix from now on, and ask for its current state."""
        if prefix in self.prefixes:
            return
        self.prefixes.append(prefix)
        # The answer to the resync can overtake the subscription on its way to the publisher
        # and be filtered out, so the request is repeated until something under it arrives.
        self._awaiting.add(prefix)
        for link in self.links:
            link.sub.setsockopt(zmq.SUBSCRIBE, prefix.encode())
            if link.joined:
                self._request(link, [prefix])

    def remove_prefix(self, prefix: str) -> None:
        """Stop following ``prefix`` and forget what its topics were (a later ``add_prefix``
        starts over from a snapshot)."""
        if prefix not in self.prefixes:
            return
        self.prefixes.remove(prefix)
        self._awaiting.discard(prefix)
        for link in self.links:
            link.sub.setsockopt(zmq.UNSUBSCRIBE, prefix.encode())
            link.pending.pop(prefix, None)
        for topic in [t for t in self.topics if t.startswith(prefix)]:
            if not any(topic.startswith(p) for p in self.prefixes):
                del self.topics[topic]

    def usable(self, topic: str) -> bool:
        state = self.topics.get(topic)
        return bool(state and state.usable)

    def topics_from(self, upstream: str) -> list[str]:
        """The topics received from the publisher named ``upstream``."""
        return [
            t
            for t, s in self.topics.items()
            if s.link is not None and s.link.upstream.name == upstream
        ]

    def close(self) -> None:
        if self._task:
            self._task.cancel()
        for link in self.links:
            for reader in link.readers:
                reader.close()
            link.sub.close(0)
            link.dealer.close(0)
