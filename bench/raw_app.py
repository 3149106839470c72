"""The hand-written baseline: what a user would write on the engine alone.

One qdrant-edge shard per collection (the engine package the server uses), no
tenancy, no second shard, no store adapter, no GraphQL, no metrics: orjson in, one
engine call, orjson out, in a minimal Starlette app. The same search parameters as
the server (hnsw_ef 128, cosine); writes go through the WAL as the server's do.
Indexing is left to the user: POST /optimize builds the HNSW graph once, at the end.

    DATA_DIR=... PORT=8002 python -m bench.raw_app

Routes (the request shapes of bench/plain_app.py, so the same k6 scripts drive both):
    POST /query     {"vector": [...], "limit": 10} -> [{"id", "score", "payload"}, ...]
    POST /upsert    {"collection": "...", "points": [{"id", "vector", "payload"}]}
                    -> {"upserted": n}
    POST /reset     {"collection": "..."}: an empty shard under that name
    POST /optimize  {"collection": "..."}: build the index; -> {"seconds": s}
    POST /count     {"collection": "..."} -> {"count": n}
    GET  /readyz
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import orjson
from qdrant_edge import (
    CountRequest,
    Distance,
    EdgeConfig,
    EdgeOptimizersConfig,
    EdgeShard,
    EdgeVectorParams,
    Point,
    Query,
    QueryRequest,
    SearchParams,
    UpdateOperation,
)
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

COLLECTION = "memories"
HNSW_EF = 128
# Any segment above this (KB) is indexed by optimize(); the engine's default would
# leave a small benchmark collection unindexed.
INDEXING_THRESHOLD_KB = 1
SEARCH = SearchParams(hnsw_ef=HNSW_EF)


def config(dimension: int) -> EdgeConfig:
    return EdgeConfig(
        vectors=EdgeVectorParams(size=dimension, distance=Distance.Cosine),
        wal_enabled=True,
        optimizers=EdgeOptimizersConfig(indexing_threshold=INDEXING_THRESHOLD_KB),
    )


def open_shard(path: Path, dimension: int) -> EdgeShard:
    if path.is_dir():
        return EdgeShard.load(str(path))
    path.mkdir(parents=True)
    return EdgeShard.create(str(path), config(dimension))


def write(shard: EdgeShard, rows: list[dict[str, Any]]) -> int:
    points = [Point(p["id"], p["vector"], p.get("payload") or {}) for p in rows]
    shard.update(UpdateOperation.upsert_points(points))
    return len(points)


def search(shard: EdgeShard, vector: list[float], limit: int) -> list[Any]:
    request = QueryRequest(
        limit=limit, query=Query.Nearest(vector), with_payload=True, params=SEARCH
    )
    return shard.query(request)


class Shards:
    """The app's shards, one per collection name, under one directory."""

    def __init__(self, root: Path, dimension: int) -> None:
        self.root = root
        self.dimension = dimension
        self.open: dict[str, EdgeShard] = {}

    def get(self, name: str) -> EdgeShard:
        shard = self.open.get(name)
        if shard is None:
            if not name.replace("_", "").isalnum():
                raise ValueError("bad collection name")
            shard = self.open[name] = open_shard(self.root / name, self.dimension)
        return shard

    def reset(self, name: str) -> None:
        shard = self.get(name)
        del self.open[name]
        shard.close()
        shutil.rmtree(self.root / name)
        self.get(name)

    def close(self) -> None:
        for shard in self.open.values():
            shard.close()
        self.open.clear()


def preload(root: Path, count: int, dimension: int, log: Any = print) -> dict[str, Any]:
    """COLLECTION with the benchmark's count points (bench/data.py), indexed once."""
    from bench import data

    shard = open_shard(root / COLLECTION, dimension)
    try:
        started = time.perf_counter()
        for start in range(0, count, data.PRELOAD_BATCH):
            n = min(data.PRELOAD_BATCH, count - start)
            rows = data.vectors(n, dimension, start=start).tolist()
            write(
                shard,
                [
                    {"id": start + k, "vector": rows[k], "payload": data.payload(start + k)}
                    for k in range(n)
                ],
            )
        loaded = time.perf_counter() - started
        started = time.perf_counter()
        shard.optimize()
        indexed = time.perf_counter() - started
        log(f"  raw shard: loaded {count} points in {loaded:.1f}s, indexed in {indexed:.1f}s")
        stored = shard.count(CountRequest(exact=True))
        if stored != count:
            raise RuntimeError(f"raw shard holds {stored} points, expected {count}")
    finally:
        shard.close()
    return {"points": count, "load_seconds": round(loaded, 1), "index_seconds": round(indexed, 1)}


def json_response(value: object) -> Response:
    return Response(orjson.dumps(value), media_type="application/json")


def create_raw_app(root: Path, dimension: int) -> Starlette:
    shards = Shards(root, dimension)

    async def body(request: Request) -> Any:
        return orjson.loads(await request.body())

    async def query(request: Request) -> Response:
        b = await body(request)
        shard = shards.get(b.get("collection") or COLLECTION)
        hits = await asyncio.to_thread(search, shard, b["vector"], int(b.get("limit", 10)))
        return json_response([{"id": h.id, "score": h.score, "payload": h.payload} for h in hits])

    async def upsert(request: Request) -> Response:
        b = await body(request)
        shard = shards.get(b.get("collection") or COLLECTION)
        return json_response({"upserted": await asyncio.to_thread(write, shard, b["points"])})

    async def reset(request: Request) -> Response:
        shards.reset((await body(request)).get("collection") or COLLECTION)
        return json_response({"reset": True})

    async def optimize(request: Request) -> Response:
        shard = shards.get((await body(request)).get("collection") or COLLECTION)
        started = time.perf_counter()
        await asyncio.to_thread(shard.optimize)
        return json_response({"seconds": time.perf_counter() - started})

    async def count(request: Request) -> Response:
        shard = shards.get((await body(request)).get("collection") or COLLECTION)
        return json_response({"count": shard.count(CountRequest(exact=True))})

    async def readyz(request: Request) -> Response:
        return json_response({"status": "ready"})

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        shards.get(COLLECTION)
        try:
            yield
        finally:
            shards.close()

    return Starlette(
        routes=[
            Route("/query", query, methods=["POST"]),
            Route("/upsert", upsert, methods=["POST"]),
            Route("/reset", reset, methods=["POST"]),
            Route("/optimize", optimize, methods=["POST"]),
            Route("/count", count, methods=["POST"]),
            Route("/readyz", readyz, methods=["GET"]),
        ],
        lifespan=lifespan,
    )


def main() -> None:
    import uvicorn

    app = create_raw_app(
        Path(os.environ.get("DATA_DIR", "./data")), int(os.environ.get("VECTOR_SIZE", "384"))
    )
    # The same server and event loop as the memory server, without an access log.
    uvicorn.run(
        app,
        host="127.0.0.1",
        port=int(os.environ.get("PORT", "8002")),
        access_log=False,
        server_header=False,
        log_level="warning",
    )


if __name__ == "__main__":
    main()
