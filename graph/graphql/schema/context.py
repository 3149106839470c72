"""What every resolver gets in info.context for one request.

The resolver contract, the same on both executors: a root resolver reads `info.context`
(this object) and may read the Strawberry Info's `field_name`, `path`,
`selected_fields`, `variable_values` and `operation`; the compiled executor builds a
real Info with these (tests/test_fastpath.py holds the two paths equal). Resolvers of
nested fields are not called by the compiled executor: a type whose fields have
resolvers of their own goes to graphql-core's.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from graph.errors import ApiError
from graph.memory.service import MemoryService
from graph.security.principals import OPEN_PRINCIPAL, Principal
from graph.settings import Settings
from graph.store.base import VectorStore


@dataclass(slots=True)
class ServerState:
    """The process's own state that answers may report: one object, shared."""

    # From SIGTERM (or the lifespan's end) on: health says DEGRADED, /readyz 503.
    draining: bool = False


# The vector values (numbers) one operation may return over all its fields that take
# `withVector: true` (query, points, scroll). MAX_POINTS_PER_REQUEST bounds how many points
# an operation returns, but each point carries its whole vector, and a collection may have
# up to 65,536 dimensions (graph/store/models.py MAX_DIMENSION): 1,000 such vectors are
# 65M numbers, a response of over a gigabyte and several gigabytes of memory to build it.
# The bound is what 1,000 points (MAX_POINTS_PER_REQUEST's default) of the common embedding
# dimensions, up to 1,536, return: there it never binds; past it, fewer vectors fit. It is
# a constant, not a setting, so that the largest answer is documented (docs/hardening.md).
VECTORS_AT_COMMON_DIMENSION = 1_000
COMMON_DIMENSION = 1_536
MAX_VECTOR_VALUES_PER_REQUEST = VECTORS_AT_COMMON_DIMENSION * COMMON_DIMENSION


@dataclass(slots=True)
class VectorBudget:
    """What is left of MAX_VECTOR_VALUES_PER_REQUEST for one request (one per
    RequestContext, so never shared between requests). A field takes from it before it
    fetches (graph/graphql/schema/resolvers.py take_vectors)."""

    left: int = MAX_VECTOR_VALUES_PER_REQUEST
    # The dimensions of the collections looked up so far in this request, by name.
    dimensions: dict[str, int] = field(default_factory=dict)
    # Made on first use: fields take from the budget one at a time, in the order they
    # start, on either executor (graphql-core runs root fields concurrently).
    _lock: asyncio.Lock | None = None

    def lock(self) -> asyncio.Lock:
        if self._lock is None:
            self._lock = asyncio.Lock()
        return self._lock


@dataclass(frozen=True, slots=True)
class RequestContext:
    store: VectorStore
    settings: Settings
    request_id: str
    # Who the request runs as: the endpoint sets it from the credential, and every store
    # call passes principal.tenant. The default is the open, single-tenant server's.
    principal: Principal = OPEN_PRINCIPAL
    server: ServerState = field(default_factory=ServerState)
    # The memory service (graph/memory/service.py) the memory fields call.
    memories: MemoryService | None = None
    # Why the tenant's default collection could not be made (graph/store/defaults.py):
    # what a field on it says instead of NOT_FOUND.
    default_problem: ApiError | None = None
    # The vector values this request may still return (made afresh for each context).
    vectors: VectorBudget = field(default_factory=VectorBudget)
