"""Memories in the embedded adapter: qdrant-edge points and requests built from our models,
the engine work on a collection's shards, and hits read back (graph/store/tenancy.py has
the layout of a memory).

A recall is one engine request per shard, stages nested as prefetches:

- relevance: BM25 over the sparse vector KEYWORDS_VECTOR (the engine applies IDF), the
  dense vector, or both fused by reciprocal rank (HYBRID);
- recency: a formula over the relevance stage's candidates,
  (1 - weight) * relevance + weight * 0.5 ** (age / half_life), where relevance is the
  candidate's reciprocal-rank score scaled so that the best possible is 1 (scores of
  BM25, cosine, dot and RRF have no common scale; ranks do);
- diversity: maximal marginal relevance over the dense vectors of the candidates.

Every stage carries the same filter: the tenant partition, the client's filter on
metadata, "has text" and "not expired at now".
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from qdrant_edge import (
    DecayKind,
    EdgeShard,
    Expression,
    FieldCondition,
    Formula,
    Fusion,
    IsEmptyCondition,
    Mmr,
    Prefetch,
    Query,
    QueryRequest,
    RangeDateTime,
    ScrollRequest,
)
from qdrant_edge import Filter as EdgeFilter
from qdrant_edge import Point as EdgePoint
from qdrant_edge import ScoredPoint as EdgeScoredPoint
from qdrant_edge import SparseVector as EdgeSparseVector

if TYPE_CHECKING:
    from qdrant_edge import ConditionType, ScoringQueryType

from graph.errors import BadUserInput
from graph.store.edge.translate import DENSE, EdgeId, from_edge_id
from graph.store.edge.views import JournalEntry, delete_stored, write_points
from graph.store.models import (
    RRF_K,
    MemoryPoint,
    MemoryRecord,
    PointId,
    RecallMode,
    RecallRequest,
    check_finite,
    check_vector_dimension,
    normalize_point_id,
)
from graph.store.tenancy import (
    CREATED_FIELD,
    EXPIRES_FIELD,
    KEYWORDS_VECTOR,
    TEXT_FIELD,
    client_id,
    is_memory,
    iso,
    memory_record,
    owns,
    stored_id,
    stored_memory,
)


def memory_points(
    memories: Sequence[MemoryPoint], dimension: int, partition: str
) -> list[EdgePoint]:
    """The whole batch checked and converted before anything is written."""
    converted: list[EdgePoint] = []
    for i, memory in enumerate(memories):
        vectors: dict[str, list[float] | EdgeSparseVector] = {
            KEYWORDS_VECTOR: EdgeSparseVector(memory.keywords.indices, memory.keywords.values)
        }
        if memory.vector is not None:
            what = f"Vector of memory {i}"
            check_vector_dimension(memory.vector, dimension, what)
            check_finite(memory.vector, what)
            vectors[DENSE] = memory.vector
        point_id = normalize_point_id(memory.id)
        try:
            converted.append(
                EdgePoint(
                    stored_id(partition, point_id),
                    vectors,  # type: ignore[arg-type]
                    stored_memory(partition, memory),
                )
            )
        except (TypeError, ValueError, OverflowError):
            raise BadUserInput(
                f"Memory {i} metadata must be JSON without NaN or infinity"
            ) from None
    return converted


def memories_only(scoped: EdgeFilter, now: str | None) -> EdgeFilter:
    """scoped (a partition's filter) narrowed to memories not expired at now."""
    excluded: list[ConditionType] = [IsEmptyCondition(TEXT_FIELD)]
    if now is not None:
        excluded.append(FieldCondition(EXPIRES_FIELD, range=RangeDateTime(lte=now)))
    return EdgeFilter(must=[scoped], must_not=excluded)


def expired_everywhere(now: str) -> EdgeFilter:
    """Memories of every tenant expired at now (the sweep's filter)."""
    return EdgeFilter(must=[FieldCondition(EXPIRES_FIELD, range=RangeDateTime(lte=now))])


def recall_request(request: RecallRequest, flt: EdgeFilter) -> QueryRequest:
    candidates = request.candidates
    relevance: list[Prefetch] = []
    if request.mode is not RecallMode.SEMANTIC:
        assert request.keywords is not None
        sparse = EdgeSparseVector(request.keywords.indices, request.keywords.values)
        relevance.append(
            Prefetch(candidates, query=Query.Nearest(sparse, using=KEYWORDS_VECTOR), filter=flt)
        )
    if request.mode is not RecallMode.KEYWORD:
        assert request.dense is not None
        relevance.append(Prefetch(candidates, query=Query.Nearest(request.dense), filter=flt))
    query: ScoringQueryType | None
    prefetches: list[Prefetch] | None
    if request.recency is not None:
        fused = Prefetch(candidates, query=_rrf(), prefetches=relevance, filter=flt)
        query, prefetches = _recency_formula(request), [fused]
    elif len(relevance) > 1:
        query, prefetches = _rrf(), relevance
    else:
        query, prefetches = relevance[0].query, None
    if request.diversity > 0:
        assert request.dense is not None
        stage = Prefetch(candidates, query=query, prefetches=prefetches, filter=flt)
        query = Mmr(request.dense, lambda_=1.0 - request.diversity, candidates_limit=candidates)
        prefetches = [stage]
    return QueryRequest(
        limit=request.limit, query=query, prefetches=prefetches, filter=flt, with_payload=True
    )


def _rrf() -> Fusion:
    return Fusion.Rrf(k=RRF_K)  # type: ignore[return-value]  # the stub misses the nesting


def _recency_formula(request: RecallRequest) -> Formula:
    assert request.recency is not None
    weight = request.recency.weight
    relevance = Expression.Mult(
        [Expression.Constant((1.0 - weight) * RRF_K / request.lists), Expression.Variable("$score")]
    )
    age_decay = Expression.Decay(
        DecayKind.Exp,
        Expression.DatetimeKey(CREATED_FIELD),
        target=Expression.Datetime(iso(request.now)),
        midpoint=0.5,
        scale=request.recency.half_life_seconds,
    )
    return Formula(
        Expression.Sum([relevance, Expression.Mult([Expression.Constant(weight), age_decay])])
    )


# Engine work, run in worker threads on a view's shards (oldest first; views.py)


def remember(
    shards: tuple[EdgeShard, ...],
    memories: Sequence[MemoryPoint],
    dimension: int,
    partition: str,
    journal: list[JournalEntry] | None,
) -> int:
    return write_points(shards, memory_points(memories, dimension, partition), journal)


def recall(
    shards: tuple[EdgeShard, ...], request: QueryRequest, limit: int, descending: bool
) -> list[MemoryRecord]:
    """Each shard ranks its own memories; the hits are merged by score (a point found in
    two shards keeps the newer one), and come back higher-is-better."""
    newest: dict[EdgeId, EdgeScoredPoint] = {}
    for shard in shards:
        for hit in shard.query(request):
            newest[hit.id] = hit
    sign = 1.0 if descending else -1.0
    hits = sorted(newest.values(), key=lambda h: sign * h.score, reverse=True)[:limit]
    return [memory_record(h.payload, sign * h.score) for h in hits]


def retrieve(
    shards: tuple[EdgeShard, ...], ids: list[PointId], partition: str
) -> dict[PointId, MemoryRecord]:
    """The memories among the client's ids in this partition (expired ones too)."""
    stored: list[EdgeId] = [stored_id(partition, i) for i in ids]
    found: dict[PointId, MemoryRecord] = {}
    for shard in shards:
        for rec in shard.retrieve(stored, with_payload=True, with_vector=False):
            if not owns(partition, rec.payload):
                continue
            if is_memory(rec.payload):
                memory = memory_record(rec.payload)
                found[memory.id] = memory
            else:  # replaced by a plain point in a newer shard
                found.pop(client_id(rec.payload), None)
    return found


def sweep(
    shards: tuple[EdgeShard, ...], flt: EdgeFilter, limit: int, journal: list[JournalEntry] | None
) -> int:
    """Up to limit points matching flt deleted, oldest shard first."""
    ids: list[PointId] = []
    for shard in shards:
        records, _ = shard.scroll(ScrollRequest(limit=limit - len(ids), filter=flt))
        ids.extend(from_edge_id(r.id) for r in records)
        if len(ids) >= limit:
            break
    return delete_stored(shards, list(dict.fromkeys(ids)), journal) if ids else 0
