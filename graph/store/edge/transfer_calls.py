"""The embedded store's calls for backup, restore and migrate (a part of EdgeStore): a
tenant's collection exported a page at a time in stored-id order, and stored points
written back as they were."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from qdrant_edge import ScrollRequest

from graph.store.edge import views
from graph.store.edge.logical import Logical
from graph.store.edge.translate import from_stored_points
from graph.store.models import StoredPoint, check_limit, normalize_point_id
from graph.store.tenancy import CollectionEntry


class TransferCalls(views.ShardRunner):
    """Needs EdgeStore's catalog and its serialised writes."""

    _catalog: dict[tuple[str, str], Logical]

    def _logical(self, tenant: str, name: str) -> Logical:
        raise NotImplementedError

    async def _write_batch(
        self, logical: Logical, convert: Callable[..., Any], items: Sequence[Any]
    ) -> int:
        raise NotImplementedError

    async def all_collections(self) -> list[CollectionEntry]:
        return [self._catalog[key].entry for key in sorted(self._catalog)]

    async def export_points(
        self, tenant: str, collection: str, *, limit: int, cursor: str | None = None
    ) -> tuple[list[StoredPoint], str | None]:
        logical = self._logical(tenant, collection)
        check_limit(limit)
        request = ScrollRequest(
            offset=normalize_point_id(cursor) if cursor is not None else None,
            limit=limit + 1,
            filter=logical.only,
            with_payload=True,
            with_vector=True,
        )
        return await self._on_view(logical.coll.view, False, views.export, request, limit)

    async def import_points(
        self, tenant: str, collection: str, points: Sequence[StoredPoint]
    ) -> int:
        logical = self._logical(tenant, collection)
        return await self._write_batch(logical, from_stored_points, points)
