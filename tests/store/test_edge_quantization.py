"""VECTOR_QUANTIZATION on the embedded store: scalar (the default) builds and searches
int8 copies of the vectors and rescores with the originals; none keeps full precision.
The setting reaches every shard created, and every segment indexed, from then on."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from graph.settings import Distance, Quantization, Settings
from graph.store.edge import EdgeStore
from graph.store.edge.layout import edge_config
from tests.store.conftest import TENANT
from tests.store.test_edge import DIM, fill, vectors, with_store

POINTS = 1_500
LIMIT = 10


def shard_configs(tmp_path: Path) -> dict[str, dict[str, Any]]:
    """Each live shard's persisted engine configuration, by role."""
    root = tmp_path / "data/collections/d64-cosine"
    manifest = json.loads((root / "manifest.json").read_text())
    roles = {name: "indexed" for name in manifest["indexed"]} | {manifest["fresh"]: "fresh"}
    return {
        role: json.loads((root / name / "edge_config.json").read_text())
        for name, role in roles.items()
    }


def exact_top(vecs: np.ndarray, query: np.ndarray) -> set[int]:
    unit = vecs / np.linalg.norm(vecs, axis=1, keepdims=True)
    scores = unit @ (query / np.linalg.norm(query))
    return {int(i) for i in np.argsort(-scores)[:LIMIT]}


async def write_and_index(store: EdgeStore, vecs: list[list[float]], start: int, stop: int) -> None:
    """Points start..stop-1 into collection "c" (made with the first), then their build."""
    if start == 0:
        await store.create_collection(TENANT, "c", DIM, Distance.COSINE)
    await fill(store, "c", vecs, start, stop, batch=stop - start)
    await store.wait_for_indexing()


async def indexed_recall(store: EdgeStore, vecs: list[list[float]]) -> float:
    await store.create_collection(TENANT, "c", DIM, Distance.COSINE)
    await fill(store, "c", vecs, 0, POINTS, batch=POINTS)
    await store.wait_for_indexing()
    matrix = np.array(vecs, dtype=np.float32)
    found = 0
    for i in range(0, POINTS, 50):
        hits = await store.query(TENANT, "c", vecs[i], limit=LIMIT)
        assert hits[0].id == i  # its own vector, after rescoring with the originals
        found += len({h.id for h in hits} & exact_top(matrix, matrix[i]))
    return found / (LIMIT * len(range(0, POINTS, 50)))


def test_scalar_is_the_default() -> None:
    assert Settings().store.vector_quantization is Quantization.SCALAR
    assert EdgeStore(Path("unused")).quantization is Quantization.SCALAR


@pytest.mark.parametrize("quantization", list(Quantization))
def test_segments_are_built_and_searched_as_set(tmp_path: Path, quantization: Quantization) -> None:
    vecs = vectors(POINTS)
    recall = with_store(
        tmp_path,
        lambda store: indexed_recall(store, vecs),
        index_threshold=POINTS,
        quantization=quantization,
    )
    assert recall >= 0.95, recall
    configs = shard_configs(tmp_path)
    assert set(configs) == {"indexed", "fresh"}
    for config in configs.values():
        quantized = config.get("quantization_config")
        if quantization is Quantization.SCALAR:
            assert quantized is not None and "scalar" in json.dumps(quantized).lower()
            assert config["vectors"][""].get("memory", "").lower() == "cold"
        else:
            assert quantized is None


def test_a_change_of_setting_reaches_the_next_build(tmp_path: Path) -> None:
    vecs = vectors(2 * POINTS)

    async def first(store: EdgeStore) -> None:
        await write_and_index(store, vecs, 0, POINTS)

    with_store(tmp_path, first, index_threshold=POINTS, quantization=Quantization.NONE)
    assert shard_configs(tmp_path)["indexed"].get("quantization_config") is None

    async def second(store: EdgeStore) -> None:
        await write_and_index(store, vecs, POINTS, 2 * POINTS)  # a segment, then a merge
        [hit] = await store.query(TENANT, "c", vecs[POINTS + 3], limit=1)
        assert hit.id == POINTS + 3

    with_store(tmp_path, second, index_threshold=POINTS, quantization=Quantization.SCALAR)
    assert shard_configs(tmp_path)["indexed"].get("quantization_config") is not None


def test_engine_configuration_per_setting() -> None:
    assert edge_config(DIM, Distance.COSINE, Quantization.NONE).quantization_config is None
    assert edge_config(DIM, Distance.COSINE, Quantization.SCALAR).quantization_config is not None


def ranking_params(request: Any) -> list[tuple[int, float] | None]:
    """(hnsw_ef, oversampling) of each stage that ranks (a request or prefetch with no
    prefetch of its own), in order; None where the stage has no search parameters."""
    if request.prefetches:
        return [p for stage in request.prefetches for p in ranking_params(stage)]
    params = request.params
    if params is None:
        return [None]
    assert params.quantization is not None and params.quantization.rescore
    return [(params.hnsw_ef, params.quantization.oversampling)]


# A recall by meaning alone asks for `limit` memories as a vector query does (2x
# oversampling); a stage of candidates for fusion, recency or diversity rescores them
# as they are.
QUERY, STAGE = (77, 2.0), (77, 1.0)


@pytest.mark.parametrize(
    ("mode", "extra", "expected"),
    [
        ("SEMANTIC", {}, [[QUERY]]),
        ("SEMANTIC", {"recency": True}, [[STAGE]]),
        ("HYBRID", {}, [[None, STAGE]]),
        ("HYBRID", {"recency": True}, [[None, STAGE]]),
        ("KEYWORD", {}, [[None]]),
        # Diversity runs each ranking as a request of its own, and the rest here.
        ("HYBRID", {"diversity": 0.5}, [[None], [STAGE]]),
    ],
)
def test_a_recalls_dense_rankings_carry_the_stores_search_parameters(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, mode: str, extra: dict[str, Any], expected: Any
) -> None:
    """The dense ranking of a memory recall carries the store's search parameters
    (hnsw_ef, and the quantized search's rescoring: with the vector query's oversampling
    when it is the whole recall, without it as a stage); the keyword ranking (BM25,
    exact) none. The engine runs every request (recorded on the way)."""
    from graph.store.edge import memory, views
    from graph.store.models import RecallMode, Recency
    from tests.store.test_memory_contract import CORPUS, ask

    sent: list[Any] = []
    real_query_each = views.query_each  # what memory.py calls

    def recording(shards: Any, request: Any) -> Any:
        sent.append(request)
        return real_query_each(shards, request)

    monkeypatch.setattr(memory, "query_each", recording)
    recency = Recency(weight=0.5, half_life_seconds=3600) if extra.get("recency") else None
    request = ask(
        RecallMode[mode],
        "cat garden",
        [1.0, 0.0, 0.0, 0.0],
        recency=recency,
        diversity=extra.get("diversity", 0.0),
    )

    async def body(store: EdgeStore) -> None:
        await store.create_collection(TENANT, "m", 4, Distance.COSINE)
        await store.remember(TENANT, "m", CORPUS)
        found = await store.recall(TENANT, "m", request)
        assert found  # the engine took every request
        assert [ranking_params(r) for r in sent] == expected

    with_store(tmp_path, body, hnsw_ef=77)
