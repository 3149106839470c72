"""The embedded adapter: qdrant-edge shards in this process, one directory per physical
collection.

Layout under data_dir:

    .lock                                  flock held while a store has the directory open
    catalog.json                           the logical collections: tenant, name, shape
    collections/<name>/manifest.json       dimension, distance, the live shard directories
    collections/<name>/shard-000001/ ...   one qdrant-edge shard each (WAL on)

Tenants' logical collections live inside physical collections, one per vector shape,
partitioned by a tenant-indexed payload key (graph/store/tenancy.py). The rest of this
module is about physical collections, called collections below.

A collection is made of up to three live shards, and a point lives in at most one:

- fresh: receives every upsert; searched by brute force (the engine has no index
  until optimize() runs);
- sealed: a former fresh shard waiting for its background index build;
- indexed: the HNSW-indexed bulk of the collection.

When the fresh shard reaches index_threshold points it is sealed (a new fresh shard
takes the writes) and a build starts: the sealed and indexed shards are copied, and
a separate process (graph.store._indexer) merges the copies and runs optimize(),
which holds the GIL for its whole duration and so must not run in this process.
Deletes that touch the sealed or indexed shard meanwhile are journaled and replayed
on the new shard, which then replaces both in the manifest. The manifest, replaced
atomically, is the commit point: it only ever names complete shards, and anything
else found in a collection directory on open() is a leftover and is deleted.

Every engine call runs in a worker thread. Reads take no lock: they use the current
`_View` (an immutable tuple of live shards) and are counted on it, so that shards are
closed only once no call uses them. Writes are serialised per collection.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import heapq
import json
import logging
import math
import os
import shutil
import sys
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
from qdrant_edge import (
    CountRequest,
    EdgeShard,
    FieldCondition,
    Query,
    QueryRequest,
    RangeFloat,
    ScrollRequest,
    SearchParams,
    UpdateOperation,
)
from qdrant_edge import Filter as EdgeFilter
from qdrant_edge import MatchAny as EdgeMatchAny
from qdrant_edge import MatchExcept as EdgeMatchExcept
from qdrant_edge import MatchValue as EdgeMatchValue
from qdrant_edge import Point as EdgePoint
from qdrant_edge import Record as EdgeRecord
from qdrant_edge import ScoredPoint as EdgeScoredPoint

import graph
from graph.errors import AlreadyExists, ApiError, BadUserInput, NotFound, StoreUnavailable
from graph.settings import Distance, Settings
from graph.store._indexer import create_shard
from graph.store.base import VectorStore
from graph.store.models import (
    CollectionInfo,
    Condition,
    Filter,
    Match,
    Point,
    PointId,
    Record,
    ScoredPoint,
    ScrollPage,
    check_finite,
    check_limit,
    check_vector_dimension,
    normalize_ids,
    normalize_point_id,
    validate_collection_name,
    validate_dimension,
)
from graph.store.tenancy import (
    CollectionEntry,
    client_record,
    client_scored,
    owns,
    scoped_filter,
    stored_id,
    stored_payload,
    validate_tenant,
)

logger = logging.getLogger(__name__)

T = TypeVar("T")
EdgeId = int | str | uuid.UUID
# A delete journaled during a build: the ids, or the filter, it removed.
JournalEntry = list[PointId] | EdgeFilter

MANIFEST = "manifest.json"
CATALOG = "catalog.json"
COLLECTIONS = "collections"
DISK_FULL_MESSAGE = "The vector store is out of disk space; writes are refused"
LOCK_FILE = ".lock"
TRASH_PREFIX = ".trash-"
SHARD_PREFIX = "shard-"
DRAIN_TIMEOUT_SECONDS = 30.0


# Translation between our models and qdrant_edge


def to_edge_filter(flt: Filter) -> EdgeFilter:
    """Our (validated) Filter as a qdrant_edge Filter."""
    return EdgeFilter(
        must=[_to_edge_condition(c) for c in flt.must] or None,
        should=[_to_edge_condition(c) for c in flt.should] or None,
        must_not=[_to_edge_condition(c) for c in flt.must_not] or None,
    )


def _to_edge_condition(condition: Condition) -> FieldCondition | EdgeFilter:
    if condition.filter is not None:
        return to_edge_filter(condition.filter)
    assert condition.key is not None  # validate_filter ran first
    if condition.match is not None:
        return FieldCondition(condition.key, match=_to_edge_match(condition.match))
    assert condition.range is not None
    r = condition.range
    return FieldCondition(condition.key, range=RangeFloat(gte=r.gte, gt=r.gt, lte=r.lte, lt=r.lt))


def _to_edge_match(match: Match) -> EdgeMatchValue | EdgeMatchAny | EdgeMatchExcept:
    if match.value is not None:
        if isinstance(match.value, bool):
            # qdrant-edge 0.9 reads a Python bool as the integer 0/1 (bool subclasses
            # int), which never matches a JSON boolean; numpy's bool is read as a bool.
            return EdgeMatchValue(np.bool_(match.value))  # type: ignore[arg-type]
        return EdgeMatchValue(match.value)
    if match.any is not None:
        return EdgeMatchAny(match.any)
    assert match.except_ is not None
    return EdgeMatchExcept(match.except_)


def _from_edge_id(raw: EdgeId) -> PointId:
    if type(raw) is int:
        return raw
    return str(raw) if isinstance(raw, uuid.UUID) else str(uuid.UUID(str(raw)))


def _id_order(raw: EdgeId) -> tuple[int, int]:
    """Qdrant's id order: integers first, then UUIDs by their 128-bit value."""
    if type(raw) is int:
        return (0, raw)
    return (1, (raw if isinstance(raw, uuid.UUID) else uuid.UUID(str(raw))).int)


def _vector(raw: object) -> list[float] | None:
    return raw if isinstance(raw, list) else None


def _scored(hit: EdgeScoredPoint, with_vector: bool) -> ScoredPoint:
    return client_scored(hit.payload, hit.score, _vector(hit.vector) if with_vector else None)


def _record(rec: EdgeRecord, with_vector: bool) -> Record:
    return client_record(rec.payload, _vector(rec.vector) if with_vector else None)


# Checks on input


def _edge_points(points: Sequence[Point], dimension: int, partition: str) -> list[EdgePoint]:
    """The whole batch checked and converted before anything is written."""
    converted: list[EdgePoint] = []
    for i, point in enumerate(points):
        what = f"Vector of point {i}"
        check_vector_dimension(point.vector, dimension, what)
        check_finite(point.vector, what)
        if point.payload is not None and not isinstance(point.payload, dict):
            raise BadUserInput(f"Point {i} payload must be a JSON object")
        point_id = normalize_point_id(point.id)
        try:
            converted.append(
                EdgePoint(
                    stored_id(partition, point_id),
                    point.vector,
                    stored_payload(partition, point_id, point.payload),
                )
            )
        except (TypeError, ValueError, OverflowError):
            raise BadUserInput(f"Point {i} payload must be JSON without NaN or infinity") from None
    return converted


# Engine work, run in worker threads


def _query(
    shards: tuple[EdgeShard, ...],
    request: QueryRequest,
    descending: bool,
    offset: int,
    limit: int,
    with_vector: bool,
) -> list[ScoredPoint]:
    if len(shards) == 1:
        return [_scored(h, with_vector) for h in shards[0].query(request)]
    # Oldest shard first, so that a point caught mid-upsert in two shards keeps the
    # newer version.
    newest: dict[EdgeId, EdgeScoredPoint] = {}
    for shard in shards:
        for hit in shard.query(request):
            newest[hit.id] = hit
    hits = sorted(newest.values(), key=lambda h: h.score, reverse=descending)
    return [_scored(h, with_vector) for h in hits[offset : offset + limit]]


def _scroll(
    shards: tuple[EdgeShard, ...], request: ScrollRequest, limit: int, with_vector: bool
) -> ScrollPage:
    newest: dict[EdgeId, EdgeRecord] = {}
    for shard in shards:
        for rec in shard.scroll(request)[0]:
            newest[rec.id] = rec
    ordered = heapq.nsmallest(limit + 1, newest.values(), key=lambda r: _id_order(r.id))
    next_cursor = _from_edge_id(ordered[limit].id) if len(ordered) > limit else None
    return ScrollPage([_record(r, with_vector) for r in ordered[:limit]], next_cursor)


def _retrieve(
    shards: tuple[EdgeShard, ...], ids: list[PointId], partition: str, with_vector: bool
) -> list[Record]:
    """ids are the client's; a point is found only under its id in this partition."""
    found: dict[PointId, Record] = {}
    wanted: list[EdgeId] = [stored_id(partition, i) for i in ids]
    for shard in shards:
        for rec in shard.retrieve(wanted, with_payload=True, with_vector=with_vector):
            if not owns(partition, rec.payload):
                continue
            record = _record(rec, with_vector)
            found[record.id] = record
    return [found[i] for i in ids if i in found]


def _count(shards: tuple[EdgeShard, ...], flt: EdgeFilter | None) -> int:
    """flt None: every point of the physical collection (operators' view only)."""
    if flt is None:
        return sum(shard.info().points_count for shard in shards)
    request = CountRequest(exact=True, filter=flt)
    return sum(shard.count(request) for shard in shards)


def _existing_ids(shard: EdgeShard, ids: list[PointId]) -> list[PointId]:
    return [
        _from_edge_id(r.id)
        for r in shard.retrieve(list(ids), with_payload=False, with_vector=False)
    ]


def _delete_ids_from(
    shards: tuple[EdgeShard, ...],
    ids: list[PointId],
    journal: list[JournalEntry] | None,
    *,
    fresh_too: bool,
) -> set[PointId]:
    """Delete ids from each shard holding them; journals what left the older shards."""
    deleted: set[PointId] = set()
    older = len(shards) - 1
    for position, shard in enumerate(shards if fresh_too else shards[:older]):
        existing = _existing_ids(shard, ids)
        if not existing:
            continue
        shard.update(UpdateOperation.delete_points(list(existing)))
        deleted.update(existing)
        if journal is not None and position < older:
            journal.append(existing)
    return deleted


def _upsert(
    shards: tuple[EdgeShard, ...],
    points: Sequence[Point],
    dimension: int,
    partition: str,
    journal: list[JournalEntry] | None,
) -> int:
    """Write to the fresh shard, then drop the same ids from the older ones."""
    converted = _edge_points(points, dimension, partition)
    fresh = shards[-1]
    fresh.update(UpdateOperation.upsert_points(converted))
    if len(shards) > 1:
        ids: list[PointId] = list(
            dict.fromkeys(stored_id(partition, normalize_point_id(p.id)) for p in points)
        )
        _delete_ids_from(shards, ids, journal, fresh_too=False)
    return fresh.info().points_count


def _delete_ids(
    shards: tuple[EdgeShard, ...],
    ids: list[PointId],
    partition: str,
    journal: list[JournalEntry] | None,
) -> int:
    stored: list[PointId] = [stored_id(partition, i) for i in ids]
    return len(_delete_ids_from(shards, stored, journal, fresh_too=True))


def _delete_by_filter(
    shards: tuple[EdgeShard, ...], flt: EdgeFilter, journal: list[JournalEntry] | None
) -> int:
    request = CountRequest(exact=True, filter=flt)
    deleted = 0
    for position, shard in enumerate(shards):
        matched = shard.count(request)
        if not matched:
            continue
        shard.update(UpdateOperation.delete_points_by_filter(flt))
        deleted += matched
        if journal is not None and position < len(shards) - 1:
            journal.append(flt)
    return deleted


def _replay(shard: EdgeShard, entries: Sequence[JournalEntry]) -> None:
    for entry in entries:
        if isinstance(entry, list):
            shard.update(UpdateOperation.delete_points(list(entry)))
        else:
            shard.update(UpdateOperation.delete_points_by_filter(entry))


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _remove(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def _write_catalog(data_dir: Path, entries: list[CollectionEntry]) -> None:
    """Atomically, like a manifest: the catalog names exactly the logical collections."""
    tmp = data_dir / f"{CATALOG}.tmp"
    with tmp.open("w", encoding="utf-8") as f:
        json.dump({"collections": [e.to_json() for e in entries]}, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, data_dir / CATALOG)
    _fsync_dir(data_dir)


def _read_catalog(data_dir: Path) -> list[CollectionEntry]:
    path = data_dir / CATALOG
    if not path.is_file():
        return []
    raw = json.loads(path.read_text(encoding="utf-8"))
    return [CollectionEntry.from_json(e) for e in raw["collections"]]


# Per-collection state


@dataclass(frozen=True, slots=True)
class _Manifest:
    dimension: int
    distance: Distance
    fresh: str
    indexed: str | None = None
    sealed: str | None = None
    next_shard: int = 1

    def live(self) -> list[str]:
        """Oldest first; the fresh shard is always last."""
        return [n for n in (self.indexed, self.sealed, self.fresh) if n is not None]

    def write(self, directory: Path) -> None:
        """Atomically: a crash leaves the old manifest or the new one, never a mix."""
        tmp = directory / f"{MANIFEST}.tmp"
        with tmp.open("w", encoding="utf-8") as f:
            json.dump({**asdict(self), "distance": self.distance.value}, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, directory / MANIFEST)
        _fsync_dir(directory)

    @classmethod
    def read(cls, directory: Path) -> _Manifest:
        raw = json.loads((directory / MANIFEST).read_text(encoding="utf-8"))
        return cls(**{**raw, "distance": Distance(raw["distance"])})


class _View:
    """The live shards of a collection at one moment. Never changed, only replaced;
    counts the calls running on it so that its shards are closed only once unused."""

    __slots__ = ("_lock", "readers", "shards", "writers")

    def __init__(self, shards: tuple[EdgeShard, ...]) -> None:
        self.shards = shards
        self.readers = 0
        self.writers = 0
        self._lock = threading.Lock()

    def enter(self, writer: bool) -> None:
        with self._lock:
            if writer:
                self.writers += 1
            else:
                self.readers += 1

    def leave_reader(self, _: object) -> None:
        with self._lock:
            self.readers -= 1

    def leave_writer(self, _: object) -> None:
        with self._lock:
            self.writers -= 1


@dataclass(slots=True)
class _BuildStats:
    runs: int = 0
    failures: int = 0
    durations: list[float] = field(default_factory=list)
    last: dict[str, Any] = field(default_factory=dict)
    last_error: str | None = None


@dataclass(slots=True)
class _Plan:
    """One index build: where the child process works and what it will replace."""

    target: str
    scratch: str
    create: bool
    replaces: tuple[str, ...]


class _Collection:
    def __init__(
        self, name: str, path: Path, manifest: _Manifest, shards: dict[str, EdgeShard]
    ) -> None:
        self.name = name
        self.path = path
        self.manifest = manifest
        self.shards = shards
        self.view = _View(tuple(shards[n] for n in manifest.live()))
        self.descending = manifest.distance is not Distance.EUCLID
        self.lock = asyncio.Lock()
        self.fresh_points = 0
        self.journal: list[JournalEntry] | None = None
        self.build: asyncio.Task[None] | None = None
        self.process: asyncio.subprocess.Process | None = None
        self.retry_at = 0.0
        self.stats = _BuildStats()
        self.closing = False

    def set_manifest(self, manifest: _Manifest) -> _View:
        """Make manifest current; returns the view it replaces."""
        old = self.view
        self.manifest = manifest
        self.view = _View(tuple(self.shards[n] for n in manifest.live()))
        return old

    def new_shard_name(self) -> str:
        n = self.manifest.next_shard
        self.manifest = replace(self.manifest, next_shard=n + 1)
        return f"{SHARD_PREFIX}{n:06d}"

    def info(self, points_count: int) -> CollectionInfo:
        return CollectionInfo(
            name=self.name,
            dimension=self.manifest.dimension,
            distance=self.manifest.distance,
            points_count=points_count,
        )


class _Logical:
    """A tenant's collection: its catalog entry, the physical collection holding it, and
    the partition filter every call on it carries, built once."""

    __slots__ = ("coll", "entry", "only")

    def __init__(self, entry: CollectionEntry, coll: _Collection) -> None:
        self.entry = entry
        self.coll = coll
        self.only = to_edge_filter(scoped_filter(entry.partition, None))

    def scoped(self, flt: Filter | None) -> EdgeFilter:
        """flt confined to this collection (tenancy.scoped_filter), in qdrant_edge's terms."""
        return (
            self.only if flt is None else to_edge_filter(scoped_filter(self.entry.partition, flt))
        )

    def info(self, points_count: int) -> CollectionInfo:
        e = self.entry
        return CollectionInfo(e.name, e.dimension, e.distance, points_count)


class EdgeStore(VectorStore):
    backend = "embedded"

    def __init__(
        self,
        data_dir: Path,
        index_threshold: int = 20_000,
        *,
        hnsw_ef: int | None = 128,
        retry_delay_seconds: float = 60.0,
        workers: int = 4,
        min_free_bytes: int = 100 * 1024 * 1024,
    ) -> None:
        if index_threshold < 1:
            raise ValueError("index_threshold must be at least 1")
        self.data_dir = Path(data_dir)
        self.index_threshold = index_threshold
        self.retry_delay_seconds = retry_delay_seconds
        self._workers = workers
        self.min_free_bytes = min_free_bytes
        self._disk_full = False
        self._search_params = SearchParams(hnsw_ef=hnsw_ef) if hnsw_ef else None
        self._collections: dict[str, _Collection] = {}  # physical, by name
        self._catalog: dict[tuple[str, str], _Logical] = {}  # logical, by (tenant, name)
        self._collections_lock = asyncio.Lock()
        self._executor: ThreadPoolExecutor | None = None
        self._lock_fd: int | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> EdgeStore:
        return cls(
            settings.data_dir,
            index_threshold=settings.index_threshold,
            min_free_bytes=settings.min_free_disk_mb * 1024 * 1024,
        )

    @property
    def _root(self) -> Path:
        return self.data_dir / COLLECTIONS

    # Running engine calls

    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        """fn(*args) in a worker thread; engine failures become StoreUnavailable."""
        if self._executor is None:
            raise StoreUnavailable()
        try:
            return await asyncio.wrap_future(self._executor.submit(fn, *args))
        except ApiError:
            raise
        except Exception:
            logger.exception("Embedded engine call %s failed", fn.__name__)
            raise StoreUnavailable() from None

    async def _on_view(self, view: _View, writer: bool, fn: Callable[..., T], *args: Any) -> T:
        """fn(view.shards, *args) in a worker thread, counted on view until it has returned
        (even when the awaiting coroutine is cancelled first)."""
        if self._executor is None:
            raise StoreUnavailable()
        view.enter(writer)
        try:
            future: Future[T] = self._executor.submit(fn, view.shards, *args)
        except BaseException:
            (view.leave_writer if writer else view.leave_reader)(None)
            raise
        future.add_done_callback(view.leave_writer if writer else view.leave_reader)
        try:
            return await asyncio.wrap_future(future)
        except ApiError:
            raise
        except Exception:
            logger.exception("Embedded engine call %s failed", fn.__name__)
            raise StoreUnavailable() from None

    @staticmethod
    async def _drain(view: _View, *, writers_only: bool = False) -> None:
        deadline = time.monotonic() + DRAIN_TIMEOUT_SECONDS
        while view.writers or (not writers_only and view.readers):
            if time.monotonic() > deadline:
                logger.error("Engine calls still running after %ss", DRAIN_TIMEOUT_SECONDS)
                return
            await asyncio.sleep(0.002)

    def _get(self, name: str) -> _Collection:
        """A physical collection."""
        coll = self._collections.get(name)
        if coll is None:
            raise NotFound(f"Collection '{name}' not found")
        return coll

    def _logical(self, tenant: str, name: str) -> _Logical:
        logical = self._catalog.get((tenant, name))
        if logical is None:
            validate_tenant(tenant)
            validate_collection_name(name)
            raise NotFound(f"Collection '{name}' not found")
        return logical

    def _check_disk(self) -> None:
        """Refuse writes while DATA_DIR has less than min_free_bytes free: the engine writes
        through memory-mapped files, and a write that finds the disk full kills the whole
        process with SIGBUS instead of failing."""
        if not self.min_free_bytes:
            return
        full = shutil.disk_usage(self.data_dir).free < self.min_free_bytes
        if full != self._disk_full:
            self._disk_full = full
            if full:
                logger.error(
                    "Less than %s MiB free in %s: writes are refused until there is space",
                    self.min_free_bytes // (1024 * 1024),
                    self.data_dir,
                )
            else:
                logger.warning("Disk space is back in %s: writes are accepted", self.data_dir)
        if full:
            raise StoreUnavailable(DISK_FULL_MESSAGE)

    def _check_current(self, logical: _Logical) -> None:
        """Under the physical collection's lock: the logical one was not deleted meanwhile."""
        e = logical.entry
        if logical.coll.closing or self._catalog.get((e.tenant, e.name)) is not logical:
            raise NotFound(f"Collection '{e.name}' not found")

    # Lifecycle

    async def open(self) -> None:
        if self._executor is not None:
            return
        self._root.mkdir(parents=True, exist_ok=True)
        self._lock_fd = self._take_lock()
        self._executor = ThreadPoolExecutor(self._workers, thread_name_prefix="edge-store")
        try:
            for entry in sorted(self._root.iterdir()):
                coll = await self._load(entry)
                if coll is not None:
                    self._collections[coll.name] = coll
            for logical in await self._run(_read_catalog, self.data_dir):
                coll = await self._physical(logical.dimension, logical.distance)
                self._catalog[(logical.tenant, logical.name)] = _Logical(logical, coll)
        except BaseException:
            await self.close()
            raise
        for coll in self._collections.values():
            self._maybe_start_build(coll)

    def _take_lock(self) -> int:
        fd = os.open(self.data_dir / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            raise RuntimeError(
                f"data directory {self.data_dir} is in use by another process "
                "(one embedded store per directory)"
            ) from None
        return fd

    async def _load(self, path: Path) -> _Collection | None:
        if path.name.startswith(TRASH_PREFIX) or not (path / MANIFEST).is_file():
            logger.warning("Removing %s: not a complete collection", path)
            await self._run(_remove, path)
            return None
        try:
            return await self._run(self._load_collection, path)
        except StoreUnavailable:
            raise RuntimeError(f"collection {path.name!r} in {path} could not be loaded") from None

    @staticmethod
    def _load_collection(path: Path) -> _Collection:
        manifest = _Manifest.read(path)
        live = manifest.live()
        numbers = [int(n.removeprefix(SHARD_PREFIX)) for n in live]
        manifest = replace(
            manifest, next_shard=max([manifest.next_shard, *(n + 1 for n in numbers)])
        )
        for entry in path.iterdir():
            if entry.name != MANIFEST and entry.name not in live:
                logger.info("Removing leftover %s", entry)
                _remove(entry)
        shards: dict[str, EdgeShard] = {}
        try:
            for name in live:
                shards[name] = EdgeShard.load(str(path / name))
        except BaseException:
            for shard in shards.values():
                shard.close()
            raise
        coll = _Collection(path.name, path, manifest, shards)
        coll.fresh_points = shards[manifest.fresh].info().points_count
        return coll

    async def close(self) -> None:
        for coll in list(self._collections.values()):
            await self._stop_build(coll)
        for coll in list(self._collections.values()):
            await self._close_collection(coll)
        self._collections.clear()
        self._catalog.clear()
        if self._executor is not None:
            executor, self._executor = self._executor, None
            await asyncio.to_thread(executor.shutdown)
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # releases the flock
            self._lock_fd = None

    async def _close_collection(self, coll: _Collection) -> None:
        async with coll.lock:
            coll.closing = True
            await self._drain(coll.view)
            shards = list(coll.shards.values())
            coll.shards.clear()
            with contextlib.suppress(StoreUnavailable):  # logged; close the others anyway
                await self._run(self._close_shards, shards)

    @staticmethod
    def _close_shards(shards: list[EdgeShard]) -> None:
        for shard in shards:
            try:
                shard.flush()
            finally:
                shard.close()

    async def ping(self) -> None:
        if self._executor is None:
            raise StoreUnavailable()

    # Collections

    async def ensure_collection(
        self, tenant: str, name: str, dimension: int, distance: Distance
    ) -> None:
        validate_tenant(tenant)
        validate_collection_name(name)
        validate_dimension(dimension)
        existing = self._catalog.get((tenant, name))
        if existing is None:
            try:
                await self.create_collection(tenant, name, dimension, distance)
            except AlreadyExists:
                return
            logger.info("Created collection %r (%s, %s)", name, dimension, distance.value)
            return
        e = existing.entry
        if (e.dimension, e.distance) != (dimension, distance):
            logger.warning(
                "Collection %r exists with dimension %s and %s distance; keeping it "
                "(configured: %s, %s)",
                name,
                e.dimension,
                e.distance.value,
                dimension,
                distance.value,
            )

    async def create_collection(
        self, tenant: str, name: str, dimension: int, distance: Distance
    ) -> CollectionInfo:
        validate_tenant(tenant)
        validate_collection_name(name)
        validate_dimension(dimension)
        async with self._collections_lock:
            if (tenant, name) in self._catalog:
                raise AlreadyExists(f"Collection '{name}' already exists")
            self._check_disk()
            entry = CollectionEntry(tenant, name, dimension, distance)
            logical = _Logical(entry, await self._physical(dimension, distance))
            coll = logical.coll
            async with coll.lock:
                # Points of an earlier collection of this name whose delete was cut short
                # by a crash must not reappear in the new one.
                await self._on_view(coll.view, True, _delete_by_filter, logical.only, coll.journal)
                await self._commit_catalog({**self._catalog, (tenant, name): logical})
        return logical.info(0)

    async def _physical(self, dimension: int, distance: Distance) -> _Collection:
        """The physical collection for a vector shape, created on first use."""
        name = CollectionEntry("-", "-", dimension, distance).physical
        coll = self._collections.get(name)
        if coll is None:
            coll = await self._run(self._create_collection, self._root / name, dimension, distance)
            self._collections[name] = coll
        return coll

    async def _commit_catalog(self, catalog: dict[tuple[str, str], _Logical]) -> None:
        entries = [logical.entry for logical in catalog.values()]
        await self._run(_write_catalog, self.data_dir, entries)
        self._catalog = catalog

    @staticmethod
    def _create_collection(path: Path, dimension: int, distance: Distance) -> _Collection:
        _remove(path)  # an unfinished directory no manifest ever named
        path.mkdir(parents=True)
        manifest = _Manifest(dimension, distance, fresh=f"{SHARD_PREFIX}000001", next_shard=2)
        shard = create_shard(str(path / manifest.fresh), dimension, distance)
        try:
            manifest.write(path)
        except BaseException:
            shard.close()
            raise
        return _Collection(path.name, path, manifest, {manifest.fresh: shard})

    async def delete_collection(self, tenant: str, name: str) -> None:
        async with self._collections_lock:
            logical = self._logical(tenant, name)
            coll = logical.coll
            async with coll.lock:
                if coll.closing:
                    raise NotFound(f"Collection '{name}' not found")
                await self._on_view(coll.view, True, _delete_by_filter, logical.only, coll.journal)
                catalog = dict(self._catalog)
                del catalog[(tenant, name)]
                await self._commit_catalog(catalog)

    async def get_collection(self, tenant: str, name: str) -> CollectionInfo:
        logical = self._logical(tenant, name)
        view = logical.coll.view
        return logical.info(await self._on_view(view, False, _count, logical.only))

    async def list_collections(self, tenant: str) -> list[CollectionInfo]:
        validate_tenant(tenant)
        infos = []
        for key in sorted(k for k in self._catalog if k[0] == tenant):
            with contextlib.suppress(NotFound):
                infos.append(await self.get_collection(*key))
        return infos

    async def physical_collections(self) -> list[CollectionInfo]:
        infos = []
        for name in sorted(self._collections):
            coll = self._collections.get(name)
            if coll is not None and not coll.closing:
                infos.append(coll.info(await self._on_view(coll.view, False, _count, None)))
        return infos

    # Points

    async def upsert(self, tenant: str, collection: str, points: Sequence[Point]) -> int:
        logical = self._logical(tenant, collection)
        if not points:
            return 0
        coll = logical.coll
        async with coll.lock:
            self._check_current(logical)
            self._check_disk()
            coll.fresh_points = await self._on_view(
                coll.view,
                True,
                _upsert,
                points,
                coll.manifest.dimension,
                logical.entry.partition,
                coll.journal,
            )
        self._maybe_start_build(coll)
        return len(points)

    async def query(
        self,
        tenant: str,
        collection: str,
        vector: Sequence[float],
        *,
        limit: int,
        offset: int = 0,
        filter: Filter | None = None,
        score_threshold: float | None = None,
        with_vector: bool = False,
    ) -> list[ScoredPoint]:
        logical = self._logical(tenant, collection)
        coll = logical.coll
        check_limit(limit, offset)
        check_vector_dimension(vector, coll.manifest.dimension, "Query vector")
        check_finite(vector, "Query vector")
        if score_threshold is not None and not math.isfinite(score_threshold):
            raise BadUserInput("scoreThreshold must be a finite number")
        view = coll.view
        single = len(view.shards) == 1
        request = QueryRequest(
            limit=limit if single else limit + offset,
            offset=offset if single else 0,
            query=Query.Nearest(vector if isinstance(vector, list) else list(vector)),
            filter=logical.scoped(filter),
            score_threshold=score_threshold,
            with_vector=with_vector,
            with_payload=True,
            params=self._search_params,
        )
        return await self._on_view(
            view, False, _query, request, coll.descending, offset, limit, with_vector
        )

    async def retrieve(
        self, tenant: str, collection: str, ids: Sequence[PointId], *, with_vector: bool = False
    ) -> list[Record]:
        logical = self._logical(tenant, collection)
        wanted = normalize_ids(ids)
        if not wanted:
            return []
        return await self._on_view(
            logical.coll.view, False, _retrieve, wanted, logical.entry.partition, with_vector
        )

    async def delete_ids(self, tenant: str, collection: str, ids: Sequence[PointId]) -> int:
        logical = self._logical(tenant, collection)
        wanted = normalize_ids(ids)
        if not wanted:
            return 0
        coll = logical.coll
        async with coll.lock:
            self._check_current(logical)
            self._check_disk()
            return await self._on_view(
                coll.view, True, _delete_ids, wanted, logical.entry.partition, coll.journal
            )

    async def delete_by_filter(self, tenant: str, collection: str, filter: Filter) -> int:
        logical = self._logical(tenant, collection)
        flt = logical.scoped(filter)
        coll = logical.coll
        async with coll.lock:
            self._check_current(logical)
            self._check_disk()
            return await self._on_view(coll.view, True, _delete_by_filter, flt, coll.journal)

    async def count(self, tenant: str, collection: str, filter: Filter | None = None) -> int:
        logical = self._logical(tenant, collection)
        flt = logical.scoped(filter)
        return await self._on_view(logical.coll.view, False, _count, flt)

    async def scroll(
        self,
        tenant: str,
        collection: str,
        *,
        limit: int,
        cursor: PointId | None = None,
        filter: Filter | None = None,
        with_vector: bool = False,
    ) -> ScrollPage:
        logical = self._logical(tenant, collection)
        check_limit(limit)
        request = ScrollRequest(
            offset=normalize_point_id(cursor) if cursor is not None else None,
            limit=limit + 1,
            filter=logical.scoped(filter),
            with_payload=True,
            with_vector=with_vector,
        )
        return await self._on_view(logical.coll.view, False, _scroll, request, limit, with_vector)

    # Background indexing

    async def index_status(self, collection: str) -> dict[str, Any]:
        """What the background indexing has done for a physical collection (named as by
        physical_collections()), for metrics, logs and tests."""
        coll = self._get(collection)
        has_indexed = coll.manifest.indexed is not None  # then it is the view's first shard

        def counts(shards: tuple[EdgeShard, ...]) -> dict[str, int]:
            infos = [shard.info() for shard in shards]
            points = sum(i.points_count for i in infos)
            indexed = infos[0].points_count if has_indexed else 0
            return {
                "points": points,
                "indexed_points": indexed,
                "unindexed_points": points - indexed,
                "indexed_vectors": sum(i.indexed_vectors_count for i in infos),
                "shards": len(shards),
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
        """Return once no index build is running (or due) for collection, or for any."""
        while True:
            colls = (
                [self._collections.get(collection)] if collection else self._collections.values()
            )
            builds = [c.build for c in colls if c is not None and c.build is not None]
            if not builds:
                return
            await asyncio.wait(builds)

    def _maybe_start_build(self, coll: _Collection) -> None:
        if coll.build is not None or coll.closing or self._executor is None:
            return
        due = coll.manifest.sealed is not None or coll.fresh_points >= self.index_threshold
        if due and time.monotonic() >= coll.retry_at:
            coll.build = asyncio.create_task(self._build(coll), name=f"index-build-{coll.name}")

    async def _stop_build(self, coll: _Collection) -> None:
        coll.closing = True
        if coll.process is not None and coll.process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                coll.process.kill()
        if coll.build is not None:
            await asyncio.wait([coll.build])

    async def _build(self, coll: _Collection) -> None:
        started = time.monotonic()
        plan: _Plan | None = None
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
                leftovers = [plan.scratch] if installed else [plan.scratch, plan.target]
                with contextlib.suppress(Exception):
                    await self._run(self._remove_all, [coll.path / n for n in leftovers])
            coll.build = None
        self._maybe_start_build(coll)

    def _build_failed(self, coll: _Collection, exc: Exception) -> None:
        if coll.closing:
            return  # killed on purpose
        coll.stats.failures += 1
        coll.stats.last_error = f"{type(exc).__name__}: {exc}"
        coll.retry_at = time.monotonic() + self.retry_delay_seconds
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
            _remove(path)

    async def _prepare_build(self, coll: _Collection) -> _Plan | None:
        """Seal the fresh shard if needed and copy what the build merges; from here on,
        deletes that touch those shards are journaled."""
        async with coll.lock:
            if coll.closing:
                return None
            await self._drain(coll.view, writers_only=True)
            if coll.manifest.sealed is None:
                await self._seal(coll)
            m = coll.manifest
            assert m.sealed is not None
            plan = _Plan(
                target=coll.new_shard_name(),
                scratch=coll.new_shard_name(),
                create=m.indexed is None,
                replaces=tuple(n for n in (m.indexed, m.sealed) if n is not None),
            )
            await self._run(self._copy_sources, coll, plan)
            coll.journal = []
            return plan

    async def _seal(self, coll: _Collection) -> None:
        m = coll.manifest
        fresh = coll.new_shard_name()
        coll.shards[fresh] = await self._run(
            create_shard, str(coll.path / fresh), m.dimension, m.distance
        )
        sealed = replace(coll.manifest, sealed=m.fresh, fresh=fresh)
        await self._run(sealed.write, coll.path)
        coll.set_manifest(sealed)
        coll.fresh_points = 0

    @staticmethod
    def _copy_sources(coll: _Collection, plan: _Plan) -> None:
        m = coll.manifest
        assert m.sealed is not None
        for name in plan.replaces:
            coll.shards[name].flush()
        if m.indexed is not None:
            shutil.copytree(coll.path / m.indexed, coll.path / plan.target)
        shutil.copytree(coll.path / m.sealed, coll.path / plan.scratch)

    async def _run_indexer(self, coll: _Collection, plan: _Plan) -> dict[str, Any]:
        m = coll.manifest
        args = [
            "-m",
            "graph.store._indexer",
            "--target",
            str(coll.path / plan.target),
            "--sealed",
            str(coll.path / plan.scratch),
            "--dimension",
            str(m.dimension),
            "--distance",
            m.distance.value,
            "--parent-pid",
            str(os.getpid()),
            *(["--create"] if plan.create else []),
        ]
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            *args,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=_child_env(),
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

    async def _install_build(self, coll: _Collection, plan: _Plan) -> bool:
        """Replay the journal on the built shard and make it the indexed one."""
        built = await self._run(EdgeShard.load, str(coll.path / plan.target))
        try:
            old_view = await self._swap_in(coll, plan, built)
        except BaseException:
            await self._run(built.close)
            raise
        if old_view is None:
            await self._run(built.close)
            return False
        await self._drain(old_view)
        retired = [old_view.shards[i] for i in range(len(plan.replaces))]
        await self._run(self._retire, retired, [coll.path / n for n in plan.replaces])
        return True

    async def _swap_in(self, coll: _Collection, plan: _Plan, built: EdgeShard) -> _View | None:
        """Commit the built shard in the manifest; returns the view it retired."""
        assert coll.journal is not None
        replayed = len(coll.journal)
        # Most of the journal is replayed before taking the lock, so writes wait only
        # for what came in meanwhile.
        await self._run(_replay, built, coll.journal[:replayed])
        await self._run(built.flush)
        async with coll.lock:
            if coll.closing:
                return None
            await self._drain(coll.view, writers_only=True)
            await self._run(_replay, built, coll.journal[replayed:])
            final = replace(coll.manifest, indexed=plan.target, sealed=None)
            await self._run(final.write, coll.path)
            coll.shards[plan.target] = built
            for name in plan.replaces:
                del coll.shards[name]
            coll.journal = None
            return coll.set_manifest(final)

    @staticmethod
    def _retire(shards: list[EdgeShard], paths: list[Path]) -> None:
        for shard in shards:
            shard.close()
        for path in paths:
            shutil.rmtree(path, ignore_errors=True)


def _child_env() -> dict[str, str]:
    """The indexer imports this package even when it is not installed."""
    env = dict(os.environ)
    root = str(Path(graph.__file__).resolve().parent.parent)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
    return env


__all__ = ["EdgeStore", "to_edge_filter"]
