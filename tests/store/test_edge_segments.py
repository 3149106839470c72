"""Bounded index builds: each build indexes only the points sealed since the last one
(a new indexed segment), and segments are merged in the background, as Qdrant's own
optimizers merge segments, up to INDEX_MERGE_MAX_POINTS."""

from __future__ import annotations

import asyncio
import json
import logging
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
from qdrant_edge import EdgeShard, QueryRequest, UpdateOperation

from graph.settings import Distance, Quantization
from graph.store.edge import EdgeStore, views
from graph.store.edge.indexing import BuildPlan, installed, merge_group
from graph.store.edge.layout import Manifest, files_size
from graph.store.edge.translate import edge_points, nearest_request, search_params
from graph.store.models import Point
from graph.store.tenancy import client_id
from tests.helpers import tmpfs
from tests.store.conftest import TENANT
from tests.store.test_edge import (
    DIM,
    build_running,
    fill,
    index_status,
    physical,
    scroll_ids,
    vectors,
    wait_until_building,
    with_store,
)

CHUNK = 600
HNSW_EF = 128


async def wait_until_merging(store: EdgeStore, name: str) -> None:
    """Until a merge's child process runs (two segments, nothing sealed)."""
    coll = physical(store, name)
    deadline = time.monotonic() + 30
    while not (coll.manifest.sealed is None and len(coll.manifest.indexed) == 2):
        assert time.monotonic() < deadline, "no merge started"
        await asyncio.sleep(0.005)
    await wait_until_building(store, name)


def manifest_of(tmp_path: Path) -> dict[str, object]:
    data: dict[str, object] = json.loads(
        (tmp_path / "data/collections/d64-cosine/manifest.json").read_text()
    )
    return data


@pytest.mark.parametrize(
    ("sizes", "cap", "expected"),
    [
        ({"a": 10, "b": 5}, 100, ("a", "b")),
        ({"a": 10}, 100, ()),
        ({"big": 90, "s1": 5, "s2": 8, "s3": 30}, 50, ("s3", "s2", "s1")),
        ({"big": 90, "s1": 5}, 50, ()),  # the big one does not fit: nothing to merge
        ({"a": 0, "b": 0}, 1, ("b", "a")),  # emptied by deletes: merged away
    ],
)
def test_merge_group_takes_the_smallest_within_the_cap(
    sizes: dict[str, int], cap: int, expected: tuple[str, ...]
) -> None:
    group = merge_group(sizes, cap)
    assert set(group) == set(expected) and len(group) == len(expected)
    if group:  # the largest first: it is the one copied, the others are moved into it
        assert sizes[group[0]] == max(sizes[n] for n in group)


def test_installed_manifest_keeps_every_other_shard() -> None:
    m = Manifest(4, Distance.COSINE, fresh="f", indexed=("s1", "s2", "s3"), sealed="x")
    chunk = installed(m, BuildPlan(target="t", replaces=("x",), scratch=(), merge=False))
    assert (chunk.indexed, chunk.sealed, chunk.fresh) == (("s1", "s2", "s3", "t"), None, "f")
    m = Manifest(4, Distance.COSINE, fresh="f", indexed=("s1", "s2", "s3"))
    merged = installed(m, BuildPlan(target="t", replaces=("s2", "s3"), scratch=("c",), merge=True))
    assert (merged.indexed, merged.fresh) == (("s1", "t"), "f")


async def fill_in_chunks(store: EdgeStore, vecs: list[list[float]], chunks: int) -> None:
    """chunks * CHUNK points in "c", each chunk indexed (and merged) before the next."""
    await store.create_collection(TENANT, "c", DIM, Distance.COSINE)
    for chunk in range(chunks):
        await fill(store, "c", vecs, chunk * CHUNK, (chunk + 1) * CHUNK, batch=CHUNK)
        await store.wait_for_indexing()


def test_each_build_indexes_only_new_points_and_idle_segments_merge(tmp_path: Path) -> None:
    vecs = vectors(4 * CHUNK)

    async def body(store: EdgeStore) -> None:
        await fill_in_chunks(store, vecs, 4)
        status = await index_status(store, "c")
        assert (status["points"], status["indexed_points"]) == (4 * CHUNK, 4 * CHUNK)
        assert status["builds_failed"] == 0
        # Each chunk is indexed alone, then merged into the segment before it once the
        # writes pause: 4 chunk builds and 3 merges, each moving just the new chunk into
        # a copy of the large segment (whose graph the engine extends), down to one.
        assert status["builds_run"] == 7
        assert status["last_build"]["moved"] == CHUNK
        assert status["segments"] == 1
        assert status["indexed_vectors"] >= 4 * CHUNK
        for i in (0, CHUNK, 3 * CHUNK + 7):
            [hit] = await store.query(TENANT, "c", vecs[i], limit=1)
            assert hit.id == i
        assert sorted(await scroll_ids(store, "c")) == list(range(4 * CHUNK))

    with_store(tmp_path, body, index_threshold=CHUNK, merge_max_points=10 * CHUNK)
    manifest = manifest_of(tmp_path)
    assert isinstance(manifest["indexed"], list) and len(manifest["indexed"]) == 1
    shards = sorted(p.name for p in (tmp_path / "data/collections/d64-cosine").glob("shard-*"))
    assert shards == sorted([*manifest["indexed"], manifest["fresh"]])

    async def reopened(store: EdgeStore) -> None:
        status = await index_status(store, "c")
        assert (status["points"], status["indexed_points"], status["segments"]) == (
            4 * CHUNK,
            4 * CHUNK,
            1,
        )
        [hit] = await store.query(TENANT, "c", vecs[5], limit=1)
        assert hit.id == 5

    with_store(tmp_path, reopened, index_threshold=CHUNK, merge_max_points=10 * CHUNK)


def test_segments_are_not_merged_past_the_cap(tmp_path: Path) -> None:
    vecs = vectors(3 * CHUNK)

    async def body(store: EdgeStore) -> None:
        await fill_in_chunks(store, vecs, 3)
        status = await index_status(store, "c")
        # Two chunks fit under the cap, a third does not: one merge, two segments.
        assert (status["segments"], status["builds_run"]) == (2, 4)
        assert status["indexed_points"] == 3 * CHUNK
        sizes = sorted(physical(store, "c").segment_points.values())
        assert sizes == [CHUNK, 2 * CHUNK]
        hits = await store.query(TENANT, "c", vecs[2 * CHUNK + 1], limit=1)
        assert [h.id for h in hits] == [2 * CHUNK + 1]
        # The shards are searched side by side; each one's hits come back in its place.
        shards = physical(store, "c").view.shards
        request = nearest_request(
            vecs[CHUNK + 2],
            None,
            limit=5,
            offset=0,
            shards=len(shards),
            score_threshold=None,
            with_vector=False,
            params=None,
        )
        sequential = [[(h.id, h.score) for h in shard.query(request)] for shard in shards]
        side_by_side = views.query_each(shards, request)
        assert [[(h.id, h.score) for h in hits] for hits in side_by_side] == sequential

    with_store(tmp_path, body, index_threshold=CHUNK, merge_max_points=2 * CHUNK)


def test_a_query_over_several_shards_reads_payloads_only_for_the_hits_it_keeps(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two segments and a fresh shard: each is searched for ids and scores, and the
    payloads and vectors are read for the best hits alone (views._merged). The answer is
    the one every shard searched with its payloads would give; a point deleted between
    the search and the read is left out."""
    vecs = vectors(2 * CHUNK + 10)

    async def body(store: EdgeStore) -> None:
        await fill_in_chunks(store, vecs, 2)
        await fill(store, "c", vecs, 2 * CHUNK, 2 * CHUNK + 10)
        shards = physical(store, "c").view.shards
        assert len(shards) == 3 and all(s.info().points_count for s in shards)
        probe = vecs[CHUNK + 3]
        whole = nearest_request(
            probe,
            None,
            limit=8,
            offset=0,
            shards=3,
            score_threshold=None,
            with_vector=True,
            params=search_params(HNSW_EF, Quantization.SCALAR),
        )
        every = sorted((h for shard in shards for h in shard.query(whole)), key=lambda h: -h.score)[
            :8
        ]
        hits = await store.query(TENANT, "c", probe, limit=8, with_vector=True)
        assert [(h.id, h.score) for h in hits] == [(client_id(e.payload), e.score) for e in every]
        assert hits[0].id == CHUNK + 3
        for hit in hits:
            assert isinstance(hit.id, int)  # the integer ids upserted, indexing vecs
            assert hit.payload == {"i": hit.id, "parity": "even" if hit.id % 2 == 0 else "odd"}
            assert hit.vector == pytest.approx(
                [x / sum(y * y for y in vecs[hit.id]) ** 0.5 for x in vecs[hit.id]], rel=1e-5
            )
        paged = await store.query(TENANT, "c", probe, limit=3, offset=2)
        assert [h.id for h in paged] == [h.id for h in hits[2:5]]

        # Between the first search and its payload reads, the best hit is deleted and
        # the second overwritten (it moves to the fresh shard): searched once more, the
        # one is gone and the other found in its new version.
        searched = views.query_each
        partition = store._logical(TENANT, "c").entry.partition
        changed: list[str] = []

        def then_changed(found: tuple[EdgeShard, ...], request: QueryRequest) -> list[list[Any]]:
            results = searched(found, request)
            if not changed:
                first, second = sorted(
                    (h for hits in results for h in hits), key=lambda h: -h.score
                )[:2]
                moved = hits[1].id
                assert isinstance(moved, int)
                for shard in found:
                    shard.update(UpdateOperation.delete_points([first.id, second.id]))
                [point] = edge_points([Point(moved, vecs[moved], {"moved": True})], DIM, partition)
                found[-1].update(UpdateOperation.upsert_points([point]))
                changed.append("yes")
            return results

        monkeypatch.setattr(views, "query_each", then_changed)
        after = await store.query(TENANT, "c", probe, limit=8)
        assert changed and hits[0].id not in [h.id for h in after]
        assert [(h.id, h.score) for h in after[:7]] == [(h.id, h.score) for h in hits[1:8]]
        assert after[0].payload == {"moved": True}
        assert len(after) == 8

    with_store(
        tmp_path,
        body,
        index_threshold=CHUNK,
        merge_max_points=CHUNK,
        hnsw_ef=HNSW_EF,
        quantization=Quantization.SCALAR,
    )


def test_writes_during_a_merge_are_not_lost(tmp_path: Path) -> None:
    vecs = vectors(2 * CHUNK + 10)

    async def body(store: EdgeStore) -> None:
        await store.create_collection(TENANT, "c", DIM, Distance.COSINE)
        await fill(store, "c", vecs, 0, CHUNK, batch=CHUNK)
        await store.wait_for_indexing()
        await fill(store, "c", vecs, CHUNK, 2 * CHUNK, batch=CHUNK)
        # The second chunk's build, then the merge of the two segments.
        await wait_until_merging(store, "c")
        # Each touches a segment the merge is copying.
        assert await store.delete_ids(TENANT, "c", [0, CHUNK]) == 2
        await store.upsert(TENANT, "c", [Point(7, vecs[7], {"i": 7, "v": "new"})])
        await fill(store, "c", vecs, 2 * CHUNK, 2 * CHUNK + 10)
        assert build_running(store, "c"), "the merge ended before the writes: make it bigger"
        await store.wait_for_indexing()

        status = await index_status(store, "c")
        assert status["segments"] == 1 and status["builds_failed"] == 0
        assert await store.retrieve(TENANT, "c", [0, CHUNK]) == []
        assert [r.payload for r in await store.retrieve(TENANT, "c", [7])] == [{"i": 7, "v": "new"}]
        ids = await scroll_ids(store, "c")
        assert len(ids) == len(set(ids)) == 2 * CHUNK + 10 - 2
        hits = await store.query(TENANT, "c", vecs[7], limit=3)
        assert [h.id for h in hits].count(7) == 1

    with_store(tmp_path, body, index_threshold=CHUNK, merge_max_points=10 * CHUNK)


def test_a_store_with_one_indexed_shard_named_as_before_opens(tmp_path: Path) -> None:
    """Manifests written before segments name the indexed shard as a string."""
    vecs = vectors(CHUNK)

    async def body(store: EdgeStore) -> None:
        await store.create_collection(TENANT, "c", DIM, Distance.COSINE)
        await fill(store, "c", vecs, 0, CHUNK, batch=CHUNK)
        await store.wait_for_indexing()

    with_store(tmp_path, body, index_threshold=CHUNK)
    path = tmp_path / "data/collections/d64-cosine/manifest.json"
    manifest = json.loads(path.read_text())
    [segment] = manifest["indexed"]
    path.write_text(json.dumps({**manifest, "indexed": segment}))

    async def reopened(store: EdgeStore) -> None:
        status = await index_status(store, "c")
        assert (status["points"], status["indexed_points"], status["segments"]) == (CHUNK, CHUNK, 1)
        [hit] = await store.query(TENANT, "c", vecs[3], limit=1)
        assert hit.id == 3

    with_store(tmp_path, reopened, index_threshold=CHUNK)


@pytest.mark.parametrize("how", ["delete", "close"])
def test_a_merge_waiting_for_the_writes_to_pause_is_called_off_with_its_collection(
    tmp_path: Path, how: str
) -> None:
    """Two indexed segments and recent writes: a merge waits on a timer. Deleting the
    collection, or closing the store, cancels that timer rather than leaving it to fire
    on a closed collection."""
    vecs = vectors(2 * CHUNK)

    async def body(store: EdgeStore) -> None:
        store.merge_idle_seconds = 3600.0
        await store.create_collection(TENANT, "c", DIM, Distance.COSINE)
        coll = physical(store, "c")
        for chunk in range(2):
            await fill(store, "c", vecs, chunk * CHUNK, (chunk + 1) * CHUNK, batch=CHUNK)
            while coll.build is not None:
                await asyncio.wait([coll.build])
        waiting = coll.idle_check
        assert waiting is not None and len(coll.manifest.indexed) == 2
        if how == "delete":
            await store.delete_collection(TENANT, "c")
        else:
            await store.close()
        assert waiting.cancelled() and coll.idle_check is None

    with_store(tmp_path, body, index_threshold=CHUNK, merge_max_points=10 * CHUNK)


def test_an_index_build_without_room_on_the_disk_waits_for_it(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A build copies its shard and writes a new segment about as large: one that would
    leave less than MIN_FREE_DISK_MB free is not started (the engine writes through maps,
    and a full disk under them kills the process). Writes and queries go on, the refusal
    is counted and said in one line, and once there is room the retry indexes the points."""
    points = 50
    vecs = vectors(points)

    async def main(mount: Path) -> None:
        # What a build of this shard would copy, from a store that never builds.
        probe = EdgeStore(mount / "probe", index_threshold=10**9)
        await probe.open()
        try:
            await probe.create_collection(TENANT, "c", DIM, Distance.COSINE)
            await fill(probe, "c", vecs, 0, points)
            shard = physical(probe, "c")
            size = files_size(shard.path / shard.manifest.fresh)
        finally:
            await probe.close()
        shutil.rmtree(mount / "probe")
        # Room for the store's writes (its shard's files are sparse), not for 2 x size more.
        minimum = shutil.disk_usage(mount).free - size
        store = EdgeStore(
            mount / "data", index_threshold=points, retry_delay_seconds=0.5, min_free_bytes=minimum
        )
        await store.open()
        try:
            await store.create_collection(TENANT, "c", DIM, Distance.COSINE)
            await fill(store, "c", vecs, 0, points)
            await store.wait_for_indexing()
            status = await index_status(store, "c")
            assert status["builds_failed"] >= 1 and status["indexed_points"] == 0, status
            assert "needs" in status["last_error"], status["last_error"]
            coll = physical(store, "c")
            assert [p.name for p in coll.path.glob("shard-*")] == [coll.manifest.fresh]
            [hit] = await store.query(TENANT, "c", vecs[7], limit=1)
            assert hit.id == 7
            subprocess.run(["mount", "-o", "remount,size=1536m", str(mount)], check=True)
            deadline = time.monotonic() + 120
            while (await index_status(store, "c"))["indexed_points"] < points:
                assert time.monotonic() < deadline, await index_status(store, "c")
                await asyncio.sleep(0.1)
            [hit] = await store.query(TENANT, "c", vecs[7], limit=1)
            assert hit.id == 7
        finally:
            await store.close()

    with (
        caplog.at_level(logging.ERROR, logger="graph.store.edge.indexing"),
        tmpfs(tmp_path / "small", "size=768m") as mount,
    ):
        asyncio.run(main(mount))
    refusals = [r for r in caplog.records if r.getMessage().startswith("Index build not started")]
    assert refusals and all(r.exc_info is None for r in refusals)
