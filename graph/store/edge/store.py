"""The embedded adapter: qdrant-edge shards in this process, one directory per physical
collection (layout.py), indexed in the background (indexing.py); its calls on memories
are in memory_calls.py.

Tenants' logical collections live inside physical collections, one per vector shape,
partitioned by a tenant-indexed payload key (graph/store/tenancy.py). EdgeStore keeps
the catalog of logical collections and runs each call on the live shards of the
physical collection holding it (views.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from qdrant_edge import Filter as EdgeFilter
from qdrant_edge import Point as EdgePoint
from qdrant_edge import QueryRequest, ScrollRequest

from graph.errors import AlreadyExists, ConfigError, NotFound, StoreUnavailable
from graph.settings import Distance, Quantization, Settings, VectorDatatype
from graph.store import common
from graph.store.base import VectorStore
from graph.store.edge import views
from graph.store.edge.indexing import BackgroundIndexing
from graph.store.edge.layout import (
    CATALOG,
    COLLECTIONS,
    MANIFEST,
    TRASH_PREFIX,
    Collection,
    DiskGuard,
    close_shards,
    create_collection,
    discard,
    load_collection,
    read_catalog,
    remove,
    take_lock,
    write_catalog,
)
from graph.store.edge.logical import Logical
from graph.store.edge.memory_calls import MemoryCalls
from graph.store.edge.transfer_calls import TransferCalls
from graph.store.edge.translate import (
    edge_points,
    nearest_request,
    search_params,
)
from graph.store.models import (
    CollectionInfo,
    Filter,
    MemoryPoint,
    Point,
    PointId,
    Record,
    ScoredPoint,
    ScrollPage,
    StoredPoint,
    check_limit,
    normalize_ids,
    normalize_point_id,
    validate_collection_name,
    validate_dimension,
)
from graph.store.tenancy import CollectionEntry, validate_tenant

logger = logging.getLogger(__name__)


class EdgeStore(MemoryCalls, TransferCalls, BackgroundIndexing, VectorStore):
    backend = "embedded"

    def __init__(
        self,
        data_dir: Path,
        index_threshold: int = 20_000,
        *,
        index_backlog_max_points: int = 50_000,
        merge_max_points: int = 200_000,
        max_segments: int = 4,
        quantization: Quantization = Quantization.SCALAR,
        datatype: VectorDatatype = VectorDatatype.FLOAT32,
        backlog_wait_seconds: float = 60.0,
        hnsw_ef: int | None = common.HNSW_EF,
        retry_delay_seconds: float = 60.0,
        workers: int = 4,
        min_free_bytes: int = 100 * 1024 * 1024,
        max_vector_shapes: int = 8,
    ) -> None:
        if index_threshold < 1:
            raise ValueError("index_threshold must be at least 1")
        self.data_dir = Path(data_dir)
        self.index_threshold = index_threshold
        self.index_backlog_max_points = index_backlog_max_points
        self.merge_max_points = merge_max_points
        self.max_segments = max_segments
        self.quantization = quantization
        self.datatype = datatype
        self.backlog_wait_seconds = backlog_wait_seconds
        self.retry_delay_seconds = retry_delay_seconds
        self.max_vector_shapes = max_vector_shapes
        self._workers = workers
        self._disk = DiskGuard(self.data_dir, min_free_bytes)
        self._search_params = search_params(hnsw_ef, quantization)
        self._collections: dict[str, Collection] = {}  # physical, by name
        self._catalog: dict[tuple[str, str], Logical] = {}  # logical, by (tenant, name)
        self._alone_key: tuple[int, int] | None = None  # see _alone
        self._alone_names: frozenset[str] = frozenset()
        self._collections_lock = asyncio.Lock()
        self._executor: ThreadPoolExecutor | None = None
        self._lock_fd: int | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> EdgeStore:
        return cls(
            settings.store.data_dir,
            index_threshold=settings.store.index_threshold,
            index_backlog_max_points=settings.store.index_backlog_max_points,
            merge_max_points=settings.store.index_merge_max_points,
            max_segments=settings.store.index_max_segments,
            quantization=settings.store.vector_quantization,
            datatype=settings.store.vector_datatype,
            min_free_bytes=settings.store.min_free_disk_mb * 1024 * 1024,
            max_vector_shapes=settings.store.max_vector_shapes,
        )

    @property
    def _root(self) -> Path:
        return self.data_dir / COLLECTIONS

    def _logical(self, tenant: str, name: str) -> Logical:
        logical = self._catalog.get((tenant, name))
        if logical is None:
            validate_tenant(tenant)
            validate_collection_name(name)
            raise NotFound(f"Collection '{name}' not found")
        return logical

    def _check_current(self, logical: Logical) -> None:
        """Under the physical collection's lock: the logical one was not deleted meanwhile."""
        e = logical.entry
        if logical.coll.closing or self._catalog.get((e.tenant, e.name)) is not logical:
            raise NotFound(f"Collection '{e.name}' not found")

    # Lifecycle

    async def open(self) -> None:
        if self._executor is not None:
            return
        try:
            self._root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:  # a DATA_DIR it cannot make or write: a setting to mend
            raise ConfigError(f"DATA_DIR {self.data_dir}: {exc.strerror}") from None
        self._lock_fd = take_lock(self.data_dir)
        self._executor = ThreadPoolExecutor(self._workers, thread_name_prefix="edge-store")
        try:
            for entry in sorted(self._root.iterdir()):
                coll = await self._load(entry)
                if coll is not None:
                    self._collections[coll.name] = coll
            for logical in await self._run(read_catalog, self.data_dir):
                coll = await self._physical(logical.dimension, logical.distance)
                self._catalog[(logical.tenant, logical.name)] = Logical(logical, coll)
            if (self.data_dir / CATALOG).is_file():
                # Left by a crash between a delete's catalog commit and the release.
                for coll in list(self._collections.values()):
                    if not self._in_use(coll):
                        await self._release(coll)
        except BaseException:
            await self.close()
            raise
        for coll in self._collections.values():
            self._maybe_start_build(coll)

    async def _load(self, path: Path) -> Collection | None:
        if path.name.startswith(TRASH_PREFIX) or not (path / MANIFEST).is_file():
            logger.warning("Removing %s: not a complete collection", path)
            await self._run(remove, path)
            return None
        try:
            return await self._run(load_collection, path)
        except StoreUnavailable:
            raise RuntimeError(f"collection {path.name!r} in {path} could not be loaded") from None

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

    async def _close_collection(self, coll: Collection) -> None:
        async with coll.lock:
            coll.closing = True
            await self._drain(coll.view)
            shards = list(coll.shards.values())
            coll.shards.clear()
            with contextlib.suppress(StoreUnavailable):  # logged; close the others anyway
                await self._run(close_shards, shards)

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
        entry = existing.entry if existing is not None else None
        await common.ensure_collection(self, entry, tenant, name, dimension, distance)

    async def create_collection(
        self, tenant: str, name: str, dimension: int, distance: Distance
    ) -> CollectionInfo:
        validate_tenant(tenant)
        validate_collection_name(name)
        validate_dimension(dimension)
        async with self._collections_lock:
            if (tenant, name) in self._catalog:
                raise AlreadyExists(f"Collection '{name}' already exists")
            self._disk.check()
            entry = CollectionEntry(tenant, name, dimension, distance)
            common.check_shape_bound(entry.physical, self._collections, self.max_vector_shapes)
            logical = Logical(entry, await self._physical(dimension, distance))
            coll = logical.coll
            async with coll.lock:
                # Points of an earlier collection of this name whose delete was cut short
                # by a crash must not reappear in the new one.
                await self._on_view(
                    coll.view, True, views.delete_by_filter, logical.only, coll.journal
                )
                await self._commit_catalog({**self._catalog, (tenant, name): logical})
        return logical.info(0)

    async def _physical(self, dimension: int, distance: Distance) -> Collection:
        """The physical collection for a vector shape, created on first use."""
        name = CollectionEntry("-", "-", dimension, distance).physical
        coll = self._collections.get(name)
        if coll is None:
            coll = await self._run(
                create_collection,
                self._root / name,
                dimension,
                distance,
                self.quantization,
                self.datatype,
            )
            self._collections[name] = coll
        return coll

    async def _commit_catalog(self, catalog: dict[tuple[str, str], Logical]) -> None:
        entries = [logical.entry for logical in catalog.values()]
        await self._run(write_catalog, self.data_dir, entries)
        self._catalog = catalog

    async def delete_collection(self, tenant: str, name: str) -> None:
        async with self._collections_lock:
            logical = self._logical(tenant, name)
            coll = logical.coll
            async with coll.lock:
                if coll.closing:
                    raise NotFound(f"Collection '{name}' not found")
                await self._on_view(
                    coll.view, True, views.delete_by_filter, logical.only, coll.journal
                )
                catalog = dict(self._catalog)
                del catalog[(tenant, name)]
                await self._commit_catalog(catalog)
            if not self._in_use(coll):
                await self._release(coll)

    def _in_use(self, coll: Collection) -> bool:
        return any(logical.coll is coll for logical in self._catalog.values())

    async def _release(self, coll: Collection) -> None:
        """Close a physical collection no logical one uses any more (its index build
        stopped first) and remove its directory: its threads, mappings and files go."""
        await self._stop_build(coll)
        await self._close_collection(coll)
        del self._collections[coll.name]
        await self._run(discard, coll.path)

    async def get_collection(self, tenant: str, name: str) -> CollectionInfo:
        logical = self._logical(tenant, name)
        view = logical.coll.view
        count = await self._on_view(view, False, views.count, logical.only, logical.coll.moves)
        return logical.info(count)

    async def dimension(self, tenant: str, name: str) -> int:
        return self._logical(tenant, name).entry.dimension

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
                count = await self._on_view(coll.view, False, views.count, None, coll.moves)
                infos.append(coll.info(count))
        return infos

    # Points

    async def upsert(self, tenant: str, collection: str, points: Sequence[Point]) -> int:
        return await self._write_batch(self._logical(tenant, collection), edge_points, points)

    async def _write_batch(
        self,
        logical: Logical,
        convert: Callable[..., list[EdgePoint]],
        items: Sequence[Point | MemoryPoint | StoredPoint],
    ) -> int:
        """convert(items, dimension, partition) -> engine points, then one write: points or
        memories. The batch is checked and converted (the costly part for large payloads)
        before the lock, so that tenants sharing the collection wait only for engine
        writes."""
        if not items:
            return 0
        coll = logical.coll
        batch = await self._run(
            views.converted, convert, items, coll.manifest.dimension, logical.entry.partition
        )
        await self._wait_for_backlog(coll)
        coll.fresh_points = await self._write(logical, views.write_points, batch, coll.moves)
        coll.last_write = time.monotonic()
        self._maybe_start_build(coll)
        return len(items)

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
        common.check_query(vector, limit, offset, score_threshold, coll.manifest.dimension)
        view = coll.view

        def request(flt: EdgeFilter | None) -> QueryRequest:
            return nearest_request(
                vector,
                flt,
                limit=limit,
                offset=offset,
                shards=len(view.shards),
                score_threshold=score_threshold,
                with_vector=with_vector,
                params=self._search_params,
            )

        if filter is None and offset == 0 and self._alone(logical):
            return await self._on_view(
                view,
                False,
                views.query_owned,
                request(None),
                lambda: request(logical.only),
                logical.entry.partition,
                coll.descending,
                limit,
                with_vector,
                coll.moves,
            )
        return await self._on_view(
            view,
            False,
            views.query,
            request(logical.scoped(filter)),
            coll.descending,
            offset,
            limit,
            with_vector,
            coll.moves,
        )

    def _alone(self, logical: Logical) -> bool:
        """Whether logical is the only collection its physical one holds (then a search
        without the partition filter almost always finds its points only). A guess that
        may be stale: views.query_owned checks every hit and searches again if wrong."""
        key = (id(self._catalog), len(self._catalog))
        if self._alone_key != key:
            seen: dict[str, int] = {}
            for each in self._catalog.values():
                seen[each.coll.name] = seen.get(each.coll.name, 0) + 1
            self._alone_names = frozenset(n for n, count in seen.items() if count == 1)
            self._alone_key = key
        return logical.coll.name in self._alone_names

    async def retrieve(
        self, tenant: str, collection: str, ids: Sequence[PointId], *, with_vector: bool = False
    ) -> list[Record]:
        logical = self._logical(tenant, collection)
        wanted = normalize_ids(ids)
        if not wanted:
            return []
        return await self._on_view(
            logical.coll.view, False, views.retrieve, wanted, logical.entry.partition, with_vector
        )

    async def delete_ids(self, tenant: str, collection: str, ids: Sequence[PointId]) -> int:
        logical = self._logical(tenant, collection)
        wanted = normalize_ids(ids)
        if not wanted:
            return 0
        return await self._write(logical, views.delete_ids, wanted, logical.entry.partition)

    async def delete_by_filter(self, tenant: str, collection: str, filter: Filter) -> int:
        logical = self._logical(tenant, collection)
        return await self._write(logical, views.delete_by_filter, logical.scoped(filter))

    async def _write(self, logical: Logical, fn: Callable[..., int], *args: Any) -> int:
        """fn(shards, *args, journal) on the collection's view, with writes serialised."""
        coll = logical.coll
        async with coll.lock:
            self._check_current(logical)
            self._disk.check()
            return await self._on_view(coll.view, True, fn, *args, coll.journal)

    async def count(self, tenant: str, collection: str, filter: Filter | None = None) -> int:
        logical = self._logical(tenant, collection)
        flt = logical.scoped(filter)
        return await self._on_view(logical.coll.view, False, views.count, flt, logical.coll.moves)

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
        return await self._on_view(
            logical.coll.view, False, views.scroll, request, limit, with_vector
        )
