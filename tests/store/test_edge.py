"""Behaviour of the embedded adapter (EdgeStore) beyond the shared contract: files on
disk, the one-process lock, and the background index build in a child process.

All on the real qdrant-edge engine. Each test drives its coroutine with asyncio.run.
"""

from __future__ import annotations

import asyncio
import json
import random
import threading
import time
from collections.abc import Awaitable, Callable, Coroutine
from pathlib import Path
from types import SimpleNamespace
from typing import Any, TypeVar

import pytest

from graph.errors import BadUserInput, NotFound
from graph.settings import Distance, Settings
from graph.store.edge import EdgeStore, views
from graph.store.edge.layout import DataDirectoryInUse
from graph.store.edge.translate import nearest_request
from graph.store.models import Condition, Filter, Match, Point, PointId, Range
from tests.store.conftest import TENANT

T = TypeVar("T")

UUID_A = "0f0e0d0c-0b0a-4908-8706-050403020100"
DIM = 64
BUILD_POINTS = 2_500
THRESHOLD = 2_000


def with_store(tmp_path: Path, body: Callable[[EdgeStore], Awaitable[T]], **kwargs: Any) -> T:
    """Run body on an opened store over tmp_path/data, closed afterwards."""

    async def main() -> T:
        store = EdgeStore(tmp_path / "data", **kwargs)
        await store.open()
        try:
            return await body(store)
        finally:
            await store.close()

    return asyncio.run(main())


def vectors(n: int, dim: int = DIM, seed: int = 7) -> list[list[float]]:
    rnd = random.Random(seed)
    return [[rnd.gauss(0.0, 1.0) for _ in range(dim)] for _ in range(n)]


def key(field: str, **match: object) -> Condition:
    return Condition(key=field, match=Match(**match))  # type: ignore[arg-type]


async def fill(
    store: EdgeStore, name: str, vecs: list[list[float]], start: int, stop: int, batch: int = 500
) -> None:
    """Points start..stop-1, with vecs[i] and payload {"i": i, "parity": ...}."""
    for first in range(start, stop, batch):
        await store.upsert(
            TENANT,
            name,
            [
                Point(i, vecs[i], {"i": i, "parity": "even" if i % 2 == 0 else "odd"})
                for i in range(first, min(first + batch, stop))
            ],
        )


async def scroll_ids(store: EdgeStore, name: str) -> list[PointId]:
    ids: list[PointId] = []
    cursor: PointId | None = None
    while True:
        page = await store.scroll(TENANT, name, limit=1_000, cursor=cursor)
        ids.extend(r.id for r in page.points)
        if page.next_cursor is None:
            return ids
        cursor = page.next_cursor


def physical(store: EdgeStore, name: str) -> Any:
    """The physical collection holding the tenant's collection name."""
    return store._catalog[(TENANT, name)].coll


async def index_status(store: EdgeStore, name: str) -> dict[str, Any]:
    return await store.index_status(physical(store, name).name)


async def wait_until_building(store: EdgeStore, name: str) -> None:
    """Until the indexer child process of name is running."""
    coll = physical(store, name)
    deadline = time.monotonic() + 10
    while coll.process is None or coll.process.returncode is not None:
        assert time.monotonic() < deadline, "no index build started"
        await asyncio.sleep(0.005)


def build_running(store: EdgeStore, name: str) -> bool:
    process = physical(store, name).process
    return process is not None and process.returncode is None


# Files and lifecycle


def test_from_settings_uses_data_dir_and_threshold(tmp_path: Path) -> None:
    store = EdgeStore.from_settings(Settings(data_dir=tmp_path / "d", index_threshold=123))
    assert (store.data_dir, store.index_threshold, store.backend) == (
        tmp_path / "d",
        123,
        "embedded",
    )


def test_reopen_after_close_keeps_collections_and_points(tmp_path: Path) -> None:
    async def write(store: EdgeStore) -> None:
        await store.create_collection(TENANT, "notes", 4, Distance.DOT)
        await store.upsert(
            TENANT, "notes", [Point(1, [1, 0, 0, 0], {"a": 1}), Point(UUID_A, [0, 1, 0, 0])]
        )

    async def read(store: EdgeStore) -> None:
        info = await store.get_collection(TENANT, "notes")
        assert (info.dimension, info.distance, info.points_count) == (4, Distance.DOT, 2)
        records = await store.retrieve(TENANT, "notes", [1, UUID_A], with_vector=True)
        assert [(r.id, r.payload, r.vector) for r in records] == [
            (1, {"a": 1}, [1.0, 0.0, 0.0, 0.0]),
            (UUID_A, None, [0.0, 1.0, 0.0, 0.0]),
        ]

    with_store(tmp_path, write)
    with_store(tmp_path, read)
    manifest = json.loads((tmp_path / "data/collections/d4-dot/manifest.json").read_text())
    assert (manifest["dimension"], manifest["distance"]) == (4, "dot")
    catalog = json.loads((tmp_path / "data/catalog.json").read_text())
    assert catalog["collections"] == [
        {"tenant": TENANT, "name": "notes", "dimension": 4, "distance": "dot"}
    ]


def test_a_point_is_found_by_every_read(tmp_path: Path) -> None:
    async def body(store: EdgeStore) -> None:
        await store.create_collection(TENANT, "c", 4, Distance.COSINE)
        upper = UUID_A.upper()
        await store.upsert(TENANT, "c", [Point(upper, [0.0, 0.6, 0.8, 0.0], {"k": "v"})])
        [hit] = await store.query(TENANT, "c", [0.0, 0.6, 0.8, 0.0], limit=5)
        assert (hit.id, hit.payload) == (UUID_A, {"k": "v"})
        assert hit.score == pytest.approx(1.0, abs=1e-5)
        assert [r.id for r in await store.retrieve(TENANT, "c", [upper])] == [UUID_A]
        assert await store.count(TENANT, "c") == 1
        page = await store.scroll(TENANT, "c", limit=5)
        assert ([r.id for r in page.points], page.next_cursor) == ([UUID_A], None)

    with_store(tmp_path, body)


def test_second_store_on_the_same_directory_is_refused(tmp_path: Path) -> None:
    async def body(store: EdgeStore) -> None:
        other = EdgeStore(tmp_path / "data")
        with pytest.raises(DataDirectoryInUse, match="in use by another process"):
            await other.open()
        await other.close()  # harmless on a store that never opened

    with_store(tmp_path, body)
    with_store(tmp_path, lambda s: s.list_collections(TENANT))  # free again once closed


def test_leftovers_are_removed_on_open(tmp_path: Path) -> None:
    with_store(tmp_path, lambda s: s.create_collection(TENANT, "c", 4, Distance.COSINE))
    root = tmp_path / "data/collections"
    (root / "d4-cosine/shard-000099").mkdir()  # an unfinished build
    (root / "half-made").mkdir()  # a collection whose manifest was never written
    (root / ".trash-old-1234").mkdir()
    names = with_store(tmp_path, lambda s: s.list_collections(TENANT))
    assert [c.name for c in names] == ["c"]
    assert sorted(p.name for p in root.iterdir()) == ["d4-cosine"]
    assert sorted(p.name for p in (root / "d4-cosine").iterdir()) == [
        "manifest.json",
        "shard-000001",
    ]


def test_delete_collection_removes_its_points_and_frees_the_name(tmp_path: Path) -> None:
    async def body(store: EdgeStore) -> None:
        await store.create_collection(TENANT, "gone", 4, Distance.COSINE)
        await store.upsert(TENANT, "gone", [Point(1, [1, 0, 0, 0])])
        await store.create_collection(TENANT, "kept", 4, Distance.COSINE)
        await store.delete_collection(TENANT, "gone")
        [shape] = await store.physical_collections()
        assert (shape.name, shape.points_count) == ("d4-cosine", 0)
        with pytest.raises(NotFound):
            await store.count(TENANT, "gone")
        await store.create_collection(TENANT, "gone", 4, Distance.COSINE)  # the name is free again
        assert await store.count(TENANT, "gone") == 0

    with_store(tmp_path, body)


# Writes


def test_replace_by_id_leaves_one_point(tmp_path: Path) -> None:
    async def body(store: EdgeStore) -> None:
        await store.create_collection(TENANT, "c", 4, Distance.COSINE)
        for version in range(3):
            await store.upsert(TENANT, "c", [Point(7, [1, version, 0, 0], {"v": version})])
        assert await store.count(TENANT, "c") == 1
        assert [r.payload for r in await store.retrieve(TENANT, "c", [7])] == [{"v": 2}]
        assert [h.id for h in await store.query(TENANT, "c", [1, 0, 0, 0], limit=10)] == [7]

    with_store(tmp_path, body)


def test_delete_by_ids_and_filter_return_counts(tmp_path: Path) -> None:
    async def body(store: EdgeStore) -> None:
        await store.create_collection(TENANT, "c", 4, Distance.COSINE)
        await store.upsert(
            TENANT, "c", [Point(i, [1, i, 0, 0], {"odd": i % 2 == 1}) for i in range(10)]
        )
        assert await store.delete_ids(TENANT, "c", [0, 1, 1, 99]) == 2
        assert await store.delete_by_filter(TENANT, "c", Filter(must=[key("odd", value=True)])) == 4
        assert await store.delete_by_filter(TENANT, "c", Filter(must=[key("odd", value=True)])) == 0
        assert await scroll_ids(store, "c") == [2, 4, 6, 8]

    with_store(tmp_path, body)


@pytest.mark.parametrize(
    "bad",
    [
        Point(3, [1.0, 0.0, 0.0]),  # wrong dimension
        Point(3, [1.0, float("nan"), 0.0, 0.0]),  # the engine itself would store NaN
        Point(3, [1.0, 0.0, 0.0, 0.0], {"x": float("inf")}),
        Point(3, [1.0, 0.0, 0.0, 0.0], {"x": {1, 2}}),  # not JSON
    ],
    ids=["dimension", "nan-vector", "inf-payload", "set-payload"],
)
def test_a_batch_with_one_bad_point_writes_nothing(tmp_path: Path, bad: Point) -> None:
    async def body(store: EdgeStore) -> None:
        await store.create_collection(TENANT, "c", 4, Distance.COSINE)
        await store.upsert(TENANT, "c", [Point(1, [1, 0, 0, 0], {"v": "kept"})])
        with pytest.raises(BadUserInput):
            await store.upsert(
                TENANT, "c", [Point(1, [0, 1, 0, 0], {"v": "new"}), Point(2, [1, 1, 0, 0]), bad]
            )
        assert await store.count(TENANT, "c") == 1
        assert [r.payload for r in await store.retrieve(TENANT, "c", [1, 2, 3])] == [{"v": "kept"}]

    with_store(tmp_path, body)


# Filters

FILTER_PAYLOADS: dict[int, dict[str, object]] = {
    1: {"kind": "note", "n": 1, "flag": True, "w": 0.5, "meta": {"src": "chat"}},
    2: {"kind": "task", "n": 2, "flag": False, "w": 1.5, "meta": {"src": "mail"}},
    3: {"kind": "note", "n": 3, "flag": False, "w": 2.5},
    4: {"kind": "fact", "n": 4, "flag": True, "w": 3.5, "meta": {"src": "chat"}},
}
FILTER_CASES: list[tuple[Filter, set[int]]] = [
    (Filter(must=[key("kind", value="note")]), {1, 3}),
    (Filter(must=[key("n", value=4)]), {4}),
    (Filter(must=[key("flag", value=True)]), {1, 4}),  # a bool, not the integer 1
    (Filter(must=[key("flag", value=False)]), {2, 3}),
    (Filter(must=[key("n", value=1)]), {1}),
    (Filter(must=[key("kind", any=["task", "fact"])]), {2, 4}),
    (Filter(must=[key("n", any=[1, 3])]), {1, 3}),
    (Filter(must=[key("kind", except_=["note"])]), {2, 4}),
    (Filter(must=[key("n", except_=[1, 2])]), {3, 4}),
    (Filter(must=[Condition(key="w", range=Range(gte=1.5, lt=3.5))]), {2, 3}),
    (Filter(must=[Condition(key="n", range=Range(gt=1, lte=3))]), {2, 3}),
    (Filter(should=[key("kind", value="fact"), key("n", value=2)]), {2, 4}),
    (Filter(must_not=[key("meta.src", value="chat")]), {2, 3}),
    (
        Filter(
            must=[Condition(filter=Filter(should=[key("kind", value="note"), key("n", value=4)]))],
            must_not=[Condition(filter=Filter(must=[key("flag", value=False)]))],
        ),
        {1, 4},
    ),
]


def test_filters_translate_to_the_engine(tmp_path: Path) -> None:
    async def body(store: EdgeStore) -> None:
        await store.create_collection(TENANT, "c", 4, Distance.COSINE)
        await store.upsert(
            TENANT, "c", [Point(i, [1, i, 0, 0], p) for i, p in FILTER_PAYLOADS.items()]
        )
        for flt, expected in FILTER_CASES:
            assert await store.count(TENANT, "c", flt) == len(expected), flt
            hits = await store.query(TENANT, "c", [1, 0, 0, 0], limit=10, filter=flt)
            assert {h.id for h in hits} == expected, flt

    with_store(tmp_path, body)


# Background indexing


async def build_collection(store: EdgeStore) -> list[list[float]]:
    """BUILD_POINTS points in "c"; the first THRESHOLD of them start a build."""
    vecs = vectors(BUILD_POINTS)
    await store.create_collection(TENANT, "c", DIM, Distance.COSINE)
    await fill(store, "c", vecs, 0, THRESHOLD)
    await wait_until_building(store, "c")
    await fill(store, "c", vecs, THRESHOLD, BUILD_POINTS)  # these go to the new fresh shard
    return vecs


def test_background_build_indexes_everything_once(tmp_path: Path) -> None:
    async def body(store: EdgeStore) -> None:
        vecs = await build_collection(store)
        await store.wait_for_indexing()

        status = await index_status(store, "c")
        assert status["builds_run"] == 1 and status["builds_failed"] == 0
        assert status["indexed_points"] == THRESHOLD
        assert status["indexed_vectors"] >= THRESHOLD
        assert status["unindexed_points"] == BUILD_POINTS - THRESHOLD
        assert await store.count(TENANT, "c") == BUILD_POINTS
        assert sorted(await scroll_ids(store, "c")) == list(range(BUILD_POINTS))
        for i in (0, 1_999, 2_000, 2_499):
            [hit] = await store.query(TENANT, "c", vecs[i], limit=1)
            assert hit.id == i
        assert await store.count(TENANT, "c", Filter(must=[key("parity", value="odd")])) == 1_250
        retrieved = await store.retrieve(TENANT, "c", list(range(BUILD_POINTS)))
        assert len(retrieved) == BUILD_POINTS

    with_store(tmp_path, body, index_threshold=THRESHOLD)
    # The built shard is what a restart loads; the sealed and old shards are gone.
    shards = sorted(p.name for p in (tmp_path / "data/collections/d64-cosine").glob("shard-*"))
    manifest = json.loads((tmp_path / "data/collections/d64-cosine/manifest.json").read_text())
    assert shards == sorted([*manifest["indexed"], manifest["fresh"]])
    assert manifest["sealed"] is None

    async def reopened(store: EdgeStore) -> None:
        status = await index_status(store, "c")
        assert (status["points"], status["indexed_vectors"] >= THRESHOLD) == (BUILD_POINTS, True)

    with_store(tmp_path, reopened, index_threshold=THRESHOLD)


def test_queries_are_answered_while_a_build_runs(tmp_path: Path) -> None:
    async def body(store: EdgeStore) -> None:
        vecs = await build_collection(store)
        latencies: list[float] = []
        while build_running(store, "c"):
            started = time.perf_counter()
            hits = await store.query(TENANT, "c", vecs[len(latencies) % BUILD_POINTS], limit=10)
            latencies.append(time.perf_counter() - started)
            assert len(hits) == 10
        await store.wait_for_indexing()
        assert (await index_status(store, "c"))["builds_run"] == 1
        latencies.sort()
        # The child process starts, moves 2,000 points and optimizes for ~1 s; a build
        # inside this process would hold the GIL and answer nothing meanwhile.
        assert len(latencies) >= 100, len(latencies)
        # Safety nets for a busy machine; the count above is what proves the point.
        assert latencies[len(latencies) // 2] < 0.1
        assert latencies[-1] < 2.0

    with_store(tmp_path, body, index_threshold=THRESHOLD)


def test_writes_during_a_build_are_not_lost(tmp_path: Path) -> None:
    async def body(store: EdgeStore) -> None:
        vecs = await build_collection(store)
        # All of these touch the sealed shard, which the child process is merging.
        assert await store.delete_ids(TENANT, "c", [0, 1, 2]) == 3
        assert (
            await store.delete_by_filter(TENANT, "c", Filter(must=[key("i", any=[10, 11, 12])]))
            == 3
        )
        await store.upsert(TENANT, "c", [Point(20, vecs[20], {"i": 20, "v": "new"})])
        assert build_running(store, "c"), "the build ended before the writes: make it bigger"
        await store.wait_for_indexing()

        assert (await index_status(store, "c"))["builds_run"] == 1
        assert await store.retrieve(TENANT, "c", [0, 1, 2, 10, 11, 12]) == []
        assert await store.count(TENANT, "c") == BUILD_POINTS - 6
        assert [r.payload for r in await store.retrieve(TENANT, "c", [20])] == [
            {"i": 20, "v": "new"}
        ]
        hits = await store.query(TENANT, "c", vecs[20], limit=3)
        assert [h.id for h in hits].count(20) == 1
        ids = await scroll_ids(store, "c")
        assert len(ids) == len(set(ids)) == BUILD_POINTS - 6

    with_store(tmp_path, body, index_threshold=THRESHOLD)


def test_close_during_a_build_loses_nothing_and_the_build_resumes(tmp_path: Path) -> None:
    async def interrupted(store: EdgeStore) -> None:
        await build_collection(store)
        await store.delete_ids(TENANT, "c", [5])
        # close() kills the child process; the sealed shard stays live.

    with_store(tmp_path, interrupted, index_threshold=THRESHOLD)

    async def resumed(store: EdgeStore) -> None:
        assert await store.count(TENANT, "c") == BUILD_POINTS - 1  # readable before the build
        await store.wait_for_indexing()
        status = await index_status(store, "c")
        assert (status["builds_run"], status["points"]) == (1, BUILD_POINTS - 1)
        assert status["indexed_points"] == THRESHOLD - 1
        assert await store.retrieve(TENANT, "c", [5]) == []

    with_store(tmp_path, resumed, index_threshold=THRESHOLD)


def test_delete_collection_during_a_build_leaves_the_other_collections_whole(
    tmp_path: Path,
) -> None:
    """Collections of one shape share a physical collection and its index build: deleting
    one mid-build is a journaled delete by partition, replayed on the built shard."""
    others = vectors(10, seed=3)

    async def body(store: EdgeStore) -> None:
        await store.create_collection(TENANT, "other", DIM, Distance.COSINE)
        await fill(store, "other", others, 0, 10)
        await build_collection(store)
        assert build_running(store, "c")
        await store.delete_collection(TENANT, "c")
        with pytest.raises(NotFound):
            await store.count(TENANT, "c")
        await store.wait_for_indexing()
        assert (await index_status(store, "other"))["builds_run"] == 1
        assert await store.count(TENANT, "other") == 10
        [shape] = await store.physical_collections()
        assert shape.points_count == 10

    async def reopened(store: EdgeStore) -> None:
        assert [c.name for c in await store.list_collections(TENANT)] == ["other"]
        [shape] = await store.physical_collections()
        assert shape.points_count == 10
        await store.create_collection(TENANT, "c", DIM, Distance.COSINE)
        assert await store.count(TENANT, "c") == 0

    with_store(tmp_path, body, index_threshold=THRESHOLD)
    with_store(tmp_path, reopened, index_threshold=THRESHOLD)


# Vector shapes


def live_resources(data_dir: Path) -> tuple[int, int, int]:
    """Threads (Python's and the process's own), memory mappings, files under data_dir."""
    status = Path("/proc/self/status").read_text()
    os_threads = int(next(ln for ln in status.splitlines() if ln.startswith("Threads:")).split()[1])
    maps = len(Path("/proc/self/maps").read_text().splitlines())
    files = sum(1 for p in data_dir.rglob("*") if p.is_file())
    return threading.active_count() + os_threads, maps, files


def test_creating_and_deleting_shapes_leaves_no_threads_mappings_or_files(tmp_path: Path) -> None:
    """Each shape is a physical collection (8 search threads, ~37 mappings, two 32 MB
    WAL files); deleting its last collection releases all of it."""

    async def body(store: EdgeStore) -> None:
        data = store.data_dir
        await store.create_collection(TENANT, "kept", 4, Distance.COSINE)
        await store.create_collection(TENANT, "warm", 5, Distance.COSINE)
        await store.delete_collection(TENANT, "warm")
        before = live_resources(data)
        for i in range(40):
            await store.create_collection(TENANT, "x", 16 + i, Distance.DOT)
            await store.upsert(TENANT, "x", [Point(1, [1.0] * (16 + i))])
            await store.delete_collection(TENANT, "x")
        after = live_resources(data)
        print("threads, mappings, files before/after:", before, after)
        # Leaking, 40 shapes would add ~320 threads, ~1,500 mappings and ~400 files.
        # Worker pools grow lazily by a few threads (the event loop's default executor
        # reaches six on 2 cores); a leaked shape alone would add eight.
        assert after[0] <= before[0] + 16
        assert after[1] <= before[1] + 150
        assert after[2] <= before[2] + 2
        assert [p.name for p in (data / "collections").iterdir()] == ["d4-cosine"]
        assert [c.name for c in await store.physical_collections()] == ["d4-cosine"]

    with_store(tmp_path, body, max_vector_shapes=3)


def test_the_shape_bound_refuses_a_new_shape_until_one_is_deleted(tmp_path: Path) -> None:
    async def body(store: EdgeStore) -> None:
        await store.create_collection(TENANT, "a", 4, Distance.COSINE)
        await store.create_collection(TENANT, "b", 5, Distance.COSINE)
        await store.create_collection(TENANT, "c", 4, Distance.DOT)
        with pytest.raises(
            BadUserInput,
            match=r"At most 3 vector shapes.*MAX_VECTOR_SHAPES.*"
            r"delete a collection of another shape first",
        ):
            await store.create_collection(TENANT, "d", 6, Distance.COSINE)
        await store.create_collection("t2", "a2", 5, Distance.COSINE)  # a shape in use: fine
        await store.delete_collection(TENANT, "b")  # d5-cosine still holds t2's "a2"
        with pytest.raises(BadUserInput):
            await store.create_collection(TENANT, "d", 6, Distance.COSINE)
        await store.delete_collection("t2", "a2")
        await store.create_collection(TENANT, "d", 6, Distance.COSINE)
        # A shape deleted and made again works like a new one.
        await store.delete_collection(TENANT, "c")
        await store.create_collection(TENANT, "c", 4, Distance.DOT)
        await store.upsert(TENANT, "c", [Point(1, [1, 0, 0, 0]), Point(2, [0, 1, 0, 0])])
        [hit] = await store.query(TENANT, "c", [0, 1, 0, 0], limit=1)
        assert (hit.id, await store.count(TENANT, "c")) == (2, 2)

    with_store(tmp_path, body, max_vector_shapes=3)

    async def reopened(store: EdgeStore) -> None:
        assert [c.name for c in await store.list_collections(TENANT)] == ["a", "c", "d"]
        assert await store.count(TENANT, "c") == 2
        names = [c.name for c in await store.physical_collections()]
        assert names == ["d4-cosine", "d4-dot", "d6-cosine"]

    with_store(tmp_path, reopened, max_vector_shapes=3)
    assert sorted(p.name for p in (tmp_path / "data/collections").iterdir()) == [
        "d4-cosine",
        "d4-dot",
        "d6-cosine",
    ]


def test_deleting_a_shape_during_its_index_build_leaves_nothing_behind(tmp_path: Path) -> None:
    others = vectors(10, dim=4, seed=3)

    async def body(store: EdgeStore) -> None:
        await store.create_collection(TENANT, "other", 4, Distance.COSINE)
        await fill(store, "other", others, 0, 10)
        await build_collection(store)
        process = physical(store, "c").process
        assert build_running(store, "c")
        await store.delete_collection(TENANT, "c")
        assert process is not None and process.returncode is not None  # killed and reaped
        with pytest.raises(NotFound):
            await store.count(TENANT, "c")
        assert [c.name for c in await store.physical_collections()] == ["d4-cosine"]
        assert await store.count(TENANT, "other") == 10
        assert [p.name for p in (store.data_dir / "collections").iterdir()] == ["d4-cosine"]
        await store.create_collection(TENANT, "c", DIM, Distance.COSINE)
        assert await store.count(TENANT, "c") == 0

    with_store(tmp_path, body, index_threshold=THRESHOLD)

    async def reopened(store: EdgeStore) -> None:
        assert [c.name for c in await store.list_collections(TENANT)] == ["c", "other"]
        [hit] = await store.query(TENANT, "other", others[3], limit=1)
        assert hit.id == 3

    with_store(tmp_path, reopened, index_threshold=THRESHOLD)


def test_a_shape_left_by_a_crash_mid_delete_is_removed_on_open(tmp_path: Path) -> None:
    async def crashed(store: EdgeStore) -> None:
        await store.create_collection(TENANT, "a", 4, Distance.COSINE)
        await store.create_collection(TENANT, "b", 8, Distance.COSINE)
        catalog = store._catalog  # the delete's catalog commit, without the release
        await store._commit_catalog({k: v for k, v in catalog.items() if k[1] != "b"})

    with_store(tmp_path, crashed)
    assert len(list((tmp_path / "data/collections").iterdir())) == 2
    with_store(tmp_path, lambda s: s.list_collections(TENANT))
    assert [p.name for p in (tmp_path / "data/collections").iterdir()] == ["d4-cosine"]


class _Watched:
    """A shard whose searches are counted; with empty_first it reports itself empty the
    first time it is asked, as if its points arrived while an older shard was read."""

    def __init__(self, shard: Any, empty_first: bool = False) -> None:
        self.shard = shard
        self.empty_first = empty_first
        self.searches = 0

    def info(self) -> Any:
        if self.empty_first:
            self.empty_first = False
            return SimpleNamespace(points_count=0)
        return self.shard.info()

    def query(self, request: Any) -> Any:
        self.searches += 1
        return self.shard.query(request)

    def retrieve(self, *args: Any, **kwargs: Any) -> Any:
        return self.shard.retrieve(*args, **kwargs)


def test_query_leaves_out_an_empty_fresh_shard_but_not_points_that_just_moved(
    tmp_path: Path,
) -> None:
    """Just after an index build the fresh shard is empty and is not searched; the
    answer (paged by offset) is the one the store gives. A point written to the fresh
    shard while the indexed one was searched is still found, in its new version."""

    async def body(store: EdgeStore) -> None:
        await store.create_collection(TENANT, "c", 4, Distance.COSINE)
        await store.upsert(TENANT, "c", [Point(i, [1.0, i, 0, 0], {"i": i}) for i in range(20)])
        await store.wait_for_indexing()
        coll = store._collections["d4-cosine"]
        indexed, fresh = coll.view.shards
        assert (indexed.info().points_count, fresh.info().points_count) == (20, 0)
        scoped = store._logical(TENANT, "c").scoped(None)

        def request(limit: int, offset: int) -> Any:
            return nearest_request(
                [1.0, 5, 0, 0],
                scoped,
                limit=limit,
                offset=offset,
                shards=2,
                score_threshold=None,
                with_vector=False,
                params=None,
            )

        watched = _Watched(fresh)
        hits = views.query((indexed, watched), request(3, 1), True, 1, 3, False)  # type: ignore[arg-type]
        assert watched.searches == 0
        expected = await store.query(TENANT, "c", [1.0, 5, 0, 0], limit=3, offset=1)
        assert [h.id for h in hits] == [h.id for h in expected] and len(hits) == 3

        await store.upsert(TENANT, "c", [Point(5, [1.0, 5, 0, 0], {"i": 5, "moved": True})])
        indexed, fresh = coll.view.shards
        assert fresh.info().points_count == 1
        late = _Watched(fresh, empty_first=True)
        hits = views.query((indexed, late), request(1, 0), True, 0, 1, False)  # type: ignore[arg-type]
        assert late.searches == 1
        assert [(h.id, h.payload) for h in hits] == [(5, {"i": 5, "moved": True})]

    with_store(tmp_path, body, index_threshold=20)


class Hooked:
    """A live shard that runs hook() once, in the engine call's thread, before (or, with
    after=True, after) its first call of method."""

    def __init__(
        self, shard: Any, method: str, hook: Callable[[], None], after: bool = False
    ) -> None:
        self.shard = shard
        self.method = method
        self.hook: Callable[[], None] | None = hook
        self.after = after

    def __getattr__(self, name: str) -> Any:
        real = getattr(self.shard, name)
        if name != self.method or self.hook is None:
            return real

        def hooked(*args: Any, **kwargs: Any) -> Any:
            hook, self.hook = self.hook, None
            assert hook is not None
            if not self.after:
                hook()
            result = real(*args, **kwargs)
            if self.after:
                hook()
            return result

        return hooked


async def _moving_collection(store: EdgeStore) -> tuple[Any, Any, Any]:
    """Collection "c": points 0..19 in an indexed segment, 20 in the fresh shard; returns
    the physical collection and its two shards."""
    await store.create_collection(TENANT, "c", 4, Distance.COSINE)
    await store.upsert(TENANT, "c", [Point(i, [1.0, i, 0, 0], {"i": i}) for i in range(20)])
    await store.wait_for_indexing()
    await store.upsert(TENANT, "c", [Point(20, [0.0, 0, 1, 0], {"i": 20})])
    coll = store._collections["d4-cosine"]
    indexed, fresh = coll.view.shards
    assert (indexed.info().points_count, fresh.info().points_count) == (20, 1)
    return coll, indexed, fresh


def from_a_worker(loop: asyncio.AbstractEventLoop, call: Coroutine[Any, Any, object]) -> None:
    """Run call on loop from an engine call's thread, while the loop waits for that call."""
    asyncio.run_coroutine_threadsafe(call, loop).result(10)


def _upsert_from_a_worker(store: EdgeStore, loop: asyncio.AbstractEventLoop, point: Point) -> None:
    from_a_worker(loop, store.upsert(TENANT, "c", [point]))


def test_a_count_while_an_upsert_moves_a_point_counts_it_once(tmp_path: Path) -> None:
    """An upsert of a point an indexed segment holds writes it to the fresh shard, then
    deletes it from the segment. A count that read the segment before the upsert and the
    fresh shard after it would count the point twice: it counts again."""

    async def body(store: EdgeStore) -> None:
        coll, indexed, fresh = await _moving_collection(store)
        loop = asyncio.get_running_loop()
        moved = Point(5, [1.0, 5, 0, 0], {"i": 5, "moved": True})
        count_then_move = Hooked(
            indexed, "count", lambda: _upsert_from_a_worker(store, loop, moved), after=True
        )
        coll.view = views.View((count_then_move, fresh))  # type: ignore[arg-type]
        assert await store.count(TENANT, "c") == 21
        assert [r.payload for r in await store.retrieve(TENANT, "c", [5])] == [moved.payload]

    with_store(tmp_path, body, index_threshold=20)


def test_a_query_while_an_upsert_moves_a_point_finds_it(tmp_path: Path) -> None:
    """The shards are searched side by side: the fresh shard may be searched before an
    upsert writes a point there, and the segment holding it after the upsert deleted it
    from there. The fresh shard is then searched again and the point found."""

    async def body(store: EdgeStore) -> None:
        coll, indexed, fresh = await _moving_collection(store)
        loop = asyncio.get_running_loop()
        moved = Point(5, [1.0, 5, 0, 0], {"i": 5, "moved": True})
        fresh_searched = threading.Event()

        def move_once_fresh_was_searched() -> None:
            assert fresh_searched.wait(10)
            _upsert_from_a_worker(store, loop, moved)

        coll.view = views.View(
            (  # type: ignore[arg-type]
                Hooked(indexed, "query", move_once_fresh_was_searched),
                Hooked(fresh, "query", fresh_searched.set, after=True),
            )
        )
        hits = await store.query(TENANT, "c", [1.0, 5, 0, 0], limit=2)
        assert (hits[0].id, hits[0].payload) == (5, moved.payload)
        assert await store.count(TENANT, "c") == 21

    with_store(tmp_path, body, index_threshold=20)


def test_a_collection_alone_in_its_shape_is_searched_unfiltered_and_stays_isolated(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A collection alone in its physical collection is searched without the partition
    filter (the engine's search is then several times cheaper) and gives the filtered
    answer. When the guess is wrong (another tenant's points rank first) the search runs
    again with the filter: no other tenant's point ever comes back."""
    unscoped: list[int] = []
    real = views.query_owned

    def counted(*args: Any) -> Any:
        unscoped.append(1)
        return real(*args)

    monkeypatch.setattr(views, "query_owned", counted)

    async def body(store: EdgeStore) -> None:
        await store.create_collection(TENANT, "c", 4, Distance.COSINE)
        await store.upsert(TENANT, "c", [Point(i, [1.0, i, 0, 0], {"i": i}) for i in range(20)])
        await store.wait_for_indexing()
        hits = await store.query(TENANT, "c", [1.0, 5, 0, 0], limit=3)
        assert len(unscoped) == 1
        assert [h.id for h in hits] == [5, 6, 4] and hits[0].payload == {"i": 5}
        # Paged, or with a filter: the filtered search, as before.
        await store.query(TENANT, "c", [1.0, 5, 0, 0], limit=3, offset=1)
        await store.query(
            TENANT, "c", [1.0, 5, 0, 0], limit=3, filter=Filter(must=[key("i", value=5)])
        )
        assert len(unscoped) == 1

        # Another tenant's collection of the same shape, with points nearer the query.
        await store.create_collection("t2", "c", 4, Distance.COSINE)
        await store.upsert("t2", "c", [Point(i, [1.0, 5, 0, 0], {"other": i}) for i in range(5)])
        hits = await store.query(TENANT, "c", [1.0, 5, 0, 0], limit=3)
        assert len(unscoped) == 1  # no longer alone: filtered
        assert [h.id for h in hits] == [5, 6, 4]
        # The guess made stale on purpose: the unfiltered hits are t2's, so it searches
        # again with the filter.
        logical = store._logical(TENANT, "c")
        view = logical.coll.view

        def request(flt: Any) -> Any:
            return nearest_request(
                [1.0, 5, 0, 0],
                flt,
                limit=3,
                offset=0,
                shards=len(view.shards),
                score_threshold=None,
                with_vector=False,
                params=None,
            )

        hits = real(
            view.shards,
            request(None),
            lambda: request(logical.only),
            logical.entry.partition,
            True,
            3,
            False,
        )
        assert [(h.id, h.payload) for h in hits] == [(5, {"i": 5}), (6, {"i": 6}), (4, {"i": 4})]

    with_store(tmp_path, body, index_threshold=20)
