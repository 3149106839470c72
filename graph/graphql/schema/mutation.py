"""The root Mutation type."""

from __future__ import annotations

from typing import Any

import strawberry
from strawberry.types import Info

from graph.errors import BadUserInput
from graph.graphql.schema import backups, memory, types
from graph.graphql.schema.context import RequestContext
from graph.graphql.schema.inputs import Filter, PointInput, to_filter, to_ids, to_points
from graph.graphql.schema.query import CollectionArg, to_collection
from graph.graphql.schema.resolvers import check_id_count, collection_name
from graph.settings import Distance
from graph.store.models import validate_collection_name, validate_dimension
from graph.telemetry.metrics import timed_resolver


@strawberry.type
class Mutation:
    remember = strawberry.mutation(
        resolver=memory.remember, description=memory.REMEMBER_DESCRIPTION
    )
    forget = strawberry.mutation(resolver=memory.forget, description=memory.FORGET_DESCRIPTION)
    backup = strawberry.mutation(resolver=backups.backup, description=backups.BACKUP_DESCRIPTION)

    @strawberry.mutation(
        description=(
            "Insert or replace points by id. The whole batch is validated first: one invalid "
            "point (bad id, wrong dimension, non-object payload) rejects the batch with "
            "BAD_USER_INPUT and writes nothing. When the call returns, the points are durable "
            "and visible to `query`."
        )
    )
    @timed_resolver("Mutation", "upsert")
    async def upsert(
        self,
        info: Info[RequestContext, Any],
        points: list[PointInput],
        collection: CollectionArg = None,
    ) -> types.UpsertResult:
        context = info.context
        if not points:
            raise BadUserInput("points must not be empty")
        maximum = context.settings.limits.max_upsert_points
        if len(points) > maximum:
            raise BadUserInput(f"At most {maximum} points per upsert")
        name = collection_name(context, collection)
        upserted = await context.store.upsert(context.principal.tenant, name, to_points(points))
        return types.UpsertResult(upserted=upserted)

    @strawberry.mutation(
        description=(
            "Delete points by `ids` or by `filter` (exactly one of them; a filter needs at "
            "least one condition)."
        )
    )
    @timed_resolver("Mutation", "delete")
    async def delete(
        self,
        info: Info[RequestContext, Any],
        ids: list[strawberry.ID] | None = None,
        filter: Filter | None = None,
        collection: CollectionArg = None,
    ) -> types.DeleteResult:
        context = info.context
        if (ids is None) == (filter is None):
            raise BadUserInput("Give exactly one of ids or filter")
        name = collection_name(context, collection)
        if ids is not None:
            check_id_count(ids, context.settings.limits.max_ids_per_request)
            deleted = await context.store.delete_ids(context.principal.tenant, name, to_ids(ids))
        else:
            flt = to_filter(filter)
            if flt is None or not (flt.must or flt.should or flt.must_not):
                raise BadUserInput("A delete filter needs at least one condition")
            deleted = await context.store.delete_by_filter(context.principal.tenant, name, flt)
        return types.DeleteResult(deleted=deleted)

    @strawberry.mutation(description="Create an empty collection.")
    @timed_resolver("Mutation", "createCollection")
    async def create_collection(
        self,
        info: Info[RequestContext, Any],
        name: str,
        dimension: int,
        distance: types.Distance = types.Distance.COSINE,
    ) -> types.Collection:
        context = info.context
        created = await context.store.create_collection(
            context.principal.tenant,
            validate_collection_name(name),
            validate_dimension(dimension),
            Distance(distance.value),
        )
        return to_collection(created)

    @strawberry.mutation(
        description=(
            "Delete a collection and all its points. The default collection cannot be deleted."
        )
    )
    @timed_resolver("Mutation", "deleteCollection")
    async def delete_collection(self, info: Info[RequestContext, Any], name: str) -> bool:
        context = info.context
        if name == context.settings.store.collection:
            raise BadUserInput("The default collection cannot be deleted")
        await context.store.delete_collection(
            context.principal.tenant, validate_collection_name(name)
        )
        return True
