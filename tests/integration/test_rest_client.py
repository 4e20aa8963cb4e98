"""The ingest's REST client against a real HTTP server on loopback that answers badly: an
answer that trickles in, rate limits without Retry-After, a caller that no longer wants it.
And the reconnect backoff after thousands of failures."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Awaitable, Callable

import pytest

from common.model import HttpRequest
from services.ingest.backoff import Backoff
from services.ingest.rest import NotWanted, RestClient, RestError

pytestmark = pytest.mark.integration

Handler = Callable[[asyncio.StreamWriter], Awaitable[None]]


async def serve(handler: Handler) -> tuple[asyncio.Server, str, list[float]]:
    """An HTTP/1.1 server answering every request with ``handler``; the request times."""
    hits: list[float] = []

    async def on_client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while await reader.readuntil(b"\r\n\r\n"):
                hits.append(time.monotonic())
                await handler(writer)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(on_client, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    return server, f"http://127.0.0.1:{port}/api/v3/depth", hits


def test_an_answer_that_trickles_in_fails_at_the_deadline_instead_of_holding_for_ever():
    async def trickle(writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n")
        for _ in range(100):  # a byte every 0.2 s: each read is within httpx's timeout
            writer.write(b" ")
            await writer.drain()
            await asyncio.sleep(0.2)

    async def main() -> str:
        server, url, _ = await serve(trickle)
        client = RestClient("test", 1200)
        try:
            with pytest.raises(RestError) as info:
                await asyncio.wait_for(client.get(HttpRequest(url), attempts=1, deadline_s=1.0), 10)
            return str(info.value)
        finally:
            await client.close()
            server.close()

    assert "no complete answer within 1s" in asyncio.run(main())


def answer(response: bytes) -> Handler:
    """A handler that sends ``response`` (status line, headers, body) to every request."""

    async def handler(writer: asyncio.StreamWriter) -> None:
        writer.write(response)
        await writer.drain()

    return handler


def run_client(handler: Handler, calls: Callable[[RestClient, str], Awaitable[None]]) -> list:
    """``calls(client, url)`` against a server answering with ``handler``; the request times."""

    async def main() -> list[float]:
        server, url, hits = await serve(handler)
        client = RestClient("test", 1200)
        try:
            await calls(client, url)
            return hits
        finally:
            await client.close()
            server.close()

    return asyncio.run(main())


def test_a_rate_limit_without_retry_after_waits_longer_each_time():
    limited = answer(b"HTTP/1.1 429 Too Many Requests\r\nContent-Length: 2\r\n\r\n{}")

    async def calls(client: RestClient, url: str) -> None:
        with pytest.raises(RestError, match="HTTP 429"):
            await client.get(HttpRequest(url), attempts=4)
        assert client.rate_limited == 4

    waits = [b - a for a, b in itertools.pairwise(run_client(limited, calls))]
    assert len(waits) == 3
    # 0.5 s, then 1 s, then 2 s (before: 0.5 s every time, for ever)
    assert waits[0] >= 0.45 and waits[1] >= 0.95 and waits[2] >= 1.9, waits


def test_a_call_no_longer_wanted_is_not_made():
    ok = answer(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}")

    async def calls(client: RestClient, url: str) -> None:
        assert await client.get(HttpRequest(url), still_wanted=lambda: True) == b"{}"
        with pytest.raises(NotWanted):
            await client.get(HttpRequest(url), still_wanted=lambda: False)

    assert len(run_client(ok, calls)) == 1


def test_backoff_keeps_its_cap_after_thousands_of_failures():
    backoff = Backoff(base_s=0.5, cap_s=30.0)
    delays = [backoff.next_delay() for _ in range(3000)]  # 2.0**1024 overflowed at 1024
    assert max(delays) <= 30.0 and backoff.attempt == 3000
