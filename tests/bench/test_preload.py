"""bench.preload at a tiny size: a data directory the store opens with every point
indexed, built once into the cache and copied from there."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from bench import data, preload
from graph.store.edge import EdgeStore
from graph.store.tenancy import DEFAULT_TENANT


async def contents(path: Path) -> tuple[int, int]:
    store = EdgeStore(path)
    await store.open()
    try:
        count = await store.count(DEFAULT_TENANT, data.COLLECTION)
        unindexed = 0
        for physical in await store.physical_collections():
            unindexed += (await store.index_status(physical.name))["unindexed_points"]
        return count, unindexed
    finally:
        await store.close()


def test_preload_makes_an_indexed_data_directory(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    args = ["--points", "300", "--dimension", "8", "--cache-dir", str(cache)]
    assert preload.main([str(tmp_path / "one"), *args]) == 0
    assert asyncio.run(contents(tmp_path / "one")) == (300, 0)
    (cached,) = cache.glob("*/data")
    assert preload.main([str(tmp_path / "two"), *args]) == 0  # from the cache
    assert list(cache.glob("*/data")) == [cached]
    assert asyncio.run(contents(tmp_path / "two")) == (300, 0)
    with pytest.raises(SystemExit):
        preload.main([str(tmp_path / "two"), *args])  # never over an existing directory
