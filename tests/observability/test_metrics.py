"""/metrics in-process: store calls timed and counted through the instrumented store, the
switches a benchmark uses, and a README table row for every metric the server exports."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client import REGISTRY
from starlette.testclient import TestClient

from graph.app import create_app
from graph.store.base import VectorStore
from graph.store.edge import EdgeStore
from graph.store.instrumented import (
    INTERFACE,
    InstrumentedStore,
    StoreStats,
    instrument,
    uninstrumented,
)
from graph.telemetry.metrics import RESOLVER_TIMING
from tests.conftest import make_settings
from tests.helpers import UPSERT, gql, point
from tests.observability.support import ROOT

BACKEND = "embedded"


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


@pytest.fixture
def switch_back() -> Iterator[None]:
    yield
    RESOLVER_TIMING.on = True


def test_every_interface_method_is_instrumented() -> None:
    assert set(INTERFACE) == set(VectorStore.__abstractmethods__)
    assert not InstrumentedStore.__abstractmethods__
    for name in INTERFACE:
        assert getattr(InstrumentedStore, name) is not getattr(VectorStore, name)


def test_the_adapters_own_methods_pass_through(tmp_path: Path) -> None:
    inner = EdgeStore(tmp_path)
    store = instrument(inner)
    assert instrument(store) is store
    assert uninstrumented(store) is inner
    assert store.backend == BACKEND
    assert store.index_status == inner.index_status  # type: ignore[attr-defined]


def test_store_calls_are_timed_and_failures_counted_by_code(client: TestClient) -> None:
    before = {
        "upserts": sample("store_call_duration_seconds_count", backend=BACKEND, operation="upsert"),
        "upserted": sample("store_points_upserted_total", backend=BACKEND),
        "deleted": sample("store_points_deleted_total", backend=BACKEND),
        "not_found": sample(
            "store_errors_total", backend=BACKEND, operation="count", code="NOT_FOUND"
        ),
    }
    points = [point(i, [1.0, 0.0, 0.0, float(i)]) for i in range(1, 4)]
    assert gql(client, UPSERT, {"points": points}).data["upsert"]["upserted"] == 3
    assert gql(client, 'mutation { delete(ids: ["1", "9"]) { deleted } }').data
    gql(client, 'query { count(collection: "nowhere") }').assert_error("NOT_FOUND")

    upserts = sample("store_call_duration_seconds_count", backend=BACKEND, operation="upsert")
    assert upserts == before["upserts"] + 1
    assert sample("store_points_upserted_total", backend=BACKEND) == before["upserted"] + 3
    assert sample("store_points_deleted_total", backend=BACKEND) == before["deleted"] + 1
    not_found = sample("store_errors_total", backend=BACKEND, operation="count", code="NOT_FOUND")
    assert not_found == before["not_found"] + 1
    # The failures alerts watch have their series before the first one happens.
    for code in ("STORE_UNAVAILABLE", "STORE_TIMEOUT"):
        labels = {"backend": BACKEND, "operation": "query", "code": code}
        assert REGISTRY.get_sample_value("store_errors_total", labels) is not None


def family_samples(name: str) -> list[tuple[dict[str, str], float]]:
    return [
        (dict(s.labels), s.value)
        for family in REGISTRY.collect()
        for s in family.samples
        if s.name == name
    ]


def per_collection(name: str, **labels: str) -> dict[str, float]:
    return {
        found["collection"]: value
        for found, value in family_samples(name)
        if labels.items() <= found.items()
    }


def test_points_and_background_indexing_are_sampled(tmp_path: Path) -> None:
    # The counters are process-wide: only what grows during this test is this store's.
    builds_before = per_collection("store_index_builds_total", outcome="success")
    durations_before = per_collection("store_index_build_duration_seconds_count")
    settings = make_settings(tmp_path, index_threshold=3)
    inner = EdgeStore.from_settings(settings)
    with TestClient(create_app(settings, store=inner)) as client:
        points = [point(i, [1.0, 0.0, 0.0, float(i)]) for i in range(1, 6)]
        assert gql(client, UPSERT, {"points": points}).data
        assert client.portal is not None  # open while the client's context is
        client.portal.call(inner.wait_for_indexing)
        client.portal.call(StoreStats(instrument(inner)).refresh)
    held = [v for labels, v in family_samples("store_collection_points") if v >= 5]
    assert held, family_samples("store_collection_points")
    built = {
        collection
        for collection, v in per_collection("store_index_builds_total", outcome="success").items()
        if v > builds_before.get(collection, 0.0)
    }
    assert built
    for labels, value in family_samples("store_unindexed_points"):
        if labels["collection"] in built:
            assert value == 0
    segments = {labels["collection"]: v for labels, v in family_samples("store_index_segments")}
    assert all(segments[label] >= 1 for label in built), segments
    durations = per_collection("store_index_build_duration_seconds_count")
    assert any(durations[c] > durations_before.get(c, 0.0) for c in built), durations


def test_switches_turn_the_instrumentation_off(tmp_path: Path, switch_back: None) -> None:
    settings = make_settings(
        tmp_path, metrics_resolver_timing=False, metrics_http=False, metrics_store=False
    )
    resolver = {"type": "Query", "field": "count"}
    before_resolver = sample("graphql_resolver_duration_seconds_count", **resolver)
    before_http = sum(v for _, v in family_samples("http_requests_total"))
    before_store = sample("store_call_duration_seconds_count", backend=BACKEND, operation="count")
    with TestClient(create_app(settings)) as client:
        assert gql(client, "query { count }").data == {"count": 0}
    assert sample("graphql_resolver_duration_seconds_count", **resolver) == before_resolver
    after_http = sum(v for _, v in family_samples("http_requests_total"))
    assert after_http == before_http
    after_store = sample("store_call_duration_seconds_count", backend=BACKEND, operation="count")
    assert after_store == before_store


def test_resolver_timing_is_on_by_default(client: TestClient) -> None:
    resolver = {"type": "Query", "field": "count"}
    before = sample("graphql_resolver_duration_seconds_count", **resolver)
    assert "count" in gql(client, "query { count }").data
    assert sample("graphql_resolver_duration_seconds_count", **resolver) == before + 1


def documented_metrics(path: str = "README.md", heading: str = "### Metrics") -> set[str]:
    text = (ROOT / path).read_text()
    section = text.split(heading, 1)[1].split("\n#", 1)[0]
    return set(re.findall(r"^\| `([a-z_:]+)` \|", section, flags=re.MULTILINE))


def test_the_operating_guide_lists_the_metrics_the_readme_lists() -> None:
    """docs/operating.md says what each metric means; the README's table is the checked one."""
    assert documented_metrics("docs/operating.md", "## Metrics") == documented_metrics()


def test_every_exported_metric_has_a_readme_row(client: TestClient) -> None:
    client.post("/graphql", json={"query": "{ count }"})
    text = client.get("/metrics").text
    exported = set(re.findall(r"^# TYPE (\S+) ", text, flags=re.MULTILINE))
    ours = {
        name
        for name in exported
        if not name.startswith(("python_", "process_")) and not name.endswith("_created")
    }
    documented = documented_metrics()
    assert ours - documented == set(), "exported but not in the README's metrics table"
    assert {n for n in documented if not n.startswith("process_")} - ours == set(), (
        "in the README's metrics table but not exported"
    )


def test_store_up_is_0_while_the_readiness_check_fails(tmp_path: Path) -> None:
    """The store answers but the default collection cannot be made (a full disk, as the
    embedded store's guard sees it): /readyz is 503, and StoreDown must see it."""
    settings = make_settings(tmp_path, min_free_disk_mb=10**9)
    with TestClient(create_app(settings)) as client:
        assert client.get("/readyz").status_code == 503
        assert sample("store_up") == 0
    with TestClient(create_app(make_settings(tmp_path / "roomy"))) as client:
        assert client.get("/readyz").status_code == 200
        assert sample("store_up") == 1


def test_a_store_shedding_calls_is_busy_not_down(tmp_path: Path) -> None:
    """A readiness ping shed with STORE_OVERLOADED (every call slot to a Qdrant server
    taken) leaves the store up: a 503 would take healthy replicas out under load."""
    from graph.errors import StoreOverloaded

    class Shedding(EdgeStore):
        shedding = False

        async def ping(self) -> None:
            if self.shedding:
                raise StoreOverloaded()
            await super().ping()

    store = Shedding(tmp_path / "data")
    with TestClient(create_app(make_settings(tmp_path), store=store)) as client:
        assert client.get("/readyz").status_code == 200
        store.shedding = True
        assert client.get("/readyz").status_code == 200
        assert sample("store_up") == 1


def test_a_scrape_is_written_out_off_the_event_loop(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Thousands of series take tens of milliseconds to write out: on the event loop every
    scrape would hold every request for as long."""
    import asyncio

    import graph.app

    on_loop: list[bool] = []

    def generate() -> bytes:
        try:
            asyncio.get_running_loop()
            on_loop.append(True)
        except RuntimeError:
            on_loop.append(False)
        return REGISTRY_TEXT

    monkeypatch.setattr(graph.app, "generate_latest", generate)
    response = client.get("/metrics")
    assert response.status_code == 200 and response.content == REGISTRY_TEXT
    assert on_loop == [False]


REGISTRY_TEXT = b"# a scrape\n"


def test_concurrent_scrapes_share_one_write_out(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """/metrics needs no credential: scrapes sent at once must not each take a thread of
    the default pool (which keyword conversion and every asyncio.to_thread share) for the
    tens of milliseconds a write-out takes; those that arrive while one runs get its text."""
    import threading
    import time
    from concurrent.futures import ThreadPoolExecutor

    import graph.app

    running = 0
    most = 0
    calls = 0
    lock = threading.Lock()

    def generate() -> bytes:
        nonlocal running, most, calls
        with lock:
            running += 1
            calls += 1
            most = max(most, running)
        time.sleep(0.05)
        with lock:
            running -= 1
        return REGISTRY_TEXT

    monkeypatch.setattr(graph.app, "generate_latest", generate)
    with ThreadPoolExecutor(12) as pool:
        responses = list(pool.map(lambda _: client.get("/metrics"), range(48)))
    assert all(r.status_code == 200 and r.content == REGISTRY_TEXT for r in responses)
    assert most == 1
    assert calls < 48
