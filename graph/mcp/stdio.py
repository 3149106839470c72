"""`graph mcp`: the tools over stdin and stdout, for a desktop agent on this machine.

The same settings as the server (DATA_DIR, or QDRANT_URL). stdio carries no credential:
every call runs as the open tenant with every scope, as an open server does. The
embedded store takes one process per data directory: when a server already holds it,
StoreInUse says so and `graph mcp` exits with status 2 (graph/cli.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
from types import TracebackType
from typing import Self

import anyio
import mcp_types as types
from mcp.server.stdio import stdio_server

# The SDK's own stream protocols (its transports and Server.run are typed with them).
from mcp.shared._stream_protocols import ReadStream, WriteStream
from mcp.shared.message import SessionMessage
from pydantic import ValidationError

from graph.mcp.server import NOT_A_MESSAGE, build_server
from graph.mcp.tools import MemoryTools
from graph.memory.embedders import create_embedder
from graph.memory.expiry import sweep_forever
from graph.memory.service import MemoryService
from graph.security.principals import OPEN_PRINCIPAL
from graph.settings import Settings
from graph.store import create_store
from graph.store.defaults import DefaultCollections
from graph.store.edge.layout import DataDirectoryInUse
from graph.store.tenancy import DEFAULT_TENANT


class StoreInUse(Exception):
    """The embedded store's data directory is held by another process."""


# JSON-RPC 2.0's answer to a line it cannot take (id null), worded as over HTTP.
NOT_JSON = "Parse error: the line is not valid JSON"


# How long the end of stdin waits for the answers to requests already read.
ANSWER_WAIT_SECONDS = 60.0


class Unanswered:
    """The ids of requests read from stdin and not answered yet. At the end of stdin the
    SDK stops the session and drops the answers still being made, so a client that writes
    its requests and closes its end (`... | graph mcp`) lost the last ones."""

    def __init__(self) -> None:
        self._ids: set[types.RequestId] = set()
        self.none = anyio.Event()
        self.none.set()

    def asked(self, message: types.JSONRPCMessage) -> None:
        if isinstance(message, types.JSONRPCRequest):
            if not self._ids:
                self.none = anyio.Event()
            self._ids.add(message.id)

    def answered(self, message: types.JSONRPCMessage) -> None:
        if isinstance(message, types.JSONRPCResponse | types.JSONRPCError):
            self._ids.discard(message.id)  # id null (a bad line): never one of ours
            if not self._ids:
                self.none.set()


class _Stream:
    """What the SDK does with a stream as a context manager: close it at the end."""

    async def aclose(self) -> None:
        raise NotImplementedError

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.aclose()


class Answers(_Stream):
    """stdout's stream, marking each request answered as its answer goes out."""

    def __init__(self, answers: WriteStream[SessionMessage], unanswered: Unanswered) -> None:
        self._answers = answers
        self._unanswered = unanswered

    async def send(self, item: SessionMessage, /) -> None:
        await self._answers.send(item)
        self._unanswered.answered(item.message)

    async def aclose(self) -> None:
        await self._answers.aclose()


class Lines(_Stream):
    """The messages read from stdin. A line that is not one is answered on stdout (the
    SDK hands the session the parser's exception, which drops it without a word, so the
    client waits for an answer that never comes); the end of stdin is passed on once
    every request read is answered (Unanswered), or after ANSWER_WAIT_SECONDS."""

    def __init__(
        self,
        lines: ReadStream[SessionMessage | Exception],
        answers: WriteStream[SessionMessage],
        unanswered: Unanswered,
    ) -> None:
        self._lines = lines
        self._answers = answers
        self._unanswered = unanswered

    @property
    def last_context(self) -> contextvars.Context | None:
        """The context the message was sent in, which the SDK reads off its own streams."""
        return getattr(self._lines, "last_context", None)

    async def receive(self) -> SessionMessage | Exception:
        while True:
            try:
                item = await self._lines.receive()
            except anyio.EndOfStream:
                with anyio.move_on_after(ANSWER_WAIT_SECONDS):
                    await self._unanswered.none.wait()
                raise
            if not isinstance(item, Exception):
                self._unanswered.asked(item.message)
                return item
            await self._answers.send(SessionMessage(bad_line_answer(item)))

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> SessionMessage | Exception:
        try:
            return await self.receive()
        except anyio.EndOfStream:
            raise StopAsyncIteration from None

    async def aclose(self) -> None:
        await self._lines.aclose()


def bad_line_answer(problem: Exception) -> types.JSONRPCError:
    not_json = isinstance(problem, ValidationError) and any(
        error["type"] == "json_invalid" for error in problem.errors()
    )
    error = (
        types.ErrorData(code=types.PARSE_ERROR, message=NOT_JSON)
        if not_json
        else types.ErrorData(code=types.INVALID_REQUEST, message=NOT_A_MESSAGE)
    )
    return types.JSONRPCError(jsonrpc="2.0", id=None, error=error)


async def serve_stdio(settings: Settings) -> None:
    store = create_store(settings)
    memories = MemoryService(store, settings, create_embedder(settings.memory))
    await memories.start()
    try:
        await store.open()
    except DataDirectoryInUse:
        await memories.close()
        raise StoreInUse(
            f"graph mcp: the data directory {settings.store.data_dir} is in use by another "
            "process (a running server?): stop it, or point a stdio client at its /mcp instead"
        ) from None
    sweeping = asyncio.create_task(sweep_forever(memories, settings.memory.ttl_sweep_seconds))
    try:
        defaults = DefaultCollections(store, settings.store)
        await defaults.ensure(DEFAULT_TENANT)
        server = build_server(MemoryTools(memories, settings, defaults), OPEN_PRINCIPAL)
        async with stdio_server() as (read, write):
            unanswered = Unanswered()
            await server.run(
                Lines(read, write, unanswered),
                Answers(write, unanswered),
                server.create_initialization_options(),
            )
    finally:
        sweeping.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await sweeping
        await store.close()
        await memories.close()
