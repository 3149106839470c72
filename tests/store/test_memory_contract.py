"""The memory methods of the VectorStore contract, on every adapter (see test_contract.py for
the fixtures): memories are points with text, BM25 weights and an optional dense vector."""

from __future__ import annotations

import math
import random
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import pytest

from graph.errors import BadUserInput
from graph.memory.keywords import document_keywords, query_keywords
from graph.settings import Distance
from graph.store.base import VectorStore
from graph.store.models import (
    Condition,
    Filter,
    Match,
    MemoryPoint,
    MemoryRecord,
    Point,
    PointId,
    RecallMode,
    RecallRequest,
    Recency,
)
from tests.store.conftest import TENANT
from tests.store.test_contract import unit

if TYPE_CHECKING:
    from tests.store.conftest import CollectionNames, Runner

NOW = datetime(2026, 11, 29, 8, 0, tzinfo=UTC)


def memory(
    point_id: int | str,
    text: str,
    vector: list[float] | None = None,
    *,
    age: float = 0.0,
    expires_in: float | None = None,
    **metadata: Any,
) -> MemoryPoint:
    created = NOW - timedelta(seconds=age)
    return MemoryPoint(
        id=point_id,
        text=text,
        keywords=document_keywords(text),
        vector=vector,
        metadata=metadata or None,
        created_at=created,
        updated_at=created,
        expires_at=NOW + timedelta(seconds=expires_in) if expires_in is not None else None,
    )


def ask(
    mode: RecallMode,
    text: str | None = None,
    dense: list[float] | None = None,
    *,
    limit: int = 10,
    now: datetime = NOW,
    recency: Recency | None = None,
    diversity: float = 0.0,
) -> RecallRequest:
    return RecallRequest(
        mode=mode,
        limit=limit,
        now=now,
        keywords=query_keywords(text) if text is not None else None,
        dense=dense,
        recency=recency,
        diversity=diversity,
    )


def ids(found: list[MemoryRecord]) -> list[PointId]:
    return [m.id for m in found]


CORPUS = [
    memory(1, "The cat sat on the mat", unit(1, 0)),
    memory(2, "Dogs chase cats in the garden", unit(0, 1)),
    memory(3, "Quarterly revenue grew by ten percent", unit(0, 0, 1)),
    memory(4, "The garden needs water", None, kind="chore"),
]


def test_keyword_recall_ranks_by_bm25_and_needs_no_dense_vector(
    store: VectorStore, collection: str, run: Runner
) -> None:
    assert run(store.remember(TENANT, collection, CORPUS)) == 4
    found = run(store.recall(TENANT, collection, ask(RecallMode.KEYWORD, "garden water")))
    assert ids(found) == [4, 2]
    assert found[0].score > found[1].score > 0
    assert found[0].text == "The garden needs water"
    assert found[0].metadata == {"kind": "chore"}
    assert found[0].created_at == NOW and found[0].expires_at is None


def test_semantic_and_hybrid_recall(store: VectorStore, collection: str, run: Runner) -> None:
    run(store.remember(TENANT, collection, CORPUS))
    semantic = run(store.recall(TENANT, collection, ask(RecallMode.SEMANTIC, dense=unit(1, 0.1))))
    assert ids(semantic)[:2] == [1, 2]
    assert 4 not in ids(semantic)  # no dense vector: not in dense rankings
    hybrid = run(
        store.recall(TENANT, collection, ask(RecallMode.HYBRID, "garden", dense=unit(0, 1)))
    )
    assert ids(hybrid)[0] == 2  # first in both rankings
    assert set(ids(hybrid)) >= {2, 4}


def test_points_query_sees_only_points_with_a_dense_vector(
    store: VectorStore, collection: str, run: Runner
) -> None:
    run(store.remember(TENANT, collection, CORPUS))
    run(store.upsert(TENANT, collection, [Point(9, unit(1, 0), {"plain": True})]))
    hits = run(store.query(TENANT, collection, unit(1, 0), limit=10))
    assert sorted(h.id for h in hits) == [1, 2, 3, 9]
    # a memory's metadata is its point's payload
    (record,) = run(store.retrieve(TENANT, collection, [4]))
    assert record.payload == {"kind": "chore"}
    # and plain points are not memories
    found = run(store.recall(TENANT, collection, ask(RecallMode.SEMANTIC, dense=unit(1, 0))))
    assert 9 not in ids(found)
    assert run(store.get_memories(TENANT, collection, [9, 1], now=NOW))[0].id == 1


def test_recency_weight_zero_keeps_relevance_and_one_ranks_by_age(
    store: VectorStore, collection: str, run: Runner
) -> None:
    run(
        store.remember(
            TENANT,
            collection,
            [
                memory(1, "apple apple apple pie", age=10 * 86400),
                memory(2, "apple pie", age=3600),
                memory(3, "apple", age=60),
                memory(4, "banana", age=0),
            ],
        )
    )
    relevance = ids(run(store.recall(TENANT, collection, ask(RecallMode.KEYWORD, "apple"))))
    for weight, expected in [(0.0, relevance), (1.0, [3, 2, 1])]:
        request = ask(RecallMode.KEYWORD, "apple", recency=Recency(86400.0, weight))
        assert ids(run(store.recall(TENANT, collection, request))) == expected
    # a half-life of an hour: the hour-old memory is half as fresh as a new one
    request = ask(RecallMode.KEYWORD, "apple", recency=Recency(3600.0, 1.0))
    scores = {m.id: m.score for m in run(store.recall(TENANT, collection, request))}
    assert scores[2] == pytest.approx(0.5, rel=1e-3)


def test_diversity_prefers_memories_unlike_each_other(
    store: VectorStore, collection: str, run: Runner
) -> None:
    run(
        store.remember(
            TENANT,
            collection,
            [
                memory(1, "one", unit(1, 0)),
                memory(2, "two", unit(1, 0.01)),
                memory(3, "three", unit(0.7, 0.7)),
            ],
        )
    )
    plain = run(
        store.recall(TENANT, collection, ask(RecallMode.SEMANTIC, dense=unit(1, 0), limit=2))
    )
    assert ids(plain) == [1, 2]
    diverse = run(
        store.recall(
            TENANT, collection, ask(RecallMode.SEMANTIC, dense=unit(1, 0), limit=2, diversity=0.9)
        )
    )
    assert ids(diverse) == [1, 3]


def test_expired_memories_are_never_read_and_the_sweep_deletes_them(
    store: VectorStore, collection: str, run: Runner
) -> None:
    run(
        store.remember(
            TENANT,
            collection,
            [memory(1, "short lived note", unit(1, 0), expires_in=60), memory(2, "lasting note")],
        )
    )
    later = NOW + timedelta(seconds=60)  # the very moment it expires
    for now, expected in [(NOW, [1, 2]), (later, [2])]:
        found = run(store.recall(TENANT, collection, ask(RecallMode.KEYWORD, "note", now=now)))
        assert sorted(ids(found)) == expected
        assert ids(run(store.get_memories(TENANT, collection, [1, 2], now=now))) == expected
    assert run(store.sweep_expired_all_tenants(NOW, 100)) == 0
    assert run(store.count(TENANT, collection)) == 2
    assert run(store.sweep_expired_all_tenants(later, 100)) == 1
    assert run(store.count(TENANT, collection)) == 1


def test_the_sweep_is_bounded_per_run(store: VectorStore, collection: str, run: Runner) -> None:
    batch = [memory(i, f"note {i}", expires_in=1) for i in range(1, 8)]
    run(store.remember(TENANT, collection, batch))
    later = NOW + timedelta(seconds=2)
    assert run(store.sweep_expired_all_tenants(later, 5)) == 5
    assert run(store.sweep_expired_all_tenants(later, 5)) == 2
    assert run(store.count(TENANT, collection)) == 0


def test_forget_by_filter_deletes_only_memories(
    store: VectorStore, collection: str, run: Runner
) -> None:
    run(
        store.remember(
            TENANT, collection, [memory(1, "a note", kind="x"), memory(2, "b", kind="y")]
        )
    )
    run(store.upsert(TENANT, collection, [Point(3, unit(1, 0), {"kind": "x"})]))
    only_x = Filter(must=[Condition(key="kind", match=Match(value="x"))])
    assert run(store.forget_by_filter(TENANT, collection, only_x)) == 1
    assert sorted(r.id for r in run(store.retrieve(TENANT, collection, [1, 2, 3]))) == [2, 3]


def test_remember_checks_the_whole_batch_first(
    store: VectorStore, collection: str, run: Runner
) -> None:
    batch = [memory(1, "fine", unit(1, 0)), memory(2, "wrong size", [1.0, 0.0])]
    with pytest.raises(BadUserInput):
        run(store.remember(TENANT, collection, batch))
    assert run(store.count(TENANT, collection)) == 0


def test_memories_are_confined_to_their_tenant(
    store: VectorStore, collection: str, run: Runner
) -> None:
    run(store.create_collection("other", collection, 4, Distance.COSINE))
    try:
        run(store.remember("other", collection, [memory(1, "secret plans", unit(1, 0), k="v")]))
        assert run(store.get_memories(TENANT, collection, [1], now=NOW)) == []
        for request in (
            ask(RecallMode.KEYWORD, "secret plans"),
            ask(RecallMode.HYBRID, "secret", dense=unit(1, 0)),
        ):
            assert run(store.recall(TENANT, collection, request)) == []
        any_v = Filter(must=[Condition(key="k", match=Match(value="v"))])
        assert run(store.forget_by_filter(TENANT, collection, any_v)) == 0
        # client keys cannot name the internal fields: "_t" is the metadata key "_t"
        internal = Filter(must=[Condition(key="_t", match=Match(value="secret plans"))])
        assert run(store.forget_by_filter("other", collection, internal)) == 0
        assert len(run(store.get_memories("other", collection, [1], now=NOW))) == 1
    finally:
        run(store.delete_collection("other", collection))


def reference_mmr(
    vectors: dict[int, list[float]], query: list[float], diversity: float, k: int
) -> list[int]:
    """Maximal marginal relevance as Qdrant defines it, over cosine similarity."""

    def cos(a: list[float], b: list[float]) -> float:
        return sum(x * y for x, y in zip(a, b, strict=True)) / math.sqrt(
            sum(x * x for x in a) * sum(y * y for y in b)
        )

    left = list(vectors)
    picked = [max(left, key=lambda i: cos(vectors[i], query))]
    left.remove(picked[0])
    while left and len(picked) < k:
        best = max(
            left,
            key=lambda i: (
                (1 - diversity) * cos(vectors[i], query)
                - diversity * max(cos(vectors[i], vectors[j]) for j in picked)
            ),
        )
        picked.append(best)
        left.remove(best)
    return picked


def test_diversity_is_maximal_marginal_relevance(
    store: VectorStore, collection: str, run: Runner
) -> None:
    rng = random.Random(3)
    vectors = {i: unit(*(rng.random() for _ in range(4))) for i in range(30)}
    run(store.remember(TENANT, collection, [memory(i, f"memo {i}", v) for i, v in vectors.items()]))
    query = unit(0.9, 0.1, 0.3, 0.2)
    for diversity in (0.3, 0.6, 0.9):
        request = ask(RecallMode.SEMANTIC, dense=query, limit=8, diversity=diversity)
        found = ids(run(store.recall(TENANT, collection, request)))
        assert found == reference_mmr(vectors, query, diversity, 8), diversity


def test_diversity_scores_are_the_mmr_values_best_first(
    store: VectorStore, collection: str, run: Runner
) -> None:
    """A diverse recall's score is each pick's marginal relevance: higher is better down the
    list, the same on every adapter (not the similarity to the query, out of order)."""
    rng = random.Random(5)
    vectors = {i: unit(*(rng.random() for _ in range(4))) for i in range(12)}
    run(store.remember(TENANT, collection, [memory(i, f"memo {i}", v) for i, v in vectors.items()]))
    query = unit(0.2, 0.9, 0.1, 0.4)
    found = run(
        store.recall(
            TENANT, collection, ask(RecallMode.SEMANTIC, dense=query, limit=6, diversity=0.7)
        )
    )
    picked = reference_mmr(vectors, query, 0.7, 6)
    assert ids(found) == picked

    def cos(a: list[float], b: list[float]) -> float:
        return sum(x * y for x, y in zip(a, b, strict=True))  # unit vectors

    for k, (i, record) in enumerate(zip(picked, found, strict=True)):
        redundancy = max((cos(vectors[i], vectors[j]) for j in picked[:k]), default=0.0)
        expected = 0.3 * cos(vectors[i], query) - 0.7 * redundancy
        assert record.score == pytest.approx(expected, abs=1e-4)
    scores = [m.score for m in found]
    assert scores == sorted(scores, reverse=True)


@pytest.mark.parametrize("mode", [RecallMode.SEMANTIC, RecallMode.HYBRID])
def test_diverse_recall_under_euclid_scores_higher_is_better(
    store: VectorStore, run: Runner, names: CollectionNames, mode: RecallMode
) -> None:
    name = names("euclid")
    run(store.create_collection(TENANT, name, 4, Distance.EUCLID))
    points = {1: [1.0, 0, 0, 0], 2: [0.9, 0.1, 0, 0], 3: [0, 3.0, 0, 0], 4: [0, 0, 5.0, 0]}
    run(store.remember(TENANT, name, [memory(i, f"memo {i}", v) for i, v in points.items()]))
    request = ask(mode, "memo", dense=[1.0, 0, 0, 0], limit=4, diversity=0.5)
    found = run(store.recall(TENANT, name, request))
    assert found[0].id == 1
    assert found[0].score == pytest.approx(0.0, abs=1e-4)  # (1 - 0.5) * -distance
    scores = [m.score for m in found]
    assert scores == sorted(scores, reverse=True)
    assert all(s <= 1e-6 for s in scores)


def test_a_memory_reads_back_with_its_dense_vector(
    store: VectorStore, collection: str, run: Runner
) -> None:
    run(store.remember(TENANT, collection, CORPUS))
    (record,) = run(store.retrieve(TENANT, collection, [2], with_vector=True))
    assert record.vector == pytest.approx(unit(0, 1))
    (without,) = run(store.retrieve(TENANT, collection, [4], with_vector=True))
    assert without.vector is None
    page = run(store.scroll(TENANT, collection, limit=10, with_vector=True))
    assert {p.id: p.vector is not None for p in page.points} == {
        1: True,
        2: True,
        3: True,
        4: False,
    }
    (hit,) = run(store.query(TENANT, collection, unit(0, 1), limit=1, with_vector=True))
    assert hit.id == 2 and hit.vector == pytest.approx(unit(0, 1))


def test_a_wrong_dimension_is_named_as_on_every_adapter(
    store: VectorStore, collection: str, run: Runner
) -> None:
    batch = [memory(1, "one", unit(1, 0)), memory(2, "two"), memory(3, "three", [1.0, 0.0])]
    with pytest.raises(
        BadUserInput, match=r"^Vector of memory 2 has 2 dimensions; the collection has 4$"
    ):
        run(store.remember(TENANT, collection, batch))
    with pytest.raises(
        BadUserInput, match=r"^Query vector has 3 dimensions; the collection has 4$"
    ):
        run(store.recall(TENANT, collection, ask(RecallMode.SEMANTIC, dense=[1.0, 0.0, 0.0])))
