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

ID_DESCRIPTION = "Integer ids come back as their decimal string, UUIDs in canonical form."
PAYLOAD_DESCRIPTION = "The payload as written (a JSON object); null when the point has none."
VECTOR_DESCRIPTION = (
    "Only when the query asked withVector: true, else null (under cosine, the stored, "
    "normalised vector: unit length, not the numbers sent; dot and euclid keep them as sent, "
    "as 32-bit floats). Null also for a memory remembered without a vector."
)


@strawberry.enum(description="Liveness and readiness of the service and its vector store.")
class HealthStatus(Enum):
    OK = strawberry.enum_value("OK", description="The store answers; requests are welcome.")
    DEGRADED = strawberry.enum_value(
        "DEGRADED",
        description=(
            "The store answers, but the server is shutting down (it got SIGTERM; /readyz "
            "says 503): send new requests to another instance."
        ),
    )
    UNAVAILABLE = strawberry.enum_value(
        "UNAVAILABLE",
        description="The vector store did not answer; reads and writes fail meanwhile.",
    )


@strawberry.enum(description="How vectors of a collection are compared.")
class Distance(Enum):
    COSINE = strawberry.enum_value(
        DistanceSetting.COSINE.value,
        description=(
            "Cosine similarity, -1..1, higher is closer. Vectors are normalised to unit "
            "length when stored and queried, so their length does not matter."
        ),
    )
    DOT = strawberry.enum_value(
        DistanceSetting.DOT.value,
        description="Dot product of the vectors as given; higher is closer; unbounded.",
    )
    EUCLID = strawberry.enum_value(
        DistanceSetting.EUCLID.value,
        description=(
            "Euclidean distance, 0 or more; lower is closer, and results come smallest first."
        ),
    )


@strawberry.type(description="What the `health` field reports.")
class Health:
    status: HealthStatus = strawberry.field(
        description="OK, DEGRADED or UNAVAILABLE; never an error because the store is down."
    )
    version: str = strawberry.field(description="The server's version, e.g. 0.1.0.")
    backend: str = strawberry.field(description="`embedded` (qdrant-edge) or `qdrant` (a server).")


@strawberry.type(description="A point found by `query`, with its score.")
class ScoredPoint:
    id: strawberry.ID = strawberry.field(description=ID_DESCRIPTION)
    score: float = strawberry.field(
        description=(
            "How close the point is to the query vector, by the collection's distance: "
            "cosine similarity (-1..1) or dot product, higher is closer; or euclidean "
            "distance, lower is closer. Results come best first."
        )
    )
    payload: JSON | None = strawberry.field(description=PAYLOAD_DESCRIPTION)
    vector: Vector | None = strawberry.field(description=VECTOR_DESCRIPTION)


@strawberry.type(description="A stored point.")
class Point:
    id: strawberry.ID = strawberry.field(description=ID_DESCRIPTION)
    payload: JSON | None = strawberry.field(description=PAYLOAD_DESCRIPTION)
    vector: Vector | None = strawberry.field(description=VECTOR_DESCRIPTION)


@strawberry.type(description="What `upsert` did.")
class UpsertResult:
    upserted: int = strawberry.field(
        description="How many points were written, new and replaced alike: the batch's size."
    )


@strawberry.type(description="What `delete` or `forget` did.")
class DeleteResult:
    deleted: int = strawberry.field(
        description="How many points existed and were deleted (0 when none matched)."
    )


@strawberry.type(description="One page of `scroll`.")
class ScrollResult:
    points: list[Point] = strawberry.field(
        description="At most `limit` points, in the order of their stored ids."
    )
    next_cursor: strawberry.ID | None = strawberry.field(
        description="Pass as `cursor` to get the next page; null on the last page."
    )


@strawberry.type(description="A collection of the tenant.")
class Collection:
    name: str = strawberry.field(description="Its name, unique per tenant.")
    dimension: int = strawberry.field(
        description="How many numbers each of its vectors has, 1..65536."
    )
    distance: Distance = strawberry.field(description="How its vectors are compared.")
    points_count: int = strawberry.field(
        description="How many points it holds now, memories included."
    )
