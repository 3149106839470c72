"""What every resolver gets in info.context for one request.

The resolver contract, the same on both executors: a root resolver reads `info.context`
(this object) and may read the Strawberry Info's `field_name`, `path`,
`selected_fields`, `variable_values` and `operation`; the compiled executor builds a
real Info with these (tests/test_fastpath.py holds the two paths equal). Resolvers of
nested fields are not called by the compiled executor: a type whose fields have
resolvers of their own goes to graphql-core's.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from graph.memory.service import MemoryService
from graph.security.auth import OPEN_PRINCIPAL, Principal
from graph.settings import Settings
from graph.store.base import VectorStore


@dataclass(slots=True)
class ServerState:
    """The process's own state that answers may report: one object, shared."""

    # From SIGTERM (or the lifespan's end) on: health says DEGRADED, /readyz 503.
    draining: bool = False


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
