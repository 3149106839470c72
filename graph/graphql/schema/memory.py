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
from graph.graphql.schema.inputs import PAYLOAD_LIMITS, Filter, to_filter
from graph.graphql.schema.resolvers import (
    IDS_RULE,
    LIMIT_RULE,
    STORE_ERRORS,
    CollectionArg,
    collection_name,
    root_description,
    setting,
)
from graph.graphql.schema.scalars import JSON, DateTime, Vector
from graph.graphql.schema.types import ID_DESCRIPTION, DeleteResult
from graph.memory.service import MAX_TTL_SECONDS, MemoryService, Mode, NewMemory, Recall
from graph.store.models import Recency
from graph.telemetry.metrics import timed_resolver

MEMORY_ERRORS = (
    "EMBEDDER_UNAVAILABLE (EMBEDDER is set and failed or took over "
    f"EMBED_TIMEOUT_SECONDS), NOT_FOUND (no such collection), {STORE_ERRORS}"
)
TEXT_RULE = (
    f"not empty or only whitespace, at most {setting('MAX_MEMORY_TEXT_BYTES')} bytes as JSON "
    "(UTF-8, with quotes, backslashes and control characters escaped; else BAD_USER_INPUT)"
)


@strawberry.type(
    description=(
        "A memory: a text an agent remembers, with optional metadata. Keyword recall works "
        "on its text with no embedding model; semantic recall uses its dense vector, given "
        "by the client or computed by the configured embedder."
    )
)
class Memory:
    id: strawberry.ID = strawberry.field(description=ID_DESCRIPTION)
    text: str = strawberry.field(description="The text as remembered.")
    metadata: JSON | None = strawberry.field(
        description="The metadata object as remembered; null when it has none."
    )
    created_at: DateTime = strawberry.field(
        description=(
            "When the memory was first remembered; kept when a remember with the same id "
            "replaces it."
        )
    )
    updated_at: DateTime = strawberry.field(
        description="Equal to createdAt until a remember with the same id replaces the memory."
    )
    expires_at: DateTime | None = strawberry.field(
        description="When the memory will be forgotten; null when it does not expire."
    )


@strawberry.type(description="A memory as `recall` returns it, with its score.")
class ScoredMemory(Memory):
    score: float = strawberry.field(
        description=(
            "Higher is better; comparable within one recall only (BM25, cosine, fusion and "
            "recency blends have no common scale)."
        )
    )


@strawberry.input(description="A memory to remember.")
class MemoryInput:
    text: str = strawberry.field(
        description=(f"UTF-8 text, {TEXT_RULE}. Its words are indexed for keyword (BM25) recall.")
    )
    id: strawberry.ID | None = strawberry.field(
        default=None,
        description=(
            "Optional: an unsigned integer or a UUID (else BAD_USER_INPUT); the server "
            "assigns a UUID when omitted. "
            "Remembering an existing id replaces that memory (text, metadata, vector, "
            "expiry); its createdAt is kept and its updatedAt is now."
        ),
    )
    metadata: JSON | None = strawberry.field(
        default=None,
        description=(
            "A JSON object; recall filters address its keys. Anything but an object is "
            f"BAD_USER_INPUT; {PAYLOAD_LIMITS}. Omitted or null: none."
        ),
    )
    vector: Vector | None = strawberry.field(
        default=None,
        description=(
            "Optional dense vector of the collection's dimension (else BAD_USER_INPUT). When "
            "omitted, the configured "
            "embedder computes it from the text; with no embedder the memory is recalled by "
            "its keywords only."
        ),
    )
    ttl_seconds: int | None = strawberry.field(
        default=None,
        description=(
            f"Forget the memory this many seconds from now (1 or more): 1..{MAX_TTL_SECONDS} "
            "(ten years), else BAD_USER_INPUT. From then on recall, memories and the MCP "
            "tools never return it, and it is deleted within TTL_SWEEP_SECONDS (until then "
            "the point API still sees it). Omitted or null: it never expires (a "
            "remember of the same id without it removes an expiry)."
        ),
    )


@strawberry.type(description="What `remember` did.")
class RememberResult:
    ids: list[strawberry.ID] = strawberry.field(
        description="The ids of the memories, in input order, the ones the server assigned too."
    )


@strawberry.enum(description="How recall ranks memories.")
class RecallMode(Enum):
    AUTO = strawberry.enum_value(
        "AUTO",
        description=(
            "HYBRID when the request has a dense vector (given, or embedded from the text) "
            "and text, SEMANTIC with a vector only, KEYWORD with text only, and KEYWORD "
            "while the embedder fails for text without a vector."
        ),
    )
    HYBRID = strawberry.enum_value(
        "HYBRID", description="Keyword (BM25) and dense rankings fused (reciprocal rank fusion)."
    )
    KEYWORD = strawberry.enum_value(
        "KEYWORD", description="BM25 over the memories' text only: works with no embedding model."
    )
    SEMANTIC = strawberry.enum_value("SEMANTIC", description="Nearest dense vectors only.")


@strawberry.input(
    description=(
        "Blends relevance with age: the best 100 candidates are ranked by (1 - weight) * "
        "relevance + weight * 0.5^(age / halfLifeSeconds), relevance being the reciprocal "
        "rank 2 / (2 + rank), averaged over the rankings fused."
    )
)
class RecencyInput:
    half_life_seconds: float = strawberry.field(
        description=(
            "A memory this many seconds old gets half the recency boost of a new one. From "
            "0.001 to 1e12, else BAD_USER_INPUT."
        )
    )
    weight: float = strawberry.field(
        default=0.3,
        description=(
            "0..1: how much recency weighs against relevance. 0 ignores age; 1 ranks the "
            "relevant memories by age alone. Default 0.3; outside 0..1 is BAD_USER_INPUT."
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
    text: Annotated[
        str | None,
        strawberry.argument(
            description=(
                f"What to recall, in words: {TEXT_RULE}. Ranked against the memories' text "
                "by BM25 and, with EMBEDDER set and no `vector`, embedded for the dense "
                "ranking. Omitted or null: no keyword ranking."
            )
        ),
    ] = None,
    vector: Annotated[
        Vector | None,
        strawberry.argument(
            description=(
                "A dense query vector of the collection's dimension (else BAD_USER_INPUT); "
                "it takes the place of the embedded text. Omitted or null: the text's "
                "embedding when EMBEDDER is set, else no dense ranking."
            )
        ),
    ] = None,
    filter: Annotated[
        Filter | None,
        strawberry.argument(
            description=(
                "Only memories whose metadata matches (keys address metadata keys); omitted "
                "or null: every memory. Expired memories are left out whatever the filter."
            )
        ),
    ] = None,
    limit: Annotated[
        int, strawberry.argument(description=f"How many memories at most: {LIMIT_RULE}")
    ] = 10,
    mode: Annotated[
        RecallMode,
        strawberry.argument(description="How to rank; default AUTO (see RecallMode)."),
    ] = RecallMode.AUTO,
    recency: Annotated[
        RecencyInput | None,
        strawberry.argument(
            description="Boost newer memories (see RecencyInput); omitted or null: no boost."
        ),
    ] = None,
    diversity: Annotated[
        float | None,
        strawberry.argument(
            description=(
                "0..1 (else BAD_USER_INPUT): re-rank the best 100 candidates by maximal "
                "marginal relevance over their dense vectors; 0 is pure relevance, 1 pure "
                "novelty. Above 0 it needs a dense vector (`vector`, or EMBEDDER with "
                "`text`), and memories without a dense vector drop out. Omitted, null or 0: "
                "no re-ranking."
            )
        ),
    ] = None,
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
    ids: Annotated[
        list[strawberry.ID],
        strawberry.argument(description=f"{IDS_RULE} An id given twice comes back once."),
    ],
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
    memories: Annotated[
        list[MemoryInput],
        strawberry.argument(
            description=(
                f"1 to {setting('MAX_UPSERT_POINTS')} memories (else BAD_USER_INPUT), each "
                "id at most once."
            )
        ),
    ],
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
    ids: Annotated[
        list[strawberry.ID] | None,
        strawberry.argument(
            description=(
                f"{IDS_RULE} Deletes whatever points have these ids, memories or not; an id "
                "given twice counts once."
            )
        ),
    ] = None,
    filter: Annotated[
        Filter | None,
        strawberry.argument(
            description=(
                "Forget the memories whose metadata matches: at least one condition (else "
                "BAD_USER_INPUT). Points that are not memories are kept."
            )
        ),
    ] = None,
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


RECALL_DESCRIPTION = root_description(
    "The memories most relevant to `text`, `vector` or both (at least one is required), best "
    "first. Expired memories are never returned. `filter` addresses metadata keys. `limit` is "
    "1..100. `recency` boosts newer memories. `diversity` (0..1, default 0) trades relevance "
    "for memories unlike each other (maximal marginal relevance over dense vectors). A request "
    "the server cannot serve as asked (SEMANTIC or diversity with no dense vector for the "
    "request and no embedder) is BAD_USER_INPUT with a message that says why.",
    "read",
    "BAD_USER_INPUT (neither text nor vector, a mode or diversity the request cannot serve, "
    f"arguments out of range, a bad filter), {MEMORY_ERRORS}",
)
MEMORIES_DESCRIPTION = root_description(
    "Memories by id, in the order asked; missing and expired ids are left out, and so are "
    "points that are not memories.",
    "read",
    f"BAD_USER_INPUT (bad or too many ids), NOT_FOUND (no such collection), {STORE_ERRORS}",
)
REMEMBER_DESCRIPTION = root_description(
    "Store memories. The batch (1..MAX_UPSERT_POINTS) is validated first and written all or "
    "nothing (BAD_USER_INPUT for any invalid memory). When the call returns, the memories are "
    "durable (they survive kill -9) and recallable. Memories without a vector are embedded "
    "first when EMBEDDER is set.",
    "write",
    "BAD_USER_INPUT (the batch's size, a blank or too long text, metadata not an object or "
    "over the payload limits, a bad or repeated id, a vector of another dimension, a "
    f"ttlSeconds out of range), {MEMORY_ERRORS}",
)
FORGET_DESCRIPTION = root_description(
    "Forget memories by `ids` or by a metadata `filter` (exactly one of them). Returns how "
    "many existed.",
    "write",
    "BAD_USER_INPUT (both or neither of ids and filter, bad or too many ids, an empty or bad "
    f"filter), NOT_FOUND (no such collection), {STORE_ERRORS}",
)
