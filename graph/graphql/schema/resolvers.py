"""Shared helpers for the root resolvers, and the words their descriptions share."""

from __future__ import annotations

from typing import Annotated, Any

import strawberry

from graph.errors import BadUserInput
from graph.graphql.schema.context import MAX_VECTOR_VALUES_PER_REQUEST, RequestContext
from graph.settings import Settings
from graph.store.models import validate_collection_name

MAX_LIMIT = 100


def setting(name: str) -> str:
    """A setting as a description names it: `MAX_IDS_PER_REQUEST (default 1000)`."""
    [(default,)] = [(d,) for n, d, _ in Settings.described() if n == name]
    return f"{name} (default {default})"


CollectionArg = Annotated[
    str | None,
    strawberry.argument(
        description=(
            "The collection, by name (1-63 letters, digits, '_' or '-', starting with a "
            "letter or digit; other names are BAD_USER_INPUT). Omitted or null: the default "
            "collection, COLLECTION, made for each tenant on its first request. A name the "
            "tenant has no collection of is NOT_FOUND."
        )
    ),
]

# The errors any field that calls the store may return, besides its own.
STORE_ERRORS = (
    "STORE_UNAVAILABLE (the store cannot be reached or failed; embedded, also any write "
    "while DATA_DIR has less than MIN_FREE_DISK_MB free), STORE_TIMEOUT (Qdrant server "
    "only: no answer within STORE_TIMEOUT_SECONDS), STORE_OVERLOADED (Qdrant server only: "
    "too many calls waiting; retry later)"
)
IDS_RULE = (
    f"1 to {setting('MAX_IDS_PER_REQUEST')} ids, each an unsigned 64-bit integer "
    '(as 42 or "42") or a UUID (else BAD_USER_INPUT); they count towards '
    "MAX_POINTS_PER_REQUEST."
)
LIMIT_RULE = (
    f"1..{MAX_LIMIT}, default 10; other values are BAD_USER_INPUT. The `limit`s and `ids` of "
    f"all root fields of one operation add up to at most {setting('MAX_POINTS_PER_REQUEST')}, "
    "else BAD_USER_INPUT before anything runs."
)


VECTORS_RULE = (
    f"The vectors all fields of one operation return hold at most "
    f"{MAX_VECTOR_VALUES_PER_REQUEST:,} numbers together (1,000 vectors of 1,536 "
    "dimensions; fewer past that dimension): a field asking for more than is left is "
    "BAD_USER_INPUT before it runs, counting its `limit` (or its number of `ids`) times "
    "the collection's dimension."
)


def root_description(what: str, scope: str | None, errors: str) -> str:
    """A root field's description: what it does, the scope it needs, the errors it returns
    besides the request's own (see the Query type)."""
    needs = f"Scope: {scope} (FORBIDDEN without it)." if scope else "Scope: none."
    return f"{what} {needs} Errors: {errors}."


def collection_name(context: RequestContext, collection: str | None) -> str:
    if collection is None:
        if context.default_problem is not None:
            raise context.default_problem
        return context.settings.store.collection
    return validate_collection_name(collection)


def check_limit(limit: int) -> int:
    if not 1 <= limit <= MAX_LIMIT:
        raise BadUserInput(f"limit must be between 1 and {MAX_LIMIT}")
    return limit


def check_offset(offset: int) -> int:
    if offset < 0:
        raise BadUserInput("offset must be 0 or more")
    return offset


def check_id_count(ids: list[Any], maximum: int) -> None:
    if not ids:
        raise BadUserInput("ids must not be empty")
    if len(ids) > maximum:
        raise BadUserInput(f"At most {maximum} ids per request")


async def take_vectors(
    context: RequestContext, collection: str, asked: int, dimension: int | None = None
) -> None:
    """Before a field fetches `asked` points with their vectors: take asked times dimension
    values from the request's budget (MAX_VECTOR_VALUES_PER_REQUEST), or refuse the field
    with BadUserInput. `dimension` None: the collection's, looked up once per request
    (NotFound when there is no such collection, as the field itself would say)."""
    budget = context.vectors
    async with budget.lock():
        if dimension is None:
            dimension = budget.dimensions.get(collection)
            if dimension is None:
                dimension = await context.store.dimension(context.principal.tenant, collection)
                budget.dimensions[collection] = dimension
        values = asked * dimension
        if values > budget.left:
            raise BadUserInput(
                f"An operation may return at most {MAX_VECTOR_VALUES_PER_REQUEST} vector "
                f"values (withVector: true) over all its fields; this field asks for {asked} "
                f"vectors of {dimension} dimensions ({values} values) and {budget.left} are "
                "left"
            )
        budget.left -= values
