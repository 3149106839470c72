"""Memories in the remote adapter: qdrant-client points and queries built from our models.

The same stages as the embedded adapter (graph/store/edge/memory.py has the scoring):
relevance (BM25 on the sparse vector KEYWORDS_VECTOR, dense, or both fused by RRF) and
recency as a formula over the reciprocal-rank score scaled to a best of 1, each stage
carrying the same filter, run by Qdrant; diversity as MMR over the candidates' dense
vectors, computed here as the embedded adapter does (common.maximal_marginal_relevance).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime

from qdrant_client import models

from graph.errors import BadUserInput
from graph.settings import Distance
from graph.store.common import maximal_marginal_relevance
from graph.store.models import (
    RRF_K,
    MemoryPoint,
    MemoryRecord,
    RecallMode,
    RecallRequest,
    check_finite,
    normalize_point_id,
)
from graph.store.remote.translate import DENSE, SEARCH_PARAMS, from_qdrant_vector
from graph.store.tenancy import (
    CREATED_FIELD,
    EXPIRES_FIELD,
    KEYWORDS_VECTOR,
    TEXT_FIELD,
    iso,
    memory_record,
    stored_id,
    stored_memory,
)

KEYWORDS_CONFIG = {KEYWORDS_VECTOR: models.SparseVectorParams(modifier=models.Modifier.IDF)}
NEW_KEYWORDS_VECTOR = models.SparseVectorNameConfig(
    sparse=models.SparseVectorConfig(modifier=models.Modifier.IDF)
)


def memory_structs(memories: Sequence[MemoryPoint], partition: str) -> list[models.PointStruct]:
    structs: list[models.PointStruct] = []
    for i, memory in enumerate(memories):
        vectors: dict[str, list[float] | models.SparseVector] = {
            KEYWORDS_VECTOR: models.SparseVector(
                indices=memory.keywords.indices, values=memory.keywords.values
            )
        }
        if memory.vector is not None:
            check_finite(memory.vector, f"Vector of memory {i}")
            vectors[DENSE] = [float(x) for x in memory.vector]
        point_id = normalize_point_id(memory.id)
        structs.append(
            models.PointStruct(
                id=stored_id(partition, point_id),
                vector=vectors,  # type: ignore[arg-type]
                payload=stored_memory(partition, memory),
            )
        )
    return structs


def check_metadata(memories: Sequence[MemoryPoint]) -> None:
    for i, memory in enumerate(memories):
        try:
            json.dumps(memory.metadata, allow_nan=False)
        except (TypeError, ValueError):
            raise BadUserInput(
                f"Memory {i} metadata must be JSON without NaN or infinity"
            ) from None


def memories_only(scoped: models.Filter, now: datetime | None) -> models.Filter:
    excluded: list[models.Condition] = [
        models.IsEmptyCondition(is_empty=models.PayloadField(key=TEXT_FIELD))
    ]
    if now is not None:
        excluded.append(
            models.FieldCondition(key=EXPIRES_FIELD, range=models.DatetimeRange(lte=now))
        )
    return models.Filter(must=[scoped], must_not=excluded)


def expired_everywhere(now: datetime) -> models.Filter:
    return models.Filter(
        must=[models.FieldCondition(key=EXPIRES_FIELD, range=models.DatetimeRange(lte=now))]
    )


def recall_query(
    request: RecallRequest, flt: models.Filter
) -> tuple[models.Query | None, list[models.Prefetch] | None, str | None]:
    """(query, prefetch, using) for query_points: the relevance and recency stages (the
    candidates, when diversity re-ranks them: memory_calls.py)."""
    candidates = request.candidates
    relevance: list[models.Prefetch] = []
    if request.mode is not RecallMode.SEMANTIC:
        assert request.keywords is not None
        sparse = models.SparseVector(
            indices=request.keywords.indices, values=request.keywords.values
        )
        relevance.append(
            models.Prefetch(query=sparse, using=KEYWORDS_VECTOR, limit=candidates, filter=flt)
        )
    if request.mode is not RecallMode.KEYWORD:
        assert request.dense is not None
        relevance.append(
            models.Prefetch(query=request.dense, limit=candidates, filter=flt, params=SEARCH_PARAMS)
        )
    query: models.Query | None
    prefetch: list[models.Prefetch] | None
    using: str | None = None
    if request.recency is not None:
        fused = models.Prefetch(
            prefetch=relevance,
            query=models.FusionQuery(fusion=models.Fusion.RRF),
            limit=candidates,
            filter=flt,
        )
        query, prefetch = _recency_formula(request), [fused]
    elif len(relevance) > 1:
        query, prefetch = models.FusionQuery(fusion=models.Fusion.RRF), relevance
    else:
        only = relevance[0]
        query, prefetch, using = models.NearestQuery(nearest=only.query), None, only.using  # type: ignore[arg-type]
    return query, prefetch, using


def _recency_formula(request: RecallRequest) -> models.FormulaQuery:
    assert request.recency is not None
    weight = request.recency.weight
    decay = models.ExpDecayExpression(
        exp_decay=models.DecayParamsExpression(
            x=models.DatetimeKeyExpression(datetime_key=CREATED_FIELD),
            target=models.DatetimeExpression(datetime=iso(request.now)),
            scale=request.recency.half_life_seconds,
            midpoint=0.5,
        )
    )
    return models.FormulaQuery(
        formula=models.SumExpression(
            sum=[
                models.MultExpression(mult=[(1.0 - weight) * RRF_K / request.lists, "$score"]),
                models.MultExpression(mult=[weight, decay]),
            ]
        )
    )


def scored_memories(points: Sequence[models.ScoredPoint], descending: bool) -> list[MemoryRecord]:
    sign = 1.0 if descending else -1.0
    return [memory_record(p.payload, sign * float(p.score)) for p in points]


def diversified(
    request: RecallRequest, candidates: Sequence[models.ScoredPoint], distance: Distance
) -> list[MemoryRecord]:
    """The candidates (best first) re-ranked by maximal marginal relevance over their dense
    vectors; those without one drop out."""
    assert request.dense is not None
    by_id = {p.id: p for p in candidates}
    picked = maximal_marginal_relevance(
        request.dense,
        [(p.id, v) for p in candidates if (v := from_qdrant_vector(p.vector)) is not None],
        request.diversity,
        request.limit,
        distance,
    )
    return [memory_record(by_id[i].payload, score) for i, score in picked]
