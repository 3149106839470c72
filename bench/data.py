"""Deterministic data, the preloaded store, and the engine's own floor.

Everything here talks to the embedded store adapter (graph.store.edge.EdgeStore)
directly, in this process: no HTTP, no GraphQL.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import json
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np

import graph
from graph.errors import NotFound
from graph.settings import Distance
from graph.store.edge import EdgeStore
from graph.store.models import Point, ScoredPoint
from graph.store.tenancy import DEFAULT_TENANT

COLLECTION = "memories"
# Ingest runs write here: another distance, so that it never shares engine storage
# with the preloaded collection (the adapter groups collections by vector shape).
INGEST_COLLECTION = "bench_ingest"
INGEST_DISTANCE = Distance.DOT
USERS = 10
PRELOAD_BATCH = 1_000
QUERY_POOL = 512
SEED = 20240501


# Data shaped like embeddings: a Gaussian mixture of many tight clusters (topics),
# where the nearest neighbours are a query's cluster-mates and an approximate index
# can miss some of them. Uniform noise has no neighbours worth the name.
CLUSTERS = 1_000
SPREAD = 0.5  # per-dimension noise around a centre whose coordinates are N(0, 1)
BLOCK_ROWS = 10_000
DATA_VERSION = "mixture-1"  # in the preload cache key: bump when the data changes


@functools.lru_cache(maxsize=4)
def centres(dimension: int, seed: int = SEED) -> np.ndarray:
    rng = np.random.default_rng([seed, 123_456_789])
    drawn = rng.standard_normal((CLUSTERS, dimension), dtype=np.float32)
    drawn.flags.writeable = False  # shared by every caller
    return drawn


def mixture(rng: np.random.Generator, count: int, dimension: int, seed: int) -> np.ndarray:
    picked = centres(dimension, seed)[rng.integers(0, CLUSTERS, count)]
    drawn: np.ndarray = picked + SPREAD * rng.standard_normal((count, dimension), dtype=np.float32)
    return drawn


def vectors(count: int, dimension: int, seed: int = SEED, start: int = 0) -> np.ndarray:
    """Rows start..start+count of one fixed, seeded matrix (generated in fixed blocks, so
    a row is the same whatever slice it is asked in); a new array."""
    first, last = start // BLOCK_ROWS, (start + count - 1) // BLOCK_ROWS
    matrix = np.concatenate([_block(seed, b, dimension) for b in range(first, last + 1)])
    offset = start - first * BLOCK_ROWS
    return matrix[offset : offset + count]


# A stream of small batches reads each block many times, and drawing one takes ~70 ms.
@functools.lru_cache(maxsize=2)
def _block(seed: int, index: int, dimension: int) -> np.ndarray:
    drawn = mixture(np.random.default_rng([seed, index]), BLOCK_ROWS, dimension, seed)
    drawn.flags.writeable = False
    return drawn


def query_vectors(dimension: int, count: int = QUERY_POOL) -> list[list[float]]:
    """Queries from the same mixture as the data (new draws, not stored points)."""
    rng = np.random.default_rng([SEED, 999_999])
    rows: list[list[float]] = mixture(rng, count, dimension, SEED).round(5).tolist()
    return rows


def payload(i: int) -> dict[str, Any]:
    return {"user": f"user-{i % USERS}", "n": i, "text": f"memory {i}"}


def points(start: int, count: int, dimension: int) -> list[Point]:
    rows = vectors(count, dimension, start=start).tolist()
    return [Point(start + k, rows[k], payload(start + k)) for k in range(count)]


def store_fingerprint() -> str:
    """Changes whenever the store's code does: a preloaded directory is only reused by
    the adapter that wrote it."""
    digest = hashlib.sha256()
    for path in sorted((Path(graph.__file__).parent / "store").glob("*.py")):
        digest.update(path.name.encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


class Adapter:
    """The store calls the benchmark makes, as the default tenant (the one the GraphQL
    server serves without authentication), so the plain app and ours read the same data."""

    def __init__(self, store: EdgeStore) -> None:
        self.store = store
        self.tenant = DEFAULT_TENANT

    async def ensure(self, name: str, dimension: int, distance: Distance) -> None:
        await self.store.ensure_collection(self.tenant, name, dimension, distance)

    async def recreate(self, name: str, dimension: int, distance: Distance) -> None:
        with contextlib.suppress(NotFound):
            await self.store.delete_collection(self.tenant, name)
        await self.store.create_collection(self.tenant, name, dimension, distance)

    async def drop(self, name: str) -> None:
        await self.store.delete_collection(self.tenant, name)

    async def upsert(self, name: str, batch: list[Point]) -> int:
        return await self.store.upsert(self.tenant, name, batch)

    async def query(self, name: str, vector: list[float], limit: int) -> list[ScoredPoint]:
        return await self.store.query(self.tenant, name, vector, limit=limit)

    async def count(self, name: str) -> int:
        return await self.store.count(self.tenant, name)

    async def unindexed_points(self) -> int:
        total = 0
        for physical in await self.store.physical_collections():
            total += int((await self.store.index_status(physical.name)).get("unindexed_points", 0))
        return total


async def preload(data_dir: Path, count: int, dimension: int, log: Any = print) -> dict[str, Any]:
    """COLLECTION with count points, every one of them in the HNSW index, and an empty
    INGEST_COLLECTION; returns what was done."""
    # One index build, when the last batch lands, instead of one every 20k points.
    store = EdgeStore(data_dir, index_threshold=count)
    adapter = Adapter(store)
    await store.open()
    try:
        await adapter.ensure(COLLECTION, dimension, Distance.COSINE)
        await adapter.ensure(INGEST_COLLECTION, dimension, INGEST_DISTANCE)
        started = time.perf_counter()
        for start in range(0, count, PRELOAD_BATCH):
            await adapter.upsert(
                COLLECTION, points(start, min(PRELOAD_BATCH, count - start), dimension)
            )
        loaded = time.perf_counter() - started
        log(f"  loaded {count} points in {loaded:.1f}s; building the index ...")
        started = time.perf_counter()
        while True:
            await store.wait_for_indexing()
            if await adapter.unindexed_points() == 0:
                break
            await asyncio.sleep(0.5)
        indexed = time.perf_counter() - started
        log(f"  indexed in {indexed:.1f}s")
        stored = await adapter.count(COLLECTION)
        if stored != count:
            raise RuntimeError(f"preloaded {stored} points, expected {count}")
    finally:
        await store.close()
    return {"points": count, "load_seconds": round(loaded, 1), "index_seconds": round(indexed, 1)}


def _percentile(sorted_values: list[float], q: float) -> float:
    index = min(len(sorted_values) - 1, max(0, round(q * (len(sorted_values) - 1))))
    return sorted_values[index]


async def _floor_round(
    adapter: Adapter, dimension: int, seconds: float, batches: list[int], id_start: int
) -> dict[str, Any]:
    pool = query_vectors(dimension)
    latencies: list[float] = []
    deadline = time.perf_counter() + seconds
    i = 0
    while time.perf_counter() < deadline:
        started = time.perf_counter()
        await adapter.query(COLLECTION, pool[i % len(pool)], 10)
        latencies.append(time.perf_counter() - started)
        i += 1
    latencies.sort()
    result: dict[str, Any] = {
        "query_per_second": len(latencies) / sum(latencies),
        "query_p50_ms": _percentile(latencies, 0.50) * 1000,
        "query_p99_ms": _percentile(latencies, 0.99) * 1000,
    }
    rows = vectors(500, dimension, seed=SEED + 1).tolist()
    next_id = id_start
    for batch in batches:
        await adapter.recreate(INGEST_COLLECTION, dimension, INGEST_DISTANCE)
        written = 0
        spent = 0.0
        deadline = time.perf_counter() + seconds
        while time.perf_counter() < deadline:
            # Building the Point objects is part of what an endpoint does too.
            started = time.perf_counter()
            batch_points = [
                Point(next_id + k, rows[k % len(rows)], payload(next_id + k)) for k in range(batch)
            ]
            written += await adapter.upsert(INGEST_COLLECTION, batch_points)
            spent += time.perf_counter() - started
            next_id += batch
        result[f"ingest_{batch}_per_second"] = written / spent
    await adapter.recreate(INGEST_COLLECTION, dimension, INGEST_DISTANCE)
    return result


async def floor(
    data_dir: Path, dimension: int, seconds: float, rounds: int, batches: list[int]
) -> dict[str, Any]:
    """The engine through the store adapter, in process, one caller at a time: query
    latency and rate, ingest rate per batch size. Medians over rounds."""
    store = EdgeStore(data_dir, index_threshold=10**9)
    adapter = Adapter(store)
    await store.open()
    try:
        # Warm up: the first queries after opening read the index from disk.
        for vector in query_vectors(dimension)[:50]:
            await adapter.query(COLLECTION, vector, 10)
        results = [
            await _floor_round(adapter, dimension, seconds, batches, 10**12 + r * 10**9)
            for r in range(rounds)
        ]
    finally:
        await store.close()
    return {key: statistics.median(r[key] for r in results) for key in results[0]}


def write_json(path: Path, data: Any) -> None:
    path.write_text(json.dumps(data, indent=2, sort_keys=True), encoding="utf-8")
