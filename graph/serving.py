"""uvicorn, with a readiness drain before a graceful stop.

On SIGTERM, /readyz answers 503 at once while requests are still accepted and served for
SHUTDOWN_DELAY_SECONDS, so that load balancers and Kubernetes stop sending traffic before
the listening socket closes; then uvicorn's graceful shutdown runs (in-flight requests
finish, the lifespan flushes the store). SIGINT (Ctrl-C) and a second SIGTERM skip the wait.

Once started, the objects startup made (modules, the schema, caches: several hundred
thousand) are moved out of the garbage collector's reach (settle_heap).

HTTP/1.1 is uvicorn's httptools protocol, which bounds neither the size of a request's
header block nor the time it or the body takes to arrive: BoundedHttpToolsProtocol adds
those bounds (docs/hardening.md).
"""

from __future__ import annotations

import gc
import logging
import signal
import socket
import threading
from asyncio import TimerHandle, Transport
from collections.abc import Callable, MutableMapping
from itertools import chain
from types import FrameType
from typing import Any, cast

import httptools
import uvicorn
from starlette.applications import Starlette
from starlette.types import Message, Receive, Scope, Send
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from graph.errors import ErrorCode, error_body
from graph.http.responses import dumps
from graph.telemetry.logs import new_request_id
from graph.telemetry.metrics import GRAPHQL_ERRORS

logger = logging.getLogger("graph.app")


def settle_heap() -> int:
    """Collect startup's garbage, then freeze what is left: the collector's full passes
    otherwise walk every object the process ever loaded, tens of milliseconds each that no
    request is served, often enough under load to double the p99 at 50 concurrent queries
    (docs/benchmarks.md). Objects made later are collected as usual. Returns the count of
    frozen objects."""
    gc.collect()
    gc.freeze()
    return gc.get_freeze_count()


class QuietRefusal:
    """The application, for uvicorn: when its start-up refused to go on and said why in one
    `Cannot start` line (graph/app.py's lifespan), the traceback Starlette hands uvicorn as
    the failure's message is not logged after it."""

    def __init__(self, app: Starlette) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "lifespan":
            return await self.app(scope, receive, send)

        async def quiet(message: Message) -> None:
            refused = getattr(self.app.state, "cannot_start", False)
            if message["type"] == "lifespan.startup.failed" and refused:
                message = {**message, "message": ""}
            await send(message)

        return await self.app(scope, receive, quiet)


class DrainingServer(uvicorn.Server):
    def __init__(
        self, config: uvicorn.Config, *, begin_draining: Callable[[], None], delay: float
    ) -> None:
        super().__init__(config)
        self._begin_draining = begin_draining
        self._delay = delay
        self._draining = False

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if self.started:
            logger.info("Startup objects frozen", extra={"frozen_objects": settle_heap()})

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if sig != signal.SIGTERM or self._delay <= 0 or self._draining:
            super().handle_exit(sig, frame)
            return
        self._draining = True
        self._begin_draining()
        logger.info("SIGTERM: not ready any more; stopping in %ss", self._delay)
        timer = threading.Timer(self._delay, super().handle_exit, (sig, frame))
        timer.daemon = True
        timer.start()


def _refusal(
    status: bytes,
    code: ErrorCode,
    message: str,
    request_id: str,
    default_headers: list[tuple[bytes, bytes]],
) -> bytes:
    """A response the protocol writes itself (the request never reached the application):
    the JSON error body and X-Request-ID every response has, and the connection closed."""
    body = dumps(error_body(code, message, request_id))
    return (
        b"HTTP/1.1 "
        + status
        + b"\r\n"
        + b"".join(name + b": " + value + b"\r\n" for name, value in default_headers)
        + b"content-type: application/json; charset=utf-8\r\n"
        b"x-request-id: " + request_id.encode() + b"\r\n"
        b"content-length: %d\r\nconnection: close\r\n\r\n" % len(body) + body
    )


class _HeadersTooLarge(Exception):
    pass


class _ConnectionLogger(logging.LoggerAdapter):  # type: ignore[type-arg]
    """uvicorn's logger for one connection: every line it writes about a request carries
    that request's id (the application's, or the id of the refusal the protocol is about
    to answer with: uvicorn logs a malformed request before it answers it)."""

    def __init__(self, logger: logging.Logger, protocol: BoundedHttpToolsProtocol) -> None:
        super().__init__(logger, {})
        self._protocol = protocol

    @property
    def level(self) -> int:  # uvicorn reads it before a trace line
        return int(self.logger.level)

    def process(self, msg: Any, kwargs: MutableMapping[str, Any]) -> tuple[Any, Any]:
        extra = kwargs["extra"] = dict(kwargs.get("extra") or {})
        if "request_id" not in extra:
            extra["request_id"] = self._protocol.log_id()
        return msg, kwargs


class BoundedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with bounds on each request's arrival:

    - at most `max_header_bytes` of request line and headers (then 431 HEADERS_TOO_LARGE
      and close): exactly, once the block is whole; while it is still arriving, by the
      bytes read, so that a block that never ends is refused after at most one read past
      the bound;
    - at most `header_timeout` seconds from the connection or the request's first byte to
      its last header (then the connection is closed);
    - at most `body_timeout` seconds from the last header to the body's last byte, whether
      or not the application reads it (then 408 REQUEST_TIMEOUT if no response has begun,
      and the connection is closed). Time while uvicorn has paused reading because the
      application has not taken what arrived does not count against the client.

    What it refuses itself (those, and a request httptools cannot parse: 400 BAD_REQUEST)
    gets the JSON error body and X-Request-ID every other response has, a log line with
    that id, and a count in graphql_errors_total."""

    max_header_bytes = 64 * 1024
    header_timeout = 10.0
    body_timeout = 60.0

    @classmethod
    def bounded(
        cls, max_header_bytes: int, header_timeout: float, body_timeout: float = body_timeout
    ) -> type[HttpToolsProtocol]:
        attributes = {
            "max_header_bytes": max_header_bytes,
            "header_timeout": header_timeout,
            "body_timeout": body_timeout,
        }
        return cast(type[HttpToolsProtocol], type(cls.__name__, (cls,), attributes))

    # loop.time() when the header block being read began; None between requests.
    _headers_since: float | None = None
    _header_bytes = 0
    # loop.time() when the body being read began (its headers' end); None once it is whole.
    _body_since: float | None = None
    _deadline_timer: TimerHandle | None = None
    # The id of a refusal the protocol writes itself, made when its log line is.
    _refusal_id: str | None = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # uvicorn types it as a Logger; the adapter answers every call uvicorn makes.
        self.logger = cast(logging.Logger, _ConnectionLogger(self.logger, self))

    def log_id(self) -> str:
        """The id a log line about this connection's current request carries."""
        cycle = self.cycle
        if cycle is not None and not cycle.response_complete:
            request_id = cycle.scope.get("state", {}).get("request_id")
            if request_id:
                return str(request_id)
        if self._refusal_id is None:
            self._refusal_id = new_request_id()
        return self._refusal_id

    def connection_made(self, transport: Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._headers_since = self.loop.time()
        # One timer per connection, re-armed when it fires, rather than one per request.
        self._deadline_timer = self.loop.call_later(self.header_timeout, self._check_deadlines)

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_deadlines()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        """uvicorn's, with the header bounds and this server's refusals."""
        if self._headers_since is not None:
            self._header_bytes += len(data)
        self._unset_keepalive_if_required()
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            if self._should_upgrade():
                self.handle_websocket_upgrade()
            # Else (serve() runs uvicorn with ws="none": no route speaks WebSocket) it is
            # answered as the plain HTTP request it also is, X-Request-ID and all, where
            # uvicorn's WebSocket path answered a bare 403; and without uvicorn's warnings.
            return
        except httptools.HttpParserError:
            if self._header_bytes > self.max_header_bytes:  # on_headers_complete refused
                self._refuse_headers()
            else:
                self.logger.warning("Invalid HTTP request received.")
                self._refuse(b"400 Bad Request", ErrorCode.BAD_REQUEST, "Invalid HTTP request")
            return
        if self._headers_since is not None and self._header_bytes > self.max_header_bytes:
            self._refuse_headers()  # still arriving, and already past the bound

    def send_400_response(self, msg: str) -> None:  # uvicorn's, for any caller left
        self._refuse(b"400 Bad Request", ErrorCode.BAD_REQUEST, "Invalid HTTP request")

    def _refuse_headers(self) -> None:
        if self.transport.is_closing():
            return
        # A new request, even while the one before it is still being answered.
        request_id = self._refusal_id = new_request_id()
        self.logger.warning(
            "Request header fields too large",
            extra={
                "request_id": request_id,
                "header_bytes": self._header_bytes,
                "limit": self.max_header_bytes,
            },
        )
        self._refuse(
            b"431 Request Header Fields Too Large",
            ErrorCode.HEADERS_TOO_LARGE,
            f"The request line and headers are over {self.max_header_bytes} bytes",
        )

    def on_message_begin(self) -> None:
        super().on_message_begin()
        if self._headers_since is None:  # the next request on a kept-alive connection
            self._headers_since = self.loop.time()
            self._check_by(self._headers_since + self.header_timeout)

    def on_headers_complete(self) -> None:
        self._headers_since = None
        # The block exactly as a client would count it: request line, header lines, blank line.
        block = len(self.parser.get_method()) + len(self.url) + 14 + 4 * len(self.headers)
        block += sum(map(len, chain.from_iterable(self.headers)))
        if block > self.max_header_bytes:
            self._header_bytes = block
            raise _HeadersTooLarge  # httptools stops here; data_received refuses
        self._header_bytes = 0
        # An upgrade (a WebSocket) hands the connection to another protocol: no body here.
        upgrading = self.parser.should_upgrade() and self._should_upgrade()
        if not upgrading:
            self._body_since = self.loop.time()
            self._check_by(self._body_since + self.body_timeout)
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        self._body_since = None
        super().on_message_complete()

    def _check_by(self, when: float) -> None:
        """The timer fires at `when` at the latest (a request's deadline can come before
        the timer's next look: a body bound shorter than the header bound, a request on
        a connection idle since the last look)."""
        timer = self._deadline_timer
        if timer is None or timer.when() <= when:
            return  # stopped (the connection is closing), or it looks in time anyway
        timer.cancel()
        self._deadline_timer = self.loop.call_at(when, self._check_deadlines)

    def _stop_deadlines(self) -> None:
        if self._deadline_timer is not None:
            self._deadline_timer.cancel()
            self._deadline_timer = None

    def _check_deadlines(self) -> None:
        self._deadline_timer = None
        if self.transport.is_closing():  # closed, or handed on to a WebSocket that closed
            return
        now = self.loop.time()
        wait = self.header_timeout  # between requests: nothing to bound, look again later
        if self._body_since is not None:  # a body and the next header block never overlap
            if self.flow.read_paused:
                self._body_since = now
            elif now - self._body_since >= self.body_timeout:
                self._refuse_slow_body()
                return
            wait = self.body_timeout - (now - self._body_since)
        elif self._headers_since is not None:
            if now - self._headers_since >= self.header_timeout:
                self.transport.close()
                return
            wait = self.header_timeout - (now - self._headers_since)
        self._deadline_timer = self.loop.call_later(wait, self._check_deadlines)

    def _refuse_slow_body(self) -> None:
        cycle = self.cycle
        if cycle is not None and not cycle.response_started:
            self._refuse(
                b"408 Request Timeout",
                ErrorCode.REQUEST_TIMEOUT,
                f"The request body did not arrive within {self.body_timeout:g} seconds",
            )
        self.transport.close()

    def _refuse(self, status: bytes, code: ErrorCode, message: str) -> None:
        GRAPHQL_ERRORS.labels(code=code.value).inc()
        request_id = self._refusal_id or self.log_id()
        refusal = _refusal(status, code, message, request_id, self.server_state.default_headers)
        self.transport.write(refusal)
        self.transport.close()
