"""The per-connection deadline timer of graph.serving.BoundedHttpToolsProtocol: it lets
its connection go (once a connection is closed, or handed on to a WebSocket that has
closed, no timer holds its protocol object), and it looks in time for a deadline shorter
than its period. The server runs in-process (uvicorn on the asyncio loop) so that the
protocol objects can be counted; the timer's period is short so that it fires several
times during each test."""

from __future__ import annotations

import asyncio
import gc
import time
import weakref
from typing import Any, ClassVar

import uvicorn
from starlette.types import Receive, Scope, Send

from graph.serving import BoundedHttpToolsProtocol

HEADER_TIMEOUT = 0.2


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    """200 to any HTTP request once its body is read; a WebSocket is accepted and closed
    at once."""
    if scope["type"] == "websocket":
        await receive()  # websocket.connect
        await send({"type": "websocket.accept"})
        await send({"type": "websocket.close", "code": 1000})
    elif scope["type"] == "http":
        while (await receive()).get("more_body"):
            pass
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})


class CountedProtocol(BoundedHttpToolsProtocol):
    """The bounded protocol, each instance remembered weakly."""

    header_timeout = HEADER_TIMEOUT
    live: ClassVar[weakref.WeakSet[Any]] = weakref.WeakSet()

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        CountedProtocol.live.add(self)


async def exchange(port: int, request: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(request)
    await writer.drain()
    reply = await asyncio.wait_for(reader.read(65536), 10)
    writer.close()
    await writer.wait_closed()
    return reply


async def live_protocols_after(
    request: bytes, protocol: type[BoundedHttpToolsProtocol] = CountedProtocol
) -> tuple[bytes, int]:
    """The reply to request, and how many protocol objects live a little after it."""
    # ws "auto", as `graph serve` runs: the WebSocket implementation uvicorn picks.
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=0,
        http=protocol,
        ws="auto",
        loop="asyncio",
        log_level="warning",
        lifespan="off",
    )
    server = uvicorn.Server(config)
    serving = asyncio.create_task(server.serve())
    for _ in range(1000):
        if server.started or serving.done():
            break
        await asyncio.sleep(0.01)
    assert server.started, serving.exception() if serving.done() else "not started in 10 s"
    port = server.servers[0].sockets[0].getsockname()[1]
    reply = await exchange(port, request)
    await asyncio.sleep(HEADER_TIMEOUT * 5)  # the timer fires, and must not re-arm
    gc.collect()
    live = len(CountedProtocol.live)
    server.should_exit = True
    await serving
    return reply, live


def test_a_closed_connection_leaves_no_protocol_behind() -> None:
    reply, live = asyncio.run(live_protocols_after(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"))
    assert reply.startswith(b"HTTP/1.1 200"), reply
    assert live == 0


def test_a_closed_websocket_leaves_no_protocol_behind() -> None:
    upgrade = (
        b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    reply, live = asyncio.run(live_protocols_after(upgrade))
    assert reply.startswith(b"HTTP/1.1 101"), reply
    assert live == 0


class ShortBodyBound(CountedProtocol):
    """A body bound far shorter than the timer's period (the header bound)."""

    header_timeout = 30.0
    body_timeout = HEADER_TIMEOUT


def test_a_body_bound_shorter_than_the_header_bound_is_kept() -> None:
    started = time.perf_counter()
    reply, _ = asyncio.run(
        live_protocols_after(
            b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n", ShortBodyBound
        )
    )
    elapsed = time.perf_counter() - started
    assert reply.startswith(b"HTTP/1.1 408 Request Timeout"), reply
    assert b'"code":"REQUEST_TIMEOUT"' in reply
    assert elapsed < 10, elapsed  # the timer's own period would have been 30 s
