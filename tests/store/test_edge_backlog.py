"""The unindexed backlog of the embedded store stays bounded under sustained writes
(INDEX_BACKLOG_MAX_POINTS): writes wait for the background index build instead of
piling up in a fresh shard that every query searches by brute force.

Real engine, real indexer child processes, a tiny bound.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from graph.errors import StoreUnavailable
from graph.settings import Distance
from graph.store.edge import EdgeStore
from graph.store.models import Point
from tests.store.conftest import TENANT
from tests.store.test_edge import DIM, index_status, vectors, wait_until_building, with_store

POINTS = 1_200
BATCH = 100
THRESHOLD = 400
BACKLOG = 800


async def write(store: EdgeStore, vecs: list[list[float]], start: int, stop: int) -> None:
    await store.upsert(TENANT, "c", [Point(i, vecs[i], {"i": i}) for i in range(start, stop)])


def test_sustained_writes_keep_the_backlog_under_the_bound(tmp_path: Path) -> None:
    vecs = vectors(POINTS)

    async def body(store: EdgeStore) -> None:
        await store.create_collection(TENANT, "c", DIM, Distance.COSINE)
        backlog = []
        for start in range(0, POINTS, BATCH):
            await write(store, vecs, start, start + BATCH)
            backlog.append((await index_status(store, "c"))["unindexed_points"])
        # Never more than the bound plus the one batch admitted at it.
        assert max(backlog) <= BACKLOG + BATCH
        # Without the bound the writes (milliseconds) would outrun the builds (seconds).
        assert (await index_status(store, "c"))["builds_run"] >= 1
        assert await store.count(TENANT, "c") == POINTS
        for i in (0, 399, 777, POINTS - 1):
            [hit] = await store.query(TENANT, "c", vecs[i], limit=1)
            assert hit.id == i
        await store.wait_for_indexing()

    with_store(
        tmp_path,
        body,
        index_threshold=THRESHOLD,
        index_backlog_max_points=BACKLOG,
        backlog_wait_seconds=600,  # builds are slow on a loaded machine
    )

    async def reopened(store: EdgeStore) -> None:
        assert await store.count(TENANT, "c") == POINTS
        [hit] = await store.query(TENANT, "c", vecs[5], limit=1)
        assert hit.id == 5

    with_store(tmp_path, reopened, index_threshold=THRESHOLD, index_backlog_max_points=BACKLOG)


def test_a_write_held_too_long_is_refused_and_writes_nothing(tmp_path: Path) -> None:
    vecs = vectors(THRESHOLD + BATCH)

    async def body(store: EdgeStore) -> None:
        await store.create_collection(TENANT, "c", DIM, Distance.COSINE)
        await write(store, vecs, 0, THRESHOLD)  # seals THRESHOLD points: the backlog
        await wait_until_building(store, "c")
        with pytest.raises(StoreUnavailable):
            await write(store, vecs, THRESHOLD, THRESHOLD + BATCH)
        assert await store.count(TENANT, "c") == THRESHOLD
        await store.wait_for_indexing()
        await write(store, vecs, THRESHOLD, THRESHOLD + BATCH)  # the build made room
        assert await store.count(TENANT, "c") == THRESHOLD + BATCH

    with_store(
        tmp_path,
        body,
        index_threshold=THRESHOLD,
        index_backlog_max_points=THRESHOLD,
        backlog_wait_seconds=0.05,
    )
