"""What both adapters do the same way around their own engine calls."""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Collection, Hashable, Sequence
from pathlib import Path
from typing import TypeVar

import numpy as np

from graph.errors import AlreadyExists, BadUserInput
from graph.settings import Distance
from graph.store.base import VectorStore
from graph.store.models import check_finite, check_limit, check_vector_dimension
from graph.store.tenancy import CollectionEntry

logger = logging.getLogger(__name__)

K = TypeVar("K", bound=Hashable)

# The candidates an HNSW search keeps (Qdrant's `hnsw_ef`), the same in both adapters so
# that recall does not change with the store: Qdrant's default is the graph's
# `ef_construct` (100); 128 gives recall@10 1.000 on embedding-shaped data at 100k points
# (docs/benchmarks.md).
HNSW_EF = 128


def fsync_dir(path: Path) -> None:
    """Make a rename or a new file in path durable."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def check_query(
    vector: Sequence[float],
    limit: int,
    offset: int,
    score_threshold: float | None,
    dimension: int | None = None,
) -> None:
    """The arguments of a nearest-neighbour query; the dimension when already known."""
    check_limit(limit, offset)
    if dimension is not None:
        check_vector_dimension(vector, dimension, "Query vector")
    check_finite(vector, "Query vector")
    if score_threshold is not None and not math.isfinite(score_threshold):
        raise BadUserInput("scoreThreshold must be a finite number")


def check_shape_bound(shape: str, live: Collection[str], limit: int) -> None:
    """A collection of a new vector shape needs a physical collection of its own: at
    most limit of them exist at once."""
    if shape not in live and len(live) >= limit:
        raise BadUserInput(
            f"At most {limit} vector shapes (dimension and distance) may be in use at once "
            "(MAX_VECTOR_SHAPES); delete a collection of another shape first"
        )


async def ensure_collection(
    store: VectorStore,
    existing: CollectionEntry | None,
    tenant: str,
    name: str,
    dimension: int,
    distance: Distance,
) -> None:
    """VectorStore.ensure_collection once the adapter has looked the collection up: an
    existing one is kept as it is (a warning when its shape is not the configured one)."""
    if existing is not None:
        if (existing.dimension, existing.distance) != (dimension, distance):
            logger.warning(
                "Collection %r exists with dimension %s and %s distance; keeping it "
                "(configured: %s, %s)",
                name,
                existing.dimension,
                existing.distance.value,
                dimension,
                distance.value,
            )
        return
    try:
        await store.create_collection(tenant, name, dimension, distance)
    except AlreadyExists:
        return  # created meanwhile by a concurrent call (or another replica)
    logger.info("Created collection %r (%s, %s)", name, dimension, distance.value)


def maximal_marginal_relevance(
    query: Sequence[float],
    candidates: Sequence[tuple[K, Sequence[float]]],
    diversity: float,
    limit: int,
    distance: Distance,
) -> list[tuple[K, float]]:
    """A recall's diversity, computed here by both adapters so that the same memories come
    back with the same scores: maximal marginal relevance as Qdrant defines it, each next
    pick (from candidates, best first) maximising (1 - diversity) * sim(query, d) -
    diversity * max sim(d, picked). Each pick's score is that value, which never rises
    from one pick to the next: higher is better, as for every recall (a Qdrant server's
    own MMR keeps the candidates' similarity to the query, out of order). Similarity is
    the collection's (euclid: minus the distance)."""
    if not candidates:
        return []
    vectors = np.array([v for _, v in candidates], dtype=np.float64)
    relevance = _similarity(vectors, np.array(query, dtype=np.float64)[None, :], distance)[:, 0]
    between = _similarity(vectors, vectors, distance)
    keep = 1.0 - diversity
    picked: list[int] = []
    scores: list[float] = []
    left = list(range(len(candidates)))
    while left and len(picked) < limit:
        redundancy = between[left][:, picked].max(axis=1) if picked else np.zeros(len(left))
        value = keep * relevance[left] - diversity * redundancy
        best = int(np.argmax(value))
        scores.append(float(value[best]))
        picked.append(left.pop(best))
    return [(candidates[i][0], score) for i, score in zip(picked, scores, strict=True)]


def _similarity(a: np.ndarray, b: np.ndarray, distance: Distance) -> np.ndarray:
    """Pairwise similarity of the rows of a and b, higher is closer."""
    if distance is Distance.EUCLID:
        # |x - y|^2 = |x|^2 + |y|^2 - 2 x.y: a's rows by b's numbers, where the differences
        # of every pair would be a rows x b rows x dimension array (the 100 candidates of a
        # recall at 16,384 dimensions: 1.3 GB and most of a second). Rounding can take a
        # distance of 0 just below it.
        squared = (a * a).sum(axis=1)[:, None] + (b * b).sum(axis=1)[None, :] - 2.0 * (a @ b.T)
        result: np.ndarray = -np.sqrt(np.maximum(squared, 0.0))
        return result
    if distance is Distance.COSINE:
        a = a / np.maximum(np.linalg.norm(a, axis=1, keepdims=True), 1e-12)
        b = b / np.maximum(np.linalg.norm(b, axis=1, keepdims=True), 1e-12)
    product: np.ndarray = a @ b.T
    return product
