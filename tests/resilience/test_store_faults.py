"""The remote adapter under store faults: every fault ends in STORE_UNAVAILABLE or
STORE_TIMEOUT within the configured timeout, transient ones are retried with backoff
(honouring Retry-After) inside that deadline, a slow store sheds the excess with
STORE_OVERLOADED, and a server started while Qdrant is down becomes ready on its own.

The misbehaving Qdrant is tests/store/fake_qdrant.py: a real HTTP server on 127.0.0.1
scripted to hang, drop connections, answer 429/503 or garbage, which a real Qdrant
cannot be made to do on demand.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client import REGISTRY
from qdrant_client import AsyncQdrantClient
from qdrant_client.http.exceptions import ResponseHandlingException
from starlette.testclient import TestClient

from graph.app import create_app
from graph.errors import StoreOverloaded, StoreTimeout, StoreUnavailable
from graph.store.remote import RemoteStore
from tests.conftest import Runner, make_settings
from tests.helpers import QUERY, UPSERT, SilentServer, gql, point
from tests.store.conftest import TENANT
from tests.store.fake_qdrant import (
    COLLECTIONS_OK,
    DROP,
    HANG,
    FakeQdrant,
    Slow,
    fake_server,
    http_reply,
)

OK = http_reply("200 OK", COLLECTIONS_OK)
UNAVAILABLE = http_reply("503 Service Unavailable", b'{"status": {"error": "overloaded"}}')
SERVER_ERROR = http_reply("500 Internal Server Error", b'{"status": {"error": "boom"}}')
GARBAGE = http_reply("200 OK", b"<html>a proxy's error page</html>")


def too_many(seconds: int) -> bytes:
    return http_reply(
        "429 Too Many Requests", b'{"status": {"error": "rate limited"}}', retry_after=str(seconds)
    )


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, {"backend": "qdrant", **labels}) or 0.0


class Deltas:
    """How much some series grew during the block."""

    def __init__(self, **series: tuple[str, dict[str, str]]) -> None:
        self.series = series
        self.before = {key: sample(name, **labels) for key, (name, labels) in series.items()}

    def __getitem__(self, key: str) -> float:
        name, labels = self.series[key]
        return sample(name, **labels) - self.before[key]


def faults(kind: str) -> tuple[str, dict[str, str]]:
    return ("store_faults_total", {"kind": kind})


RETRIES = ("store_retries_total", {"operation": "ping"})


async def ping_with(fake: FakeQdrant, **options: Any) -> float:
    """Ping through a fresh store; returns the seconds it took. Raises what ping raises."""
    store = RemoteStore.connect(fake.url, **{"timeout_seconds": 3.0, **options})
    await store.open()
    started = time.monotonic()
    try:
        await store.ping()
        return time.monotonic() - started
    finally:
        await store.close()


def test_transient_503s_are_retried_until_qdrant_answers(run: Runner) -> None:
    async def check() -> None:
        counted = Deltas(faults=faults("server_error"), retries=RETRIES)
        async with fake_server(UNAVAILABLE, UNAVAILABLE, OK) as fake:
            await ping_with(fake)
            assert len(fake.requests) == 3
        assert counted["faults"] == 2
        assert counted["retries"] == 2

    run(check())


def test_retry_after_is_honoured(run: Runner) -> None:
    async def check() -> None:
        counted = Deltas(faults=faults("rate_limited"))
        async with fake_server(too_many(1), OK) as fake:
            await ping_with(fake)
            (first, _), (second, _) = fake.requests
            assert second - first >= 0.95  # what the server asked for, not our short backoff
        assert counted["faults"] == 1

    run(check())


def test_retry_after_past_the_deadline_fails_at_once(run: Runner) -> None:
    async def check() -> None:
        async with fake_server(too_many(30), OK) as fake:
            started = time.monotonic()
            with pytest.raises(StoreUnavailable):
                await ping_with(fake, timeout_seconds=5.0)
            # No point waiting 5 s for an answer too late: it fails at once (the bound is
            # a busy machine's safety net, below the 5 s a wait for the deadline takes).
            assert time.monotonic() - started < 4.0
            assert len(fake.requests) == 1

    run(check())


def test_a_connection_dropped_mid_request_is_retried(run: Runner) -> None:
    async def check() -> None:
        counted = Deltas(faults=faults("connection"))
        async with fake_server(DROP, OK) as fake:
            await ping_with(fake)
            assert len(fake.requests) == 2
        assert counted["faults"] == 1

    run(check())


def test_a_qdrant_that_keeps_failing_gives_up_after_the_retries(run: Runner) -> None:
    async def check() -> None:
        for reply in (DROP, UNAVAILABLE):
            async with fake_server(reply) as fake:
                started = time.monotonic()
                with pytest.raises(StoreUnavailable):
                    await ping_with(fake, max_retries=3)
                assert time.monotonic() - started < 3.0
                assert len(fake.requests) == 4, reply  # the first attempt and 3 retries

    run(check())


def test_retries_stop_at_the_deadline(run: Runner) -> None:
    async def check() -> None:
        async with fake_server(too_many(2)) as fake:
            started = time.monotonic()
            with pytest.raises(StoreUnavailable):
                await ping_with(fake, timeout_seconds=5.5, max_retries=10)
            elapsed = time.monotonic() - started
            # Retry-After 2: the second answer comes at 2 s (a retry fits if it comes
            # before 3.5 s: wide margin), the third at 4 s and more, when a further wait
            # would end past 5.5 s, never inside it: three requests, then it gives up at
            # once, not at the deadline (5.5 s) nor after the wait (6 s and more).
            assert len(fake.requests) == 3, fake.requests
            assert 3.9 < elapsed < 5.3, elapsed

    run(check())


@pytest.mark.parametrize(
    ("reply", "kind"),
    [(GARBAGE, "bad_response"), (SERVER_ERROR, "server_error")],
    ids=["garbage", "500"],
)
def test_answers_that_another_attempt_would_not_change_are_not_retried(
    run: Runner, reply: bytes, kind: str
) -> None:
    async def check() -> None:
        counted = Deltas(faults=faults(kind), retries=RETRIES)
        async with fake_server(reply) as fake:
            with pytest.raises(StoreUnavailable):
                await ping_with(fake)
            assert len(fake.requests) == 1
        assert counted["faults"] == 1
        assert counted["retries"] == 0

    run(check())


def test_a_hung_qdrant_is_store_timeout_within_the_timeout(run: Runner) -> None:
    async def check() -> None:
        counted = Deltas(faults=faults("timeout"))
        async with fake_server(HANG) as fake:
            started = time.monotonic()
            with pytest.raises(StoreTimeout):
                await ping_with(fake, timeout_seconds=0.5)
            assert 0.45 <= time.monotonic() - started < 2.5  # a busy machine's safety net
        assert counted["faults"] == 1

    run(check())


def test_all_calls_of_one_operation_share_one_deadline(run: Runner) -> None:
    """physical_collections lists the collections, then asks about each: a slow first
    answer leaves the second call only what remains of the timeout, not a timeout of its own."""
    listing = http_reply(
        "200 OK", b'{"result": {"collections": [{"name": "graph-d4-cosine"}]}, "status": "ok"}'
    )

    async def check() -> None:
        async with fake_server(Slow(1.5, listing), HANG) as fake:
            store = RemoteStore.connect(fake.url, timeout_seconds=2.5)
            await store.open()
            try:
                started = time.monotonic()
                with pytest.raises(StoreTimeout):
                    await store.physical_collections()
                elapsed = time.monotonic() - started
            finally:
                await store.close()
            assert len(fake.requests) == 2
            # Shared: 2.5 s in all; a timeout per call would take 1.5 + 2.5 = 4 s and more.
            assert 2.45 <= elapsed < 3.7, elapsed

    run(check())


def test_a_slow_qdrant_sheds_what_exceeds_the_queue(run: Runner) -> None:
    """2 calls in flight, 2 waiting, the rest refused at once; the waiting ones time out."""

    async def timed(store: RemoteStore) -> tuple[str, float]:
        started = time.monotonic()
        try:
            await store.count(TENANT, "memories")
        except (StoreOverloaded, StoreTimeout) as exc:
            return exc.code.value, time.monotonic() - started
        raise AssertionError("a hung store answered")

    async def check() -> None:
        counted = Deltas(shed=("store_shed_total", {}))
        async with fake_server(HANG) as fake:
            store = RemoteStore.connect(
                fake.url, timeout_seconds=2.0, max_concurrency=2, max_queue=2
            )
            await store.open()
            try:
                outcomes = await asyncio.gather(*(timed(store) for _ in range(7)))
            finally:
                await store.close()
        shed = [seconds for code, seconds in outcomes if code == "STORE_OVERLOADED"]
        timed_out = [seconds for code, seconds in outcomes if code == "STORE_TIMEOUT"]
        assert len(shed) == 3 and len(timed_out) == 4, outcomes
        # Refused before costing anything: not after waiting for the 2 s deadline.
        assert max(shed) < 1.0, outcomes
        # Waiting for a slot counts against the deadline: 2 s, not 2 s more once a slot
        # frees (4 s); the bound is a busy machine's safety net.
        assert max(timed_out) < 3.5, outcomes
        assert counted["shed"] == 3

    run(check())


def test_shed_requests_reach_the_client_as_store_overloaded(tmp_path: Path) -> None:
    with SilentServer() as silent:
        settings = make_settings(
            tmp_path,
            store_timeout_seconds=1.5,
            store_max_concurrency=1,
            store_max_queue=0,
            qdrant_url=f"http://127.0.0.1:{silent.port}",
        )
        with TestClient(create_app(settings)) as client, ThreadPoolExecutor(4) as pool:
            # The readiness checks hold the one slot now and then; so does each query.
            responses = list(
                pool.map(lambda _: gql(client, QUERY, {"vector": [1.0, 0, 0, 0]}), range(4))
            )
            codes = sorted(code for r in responses for code in r.codes)
            assert "STORE_OVERLOADED" in codes, codes
            assert set(codes) <= {"STORE_OVERLOADED", "STORE_TIMEOUT"}
            overloaded = next(r for r in responses if r.codes == ["STORE_OVERLOADED"])
            error = overloaded.assert_error("STORE_OVERLOADED")
            assert error["message"] == "The vector store is overloaded; retry later"
            metrics = client.get("/metrics").text
            assert 'store_shed_total{backend="qdrant"}' in metrics


class Unplugged:
    """qdrant-client's local mode (a real engine) behind a switch: until plugged in, every
    call fails the way the client fails when nothing listens at QDRANT_URL. A fault
    injected in front of a real engine, since there is no Qdrant server here to stop."""

    def __init__(self) -> None:
        self.client = AsyncQdrantClient(location=":memory:")
        self.plugged = False

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self.client, name)
        if self.plugged or name == "close" or not callable(attribute):
            return attribute

        async def refused(*args: Any, **kwargs: Any) -> Any:
            raise ResponseHandlingException(httpx.ConnectError("[Errno 111] Connection refused"))

        return refused


@pytest.fixture
def unplugged() -> Iterator[Unplugged]:
    yield Unplugged()


def test_qdrant_down_at_start_up_then_the_server_becomes_ready_on_its_own(
    tmp_path: Path, unplugged: Unplugged
) -> None:
    store = RemoteStore(lambda: unplugged, timeout_seconds=2.0)  # type: ignore[arg-type, return-value]
    with TestClient(create_app(make_settings(tmp_path), store=store)) as client:
        assert client.get("/healthz").status_code == 200
        assert client.get("/readyz").status_code == 503
        assert gql(client, "{ health { status } }").data["health"] == {"status": "UNAVAILABLE"}
        gql(client, QUERY, {"vector": [1.0, 0, 0, 0]}).assert_error("STORE_UNAVAILABLE")

        unplugged.plugged = True
        deadline = time.monotonic() + 10
        while client.get("/readyz").status_code != 200:
            assert time.monotonic() < deadline, "never became ready"
            time.sleep(0.2)
        assert gql(client, "{ health { status } }").data["health"] == {"status": "OK"}
        # The default collection was created on recovery, with no restart.
        assert gql(client, "{ collections { name dimension } }").data["collections"] == [
            {"name": "memories", "dimension": 4}
        ]
        upserted = gql(client, UPSERT, {"points": [point(1, [1.0, 0, 0, 0], k="v")]})
        assert upserted.data == {"upsert": {"upserted": 1}}
        hits = gql(client, QUERY, {"vector": [1.0, 0, 0, 0]}).data["query"]
        assert [(h["id"], h["payload"]) for h in hits] == [("1", {"k": "v"})]
