"""Data made before memories existed (no sparse vector) opens and takes memories with no
manual step, in both adapters; memories survive the embedded store's index builds and are
recalled over its several shards as over one."""

from __future__ import annotations

import asyncio
import json
import random
import threading
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace
from typing import TYPE_CHECKING

from qdrant_client import AsyncQdrantClient, models
from qdrant_edge import Distance as EdgeDistance
from qdrant_edge import EdgeConfig, EdgeShard, EdgeVectorParams, KeywordIndexParams, UpdateOperation
from qdrant_edge import Point as EdgePoint

from graph.memory.keywords import query_keywords
from graph.settings import Distance
from graph.store.edge import EdgeStore
from graph.store.edge import memory as edge_memory
from graph.store.edge import views as edge_views
from graph.store.models import Point, RecallMode, RecallRequest, Recency
from graph.store.remote import RemoteStore
from graph.store.tenancy import (
    EXPIRES_FIELD,
    PARTITION_FIELD,
    CollectionEntry,
    iso,
    stored_id,
    stored_payload,
)
from tests.store.conftest import TENANT
from tests.store.test_contract import unit
from tests.store.test_edge import Hooked, from_a_worker, with_store
from tests.store.test_memory_contract import memory

if TYPE_CHECKING:
    from tests.store.conftest import Runner

NOW = datetime(2026, 11, 29, 8, 0, tzinfo=UTC)


def keyword_recall(text: str) -> RecallRequest:
    return RecallRequest(RecallMode.KEYWORD, limit=10, now=NOW, keywords=query_keywords(text))


def make_old_data_dir(data_dir: Path) -> None:
    """The layout EdgeStore wrote before memories: a shard with one unnamed dense vector."""
    entry = CollectionEntry(TENANT, "c", 4, Distance.COSINE)
    coll = data_dir / "collections" / entry.physical
    coll.mkdir(parents=True)
    shard = EdgeShard.create(
        str(coll / "shard-000001"),
        EdgeConfig(
            vectors=EdgeVectorParams(size=4, distance=EdgeDistance.Cosine), wal_enabled=True
        ),
    )
    shard.update(
        UpdateOperation.create_field_index(PARTITION_FIELD, KeywordIndexParams(is_tenant=True))
    )
    shard.update(
        UpdateOperation.upsert_points(
            [
                EdgePoint(
                    stored_id(entry.partition, 7),
                    unit(1, 0),
                    stored_payload(entry.partition, 7, {"old": True}),
                )
            ]
        )
    )
    shard.flush()
    shard.close()
    manifest = {"dimension": 4, "distance": "cosine", "fresh": "shard-000001", "next_shard": 2}
    (coll / "manifest.json").write_text(json.dumps(manifest))
    (data_dir / "catalog.json").write_text(json.dumps({"collections": [entry.to_json()]}))


def test_an_old_embedded_data_directory_takes_memories(tmp_path: Path, run: Runner) -> None:
    make_old_data_dir(tmp_path)
    store = EdgeStore(tmp_path)
    run(store.open())
    try:
        assert [r.payload for r in run(store.retrieve(TENANT, "c", [7]))] == [{"old": True}]
        (shard,) = store._collections["d4-cosine"].shards.values()
        assert EXPIRES_FIELD in shard.info().payload_schema  # the expiry index was added
        run(store.remember(TENANT, "c", [memory(1, "Grüße aus München", unit(0, 1))]))
        found = run(store.recall(TENANT, "c", keyword_recall("grusse munchen")))
        assert [m.id for m in found] == [1]
    finally:
        run(store.close())
    store = EdgeStore(tmp_path)  # and again after a restart
    run(store.open())
    try:
        assert [m.id for m in run(store.recall(TENANT, "c", keyword_recall("München")))] == [1]
    finally:
        run(store.close())


def test_memories_survive_index_builds(tmp_path: Path, run: Runner) -> None:
    store = EdgeStore(tmp_path, index_threshold=20)
    run(store.open())
    try:
        run(store.create_collection(TENANT, "c", 4, Distance.COSINE))
        run(store.remember(TENANT, "c", [memory(i, f"note number {i}") for i in range(30)]))
        run(store.upsert(TENANT, "c", [Point(100, unit(1, 0))]))
        run(store.wait_for_indexing())
        run(store.remember(TENANT, "c", [memory(1000, "a fresh unique note", unit(1, 0))]))
        found = run(store.recall(TENANT, "c", keyword_recall("unique")))
        assert [m.id for m in found] == [1000]
        assert len(run(store.recall(TENANT, "c", keyword_recall("note")))) == 10
        assert run(store.count(TENANT, "c")) == 32
    finally:
        run(store.close())


def test_an_old_qdrant_collection_takes_memories(tmp_path: Path, run: Runner) -> None:
    path = str(tmp_path / "local")

    async def make_old() -> None:
        client = AsyncQdrantClient(path=path)
        await client.create_collection(
            "graph-d4-cosine",
            vectors_config=models.VectorParams(size=4, distance=models.Distance.COSINE),
        )
        await client.close()

    run(make_old())
    store = RemoteStore.local(path)
    run(store.open())
    try:
        run(store.create_collection(TENANT, "c", 4, Distance.COSINE))
        run(store.remember(TENANT, "c", [memory(1, "crème brûlée", unit(0, 1))]))
        assert [m.id for m in run(store.recall(TENANT, "c", keyword_recall("creme")))] == [1]
    finally:
        run(store.close())


def test_recall_over_several_shards_ranks_as_over_one(tmp_path: Path, run: Runner) -> None:
    """A large collection spans an indexed and a fresh shard: fused, aged and diversified
    rankings are computed over both together, the same as the engine does over one. (Keyword
    scores use each shard's IDF, so the keyword is in one memory only: ties broken by IDF
    would differ.)"""
    rng = random.Random(3)
    batch = [
        memory(
            i,
            f"memo {i}" + (" zebra" if i == 25 else ""),
            unit(*(rng.random() for _ in range(4))),
            age=rng.uniform(0, 30 * 86400),
        )
        for i in range(30)
    ]
    one, two = EdgeStore(tmp_path / "one"), EdgeStore(tmp_path / "two", index_threshold=20)
    for store in (one, two):
        run(store.open())
        run(store.create_collection(TENANT, "c", 4, Distance.COSINE))
    try:
        run(one.remember(TENANT, "c", batch))
        run(two.remember(TENANT, "c", batch[:20]))
        run(two.wait_for_indexing())
        run(two.remember(TENANT, "c", batch[20:]))
        assert len(two._collections["d4-cosine"].view.shards) == 2
        dense = unit(0.9, 0.1, 0.3, 0.2)
        week = Recency(7 * 86400.0, 0.5)
        requests = [
            RecallRequest(RecallMode.SEMANTIC, limit=8, now=NOW, dense=dense, recency=week),
            RecallRequest(RecallMode.SEMANTIC, limit=5, now=NOW, dense=dense, diversity=0.6),
            RecallRequest(
                RecallMode.HYBRID, limit=8, now=NOW, dense=dense, keywords=query_keywords("zebra")
            ),
        ]
        for request in requests:
            expected = [m.id for m in run(one.recall(TENANT, "c", request))]
            assert [m.id for m in run(two.recall(TENANT, "c", request))] == expected, request
    finally:
        run(one.close())
        run(two.close())


class _LateFresh:
    """A fresh shard that reports itself empty the first time it is asked, as if its points
    arrived while an older shard was being read."""

    def __init__(self, shard: EdgeShard) -> None:
        self.shard = shard
        self.asked = 0

    def info(self) -> object:
        self.asked += 1
        return SimpleNamespace(points_count=0) if self.asked == 1 else self.shard.info()

    def query(self, request: object) -> object:
        return self.shard.query(request)  # type: ignore[arg-type]


def test_recall_skips_empty_shards_but_not_points_that_just_moved(
    tmp_path: Path, run: Runner
) -> None:
    """An empty fresh shard is left out (the indexed one runs every stage alone), and a
    point moved to the fresh shard while the indexed one was read is still found."""
    store = EdgeStore(tmp_path, index_threshold=20)
    run(store.open())
    run(store.create_collection(TENANT, "c", 4, Distance.COSINE))
    try:
        run(
            store.remember(
                TENANT, "c", [memory(i, f"memo {i}", unit(1, i, 0, 0)) for i in range(20)]
            )
        )
        run(store.wait_for_indexing())
        view = store._collections["d4-cosine"].view
        assert len(view.shards) == 2 and view.shards[1].info().points_count == 0
        assert len(run(store.recall(TENANT, "c", keyword_recall("memo")))) == 10
        run(store.remember(TENANT, "c", [memory(5, "memo 5 zebra", unit(1, 5, 0, 0))]))
        indexed, fresh = store._collections["d4-cosine"].view.shards
        assert fresh.info().points_count == 1
        logical = store._logical(TENANT, "c")
        flt = edge_memory.memories_only(logical.only, iso(NOW))
        late = (indexed, _LateFresh(fresh))
        hits = edge_memory.recall(late, keyword_recall("zebra"), flt, Distance.COSINE, None)  # type: ignore[arg-type]
        assert [m.id for m in hits] == [5]
    finally:
        run(store.close())


def test_a_recall_while_a_remember_moves_a_memory_finds_it(tmp_path: Path) -> None:
    """The shards are searched side by side: the fresh shard may be searched before a
    remember writes a memory there, and the segment holding it after the remember deleted
    it from there. The fresh shard is then searched again and the memory found."""

    async def body(store: EdgeStore) -> None:
        await store.create_collection(TENANT, "c", 4, Distance.COSINE)
        olds = [memory(i, f"memo {i}", unit(1, i, 0, 0)) for i in range(20)]
        await store.remember(TENANT, "c", olds)
        await store.wait_for_indexing()
        await store.remember(TENANT, "c", [memory(20, "memo 20", unit(0, 0, 1, 0))])
        coll = store._collections["d4-cosine"]
        indexed, fresh = coll.view.shards
        assert (indexed.info().points_count, fresh.info().points_count) == (20, 1)
        loop = asyncio.get_running_loop()
        fresh_searched = threading.Event()

        def move_once_fresh_was_searched() -> None:
            assert fresh_searched.wait(10)
            moved = memory(5, "memo 5 zebra", unit(1, 5, 0, 0))
            from_a_worker(loop, store.remember(TENANT, "c", [moved]))

        coll.view = edge_views.View(
            (  # type: ignore[arg-type]
                Hooked(indexed, "query", move_once_fresh_was_searched),
                Hooked(fresh, "query", fresh_searched.set, after=True),
            )
        )
        found = await store.recall(TENANT, "c", keyword_recall("zebra"))
        assert [m.id for m in found] == [5]

    with_store(tmp_path, body, index_threshold=20)
