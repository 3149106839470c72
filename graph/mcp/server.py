"""The MCP server (the SDK's low-level Server): tools/list and tools/call over MemoryTools,
each call timed, counted and logged, every failure a tool error whose text starts with
its code; and the streamable HTTP transport, stateless, so that any replica answers any
request.

Over HTTP the gate (graph/http/gate.py) has admitted the request and left its principal
in the request's state; over stdio there is no credential and every call runs as the
principal the server was built with (the open tenant).
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import mcp_types as types
from mcp.server import Server, ServerRequestContext
from mcp.server.streamable_http_manager import StreamableHTTPASGIApp, StreamableHTTPSessionManager
from mcp.server.transport_security import TransportSecuritySettings

from graph import __version__
from graph.errors import ApiError, ErrorCode, Unauthenticated
from graph.mcp.tools import SCOPES, TOOLS, MemoryTools
from graph.security.auth import Principal
from graph.telemetry.logs import request_id_var
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
        request_id = state.get("request_id") or uuid.uuid4().hex
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
        self.app = StreamableHTTPASGIApp(self.manager)

    @contextlib.asynccontextmanager
    async def run(self) -> AsyncIterator[None]:
        async with self.manager.run():
            yield
