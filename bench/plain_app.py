"""The reference point: a minimal Starlette JSON API making the same store calls.

No GraphQL, no metrics, no request logs, no limits: JSON in (orjson), one call on
the same embedded store adapter the server uses, JSON out. What the memory server
spends beyond this is what its GraphQL, metrics, logging and safety layers cost.

    DATA_DIR=... PORT=8001 python -m bench.plain_app

Routes:
    POST /query   {"vector": [...], "limit": 10}  -> [{"id", "score", "payload"}, ...]
    POST /upsert  {"collection": "...", "points": [{"id", "vector", "payload"}]} -> {"upserted": n}
    POST /reset   {"collection": "..."}: delete and recreate it (the ingest collection)
    GET  /readyz
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from bench.data import COLLECTION, INGEST_COLLECTION, INGEST_DISTANCE, Adapter
from graph.settings import Settings
from graph.store.edge import EdgeStore
from graph.store.models import Point


def json_response(value: object) -> Response:
    return Response(orjson.dumps(value), media_type="application/json")


def create_plain_app(settings: Settings) -> Starlette:
    store = EdgeStore.from_settings(settings)
    adapter = Adapter(store)
    dimension = settings.store.vector_size

    async def query(request: Request) -> Response:
        body = orjson.loads(await request.body())
        hits = await adapter.query(
            body.get("collection") or COLLECTION, body["vector"], int(body.get("limit", 10))
        )
        return json_response(
            [{"id": str(h.id), "score": h.score, "payload": h.payload} for h in hits]
        )

    async def upsert(request: Request) -> Response:
        body = orjson.loads(await request.body())
        batch = [Point(p["id"], p["vector"], p.get("payload")) for p in body["points"]]
        written = await adapter.upsert(body.get("collection") or COLLECTION, batch)
        return json_response({"upserted": written})

    async def reset(request: Request) -> Response:
        body = orjson.loads(await request.body())
        await adapter.recreate(
            body.get("collection") or INGEST_COLLECTION, dimension, INGEST_DISTANCE
        )
        return json_response({"reset": True})

    async def readyz(request: Request) -> Response:
        return json_response({"status": "ready"})

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await store.open()
        try:
            yield
        finally:
            await store.close()

    return Starlette(
        routes=[
            Route("/query", query, methods=["POST"]),
            Route("/upsert", upsert, methods=["POST"]),
            Route("/reset", reset, methods=["POST"]),
            Route("/readyz", readyz, methods=["GET"]),
        ],
        lifespan=lifespan,
    )


def main() -> None:
    import uvicorn

    settings = Settings()
    # The same server and event loop as the memory server (uvicorn picks uvloop and
    # httptools when installed), without its access log.
    uvicorn.run(
        create_plain_app(settings),
        host=settings.server.host,
        port=settings.server.port,
        access_log=False,
        server_header=False,
        log_level="warning",
    )


if __name__ == "__main__":
    main()
