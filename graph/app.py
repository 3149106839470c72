"""create_app(): routes, middleware and the store's lifecycle."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from graph import __version__
from graph.errors import ApiError, BadUserInput, ConfigError, ErrorCode, StoreOverloaded
from graph.graphql.compiled.fastpath import FastPath
from graph.graphql.execution import Executor
from graph.graphql.policy import Policy
from graph.graphql.prepare import Preparer
from graph.graphql.schema import build_schema
from graph.graphql.schema.context import ServerState
from graph.http.endpoint import GraphQLEndpoint
from graph.http.gate import GatedApp
from graph.http.graphiql import ASSETS_PATH, GraphiQL
from graph.http.middleware import RequestEndsMiddleware, RequestIdMiddleware
from graph.http.protocol import PREFLIGHT_HEADERS
from graph.http.responses import JSONResponse, router_refusal
from graph.mcp.server import StreamableHTTP, build_server
from graph.mcp.tools import MemoryTools
from graph.memory.embedders import Embedder, create_embedder
from graph.memory.expiry import sweep_forever
from graph.memory.service import MemoryService
from graph.security.auth import Authenticator
from graph.security.gate import Gate
from graph.security.ratelimit import TenantRateLimiter
from graph.settings import Settings
from graph.store import VectorStore, create_store
from graph.store.defaults import DefaultCollections
from graph.store.instrumented import StoreStats, instrument
from graph.store.models import validate_collection_name
from graph.store.tenancy import DEFAULT_TENANT
from graph.telemetry.http_metrics import HttpMetricsMiddleware
from graph.telemetry.metrics import (
    BUILD_INFO,
    STORE_UP,
    initialise_error_codes,
    set_resolver_timing,
)
from graph.telemetry.observations import OperationRecorder

logger = logging.getLogger("graph.app")

STORE_CHECK_INTERVAL_SECONDS = 2.0
READINESS_TIMEOUT_SECONDS = 2.0


class StoreSupervisor:
    """Knows whether the store answers, and creates the default collection once it does,
    so a server started while Qdrant was down recovers without a restart."""

    def __init__(self, store: VectorStore, defaults: DefaultCollections) -> None:
        self.store = store
        self.defaults = defaults
        self.collection_ready = False
        self.up: bool | None = None
        self.stats: StoreStats | None = None
        self.stopping = False

    async def check(self) -> bool:
        try:
            # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow a cancellation
            # that arrives as the ping completes, and stop() would wait for ever.
            async with asyncio.timeout(READINESS_TIMEOUT_SECONDS):
                await self.store.ping()
                if not self.collection_ready:
                    self.collection_ready = await self._ensure_default_collection()
            up = True
        except StoreOverloaded:
            # Every call slot to the Qdrant server is taken (STORE_MAX_QUEUE): the store is
            # busy, not down, and a 503 would pull healthy replicas out of the load balancer
            # at the worst moment. The state stays as it was until a ping gets a slot (a
            # hung server's calls time out and free theirs).
            up = bool(self.up)
        except (ApiError, TimeoutError):
            up = False
        self._record(up)
        # store_up is the readiness check's answer: a store that answers but cannot hold the
        # default collection (a full disk) leaves /readyz 503, and StoreDown must see that.
        STORE_UP.set(1 if up and self.collection_ready else 0)
        return up and self.collection_ready

    async def _ensure_default_collection(self) -> bool:
        if not await self.defaults.ensure(DEFAULT_TENANT):
            return False
        settings = self.defaults.settings
        info = await self.store.get_collection(DEFAULT_TENANT, settings.collection)
        if info.dimension != settings.vector_size or info.distance != settings.distance:
            logger.warning(
                "The default collection exists with other settings; keeping it as it is",
                extra={
                    "collection": info.name,
                    "dimension": info.dimension,
                    "distance": info.distance.value,
                },
            )
        return True

    def _record(self, up: bool) -> None:
        if up != self.up:
            if up:
                logger.info("The vector store answers", extra={"backend": self.store.backend})
            else:
                logger.warning(
                    "The vector store does not answer", extra={"backend": self.store.backend}
                )
        self.up = up

    async def run(self) -> None:
        """Until stopping: a cancellation alone could be lost inside a store call."""
        while not self.stopping:
            if await self.check() and self.stats is not None:
                await self._sample_stats(self.stats)
            await asyncio.sleep(STORE_CHECK_INTERVAL_SECONDS)

    @staticmethod
    async def _sample_stats(stats: StoreStats) -> None:
        try:
            async with asyncio.timeout(READINESS_TIMEOUT_SECONDS):
                await stats.refresh()
        except (ApiError, TimeoutError):
            logger.debug("Could not sample the store's statistics", exc_info=True)


def cors_middleware(settings: Settings) -> list[Middleware]:
    """CORS_ALLOW_ORIGINS, comma-separated; none (the default): no cross-origin browser
    access at all."""
    origins = [o.strip() for o in settings.server.cors_allow_origins.split(",") if o.strip()]
    if not origins:
        return []
    return [
        Middleware(
            CORSMiddleware,
            allow_origins=origins,
            allow_methods=["GET", "POST"],
            # The preflight headers let a browser app send queries over GET.
            allow_headers=["authorization", "content-type", "x-request-id", *PREFLIGHT_HEADERS],
            expose_headers=["x-request-id", "retry-after"],
            max_age=600,
        )
    ]


def create_app(
    settings: Settings | None = None,
    store: VectorStore | None = None,
    embedder: Embedder | None = None,
) -> Starlette:
    settings = settings or Settings()
    try:
        validate_collection_name(settings.store.collection)
    except BadUserInput as exc:
        raise ConfigError(f"COLLECTION {settings.store.collection!r}: {exc.message}") from None
    store = store or create_store(settings)
    if settings.telemetry.metrics_store:
        store = instrument(store)
    # EMBEDDER's (a test may pass its own); without one, recall is by keywords and by the
    # vectors clients send.
    if embedder is None:
        embedder = create_embedder(settings.memory)
    memories = MemoryService(store, settings, embedder)
    set_resolver_timing(settings.telemetry.metrics_resolver_timing)
    initialise_error_codes(code.value for code in ErrorCode)
    server = ServerState()
    defaults = DefaultCollections(store, settings.store)
    supervisor = StoreSupervisor(store, defaults)
    if settings.telemetry.metrics_store:
        supervisor.stats = StoreStats(store)
    schema = build_schema()
    fast_path = FastPath(schema)
    preparer = Preparer(schema, settings.limits, fast_path)
    hide_schema = not settings.limits.graphql_introspection
    # Built here, so that a bad secret, key file or limit stops the start, saying which.
    authenticator = Authenticator(settings)
    limiter = (
        TenantRateLimiter(
            settings.auth.rate_limit,
            settings.auth.rate_limit_storage_url.get_secret_value()
            if settings.auth.rate_limit_storage_url
            else None,
        )
        if settings.auth.rate_limit
        else None
    )
    recorder = OperationRecorder(
        settings.telemetry.log_flush_seconds, settings.telemetry.metrics_operations
    )
    graphiql = GraphiQL(not authenticator.open) if settings.server.graphiql else None
    graphql = GraphQLEndpoint(
        preparer,
        Policy(schema._schema, settings),
        Executor(schema, fast_path, hide_schema),
        store,
        defaults,
        settings,
        server,
        recorder,
        authenticator=authenticator,
        limiter=limiter,
        memories=memories,
        graphiql=graphiql,
    )
    BUILD_INFO.info({"version": __version__, "backend": store.backend})
    mcp = StreamableHTTP(
        build_server(MemoryTools(memories, settings, defaults)),
        settings.server.host,
        settings.limits.max_body_bytes,
    )

    async def healthz(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def readyz(request: Request) -> Response:
        if not server.draining and await supervisor.check():
            return JSONResponse({"status": "ready"})
        return JSONResponse({"status": "unavailable"}, status_code=503)

    # The write-out running, shared by the scrapes that arrive meanwhile: /metrics needs no
    # credential, and scrapes sent at once would each hold a thread of the default pool
    # (keyword conversion's too) and ~30 ms of CPU; its text is at most one write-out old.
    writing: asyncio.Future[bytes] | None = None

    def written(_: asyncio.Future[bytes]) -> None:
        nonlocal writing
        writing = None

    async def metrics(request: Request) -> Response:
        nonlocal writing
        if writing is None:
            recorder.record()  # what waits for its batch is counted in this scrape
            # Off the event loop: ~3,000 series take ~30 ms to write out, which would hold
            # every request for as long at each scrape (prometheus_client's metrics take
            # their locks).
            writing = asyncio.ensure_future(asyncio.to_thread(generate_latest))
            writing.add_done_callback(written)
        # Shielded: a scrape that goes away does not cancel the others' write-out.
        body = await asyncio.shield(writing)
        return Response(body, media_type=CONTENT_TYPE_LATEST)

    http_metrics = [Middleware(HttpMetricsMiddleware)] if settings.telemetry.metrics_http else []

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        try:
            # Loads the embedder and checks its dimension before anything opens: one that
            # cannot be reached or loaded refuses the start too (README "Settings").
            await memories.start()
            await store.open()
        except ConfigError as exc:  # a DATA_DIR in use or unusable, the embedder's failure
            logger.critical("Cannot start: %s", exc)
            app.state.cannot_start = True  # serving.py: no traceback after this line
            await memories.close()
            raise
        await supervisor.check()
        sweeping = asyncio.create_task(
            sweep_forever(memories, settings.memory.ttl_sweep_seconds), name="expiry-sweep"
        )
        task = asyncio.create_task(supervisor.run())
        recording = asyncio.create_task(recorder.run()) if recorder.interval else None
        if authenticator.open:
            logger.warning(
                "No authentication is configured: the server is open, and every request "
                "runs as the single tenant 'default' with every scope (README: Security)"
            )
        logger.info(
            "Memory server started",
            extra={
                "version": __version__,
                "backend": store.backend,
                "collection": settings.store.collection,
            },
        )
        try:
            async with mcp.run():
                yield
        finally:
            server.draining = True
            supervisor.stopping = True
            for stopping in (task, sweeping):
                stopping.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await stopping
            if recording is not None:
                recording.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await recording
            recorder.record()
            preparer.close()
            await store.close()
            await memories.close()
            if limiter is not None:
                await limiter.close()
            logger.info("Memory server stopped; the store is flushed and closed")

    def begin_draining() -> None:
        server.draining = True

    app = Starlette(
        routes=[
            # An ASGI app, so that every method reaches the endpoint, which answers the
            # ones it does not serve with a coded 405.
            Route("/graphql", graphql),
            Route("/metrics", metrics, methods=["GET"]),
            Route("/healthz", healthz, methods=["GET"]),
            Route("/readyz", readyz, methods=["GET"]),
            # An ASGI app as the endpoint: every method reaches the transport, which
            # answers what stateless streamable HTTP serves (POST) and refuses the rest.
            Route("/mcp", GatedApp(mcp.app, Gate(authenticator, limiter), "mcp")),
            *(
                [Route(f"{ASSETS_PATH}/{{digest}}/{{file:path}}", graphiql.asset, methods=["GET"])]
                if graphiql is not None
                else []
            ),
        ],
        middleware=[
            Middleware(RequestIdMiddleware),
            # Outside CORS, so the preflights it answers itself are counted too.
            *http_metrics,
            *cors_middleware(settings),
            Middleware(RequestEndsMiddleware, max_bytes=settings.limits.max_body_bytes),
        ],
        exception_handlers={HTTPException: router_refusal},
        lifespan=lifespan,
    )
    # For the server (graph/serving.py): SIGTERM makes /readyz answer 503 before the stop.
    app.state.begin_draining = begin_draining
    app.state.record_operations = recorder.record
    return app
