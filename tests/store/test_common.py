"""graph/store/common.py: what both adapters compute the same way."""

from __future__ import annotations

import math
import random
import time
import tracemalloc

import pytest

from graph.settings import Distance
from graph.store.common import maximal_marginal_relevance


def naive_mmr(
    query: list[float], vectors: list[list[float]], diversity: float, limit: int
) -> list[tuple[int, float]]:
    """MMR under euclid (similarity: minus the distance), written out pair by pair."""

    def sim(a: list[float], b: list[float]) -> float:
        return -math.dist(a, b)

    picked: list[tuple[int, float]] = []
    left = list(range(len(vectors)))
    while left and len(picked) < limit:
        values = [
            (1 - diversity) * sim(query, vectors[i])
            - diversity * max((sim(vectors[i], vectors[j]) for j, _ in picked), default=0.0)
            for i in left
        ]
        best = max(range(len(left)), key=values.__getitem__)
        picked.append((left.pop(best), values[best]))
    return picked


def test_euclid_mmr_is_the_pairwise_distances_written_out() -> None:
    rng = random.Random(7)
    vectors = [[rng.uniform(-3, 3) for _ in range(6)] for _ in range(25)]
    vectors.append(list(vectors[0]))  # a duplicate: distance 0, not a rounding below it
    query = [rng.uniform(-3, 3) for _ in range(6)]
    got = maximal_marginal_relevance(query, list(enumerate(vectors)), 0.6, 10, Distance.EUCLID)
    expected = naive_mmr(query, vectors, 0.6, 10)
    assert [i for i, _ in got] == [i for i, _ in expected]
    for (_, score), (_, want) in zip(got, expected, strict=True):
        assert score == pytest.approx(want, rel=1e-9, abs=1e-9)


def test_euclid_mmr_of_the_most_candidates_at_a_large_dimension_stays_small() -> None:
    """A recall's candidates (100) at a dimension a client may choose: the distances
    between them are 100 x 100 numbers, not a 100 x 100 x dimension array (1.3 GB at
    16,384 dimensions, 5 GB at the largest allowed, and seconds of CPU)."""
    rng = random.Random(1)
    dimension = 16_384
    candidates = [(i, [rng.random() for _ in range(dimension)]) for i in range(100)]
    query = [rng.random() for _ in range(dimension)]
    tracemalloc.start()
    try:
        started = time.perf_counter()
        picked = maximal_marginal_relevance(query, candidates, 0.5, 10, Distance.EUCLID)
        elapsed = time.perf_counter() - started
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert len(picked) == 10
    # The candidates as one float64 array are 13 MB; a pairwise difference array is 100x.
    assert peak < 100 * 2**20, f"peak {peak / 2**20:.0f} MiB"
    assert elapsed < 5.0
