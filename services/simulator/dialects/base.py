"""What a venue dialect is: frames out of market events, its WebSocket protocol, its HTTP routes.

A dialect is one module in ``dialects/`` (named like the venue, ``-`` spelled ``_``) that defines
one ``Dialect`` subclass decorated with ``@register``. The venue server owns sockets, stats and
faults; the dialect only speaks the exchange's language:

* ``instrument(base, quote)``: the venue's native symbol (and tick/step) for a configured market;
  ``instruments(base, quote)`` when one base has several markets (spot and perpetual);
* ``ws_accept(path, query)``: accept or refuse a WebSocket upgrade on this path;
* ``ws_session(client)``: the conversation with one connected client (subscriptions, replies);
* ``publish(update)``: turn one book event (and its trades) into frames and queue them to the
  clients that asked for them (use ``broadcast``, which also handles the ``malformed`` fault);
* ``lost(update)``: an event the ``gap`` fault swallowed (optional; default: nothing);
* ``http_get(path, query)``: REST routes (snapshots, instrument metadata);
* ``shutdown_frame(client)``: the notice sent before a planned close, if the venue has one.

Dialect-specific faults (``checksum``) are listed in ``extra_faults`` and consumed in ``publish``
with ``self.venue.faults.take(kind, symbol)``. A REST route takes its fault with
``faults.take_rest`` and answers ``rest429``/``rest500`` in the venue's words; a snapshot route
hands its answer to ``rest_answer`` (``slow_snapshot``: the data of the moment asked, answered
late), a metadata route sleeps before it builds its answer and passes it through ``cut_short``.
"""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, ClassVar

import orjson

from ..assets import Instrument, make_instrument
from ..book import BookUpdate
from ..clients import Client

if TYPE_CHECKING:
    from ..faults import RestFault
    from ..venue import VenueServer

Query = dict[str, str]


@dataclass(slots=True)
class HttpReply:
    status: int
    body: bytes
    headers: list[tuple[str, str]] = field(default_factory=list)
    content_type: str = "application/json;charset=UTF-8"

    @classmethod
    def json(
        cls, status: int, obj: object, headers: list[tuple[str, str]] | None = None
    ) -> HttpReply:
        return cls(status, orjson.dumps(obj), headers or [])


def cut_short(reply: HttpReply, fault: RestFault | None) -> HttpReply:
    """``reply`` with its body cut off half way if the fault is ``rest_malformed`` (a 200 that
    cannot be parsed), else as is."""
    if fault is None or fault.kind != "rest_malformed":
        return reply
    return HttpReply(
        reply.status, reply.body[: len(reply.body) // 2], reply.headers, reply.content_type
    )


async def rest_answer(reply: HttpReply, fault: RestFault | None) -> HttpReply:
    """A snapshot answer as an armed REST fault delivers it: ``slow_snapshot`` answers
    ``duration_s`` late with the data of when it was asked (so it may be older than the stream
    by then), ``rest_malformed`` cut short."""
    if fault is not None and fault.kind == "slow_snapshot":
        await asyncio.sleep(fault.duration_s)
    return cut_short(reply, fault)


class Dialect(ABC):
    """Base class of a venue dialect; one instance per served venue."""

    name: ClassVar[str]
    # fault kinds beyond the generic ones that this dialect honours (e.g. "checksum")
    extra_faults: ClassVar[frozenset[str]] = frozenset()

    def __init__(self, venue: VenueServer) -> None:
        self.venue = venue

    def instrument(self, base: str, quote: str) -> Instrument:
        """Default: native symbol is BASE+QUOTE with the simulator's tick and lot step."""
        return make_instrument(self.venue.name, f"{base}{quote}", base, quote)

    def instruments(self, base: str, quote: str) -> list[Instrument]:
        """Every market the venue serves for a configured base (default: ``instrument``). A
        venue with several markets per base (Bybit spot and linear) returns one per market,
        each with a distinct simulator symbol."""
        return [self.instrument(base, quote)]

    def ws_accept(self, path: str, query: Query) -> HttpReply | None:
        """None to accept the upgrade; an HttpReply to refuse it."""
        return None

    @abstractmethod
    async def ws_session(self, client: Client) -> None:
        """Serve one client until it disconnects."""

    @abstractmethod
    def publish(self, update: BookUpdate) -> None:
        """Queue the frames of one book event to the subscribed clients."""

    def lost(self, update: BookUpdate) -> None:
        """A book event the ``gap`` fault applied to the book but never sent. A dialect that
        keeps what its clients were last told (Kraken's depth-limited views) advances it here,
        so that the next frame really misses these changes."""

    def http_get(self, path: str, query: Query) -> HttpReply | Awaitable[HttpReply]:
        return HttpReply.json(404, {"error": f"no route {path}"})

    def shutdown_frame(self, client: Client) -> bytes | None:
        """The notice a client gets before a planned close (None: the venue sends none)."""
        return None

    # ---- helpers --------------------------------------------------------------------------

    def subscribed(self, key: str) -> bool:
        """Whether any client wants ``key`` (skip rendering frames nobody asked for)."""
        return any(key in client.subs for client in self.venue.clients)

    def broadcast(
        self, key: str, frame: bytes | Callable[[Client], bytes], update: BookUpdate | None = None
    ) -> int:
        """Queue a frame to every client subscribed to ``key``; returns how many got it.

        ``frame`` is the bytes of a text frame, or a function of the client when clients differ
        (e.g. wrapped vs raw streams). If ``update.corrupt`` is set (malformed fault), receivers
        first get a truncated copy of the frame and the flag is cleared, so one broken frame
        precedes the real one.
        """
        corrupt = update is not None and update.corrupt
        symbol = update.inst.symbol if update is not None else None
        sent = 0
        for client in self.venue.clients:
            if key in client.subs:
                data = frame if isinstance(frame, bytes) else frame(client)
                if corrupt:
                    client.push(data[: max(1, len(data) // 2)], symbol)
                client.push(data, symbol)
                sent += 1
        if corrupt and sent:
            update.corrupt = False
        return sent
