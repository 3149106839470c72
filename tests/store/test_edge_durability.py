"""Acknowledged upserts survive kill -9 of the process that holds the embedded store.

A child process opens an EdgeStore and upserts batches in a loop, printing the ids of
each batch once upsert() has returned. The test kills it with SIGKILL (no close(), no
flush) and reopens the directory: every acknowledged point must be there, once.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest

from graph.store.edge import EdgeStore
from graph.store.models import PointId
from tests.store.conftest import TENANT

DIM = 8
ROOT = Path(__file__).resolve().parents[2]

WRITER = textwrap.dedent(
    """
    import asyncio, json, sys
    from pathlib import Path

    from graph.settings import Distance
    from graph.store.edge import EdgeStore
    from graph.store.models import Point

    async def main() -> None:
        store = EdgeStore(Path(sys.argv[1]), index_threshold=int(sys.argv[2]))
        await store.open()
        await store.ensure_collection("t1", "c", 8, Distance.COSINE)
        coll = store._catalog[("t1", "c")].coll
        start = 0
        while True:
            ids = list(range(start, start + 20))
            await store.upsert("t1", "c", [Point(i, [1.0, i % 7, i % 5, 1, 0, 0, 0, 1], {"i": i})
                                     for i in ids])
            building = coll.process is not None and coll.process.returncode is None
            print(json.dumps({"ids": ids, "building": building}), flush=True)
            start += 20

    asyncio.run(main())
    """
)


def write_until_killed(tmp_path: Path, index_threshold: int, want: int, mid_build: bool) -> int:
    """Run the writer, SIGKILL it after `want` acknowledged points (and, with mid_build,
    while its index build is running); returns how many points were acknowledged."""
    script = tmp_path / "writer.py"
    script.write_text(WRITER)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    child = subprocess.Popen(
        [sys.executable, str(script), str(tmp_path / "data"), str(index_threshold)],
        stdout=subprocess.PIPE,
        env=env,
        text=True,
    )
    acknowledged = 0
    deadline = time.monotonic() + 30
    try:
        assert child.stdout is not None
        for line in child.stdout:
            batch = json.loads(line)
            assert batch["ids"][0] == acknowledged  # in order, nothing skipped
            acknowledged += len(batch["ids"])
            if acknowledged >= want and (batch["building"] or not mid_build):
                break
            assert time.monotonic() < deadline, "the writer never reached the kill point"
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=10)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
        if child.stdout is not None:
            child.stdout.close()
    assert child.returncode == -signal.SIGKILL
    return acknowledged


def reopen_and_check(tmp_path: Path, acknowledged: int) -> dict[str, Any]:
    async def main() -> dict[str, Any]:
        store = EdgeStore(tmp_path / "data", index_threshold=10**9)
        await store.open()
        try:
            found = await store.retrieve(TENANT, "c", list(range(acknowledged)))
            assert [r.id for r in found] == list(range(acknowledged))
            assert all(r.payload == {"i": r.id} for r in found)
            ids: list[PointId] = []
            cursor: PointId | None = None
            while True:
                page = await store.scroll(TENANT, "c", limit=1_000, cursor=cursor)
                ids.extend(r.id for r in page.points)
                if page.next_cursor is None:
                    break
                cursor = page.next_cursor
            assert len(ids) == len(set(ids)) >= acknowledged  # unacknowledged may be there too
            assert await store.count(TENANT, "c") == len(ids)
            return await store.index_status(store._catalog[(TENANT, "c")].coll.name)
        finally:
            await store.close()

    return asyncio.run(main())


@pytest.mark.slow
def test_acknowledged_upserts_survive_kill_9(tmp_path: Path) -> None:
    acknowledged = write_until_killed(tmp_path, index_threshold=10**9, want=2_000, mid_build=False)
    reopen_and_check(tmp_path, acknowledged)


@pytest.mark.slow
def test_acknowledged_upserts_survive_kill_9_during_an_index_build(tmp_path: Path) -> None:
    acknowledged = write_until_killed(tmp_path, index_threshold=500, want=1_000, mid_build=True)
    collection = tmp_path / "data/collections/d8-cosine"

    def live_entries() -> set[str]:
        manifest = json.loads((collection / "manifest.json").read_text())
        assert manifest["sealed"] is not None  # the build never got to replace it
        return {"manifest.json", *manifest["indexed"], manifest["sealed"], manifest["fresh"]}

    # Killed mid-build: the build's copies are still on disk next to the live shards.
    assert {p.name for p in collection.iterdir()} > live_entries() - {None}
    status = reopen_and_check(tmp_path, acknowledged)
    assert {p.name for p in collection.iterdir()} == live_entries() - {None}
    assert status["points"] == status["unindexed_points"] + status["indexed_points"]
