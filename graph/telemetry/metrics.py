"""Every Prometheus metric of the server, defined once.

HTTP metrics (http_requests_total, http_request_duration_seconds, ...) are
starlette-exporter's, recorded by graph/telemetry/http_metrics.py; everything GraphQL-
and store-specific is here.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Iterable
from functools import wraps
from typing import ParamSpec, TypeVar

from prometheus_client import Counter, Gauge, Histogram, Info

LATENCY_BUCKETS = (
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
)

GRAPHQL_RESOLVER_DURATION = Histogram(
    "graphql_resolver_duration_seconds",
    "Time spent in GraphQL resolvers that do real work, by parent type and field.",
    ["type", "field"],
    buckets=LATENCY_BUCKETS,
)
GRAPHQL_ERRORS = Counter(
    "graphql_errors_total",
    "Errors returned in GraphQL responses, by error code.",
    ["code"],
)
GRAPHQL_OPERATIONS = Counter(
    "graphql_operations_total",
    "GraphQL operations executed, by operation type, name and outcome.",
    ["operation_type", "operation_name", "outcome"],
)
GRAPHQL_OPERATION_DURATION = Histogram(
    "graphql_operation_duration_seconds",
    "Duration of GraphQL operations, by operation type and name.",
    ["operation_type", "operation_name"],
    buckets=LATENCY_BUCKETS,
)
EMBEDDER_DURATION = Histogram(
    "embedder_duration_seconds",
    "Time to embed one batch of texts with the configured embedder, by embedder kind.",
    ["embedder"],
    buckets=LATENCY_BUCKETS,
)
EMBEDDER_ERRORS = Counter(
    "embedder_errors_total",
    "Embedding calls that failed (after retries), by embedder kind and reason.",
    ["embedder", "reason"],
)
MEMORIES_EXPIRED = Counter(
    "memories_expired_total",
    "Expired memories deleted by the background sweep.",
)
MCP_TOOL_CALLS = Counter(
    "mcp_tool_calls_total",
    "MCP tool calls, by tool and outcome ('success' or the error code of the tool error).",
    ["tool", "outcome"],
)
MCP_TOOL_DURATION = Histogram(
    "mcp_tool_duration_seconds",
    "Duration of MCP tool calls, from the arguments to the result, by tool.",
    ["tool"],
    buckets=LATENCY_BUCKETS,
)
STORE_UP = Gauge("store_up", "1 when the vector store answered the last readiness check.")
BUILD_INFO = Info("graph_build", "Version and store backend of this server.")


def initialise_error_codes(codes: Iterable[str]) -> None:
    """Every code gets its series at start-up, so rate() sees the first error of a kind
    and a dashboard shows a zero rather than no data."""
    for code in codes:
        GRAPHQL_ERRORS.labels(code=code)


# Store calls, recorded by graph/store/instrumented.py around every interface method.
STORE_CALL_DURATION = Histogram(
    "store_call_duration_seconds",
    "Duration of vector store calls, by backend and operation (failed calls included).",
    ["backend", "operation"],
    buckets=LATENCY_BUCKETS,
)
STORE_ERRORS = Counter(
    "store_errors_total",
    "Vector store calls that raised, by backend, operation and error code.",
    ["backend", "operation", "code"],
)
STORE_POINTS_UPSERTED = Counter(
    "store_points_upserted_total", "Points written by upsert.", ["backend"]
)
STORE_POINTS_DELETED = Counter(
    "store_points_deleted_total", "Points deleted (by id or by filter).", ["backend"]
)
# Remote store faults, retries and shedding, recorded by graph/store/remote.py.
STORE_FAULTS = Counter(
    "store_faults_total",
    "Faults met on calls to Qdrant, each attempt counted, by backend and kind "
    "(connection, timeout, server_error, rate_limited, bad_response, refused, unexpected).",
    ["backend", "kind"],
)
STORE_RETRIES = Counter(
    "store_retries_total",
    "Calls to Qdrant retried after a transient fault, by backend and operation.",
    ["backend", "operation"],
)
STORE_SHED = Counter(
    "store_shed_total",
    "Store calls refused with STORE_OVERLOADED because too many were already waiting.",
    ["backend"],
)
STORE_WAITING = Gauge(
    "store_waiting_calls",
    "Store calls waiting for one of the STORE_MAX_CONCURRENCY slots toward Qdrant.",
    ["backend"],
)
# Sampled from the store in the background (graph/store/instrumented.py StoreStats).
STORE_COLLECTION_POINTS = Gauge(
    "store_collection_points", "Points per collection.", ["backend", "collection"]
)
STORE_UNINDEXED_POINTS = Gauge(
    "store_unindexed_points",
    "Embedded store: points per collection not yet in the HNSW index (searched brute force).",
    ["collection"],
)
STORE_INDEX_BUILDING = Gauge(
    "store_index_building",
    "Embedded store: 1 while a background index build runs for the collection.",
    ["collection"],
)
STORE_INDEX_SEGMENTS = Gauge(
    "store_index_segments",
    "Embedded store: HNSW-indexed segments per collection (every query searches each).",
    ["collection"],
)
STORE_INDEX_BUILDS = Counter(
    "store_index_builds_total",
    "Embedded store: background index builds (optimisation runs) that ended, by outcome.",
    ["collection", "outcome"],
)
STORE_INDEX_BUILD_DURATION = Histogram(
    "store_index_build_duration_seconds",
    "Embedded store: duration of successful background index builds.",
    ["collection"],
    buckets=(0.1, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0),
)

# Per-tenant usage: label values are bounded by TENANT_LABELS (see BoundedLabel).
GRAPHQL_TENANT_OPERATIONS = Counter(
    "graphql_tenant_operations_total",
    "GraphQL operations per tenant (the first MAX_TENANT_LABELS tenants; the rest are 'other').",
    ["tenant", "operation_type", "outcome"],
)
MAX_TENANT_LABELS = 100
MAX_COLLECTION_LABELS = 100
OTHER = "other"


class BoundedLabel:
    """Free-form values (tenants, collections) as label values: the first `limit` distinct
    values keep their own, every later one folds into 'other', so a series count is bounded."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.known: set[str] = set()

    def __call__(self, value: str) -> str:
        if value in self.known:
            return value
        if len(self.known) < self.limit:
            self.known.add(value)
            return value
        return OTHER


TENANT_LABELS = BoundedLabel(MAX_TENANT_LABELS)

RATE_LIMITED_REQUESTS = Counter(
    "rate_limited_requests_total",
    "Requests refused by RATE_LIMIT (HTTP 429), per tenant (bounded like the usage metric).",
    ["tenant"],
)
AUTH_FAILURES = Counter(
    "auth_failures_total",
    "Requests refused because of their credential (HTTP 401) or scopes (HTTP 403).",
    ["code"],
)


def observe_tenant_operation(tenant: str, operation_type: str, outcome: str) -> None:
    """The per-tenant usage hook: call once per GraphQL operation of an authenticated tenant."""
    GRAPHQL_TENANT_OPERATIONS.labels(TENANT_LABELS(tenant), operation_type, outcome).inc()


class _Switch:
    __slots__ = ("on",)

    def __init__(self) -> None:
        self.on = True


RESOLVER_TIMING = _Switch()


def set_resolver_timing(enabled: bool) -> None:
    """METRICS_RESOLVER_TIMING: lets a benchmark compare the server with and without it."""
    RESOLVER_TIMING.on = enabled


P = ParamSpec("P")
R = TypeVar("R")


def timed_resolver(
    parent_type: str, field: str
) -> Callable[[Callable[P, Awaitable[R]]], Callable[P, Awaitable[R]]]:
    """Time an async resolver into graphql_resolver_duration_seconds.

    The labelled child is looked up once, at decoration time, so the per-call
    cost is two clock reads and one observe.
    """
    child = GRAPHQL_RESOLVER_DURATION.labels(type=parent_type, field=field)

    def decorate(resolver: Callable[P, Awaitable[R]]) -> Callable[P, Awaitable[R]]:
        @wraps(resolver)
        async def timed(*args: P.args, **kwargs: P.kwargs) -> R:
            if not RESOLVER_TIMING.on:
                return await resolver(*args, **kwargs)
            started = time.perf_counter()
            try:
                return await resolver(*args, **kwargs)
            finally:
                child.observe(time.perf_counter() - started)

        return timed

    return decorate
