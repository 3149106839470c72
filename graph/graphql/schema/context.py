"""What every resolver gets in info.context for one request."""

from __future__ import annotations

from dataclasses import dataclass, field

from graph.security.auth import OPEN_PRINCIPAL, Principal
from graph.settings import Settings
from graph.store.base import VectorStore


@dataclass(slots=True)
class RequestContext:
    store: VectorStore
    settings: Settings
    request_id: str
    # Who the request runs as: the endpoint sets it from the credential, and every store
    # call passes principal.tenant. The default is the open, single-tenant server's.
    principal: Principal = OPEN_PRINCIPAL
    # Filled in by the RequestObserver extension as the request goes through its phases.
    validated: bool = False
    operation_type: str = "unknown"
    operation_name: str | None = None
    # Set when the request was refused for a missing scope: the endpoint answers 403.
    forbidden: bool = False
    extra: dict[str, object] = field(default_factory=dict)
