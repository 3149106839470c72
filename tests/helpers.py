"""GraphQL helpers for tests that talk to the API."""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, TypeVar

import pytest
from starlette.testclient import TestClient

from graph.memory.service import MemoryService
from graph.settings import Distance
from graph.store.base import VectorStore
from tests.conftest import DIMENSION, Runner, make_settings


class GraphQLResponse:
    def __init__(self, http: Any) -> None:
        self.http = http
        self.status = http.status_code
        self.body: dict[str, Any] = http.json()
        self.request_id: str = http.headers["x-request-id"]

    @property
    def data(self) -> Any:
        assert "errors" not in self.body, self.body
        return self.body["data"]

    @property
    def codes(self) -> list[str]:
        return [error["extensions"]["code"] for error in self.body.get("errors", [])]

    def assert_error(self, code: str) -> dict[str, Any]:
        """The response failed with this code only, and every error carries the request id."""
        assert self.codes and set(self.codes) == {code}, self.body
        for error in self.body["errors"]:
            assert error["extensions"]["requestId"] == self.request_id
        first: dict[str, Any] = self.body["errors"][0]
        return first


def gql(
    client: TestClient,
    query: str,
    variables: dict[str, Any] | None = None,
    /,
    **headers: str,
) -> GraphQLResponse:
    body: dict[str, Any] = {"query": query}
    if variables is not None:
        body["variables"] = variables
    return GraphQLResponse(client.post("/graphql", json=body, headers=headers))


UPSERT = """
mutation Upsert($points: [PointInput!]!, $collection: String) {
  upsert(points: $points, collection: $collection) { upserted }
}
"""
QUERY = """
query Recall($vector: Vector!, $limit: Int! = 10, $filter: Filter, $collection: String,
             $withVector: Boolean! = false, $offset: Int! = 0, $threshold: Float) {
  query(vector: $vector, limit: $limit, filter: $filter, collection: $collection,
        withVector: $withVector, offset: $offset, scoreThreshold: $threshold) {
    id score payload vector
  }
}
"""
COUNT = "query Count($filter: Filter, $c: String) { count(filter: $filter, collection: $c) }"


def count_points(client: TestClient, collection: str | None = None) -> int:
    result: int = gql(client, COUNT, {"c": collection}).data["count"]
    return result


def point(point_id: Any, vector: list[float], **payload: Any) -> dict[str, Any]:
    return {"id": point_id, "vector": vector, "payload": payload or None}


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class SilentServer:
    """Accepts TCP connections on 127.0.0.1 and never answers: a hung Qdrant, which a real
    one cannot be made to be on demand."""

    def __init__(self) -> None:
        import socket
        import threading

        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port: int = self.sock.getsockname()[1]
        self.connections: list[Any] = []
        self.thread = threading.Thread(target=self._accept, daemon=True)

    def _accept(self) -> None:
        while True:
            try:
                connection, _ = self.sock.accept()
            except OSError:
                return
            self.connections.append(connection)

    def __enter__(self) -> SilentServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.sock.close()
        for connection in self.connections:
            connection.close()


def require_tool(name: str) -> str:
    """The path of a program a test drives. CI installs them all (.ci/run), so there a
    missing one fails the test; on a developer's machine the test is skipped, saying why."""
    import os
    import shutil

    path = shutil.which(name)
    if path is None:
        message = f"{name} is not installed (.ci/run installs it)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return path


@contextlib.contextmanager
def stand_in_http(handler: type[BaseHTTPRequestHandler]) -> Iterator[str]:
    """handler served on 127.0.0.1 from a thread, for a fault or service a real part
    cannot give here; yields its base URL and stops it after."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


T = TypeVar("T")


async def longest_stall(work: Callable[[], Awaitable[T]]) -> tuple[T, float]:
    """work's result, and the longest time the loop did not run a 1 ms ticker meanwhile."""
    longest = 0.0
    done = False

    async def tick() -> None:
        nonlocal longest
        last = time.perf_counter()
        while not done:
            await asyncio.sleep(0.001)
            now = time.perf_counter()
            longest = max(longest, now - last)
            last = now

    ticker = asyncio.create_task(tick())
    await asyncio.sleep(0.01)  # the ticker is running
    try:
        result = await work()
    finally:
        done = True
        await ticker
    return result, longest


def open_memory_service(
    store: VectorStore, tmp_path: Path, run: Runner, tenant: str, collection: str
) -> Iterator[MemoryService]:
    """A memory service on store, opened with the tenant's collection (conftest's
    DIMENSION, cosine) made, closed afterwards: the body of a fixture."""
    run(store.open())
    try:
        run(store.create_collection(tenant, collection, DIMENSION, Distance.COSINE))
        yield MemoryService(store, make_settings(tmp_path))
    finally:
        run(store.close())


@contextlib.contextmanager
def tmpfs(path: Path, options: str) -> Iterator[Path]:
    """A small tmpfs at path, or a skip saying why when this sandbox cannot mount."""
    path.mkdir(parents=True, exist_ok=True)
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)],
        capture_output=True,
        text=True,
        check=False,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root): {mounted.stderr.strip()}")
    try:
        yield path
    finally:
        for _ in range(50):
            if subprocess.run(["umount", str(path)], capture_output=True).returncode == 0:
                break
            time.sleep(0.1)
        else:
            # Left mounted, it would break pytest's clean-up of old tmp_path directories.
            subprocess.run(["umount", "--lazy", str(path)], check=False)
            raise AssertionError(f"{path} was still busy: stop its server inside the block")
