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
    check_id_count,
    check_limit,
    check_offset,
    collection_name,
)
from graph.graphql.schema.scalars import Vector
from graph.store.models import CollectionInfo, normalize_point_id
from graph.telemetry.metrics import timed_resolver

CollectionArg = Annotated[
    str | None,
    strawberry.argument(description="The collection; the default collection when omitted."),
]


def to_collection(info: CollectionInfo) -> types.Collection:
    return types.Collection(
        name=info.name,
        dimension=info.dimension,
        distance=types.Distance(info.distance.value),
        points_count=info.points_count,
    )


@strawberry.type
class Query:
    recall = strawberry.field(resolver=memory.recall, description=memory.RECALL_DESCRIPTION)
    memories = strawberry.field(resolver=memory.memories, description=memory.MEMORIES_DESCRIPTION)

    @strawberry.field(
        description=(
            "Liveness and readiness of the service and its vector store. Never raises an "
            "error because the store is down: it reports it in `status` instead."
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
        description=(
            "Nearest neighbours of `vector` in `collection` (the default collection when "
            "omitted), best first. `limit` is 1..100 (other values are BAD_USER_INPUT), "
            "`offset` is 0 or more. Points scoring worse than `scoreThreshold` are left out "
            "(as in Qdrant: lower similarity for cosine and dot, larger distance for euclid)."
        )
    )
    @timed_resolver("Query", "query")
    async def query(
        self,
        info: Info[RequestContext, Any],
        vector: Vector,
        limit: int = 10,
        offset: int = 0,
        filter: Filter | None = None,
        score_threshold: float | None = None,
        with_vector: bool = False,
        collection: CollectionArg = None,
    ) -> list[types.ScoredPoint]:
        context = info.context
        hits = await context.store.query(
            context.principal.tenant,
            collection_name(context, collection),
            vector,
            limit=check_limit(limit),
            offset=check_offset(offset),
            filter=to_filter(filter),
            score_threshold=score_threshold,
            with_vector=with_vector,
        )
        return cast(list[types.ScoredPoint], hits)

    @strawberry.field(description="Points by id, in the order asked; missing ids are left out.")
    @timed_resolver("Query", "points")
    async def points(
        self,
        info: Info[RequestContext, Any],
        ids: list[strawberry.ID],
        with_vector: bool = False,
        collection: CollectionArg = None,
    ) -> list[types.Point]:
        context = info.context
        check_id_count(ids, context.settings.limits.max_ids_per_request)
        records = await context.store.retrieve(
            context.principal.tenant,
            collection_name(context, collection),
            to_ids(ids),
            with_vector=with_vector,
        )
        return cast(list[types.Point], records)

    @strawberry.field(description="How many points match `filter` (all points when omitted).")
    @timed_resolver("Query", "count")
    async def count(
        self,
        info: Info[RequestContext, Any],
        filter: Filter | None = None,
        collection: CollectionArg = None,
    ) -> int:
        context = info.context
        return await context.store.count(
            context.principal.tenant, collection_name(context, collection), to_filter(filter)
        )

    @strawberry.field(
        description=(
            "Pages through the points matching `filter` in ascending id order. Pass the "
            "returned `nextCursor` as `cursor` for the next page."
        )
    )
    @timed_resolver("Query", "scroll")
    async def scroll(
        self,
        info: Info[RequestContext, Any],
        limit: int = 10,
        cursor: strawberry.ID | None = None,
        filter: Filter | None = None,
        with_vector: bool = False,
        collection: CollectionArg = None,
    ) -> types.ScrollResult:
        context = info.context
        page = await context.store.scroll(
            context.principal.tenant,
            collection_name(context, collection),
            limit=check_limit(limit),
            cursor=None if cursor is None else normalize_point_id(cursor),
            filter=to_filter(filter),
            with_vector=with_vector,
        )
        next_cursor = None if page.next_cursor is None else strawberry.ID(str(page.next_cursor))
        return types.ScrollResult(
            points=cast(list[types.Point], page.points), next_cursor=next_cursor
        )

    @strawberry.field(description="Every collection, sorted by name.")
    @timed_resolver("Query", "collections")
    async def collections(self, info: Info[RequestContext, Any]) -> list[types.Collection]:
        context = info.context
        infos = await context.store.list_collections(context.principal.tenant)
        return [to_collection(c) for c in infos]
