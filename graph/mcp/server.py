"""The MCP server (the SDK's low-level Server): tools/list and tools/call over MemoryTools,
each call timed, counted and logged, every failure a tool error whose text starts with
its code; and the streamable HTTP transport, stateless, so that any replica answers any
request: POST only, and no parser's or validator's text in its errors.

Over HTTP the gate (graph/http/gate.py) has admitted the request and left its principal
in the request's state; over stdio there is no credential and every call runs as the
principal the server was built with (the open tenant).
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

import mcp_types as types
from mcp.server import Server, ServerRequestContext
from mcp.server.streamable_http_manager import StreamableHTTPASGIApp, StreamableHTTPSessionManager
from mcp.server.transport_security import TransportSecuritySettings
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from graph import __version__
from graph.errors import ApiError, ErrorCode, Unauthenticated, error_body
from graph.mcp.tools import SCOPES, TOOLS, MemoryTools
from graph.security.principals import Principal
from graph.telemetry.logs import new_request_id, request_id_var
from graph.telemetry.metrics import AUTH_FAILURES, MCP_TOOL_CALLS, MCP_TOOL_DURATION

logger = logging.getLogger("graph.request")

SERVER_NAME = "graph-memory"
INSTRUCTIONS = (
    "Long-term memory shared with this user's other agents and apps: `remember` stores a "
    "text, `recall` finds the memories most relevant to a text, `forget` deletes by id."
)
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")


def build_server(tools: MemoryTools, principal: Principal | None = None) -> Server[Any]:
    """principal: who every call runs as when the transport has no request (stdio)."""

    async def list_tools(
        ctx: ServerRequestContext[Any], params: types.PaginatedRequestParams | None
    ) -> types.ListToolsResult:
        return types.ListToolsResult(tools=TOOLS)

    async def call_tool(
        ctx: ServerRequestContext[Any], params: types.CallToolRequestParams
    ) -> types.CallToolResult:
        state = ctx.request.scope.get("state", {}) if ctx.request is not None else {}
        request_id = state.get("request_id") or new_request_id()
        token = request_id_var.set(request_id)
        try:
            return await _call(tools, params, state.get("principal", principal), request_id)
        finally:
            request_id_var.reset(token)

    return Server(
        SERVER_NAME,
        version=__version__,
        title="Graph memory server",
        instructions=INSTRUCTIONS,
        on_list_tools=list_tools,
        on_call_tool=call_tool,
    )


async def _call(
    tools: MemoryTools,
    params: types.CallToolRequestParams,
    principal: Principal | None,
    request_id: str,
) -> types.CallToolResult:
    name = params.name if params.name in SCOPES else "unknown"
    started = time.perf_counter()
    code: ErrorCode | None = None
    try:
        if principal is None:
            raise Unauthenticated("Authentication required")
        result = await tools.call(params.name, params.arguments or {}, principal)
    except ApiError as exc:
        code, message = exc.code, exc.message
        if code is ErrorCode.FORBIDDEN:
            AUTH_FAILURES.labels(code.value).inc()
    except Exception:
        logger.exception("MCP tool call failed", extra={"tool": name, "request_id": request_id})
        code, message = ErrorCode.INTERNAL_SERVER_ERROR, "Internal server error"
    elapsed = time.perf_counter() - started
    MCP_TOOL_CALLS.labels(name, code.value if code else "success").inc()
    MCP_TOOL_DURATION.labels(name).observe(elapsed)
    extra: dict[str, Any] = {
        "request_id": request_id,
        "tool": name,
        "tenant": principal.tenant if principal else None,
        "elapsed_ms": round(elapsed * 1000, 3),
    }
    if code is not None:
        extra["error_code"] = code.value
        logger.info("mcp tool call", extra=extra)
        return types.CallToolResult(
            content=[types.TextContent(text=f"{code.value}: {message}")], is_error=True
        )
    logger.info("mcp tool call", extra=extra)
    return types.CallToolResult(
        content=[types.TextContent(text=json.dumps(result, ensure_ascii=False))],
        structured_content=result,
    )


class StreamableHTTP:
    """The /mcp route's ASGI app; run() must be entered in the application's lifespan."""

    def __init__(self, server: Server[Any], host: str, max_body_bytes: int) -> None:
        # DNS rebinding: a server on a loopback address answers only to loopback names,
        # as the SDK's own apps do; elsewhere the proxy and the credential guard it.
        security = (
            TransportSecuritySettings(
                enable_dns_rebinding_protection=True,
                allowed_hosts=["127.0.0.1:*", "localhost:*", "[::1]:*"],
                allowed_origins=["http://127.0.0.1:*", "http://localhost:*", "http://[::1]:*"],
            )
            if host in LOOPBACK_HOSTS
            else None
        )
        self.manager = StreamableHTTPSessionManager(
            app=server,
            json_response=True,
            stateless=True,
            security_settings=security,
            max_request_body_size=max_body_bytes,
        )
        self.app = PostOnly(StreamableHTTPASGIApp(self.manager))

    @contextlib.asynccontextmanager
    async def run(self) -> AsyncIterator[None]:
        async with self.manager.run():
            yield


# The SDK words these two JSON-RPC errors with the parser's or pydantic's own text, and
# gives a body that is no message "Invalid params", which JSON-RPC 2.0 keeps for a
# request's parameters: (code, message) as the specification has them, as over stdio.
NOT_A_MESSAGE = "Invalid request: not a JSON-RPC 2.0 request, notification or response"
FIXED_ERRORS = {
    types.PARSE_ERROR: (types.PARSE_ERROR, "Parse error: the body is not valid JSON"),
    types.INVALID_PARAMS: (types.INVALID_REQUEST, NOT_A_MESSAGE),
}
# The SDK's own refusals in plain text (its DNS-rebinding and content-type checks, its
# body limit, which the app's comes before): the same sentence in the JSON error body.
PLAIN_REFUSALS = {
    400: ErrorCode.BAD_REQUEST,
    403: ErrorCode.BAD_REQUEST,  # an Origin it does not serve: no credential is at fault
    413: ErrorCode.PAYLOAD_TOO_LARGE,
    421: ErrorCode.BAD_REQUEST,
}
MAX_PLAIN_CHARS = 200
REFUSED_METHOD = (
    "Send MCP messages as POST: this server is stateless, with no event stream to open "
    "(GET) and no session to end (DELETE)"
)


class PostOnly:
    """In front of the SDK's transport: a method other than POST is 405 (stateless with
    JSON responses, there is no server-initiated stream for GET to hold open, and no
    session for DELETE to end); a body the SDK could not read as JSON-RPC gets a fixed
    message rather than the parser's or pydantic's text; and the SDK's plain-text
    refusals come in the JSON error body every other refusal has."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
        elif scope["method"] != "POST":
            await _refuse_method(scope["state"]["request_id"], send)
        else:
            await self.app(scope, receive, _FixedErrors(send, scope["state"]["request_id"]))


async def _refuse_method(request_id: str, send: Send) -> None:
    body = json.dumps(
        error_body(ErrorCode.BAD_REQUEST, REFUSED_METHOD, request_id), separators=(",", ":")
    ).encode()
    headers = [
        (b"content-type", b"application/json; charset=utf-8"),
        (b"content-length", str(len(body)).encode()),
        (b"allow", b"POST"),
    ]
    await send({"type": "http.response.start", "status": 405, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class _FixedErrors:
    """The send of one request: a refusal the transport answers is held until complete; a
    JSON-RPC error without an id (the body was not read as a message) is reworded, and a
    plain-text one becomes the JSON error body."""

    def __init__(self, send: Send, request_id: str) -> None:
        self.send = send
        self.request_id = request_id
        self.start: Message | None = None
        self.body = b""

    async def __call__(self, message: Message) -> None:
        if message["type"] == "http.response.start" and message["status"] in PLAIN_REFUSALS:
            self.start = message
            return
        if self.start is None or message["type"] != "http.response.body":
            await self.send(message)
            return
        self.body += message.get("body", b"")
        if message.get("more_body", False):
            return
        status: int = self.start["status"]
        kept = self.start.get("headers", ())
        if not any(k == b"content-type" and b"json" in v for k, v in kept):  # its plain text
            text = self.body.decode("utf-8", "replace")[:MAX_PLAIN_CHARS]
            refusal = error_body(PLAIN_REFUSALS[status], text, self.request_id)
            body = json.dumps(refusal, separators=(",", ":")).encode()
            kept = [(b"content-type", b"application/json; charset=utf-8")] + [
                (k, v) for k, v in kept if k != b"content-type"
            ]
        else:
            body = _reworded(self.body)
        headers = [(k, v) for k, v in kept if k != b"content-length"]
        headers.append((b"content-length", str(len(body)).encode()))
        await self.send({**self.start, "headers": headers})
        await self.send({"type": "http.response.body", "body": body})


def _reworded(body: bytes) -> bytes:
    try:
        answer = json.loads(body)
        error = answer["error"]
        fixed = FIXED_ERRORS.get(error["code"]) if answer.get("id") is None else None
    except (ValueError, TypeError, KeyError):
        return body
    if fixed is None:
        return body
    error["code"], error["message"] = fixed
    error.pop("data", None)
    return json.dumps(answer, separators=(",", ":")).encode()
