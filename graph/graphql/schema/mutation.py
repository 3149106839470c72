"""The root Mutation type."""

from __future__ import annotations

from typing import Annotated, Any

import strawberry
from strawberry.types import Info

from graph.errors import BadUserInput
from graph.graphql.schema import backups, memory, types
from graph.graphql.schema.context import RequestContext
from graph.graphql.schema.inputs import Filter, PointInput, to_filter, to_ids, to_points
from graph.graphql.schema.query import to_collection
from graph.graphql.schema.resolvers import (
    IDS_RULE,
    STORE_ERRORS,
    CollectionArg,
    check_id_count,
    collection_name,
    root_description,
    setting,
)
from graph.settings import Distance
from graph.store.models import MAX_DIMENSION, validate_collection_name, validate_dimension
from graph.telemetry.metrics import timed_resolver

NAME_RULE = (
    "1-63 letters, digits, '_' or '-', starting with a letter or digit (else BAD_USER_INPUT)"
)


@strawberry.type(
    description=(
        "Writes. Each field may fail as the Query type says; a write that fails writes "
        "nothing. When a field returns, what it wrote is durable."
    )
)
class Mutation:
    remember = strawberry.mutation(
        resolver=memory.remember, description=memory.REMEMBER_DESCRIPTION
    )
    forget = strawberry.mutation(resolver=memory.forget, description=memory.FORGET_DESCRIPTION)
    backup = strawberry.mutation(resolver=backups.backup, description=backups.BACKUP_DESCRIPTION)

    @strawberry.mutation(
        description=root_description(
            "Insert or replace points by id. The whole batch is validated first: one invalid "
            "point (bad id, wrong dimension, non-object payload) rejects the batch with "
            "BAD_USER_INPUT and writes nothing. When the call returns, the points are durable "
            "and visible to `query`.",
            "write",
            "BAD_USER_INPUT (the batch's size, a bad or repeated id, a vector of another "
            "dimension, a payload that is not an object or over its limits), NOT_FOUND (no "
            f"such collection), {STORE_ERRORS}",
        )
    )
    @timed_resolver("Mutation", "upsert")
    async def upsert(
        self,
        info: Info[RequestContext, Any],
        points: Annotated[
            list[PointInput],
            strawberry.argument(
                description=(
                    f"1 to {setting('MAX_UPSERT_POINTS')} points (else BAD_USER_INPUT), each "
                    "id at most once."
                )
            ),
        ],
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
        description=root_description(
            "Delete points by `ids` or by `filter` (exactly one of them; a filter needs at "
            "least one condition). Memories are points too: both kinds are deleted.",
            "write",
            "BAD_USER_INPUT (both or neither of ids and filter, bad or too many ids, an empty "
            f"or bad filter), NOT_FOUND (no such collection), {STORE_ERRORS}",
        )
    )
    @timed_resolver("Mutation", "delete")
    async def delete(
        self,
        info: Info[RequestContext, Any],
        ids: Annotated[
            list[strawberry.ID] | None,
            strawberry.argument(description=f"{IDS_RULE} An id given twice counts once."),
        ] = None,
        filter: Annotated[
            Filter | None,
            strawberry.argument(
                description=(
                    "Delete every point whose payload matches: at least one condition (else "
                    "BAD_USER_INPUT)."
                )
            ),
        ] = None,
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

    @strawberry.mutation(
        description=root_description(
            "Create an empty collection of the tenant. Collections of one vector shape "
            "(dimension and distance) share storage; at most MAX_VECTOR_SHAPES shapes are in "
            "use at once, over all tenants.",
            "admin",
            "BAD_USER_INPUT (a bad name or dimension, a new shape past MAX_VECTOR_SHAPES), "
            f"ALREADY_EXISTS (the tenant has a collection of that name), {STORE_ERRORS}",
        )
    )
    @timed_resolver("Mutation", "createCollection")
    async def create_collection(
        self,
        info: Info[RequestContext, Any],
        name: Annotated[
            str, strawberry.argument(description=f"The new collection's name: {NAME_RULE}.")
        ],
        dimension: Annotated[
            int,
            strawberry.argument(
                description=(
                    f"How many numbers each vector has: 1..{MAX_DIMENSION} (else BAD_USER_INPUT)."
                )
            ),
        ],
        distance: Annotated[
            types.Distance,
            strawberry.argument(description="How vectors are compared; default COSINE."),
        ] = types.Distance.COSINE,
    ) -> types.Collection:
        context = info.context
        created = await context.store.create_collection(
            context.principal.tenant,
            validate_collection_name(name),
            validate_dimension(dimension),
            Distance(str(distance.value)),
        )
        return to_collection(created)

    @strawberry.mutation(
        description=root_description(
            "Delete a collection and all its points, memories included; returns true. The "
            "default collection cannot be deleted.",
            "admin",
            "BAD_USER_INPUT (a bad name, or the default collection's), NOT_FOUND (the tenant "
            f"has no collection of that name), {STORE_ERRORS}",
        )
    )
    @timed_resolver("Mutation", "deleteCollection")
    async def delete_collection(
        self,
        info: Info[RequestContext, Any],
        name: Annotated[
            str,
            strawberry.argument(description=f"The collection to delete: {NAME_RULE}."),
        ],
    ) -> bool:
        context = info.context
        if name == context.settings.store.collection:
            raise BadUserInput("The default collection cannot be deleted")
        await context.store.delete_collection(
            context.principal.tenant, validate_collection_name(name)
        )
        return True
