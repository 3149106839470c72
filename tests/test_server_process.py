"""The server as users run it: `python -m graph` in its own process on 127.0.0.1."""

from __future__ import annotations

import gc
import json
import threading
import time
import weakref
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from graph.serving import settle_heap
from tests.helpers import UPSERT
from tests.process import ServerProcess

pytestmark = pytest.mark.slow

COUNT = "{ count }"


@pytest.fixture
def servers(tmp_path: Path) -> Iterator[list[ServerProcess]]:
    started: list[ServerProcess] = []
    yield started
    for server in started:
        server.stop()


def new_server(servers: list[ServerProcess], tmp_path: Path, **env: str) -> ServerProcess:
    server = ServerProcess(tmp_path / "data", tmp_path / f"server-{len(servers)}.log", **env)
    servers.append(server)
    return server


def batch(start: int, size: int) -> list[dict[str, object]]:
    return [
        {"id": i, "vector": [1.0, float(i % 7), 0.5, 0.0], "payload": {"n": i}}
        for i in range(start, start + size)
    ]


def test_acknowledged_upserts_survive_kill_9(tmp_path: Path, servers: list[ServerProcess]) -> None:
    server = new_server(servers, tmp_path).start()
    for start in range(0, 300, 50):
        assert server.gql(UPSERT, {"points": batch(start, 50)}) == {
            "data": {"upsert": {"upserted": 50}}
        }
    server.kill9()

    again = new_server(servers, tmp_path).start()
    assert again.gql(COUNT) == {"data": {"count": 300}}
    hits = again.gql("{ query(vector: [1, 3, 0.5, 0], limit: 3) { id payload } }")
    assert len(hits["data"]["query"]) == 3
    got = again.gql('{ points(ids: ["0", "299"]) { id payload } }')["data"]["points"]
    assert got == [{"id": "0", "payload": {"n": 0}}, {"id": "299", "payload": {"n": 299}}]


def test_sigterm_finishes_in_flight_requests_and_exits_0(
    tmp_path: Path, servers: list[ServerProcess]
) -> None:
    server = new_server(servers, tmp_path).start()
    acknowledged: list[int] = []
    failures: list[str] = []

    def writer(worker: int) -> None:
        with httpx.Client(timeout=30) as client:
            for round_ in range(200):
                start = (worker * 200 + round_) * 20
                try:
                    response = client.post(
                        f"{server.url}/graphql",
                        json={"query": UPSERT, "variables": {"points": batch(start, 20)}},
                    )
                except httpx.TransportError:
                    return  # the server stopped accepting: expected after SIGTERM
                if response.json() != {"data": {"upsert": {"upserted": 20}}}:
                    failures.append(response.text)
                    return
                acknowledged.extend(range(start, start + 20))

    threads = [threading.Thread(target=writer, args=(w,)) for w in range(3)]
    for thread in threads:
        thread.start()
    while len(acknowledged) < 200:
        threading.Event().wait(0.01)
    assert server.terminate(timeout=30) == 0
    for thread in threads:
        thread.join(timeout=30)
    assert not failures, failures[:3]

    again = new_server(servers, tmp_path).start()
    assert again.gql(COUNT)["data"]["count"] >= len(acknowledged)
    ids = [str(i) for i in acknowledged[-50:]]
    query = "query P($ids: [ID!]!) { points(ids: $ids) { id } }"
    assert len(again.gql(query, {"ids": ids})["data"]["points"]) == len(ids)
    lines = server.log_lines()
    assert any("stopped" in json.loads(line)["message"] for line in lines)


def test_every_log_line_is_json_with_the_request_id(
    tmp_path: Path, servers: list[ServerProcess]
) -> None:
    server = new_server(servers, tmp_path).start()
    response = httpx.post(
        f"{server.url}/graphql",
        json={"query": "query Probe { health { status } }"},
        headers={"X-Request-ID": "probe-1"},
    )
    assert response.headers["x-request-id"] == "probe-1"
    bad = httpx.post(f"{server.url}/graphql", json={"query": "{ nope }"})
    server.terminate()

    records = []
    for line in server.log_lines():
        assert "\x1b[" not in line
        record = json.loads(line)
        assert {"timestamp", "level", "logger", "message"} <= record.keys(), record
        records.append(record)
    probe = [r for r in records if r.get("request_id") == "probe-1"]
    assert probe and probe[0]["operation_name"] == "Probe"
    assert probe[0]["elapsed_ms"] >= 0
    failed = [r for r in records if r.get("request_id") == bad.headers["x-request-id"]]
    assert failed and failed[0]["error_codes"] == ["GRAPHQL_VALIDATION_FAILED"]
    assert any(r["logger"].startswith("uvicorn") for r in records)


def test_a_running_server_writes_its_request_lines_within_the_flush_interval(
    tmp_path: Path, servers: list[ServerProcess]
) -> None:
    """Lines are written in batches (LOG_FLUSH_SECONDS), by a thread of their own: they
    reach the log while the server runs, not only when it stops."""
    server = new_server(servers, tmp_path, LOG_FLUSH_SECONDS="0.5").start()
    httpx.post(
        f"{server.url}/graphql",
        json={"query": "query Probe { health { status } }"},
        headers={"X-Request-ID": "running-1"},
    )
    deadline = time.monotonic() + 10
    while not any('"running-1"' in line for line in server.log_lines()):
        assert time.monotonic() < deadline, server.log_lines()[-5:]
        time.sleep(0.05)
    assert server.process is not None and server.process.poll() is None


def test_a_second_server_on_the_same_data_dir_is_refused(
    tmp_path: Path, servers: list[ServerProcess]
) -> None:
    new_server(servers, tmp_path).start()
    second = new_server(servers, tmp_path).start(wait=False)
    assert second.process is not None
    assert second.process.wait(timeout=60) != 0
    messages = " ".join(json.loads(line)["message"] for line in second.log_lines())
    assert "in use" in messages


def test_the_objects_startup_made_are_frozen_once_it_serves(
    tmp_path: Path, servers: list[ServerProcess]
) -> None:
    """The collector's full passes would otherwise walk every object loaded at startup
    (graph/serving.py settle_heap); the server still answers afterwards."""
    server = new_server(servers, tmp_path).start()
    assert httpx.post(f"{server.url}/graphql", json={"query": COUNT}).json() == {
        "data": {"count": 0}
    }
    server.terminate()
    records = [json.loads(line) for line in server.log_lines()]
    frozen = [r for r in records if r["message"] == "Startup objects frozen"]
    assert len(frozen) == 1, records
    assert frozen[0]["frozen_objects"] > 50_000


def test_settle_heap_collects_the_garbage_before_it_freezes() -> None:
    class Node:
        me: object

    cycle = Node()
    cycle.me = cycle
    alive = weakref.ref(cycle)
    del cycle
    try:
        frozen = settle_heap()
        assert alive() is None  # collected, not frozen for good
        # A frozen object can still die (a thread an earlier test left dropping its last
        # reference), so the count may only fall after the return, and by little.
        assert frozen > 50_000
        assert frozen - 1_000 < gc.get_freeze_count() <= frozen
    finally:
        gc.unfreeze()
