"""Every Prometheus metric of the server, defined once.

HTTP metrics (http_requests_total, http_request_duration_seconds, ...) come from
starlette-exporter's middleware in app.py; everything GraphQL- and store-specific
is here.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
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
STORE_UP = Gauge("store_up", "1 when the vector store answered the last readiness check.")
BUILD_INFO = Info("graph_build", "Version and store backend of this server.")

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
            started = time.perf_counter()
            try:
                return await resolver(*args, **kwargs)
            finally:
                child.observe(time.perf_counter() - started)

        return timed

    return decorate
