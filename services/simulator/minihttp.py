"""A very small asyncio HTTP/1.1 server for JSON control APIs (keep-alive, Content-Length)."""

from __future__ import annotations

import asyncio
import http
import logging
from collections.abc import Awaitable, Callable
from urllib.parse import parse_qsl

import orjson

log = logging.getLogger("simulator.http")

# handler(method, path, query, body) -> (status, json-able object)
Handler = Callable[[str, str, dict[str, str], bytes], Awaitable[tuple[int, object]]]
MAX_BODY = 1 << 20


async def serve_json(handler: Handler, host: str, port: int) -> asyncio.Server:
    async def on_client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while await _one_request(handler, reader, writer):
                pass
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            pass
        except Exception:
            log.exception("control request failed")
        finally:
            writer.close()

    return await asyncio.start_server(on_client, host, port)


async def _one_request(
    handler: Handler, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> bool:
    """Serve one request; False when the connection should be closed."""
    line = await reader.readline()
    if not line:
        return False
    try:
        method, target, version = line.decode("latin-1").split()
    except ValueError:
        await _send(writer, 400, {"error": "bad request line"}, False)
        return False
    headers: dict[str, str] = {}
    while True:
        raw = await reader.readline()
        if raw in (b"\r\n", b"\n", b""):
            break
        name, _, value = raw.decode("latin-1").partition(":")
        headers[name.strip().lower()] = value.strip()
    length = int(headers.get("content-length", "0") or 0)
    if length > MAX_BODY:
        await _send(writer, 413, {"error": "body too large"}, False)
        return False
    body = await reader.readexactly(length) if length else b""
    path, _, qs = target.partition("?")
    keep = headers.get("connection", "").lower() != "close" and version == "HTTP/1.1"
    status, obj = await handler(method.upper(), path, dict(parse_qsl(qs)), body)
    await _send(writer, status, obj, keep)
    return keep


async def _send(writer: asyncio.StreamWriter, status: int, obj: object, keep: bool) -> None:
    body = orjson.dumps(obj)
    phrase = http.HTTPStatus(status).phrase
    head = (
        f"HTTP/1.1 {status} {phrase}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\nConnection: {'keep-alive' if keep else 'close'}\r\n\r\n"
    )
    writer.write(head.encode() + body)
    await writer.drain()
