"""VECTOR_DATATYPE on the embedded store: float16 original vectors take half the memory
and disk of float32 ones, through every shard made and every segment built, and the
datatype stays what it was when the vector shape's first collection was made."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from graph.settings import Distance, Settings, VectorDatatype
from graph.store.edge import EdgeStore
from graph.store.edge.layout import Manifest
from tests.store.conftest import TENANT
from tests.store.test_edge import DIM, fill, vectors, with_store
from tests.store.test_edge_quantization import (
    LIMIT,
    POINTS,
    exact_top,
    shard_configs,
    write_and_index,
)

SHAPE = f"d{DIM}-cosine"


def manifest_datatype(tmp_path: Path, shape: str = SHAPE) -> str:
    raw = json.loads((tmp_path / "data/collections" / shape / "manifest.json").read_text())
    return str(raw["datatype"])


def test_float32_is_the_default() -> None:
    assert Settings().store.vector_datatype is VectorDatatype.FLOAT32
    assert EdgeStore(Path("unused")).datatype is VectorDatatype.FLOAT32


def test_the_setting_is_read_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VECTOR_DATATYPE", "float16")
    assert EdgeStore.from_settings(Settings()).datatype is VectorDatatype.FLOAT16
    monkeypatch.setenv("VECTOR_DATATYPE", "float8")
    with pytest.raises(ValueError, match="float32"):
        Settings()


def test_float16_vectors_are_indexed_searched_and_read_back_at_half_precision(
    tmp_path: Path,
) -> None:
    vecs = vectors(POINTS)
    matrix = np.array(vecs, dtype=np.float32)

    async def body(store: EdgeStore) -> tuple[float, list[list[float]]]:
        await store.create_collection(TENANT, "c", DIM, Distance.COSINE)
        await fill(store, "c", vecs, 0, POINTS, batch=POINTS)
        await store.wait_for_indexing()
        await fill(store, "c", vecs, 0, 10)  # and some in the fresh shard
        found = 0
        for i in range(0, POINTS, 50):
            hits = await store.query(TENANT, "c", vecs[i], limit=LIMIT)
            assert hits[0].id == i
            found += len({h.id for h in hits} & exact_top(matrix, matrix[i]))
        records = await store.retrieve(TENANT, "c", [3, POINTS - 1], with_vector=True)
        return found / (LIMIT * len(range(0, POINTS, 50))), [r.vector or [] for r in records]

    recall, read_back = with_store(
        tmp_path, body, index_threshold=POINTS, datatype=VectorDatatype.FLOAT16
    )
    assert recall >= 0.95, recall
    for got, row in zip(read_back, (matrix[3], matrix[POINTS - 1]), strict=True):
        unit = row / np.linalg.norm(row)  # a cosine collection keeps vectors normalised
        assert got == pytest.approx(unit.tolist(), rel=2e-3, abs=1e-4)
        assert got == unit.astype(np.float16).astype(np.float32).tolist()  # rounded so
    assert manifest_datatype(tmp_path) == "float16"
    configs = shard_configs(tmp_path)
    assert set(configs) == {"indexed", "fresh"}
    for config in configs.values():
        assert config["vectors"][""]["datatype"].lower() == "float16"


def test_a_shapes_datatype_stays_when_the_setting_changes(tmp_path: Path) -> None:
    vecs = vectors(2 * POINTS)

    async def first(store: EdgeStore) -> None:
        await write_and_index(store, vecs, 0, POINTS)

    with_store(tmp_path, first, index_threshold=POINTS, datatype=VectorDatatype.FLOAT16)

    async def second(store: EdgeStore) -> None:
        # New fresh shards and new segments of the old shape: still float16.
        await write_and_index(store, vecs, POINTS, 2 * POINTS)
        [hit] = await store.query(TENANT, "c", vecs[POINTS + 3], limit=1)
        assert hit.id == POINTS + 3
        # A new shape follows the setting.
        await store.create_collection(TENANT, "other", 8, Distance.COSINE)

    with_store(tmp_path, second, index_threshold=POINTS, datatype=VectorDatatype.FLOAT32)
    assert manifest_datatype(tmp_path) == "float16"
    for config in shard_configs(tmp_path).values():
        assert config["vectors"][""]["datatype"].lower() == "float16"
    assert manifest_datatype(tmp_path, "d8-cosine") == "float32"


def test_a_manifest_from_before_the_setting_is_float32(tmp_path: Path) -> None:
    (tmp_path / "manifest.json").write_text(
        json.dumps({"dimension": 4, "distance": "cosine", "fresh": "shard-000001"})
    )
    assert Manifest.read(tmp_path).datatype is VectorDatatype.FLOAT32
