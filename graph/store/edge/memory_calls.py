"""The embedded store's calls on memories (a part of EdgeStore): each checks its input,
confines itself to the tenant's collection and runs graph/store/edge/memory.py on the
collection's live shards."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

from qdrant_edge import SearchParams

from graph.store.edge import memory, views
from graph.store.edge.layout import Collection
from graph.store.edge.logical import Logical
from graph.store.models import (
    Filter,
    MemoryPoint,
    MemoryRecord,
    PointId,
    RecallRequest,
    check_finite,
    check_limit,
    check_vector_dimension,
    expired,
    normalize_ids,
)
from graph.store.tenancy import iso


class MemoryCalls(views.ShardRunner):
    """Needs EdgeStore's catalog lookup, its serialised writes and its search parameters."""

    _collections: dict[str, Collection]
    _search_params: SearchParams | None

    def _logical(self, tenant: str, name: str) -> Logical:
        raise NotImplementedError

    async def _write_batch(
        self, logical: Logical, convert: Callable[..., Any], items: Sequence[Any]
    ) -> int:
        raise NotImplementedError

    async def _write(self, logical: Logical, fn: Callable[..., int], *args: Any) -> int:
        raise NotImplementedError

    async def remember(self, tenant: str, collection: str, memories: Sequence[MemoryPoint]) -> int:
        logical = self._logical(tenant, collection)
        return await self._write_batch(logical, memory.memory_points, memories)

    async def recall(
        self, tenant: str, collection: str, request: RecallRequest
    ) -> list[MemoryRecord]:
        logical = self._logical(tenant, collection)
        coll = logical.coll
        check_limit(request.limit)
        if request.dense is not None:
            check_vector_dimension(request.dense, coll.manifest.dimension, "Query vector")
            check_finite(request.dense, "Query vector")
        flt = memory.memories_only(logical.scoped(request.filter), iso(request.now))
        return await self._on_view(
            coll.view,
            False,
            memory.recall,
            request,
            flt,
            coll.manifest.distance,
            self._search_params,
            coll.moves,
        )

    async def get_memories(
        self, tenant: str, collection: str, ids: Sequence[PointId], *, now: datetime | None
    ) -> list[MemoryRecord]:
        logical = self._logical(tenant, collection)
        wanted = normalize_ids(ids)
        if not wanted:
            return []
        found = await self._on_view(
            logical.coll.view, False, memory.retrieve, wanted, logical.entry.partition
        )
        return [found[i] for i in wanted if i in found and not expired(found[i], now)]

    async def forget_by_filter(self, tenant: str, collection: str, filter: Filter) -> int:
        logical = self._logical(tenant, collection)
        flt = memory.memories_only(logical.scoped(filter), None)
        return await self._write(logical, views.delete_by_filter, flt)

    async def sweep_expired_all_tenants(self, now: datetime, limit: int) -> int:
        flt = memory.expired_everywhere(iso(now))
        deleted = 0
        for coll in list(self._collections.values()):
            if deleted >= limit:
                break
            async with coll.lock:
                if coll.closing:
                    continue
                deleted += await self._on_view(
                    coll.view, True, memory.sweep, flt, limit - deleted, coll.journal
                )
        return deleted
