"""The one interface every vector store adapter implements.

Semantics every adapter keeps (the contract suite in tests/store checks them):

- Collections are named by validate_collection_name; a missing collection is
  NotFound, creating an existing one AlreadyExists.
- Every write validates the whole batch first (vector dimension; ids are
  already normalised by normalize_point_id) and writes nothing when any item
  is bad (BadUserInput). When upsert returns, the points are durable (they
  survive kill -9 of the process) and visible to every read.
- Ids come back as int or canonical UUID string; scroll pages go in
  ascending id order (integers before UUIDs, as Qdrant orders them).
- A store that cannot be reached raises StoreUnavailable; one that does not
  answer within the configured timeout raises StoreTimeout. No other
  exception escapes an adapter for a failure of the backend.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence

from graph.settings import Distance
from graph.store.models import (
    CollectionInfo,
    Filter,
    Point,
    PointId,
    Record,
    ScoredPoint,
    ScrollPage,
)


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
    async def ensure_collection(self, name: str, dimension: int, distance: Distance) -> None:
        """Create the collection when missing; keep an existing one as it is."""

    @abstractmethod
    async def create_collection(
        self, name: str, dimension: int, distance: Distance
    ) -> CollectionInfo: ...

    @abstractmethod
    async def delete_collection(self, name: str) -> None:
        """NotFound when there is no such collection."""

    @abstractmethod
    async def get_collection(self, name: str) -> CollectionInfo: ...

    @abstractmethod
    async def list_collections(self) -> list[CollectionInfo]:
        """Sorted by name."""

    # Points

    @abstractmethod
    async def upsert(self, collection: str, points: Sequence[Point]) -> int:
        """Insert or replace by id; returns how many points were written."""

    @abstractmethod
    async def query(
        self,
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
        self, collection: str, ids: Sequence[PointId], *, with_vector: bool = False
    ) -> list[Record]:
        """The points that exist among ids, in the order of ids (missing ones left out)."""

    @abstractmethod
    async def delete_ids(self, collection: str, ids: Sequence[PointId]) -> int:
        """Delete by id; returns how many of them existed."""

    @abstractmethod
    async def delete_by_filter(self, collection: str, filter: Filter) -> int:
        """Delete every point matching filter; returns how many there were."""

    @abstractmethod
    async def count(self, collection: str, filter: Filter | None = None) -> int:
        """Exact count of points matching filter (all points when None)."""

    @abstractmethod
    async def scroll(
        self,
        collection: str,
        *,
        limit: int,
        cursor: PointId | None = None,
        filter: Filter | None = None,
        with_vector: bool = False,
    ) -> ScrollPage:
        """Up to limit points with id >= cursor in ascending id order, and the next cursor."""
