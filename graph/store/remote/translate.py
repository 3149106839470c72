"""Translation between our models and qdrant_client.models: distances, filters, ids,
vectors and collection descriptions. Tenancy is applied before (tenancy.scoped_filter)
and after (tenancy.client_record); this module only changes types."""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from typing import Any

from qdrant_client import models

from graph.errors import BadUserInput
from graph.settings import Distance
from graph.store import common
from graph.store.models import (
    CollectionInfo,
    Condition,
    Filter,
    Match,
    Payload,
    Point,
    PointId,
    SparseVector,
    StoredPoint,
    check_finite,
    normalize_point_id,
)
from graph.store.tenancy import stored_id, stored_payload

# The unnamed dense vector's name among a point's vectors (a memory has named ones too).
DENSE = ""
# Every dense search's parameters (sparse searches take none).
SEARCH_PARAMS = models.SearchParams(hnsw_ef=common.HNSW_EF)

TO_QDRANT_DISTANCE: dict[Distance, models.Distance] = {
    Distance.COSINE: models.Distance.COSINE,
    Distance.DOT: models.Distance.DOT,
    Distance.EUCLID: models.Distance.EUCLID,
}
FROM_QDRANT_DISTANCE = {qdrant: ours for ours, qdrant in TO_QDRANT_DISTANCE.items()}


class Unsupported(Exception):
    """A collection made outside this server that we cannot represent (named vectors...)."""


def to_qdrant_filter(flt: Filter) -> models.Filter:
    def conditions(items: list[Condition]) -> list[models.Condition] | None:
        return [_to_qdrant_condition(c) for c in items] or None

    return models.Filter(
        must=conditions(flt.must),
        should=conditions(flt.should),
        must_not=conditions(flt.must_not),
    )


def _to_qdrant_condition(condition: Condition) -> models.Condition:
    if condition.filter is not None:
        return to_qdrant_filter(condition.filter)
    assert condition.key is not None  # validate_filter ran first
    if condition.match is not None:
        return models.FieldCondition(key=condition.key, match=_to_qdrant_match(condition.match))
    assert condition.range is not None
    rng = condition.range
    return models.FieldCondition(
        key=condition.key,
        range=models.Range(gt=rng.gt, gte=rng.gte, lt=rng.lt, lte=rng.lte),
    )


def _to_qdrant_match(match: Match) -> models.Match:
    if match.value is not None:
        return models.MatchValue(value=match.value)
    if match.any is not None:
        return models.MatchAny(any=match.any)
    # `except` is a keyword: MatchExcept's field is except_ with the alias "except".
    return models.MatchExcept.model_validate({"except": match.except_})


def from_qdrant_id(raw: models.ExtendedPointId) -> PointId:
    if isinstance(raw, int):
        return raw
    return str(raw if isinstance(raw, uuid.UUID) else uuid.UUID(raw))


def from_qdrant_vector(raw: object) -> list[float] | None:
    """The dense vector of a point as read: a memory has named vectors (its BM25 weights
    beside the unnamed dense one), and then they all come back by name."""
    if isinstance(raw, dict):
        raw = raw.get(DENSE)
    if isinstance(raw, list) and all(isinstance(x, int | float) for x in raw):
        return [float(x) for x in raw]
    return None


def to_collection_info(name: str, info: models.CollectionInfo, points_count: int) -> CollectionInfo:
    params = info.config.params.vectors
    if not isinstance(params, models.VectorParams):
        raise Unsupported(f"collection {name!r} has no single unnamed vector")
    distance = FROM_QDRANT_DISTANCE.get(params.distance)
    if distance is None:
        raise Unsupported(f"collection {name!r} uses distance {params.distance}")
    return CollectionInfo(
        name=name, dimension=params.size, distance=distance, points_count=points_count
    )


def _check_payload(payload: Payload | None, what: str) -> None:
    if payload is None:
        return
    if not isinstance(payload, dict):
        raise BadUserInput(f"{what} payload must be a JSON object")
    try:
        json.dumps(payload, allow_nan=False)
    except (TypeError, ValueError):
        raise BadUserInput(f"{what} payload must be JSON without NaN or infinity") from None


def to_point_structs(points: Sequence[Point], partition: str) -> list[models.PointStruct]:
    """The whole batch checked (all but the dimension) and converted, stored under partition."""
    structs: list[models.PointStruct] = []
    for i, point in enumerate(points):
        what = f"Point {i}"
        check_finite(point.vector, f"Vector of point {i}")
        _check_payload(point.payload, what)
        point_id = normalize_point_id(point.id)
        structs.append(
            models.PointStruct(
                id=stored_id(partition, point_id),
                vector=[float(x) for x in point.vector],
                payload=stored_payload(partition, point_id, point.payload),
            )
        )
    return structs


def to_stored_point(point_id: str, payload: Payload | None, raw: object) -> StoredPoint:
    sparse: dict[str, SparseVector] = {}
    if isinstance(raw, dict):
        for name, value in raw.items():
            if isinstance(value, models.SparseVector):
                sparse[name] = SparseVector(list(value.indices), list(value.values))
        raw = raw.get(DENSE)
    return StoredPoint(point_id, payload or {}, from_qdrant_vector(raw), sparse)


def from_stored_points(points: Sequence[StoredPoint]) -> list[models.PointStruct]:
    """Checked by tenancy.check_stored first."""
    structs: list[models.PointStruct] = []
    for point in points:
        vector: Any = [float(x) for x in point.vector] if point.vector is not None else None
        if point.sparse:
            vectors: dict[str, Any] = {
                name: models.SparseVector(indices=s.indices, values=s.values)
                for name, s in point.sparse.items()
            }
            if vector is not None:
                vectors[DENSE] = vector
            vector = vectors
        structs.append(models.PointStruct(id=point.id, vector=vector, payload=point.payload))
    return structs
