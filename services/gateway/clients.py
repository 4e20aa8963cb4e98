"""One WebSocket client: its subscriptions, their conflation slots and its writer task.

The bus side only ever calls ``Subscription.offer`` (synchronous, O(1)): the item goes into the
subscription's slot for that topic and the client's writer is woken. A slot holds the latest
item (``interval_ms`` > 0) or, while the client is behind, the last ``queue_per_topic`` items
(``interval_ms`` = 0), so a client that falls behind loses intermediate states, never memory.
Trades are batched, and when a subscription's backlog passes ``trades_backlog`` the oldest are
dropped and counted, and the client gets a ``trades_dropped`` notice. A client that keeps up
only meets a burst cap (``BURST_FACTOR``), so a burst from one bus drain reaches it whole.

The writer sends control messages (replies, snapshots) first, then the due slots, the frames
of one wake-up in one socket write (about ``send_buffer_bytes`` at a time). The socket's write
buffer is bounded (``send_buffer_bytes``), so a client that stops reading blocks its own writer
in ``drain`` and nothing else; the hub closes it (code 4000) once a send has been blocked for
``slow_client_timeout_s``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections import deque
from typing import TYPE_CHECKING, Any

import orjson
from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed

from common.wsbatch import send_texts
from services.gateway import protocol
from services.gateway.protocol import ProtocolError, Subscribe

if TYPE_CHECKING:
    from services.gateway.hub import Hub

log = logging.getLogger("flowbook.gateway")

CLOSE_SLOW = 4000  # the client did not read for slow_client_timeout_s
CLOSE_POLICY = 1008  # flooding, or never reading its replies
CLOSE_TRY_AGAIN = 1013  # too many clients

# Bus payload keys not forwarded: the book builder's envelope (ts_pub becomes ts_book_pub).
_ENVELOPE = frozenset(("v", "epoch", "seq", "ts_pub", "type"))
# A client that keeps up may get bursts (one bus drain is up to 2000 messages) in full: its
# bounds are this many times larger, and at least BURST_PER_TOPIC updates per topic.
BURST_FACTOR = 8
BURST_PER_TOPIC = 2048
_STATUS_DROP = _ENVELOPE | {"stats"}


def outgoing(
    channel: str, msg: dict[str, Any], kind: str = "update", depth: int | None = None
) -> dict[str, Any]:
    """A bus message as a client sees it: envelope stripped, levels cut to ``depth``, source
    timestamps kept and the book builder's ``ts_pub`` renamed ``ts_book_pub``."""
    drop = _STATUS_DROP if channel == "status" else _ENVELOPE
    out: dict[str, Any] = {"type": kind, "channel": channel}
    for key, value in msg.items():
        if key in drop:
            continue
        if depth is not None and (key == "bids" or key == "asks") and isinstance(value, list):
            value = value[:depth]
        out[key] = value
    if "ts_pub" in msg:
        out["ts_book_pub"] = msg["ts_pub"]
    return out


class Item:
    """One message for clients, shared by every subscription it goes to; its JSON encoding (per
    depth cut) is made once, without the closing brace, so each client appends ``id``/``ts_gw``."""

    __slots__ = ("_enc", "channel", "msg", "ntrades", "topic", "ts_pub")

    def __init__(
        self, channel: str, topic: str, msg: dict[str, Any], ts_pub: int | None = None
    ) -> None:
        self.channel = channel
        self.topic = topic
        self.msg = msg
        self.ts_pub = ts_pub
        trades = msg.get("trades") if channel == "trades" else None
        self.ntrades = len(trades) if isinstance(trades, list) else 0
        self._enc: dict[int | None, bytes] | None = None

    def body(self, depth: int | None) -> bytes:
        enc = self._enc
        if enc is None:
            enc = self._enc = {}
        data = enc.get(depth)
        if data is None:
            data = enc[depth] = orjson.dumps(outgoing(self.channel, self.msg, "update", depth))[:-1]
        return data


def merge_trades(items: list[Item]) -> Item:
    """Several trade messages of one topic as one update (the newest message's timestamps; the
    oldest's ``ts_pub`` for the latency measure)."""
    msg = dict(items[-1].msg)
    msg["trades"] = [t for it in items for t in it.msg.get("trades", ())]
    return Item("trades", items[-1].topic, msg, items[0].ts_pub)


class Slot:
    """Pending items of one subscription for one topic."""

    __slots__ = ("dirty", "items", "last_sent", "maxlen", "sub", "topic")

    def __init__(self, sub: Subscription, topic: str, maxlen: int) -> None:
        self.sub = sub
        self.topic = topic
        self.items: deque[Item] = deque()
        self.maxlen = maxlen
        self.last_sent = -math.inf
        self.dirty = False


class Subscription:
    """A client's subscription: what it selects (``keys`` in the hub's index) and its slots."""

    __slots__ = (
        "active",
        "awaiting",
        "client",
        "depth",
        "id_suffix",
        "interval_s",
        "keys",
        "maxlen",
        "pending_trades",
        "slots",
        "spec",
        "trades_dropped",
    )

    def __init__(self, client: Client, spec: Subscribe, queue_per_topic: int) -> None:
        self.client = client
        self.spec = spec
        self.active = True
        self.depth = spec.depth if spec.channel == "depth" else None
        self.interval_s = spec.interval_ms / 1000.0
        self.maxlen = 1 if spec.interval_ms > 0 else queue_per_topic
        self.id_suffix = b',"id":' + orjson.dumps(spec.id) if spec.id is not None else b""
        self.slots: dict[str, Slot] = {}
        self.pending_trades = 0
        self.trades_dropped = 0
        self.keys = index_keys(spec)
        self.awaiting: set[str] = set()  # topics whose snapshot waits for the first message

    def slot(self, topic: str) -> Slot:
        slot = self.slots.get(topic)
        if slot is None:
            slot = self.slots[topic] = Slot(self, topic, self.maxlen)
        return slot

    def offer(self, topic: str, item: Item) -> None:
        """Called from the bus side: never blocks, never grows without bound. The tight bounds
        (``queue_per_topic``, ``trades_backlog``) apply while the client is behind (its writer
        is stuck in a send); a client that keeps up only has a burst cap, so a burst of updates
        that arrives within one event-loop turn is not thinned for it."""
        client = self.client
        behind = client.blocked_since is not None
        if self.spec.channel == "trades":
            slot = self.slot("*")  # one queue, so trades of several topics keep their order
            slot.items.append(item)
            self.pending_trades += item.ntrades
            backlog = client.settings.trades_backlog
            if not behind:
                backlog *= BURST_FACTOR
            while self.pending_trades > backlog and len(slot.items) > 1:
                lost = slot.items.popleft().ntrades
                self.pending_trades -= lost
                self.trades_dropped += lost
                client.stats.trades_dropped += lost
        else:
            slot = self.slot(topic)
            items = slot.items
            limit = slot.maxlen
            if not behind and limit > 1:
                limit = max(limit * BURST_FACTOR, BURST_PER_TOPIC)
            while len(items) >= limit:
                items.popleft()
                if self.interval_s > 0:
                    client.stats.conflated += 1
                else:
                    client.stats.dropped += 1
            items.append(item)
        if not slot.dirty:
            slot.dirty = True
            client.dirty.append(slot)
            client.kick()


def index_keys(spec: Subscribe) -> tuple[str, ...]:
    """Keys under which the hub finds this subscription for an incoming topic (see Hub)."""
    if spec.channel in ("depth", "bbo"):
        return tuple(f"{spec.channel}.{v}.{spec.symbol}" for v in spec.venues or ())
    if spec.channel == "trades":
        sym = spec.symbol or "*"
        return tuple(f"trade.{v}.{sym}" for v in spec.venues or ("*",))
    if spec.channel == "status":
        return tuple(f"status.{v}" for v in spec.venues or ("*",))
    return ("stats",)


Outbound = dict[str, Any] | tuple[Subscription, Item]


class Client:
    """Inbound requests (rate limit, validation) and the outbound writer of one connection."""

    def __init__(self, hub: Hub, ws: ServerConnection, cid: int) -> None:
        self.hub = hub
        self.ws = ws
        self.cid = cid
        self.settings = hub.settings
        self.stats = hub.stats
        self.peer = _peer(ws)
        self.subs: dict[tuple[Any, ...], Subscription] = {}
        self.control: deque[dict[str, Any]] = deque()
        self.dirty: list[Slot] = []
        self.wake = asyncio.Event()
        self.timer: asyncio.TimerHandle | None = None
        self.timer_at = math.inf
        self.blocked_since: float | None = None
        self.closing = False
        self.close_reason = ""
        self.sent = 0
        rate = self.settings.max_messages_per_s
        self.tokens = rate
        self.tokens_at = time.monotonic()
        self.window_at = self.tokens_at
        self.window_limited = 0
        self.writer: asyncio.Task[None] | None = None

    # -- inbound ----------------------------------------------------------------------------------
    def on_frame(self, data: bytes) -> None:
        """One message from the client. Errors become error messages; nothing here raises."""
        if self.closing:
            return
        self.stats.requests += 1
        try:
            if not self._allow(time.monotonic(), data):
                return
            if len(data) > self.settings.max_message_bytes:
                raise ProtocolError(
                    "message_too_large",
                    f"request of {len(data)} bytes; the limit is {self.settings.max_message_bytes}",
                )
            req = protocol.parse(
                data,
                self.hub.state,
                max_depth=self.settings.max_depth,
                default_depth=self.settings.default_depth,
            )
            if isinstance(req, protocol.Ping):
                pong: dict[str, Any] = {"type": "pong", "ts": time.time_ns()}
                if req.id is not None:
                    pong["id"] = req.id
                self.push(pong)
            elif isinstance(req, protocol.Subscribe):
                self.subscribe(req)
            else:
                self.unsubscribe(req)
        except ProtocolError as exc:
            self.error(exc.to_message())
        except Exception:
            log.exception("client %s: request failed: %r", self.peer, data[:200])
            self.error({"type": "error", "code": "internal_error", "message": "the request failed"})

    def _allow(self, now: float, data: bytes) -> bool:
        """Token bucket (rate and burst = max_messages_per_s). A client still flooding at ten
        times the limit for a whole second is closed (1008)."""
        rate = self.settings.max_messages_per_s
        self.tokens = min(rate, self.tokens + (now - self.tokens_at) * rate)
        self.tokens_at = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        if now - self.window_at >= 1.0:
            self.window_at, self.window_limited = now, 0
        self.window_limited += 1
        if self.window_limited > 10 * rate:
            self.close(CLOSE_POLICY, "flooding: request rate far above the limit")
            return False
        exc = ProtocolError(
            "rate_limited", f"more than {rate:g} requests per second: request dropped"
        )
        if len(data) <= self.settings.max_message_bytes:
            with contextlib.suppress(ProtocolError):
                exc.request = protocol.loads(data)
        self.error(exc.to_message())
        return False

    def error(self, msg: dict[str, Any]) -> None:
        code = msg.get("code", "")
        self.stats.errors[code] = self.stats.errors.get(code, 0) + 1
        self.push(msg)

    def subscribe(self, spec: Subscribe) -> None:
        old = self.subs.get(spec.key)
        if old is None and len(self.subs) >= self.settings.max_subscriptions:
            raise ProtocolError(
                "too_many_subscriptions",
                f"at most {self.settings.max_subscriptions} subscriptions per connection",
                spec.request,
            )
        if old is not None:  # same id or same selection: replaced, with a new snapshot
            self._drop(old)
        sub = Subscription(self, spec, self.settings.queue_per_topic)
        self.subs[spec.key] = sub
        self.push({"type": "subscribed", **spec.echo()})
        now = time.monotonic()
        for topic, snapshot in self.hub.snapshots(sub):
            self.push(snapshot)
            if topic is not None:
                sub.slot(topic).last_sent = now
        if not self.closing:  # pushing the snapshots may have closed it (replies not read)
            self.hub.register(sub)

    def unsubscribe(self, req: protocol.Unsubscribe) -> None:
        if req.id is not None:
            matches = [s for s in self.subs.values() if s.spec.id == req.id]
        else:
            assert req.channel is not None
            matches = [
                s for s in self.subs.values() if s.spec.selects(req.channel, req.venues, req.symbol)
            ]
        if not matches:
            raise ProtocolError("not_subscribed", "no subscription matches", req.request)
        for sub in matches:
            self._drop(sub)
            self.push({"type": "unsubscribed", **sub.spec.echo()})

    def _drop(self, sub: Subscription) -> None:
        sub.active = False
        self.subs.pop(sub.spec.key, None)
        self.hub.unregister(sub)
        for slot in sub.slots.values():
            slot.items.clear()

    # -- outbound ---------------------------------------------------------------------------------
    def push(self, msg: dict[str, Any]) -> None:
        """Queue a control message (reply, snapshot, notice)."""
        if self.closing:
            return
        if len(self.control) >= self.settings.max_control_queue:
            self.close(CLOSE_POLICY, "replies not read")
            return
        self.control.append(msg)
        self.kick()

    def kick(self) -> None:
        if not self.wake.is_set():
            self.wake.set()

    def _on_timer(self) -> None:
        self.timer = None
        self.timer_at = math.inf
        self.kick()

    def collect(self, now: float) -> list[Outbound]:
        """Everything due now: control messages first, then slots whose interval has passed."""
        out: list[Outbound] = list(self.control)
        self.control.clear()
        keep: list[Slot] = []
        next_due = math.inf
        for slot in self.dirty:
            sub = slot.sub
            if not sub.active or not slot.items:
                slot.dirty = False
                continue
            due = slot.last_sent + sub.interval_s
            if due > now:
                keep.append(slot)
                next_due = min(next_due, due)
                continue
            slot.dirty = False
            slot.last_sent = now
            items = list(slot.items)
            slot.items.clear()
            if sub.spec.channel == "trades":
                self._collect_trades(sub, items, out)
            else:
                out.extend((sub, it) for it in items)
        self.dirty = keep
        if next_due < self.timer_at:
            if self.timer is not None:
                self.timer.cancel()
            self.timer_at = next_due
            self.timer = asyncio.get_running_loop().call_later(next_due - now, self._on_timer)
        return out

    def _collect_trades(self, sub: Subscription, items: list[Item], out: list[Outbound]) -> None:
        sub.pending_trades = 0
        if sub.trades_dropped:
            notice: dict[str, Any] = {
                "type": "error",
                "code": "trades_dropped",
                "count": sub.trades_dropped,
                "message": f"{sub.trades_dropped} trade(s) dropped: the client is reading too "
                "slowly",
                "channel": "trades",
            }
            if sub.spec.id is not None:
                notice["id"] = sub.spec.id
            out.append(notice)
            sub.trades_dropped = 0
        by_topic: dict[str, list[Item]] = {}
        for it in items:
            by_topic.setdefault(it.topic, []).append(it)
        for group in by_topic.values():
            out.append((sub, group[0] if len(group) == 1 else merge_trades(group)))

    async def run_writer(self) -> None:
        """Sends what ``collect`` gives at each wake-up in chunks: each chunk (messages up to
        ``send_buffer_bytes``, and at least one) is encoded first, then framed by the
        connection's sans-I/O protocol and written with one ``write()``. One write per message
        was 14% of the gateway's CPU at 4k msgs/s, and the client now wakes once per chunk.

        Leaving websockets' ``send_context`` keeps what its ``send`` does: the connection must
        be open, a close handshake in progress ends the writer, and the exit waits while the
        socket buffer is above ``send_buffer_bytes`` (until it drains to a quarter of it). So
        the buffer holds at most about twice ``send_buffer_bytes`` plus one message, and
        ``blocked_since`` dates from the chunk that is stuck. Encoding stays outside the
        context: a message that cannot be encoded closes the client with 1011, not an abort."""
        ws = self.ws
        limit = self.settings.send_buffer_bytes
        try:
            while not self.closing:
                await self.wake.wait()
                self.wake.clear()
                entries = self.collect(time.monotonic())
                start = 0
                while start < len(entries):
                    frames, start = self._encode_chunk(entries, start, limit)
                    if not frames:
                        continue
                    self.blocked_since = time.monotonic()
                    if await send_texts(ws, frames):
                        self.sent += len(frames)
                        self.stats.messages_sent += len(frames)
                        self.stats.bytes_sent += sum(map(len, frames))
                self.blocked_since = None
        except ConnectionClosed:
            pass
        except Exception:
            log.exception("client %s: writer failed", self.peer)
            self.close(1011, "internal error")

    def _encode_chunk(
        self, entries: list[Outbound], start: int, limit: int
    ) -> tuple[list[bytes], int]:
        """The JSON text of ``entries[start:]`` up to ``limit`` bytes (at least one entry is
        consumed), each stamped ``ts_gw``; and where the next chunk starts."""
        stats = self.stats
        frames: list[bytes] = []
        size = 0
        i = start
        while i < len(entries):
            entry = entries[i]
            i += 1
            ts = time.time_ns()
            if isinstance(entry, dict):
                entry["ts_gw"] = ts
                data = orjson.dumps(entry)
            else:
                sub, item = entry
                if not sub.active:
                    continue
                data = b"".join((item.body(sub.depth), sub.id_suffix, b',"ts_gw":%d}' % ts))
                if item.ts_pub is not None:
                    stats.latency_tick += 1
                    if stats.latency_tick >= stats.latency_every:
                        stats.latency_tick = 0
                        stats.latency.record_ns(ts - item.ts_pub)
            frames.append(data)
            size += len(data)
            if size >= limit:
                break
        return frames, i

    # -- closing ----------------------------------------------------------------------------------
    def close(self, code: int, reason: str) -> None:
        """Stop everything for this client at once and close the socket in the background: the
        close frame goes after what is already buffered; after ``close_timeout_s`` the socket
        is dropped."""
        if self.closing:
            return
        log.info("closing client %s: %d %s", self.peer, code, reason)
        self.detach()
        self.close_reason = reason
        self.hub.spawn(self._close(code, reason))

    def detach(self) -> None:
        if self.closing:
            return
        self.closing = True
        for sub in list(self.subs.values()):
            self._drop(sub)
        self.control.clear()
        self.dirty.clear()
        if self.timer is not None:
            self.timer.cancel()
        if self.writer is not None and self.writer is not asyncio.current_task():
            self.writer.cancel()
        self.hub.forget(self)

    async def _close(self, code: int, reason: str) -> None:
        try:
            await asyncio.wait_for(self.ws.close(code, reason), self.settings.close_timeout_s + 1.0)
        except Exception:
            pass
        finally:
            if self.ws.transport is not None and not self.ws.transport.is_closing():
                self.ws.transport.abort()


def _peer(ws: ServerConnection) -> str:
    try:
        host, port = ws.remote_address[:2]
        return f"{host}:{port}"
    except Exception:
        return "?"
