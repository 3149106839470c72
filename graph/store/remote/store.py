"""The remote adapter: a Qdrant server reached through qdrant-client's AsyncQdrantClient.

Every client call goes through Client.call (client.py), which bounds it by the
configured timeout and turns whatever the client raises into one of our ApiErrors. The
same class runs on qdrant-client's local mode (RemoteStore.local), which the tests use
as a real, in-process implementation of the same API. The logical collections of
tenants are kept in a catalog in Qdrant itself (catalog.py); the calls on memories are a
part of the class of their own (memory_calls.py).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

from qdrant_client import models

from graph.errors import AlreadyExists, NotFound
from graph.settings import Distance, Settings
from graph.store import common
from graph.store.base import VectorStore
from graph.store.models import (
    CollectionInfo,
    Filter,
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
from graph.store.remote.catalog import Catalog, Logical
from graph.store.remote.client import (
    Client,
    ClientFactory,
    http_client,
    local_client,
    within_one_deadline,
)
from graph.store.remote.memory_calls import MemoryCalls
from graph.store.remote.translate import (
    SEARCH_PARAMS,
    from_qdrant_id,
    from_qdrant_vector,
    from_stored_points,
    to_point_structs,
    to_stored_point,
)
from graph.store.tenancy import (
    CollectionEntry,
    check_stored,
    client_record,
    client_scored,
    owns,
    stored_id,
    validate_tenant,
)

logger = logging.getLogger(__name__)


# QDRANT_URL=path:<directory>: qdrant-client's local mode persisted there, no server (for
# tests and trials; one process at a time).
LOCAL_PREFIX = "path:"


class RemoteStore(MemoryCalls, VectorStore):
    backend = "qdrant"

    def __init__(
        self,
        client_factory: ClientFactory,
        *,
        timeout_seconds: float = 10.0,
        max_retries: int = 3,
        max_concurrency: int = 64,
        max_queue: int = 256,
        max_vector_shapes: int = 8,
    ) -> None:
        """client_factory builds the client in open(). Every call, its retries of transient
        faults (at most max_retries) and its wait for one of max_concurrency slots included,
        is bounded by timeout_seconds; past max_queue waiting calls, calls are shed."""
        self._client = Client(
            client_factory,
            backend=self.backend,
            timeout_seconds=timeout_seconds,
            max_retries=max_retries,
            max_concurrency=max_concurrency,
            max_queue=max_queue,
        )
        self._catalog = Catalog(self._client, max_vector_shapes)

    @classmethod
    def connect(
        cls, url: str, *, api_key: str | None = None, timeout_seconds: float = 10.0, **limits: int
    ) -> RemoteStore:
        """A store on the Qdrant server at url (REST). Nothing is contacted before a call."""
        return cls(
            http_client(url, api_key, timeout_seconds), timeout_seconds=timeout_seconds, **limits
        )

    @classmethod
    def from_settings(cls, settings: Settings) -> RemoteStore:
        if not settings.store.qdrant_url:
            raise ValueError("QDRANT_URL is not set")
        if settings.store.qdrant_url.startswith(LOCAL_PREFIX):
            return cls.local(
                settings.store.qdrant_url.removeprefix(LOCAL_PREFIX),
                timeout_seconds=settings.store.store_timeout_seconds,
                max_vector_shapes=settings.store.max_vector_shapes,
            )
        api_key = (
            settings.store.qdrant_api_key.get_secret_value()
            if settings.store.qdrant_api_key
            else None
        )
        return cls.connect(
            settings.store.qdrant_url,
            api_key=api_key or None,
            timeout_seconds=settings.store.store_timeout_seconds,
            max_retries=settings.store.store_max_retries,
            max_concurrency=settings.store.store_max_concurrency,
            max_queue=settings.store.store_max_queue,
            max_vector_shapes=settings.store.max_vector_shapes,
        )

    @classmethod
    def local(
        cls, path: str | None = None, *, timeout_seconds: float = 10.0, max_vector_shapes: int = 8
    ) -> RemoteStore:
        """qdrant-client's in-process local mode: in memory, or persisted under path."""
        return cls(
            local_client(path), timeout_seconds=timeout_seconds, max_vector_shapes=max_vector_shapes
        )

    # Lifecycle

    async def open(self) -> None:
        """Build the client; no request is made, so a server that is down does not matter."""
        self._client.open()

    async def close(self) -> None:
        self._catalog.clear()
        await self._client.close()

    async def ping(self) -> None:
        await self._client.call("ping", lambda c: c.get_collections())

    # Collections

    async def ensure_collection(
        self, tenant: str, name: str, dimension: int, distance: Distance
    ) -> None:
        validate_dimension(dimension)
        try:
            existing: CollectionEntry | None = (
                await self._catalog.lookup(tenant, name, fresh=True)
            ).entry
        except NotFound:
            existing = None
        await common.ensure_collection(self, existing, tenant, name, dimension, distance)

    async def create_collection(
        self, tenant: str, name: str, dimension: int, distance: Distance
    ) -> CollectionInfo:
        validate_tenant(tenant)
        validate_collection_name(name)
        validate_dimension(dimension)
        try:
            await self._catalog.lookup(tenant, name, fresh=True)
        except NotFound:
            pass
        else:
            raise AlreadyExists(f"Collection '{name}' already exists")
        logical = Logical(CollectionEntry(tenant, name, dimension, distance))
        await self._catalog.add(logical)
        return logical.info(0)

    async def delete_collection(self, tenant: str, name: str) -> None:
        logical = await self._catalog.lookup(tenant, name, fresh=True)
        await self._catalog.remove(logical)

    async def get_collection(self, tenant: str, name: str) -> CollectionInfo:
        logical = await self._catalog.lookup(tenant, name, fresh=True)
        return logical.info(await self._catalog.count(logical, logical.only))

    async def dimension(self, tenant: str, name: str) -> int:
        return (await self._catalog.lookup(tenant, name)).entry.dimension

    async def list_collections(self, tenant: str) -> list[CollectionInfo]:
        validate_tenant(tenant)
        entries = await self._catalog.entries_of(tenant)

        async def describe(entry: CollectionEntry) -> CollectionInfo | None:
            logical = Logical(entry)
            try:
                return logical.info(await self._catalog.count(logical, logical.only))
            except NotFound:
                return None  # its physical collection was removed behind our back

        infos = await asyncio.gather(*(describe(e) for e in entries))
        return sorted((i for i in infos if i is not None), key=lambda i: i.name)

    async def physical_collections(self) -> list[CollectionInfo]:
        return await self._catalog.physical_collections()

    # Points

    async def upsert(self, tenant: str, collection: str, points: Sequence[Point]) -> int:
        logical = await self._catalog.lookup(tenant, collection, fresh=True)
        partition = logical.entry.partition
        structs = to_point_structs(points, partition)
        self._catalog.check_dimension(
            logical, [(f"Vector of point {i}", p.vector) for i, p in enumerate(points)]
        )
        return await self._write(logical, structs)

    async def _write(self, logical: Logical, structs: list[models.PointStruct]) -> int:
        if not structs:
            return 0
        await self._client.call(
            "upsert",
            lambda c: c.upsert(logical.physical, points=structs, wait=True),
            collection=logical.entry.name,
        )
        return len(structs)

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
        common.check_query(vector, limit, offset, score_threshold)
        logical = await self._catalog.reading(tenant, collection, [vector])
        query_filter = logical.scoped(filter)
        response = await self._client.call(
            "query_points",
            lambda c: c.query_points(
                logical.physical,
                query=[float(x) for x in vector],
                query_filter=query_filter,
                limit=limit,
                offset=offset or None,
                with_payload=True,
                with_vectors=with_vector,
                score_threshold=score_threshold,
                search_params=SEARCH_PARAMS,
            ),
            collection=collection,
        )
        return [
            client_scored(
                p.payload, float(p.score), from_qdrant_vector(p.vector) if with_vector else None
            )
            for p in response.points
        ]

    async def _retrieve(
        self, logical: Logical, ids: list[PointId], *, with_vector: bool
    ) -> dict[PointId, Record]:
        """The points among the client's ids that exist in this logical collection."""
        partition = logical.entry.partition
        stored: list[models.ExtendedPointId] = [stored_id(partition, i) for i in ids]
        found = await self._client.call(
            "retrieve",
            lambda c: c.retrieve(
                logical.physical, ids=stored, with_payload=True, with_vectors=with_vector
            ),
            collection=logical.entry.name,
        )
        records: dict[PointId, Record] = {}
        for r in found:
            if not owns(partition, r.payload):
                continue
            record = client_record(r.payload, from_qdrant_vector(r.vector) if with_vector else None)
            records[record.id] = record
        return records

    async def retrieve(
        self, tenant: str, collection: str, ids: Sequence[PointId], *, with_vector: bool = False
    ) -> list[Record]:
        wanted = normalize_ids(ids)
        logical = await self._catalog.reading(tenant, collection)  # NotFound even when ids is empty
        if not wanted:
            return []
        by_id = await self._retrieve(logical, wanted, with_vector=with_vector)
        return [by_id[i] for i in wanted if i in by_id]

    async def delete_ids(self, tenant: str, collection: str, ids: Sequence[PointId]) -> int:
        wanted = normalize_ids(ids)
        logical = await self._catalog.lookup(tenant, collection, fresh=True)
        if not wanted:
            return 0
        found = await self._retrieve(logical, wanted, with_vector=False)
        partition = logical.entry.partition
        existing: list[models.ExtendedPointId] = [stored_id(partition, i) for i in found]
        if not existing:
            return 0
        await self._client.call(
            "delete",
            lambda c: c.delete(
                logical.physical, points_selector=models.PointIdsList(points=existing), wait=True
            ),
            collection=collection,
        )
        return len(existing)

    async def delete_by_filter(self, tenant: str, collection: str, filter: Filter) -> int:
        logical = await self._catalog.lookup(tenant, collection, fresh=True)
        return await self._delete_matching(logical, logical.scoped(filter))

    async def _delete_matching(self, logical: Logical, flt: models.Filter) -> int:
        matched = await self._catalog.count(logical, flt)
        if matched == 0:
            return 0
        await self._client.call(
            "delete",
            lambda c: c.delete(
                logical.physical, points_selector=models.FilterSelector(filter=flt), wait=True
            ),
            collection=logical.entry.name,
        )
        return matched

    async def count(self, tenant: str, collection: str, filter: Filter | None = None) -> int:
        logical = await self._catalog.reading(tenant, collection)
        return await self._catalog.count(logical, logical.scoped(filter))

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
        check_limit(limit)
        offset = normalize_point_id(cursor) if cursor is not None else None
        logical = await self._catalog.reading(tenant, collection)
        qdrant_filter = logical.scoped(filter)
        records, next_offset = await self._client.call(
            "scroll",
            lambda c: c.scroll(
                logical.physical,
                scroll_filter=qdrant_filter,
                limit=limit,
                offset=offset,
                with_payload=True,
                with_vectors=with_vector,
            ),
            collection=collection,
        )
        return ScrollPage(
            points=[
                client_record(r.payload, from_qdrant_vector(r.vector) if with_vector else None)
                for r in records
            ],
            next_cursor=from_qdrant_id(next_offset) if next_offset is not None else None,
        )

    # Backup, restore and migrate

    async def all_collections(self) -> list[CollectionEntry]:
        entries = await self._catalog.entries_of(None)
        return sorted(entries, key=lambda e: (e.tenant, e.name))

    async def export_points(
        self, tenant: str, collection: str, *, limit: int, cursor: str | None = None
    ) -> tuple[list[StoredPoint], str | None]:
        check_limit(limit)
        offset = normalize_point_id(cursor) if cursor is not None else None
        logical = await self._catalog.lookup(tenant, collection, fresh=True)
        records, next_offset = await self._client.call(
            "scroll",
            lambda c: c.scroll(
                logical.physical,
                scroll_filter=logical.only,
                limit=limit,
                offset=offset,
                with_payload=True,
                with_vectors=True,
            ),
            collection=collection,
        )
        points = [to_stored_point(str(from_qdrant_id(r.id)), r.payload, r.vector) for r in records]
        return points, None if next_offset is None else str(from_qdrant_id(next_offset))

    async def import_points(
        self, tenant: str, collection: str, points: Sequence[StoredPoint]
    ) -> int:
        logical = await self._catalog.lookup(tenant, collection, fresh=True)
        check_stored(points, logical.entry.partition, logical.entry.dimension)
        if any(p.sparse for p in points):
            await self._catalog.ensure_physical(logical)
        return await self._write(logical, from_stored_points(points))


for _name in VectorStore.__abstractmethods__ - {"open", "close"}:
    setattr(
        RemoteStore,
        _name,
        within_one_deadline(getattr(RemoteStore, _name), lambda store: store._client.timeout),
    )

__all__ = ["RemoteStore"]
