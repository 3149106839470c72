"""/mcp over streamable HTTP, with the SDK's ClientSession, against a real server process
that also serves GraphQL: the same memories, credentials, tenancy and scopes."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from graph import __version__
from graph.errors import ErrorCode, error_body
from tests.conftest import Runner
from tests.mcp.support import (
    SECRET,
    graphql,
    http_session,
    structured,
    token,
    tool_error,
)
from tests.process import ServerProcess

pytestmark = pytest.mark.slow

REMEMBER = "mutation R($m: [MemoryInput!]!) { remember(memories: $m) { ids } }"
RECALL = "query Q($t: String!) { recall(text: $t) { id text metadata } }"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    root = tmp_path_factory.mktemp("mcp-server")
    process = ServerProcess(root / "data", root / "server.log", AUTH_JWT_SECRET=SECRET)
    try:
        yield process.start()
    finally:
        process.stop()


def test_initialize_names_the_server_and_its_version(server: ServerProcess, run: Runner) -> None:
    async def check() -> None:
        async with http_session(server.url, token()) as session:
            info = session.initialize_result
            assert info is not None
            assert (info.server_info.name, info.server_info.version) == (
                "graph-memory",
                __version__,
            )

    run(check())


def test_the_tools_are_listed_with_input_and_output_schemas(
    server: ServerProcess, run: Runner
) -> None:
    async def check() -> None:
        async with http_session(server.url, token()) as session:
            tools = {tool.name: tool for tool in (await session.list_tools()).tools}
        assert set(tools) == {"remember", "recall", "forget"}
        assert tools["remember"].input_schema["required"] == ["text"]
        assert tools["recall"].input_schema["properties"]["limit"]["maximum"] == 100
        assert tools["forget"].input_schema["required"] == ["ids"]
        for tool in tools.values():
            assert tool.description
            assert tool.output_schema is not None
            for prop in tool.input_schema["properties"].values():
                assert prop["description"]
        assert tools["recall"].output_schema is not None
        assert "memories" in tools["recall"].output_schema["properties"]

    run(check())


def test_remember_then_recall_then_forget(server: ServerProcess, run: Runner) -> None:
    async def check() -> None:
        async with http_session(server.url, token("remembering")) as session:
            remembered = structured(
                await session.call_tool(
                    "remember",
                    {"text": "The user prefers dark roast coffee", "metadata": {"kind": "pref"}},
                )
            )
            [memory_id] = remembered["ids"]
            recalled = structured(await session.call_tool("recall", {"text": "coffee", "limit": 5}))
            [memory] = recalled["memories"]
            assert memory["id"] == memory_id
            assert memory["text"] == "The user prefers dark roast coffee"
            assert memory["metadata"] == {"kind": "pref"}
            assert memory["score"] > 0
            assert memory["created_at"].endswith("Z")
            filtered = structured(
                await session.call_tool(
                    "recall",
                    {
                        "text": "coffee",
                        "filter": {"must": [{"key": "kind", "match": {"value": "other"}}]},
                    },
                )
            )
            assert filtered["memories"] == []
            assert structured(await session.call_tool("forget", {"ids": [memory_id]})) == {
                "deleted": 1
            }
            assert structured(await session.call_tool("recall", {"text": "coffee"})) == {
                "memories": []
            }

    run(check())


def test_graphql_and_mcp_see_the_same_memories(server: ServerProcess, run: Runner) -> None:
    credential = token("shared")
    from_graphql = graphql(
        server.url, REMEMBER, {"m": [{"text": "written through graphql tea"}]}, credential
    )["data"]["remember"]["ids"][0]

    async def check() -> str:
        async with http_session(server.url, credential) as session:
            found = structured(await session.call_tool("recall", {"text": "graphql tea"}))
            assert [m["id"] for m in found["memories"]] == [from_graphql]
            written = structured(
                await session.call_tool("remember", {"text": "written through mcp tea"})
            )
            return str(written["ids"][0])

    from_mcp = run(check())
    recalled = graphql(server.url, RECALL, {"t": "mcp tea"}, credential)["data"]["recall"]
    assert recalled[0]["id"] == from_mcp


def test_tenants_are_isolated_across_mcp_and_graphql(server: ServerProcess, run: Runner) -> None:
    graphql(server.url, REMEMBER, {"m": [{"text": "globex secret plan"}]}, token("globex"))

    async def check() -> None:
        async with http_session(server.url, token("initech")) as session:
            written = structured(
                await session.call_tool("remember", {"text": "initech secret plan"})
            )
            found = structured(await session.call_tool("recall", {"text": "secret plan"}))
            assert [m["id"] for m in found["memories"]] == written["ids"]
            # Another tenant's ids delete nothing.
            globex = graphql(server.url, RECALL, {"t": "secret plan"}, token("globex"))
            globex_ids = [m["id"] for m in globex["data"]["recall"]]
            assert len(globex_ids) == 1
            deleted = structured(await session.call_tool("forget", {"ids": globex_ids}))
            assert deleted == {"deleted": 0}
        after = graphql(server.url, RECALL, {"t": "secret plan"}, token("globex"))
        assert [m["id"] for m in after["data"]["recall"]] == globex_ids

    run(check())


def auth_failures(url: str) -> float:
    for line in httpx.get(f"{url}/metrics", timeout=30).text.splitlines():
        if line.startswith('auth_failures_total{code="UNAUTHENTICATED"}'):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_without_a_credential_mcp_answers_401(server: ServerProcess) -> None:
    before = auth_failures(server.url)
    for headers in ({}, {"authorization": "Bearer not-a-token"}):
        response = httpx.post(
            f"{server.url}/mcp",
            json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"},
            headers={"accept": "application/json, text/event-stream", **headers},
            timeout=30,
        )
        assert response.status_code == 401
        assert response.headers["www-authenticate"] == "Bearer"
        error = response.json()["errors"][0]
        assert error["extensions"]["code"] == "UNAUTHENTICATED"
        assert error["extensions"]["requestId"] == response.headers["x-request-id"]
    assert auth_failures(server.url) == before + 2


def test_a_read_only_token_cannot_remember_or_forget(server: ServerProcess, run: Runner) -> None:
    async def check() -> None:
        async with http_session(server.url, token("readonly", "read")) as session:
            refused = tool_error(await session.call_tool("remember", {"text": "not stored"}))
            assert refused.startswith("FORBIDDEN: ")
            refused = tool_error(await session.call_tool("forget", {"ids": ["1"]}))
            assert refused.startswith("FORBIDDEN: ")
            assert structured(await session.call_tool("recall", {"text": "stored"})) == {
                "memories": []
            }
        async with http_session(server.url, token("writeonly", "write")) as session:
            refused = tool_error(await session.call_tool("recall", {"text": "anything"}))
            assert refused.startswith("FORBIDDEN: ")

    run(check())


@pytest.mark.parametrize(
    ("tool", "arguments"),
    [
        ("remember", {}),
        ("remember", {"text": "   "}),
        ("remember", {"text": "x", "ttl_seconds": 0}),
        ("remember", {"text": "x", "ttl_seconds": "soon"}),
        ("remember", {"text": "x", "metadata": [1, 2]}),
        ("remember", {"text": "x", "colour": "red"}),
        ("remember", {"text": "x", "collection": "no such/name"}),
        ("recall", {"text": "x", "limit": 0}),
        ("recall", {"text": "x", "limit": 101}),
        ("recall", {"text": "x", "limit": True}),
        ("recall", {"text": "x", "filter": {"must": [{"key": "a b!", "match": {"value": 1}}]}}),
        ("recall", {"text": "x", "filter": {"must": "everything"}}),
        ("recall", {"text": "x", "filter": {"also": []}}),
        ("forget", {"ids": []}),
        ("forget", {"ids": "1"}),
        ("forget", {"ids": ["not an id"]}),
        ("nothing", {}),
    ],
)
def test_bad_arguments_are_tool_errors_with_their_code(
    server: ServerProcess, run: Runner, tool: str, arguments: dict[str, object]
) -> None:
    async def check() -> str:
        async with http_session(server.url, token("bad")) as session:
            return tool_error(await session.call_tool(tool, arguments))

    text = run(check())
    assert text.startswith("BAD_USER_INPUT: ")
    # MCP's own argument names, never GraphQL's batch or its camelCase.
    assert "memories[" not in text
    assert "ttlSeconds" not in text


@pytest.mark.parametrize(
    ("tool", "arguments", "message"),
    [
        (
            "remember",
            {"text": "x", "ttl_seconds": 0},
            "ttl_seconds must be between 1 and 316224000",
        ),
        (
            "remember",
            {"text": "x", "ttl_seconds": 316224001},
            "ttl_seconds must be between 1 and 316224000",
        ),
        ("remember", {"text": "x", "ttl_seconds": "soon"}, "ttl_seconds must be an integer"),
        ("remember", {"text": "   "}, "text must not be empty or only whitespace"),
        (
            "remember",
            {"text": "x" * 32769},
            "text is longer than MAX_MEMORY_TEXT_BYTES (32768 bytes as JSON: UTF-8, with "
            "quotes, backslashes and control characters escaped)",
        ),
        ("remember", {"text": "x", "metadata": [1, 2]}, "metadata must be a JSON object"),
        (
            "remember",
            {"text": "x", "metadata": {"n": 2**70}},
            "metadata: payload integers must fit in 64 bits",
        ),
        ("remember", {"text": "x", "collection": 5}, "collection must be a string"),
        ("recall", {"text": "  "}, "text must not be empty or only whitespace"),
        ("recall", {"text": "x", "limit": 0}, "limit must be between 1 and 100"),
        ("recall", {"text": "x", "limit": 101}, "limit must be between 1 and 100"),
        ("recall", {"text": "x", "filter": []}, "filter must be a JSON object"),
        ("forget", {"ids": []}, "ids must hold 1 to 1000 ids"),
        ("forget", {"ids": "1"}, "ids is required and must be an array of strings"),
    ],
)
def test_a_bad_argument_is_named_as_the_tool_takes_it(
    server: ServerProcess, run: Runner, tool: str, arguments: dict[str, object], message: str
) -> None:
    async def check() -> str:
        async with http_session(server.url, token("named")) as session:
            return tool_error(await session.call_tool(tool, arguments))

    assert run(check()) == f"BAD_USER_INPUT: {message}"


MCP_HEADERS = {"accept": "application/json, text/event-stream"}


@pytest.mark.parametrize(
    ("method", "accept"),
    [("GET", "text/event-stream"), ("GET", "*/*"), ("DELETE", "*/*"), ("PUT", "*/*")],
)
def test_only_post_is_served_the_rest_is_405_at_once(
    server: ServerProcess, method: str, accept: str
) -> None:
    # Stateless with JSON responses: no stream for GET to hold open, no session to DELETE.
    headers = {"accept": accept, "authorization": f"Bearer {token('methods')}"}
    with httpx.stream(method, f"{server.url}/mcp", headers=headers, timeout=10) as response:
        response.read()
    assert response.status_code == 405
    assert response.headers["allow"] == "POST"
    assert response.headers["content-type"].startswith("application/json")
    request_id = response.headers["x-request-id"]
    body = response.json()
    assert body == error_body(ErrorCode.BAD_REQUEST, body["errors"][0]["message"], request_id)
    assert "POST" in body["errors"][0]["message"]


def test_without_a_credential_a_get_is_401_before_405(server: ServerProcess) -> None:
    response = httpx.get(f"{server.url}/mcp", headers={"accept": "*/*"}, timeout=10)
    assert response.status_code == 401


PARSE_ERROR = (-32700, "Parse error: the body is not valid JSON")
NOT_A_MESSAGE = (-32600, "Invalid request: not a JSON-RPC 2.0 request, notification or response")


@pytest.mark.parametrize(
    ("body", "error"),
    [
        (b"{bad", PARSE_ERROR),
        (b"\xff\xfe", PARSE_ERROR),
        (b"[" * 5000 + b"]" * 5000, PARSE_ERROR),
        (
            b'{"jsonrpc": "2.0", "id": 1, "method": "ping", "params": {"n": 1'
            + b"9" * 5000
            + b"}}",
            PARSE_ERROR,
        ),
        (b"[]", NOT_A_MESSAGE),
        (b"{}", NOT_A_MESSAGE),
        (b'"text"', NOT_A_MESSAGE),
        (b'[{"jsonrpc": "2.0", "id": 1, "method": "ping"}]', NOT_A_MESSAGE),
        (b'{"jsonrpc": "1.0", "id": 1, "method": "ping"}', NOT_A_MESSAGE),
    ],
)
def test_a_body_that_is_not_a_message_gets_a_fixed_json_rpc_error(
    server: ServerProcess, body: bytes, error: tuple[int, str]
) -> None:
    response = httpx.post(
        f"{server.url}/mcp",
        content=body,
        headers={
            **MCP_HEADERS,
            "content-type": "application/json",
            "authorization": f"Bearer {token('bodies')}",
        },
        timeout=30,
    )
    assert response.status_code == 400
    assert response.headers["x-request-id"]
    code, message = error
    assert response.json() == {
        "jsonrpc": "2.0",
        "id": None,
        "error": {"code": code, "message": message},
    }


@pytest.mark.parametrize(
    ("headers", "status", "message"),
    [
        ({"content-type": "text/plain"}, 400, "Invalid Content-Type header"),
        ({"host": "evil.example"}, 421, "Invalid Host header"),
        ({"origin": "http://evil.example"}, 403, "Invalid Origin header"),
    ],
    ids=["content type", "host", "origin"],
)
def test_the_sdks_own_refusals_come_in_the_json_error_body(
    server: ServerProcess, headers: dict[str, str], status: int, message: str
) -> None:
    """Its content-type check and DNS-rebinding protection (on: the server listens on a
    loopback address) answered in plain text."""
    response = httpx.post(
        f"{server.url}/mcp",
        content=b'{"jsonrpc": "2.0", "id": 1, "method": "ping"}',
        headers={
            **MCP_HEADERS,
            "content-type": "application/json",
            "authorization": f"Bearer {token('refusals')}",
            **headers,
        },
        timeout=30,
    )
    assert response.status_code == status
    assert response.headers["content-type"] == "application/json; charset=utf-8"
    request_id = response.headers["x-request-id"]
    assert response.json() == error_body(ErrorCode.BAD_REQUEST, message, request_id)


def test_the_newer_protocol_revision_words_a_parse_error_the_same(server: ServerProcess) -> None:
    response = httpx.post(
        f"{server.url}/mcp",
        content=b"{bad",
        headers={
            **MCP_HEADERS,
            "content-type": "application/json",
            "mcp-protocol-version": "2026-07-28",
            "authorization": f"Bearer {token('bodies')}",
        },
        timeout=30,
    )
    assert response.status_code == 400
    assert response.json()["error"] == {"code": PARSE_ERROR[0], "message": PARSE_ERROR[1]}


def test_tool_calls_are_counted_and_logged(server: ServerProcess, run: Runner) -> None:
    request_id = f"counted-{uuid.uuid4().hex}"

    async def check() -> None:
        async with http_session(server.url, token("counted"), request_id) as session:
            structured(await session.call_tool("recall", {"text": "counted"}))

    run(check())
    metrics = httpx.get(f"{server.url}/metrics", timeout=30).text
    assert 'mcp_tool_calls_total{outcome="success",tool="recall"}' in metrics
    assert 'mcp_tool_duration_seconds_count{tool="recall"}' in metrics
    # Log lines are written in batches: wait for this call's own line, not any earlier one.
    deadline = time.monotonic() + 10
    while not (
        lines := [
            json.loads(line)
            for line in server.log_lines()
            if '"mcp tool call"' in line and f'"{request_id}"' in line
        ]
    ):
        assert time.monotonic() < deadline, server.log_lines()[-5:]
        time.sleep(0.05)
    assert len(lines) == 1, lines
    assert lines[0]["request_id"] == request_id
    assert (lines[0]["tool"], lines[0]["tenant"]) == ("recall", "counted")


def test_past_the_rate_limit_mcp_answers_429_from_the_budget_graphql_shares(
    tmp_path: Path,
) -> None:
    server = ServerProcess(
        tmp_path / "data", tmp_path / "server.log", AUTH_JWT_SECRET=SECRET, RATE_LIMIT="3/minute"
    )
    headers = {
        "accept": "application/json, text/event-stream",
        "authorization": f"Bearer {token('limited')}",
    }
    message = {"jsonrpc": "2.0", "id": 1, "method": "tools/list"}
    try:
        server.start()
        statuses = [
            httpx.post(f"{server.url}/mcp", json=message, headers=headers, timeout=30).status_code
            for _ in range(3)
        ]
        assert statuses == [200, 200, 200]
        limited = httpx.post(f"{server.url}/mcp", json=message, headers=headers, timeout=30)
        assert limited.status_code == 429
        assert int(limited.headers["retry-after"]) >= 1
        error = limited.json()["errors"][0]
        assert error["extensions"] == {
            "code": "RATE_LIMITED",
            "requestId": limited.headers["x-request-id"],
        }
        also = httpx.post(
            f"{server.url}/graphql",
            json={"query": "query Count { count }"},
            headers={"authorization": headers["authorization"]},
            timeout=30,
        )
        assert also.status_code == 429
        metrics = httpx.get(f"{server.url}/metrics", timeout=30).text
        assert 'rate_limited_requests_total{tenant="limited"} 2.0' in metrics
    finally:
        server.stop()
