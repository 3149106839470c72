"""A scripted HTTP endpoint on 127.0.0.1 standing in for a Qdrant server that misbehaves.

It produces faults a real Qdrant cannot be made to produce on demand: answers that hang,
connections dropped mid-request, 429 and 503 with Retry-After, garbage. Each request gets
the next reply of the script; the last one repeats for ever after.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Literal

# bytes: the raw HTTP response to send; HANG: never answer; DROP: close the connection;
# Slow: a reply sent after a delay.
HANG: Literal["hang"] = "hang"
DROP: Literal["drop"] = "drop"


@dataclass(frozen=True)
class Slow:
    seconds: float
    reply: bytes


Reply = bytes | Slow | Literal["hang", "drop"]

COLLECTIONS_OK = b'{"result": {"collections": []}, "status": "ok", "time": 0.0}'


def http_reply(status: str, body: bytes, **headers: str) -> bytes:
    extra = "".join(f"{name.replace('_', '-')}: {value}\r\n" for name, value in headers.items())
    return (
        f"HTTP/1.1 {status}\r\nContent-Type: application/json\r\n{extra}"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode() + body


@dataclass
class FakeQdrant:
    url: str = ""
    # When each request arrived (time.monotonic()) and its request line.
    requests: list[tuple[float, str]] = field(default_factory=list)


@asynccontextmanager
async def fake_server(*script: Reply, port: int = 0) -> AsyncIterator[FakeQdrant]:
    fake = FakeQdrant()
    connections: set[asyncio.StreamWriter] = set()

    def next_reply() -> Reply:
        index = min(len(fake.requests), len(script)) - 1
        return script[index]

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connections.add(writer)
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":", 1)[1])
                await reader.readexactly(length)
                fake.requests.append((time.monotonic(), head.split(b"\r\n", 1)[0].decode()))
                reply = next_reply()
                if isinstance(reply, Slow):
                    await asyncio.sleep(reply.seconds)
                    reply = reply.reply
                if reply == HANG:
                    await reader.read()  # hold the connection open, never answer
                    return
                if reply == DROP:
                    return  # the finally below closes the connection unanswered
                assert isinstance(reply, bytes)
                writer.write(reply)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            connections.discard(writer)
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", port)
    fake.url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    try:
        yield fake
    finally:
        server.close()
        for writer in list(connections):
            writer.close()
        await server.wait_closed()
        await asyncio.sleep(0.05)  # let the handlers see the closed connections
