"""The catalog of logical collections and the physical collections that hold them.

Tenancy (graph/store/tenancy.py): tenants' logical collections live in physical
collections named `graph-<shape>`, one per vector shape, with the partition key indexed
as a tenant keyword; the logical collections are points of the catalog collection
CATALOG_COLLECTION, so every replica of the API sees the same ones. Reads use a catalog
entry cached for ENTRY_TTL_SECONDS; writes and collection calls read it fresh.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import warnings
from collections.abc import Awaitable, Sequence
from typing import Any

from qdrant_client import AsyncQdrantClient, models

from graph.errors import AlreadyExists, BadUserInput, NotFound
from graph.store.common import check_shape_bound
from graph.store.models import (
    CollectionInfo,
    Filter,
    check_vector_dimension,
    validate_collection_name,
)
from graph.store.remote.client import Client
from graph.store.remote.memory import KEYWORDS_CONFIG, NEW_KEYWORDS_VECTOR
from graph.store.remote.translate import (
    TO_QDRANT_DISTANCE,
    Unsupported,
    to_collection_info,
    to_qdrant_filter,
)
from graph.store.tenancy import (
    EXPIRES_FIELD,
    KEYWORDS_VECTOR,
    PARTITION_FIELD,
    CollectionEntry,
    partition_of,
    scoped_filter,
    stored_id,
    validate_tenant,
)

PHYSICAL_PREFIX = "graph-"
CATALOG_COLLECTION = "graph-catalog"
CATALOG_TENANT_FIELD = "tenant"
ENTRY_TTL_SECONDS = 5.0
CATALOG_PAGE = 256
_LOCAL_INDEX_WARNING = "Payload indexes have no effect in the local Qdrant"


class Logical:
    """A tenant's collection as the catalog has it, with its partition filter built once."""

    __slots__ = ("catalog_id", "entry", "expires", "only", "physical")

    def __init__(self, entry: CollectionEntry) -> None:
        self.entry = entry
        self.physical = PHYSICAL_PREFIX + entry.physical
        self.catalog_id = catalog_id(entry.tenant, entry.name)
        self.only = to_qdrant_filter(scoped_filter(entry.partition, None))
        self.expires = time.monotonic() + ENTRY_TTL_SECONDS

    def scoped(self, flt: Filter | None) -> models.Filter:
        """flt confined to this collection (tenancy.scoped_filter), in qdrant-client's terms."""
        return (
            self.only if flt is None else to_qdrant_filter(scoped_filter(self.entry.partition, flt))
        )

    def info(self, points_count: int) -> CollectionInfo:
        e = self.entry
        return CollectionInfo(e.name, e.dimension, e.distance, points_count)


def catalog_id(tenant: str, name: str) -> str:
    return stored_id(CATALOG_COLLECTION, partition_of(tenant, name))


class Catalog:
    def __init__(self, client: Client, max_shapes: int = 8) -> None:
        self._client = client
        self._max_shapes = max_shapes
        # Serialises this process's shape changes: a create's physical collection is
        # never dropped by a delete of the last other collection of its shape.
        self._shapes_lock = asyncio.Lock()
        # Catalog entries by (tenant, name), for reads; physical collections known to exist.
        self.entries: dict[tuple[str, str], Logical] = {}
        self._physicals: set[str] = set()

    def clear(self) -> None:
        self.entries.clear()
        self._physicals.clear()

    async def lookup(self, tenant: str, name: str, *, fresh: bool = False) -> Logical:
        """The catalog entry of a logical collection; NotFound when there is none."""
        key = (tenant, name)
        cached = self.entries.get(key)
        if cached is not None and not fresh and cached.expires > time.monotonic():
            return cached
        validate_tenant(tenant)
        validate_collection_name(name)
        cid = catalog_id(tenant, name)
        try:
            found = await self._client.call(
                "retrieve",
                lambda c: c.retrieve(CATALOG_COLLECTION, ids=[cid], with_payload=True),
                collection=name,
            )
        except NotFound:
            found = []  # no catalog yet: no collection at all
        if not found or not found[0].payload:
            self.entries.pop(key, None)
            raise NotFound(f"Collection '{name}' not found")
        logical = Logical(CollectionEntry.from_json(found[0].payload))
        self.entries[key] = logical
        return logical

    async def create_if_missing(
        self,
        name: str,
        size: int,
        distance: models.Distance,
        index: tuple[str, bool] | None,
        *,
        keywords: bool = False,
    ) -> None:
        """A physical or catalog collection, with a keyword index on index[0] (is_tenant
        when index[1]); created once, by whichever replica gets there first."""
        exists = await self._client.call(
            "collection_exists", lambda c: c.collection_exists(name), collection=name
        )
        if not exists:
            with contextlib.suppress(AlreadyExists):
                await self._client.call(
                    "create_collection",
                    lambda c: c.create_collection(
                        name,
                        vectors_config=models.VectorParams(size=size, distance=distance),
                        sparse_vectors_config=KEYWORDS_CONFIG if keywords else None,
                    ),
                    collection=name,
                )
        if index is not None:
            field, is_tenant = index
            schema = models.KeywordIndexParams(
                type=models.KeywordIndexType.KEYWORD, is_tenant=is_tenant or None
            )
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message=_LOCAL_INDEX_WARNING)
                await self._client.call(
                    "create_payload_index",
                    lambda c: c.create_payload_index(name, field, field_schema=schema, wait=True),
                    collection=name,
                )

    async def ensure_physical(self, logical: Logical) -> None:
        if logical.physical in self._physicals:
            return
        e = logical.entry
        await self.create_if_missing(
            logical.physical,
            e.dimension,
            TO_QDRANT_DISTANCE[e.distance],
            (PARTITION_FIELD, True),
            keywords=True,
        )
        await self._ensure_memory_schema(logical)
        self._physicals.add(logical.physical)

    async def _ensure_memory_schema(self, logical: Logical) -> None:
        """A physical collection made before memories existed gets their sparse vector;
        every one the index of their expiry times (the expiry filter and sweep use it)."""
        schema = models.DatetimeIndexParams(type=models.DatetimeIndexType.DATETIME)
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=_LOCAL_INDEX_WARNING)
            await self._client.call(
                "create_payload_index",
                lambda c: c.create_payload_index(
                    logical.physical, EXPIRES_FIELD, field_schema=schema, wait=True
                ),
                collection=logical.entry.name,
            )
        info = await self._client.call(
            "get_collection",
            lambda c: c.get_collection(logical.physical),
            collection=logical.entry.name,
        )
        if KEYWORDS_VECTOR in (info.config.params.sparse_vectors or {}):
            return
        with contextlib.suppress(AlreadyExists, BadUserInput):  # added meanwhile elsewhere
            await self._client.call(
                "create_vector_name",
                lambda c: c.create_vector_name(
                    logical.physical, KEYWORDS_VECTOR, NEW_KEYWORDS_VECTOR
                ),
                collection=logical.entry.name,
            )

    async def purge(self, logical: Logical) -> None:
        """Delete every point of a logical collection."""
        if logical.physical not in self._physicals:
            exists = await self._client.call(
                "collection_exists",
                lambda c: c.collection_exists(logical.physical),
                collection=logical.entry.name,
            )
            if not exists:
                return
        await self._client.call(
            "delete",
            lambda c: c.delete(
                logical.physical,
                points_selector=models.FilterSelector(filter=logical.only),
                wait=True,
            ),
            collection=logical.entry.name,
        )

    async def count(self, logical: Logical, flt: models.Filter) -> int:
        result = await self._client.call(
            "count",
            lambda c: c.count(logical.physical, count_filter=flt, exact=True),
            collection=logical.entry.name,
        )
        return result.count

    def check_dimension(
        self, logical: Logical, vectors: Sequence[tuple[str, Sequence[float]]]
    ) -> None:
        """vectors: each with the name an error gives it, in the embedded adapter's words
        ("Vector of point 3", "Query vector")."""
        for what, vector in vectors:
            check_vector_dimension(vector, logical.entry.dimension, what)

    async def reading(
        self, tenant: str, collection: str, vectors: Sequence[Sequence[float]] = ()
    ) -> Logical:
        """The cached entry for a read; re-read once when a vector does not fit it (the
        collection may have been recreated by another replica)."""
        logical = await self.lookup(tenant, collection)
        if any(len(v) != logical.entry.dimension for v in vectors):
            logical = await self.lookup(tenant, collection, fresh=True)
        self.check_dimension(logical, [("Query vector", v) for v in vectors])
        return logical

    async def add(self, logical: Logical) -> None:
        """Record a new logical collection (the physical one created when missing, within
        the bound on vector shapes)."""
        async with self._shapes_lock:
            await self._add(logical)

    async def _add(self, logical: Logical) -> None:
        await self.create_if_missing(
            CATALOG_COLLECTION, 1, models.Distance.DOT, (CATALOG_TENANT_FIELD, False)
        )
        physicals = await self.physical_names()
        check_shape_bound(logical.physical, physicals, self._max_shapes)
        if logical.physical not in physicals:
            self._physicals.discard(logical.physical)  # dropped meanwhile, elsewhere
        await self.ensure_physical(logical)
        # Points of an earlier collection of this name whose delete was cut short must
        # not reappear in the new one.
        await self.purge(logical)
        entry = models.PointStruct(
            id=logical.catalog_id, vector=[1.0], payload=logical.entry.to_json()
        )
        await self._client.call(
            "upsert",
            lambda c: c.upsert(CATALOG_COLLECTION, points=[entry], wait=True),
            collection=logical.entry.name,
        )
        self.entries[(logical.entry.tenant, logical.entry.name)] = logical

    async def remove(self, logical: Logical) -> None:
        """Forget a logical collection and delete its points."""
        await self.purge(logical)
        await self._client.call(
            "delete",
            lambda c: c.delete(
                CATALOG_COLLECTION,
                points_selector=models.PointIdsList(points=[logical.catalog_id]),
                wait=True,
            ),
            collection=logical.entry.name,
        )
        self.entries.pop((logical.entry.tenant, logical.entry.name), None)
        # What a write racing with the delete (on another replica) may have added.
        await self.purge(logical)
        async with self._shapes_lock:
            if not await self._shape_in_use(logical.entry):
                await self._drop_physical(logical)

    async def _shape_in_use(self, entry: CollectionEntry) -> bool:
        shape = {"dimension": entry.dimension, "distance": entry.distance.value}
        same_shape = models.Filter(
            must=[
                models.FieldCondition(key=k, match=models.MatchValue(value=v))
                for k, v in shape.items()
            ]
        )
        result = await self._client.call(
            "count",
            lambda c: c.count(CATALOG_COLLECTION, count_filter=same_shape, exact=True),
            collection=CATALOG_COLLECTION,
        )
        return result.count > 0

    async def _drop_physical(self, logical: Logical) -> None:
        """The last collection of a shape is gone: so is its physical collection."""
        self._physicals.discard(logical.physical)
        with contextlib.suppress(NotFound):
            await self._client.call(
                "delete_collection",
                lambda c: c.delete_collection(logical.physical),
                collection=logical.entry.name,
            )

    async def physical_names(self) -> list[str]:
        """Every physical collection of this server, all tenants together."""
        response = await self._client.call("get_collections", lambda c: c.get_collections())
        return sorted(
            c.name
            for c in response.collections
            if c.name.startswith(PHYSICAL_PREFIX) and c.name != CATALOG_COLLECTION
        )

    async def entries_of(self, tenant: str | None) -> list[CollectionEntry]:
        """The tenant's logical collections (every tenant's with None), as the catalog has
        them."""
        mine = models.Filter(
            must=[
                models.FieldCondition(
                    key=CATALOG_TENANT_FIELD, match=models.MatchValue(value=tenant)
                )
            ]
            if tenant is not None
            else None
        )
        entries: list[CollectionEntry] = []
        offset: models.ExtendedPointId | None = None

        def page(c: AsyncQdrantClient) -> Awaitable[tuple[list[models.Record], Any]]:
            return c.scroll(
                CATALOG_COLLECTION,
                scroll_filter=mine,
                limit=CATALOG_PAGE,
                offset=offset,
                with_payload=True,
            )

        while True:
            try:
                records, offset = await self._client.call(
                    "scroll", page, collection=CATALOG_COLLECTION
                )
            except NotFound:
                return []  # no catalog yet
            entries.extend(CollectionEntry.from_json(r.payload) for r in records if r.payload)
            if offset is None:
                break
        return entries

    async def physical_collections(self) -> list[CollectionInfo]:
        names = await self.physical_names()

        async def describe(name: str) -> CollectionInfo | None:
            try:
                info = await self._client.call(
                    "get_collection", lambda c: c.get_collection(name), collection=name
                )
                counted = await self._client.call(
                    "count", lambda c: c.count(name, exact=True), collection=name
                )
                return to_collection_info(name, info, counted.count)
            except (NotFound, Unsupported):
                return None

        infos = [await describe(name) for name in names]
        return [info for info in infos if info is not None]
