"""What the tools need of the memory service: remember, recall by text, forget by ids."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from graph.store.models import Filter


@dataclass(slots=True)
class NewMemory:
    text: str
    metadata: dict[str, Any] | None = None
    ttl_seconds: int | None = None


class FoundMemory(Protocol):
    @property
    def id(self) -> object: ...
    @property
    def text(self) -> str: ...
    @property
    def metadata(self) -> dict[str, Any] | None: ...
    @property
    def score(self) -> float: ...
    @property
    def created_at(self) -> datetime: ...


class Memories(Protocol):
    async def remember(
        self, tenant: str, collection: str, memories: Sequence[NewMemory]
    ) -> Sequence[object]: ...

    async def recall(
        self, tenant: str, collection: str, text: str, limit: int, filter: Filter | None
    ) -> Sequence[FoundMemory]: ...

    async def forget(self, tenant: str, collection: str, ids: Sequence[object]) -> int: ...
