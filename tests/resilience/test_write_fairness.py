"""One tenant's largest legal writes against another tenant's small ones.

Tenants whose collections have the same vector shape share one physical collection and
its write path. Payloads are bounded at write (32 KiB of JSON, 1,024 values), batches
at MAX_UPSERT_POINTS and bodies at MAX_BODY_BYTES, which bounds one write's work; this
shows that the bound is enough: while tenant A sends the largest writes back to back,
tenant B's one-point upserts still complete within a second. A real server process,
because only there do requests compete for the event loop and the engine's lock.
"""

from __future__ import annotations

import random
import threading
import time
from pathlib import Path

import httpx
import jwt
import orjson
import pytest

from tests.process import ServerProcess

SECRET = "a-test-secret-of-at-least-32-bytes-long!"
DIM = 384
MAX_BODY = 4 * 1024 * 1024
UPSERT = "mutation Up($points: [PointInput!]!) { upsert(points: $points) { upserted } }"
PROBES = 40
PROBE_INTERVAL = 0.05
FLOOD_SECONDS = 30.0  # at most; the flood stops once B's probes are done


def token(tenant: str) -> str:
    claims = {"tenant": tenant, "scope": "read write", "exp": int(time.time()) + 600}
    return jwt.encode(claims, SECRET, algorithm="HS256")


def body(points: list[dict[str, object]]) -> bytes:
    return orjson.dumps({"query": UPSERT, "variables": {"points": points}})


def vector(rnd: random.Random) -> list[float]:
    return [round(rnd.uniform(-1, 1), 3) for _ in range(DIM)]


def largest_batch(rnd: random.Random) -> bytes:
    """1,000 points whose payload strings fill the body to just under 4 MiB."""
    points: list[dict[str, object]] = [
        {"id": i, "vector": vector(rnd), "payload": {"text": ""}} for i in range(1_000)
    ]
    room = (MAX_BODY - 8 * 1024 - len(body(points))) // len(points)
    for i, point in enumerate(points):
        point["payload"] = {"text": f"{i:06d}" + "x" * (room - 6), "n": i}
    return body(points)


def widest_payloads(rnd: random.Random) -> bytes:
    """As many points as fit in 4 MiB, each with a payload of 1,024 values."""
    payload = {f"k{j:04d}": j for j in range(1_024)}
    points: list[dict[str, object]] = []
    while True:
        point = {"id": 10_000 + len(points), "vector": vector(rnd), "payload": payload}
        if len(body([*points, point])) > MAX_BODY - 8 * 1024:
            return body(points)
        points.append(point)


def post(client: httpx.Client, tenant_token: str, content: bytes) -> float:
    headers = {"authorization": f"Bearer {tenant_token}", "content-type": "application/json"}
    started = time.perf_counter()
    response = client.post("/graphql", content=content, headers=headers)
    elapsed = time.perf_counter() - started
    assert response.status_code == 200, response.text[:500]
    answer = response.json()
    assert "errors" not in answer, str(answer)[:500]
    return elapsed


@pytest.mark.slow
def test_the_largest_writes_of_one_tenant_do_not_stall_another(tmp_path: Path) -> None:
    rnd = random.Random(5)
    heavy = [largest_batch(rnd), widest_payloads(rnd)]
    assert all(3.5 * 1024 * 1024 < len(b) <= MAX_BODY for b in heavy), [len(b) for b in heavy]
    server = ServerProcess(
        tmp_path / "data",
        tmp_path / "server.log",
        VECTOR_SIZE=str(DIM),
        AUTH_JWT_SECRET=SECRET,
        LOG_LEVEL="WARNING",
    )
    a, b = token("tenant-a"), token("tenant-b")
    probe = [body([{"id": 1, "vector": vector(rnd), "payload": {"n": 1}}])]
    try:
        server.start()
        with httpx.Client(base_url=server.url, timeout=60) as client:
            post(client, b, probe[0])  # both default collections exist, caches are warm
            heavy_seconds = [post(client, a, content) for content in heavy]

        stop = threading.Event()
        flood: list[float] = []
        failures: list[BaseException] = []

        def flood_writes() -> None:
            with httpx.Client(base_url=server.url, timeout=60) as client:
                deadline = time.monotonic() + FLOOD_SECONDS
                while not stop.is_set() and time.monotonic() < deadline:
                    try:
                        flood.append(post(client, a, heavy[len(flood) % 2]))
                    except BaseException as error:  # reported by the main thread
                        failures.append(error)
                        return

        writer = threading.Thread(target=flood_writes)
        writer.start()
        seen: list[float] = []
        try:
            time.sleep(0.5)  # A's first batch is under way
            with httpx.Client(base_url=server.url, timeout=60) as client:
                for _ in range(PROBES):
                    seen.append(post(client, b, probe[0]))
                    time.sleep(PROBE_INTERVAL)
        finally:
            stop.set()
            writer.join(timeout=90)
        assert not failures, failures
        seen.sort()
        p95 = seen[int(len(seen) * 0.95) - 1]
        print(
            f"A's writes: {len(flood)} during B's probes, {min(flood):.2f}-{max(flood):.2f} s "
            f"each (alone: {', '.join(f'{s:.2f}' for s in heavy_seconds)} s); "
            f"B's one-point upserts: median {seen[len(seen) // 2] * 1000:.0f} ms, "
            f"p95 {p95 * 1000:.0f} ms, max {seen[-1] * 1000:.0f} ms"
        )
        assert len(flood) >= 2, "A's writes did not overlap B's probes"
        assert p95 < 1.0
        assert seen[-1] < 2.0
    finally:
        server.stop()
