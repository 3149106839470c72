"""Pure-ASGI middleware: request ids, and how a request ends when it does not end well."""

from __future__ import annotations

import asyncio
import logging
import re

from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from graph.errors import ErrorCode
from graph.http.responses import error_response
from graph.telemetry.logs import new_request_id, request_id_var
from graph.telemetry.metrics import GRAPHQL_ERRORS

logger = logging.getLogger("graph.app")
_CLIENT_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


def request_id_of(scope: Scope) -> str:
    request_id: str = scope["state"]["request_id"]
    return request_id


class RequestIdMiddleware:
    """Takes the client's X-Request-ID when it is sane, makes one otherwise, and echoes it."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = ""
        for name, value in scope["headers"]:
            if name == b"x-request-id":
                # HTTP's optional whitespace around a value is not part of it.
                candidate = value.decode("latin-1").strip(" \t")
                if _CLIENT_REQUEST_ID.fullmatch(candidate):
                    request_id = candidate
                break
        request_id = request_id or new_request_id()
        scope.setdefault("state", {})["request_id"] = request_id
        header = (b"x-request-id", request_id.encode())

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", ()), header]
            await send(message)

        token = request_id_var.set(request_id)
        try:
            await self.app(scope, receive, send_with_id)
        finally:
            request_id_var.reset(token)


class _BodyTooLarge(Exception):
    pass


class RequestEndsMiddleware:
    """How a request ends when the application does not answer it: a body over max_bytes
    is refused with 413 before the application parses anything; a client gone before its
    body was read ends the request quietly (there is no one to answer, and it is not the
    server's error); a request the server's stop cuts short is answered 503.

    Inside the request-id and metrics middleware, so that what it answers is counted and
    carries the request id like any other response."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope["headers"]:
            if name == b"content-length":
                if not value.isdigit() or int(value) > self.max_bytes:
                    await self._refuse(scope, receive, send)
                    return
                break

        received = 0
        started = False

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise _BodyTooLarge
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, counting_receive, tracking_send)
        except _BodyTooLarge:
            if started:
                raise
            await self._refuse(scope, receive, send)
        except ClientDisconnect:
            # The client left (or was cut for a slow body) before its body was read: no
            # one to answer, and nothing went wrong here (the metrics count a 499).
            return
        except asyncio.CancelledError:
            # uvicorn cancels the requests still running when SHUTDOWN_GRACE_SECONDS end
            # (nothing else cancels a request's task); left to it, the client would get a
            # plain-text 500 and the log the cancellation's traceback. The task ends here
            # either way, once the answer is written.
            if started:
                raise
            await self._cut_short(scope, receive, send)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send) -> None:
        message = f"The request body exceeds the limit of {self.max_bytes} bytes"
        await _answer(scope, receive, send, 413, ErrorCode.PAYLOAD_TOO_LARGE, message)

    async def _cut_short(self, scope: Scope, receive: Receive, send: Send) -> None:
        logger.warning("Request cut short: the server stopped before it finished")
        message = (
            "The server stopped before the request finished; a write may or may not have "
            "taken effect: retry (another instance)"
        )
        await _answer(scope, receive, send, 503, ErrorCode.SHUTTING_DOWN, message)


async def _answer(
    scope: Scope, receive: Receive, send: Send, status: int, code: ErrorCode, message: str
) -> None:
    GRAPHQL_ERRORS.labels(code=code.value).inc()
    response = error_response(
        status, code, message, request_id_of(scope), headers={"Connection": "close"}
    )
    await response(scope, receive, send)
