"""Translation between our models and qdrant_edge's types: filters, matches, ids, points
and the points the engine hands back. Tenancy is applied before (tenancy.scoped_filter)
and after (tenancy.client_record); this module only changes types."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any, Protocol

import numpy as np
from qdrant_edge import (
    FieldCondition,
    QuantizationSearchParams,
    Query,
    QueryRequest,
    RangeFloat,
    SearchParams,
)
from qdrant_edge import Filter as EdgeFilter
from qdrant_edge import MatchAny as EdgeMatchAny
from qdrant_edge import MatchExcept as EdgeMatchExcept
from qdrant_edge import MatchValue as EdgeMatchValue
from qdrant_edge import Point as EdgePoint
from qdrant_edge import Record as EdgeRecord
from qdrant_edge import SparseVector as EdgeSparseVector

from graph.errors import BadUserInput
from graph.settings import Quantization
from graph.store.models import (
    Condition,
    Filter,
    Match,
    Point,
    PointId,
    Record,
    ScoredPoint,
    SparseVector,
    StoredPoint,
    check_finite,
    check_vector_dimension,
    normalize_point_id,
)
from graph.store.tenancy import (
    check_stored,
    client_record,
    client_scored,
    stored_payload,
    stored_uuid,
)

# Quantized search: candidates found on the int8 copies, rescored with the originals.
OVERSAMPLING = 2.0

EdgeId = int | str | uuid.UUID
# The unnamed dense vector's name among a point's vectors (a memory has named ones too).
DENSE = ""


def to_edge_filter(flt: Filter) -> EdgeFilter:
    """Our (validated) Filter as a qdrant_edge Filter."""
    return EdgeFilter(
        must=[_to_edge_condition(c) for c in flt.must] or None,
        should=[_to_edge_condition(c) for c in flt.should] or None,
        must_not=[_to_edge_condition(c) for c in flt.must_not] or None,
    )


def _to_edge_condition(condition: Condition) -> FieldCondition | EdgeFilter:
    if condition.filter is not None:
        return to_edge_filter(condition.filter)
    assert condition.key is not None  # validate_filter ran first
    if condition.match is not None:
        return FieldCondition(condition.key, match=_to_edge_match(condition.match))
    assert condition.range is not None
    r = condition.range
    return FieldCondition(condition.key, range=RangeFloat(gte=r.gte, gt=r.gt, lte=r.lte, lt=r.lt))


def nearest_request(
    vector: Sequence[float],
    flt: EdgeFilter | None,
    *,
    limit: int,
    offset: int,
    shards: int,
    score_threshold: float | None,
    with_vector: bool,
    params: SearchParams | None,
) -> QueryRequest:
    """The request each of a view's shards runs for a nearest-neighbour query. With more
    than one shard, each returns limit + offset hits and views.query merges and pages."""
    single = shards == 1
    return QueryRequest(
        limit=limit if single else limit + offset,
        offset=offset if single else 0,
        query=Query.Nearest(vector if isinstance(vector, list) else list(vector)),
        filter=flt,
        score_threshold=score_threshold,
        with_vector=with_vector,
        with_payload=True,
        params=params,
    )


def _to_edge_match(match: Match) -> EdgeMatchValue | EdgeMatchAny | EdgeMatchExcept:
    if match.value is not None:
        if isinstance(match.value, bool):
            # qdrant-edge 0.9 reads a Python bool as the integer 0/1 (bool subclasses
            # int), which never matches a JSON boolean; numpy's bool is read as a bool.
            return EdgeMatchValue(np.bool_(match.value))  # type: ignore[arg-type]
        return EdgeMatchValue(match.value)
    if match.any is not None:
        return EdgeMatchAny(match.any)
    assert match.except_ is not None
    return EdgeMatchExcept(match.except_)


def from_edge_id(raw: EdgeId) -> PointId:
    if type(raw) is int:
        return raw
    return str(raw) if isinstance(raw, uuid.UUID) else str(uuid.UUID(str(raw)))


def id_order(raw: EdgeId) -> tuple[int, int]:
    """Qdrant's id order: integers first, then UUIDs by their 128-bit value."""
    if type(raw) is int:
        return (0, raw)
    return (1, (raw if isinstance(raw, uuid.UUID) else uuid.UUID(str(raw))).int)


def vector_of(raw: object) -> list[float] | None:
    """A point's dense vector, if it has one (a memory's vectors are named)."""
    if isinstance(raw, dict):
        raw = raw.get(DENSE)
    return raw if isinstance(raw, list) else None


class Scored(Protocol):
    """An engine hit, or views.Found (a hit with its payload read afterwards)."""

    @property
    def score(self) -> float: ...
    @property
    def payload(self) -> dict[str, Any] | None: ...
    @property
    def vector(self) -> Any: ...


def from_edge_scored(hit: Scored, with_vector: bool) -> ScoredPoint:
    return client_scored(hit.payload, hit.score, vector_of(hit.vector) if with_vector else None)


def from_edge_record(rec: EdgeRecord, with_vector: bool) -> Record:
    return client_record(rec.payload, vector_of(rec.vector) if with_vector else None)


def to_stored_point(rec: EdgeRecord) -> StoredPoint:
    sparse: dict[str, SparseVector] = {}
    if isinstance(rec.vector, dict):
        for name, value in rec.vector.items():
            if isinstance(value, EdgeSparseVector):
                sparse[name] = SparseVector(list(value.indices), list(value.values))
    return StoredPoint(str(from_edge_id(rec.id)), rec.payload or {}, vector_of(rec.vector), sparse)


def from_stored_points(
    points: Sequence[StoredPoint], dimension: int, partition: str, first: int = 0
) -> list[EdgePoint]:
    """points checked (tenancy.check_stored) and converted."""
    check_stored(points, partition, dimension, first)
    converted: list[EdgePoint] = []
    for point in points:
        vectors: dict[str, list[float] | EdgeSparseVector] = {
            name: EdgeSparseVector(s.indices, s.values) for name, s in point.sparse.items()
        }
        if point.vector is not None:
            vectors[DENSE] = point.vector
        try:
            converted.append(
                EdgePoint(
                    point.id,
                    vectors if point.sparse else point.vector,  # type: ignore[arg-type]
                    point.payload,
                )
            )
        except (TypeError, ValueError, OverflowError):
            raise BadUserInput("A stored point's payload is not JSON the store takes") from None
    return converted


# Checks on input


def edge_points(
    points: Sequence[Point], dimension: int, partition: str, first: int = 0
) -> list[EdgePoint]:
    """points checked and converted (first: the position of points[0] in the client's
    batch, for error messages)."""
    converted: list[EdgePoint] = []
    for i, point in enumerate(points, start=first):
        what = f"Vector of point {i}"
        check_vector_dimension(point.vector, dimension, what)
        check_finite(point.vector, what)
        if point.payload is not None and not isinstance(point.payload, dict):
            raise BadUserInput(f"Point {i} payload must be a JSON object")
        point_id = normalize_point_id(point.id)
        try:
            converted.append(
                EdgePoint(
                    stored_uuid(partition, point_id),
                    point.vector,
                    stored_payload(partition, point_id, point.payload),
                )
            )
        except (TypeError, ValueError, OverflowError):
            raise BadUserInput(f"Point {i} payload must be JSON without NaN or infinity") from None
    return converted


def search_params(hnsw_ef: int | None, quantization: Quantization) -> SearchParams | None:
    """Quantized, a query's candidates found on the int8 copies are rescored with the
    original vectors, twice as many as asked for: recall@10 as without quantization on
    embedding-shaped data (docs/benchmarks.md)."""
    if quantization is Quantization.NONE:
        return SearchParams(hnsw_ef=hnsw_ef) if hnsw_ef else None
    rescored = QuantizationSearchParams(rescore=True, oversampling=OVERSAMPLING)
    return SearchParams(hnsw_ef=hnsw_ef, quantization=rescored)


def stage_search_params(params: SearchParams | None) -> SearchParams | None:
    """search_params for a memory recall's ranking stage (`candidates` memories handed on
    to fusion, recency or diversity): the same hnsw_ef, the candidates found on the int8
    copies rescored with the originals as they are, without the oversampling a vector
    query's few hits get. At 20,000 memories, 200 hybrid recalls: the same top 10 as with
    exact search, 2.4 ms a recall against 2.9 with oversampling and 2.2 (97.5% the same)
    with the engine's defaults, which do not rescore a stage."""
    if params is None or params.quantization is None:
        return params
    rescored = QuantizationSearchParams(rescore=True, oversampling=1.0)
    return SearchParams(hnsw_ef=params.hnsw_ef, quantization=rescored)
