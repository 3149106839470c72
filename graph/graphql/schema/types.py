"""GraphQL output types.

Resolvers return the store's own dataclasses (graph.store.models) where the
attribute names match: fields then resolve by plain attribute access, with no
per-hit conversion on the hot path.
"""

from __future__ import annotations

from enum import Enum

import strawberry

from graph.graphql.schema.scalars import JSON, Vector
from graph.settings import Distance as DistanceSetting


@strawberry.enum(description="Liveness and readiness of the service and its vector store.")
class HealthStatus(Enum):
    OK = "OK"
    DEGRADED = "DEGRADED"
    UNAVAILABLE = "UNAVAILABLE"


@strawberry.enum(description="How vectors of a collection are compared.")
class Distance(Enum):
    COSINE = DistanceSetting.COSINE.value
    DOT = DistanceSetting.DOT.value
    EUCLID = DistanceSetting.EUCLID.value


@strawberry.type
class Health:
    status: HealthStatus
    version: str
    backend: str = strawberry.field(description="`embedded` (qdrant-edge) or `qdrant` (a server).")


@strawberry.type
class ScoredPoint:
    id: strawberry.ID = strawberry.field(
        description="Integer ids come back as their decimal string, UUIDs in canonical form."
    )
    score: float
    payload: JSON | None
    vector: Vector | None = strawberry.field(
        description=(
            "Only when the query asked withVector: true (under cosine, the stored, "
            "normalised vector)."
        )
    )


@strawberry.type(description="A stored point.")
class Point:
    id: strawberry.ID
    payload: JSON | None
    vector: Vector | None = strawberry.field(description="Only when asked with withVector: true.")


@strawberry.type
class UpsertResult:
    upserted: int


@strawberry.type
class DeleteResult:
    deleted: int = strawberry.field(description="How many points existed and were deleted.")


@strawberry.type
class ScrollResult:
    points: list[Point]
    next_cursor: strawberry.ID | None = strawberry.field(
        description="Pass as `cursor` to get the next page; null on the last page."
    )


@strawberry.type
class Collection:
    name: str
    dimension: int
    distance: Distance
    points_count: int
