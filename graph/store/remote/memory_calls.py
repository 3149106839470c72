"""The remote adapter's calls on memories (a part of RemoteStore): each checks its input,
finds the tenant's collection in the catalog and runs graph/store/remote/memory.py's
requests through the client."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import datetime

from qdrant_client import models

from graph.settings import Distance
from graph.store.models import (
    Filter,
    MemoryPoint,
    MemoryRecord,
    PointId,
    RecallMode,
    RecallRequest,
    check_finite,
    check_limit,
    expired,
    normalize_ids,
)
from graph.store.remote import memory
from graph.store.remote.catalog import Catalog, Logical
from graph.store.remote.client import Client
from graph.store.remote.translate import DENSE, SEARCH_PARAMS
from graph.store.tenancy import is_memory, memory_record, owns, stored_id


class MemoryCalls:
    """Needs RemoteStore's client, catalog, batched writes and deletes by filter."""

    _client: Client
    _catalog: Catalog

    async def _write(self, logical: Logical, structs: list[models.PointStruct]) -> int:
        raise NotImplementedError

    async def _delete_matching(self, logical: Logical, flt: models.Filter) -> int:
        raise NotImplementedError

    async def remember(self, tenant: str, collection: str, memories: Sequence[MemoryPoint]) -> int:
        logical = await self._catalog.lookup(tenant, collection, fresh=True)
        memory.check_metadata(memories)
        vectors = [
            (f"Vector of memory {i}", m.vector)
            for i, m in enumerate(memories)
            if m.vector is not None
        ]
        self._catalog.check_dimension(logical, vectors)
        structs = memory.memory_structs(memories, logical.entry.partition)
        await self._catalog.ensure_physical(logical)  # one made before memories: their vector
        return await self._write(logical, structs)

    async def recall(
        self, tenant: str, collection: str, request: RecallRequest
    ) -> list[MemoryRecord]:
        check_limit(request.limit)
        dense = [request.dense] if request.dense is not None else []
        for vector in dense:
            check_finite(vector, "Query vector")
        logical = await self._catalog.reading(tenant, collection, dense)
        await self._catalog.ensure_physical(logical)
        flt = memory.memories_only(logical.scoped(request.filter), request.now)
        query, prefetch, using = memory.recall_query(request, flt)
        diverse = request.diversity > 0
        response = await self._client.call(
            "query_points",
            lambda c: c.query_points(
                logical.physical,
                query=query,
                prefetch=prefetch,
                using=using,
                query_filter=flt,
                limit=request.candidates if diverse else request.limit,
                with_payload=True,
                with_vectors=[DENSE] if diverse else False,  # not the BM25 weights
                search_params=SEARCH_PARAMS,  # the top-level dense search, if any
            ),
            collection=collection,
        )
        if diverse:
            # In a worker thread: up to 100 candidates' vectors compared pairwise (numpy
            # releases the GIL for the products), a fraction of a second at large dimensions.
            return await asyncio.to_thread(
                memory.diversified, request, response.points, logical.entry.distance
            )
        plain = request.recency is None and request.mode is RecallMode.SEMANTIC
        descending = logical.entry.distance is not Distance.EUCLID or not plain
        return memory.scored_memories(response.points, descending)

    async def get_memories(
        self, tenant: str, collection: str, ids: Sequence[PointId], *, now: datetime | None
    ) -> list[MemoryRecord]:
        wanted = normalize_ids(ids)
        logical = await self._catalog.reading(tenant, collection)
        if not wanted:
            return []
        partition = logical.entry.partition
        stored: list[models.ExtendedPointId] = [stored_id(partition, i) for i in wanted]
        found = await self._client.call(
            "retrieve",
            lambda c: c.retrieve(logical.physical, ids=stored, with_payload=True),
            collection=collection,
        )
        by_id = {
            m.id: m
            for m in (
                memory_record(r.payload)
                for r in found
                if owns(partition, r.payload) and is_memory(r.payload)
            )
        }
        return [by_id[i] for i in wanted if i in by_id and not expired(by_id[i], now)]

    async def forget_by_filter(self, tenant: str, collection: str, filter: Filter) -> int:
        logical = await self._catalog.lookup(tenant, collection, fresh=True)
        return await self._delete_matching(
            logical, memory.memories_only(logical.scoped(filter), None)
        )

    async def sweep_expired_all_tenants(self, now: datetime, limit: int) -> int:
        flt = memory.expired_everywhere(now)
        deleted = 0
        for physical in await self._catalog.physical_names():
            if deleted >= limit:
                break
            deleted += await self._sweep_physical(physical, flt, limit - deleted)
        return deleted

    async def _sweep_physical(self, physical: str, flt: models.Filter, limit: int) -> int:
        records, _ = await self._client.call(
            "scroll",
            lambda c: c.scroll(physical, scroll_filter=flt, limit=limit, with_payload=False),
            collection=physical,
        )
        ids: list[models.ExtendedPointId] = [r.id for r in records]
        if ids:
            await self._client.call(
                "delete",
                lambda c: c.delete(
                    physical, points_selector=models.PointIdsList(points=ids), wait=True
                ),
                collection=physical,
            )
        return len(ids)
