"""Memories in GraphQL: their types and inputs, and thin resolvers over the memory service
(graph/memory/service.py), which Query and Mutation mount as fields. The resolvers return
the store's MemoryRecord objects, which resolve as Memory and ScoredMemory by attribute.
Like the methods of Query and Mutation, each resolver takes the (unused) root first: the
compiled fast path calls resolvers as resolver(root, info, **arguments)."""

from __future__ import annotations

from enum import Enum
from typing import Annotated, Any, cast

import strawberry
from strawberry.types import Info

from graph.graphql.schema.context import RequestContext
from graph.graphql.schema.inputs import Filter, to_filter
from graph.graphql.schema.resolvers import collection_name
from graph.graphql.schema.scalars import JSON, DateTime, Vector
from graph.graphql.schema.types import DeleteResult
from graph.memory.service import MemoryService, Mode, NewMemory, Recall
from graph.store.models import Recency
from graph.telemetry.metrics import timed_resolver

CollectionArg = Annotated[
    str | None,
    strawberry.argument(description="The collection; the default collection when omitted."),
]
_ID_DESCRIPTION = "Integer ids come back as their decimal string, UUIDs in canonical form."


@strawberry.type(
    description=(
        "A memory: a text an agent remembers, with optional metadata. Keyword recall works "
        "on its text with no embedding model; semantic recall uses its dense vector, given "
        "by the client or computed by the configured embedder."
    )
)
class Memory:
    id: strawberry.ID = strawberry.field(description=_ID_DESCRIPTION)
    text: str
    metadata: JSON | None
    created_at: DateTime
    updated_at: DateTime = strawberry.field(
        description="Equal to createdAt until a remember with the same id replaces the memory."
    )
    expires_at: DateTime | None = strawberry.field(
        description="When the memory will be forgotten; null when it does not expire."
    )


@strawberry.type
class ScoredMemory(Memory):
    score: float = strawberry.field(
        description="Higher is better; comparable within one recall only."
    )


@strawberry.input
class MemoryInput:
    text: str = strawberry.field(
        description="UTF-8 text, not only whitespace, at most MAX_MEMORY_TEXT_BYTES."
    )
    id: strawberry.ID | None = strawberry.field(
        default=None,
        description=(
            "Optional: an unsigned integer or a UUID; the server assigns a UUID when omitted. "
            "Remembering an existing id replaces that memory (text, metadata, vector, "
            "expiry); its createdAt is kept and its updatedAt is now."
        ),
    )
    metadata: JSON | None = strawberry.field(
        default=None, description="A JSON object; recall filters address its keys."
    )
    vector: Vector | None = strawberry.field(
        default=None,
        description=(
            "Optional dense vector of the collection's dimension. When omitted, the configured "
            "embedder computes it from the text; with no embedder the memory is recalled by "
            "its keywords only."
        ),
    )
    ttl_seconds: int | None = strawberry.field(
        default=None, description="Forget the memory this many seconds from now (1 or more)."
    )


@strawberry.type
class RememberResult:
    ids: list[strawberry.ID] = strawberry.field(
        description="The ids of the memories, in input order."
    )


@strawberry.enum(description="How recall ranks memories.")
class RecallMode(Enum):
    AUTO = strawberry.enum_value(
        "AUTO",
        description=(
            "HYBRID when the request has a dense vector (given, or embedded from the text) "
            "and text, SEMANTIC with a vector only, KEYWORD with text only."
        ),
    )
    HYBRID = strawberry.enum_value(
        "HYBRID", description="Keyword (BM25) and dense rankings fused (reciprocal rank fusion)."
    )
    KEYWORD = strawberry.enum_value(
        "KEYWORD", description="BM25 over the memories' text only: works with no embedding model."
    )
    SEMANTIC = strawberry.enum_value("SEMANTIC", description="Nearest dense vectors only.")


@strawberry.input
class RecencyInput:
    half_life_seconds: float = strawberry.field(
        description="A memory this many seconds old gets half the recency boost of a new one."
    )
    weight: float = strawberry.field(
        default=0.3,
        description=(
            "0..1: how much recency weighs against relevance. 0 ignores age; 1 ranks the "
            "relevant memories by age alone."
        ),
    )


def _service(info: Info[RequestContext, Any]) -> MemoryService:
    service = info.context.memories
    if service is None:
        raise RuntimeError("The request context has no memory service")
    return service


@timed_resolver("Query", "recall")
async def recall(
    root: None,
    info: Info[RequestContext, Any],
    text: str | None = None,
    vector: Vector | None = None,
    filter: Filter | None = None,
    limit: int = 10,
    mode: RecallMode = RecallMode.AUTO,
    recency: RecencyInput | None = None,
    diversity: float | None = None,
    collection: CollectionArg = None,
) -> list[ScoredMemory]:
    context = info.context
    asked = Recall(
        text=text,
        vector=vector,
        filter=to_filter(filter),
        limit=limit,
        mode=Mode(mode.value),
        recency=Recency(recency.half_life_seconds, recency.weight) if recency else None,
        diversity=diversity,
    )
    found = await _service(info).recall(
        context.principal.tenant, collection_name(context, collection), asked
    )
    return cast(list[ScoredMemory], found)


@timed_resolver("Query", "memories")
async def memories(
    root: None,
    info: Info[RequestContext, Any],
    ids: list[strawberry.ID],
    collection: CollectionArg = None,
) -> list[Memory]:
    context = info.context
    found = await _service(info).memories(
        context.principal.tenant, collection_name(context, collection), ids
    )
    return cast(list[Memory], found)


@timed_resolver("Mutation", "remember")
async def remember(
    root: None,
    info: Info[RequestContext, Any],
    memories: list[MemoryInput],
    collection: CollectionArg = None,
) -> RememberResult:
    context = info.context
    new = [
        NewMemory(
            text=m.text, id=m.id, metadata=m.metadata, vector=m.vector, ttl_seconds=m.ttl_seconds
        )
        for m in memories
    ]
    ids = await _service(info).remember(
        context.principal.tenant, collection_name(context, collection), new
    )
    return RememberResult(ids=[strawberry.ID(str(i)) for i in ids])


@timed_resolver("Mutation", "forget")
async def forget(
    root: None,
    info: Info[RequestContext, Any],
    ids: list[strawberry.ID] | None = None,
    filter: Filter | None = None,
    collection: CollectionArg = None,
) -> DeleteResult:
    context = info.context
    deleted = await _service(info).forget(
        context.principal.tenant,
        collection_name(context, collection),
        ids=ids,
        filter=to_filter(filter) if filter is not None else None,
    )
    return DeleteResult(deleted=deleted)


RECALL_DESCRIPTION = (
    "The memories most relevant to `text`, `vector` or both (at least one is required), best "
    "first. Expired memories are never returned. `filter` addresses metadata keys. `limit` is "
    "1..100. `recency` boosts newer memories. `diversity` (0..1, default 0) trades relevance "
    "for memories unlike each other (maximal marginal relevance over dense vectors). A request "
    "the server cannot serve as asked (SEMANTIC or diversity with no dense vector for the "
    "request and no embedder) is BAD_USER_INPUT with a message that says why."
)
MEMORIES_DESCRIPTION = "Memories by id, in the order asked; missing and expired ids are left out."
REMEMBER_DESCRIPTION = (
    "Store memories. The batch (1..MAX_UPSERT_POINTS) is validated first and written all or "
    "nothing (BAD_USER_INPUT for any invalid memory). When the call returns, the memories are "
    "durable (they survive kill -9) and recallable."
)
FORGET_DESCRIPTION = (
    "Forget memories by `ids` or by a metadata `filter` (exactly one of them). Returns how "
    "many existed."
)
