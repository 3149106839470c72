"""/mcp over streamable HTTP, with the SDK's ClientSession, against a real server process
that also serves GraphQL: the same memories, credentials, tenancy and scopes."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from graph import __version__
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

    assert run(check()).startswith("BAD_USER_INPUT: ")


def test_tool_calls_are_counted_and_logged(server: ServerProcess, run: Runner) -> None:
    async def check() -> None:
        async with http_session(server.url, token("counted")) as session:
            structured(await session.call_tool("recall", {"text": "counted"}))

    run(check())
    metrics = httpx.get(f"{server.url}/metrics", timeout=30).text
    assert 'mcp_tool_calls_total{outcome="success",tool="recall"}' in metrics
    assert 'mcp_tool_duration_seconds_count{tool="recall"}' in metrics
    lines = [line for line in server.log_lines() if '"mcp tool call"' in line]
    assert lines and all('"request_id"' in line for line in lines)


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
