"""Shared helpers for the root resolvers, and the words their descriptions share."""

from __future__ import annotations

from typing import Annotated, Any

import strawberry

from graph.errors import BadUserInput
from graph.graphql.schema.context import RequestContext
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


def root_description(what: str, scope: str | None, errors: str) -> str:
    """A root field's description: what it does, the scope it needs, the errors it returns
    besides the request's own (see the Query type)."""
    needs = f"Scope: {scope} (FORBIDDEN without it)." if scope else "Scope: none."
    return f"{what} {needs} Errors: {errors}."


def collection_name(context: RequestContext, collection: str | None) -> str:
    if collection is None:
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
