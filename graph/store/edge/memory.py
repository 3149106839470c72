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
- diversity: maximal marginal relevance over the dense vectors of the candidates,
  computed here (see recall).

With several shards (a large collection: an indexed one and a fresh one) each ranking
runs on every shard and is merged by score, and the later stages are computed here by
the same arithmetic as the engine's, so that each shard's best is not taken for the best
of all (recall_merged).

Every stage carries the same filter: the tenant partition, the client's filter on
metadata, "has text" and "not expired at now".
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING

from qdrant_edge import (
    DecayKind,
    EdgeShard,
    Expression,
    FieldCondition,
    Formula,
    Fusion,
    IsEmptyCondition,
    Prefetch,
    Query,
    QueryRequest,
    RangeDateTime,
    ScrollRequest,
    SearchParams,
)
from qdrant_edge import Filter as EdgeFilter
from qdrant_edge import Point as EdgePoint
from qdrant_edge import ScoredPoint as EdgeScoredPoint
from qdrant_edge import SparseVector as EdgeSparseVector

if TYPE_CHECKING:
    from qdrant_edge import ConditionType, ScoringQueryType

from graph.errors import BadUserInput
from graph.settings import Distance
from graph.store.common import maximal_marginal_relevance
from graph.store.edge.moves import Moves
from graph.store.edge.translate import (
    DENSE,
    EdgeId,
    from_edge_id,
    stage_search_params,
    vector_of,
)
from graph.store.edge.views import (
    JournalEntry,
    delete_stored,
    query_each,
    search_fresh_again,
)
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
    client_id,
    is_memory,
    iso,
    memory_record,
    owns,
    stored_id,
    stored_memory,
    stored_uuid,
)


def memory_points(
    memories: Sequence[MemoryPoint], dimension: int, partition: str, first: int = 0
) -> list[EdgePoint]:
    """memories checked and converted (first: the position of memories[0] in the client's
    batch, for error messages)."""
    converted: list[EdgePoint] = []
    to_iso = functools.lru_cache(maxsize=64)(iso)
    for i, memory in enumerate(memories, start=first):
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
                    stored_uuid(partition, point_id),
                    vectors,  # type: ignore[arg-type]
                    stored_memory(partition, memory, to_iso),
                )
            )
        except (TypeError, ValueError, OverflowError):
            raise BadUserInput(
                f"Memory {i} metadata must be JSON without NaN or infinity"
            ) from None
    return converted


def memories_only(scoped: EdgeFilter, now: str | None) -> EdgeFilter:
    """scoped (a partition's filter) narrowed to memories not expired at now. A memory is
    a point with a creation time: set exactly on the points with text (tenancy.stored_memory)
    and indexed, so that the engine checks it in the index; the same check on the text,
    which has no index, reads each candidate's payload and makes a recall several times
    slower than a plain query."""
    excluded: list[ConditionType] = [IsEmptyCondition(CREATED_FIELD)]
    if now is not None:
        excluded.append(FieldCondition(EXPIRES_FIELD, range=RangeDateTime(lte=now)))
    return EdgeFilter(must=[scoped], must_not=excluded)


def expired_everywhere(now: str) -> EdgeFilter:
    """Memories of every tenant expired at now (the sweep's filter)."""
    return EdgeFilter(must=[FieldCondition(EXPIRES_FIELD, range=RangeDateTime(lte=now))])


def _rankings(
    request: RecallRequest, dense_params: SearchParams | None
) -> list[tuple[Query, SearchParams | None]]:
    """The relevance rankings as stages, each with its search parameters: BM25 over the
    keywords (exact, none), nearest dense vectors (stage_search_params), or both."""
    rankings: list[tuple[Query, SearchParams | None]] = []
    if request.mode is not RecallMode.SEMANTIC:
        assert request.keywords is not None
        sparse = EdgeSparseVector(request.keywords.indices, request.keywords.values)
        rankings.append((Query.Nearest(sparse, using=KEYWORDS_VECTOR), None))
    if request.mode is not RecallMode.KEYWORD:
        assert request.dense is not None
        rankings.append((Query.Nearest(request.dense), stage_search_params(dense_params)))
    return rankings


def recall_request(
    request: RecallRequest, flt: EdgeFilter, dense_params: SearchParams | None
) -> QueryRequest:
    """One request running relevance and recency in the engine, for a single shard. A
    recall by meaning alone is a vector query for `limit` memories, with its parameters
    (dense_params: the store's, oversampling included)."""
    candidates = request.candidates
    rankings = _rankings(request, dense_params)
    relevance = [Prefetch(candidates, query=q, params=p, filter=flt) for q, p in rankings]
    query: ScoringQueryType | None
    prefetches: list[Prefetch] | None
    if request.recency is not None:
        fused = Prefetch(candidates, query=_rrf(), prefetches=relevance, filter=flt)
        query, prefetches = _recency_formula(request), [fused]
    elif len(relevance) > 1:
        query, prefetches = _rrf(), relevance
    else:
        query, prefetches = rankings[0][0], None
    alone = prefetches is None and request.mode is RecallMode.SEMANTIC
    return QueryRequest(
        limit=request.limit,
        query=query,
        prefetches=prefetches,
        filter=flt,
        with_payload=True,
        params=dense_params if alone else None,
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


def recall(
    shards: tuple[EdgeShard, ...],
    request: RecallRequest,
    flt: EdgeFilter,
    distance: Distance,
    dense_params: SearchParams | None,
    moves: Moves | None = None,
) -> list[MemoryRecord]:
    """Scores come back higher-is-better. Shards holding no point are left out, so that
    a collection whose fresh shard is empty (just after an index build) runs as one shard.
    Only the fresh shard (the last) is ever written to, so it alone is looked at again
    afterwards: if it took points meanwhile, a point moving there from an older shard may
    have been missed, and the recall runs again on every shard."""
    holding = tuple(s for s in shards if s.info().points_count) or shards[-1:]
    fresh = shards[-1]
    moved = moves if holding[-1] is fresh else None
    records = _recall(holding, request, flt, distance, dense_params, moved)
    if all(s is not fresh for s in holding) and fresh.info().points_count:
        records = _recall(shards, request, flt, distance, dense_params, moves)
    return records


def _recall(
    shards: tuple[EdgeShard, ...],
    request: RecallRequest,
    flt: EdgeFilter,
    distance: Distance,
    dense_params: SearchParams | None,
    moves: Moves | None,
) -> list[MemoryRecord]:
    """One shard runs every stage (recall_request); with several, each ranking is merged
    across the shards first (recall_merged). Diversity is always computed here:
    qdrant-edge 0.9's MMR over points that also hold a sparse vector does not rank as
    Qdrant's definition (and the Qdrant server) does."""
    plain = request.recency is None and request.diversity == 0 and request.lists == 1
    if request.diversity > 0 or (len(shards) > 1 and not plain):
        return recall_merged(shards, request, flt, distance, dense_params, moves)
    query = recall_request(request, flt, dense_params)
    sign = -1.0 if plain and request.mode is RecallMode.SEMANTIC and distance is EUCLID else 1.0
    hits = _newest(shards, query, sign, moves)[: request.limit]
    return [memory_record(h.payload, sign * h.score) for h in hits]


def _newest(
    shards: tuple[EdgeShard, ...], query: QueryRequest, sign: float, moves: Moves | None
) -> list[EdgeScoredPoint]:
    """Each shard's hits (oldest shard first, so that a point caught mid-upsert in two keeps
    the newer version), best first by sign * score. moves: when shards[-1] is the fresh
    shard, the collection's (moves.Moves)."""
    before = None if moves is None else moves.number
    each = query_each(shards, query)
    search_fresh_again(shards, query, each, moves, before)
    newest: dict[EdgeId, EdgeScoredPoint] = {}
    for hits in each:
        for hit in hits:
            newest[hit.id] = hit
    return sorted(newest.values(), key=lambda h: sign * h.score, reverse=True)


def recall_merged(
    shards: tuple[EdgeShard, ...],
    request: RecallRequest,
    flt: EdgeFilter,
    distance: Distance,
    dense_params: SearchParams | None,
    moves: Moves | None,
) -> list[MemoryRecord]:
    """The stages of recall_request over several shards: each ranking runs on every shard
    and is merged by score, then fused, aged and diversified here by the same arithmetic
    as the engine's (reciprocal rank fusion, the recency formula, maximal marginal
    relevance), so that each shard's best is not taken for the best of all."""
    candidates = request.candidates
    hits: dict[EdgeId, EdgeScoredPoint] = {}
    fused: dict[EdgeId, float] = {}
    rankings = _rankings(request, dense_params)
    for position, (ranking, params) in enumerate(rankings):
        # The dense ranking comes last; under euclid its scores are distances.
        dense = request.mode is not RecallMode.KEYWORD and position == len(rankings) - 1
        sign = -1.0 if dense and distance is EUCLID else 1.0
        query = QueryRequest(
            limit=candidates,
            query=ranking,
            filter=flt,
            with_payload=True,
            with_vector=request.diversity > 0,
            params=params,
        )
        for rank, hit in enumerate(_newest(shards, query, sign, moves)[:candidates]):
            hits.setdefault(hit.id, hit)
            fused[hit.id] = fused.get(hit.id, 0.0) + 1.0 / (RRF_K + rank)
    scores = {i: _relevance(request, hits[i], rrf) for i, rrf in fused.items()}
    ranked = sorted(scores, key=scores.__getitem__, reverse=True)[:candidates]
    if request.diversity > 0:
        ranked, scores = _mmr(request, [(i, hits[i]) for i in ranked], distance)
    return [memory_record(hits[i].payload, scores[i]) for i in ranked[: request.limit]]


def _relevance(request: RecallRequest, hit: EdgeScoredPoint, rrf: float) -> float:
    if request.recency is not None:
        payload = hit.payload or {}
        age = abs((request.now - datetime.fromisoformat(payload[CREATED_FIELD])).total_seconds())
        weight = request.recency.weight
        fresh = math.pow(0.5, age / request.recency.half_life_seconds)
        return (1.0 - weight) * RRF_K / request.lists * rrf + weight * fresh
    return rrf


def _mmr(
    request: RecallRequest, ranked: list[tuple[EdgeId, EdgeScoredPoint]], distance: Distance
) -> tuple[list[EdgeId], dict[EdgeId, float]]:
    """Maximal marginal relevance over the candidates' dense vectors (common.py)."""
    assert request.dense is not None
    candidates = [(i, v) for i, hit in ranked if (v := vector_of(hit.vector)) is not None]
    picked = maximal_marginal_relevance(
        request.dense, candidates, request.diversity, request.limit, distance
    )
    return [i for i, _ in picked], dict(picked)


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


EUCLID = Distance.EUCLID
