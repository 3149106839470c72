"""What every resolver gets in info.context for one request."""

from __future__ import annotations

from dataclasses import dataclass, field

from graph.settings import Settings
from graph.store.base import VectorStore


@dataclass(slots=True)
class RequestContext:
    store: VectorStore
    settings: Settings
    request_id: str
    # Filled in by the RequestObserver extension as the request goes through its phases.
    validated: bool = False
    operation_type: str = "unknown"
    operation_name: str | None = None
    extra: dict[str, object] = field(default_factory=dict)
