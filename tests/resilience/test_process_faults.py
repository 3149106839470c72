"""Process faults on the embedded store, injected for real: kill -9 in the middle of a
sustained ingest, SIGTERM under load, a read-only DATA_DIR and a full disk (small tmpfs
mounts: the tests run as root, where chmod does not stop writes)."""

from __future__ import annotations

import contextlib
import json
import os
import random
import subprocess
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.helpers import UPSERT, stand_in_http, tmpfs
from tests.process import ServerProcess

pytestmark = pytest.mark.slow

GET = "query G($ids: [ID!]!) { points(ids: $ids) { id payload } }"
KILL_ROUNDS = 4
BATCH = 50


@pytest.fixture
def servers() -> Iterator[list[ServerProcess]]:
    started: list[ServerProcess] = []
    yield started
    for server in started:
        server.stop()


def batch(start: int, size: int = BATCH) -> list[dict[str, Any]]:
    return [
        {"id": i, "vector": [1.0, float(i % 11), 0.5, 0.25], "payload": {"n": i, "t": "x" * 64}}
        for i in range(start, start + size)
    ]


class Ingest:
    """Writers upserting batches of new ids back to back; remembers what was acknowledged."""

    def __init__(self, url: str, writers: int, first_id: int) -> None:
        self.url = url
        self.acknowledged: list[int] = []
        self.failures: list[str] = []
        self.next_id = first_id
        self.lock = threading.Lock()
        self.first_acknowledged = threading.Event()
        self.threads = [threading.Thread(target=self.write) for _ in range(writers)]

    def take(self) -> int:
        with self.lock:
            start, self.next_id = self.next_id, self.next_id + BATCH
            return start

    def write(self) -> None:
        with httpx.Client(timeout=30) as client:
            for _ in range(10_000):
                start = self.take()
                try:
                    response = client.post(
                        f"{self.url}/graphql",
                        json={"query": UPSERT, "variables": {"points": batch(start)}},
                    )
                except httpx.TransportError:
                    return  # the server is gone: this batch was never acknowledged
                if response.json() != {"data": {"upsert": {"upserted": BATCH}}}:
                    self.failures.append(response.text[:300])
                    return
                with self.lock:
                    self.acknowledged.extend(range(start, start + BATCH))
                self.first_acknowledged.set()

    def __enter__(self) -> Ingest:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        for thread in self.threads:
            thread.join(timeout=60)


def missing(server: ServerProcess, ids: list[int]) -> list[int]:
    gone: list[int] = []
    for at in range(0, len(ids), 1000):
        chunk = [str(i) for i in ids[at : at + 1000]]
        found = {p["id"] for p in server.gql(GET, {"ids": chunk})["data"]["points"]}
        gone += [int(i) for i in chunk if i not in found]
    return gone


def test_kill_9_at_random_points_of_an_ingest_loses_nothing_acknowledged(
    tmp_path: Path, servers: list[ServerProcess]
) -> None:
    """Several rounds on one DATA_DIR: ingest, kill -9 at a random moment (a small
    INDEX_THRESHOLD makes background index builds run, and get killed, too), restart,
    and every point whose upsert returned is there, with its payload."""
    # Seeded, and the seed in every failure message, so the kill moments can be replayed.
    seed = int.from_bytes(os.urandom(4), "big")
    rnd = random.Random(seed)
    acknowledged: list[int] = []
    next_id = 0
    for round_ in range(KILL_ROUNDS):
        server = ServerProcess(
            tmp_path / "data", tmp_path / f"server-{round_}.log", INDEX_THRESHOLD="400"
        )
        servers.append(server)
        started = time.monotonic()
        server.start()
        print(f"round {round_}: open and ready in {time.monotonic() - started:.2f}s")
        assert not missing(server, acknowledged), f"seed {seed}, round {round_}: lost"
        with Ingest(server.url, writers=3, first_id=next_id) as ingest:
            # From the first acknowledgement on (a busy machine may take a while to give
            # it), then at a random moment.
            ingest.first_acknowledged.wait(timeout=60)
            time.sleep(rnd.uniform(0.1, 1.2))
            server.kill9()
        assert not ingest.failures, (seed, ingest.failures[:3])
        assert ingest.acknowledged, f"seed {seed}: nothing was written before the kill"
        acknowledged += ingest.acknowledged
        next_id = ingest.next_id
        print(f"round {round_}: killed after {len(ingest.acknowledged)} acknowledged points")

    last = ServerProcess(tmp_path / "data", tmp_path / "server-last.log")
    servers.append(last)
    last.start()
    assert missing(last, acknowledged) == [], f"seed {seed}"
    assert last.gql("{ count }")["data"]["count"] >= len(acknowledged), f"seed {seed}"
    sample = [str(i) for i in rnd.sample(acknowledged, 20)]
    for point in last.gql(GET, {"ids": sample})["data"]["points"]:
        assert point["payload"] == {"n": int(point["id"]), "t": "x" * 64}, f"seed {seed}"
    for line in last.log_lines():
        assert json.loads(line)["level"] != "ERROR", (seed, line)


def test_sigterm_under_load_drains_and_exits_0(
    tmp_path: Path, servers: list[ServerProcess]
) -> None:
    """SIGTERM under a four-writer load: /readyz answers 503 at once while writes keep
    being served for SHUTDOWN_DELAY_SECONDS; then the listener closes, requests in flight
    complete, the store is flushed and closed, and the process exits 0 within the grace
    period, with every acknowledged point there after a restart."""
    grace, delay = 10, 1.0
    server = ServerProcess(
        tmp_path / "data",
        tmp_path / "server.log",
        SHUTDOWN_GRACE_SECONDS=str(grace),
        SHUTDOWN_DELAY_SECONDS=str(delay),
    )
    servers.append(server)
    server.start()
    # (sent at, status): a probe is judged by when it was sent, not when it was answered.
    readiness: list[tuple[float, str]] = []
    stop = threading.Event()

    def watch_readiness() -> None:
        while not stop.is_set():
            sent = time.monotonic()
            try:
                status = str(httpx.get(f"{server.url}/readyz", timeout=2).status_code)
            except httpx.TransportError as error:
                status = type(error).__name__
            readiness.append((sent, status))
            stop.wait(0.01)

    watcher = threading.Thread(target=watch_readiness)
    watcher.start()
    with Ingest(server.url, writers=4, first_id=0) as ingest:
        while len(ingest.acknowledged) < 500:
            time.sleep(0.01)
        assert server.process is not None
        signalled = time.monotonic()
        acknowledged_at_signal = len(ingest.acknowledged)
        code = server.terminate(timeout=grace + 20)
        exited = time.monotonic()
    stop.set()
    watcher.join(timeout=10)
    # Probes sent within 0.1 s of the signal may have raced it; every later one counts.
    after = [(at - signalled, status) for at, status in readiness if at > signalled + 0.1]
    print(
        f"SIGTERM: exit {code} after {exited - signalled:.2f}s; "
        f"{len(ingest.acknowledged)} points acknowledged ({acknowledged_at_signal} at the "
        f"signal); readiness after it: {sorted({s for _, s in after})}"
    )
    assert code == 0
    assert exited - signalled < delay + grace
    assert not ingest.failures, ingest.failures[:3]
    # Not ready from the first probe after the signal (a probe can end in a transport
    # error once the listener closes, never in a 200)...
    assert [(at, s) for at, s in after if s == "200"] == [], after[:20]
    # ...while still answering (a 503 comes only before the listener closes)...
    assert "503" in {status for _, status in after}, after[:20]
    # ...and serving writes meanwhile.
    assert len(ingest.acknowledged) > acknowledged_at_signal
    messages = [json.loads(line)["message"] for line in server.log_lines()]
    assert any("not ready any more" in m for m in messages)
    assert any("stopped" in m for m in messages)

    again = ServerProcess(tmp_path / "data", tmp_path / "again.log")
    servers.append(again)
    again.start()
    assert missing(again, ingest.acknowledged) == []


class SlowEmbeddings(BaseHTTPRequestHandler):
    """An OpenAI-compatible POST /embeddings (a hosted API cannot be had here) that holds
    a batch with a text containing "slow" until released: a request the stop outlasts."""

    reached = threading.Event()
    release = threading.Event()

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["content-length"])))
        texts = [body["input"]] if isinstance(body["input"], str) else body["input"]
        if any("slow" in text for text in texts):
            SlowEmbeddings.reached.set()
            SlowEmbeddings.release.wait(60)
        data = [{"index": i, "embedding": [1.0, 0.5, 0.25, float(i)]} for i in range(len(texts))]
        encoded = json.dumps({"data": data}).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(encoded)))
        self.end_headers()
        with contextlib.suppress(OSError):  # the server may have gone meanwhile
            self.wfile.write(encoded)

    def log_message(self, format: str, *args: object) -> None:
        pass


def test_a_request_the_grace_period_cuts_short_is_answered_in_json(
    tmp_path: Path, servers: list[ServerProcess]
) -> None:
    """A request still running when SHUTDOWN_GRACE_SECONDS end is cancelled by uvicorn,
    which would answer a plain-text 500 and log the cancellation's traceback: it is
    answered 503 SHUTTING_DOWN, as JSON with its request id, and logged in one line."""
    SlowEmbeddings.reached.clear()
    SlowEmbeddings.release.clear()
    answers: list[httpx.Response] = []
    with stand_in_http(SlowEmbeddings) as embed_url:
        server = ServerProcess(
            tmp_path / "data",
            tmp_path / "server.log",
            EMBEDDER="openai:stand-in",
            EMBED_URL=embed_url,
            EMBED_TIMEOUT_SECONDS="60",
            SHUTDOWN_GRACE_SECONDS="1",
        )
        servers.append(server)
        server.start()

        def remember() -> None:
            answers.append(
                httpx.post(
                    f"{server.url}/graphql",
                    json={"query": 'mutation { remember(memories: [{text: "slow one"}]) { ids } }'},
                    headers={"X-Request-ID": "cut-short-1"},
                    timeout=60,
                )
            )

        writer = threading.Thread(target=remember)
        writer.start()
        try:
            assert SlowEmbeddings.reached.wait(30), "the remember never reached the embedder"
            code = server.terminate(timeout=30)
            writer.join(timeout=30)
        finally:
            SlowEmbeddings.release.set()
    assert code == 0
    [answer] = answers
    assert answer.status_code == 503, answer.text
    assert answer.headers["x-request-id"] == "cut-short-1"
    [error] = answer.json()["errors"]
    assert error["extensions"] == {"code": "SHUTTING_DOWN", "requestId": "cut-short-1"}
    assert "stopped before" in error["message"]
    lines = [json.loads(line) for line in server.log_lines()]
    assert not [line for line in lines if "exc_info" in line or "Traceback" in str(line)]
    assert any(
        line.get("request_id") == "cut-short-1" and line["level"] == "WARNING" for line in lines
    ), lines[-5:]


def test_a_read_only_data_dir_stops_the_start_saying_why(
    tmp_path: Path, servers: list[ServerProcess]
) -> None:
    with tmpfs(tmp_path / "ro", "ro,size=1m") as mount:
        server = ServerProcess(mount / "data", tmp_path / "server.log")
        servers.append(server)
        server.start(wait=False)
        assert server.process is not None
        assert server.process.wait(timeout=60) != 0
    text = " ".join(json.loads(line)["message"] for line in server.log_lines())
    assert "Read-only file system" in text and str(mount / "data") in text
    assert "Application startup failed" in text


def test_a_full_disk_refuses_writes_and_loses_nothing(
    tmp_path: Path, servers: list[ServerProcess]
) -> None:
    """Upserts into a DATA_DIR on a 24 MiB tmpfs with MIN_FREE_DISK_MB=8, until the disk is
    nearly full: from then on writes get STORE_UNAVAILABLE saying why, the server stays up
    and answers reads, every acknowledged point is there, and once there is space again
    (the tmpfs grown) writes are accepted with no restart. Without the reserve the engine
    would die of SIGBUS: it writes through memory-mapped files."""
    with tmpfs(tmp_path / "small", "size=24m") as mount:
        server = ServerProcess(mount / "data", tmp_path / "server.log", MIN_FREE_DISK_MB="8")
        servers.append(server)
        server.start()
        acknowledged: list[int] = []
        errors: list[dict[str, Any]] = []
        for round_ in range(2000):
            answer = server.gql(UPSERT, {"points": batch(round_ * 100, 100)})
            if "errors" in answer:
                errors = answer["errors"]
                break
            acknowledged.extend(range(round_ * 100, round_ * 100 + 100))
        print(f"disk nearly full after {len(acknowledged)} points: {errors}")
        assert acknowledged and errors, "the disk never filled up"
        assert [e["extensions"]["code"] for e in errors] == ["STORE_UNAVAILABLE"]
        assert "out of disk space" in errors[0]["message"]
        assert server.process is not None and server.process.poll() is None
        assert missing(server, acknowledged) == []
        assert httpx.get(f"{server.url}/healthz", timeout=5).status_code == 200

        subprocess.run(["mount", "-o", "remount,size=256m", str(mount)], check=True)
        again = server.gql(UPSERT, {"points": batch(10_000_000, 100)})
        assert "errors" not in again, again
        messages = [json.loads(line)["message"] for line in server.log_lines()]
        assert any("writes are refused until there is space" in m for m in messages)
        assert any("Disk space is back" in m for m in messages)
        server.stop()  # before the tmpfs is unmounted
