"""Shared helpers for the root resolvers."""

from __future__ import annotations

from typing import Any

from graph.errors import BadUserInput
from graph.graphql.schema.context import RequestContext
from graph.store.models import validate_collection_name

MAX_LIMIT = 100


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
