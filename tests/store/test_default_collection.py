"""A tenant's default collection that could not be made (the disk below MIN_FREE_DISK_MB,
so the store refuses every write): a request on it says why, STORE_UNAVAILABLE, not
`NOT_FOUND: Collection 'memories' not found` as if the client had named a wrong one."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from starlette.testclient import TestClient

from graph.app import create_app
from tests.conftest import make_settings
from tests.helpers import gql

BASE_URL = "http://127.0.0.1:8000"  # the MCP SDK serves loopback names only
MCP_HEADERS = {"accept": "application/json, text/event-stream", "content-type": "application/json"}


def mcp_recall(client: TestClient, arguments: dict[str, object]) -> str:
    body = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "tools/call",
        "params": {"name": "recall", "arguments": arguments},
    }
    response = client.post("/mcp", content=json.dumps(body).encode(), headers=MCP_HEADERS)
    text: str = response.json()["result"]["content"][0]["text"]
    return text


def test_a_default_collection_that_could_not_be_made_says_why(tmp_path: Path) -> None:
    free_mb = shutil.disk_usage(tmp_path).free // 2**20
    settings = make_settings(tmp_path, min_free_disk_mb=free_mb + 1024)
    with TestClient(create_app(settings), base_url=BASE_URL) as client:
        recall = gql(client, '{ recall(text: "x") { id } }')
        assert "out of disk space" in recall.assert_error("STORE_UNAVAILABLE")["message"]
        assert mcp_recall(client, {"text": "x"}).startswith("STORE_UNAVAILABLE: ")
        assert mcp_recall(client, {"text": "x", "collection": None}).startswith(
            "STORE_UNAVAILABLE: "
        )
        # A collection the client names is as ever: it does not exist.
        named = gql(client, '{ recall(text: "x", collection: "other") { id } }')
        named.assert_error("NOT_FOUND")
        assert mcp_recall(client, {"text": "x", "collection": "other"}).startswith("NOT_FOUND: ")
