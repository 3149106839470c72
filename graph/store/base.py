"""The one interface every vector store adapter implements.

Semantics every adapter keeps (the contract suite in tests/store checks them):

- Every collection and point method takes the tenant first and is confined to it:
  collections are per tenant (tenant A's `memories` is not tenant B's), point ids
  are per collection, and nothing a caller passes can reach another tenant's
  points (graph/store/tenancy.py has the layout). The tenant comes from the
  caller's credential, never from client input.
- Collections are named by validate_collection_name; a missing collection is
  NotFound, creating an existing one AlreadyExists.
- Every write validates the whole batch first (vector dimension; ids are
  already normalised by normalize_point_id) and writes nothing when any item
  is bad (BadUserInput). When upsert returns, the points are durable (they
  survive kill -9 of the process) and visible to every read.
- Ids come back as the client gave them (int or canonical UUID string); scroll
  pages go in the order of the stored ids, and the cursor is opaque.
- A store that cannot be reached raises StoreUnavailable; one that does not
  answer within the configured timeout raises StoreTimeout. No other
  exception escapes an adapter for a failure of the backend.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from datetime import datetime

from graph.settings import Distance
from graph.store.models import (
    CollectionInfo,
    Filter,
    MemoryPoint,
    MemoryRecord,
    Point,
    PointId,
    RecallRequest,
    Record,
    ScoredPoint,
    ScrollPage,
    StoredPoint,
)
from graph.store.tenancy import CollectionEntry


class VectorStore(ABC):
    backend: str

    @abstractmethod
    async def open(self) -> None:
        """Connect or load from disk. Must not raise when a remote store is down."""

    @abstractmethod
    async def close(self) -> None:
        """Flush everything and release the store; the last call on this object."""

    @abstractmethod
    async def ping(self) -> None:
        """Return when the store answers; StoreUnavailable or StoreTimeout otherwise."""

    # Collections

    @abstractmethod
    async def ensure_collection(
        self, tenant: str, name: str, dimension: int, distance: Distance
    ) -> None:
        """Create the collection when missing; keep an existing one as it is."""

    @abstractmethod
    async def create_collection(
        self, tenant: str, name: str, dimension: int, distance: Distance
    ) -> CollectionInfo: ...

    @abstractmethod
    async def delete_collection(self, tenant: str, name: str) -> None:
        """NotFound when there is no such collection."""

    @abstractmethod
    async def get_collection(self, tenant: str, name: str) -> CollectionInfo: ...

    @abstractmethod
    async def dimension(self, tenant: str, name: str) -> int:
        """The collection's vector dimension from the catalog, without counting its points
        as get_collection does; NotFound when there is no such collection."""

    @abstractmethod
    async def list_collections(self, tenant: str) -> list[CollectionInfo]:
        """The tenant's collections, sorted by name."""

    @abstractmethod
    async def physical_collections(self) -> list[CollectionInfo]:
        """What the engine holds, all tenants together (for operators' metrics only: never
        shown to a client). Named by graph.store.tenancy.physical_name."""

    # Points

    @abstractmethod
    async def upsert(self, tenant: str, collection: str, points: Sequence[Point]) -> int:
        """Insert or replace by id; returns how many points were written."""

    @abstractmethod
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
        """Nearest neighbours, best first, payload always included."""

    @abstractmethod
    async def retrieve(
        self, tenant: str, collection: str, ids: Sequence[PointId], *, with_vector: bool = False
    ) -> list[Record]:
        """The points that exist among ids, in the order of ids (missing ones left out)."""

    @abstractmethod
    async def delete_ids(self, tenant: str, collection: str, ids: Sequence[PointId]) -> int:
        """Delete by id; returns how many of them existed."""

    @abstractmethod
    async def delete_by_filter(self, tenant: str, collection: str, filter: Filter) -> int:
        """Delete every point matching filter; returns how many there were."""

    @abstractmethod
    async def count(self, tenant: str, collection: str, filter: Filter | None = None) -> int:
        """Exact count of points matching filter (all points when None)."""

    @abstractmethod
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
        """Up to limit points from cursor on (None: the start), and the next cursor."""

    # Memories (points with text: graph/store/tenancy.py). Reads never return a memory
    # expired at their `now`.

    @abstractmethod
    async def remember(self, tenant: str, collection: str, memories: Sequence[MemoryPoint]) -> int:
        """Insert or replace memories by id, all or nothing, durable on return (as upsert);
        a memory without a vector has none in the store."""

    @abstractmethod
    async def recall(
        self, tenant: str, collection: str, request: RecallRequest
    ) -> list[MemoryRecord]:
        """The memories best for request, best first (scores higher is better)."""

    @abstractmethod
    async def get_memories(
        self, tenant: str, collection: str, ids: Sequence[PointId], *, now: datetime | None
    ) -> list[MemoryRecord]:
        """The memories among ids in the order of ids; points without text and (unless now
        is None) memories expired at now are left out."""

    @abstractmethod
    async def forget_by_filter(self, tenant: str, collection: str, filter: Filter) -> int:
        """Delete the memories (only they) matching filter; returns how many there were."""

    @abstractmethod
    async def sweep_expired_all_tenants(self, now: datetime, limit: int) -> int:
        """Delete up to limit memories expired at now, across every tenant and collection:
        the one call that is not confined to a tenant (for the expiry sweep only)."""

    # Backup, restore and migrate (graph/store/backup/): points as stored, all tenants.

    @abstractmethod
    async def all_collections(self) -> list[CollectionEntry]:
        """Every tenant's logical collections, sorted by tenant and name (for backup and
        migrate only: never shown to a client)."""

    @abstractmethod
    async def export_points(
        self, tenant: str, collection: str, *, limit: int, cursor: str | None = None
    ) -> tuple[list[StoredPoint], str | None]:
        """Up to limit points of the collection as stored, in stored-id order from cursor
        on (None: the start), and the next cursor (None after the last page)."""

    @abstractmethod
    async def import_points(
        self, tenant: str, collection: str, points: Sequence[StoredPoint]
    ) -> int:
        """Insert or replace points as stored (an export of the same logical collection),
        all or nothing: a point of another partition, with a stored id not derived from its
        own, or of the wrong dimension is BadUserInput and nothing is written."""
