"""What only the remote adapter does: start without a server, and fail fast and cleanly
when the server is gone, hangs or breaks. The contract itself is in test_contract.py."""

from __future__ import annotations

import logging
import math
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from qdrant_client import AsyncQdrantClient, models

from graph.errors import BadUserInput, NotFound, StoreTimeout, StoreUnavailable
from graph.settings import Distance, Settings
from graph.store import create_store
from graph.store.common import HNSW_EF
from graph.store.models import Filter, Point, RecallMode, Recency
from graph.store.remote import RemoteStore
from tests.helpers import free_port
from tests.store.conftest import TENANT
from tests.store.fake_qdrant import COLLECTIONS_OK, HANG, fake_server, http_reply
from tests.store.test_memory_contract import ask, ids, memory

if TYPE_CHECKING:
    from tests.store.conftest import Runner

SECRET = "s3cr3t-internal-detail"


def every_call(store: RemoteStore) -> dict[str, Callable[[], Awaitable[object]]]:
    return {
        "ping": store.ping,
        "ensure_collection": lambda: store.ensure_collection(TENANT, "c", 4, Distance.COSINE),
        "create_collection": lambda: store.create_collection(TENANT, "c", 4, Distance.COSINE),
        "delete_collection": lambda: store.delete_collection(TENANT, "c"),
        "get_collection": lambda: store.get_collection(TENANT, "c"),
        "list_collections": (lambda: store.list_collections(TENANT)),
        "upsert": lambda: store.upsert(TENANT, "c", [Point(1, [1.0, 0.0, 0.0, 0.0])]),
        "query": lambda: store.query(TENANT, "c", [1.0, 0.0, 0.0, 0.0], limit=1),
        "retrieve": lambda: store.retrieve(TENANT, "c", [1]),
        "delete_ids": lambda: store.delete_ids(TENANT, "c", [1]),
        "delete_by_filter": lambda: store.delete_by_filter(TENANT, "c", Filter()),
        "count": lambda: store.count(TENANT, "c"),
        "scroll": lambda: store.scroll(TENANT, "c", limit=1),
    }


@asynccontextmanager
async def opened(store: RemoteStore) -> AsyncIterator[RemoteStore]:
    await store.open()
    try:
        yield store
    finally:
        await store.close()


def test_from_settings_uses_url_api_key_and_timeout(run: Runner) -> None:
    settings = Settings(
        qdrant_url=f"http://127.0.0.1:{free_port()}",
        qdrant_api_key="k",  # over http: the client's warning must not escape as one
        store_timeout_seconds=0.75,
    )
    store = create_store(settings)
    assert isinstance(store, RemoteStore)
    assert store.backend == "qdrant"

    async def check() -> None:
        async with opened(store):
            with pytest.raises(StoreUnavailable):
                await store.ping()

    run(check())


def test_a_local_path_keeps_the_bound_on_vector_shapes(run: Runner, tmp_path: Path) -> None:
    """QDRANT_URL=path:<dir> refuses a new shape past MAX_VECTOR_SHAPES, as the embedded
    store and a Qdrant server do."""
    store = RemoteStore.from_settings(
        Settings(qdrant_url=f"path:{tmp_path / 'q'}", max_vector_shapes=1)
    )

    async def check() -> None:
        async with opened(store):
            await store.create_collection(TENANT, "a", 2, Distance.DOT)
            with pytest.raises(BadUserInput, match="At most 1 vector shapes"):
                await store.create_collection(TENANT, "b", 3, Distance.DOT)

    run(check())


def test_nothing_listening_opens_and_every_call_is_unavailable_quickly(run: Runner) -> None:
    store = RemoteStore.connect(f"http://127.0.0.1:{free_port()}", timeout_seconds=5.0)

    async def check() -> None:
        async with opened(store):  # open() must not raise with the server down
            for name, call in every_call(store).items():
                started = time.monotonic()
                with pytest.raises(StoreUnavailable) as caught:
                    await call()
                # Refused connections fail at once, not after the 10 s timeout.
                assert time.monotonic() - started < 3.0, name
                assert caught.value.message == "The vector store is unavailable"

    run(check())


def test_server_that_never_answers_gives_store_timeout_within_the_timeout(
    run: Runner,
) -> None:
    async def check() -> None:
        async with fake_server(HANG) as fake:
            store = RemoteStore.connect(fake.url, timeout_seconds=0.5)
            async with opened(store):
                for name in ("ping", "upsert", "query", "count", "list_collections"):
                    started = time.monotonic()
                    with pytest.raises(StoreTimeout) as caught:
                        await every_call(store)[name]()
                    elapsed = time.monotonic() - started
                    # A safety net over the 0.5 s timeout, for a busy machine.
                    assert 0.45 <= elapsed < 2.5, (name, elapsed)
                    assert caught.value.message == "The vector store did not answer in time"

    run(check())


def test_server_errors_are_unavailable_without_leaking_their_text(
    run: Runner, caplog: pytest.LogCaptureFixture
) -> None:
    body = b'{"status": {"error": "Service internal error: ' + SECRET.encode() + b'"}}'

    async def check() -> None:
        async with fake_server(http_reply("500 Internal Server Error", body)) as fake:
            store = RemoteStore.connect(fake.url, timeout_seconds=2.0)
            async with opened(store):
                for name, call in every_call(store).items():
                    with pytest.raises(StoreUnavailable) as caught:
                        await call()
                    assert SECRET not in str(caught.value), name
                    assert caught.value.__cause__ is None

    with caplog.at_level(logging.WARNING, logger="graph.store.remote"):
        run(check())
    assert SECRET in caplog.text  # the operator still sees what the server said


def test_unreadable_answer_is_unavailable(run: Runner) -> None:
    async def check() -> None:
        async with fake_server(http_reply("200 OK", b"<html>proxy page</html>")) as fake:
            store = RemoteStore.connect(fake.url, timeout_seconds=2.0)
            async with opened(store):
                with pytest.raises(StoreUnavailable):
                    await store.ping()
                with pytest.raises(StoreUnavailable):
                    await store.count(TENANT, "c")

    run(check())


def test_server_404_for_a_collection_is_not_found(run: Runner) -> None:
    body = b'{"status": {"error": "Not found: Collection `c` doesn\'t exist!"}, "time": 0.0}'

    async def check() -> None:
        async with fake_server(http_reply("404 Not Found", body)) as fake:
            store = RemoteStore.connect(fake.url, timeout_seconds=2.0)
            async with opened(store):
                with pytest.raises(NotFound) as caught:
                    await store.count(TENANT, "c")
                assert caught.value.message == "Collection 'c' not found"

    run(check())


def test_same_store_works_again_when_the_server_comes_back(run: Runner) -> None:
    port = free_port()
    store = RemoteStore.connect(f"http://127.0.0.1:{port}", timeout_seconds=2.0)
    collections = http_reply("200 OK", COLLECTIONS_OK)

    async def check() -> None:
        async with opened(store):
            with pytest.raises(StoreUnavailable):
                await store.ping()
            async with fake_server(collections, port=port):
                await store.ping()
                assert await store.physical_collections() == []
            with pytest.raises(StoreUnavailable):
                await store.ping()

    run(check())


def test_local_mode_on_a_path_persists_across_reopen(run: Runner, tmp_path: Path) -> None:
    path = str(tmp_path / "qdrant")

    async def check() -> None:
        async with opened(RemoteStore.local(path)) as store:
            await store.ensure_collection(TENANT, "c", 4, Distance.COSINE)
            assert (
                await store.upsert(TENANT, "c", [Point(1, [1.0, 0.0, 0.0, 0.0], {"k": "v"})]) == 1
            )
        async with opened(RemoteStore.local(path)) as store:
            await store.ensure_collection(TENANT, "c", 4, Distance.COSINE)
            [record] = await store.retrieve(TENANT, "c", [1])
            assert record.payload == {"k": "v"}

    run(check())


def test_non_finite_vectors_and_payloads_are_bad_user_input(run: Runner) -> None:
    async def check() -> None:
        async with opened(RemoteStore.local()) as store:
            await store.create_collection(TENANT, "c", 2, Distance.DOT)
            for bad in (
                [Point(1, [1.0, 0.0]), Point(2, [math.nan, 0.0])],
                [Point(1, [1.0, 0.0]), Point(2, [1.0, 0.0], {"x": math.inf})],
            ):
                with pytest.raises(BadUserInput):
                    await store.upsert(TENANT, "c", bad)
            with pytest.raises(BadUserInput):
                await store.query(TENANT, "c", [math.inf, 0.0], limit=1)
            assert await store.count(TENANT, "c") == 0

    run(check())


def test_collections_not_made_by_this_server_are_left_out_of_the_list(run: Runner) -> None:
    client = AsyncQdrantClient(location=":memory:")
    store = RemoteStore(lambda: client)

    async def check() -> None:
        async with opened(store):
            await client.create_collection(
                "named",
                vectors_config={"text": models.VectorParams(size=2, distance=models.Distance.DOT)},
            )
            await client.create_collection(
                "manhattan",
                vectors_config=models.VectorParams(size=2, distance=models.Distance.MANHATTAN),
            )
            await store.create_collection(TENANT, "ours", 2, Distance.EUCLID)
            assert [c.name for c in await store.list_collections(TENANT)] == ["ours"]
            assert [c.name for c in await store.physical_collections()] == ["graph-d2-euclid"]
            with pytest.raises(NotFound):
                await store.get_collection(TENANT, "named")

    run(check())


def test_a_404_that_is_not_from_qdrant_is_unavailable_not_not_found(run: Runner) -> None:
    """A wrong path prefix in QDRANT_URL behind a proxy: every URL is 404."""

    async def check() -> None:
        async with fake_server(http_reply("404 Not Found", b"<html>no such page</html>")) as fake:
            store = RemoteStore.connect(fake.url, timeout_seconds=2.0)
            async with opened(store):
                with pytest.raises(StoreUnavailable):
                    await store.count(TENANT, "c")

    run(check())


def test_the_last_collection_of_a_shape_takes_its_qdrant_collection_with_it(run: Runner) -> None:
    client = AsyncQdrantClient(location=":memory:")
    store = RemoteStore(lambda: client, max_vector_shapes=2)

    async def check() -> None:
        async with opened(store):
            await store.create_collection(TENANT, "a", 2, Distance.DOT)
            await store.create_collection("t2", "a", 2, Distance.DOT)
            await store.create_collection(TENANT, "b", 3, Distance.DOT)
            with pytest.raises(BadUserInput, match="At most 2 vector shapes"):
                await store.create_collection(TENANT, "c", 4, Distance.DOT)
            await store.delete_collection(TENANT, "a")  # t2's "a" keeps graph-d2-dot
            physicals = [c.name for c in await store.physical_collections()]
            assert physicals == ["graph-d2-dot", "graph-d3-dot"]
            await store.upsert("t2", "a", [Point(1, [1.0, 0.0])])
            await store.delete_collection("t2", "a")
            assert [c.name for c in await store.physical_collections()] == ["graph-d3-dot"]
            await store.create_collection(TENANT, "c", 4, Distance.DOT)
            with pytest.raises(BadUserInput):
                await store.create_collection(TENANT, "a", 2, Distance.EUCLID)

    run(check())


class RecordingClient(AsyncQdrantClient):
    """qdrant-client's local mode, which runs the queries but ignores search parameters:
    what query_points is asked is recorded on the way."""

    def __init__(self) -> None:
        super().__init__(location=":memory:")
        self.asked: list[dict[str, Any]] = []

    async def query_points(self, *args: Any, **kwargs: Any) -> models.QueryResponse:
        self.asked.append(kwargs)
        return await super().query_points(*args, **kwargs)


def dense_efs(asked: dict[str, Any]) -> list[tuple[str, int | None]]:
    """(kind, hnsw_ef) of every search in a query_points call, stages first."""
    found: list[tuple[str, int | None]] = []

    def visit(prefetches: list[models.Prefetch] | None) -> None:
        for stage in prefetches or []:
            visit(stage.prefetch if isinstance(stage.prefetch, list) else None)
            query = stage.query
            if isinstance(query, models.NearestQuery):
                query = query.nearest
            if isinstance(query, models.SparseVector):
                found.append(("sparse", None))
            elif isinstance(query, list):  # fusion and formulas search nothing themselves
                found.append(("dense", stage.params.hnsw_ef if stage.params else None))

    visit(asked.get("prefetch"))
    return found


def test_dense_searches_carry_the_same_hnsw_ef_as_the_embedded_store(run: Runner) -> None:
    """Both adapters search with common.HNSW_EF, so recall does not change with the store
    (a Qdrant server's default is its graph's ef_construct)."""
    client = RecordingClient()
    store = RemoteStore(lambda: client)

    async def check() -> None:
        async with opened(store):
            await store.create_collection(TENANT, "c", 4, Distance.COSINE)
            await store.upsert(TENANT, "c", [Point(id=1, vector=[1.0, 0.0, 0.0, 0.0])])
            await store.remember(TENANT, "c", [memory(2, "tea with milk", [0.0, 1.0, 0.0, 0.0])])
            assert len(await store.query(TENANT, "c", [1.0, 0.0, 0.0, 0.0], limit=1)) == 1
            (vector_query,) = client.asked
            assert vector_query["search_params"].hnsw_ef == HNSW_EF == 128
            client.asked.clear()
            dense = [0.0, 1.0, 0.0, 0.0]
            recency = Recency(half_life_seconds=60, weight=0.5)
            for request in (
                ask(RecallMode.SEMANTIC, dense=dense),
                ask(RecallMode.HYBRID, "tea", dense),
                ask(RecallMode.HYBRID, "tea", dense, recency=recency),
                ask(RecallMode.KEYWORD, "tea", dense, diversity=0.5),
            ):
                assert ids(await store.recall(TENANT, "c", request)) == [2]
            semantic, hybrid, recent, diverse = client.asked
            for asked in client.asked:  # the top-level search when it is a dense one
                assert asked["search_params"].hnsw_ef == HNSW_EF
            assert dense_efs(semantic) == []
            assert dense_efs(hybrid) == [("sparse", None), ("dense", HNSW_EF)]
            assert dense_efs(recent) == [("sparse", None), ("dense", HNSW_EF)]
            # only the candidates: diversity re-ranks them in the adapter, as the embedded one
            assert dense_efs(diverse) == []

    run(check())
