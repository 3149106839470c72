"""`graph mcp`: the tools over stdio on DATA_DIR, and the message when a server holds it."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from graph import __version__
from tests.conftest import Runner
from tests.mcp.support import (
    TIMEOUT_SECONDS,
    stdio_parameters,
    stdio_session,
    structured,
    tool_error,
)
from tests.process import ServerProcess

pytestmark = pytest.mark.slow


def test_the_tools_over_stdio_keep_memories_in_data_dir(tmp_path: Path, run: Runner) -> None:
    data = tmp_path / "data"

    async def first() -> str:
        async with stdio_session(data, tmp_path / "first.log") as session:
            info = session.initialize_result
            assert info is not None
            assert (info.server_info.name, info.server_info.version) == (
                "graph-memory",
                __version__,
            )
            tools = (await session.list_tools()).tools
            assert {t.name for t in tools} == {"remember", "recall", "forget"}
            written = structured(
                await session.call_tool("remember", {"text": "stdio remembers the harbour"})
            )
            refused = tool_error(await session.call_tool("recall", {"text": "x", "limit": 0}))
            assert refused.startswith("BAD_USER_INPUT: ")
            return str(written["ids"][0])

    async def second(memory_id: str) -> None:
        async with stdio_session(data, tmp_path / "second.log") as session:
            found = structured(await session.call_tool("recall", {"text": "harbour"}))
            assert [m["id"] for m in found["memories"]] == [memory_id]
            assert structured(await session.call_tool("forget", {"ids": [memory_id]})) == {
                "deleted": 1
            }

    run(second(run(first())))


def test_graph_mcp_exits_2_while_a_server_holds_data_dir(tmp_path: Path) -> None:
    data = tmp_path / "data"
    server = ServerProcess(data, tmp_path / "server.log")
    try:
        server.start()
        parameters = stdio_parameters(data)
        finished = subprocess.run(
            [sys.executable, *parameters.args],
            env=parameters.env,
            input=b"",
            capture_output=True,
            timeout=TIMEOUT_SECONDS,
        )
    finally:
        server.stop()
    assert finished.returncode == 2
    assert finished.stdout == b""
    lines = finished.stderr.decode().strip().splitlines()
    assert len(lines) == 1, lines
    assert "in use by another process" in lines[0]
    assert str(data) in lines[0]


def test_a_line_that_is_not_a_message_is_answered_and_the_session_goes_on(
    tmp_path: Path,
) -> None:
    """JSON-RPC 2.0's answers, id null: the SDK dropped such a line without a word."""
    parameters = stdio_parameters(tmp_path / "data")
    lines = [
        b"not json",
        b"\xff\xfe{",
        b"[1, 2]",
        b'{"jsonrpc": "2.0", "method": 5}',
        b'{"jsonrpc": "2.0", "id": 7, "method": "ping"}',
    ]
    process = subprocess.Popen(
        [sys.executable, *parameters.args],
        env=parameters.env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    # stdin stays open until every answer is read: at its end the SDK stops the session
    # and drops answers still being made.
    watchdog = threading.Timer(TIMEOUT_SECONDS, process.kill)
    watchdog.start()
    try:
        assert process.stdin is not None and process.stdout is not None
        process.stdin.write(b"\n".join(lines) + b"\n")
        process.stdin.flush()
        answers = [json.loads(process.stdout.readline()) for _ in lines]
        _, errors = process.communicate(timeout=TIMEOUT_SECONDS)
    finally:
        watchdog.cancel()
        process.kill()
        process.wait()
    assert process.returncode == 0, errors
    assert b"Traceback" not in errors
    not_json = {"code": -32700, "message": "Parse error: the line is not valid JSON"}
    not_rpc = {
        "code": -32600,
        "message": "Invalid request: not a JSON-RPC 2.0 request, notification or response",
    }
    assert answers == [
        {"jsonrpc": "2.0", "id": None, "error": not_json},
        {"jsonrpc": "2.0", "id": None, "error": not_json},
        {"jsonrpc": "2.0", "id": None, "error": not_rpc},
        {"jsonrpc": "2.0", "id": None, "error": not_rpc},
        {"jsonrpc": "2.0", "id": 7, "result": {}},
    ]


def test_requests_written_before_stdin_ends_are_all_answered(tmp_path: Path) -> None:
    """`... | graph mcp`: the SDK ended the session at the end of stdin and dropped the
    answers still being made; it now ends once every request read has its answer."""
    parameters = stdio_parameters(tmp_path / "data")
    requests = [
        {
            "jsonrpc": "2.0",
            "id": 1,
            "method": "initialize",
            "params": {
                "protocolVersion": "2025-06-18",
                "capabilities": {},
                "clientInfo": {"name": "test", "version": "1"},
            },
        },
        {"jsonrpc": "2.0", "method": "notifications/initialized"},
        *(
            {
                "jsonrpc": "2.0",
                "id": n,
                "method": "tools/call",
                "params": {"name": "remember", "arguments": {"text": f"note number {n}"}},
            }
            for n in range(2, 7)
        ),
    ]
    finished = subprocess.run(
        [sys.executable, *parameters.args],
        env=parameters.env,
        input=b"".join(json.dumps(r).encode() + b"\n" for r in requests),
        capture_output=True,
        timeout=TIMEOUT_SECONDS,
    )
    assert finished.returncode == 0, finished.stderr
    answers = [json.loads(line) for line in finished.stdout.splitlines()]
    assert sorted(a["id"] for a in answers) == [1, 2, 3, 4, 5, 6]
    assert all("result" in a and not a["result"].get("isError") for a in answers), answers
