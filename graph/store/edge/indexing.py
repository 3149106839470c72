"""Background indexing of the embedded store's collections.

A collection is made of live shards, and a point lives in at most one:

- fresh: receives every upsert; searched by brute force (the engine has no index
  until optimize() runs);
- sealed: a former fresh shard waiting for its background index build;
- indexed segments: HNSW-indexed shards holding the bulk of the collection.

When the fresh shard reaches index_threshold points it is sealed (a new fresh shard
takes the writes) and a build starts: a separate process (graph.store.edge.indexer)
optimizes a copy of the sealed shard, which becomes a new indexed segment. optimize()
holds the GIL for its whole duration and so must not run in this process. A build
covers only what was sealed, never the points indexed before, so its cost stays
bounded however large the collection grows.

Segments are merged in the background, as Qdrant's own optimizers merge segments:
the smallest ones, into a copy of the largest of them, up to merge_max_points in all
(the engine extends the largest one's graph rather than building it anew). A merge
runs once the writes pause and nothing waits to be indexed, or first when there are
more than max_segments segments: every query searches each segment. Deletes that
touch the shards a build replaces are journaled meanwhile and replayed on the new
shard, which then replaces them in the manifest (the commit point, see layout.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import shutil
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from qdrant_edge import EdgeShard

import graph
from graph.errors import NotFound, StoreUnavailable
from graph.settings import Quantization
from graph.store.edge import views
from graph.store.edge.layout import (
    Collection,
    DiskGuard,
    Manifest,
    create_shard,
    files_size,
    load_shards,
    remove,
)
from graph.store.edge.views import ShardRunner, View

logger = logging.getLogger(__name__)
# A build writes a copy of its sources, then a new segment about as large (the HNSW graph
# and the int8 copies on top of the vectors, less the holes a copy fills).
BUILD_SPACE_FACTOR = 2


class NoRoomForBuild(Exception):
    pass


INDEX_BEHIND_MESSAGE = "Indexing is behind the writes; retry later"


@dataclass(slots=True)
class BuildPlan:
    """One index build: where the child process works and what it will replace."""

    target: str  # the new segment: a copy of replaces[0], optimized
    replaces: tuple[str, ...]  # a sealed shard, or the segments merged (largest first)
    scratch: tuple[str, ...]  # copies of replaces[1:], moved into the target
    merge: bool


def merge_group(segment_points: dict[str, int], max_points: int) -> tuple[str, ...]:
    """The segments the next merge combines, largest first (the one copied, the others
    moved into it): the smallest segments while their total stays within max_points;
    none when fewer than two fit. Taking the smallest first, as tiered merging does,
    rewrites the fewest points for each segment it removes."""
    group: list[str] = []
    total = 0
    for name, points in sorted(segment_points.items(), key=lambda item: item[1]):
        if total + points > max_points:
            break
        group.append(name)
        total += points
    return tuple(reversed(group)) if len(group) >= 2 else ()


class BackgroundIndexing(ShardRunner):
    """The index builds of EdgeStore's physical collections (a part of EdgeStore)."""

    index_threshold: int
    index_backlog_max_points: int
    merge_max_points: int
    max_segments: int
    merge_idle_seconds: float = 1.0  # without writes, before merges may start
    quantization: Quantization
    backlog_wait_seconds: float
    retry_delay_seconds: float
    _collections: dict[str, Collection]
    _disk: DiskGuard

    def _get(self, name: str) -> Collection:
        """A physical collection."""
        coll = self._collections.get(name)
        if coll is None:
            raise NotFound(f"Collection '{name}' not found")
        return coll

    # Background indexing

    async def index_status(self, collection: str) -> dict[str, Any]:
        """What the background indexing has done for a physical collection (named as by
        physical_collections()), for metrics, logs and tests."""
        coll = self._get(collection)
        segments = len(coll.manifest.indexed)  # the view's first shards

        def counts(shards: tuple[EdgeShard, ...]) -> dict[str, int]:
            infos = [shard.info() for shard in shards]
            points = sum(i.points_count for i in infos)
            indexed = sum(i.points_count for i in infos[:segments])
            return {
                "points": points,
                "indexed_points": indexed,
                "unindexed_points": points - indexed,
                "indexed_vectors": sum(i.indexed_vectors_count for i in infos),
                "shards": len(shards),
                "segments": segments,
            }

        result: dict[str, Any] = await self._on_view(coll.view, False, counts)
        result.update(
            building=coll.build is not None,
            builds_run=coll.stats.runs,
            builds_failed=coll.stats.failures,
            build_seconds=list(coll.stats.durations),
            last_build=dict(coll.stats.last),
            last_error=coll.stats.last_error,
        )
        return result

    async def wait_for_indexing(self, collection: str | None = None) -> None:
        """Return once no index build or merge is running, due, or waiting for the writes
        to pause, for collection or for any."""
        while True:
            colls = [
                c
                for c in (
                    [self._collections.get(collection)]
                    if collection
                    else self._collections.values()
                )
                if c is not None
            ]
            builds = [c.build for c in colls if c.build is not None]
            if builds:
                await asyncio.wait(builds)
            elif any(c.idle_check is not None for c in colls):
                await asyncio.sleep(0.05)
            else:
                return

    def _maybe_start_build(self, coll: Collection) -> None:
        if coll.build is not None or coll.closing or self._executor is None:
            return
        if time.monotonic() < coll.retry_at:
            return
        if self._next_build(coll) is not None:
            coll.build = asyncio.create_task(self._build(coll), name=f"index-build-{coll.name}")
        elif coll.idle_check is None and self._merge_group(coll):
            # A merge waits for the writes to pause: look again then.
            wait = self.merge_idle_seconds - (time.monotonic() - coll.last_write)
            coll.idle_check = asyncio.get_running_loop().call_later(
                max(wait, 0.0), self._idle_check, coll
            )

    def _idle_check(self, coll: Collection) -> None:
        coll.idle_check = None
        self._maybe_start_build(coll)

    def _merge_group(self, coll: Collection) -> tuple[str, ...]:
        return merge_group(coll.segment_points, self.merge_max_points)

    def _next_build(self, coll: Collection) -> tuple[str, ...] | None:
        """What to build next: the segments to merge, () to index the sealed or fresh
        shard, None for nothing. A sealed shard comes first (it is searched by brute
        force). Merges wait while points are being written, so that the builds keep up
        with them (every merge rewrites points already indexed), unless there are more
        than max_segments segments: every query searches each one."""
        m = coll.manifest
        if m.sealed is not None:
            return ()
        chunk_due = coll.fresh_points >= self.index_threshold
        group = self._merge_group(coll)
        if group:
            idle = time.monotonic() - coll.last_write >= self.merge_idle_seconds
            if len(m.indexed) > self.max_segments or (idle and not chunk_due):
                return group
        return () if chunk_due else None

    async def _wait_for_backlog(self, coll: Collection) -> None:
        """Hold a write while the collection's unindexed points (fresh and sealed) reach
        index_backlog_max_points and a build is under way to index some: queries then
        never search more than that by brute force, and ingest slows to the pace of
        indexing (Qdrant's prevent_unoptimized). StoreUnavailable after
        backlog_wait_seconds."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.backlog_wait_seconds
        while (
            coll.build is not None
            and coll.fresh_points + coll.sealed_points >= self.index_backlog_max_points
        ):
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise StoreUnavailable(INDEX_BEHIND_MESSAGE)
            await asyncio.wait([coll.build], timeout=remaining)

    async def _stop_build(self, coll: Collection) -> None:
        coll.closing = True
        if coll.idle_check is not None:  # a merge waiting for the writes to pause
            coll.idle_check.cancel()
            coll.idle_check = None
        if coll.process is not None and coll.process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                coll.process.kill()
        if coll.build is not None:
            await asyncio.wait([coll.build])

    async def _build(self, coll: Collection) -> None:
        started = time.monotonic()
        plan: BuildPlan | None = None
        installed = False
        try:
            plan = await self._prepare_build(coll)
            if plan is None:
                return
            stats = await self._run_indexer(coll, plan)
            installed = await self._install_build(coll, plan)
            if installed:
                duration = time.monotonic() - started
                coll.stats.runs += 1
                coll.stats.durations = [*coll.stats.durations[-9:], round(duration, 3)]
                coll.stats.last = {**stats, "seconds": round(duration, 3)}
                logger.info("Indexed collection %r in %.1fs: %s", coll.name, duration, stats)
        except Exception as exc:
            self._build_failed(coll, exc)
        finally:
            coll.journal = None
            coll.process = None
            if plan is not None:
                leftovers = [*plan.scratch, *([] if installed else [plan.target])]
                with contextlib.suppress(Exception):
                    await self._run(self._remove_all, [coll.path / n for n in leftovers])
            coll.build = None
        self._maybe_start_build(coll)

    def _build_failed(self, coll: Collection, exc: Exception) -> None:
        if coll.closing:
            return  # killed on purpose
        coll.stats.failures += 1
        coll.stats.last_error = f"{type(exc).__name__}: {exc}"
        coll.retry_at = time.monotonic() + self.retry_delay_seconds
        if isinstance(exc, NoRoomForBuild):  # said in full, no traceback to add
            logger.error(
                "Index build not started: %s; retrying in %ss", exc, self.retry_delay_seconds
            )
        else:
            logger.error(
                "Index build of collection %r failed; retrying in %ss",
                coll.name,
                self.retry_delay_seconds,
                exc_info=exc,
            )
        asyncio.get_running_loop().call_later(
            self.retry_delay_seconds, self._maybe_start_build, coll
        )

    @staticmethod
    def _remove_all(paths: list[Path]) -> None:
        for path in paths:
            remove(path)

    async def _prepare_build(self, coll: Collection) -> BuildPlan | None:
        """Seal the fresh shard if a chunk is due, and copy what the build reads; from
        here on, deletes that touch those shards are journaled."""
        async with coll.lock:
            group = self._next_build(coll)
            if coll.closing or group is None:
                return None
            await self._drain(coll.view, writers_only=True)
            sources = group or (coll.manifest.sealed or coll.manifest.fresh,)
            await asyncio.to_thread(self._check_room, coll, sources)  # not an engine call
            if not group and coll.manifest.sealed is None:
                await self._seal(coll)
            replaces = group or (coll.manifest.sealed,)
            plan = BuildPlan(
                target=coll.new_shard_name(),
                replaces=tuple(n for n in replaces if n is not None),
                scratch=tuple(coll.new_shard_name() for _ in replaces[1:]),
                merge=bool(group),
            )
            await self._run(self._copy_sources, coll, plan)
            coll.journal = []
            return plan

    async def _seal(self, coll: Collection) -> None:
        m = coll.manifest
        fresh = coll.new_shard_name()
        coll.shards[fresh] = await self._run(
            create_shard, str(coll.path / fresh), m, self.quantization
        )
        sealed = replace(coll.manifest, sealed=m.fresh, fresh=fresh)
        await self._run(sealed.write, coll.path)
        coll.set_manifest(sealed)
        coll.sealed_points, coll.fresh_points = coll.fresh_points, 0

    def _check_room(self, coll: Collection, sources: tuple[str, ...]) -> None:
        """A build copies its sources and writes a new segment about as large: refused when
        that would leave less than MIN_FREE_DISK_MB, where the store's own writes stop (a
        write through a map onto a full disk kills the process). Writes go on meanwhile
        and the unindexed points are searched by brute force until there is room."""
        needed = BUILD_SPACE_FACTOR * sum(files_size(coll.path / name) for name in sources)
        if not self._disk.room_for(needed):
            raise NoRoomForBuild(
                f"an index build of collection {coll.name!r} needs ~{needed // 2**20} MiB "
                f"and would leave less than {self._disk.min_free_bytes // 2**20} MiB free "
                f"in {self._disk.data_dir}"
            )

    @staticmethod
    def _copy_sources(coll: Collection, plan: BuildPlan) -> None:
        for name in plan.replaces:
            coll.shards[name].flush()
        for name, copy in zip(plan.replaces, (plan.target, *plan.scratch), strict=True):
            shutil.copytree(coll.path / name, coll.path / copy)

    async def _run_indexer(self, coll: Collection, plan: BuildPlan) -> dict[str, Any]:
        m = coll.manifest
        args = [
            "-m",
            "graph.store.edge.indexer",
            "--target",
            str(coll.path / plan.target),
            "--dimension",
            str(m.dimension),
            "--distance",
            m.distance.value,
            "--quantization",
            self.quantization.value,
            "--datatype",
            m.datatype.value,
            "--parent-pid",
            str(os.getpid()),
            *(arg for name in plan.scratch for arg in ("--source", str(coll.path / name))),
        ]
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            *args,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=child_env(),
        )
        coll.process = process
        if coll.closing:
            process.kill()
        try:
            out, err = await process.communicate()
        except BaseException:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            await process.wait()
            raise
        if process.returncode != 0:
            tail = err.decode("utf-8", "replace").strip()[-2000:]
            raise RuntimeError(f"indexer exited with {process.returncode}: {tail}")
        stats: dict[str, Any] = json.loads(out.decode().strip().splitlines()[-1])
        return stats

    async def _install_build(self, coll: Collection, plan: BuildPlan) -> bool:
        """Replay the journal on the built shard and make it the indexed one."""
        (built,) = await self._run(load_shards, [coll.path / plan.target])
        retired = [coll.shards[n] for n in plan.replaces]
        try:
            old_view = await self._swap_in(coll, plan, built)
        except BaseException:
            await self._run(built.close)
            raise
        if old_view is None:
            await self._run(built.close)
            return False
        await self._drain(old_view)
        await self._run(self._retire, retired, [coll.path / n for n in plan.replaces])
        return True

    async def _swap_in(self, coll: Collection, plan: BuildPlan, built: EdgeShard) -> View | None:
        """Commit the built shard in the manifest; returns the view it retired."""
        assert coll.journal is not None
        replayed = len(coll.journal)
        # Most of the journal is replayed before taking the lock, so writes wait only
        # for what came in meanwhile.
        await self._run(views.replay, built, coll.journal[:replayed])
        await self._run(built.flush)
        async with coll.lock:
            if coll.closing:
                return None
            await self._drain(coll.view, writers_only=True)
            await self._run(views.replay, built, coll.journal[replayed:])
            final = installed(coll.manifest, plan)
            await self._run(final.write, coll.path)
            coll.shards[plan.target] = built
            for name in plan.replaces:
                del coll.shards[name]
                coll.segment_points.pop(name, None)
            coll.segment_points[plan.target] = (await self._run(built.info)).points_count
            coll.journal = None
            if not plan.merge:
                coll.sealed_points = 0
            return coll.set_manifest(final)

    @staticmethod
    def _retire(shards: list[EdgeShard], paths: list[Path]) -> None:
        for shard in shards:
            shard.close()
        for path in paths:
            shutil.rmtree(path, ignore_errors=True)


def installed(manifest: Manifest, plan: BuildPlan) -> Manifest:
    """The manifest with plan's target in place of the shards it replaces: a merge's in
    the place of its largest segment, a new segment after the others."""
    if not plan.merge:
        return replace(manifest, indexed=(*manifest.indexed, plan.target), sealed=None)
    base, *merged = plan.replaces
    indexed = tuple(plan.target if n == base else n for n in manifest.indexed if n not in merged)
    return replace(manifest, indexed=indexed)


def child_env() -> dict[str, str]:
    """The indexer imports this package even when it is not installed."""
    env = dict(os.environ)
    root = str(Path(graph.__file__).resolve().parent.parent)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
    return env
