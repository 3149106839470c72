"""MCP clients for the tests: the SDK's own ClientSession over streamable HTTP and stdio."""

from __future__ import annotations

import contextlib
import json
import os
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import httpx2
import jwt
import mcp_types as types
from mcp.client.session import ClientSession
from mcp.client.stdio import StdioServerParameters, stdio_client
from mcp.client.streamable_http import streamable_http_client

SECRET = "a-test-secret-of-at-least-32-bytes-long!"
# Wide: a busy 2-core machine runs the suite.
TIMEOUT_SECONDS = 60


def token(tenant: str = "acme", scope: str = "read write") -> str:
    claims = {"tenant": tenant, "scope": scope, "exp": int(time.time() + 24 * 3600)}
    return jwt.encode(claims, SECRET, algorithm="HS256")


@contextlib.asynccontextmanager
async def http_session(
    url: str, credential: str | None = None, request_id: str | None = None
) -> AsyncIterator[ClientSession]:
    headers = {"Authorization": f"Bearer {credential}"} if credential else {}
    if request_id is not None:
        headers["X-Request-ID"] = request_id
    async with (
        httpx2.AsyncClient(headers=headers, timeout=TIMEOUT_SECONDS) as client,
        streamable_http_client(f"{url}/mcp", http_client=client) as (read, write),
        ClientSession(read, write) as session,
    ):
        await session.initialize()
        yield session


def stdio_parameters(data_dir: Path, **env: str) -> StdioServerParameters:
    return StdioServerParameters(
        command=sys.executable,
        args=["-m", "graph", "mcp"],
        env={**os.environ, "DATA_DIR": str(data_dir), "VECTOR_SIZE": "4", **env},
    )


@contextlib.asynccontextmanager
async def stdio_session(data_dir: Path, log: Path) -> AsyncIterator[ClientSession]:
    with log.open("w") as errlog:
        async with (
            stdio_client(stdio_parameters(data_dir), errlog=errlog) as (read, write),
            ClientSession(read, write) as session,
        ):
            await session.initialize()
            yield session


def structured(result: types.CallToolResult) -> dict[str, Any]:
    """A successful call's result; its text content is the same JSON."""
    assert not result.is_error, result.content
    assert isinstance(result.structured_content, dict)
    text = result.content[0]
    assert isinstance(text, types.TextContent)
    assert json.loads(text.text) == result.structured_content
    return result.structured_content


def tool_error(result: types.CallToolResult) -> str:
    assert result.is_error, result
    text = result.content[0]
    assert isinstance(text, types.TextContent)
    assert "Traceback" not in text.text
    return text.text


def graphql(
    url: str, query: str, variables: dict[str, Any] | None = None, credential: str | None = None
) -> dict[str, Any]:
    headers = {"authorization": f"Bearer {credential}"} if credential else {}
    response = httpx.post(
        f"{url}/graphql",
        json={"query": query, "variables": variables},
        headers=headers,
        timeout=TIMEOUT_SECONDS,
    )
    body: dict[str, Any] = response.json()
    assert "errors" not in body, body
    return body
