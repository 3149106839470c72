"""The root Query type: thin resolvers that call the store."""

from __future__ import annotations

from typing import Annotated, Any, cast

import strawberry
from strawberry.types import Info

from graph import __version__
from graph.errors import ApiError
from graph.graphql.schema import memory, types
from graph.graphql.schema.context import RequestContext
from graph.graphql.schema.inputs import Filter, to_filter, to_ids
from graph.graphql.schema.resolvers import (
    IDS_RULE,
    LIMIT_RULE,
    STORE_ERRORS,
    VECTORS_RULE,
    CollectionArg,
    check_id_count,
    check_limit,
    check_offset,
    collection_name,
    root_description,
    setting,
    take_vectors,
)
from graph.graphql.schema.scalars import Vector
from graph.store.models import CollectionInfo, normalize_point_id
from graph.telemetry.metrics import timed_resolver


def to_collection(info: CollectionInfo) -> types.Collection:
    return types.Collection(
        name=info.name,
        dimension=info.dimension,
        distance=types.Distance(info.distance.value),
        points_count=info.points_count,
    )


# Arguments the point fields share.
WithVector = Annotated[
    bool,
    strawberry.argument(
        description=(
            "Return each point's vector too (false: `vector` is null). Default false. "
            + VECTORS_RULE
        )
    ),
]
PointFilter = Annotated[
    Filter | None,
    strawberry.argument(
        description=(
            "Only points whose payload matches; omitted or null: every point. Memories are "
            "points too, their metadata being the payload."
        )
    ),
]


@strawberry.type(
    description=(
        "Reads. Besides the errors each field names, any request may fail as a whole, with "
        "nothing run: UNAUTHENTICATED (HTTP 401: credentials are configured and this one is "
        "missing or invalid), FORBIDDEN (HTTP 403: a root field needs a scope the credential "
        "lacks), RATE_LIMITED (HTTP 429: past RATE_LIMIT), PAYLOAD_TOO_LARGE (HTTP 413: over "
        "MAX_BODY_BYTES), BAD_REQUEST (not a GraphQL request the server takes), "
        "GRAPHQL_PARSE_FAILED (bad syntax, or over MAX_TOKENS tokens), "
        "GRAPHQL_VALIDATION_FAILED (unknown names, wrong types, or over MAX_QUERY_DEPTH, "
        "MAX_ALIASES, MAX_DIRECTIVES or 500 fields once fragments are expanded). "
        "INTERNAL_SERVER_ERROR is a bug; its message never carries details. At most 10 "
        "errors per response."
    )
)
class Query:
    recall = strawberry.field(resolver=memory.recall, description=memory.RECALL_DESCRIPTION)
    memories = strawberry.field(resolver=memory.memories, description=memory.MEMORIES_DESCRIPTION)

    @strawberry.field(
        description=root_description(
            "Liveness and readiness of the service and its vector store. Never raises an "
            "error because the store is down: it reports it in `status` instead.",
            None,
            "none of its own (the store's failure is `status` UNAVAILABLE)",
        )
    )
    @timed_resolver("Query", "health")
    async def health(self, info: Info[RequestContext, Any]) -> types.Health:
        context = info.context
        try:
            await context.store.ping()
            status = types.HealthStatus.OK
        except ApiError:
            status = types.HealthStatus.UNAVAILABLE
        if status is types.HealthStatus.OK and context.server.draining:
            status = types.HealthStatus.DEGRADED
        return types.Health(status=status, version=__version__, backend=context.store.backend)

    @strawberry.field(
        description=root_description(
            "Nearest neighbours of `vector` in `collection` (the default collection when "
            "omitted), best first. `limit` is 1..100 (other values are BAD_USER_INPUT), "
            "`offset` is 0 or more. Points scoring worse than `scoreThreshold` are left out "
            "(as in Qdrant: lower similarity for cosine and dot, larger distance for euclid). "
            "Only points with a vector take part (memories remembered without one do not).",
            "read",
            "BAD_USER_INPUT (a vector of another dimension than the collection's, `limit` or "
            "`offset` out of range, a non-finite `scoreThreshold`, a bad filter, more vectors "
            "than the operation has left with `withVector`), NOT_FOUND "
            f"(no such collection), {STORE_ERRORS}",
        )
    )
    @timed_resolver("Query", "query")
    async def query(
        self,
        info: Info[RequestContext, Any],
        vector: Annotated[
            Vector,
            strawberry.argument(
                description=(
                    "The query vector: as many numbers as the collection's dimension (else "
                    "BAD_USER_INPUT). Under cosine distance it is normalised first, so its "
                    "length does not matter."
                )
            ),
        ],
        limit: Annotated[
            int, strawberry.argument(description=f"How many points at most: {LIMIT_RULE}")
        ] = 10,
        offset: Annotated[
            int,
            strawberry.argument(
                description=(
                    "How many of the best points to skip first (paging): 0 or more, default 0; "
                    "negative is BAD_USER_INPUT. Past the last point the answer is empty."
                )
            ),
        ] = 0,
        filter: PointFilter = None,
        score_threshold: Annotated[
            float | None,
            strawberry.argument(
                description=(
                    "Leave out points scoring worse: below it for cosine (-1..1) and dot, "
                    "above it for euclid (a distance, 0 or more). Omitted or null: no "
                    "threshold; not finite: BAD_USER_INPUT."
                )
            ),
        ] = None,
        with_vector: WithVector = False,
        collection: CollectionArg = None,
    ) -> list[types.ScoredPoint]:
        context = info.context
        name = collection_name(context, collection)
        limit = check_limit(limit)
        offset = check_offset(offset)
        where = to_filter(filter)
        if with_vector:
            # The vectors returned have the query vector's length: the store refuses any
            # other than the collection's dimension, so no lookup is needed.
            await take_vectors(context, name, limit, len(vector))
        hits = await context.store.query(
            context.principal.tenant,
            name,
            vector,
            limit=limit,
            offset=offset,
            filter=where,
            score_threshold=score_threshold,
            with_vector=with_vector,
        )
        return cast(list[types.ScoredPoint], hits)

    @strawberry.field(
        description=root_description(
            "Points by id, in the order asked; missing ids are left out.",
            "read",
            f"BAD_USER_INPUT (no ids, more than {setting('MAX_IDS_PER_REQUEST')}, an id "
            f"that is not an unsigned 64-bit integer or a UUID, more vectors than the "
            f"operation has left with `withVector`), NOT_FOUND (no such "
            f"collection), {STORE_ERRORS}",
        )
    )
    @timed_resolver("Query", "points")
    async def points(
        self,
        info: Info[RequestContext, Any],
        ids: Annotated[
            list[strawberry.ID],
            strawberry.argument(description=IDS_RULE),
        ],
        with_vector: WithVector = False,
        collection: CollectionArg = None,
    ) -> list[types.Point]:
        context = info.context
        check_id_count(ids, context.settings.limits.max_ids_per_request)
        name = collection_name(context, collection)
        wanted = to_ids(ids)
        if with_vector:
            await take_vectors(context, name, len(ids))
        records = await context.store.retrieve(
            context.principal.tenant, name, wanted, with_vector=with_vector
        )
        return cast(list[types.Point], records)

    @strawberry.field(
        description=root_description(
            "How many points match `filter` (all points when omitted), memories included; exact.",
            "read",
            f"BAD_USER_INPUT (a bad filter), NOT_FOUND (no such collection), {STORE_ERRORS}",
        )
    )
    @timed_resolver("Query", "count")
    async def count(
        self,
        info: Info[RequestContext, Any],
        filter: PointFilter = None,
        collection: CollectionArg = None,
    ) -> int:
        context = info.context
        return await context.store.count(
            context.principal.tenant, collection_name(context, collection), to_filter(filter)
        )

    @strawberry.field(
        description=root_description(
            "Pages through the points matching `filter`. The order is that of the ids the "
            "points are stored under (derived from the tenant, the collection and the id), "
            "not the order of the client's ids nor of writing; it is stable while the "
            "collection does not change. Pass the returned `nextCursor` as `cursor` for the "
            "next page; points written or deleted meanwhile may or may not be seen.",
            "read",
            "BAD_USER_INPUT (`limit` out of range, a cursor that is not an id, a bad filter, "
            "more vectors than the operation has left with `withVector`), "
            f"NOT_FOUND (no such collection), {STORE_ERRORS}",
        )
    )
    @timed_resolver("Query", "scroll")
    async def scroll(
        self,
        info: Info[RequestContext, Any],
        limit: Annotated[
            int, strawberry.argument(description=f"Points per page at most: {LIMIT_RULE}")
        ] = 10,
        cursor: Annotated[
            strawberry.ID | None,
            strawberry.argument(
                description=(
                    "Where the page starts: the `nextCursor` of the previous page, as given "
                    "(an opaque id). Omitted or null: the first page."
                )
            ),
        ] = None,
        filter: PointFilter = None,
        with_vector: WithVector = False,
        collection: CollectionArg = None,
    ) -> types.ScrollResult:
        context = info.context
        name = collection_name(context, collection)
        limit = check_limit(limit)
        start = None if cursor is None else normalize_point_id(cursor)
        where = to_filter(filter)
        if with_vector:
            await take_vectors(context, name, limit)
        page = await context.store.scroll(
            context.principal.tenant,
            name,
            limit=limit,
            cursor=start,
            filter=where,
            with_vector=with_vector,
        )
        next_cursor = None if page.next_cursor is None else strawberry.ID(str(page.next_cursor))
        return types.ScrollResult(
            points=cast(list[types.Point], page.points), next_cursor=next_cursor
        )

    @strawberry.field(
        description=root_description(
            "Every collection of the tenant, sorted by name (the default one included once it "
            "exists).",
            "read",
            STORE_ERRORS,
        )
    )
    @timed_resolver("Query", "collections")
    async def collections(self, info: Info[RequestContext, Any]) -> list[types.Collection]:
        context = info.context
        infos = await context.store.list_collections(context.principal.tenant)
        return [to_collection(c) for c in infos]
