"""Bounds on the lists in a request's variables, checked before they are coerced.

graphql-core coerces every input object of a variable in pure Python (~30 µs each) while
the event loop waits: a 4 MiB body of 100,000 points used to take 3 s to be refused for
exceeding MAX_UPSERT_POINTS, and stalled every other request meanwhile. Walking the raw
variables along their declared types visits each list once (and the items only of lists
whose items hold lists), so oversized requests are refused at once, with the message
the resolvers would give. Inline literals need no such check: MAX_TOKENS bounds them.
"""

from __future__ import annotations

from typing import Any

from graphql import (
    GraphQLInputObjectType,
    GraphQLInputType,
    GraphQLList,
    GraphQLNonNull,
    GraphQLSchema,
    OperationDefinitionNode,
    get_named_type,
    type_from_ast,
)

from graph.errors import BadUserInput
from graph.settings import Settings
from graph.store.models import (
    FILTER_TOO_DEEP,
    MAX_FILTER_CONDITIONS,
    MAX_FILTER_DEPTH,
    MAX_MATCH_VALUES,
    TOO_MANY_CONDITIONS,
    TOO_MANY_IN_A_LIST,
    TOO_MANY_MATCH_VALUES,
)

# Lists with no limit of their own (match.any, match.except): each, and all of them in one
# variable (a filter) together, refused before GraphQL coerces them, value by value.
MAX_LIST_ITEMS = MAX_MATCH_VALUES
# Filter -> [Condition] -> Condition -> Filter: three levels of input per filter level.
MAX_INPUT_DEPTH = 3 * MAX_FILTER_DEPTH + 2


def list_limits(settings: Settings) -> dict[str, tuple[int, str]]:
    """Item type name -> (limit, message)."""
    return {
        "PointInput": (
            settings.limits.max_upsert_points,
            f"At most {settings.limits.max_upsert_points} points per upsert",
        ),
        "MemoryInput": (
            settings.limits.max_upsert_points,
            f"remember takes 1 to {settings.limits.max_upsert_points} memories",
        ),
        "ID": (
            settings.limits.max_ids_per_request,
            f"At most {settings.limits.max_ids_per_request} ids per request",
        ),
        "Condition": (
            MAX_FILTER_CONDITIONS,
            TOO_MANY_CONDITIONS,
        ),
    }


def check_variable_sizes(
    schema: GraphQLSchema,
    operation: OperationDefinitionNode,
    variables: dict[str, Any] | None,
    limits: dict[str, tuple[int, str]],
) -> None:
    """BadUserInput when a list in the variables is over its limit."""
    if not variables:
        return
    for definition in operation.variable_definitions or ():
        value = variables.get(definition.variable.name.value)
        if isinstance(value, list | dict):
            type_ = type_from_ast(schema, definition.type)
            if type_ is not None:
                _walk(type_, value, limits, 0, [0])  # type: ignore[arg-type]


def _nullable(type_: GraphQLInputType) -> GraphQLInputType:
    return type_.of_type if isinstance(type_, GraphQLNonNull) else type_


def _holds_lists(type_: GraphQLInputType) -> bool:
    """Whether a value of this type can hold a list to check."""
    type_ = _nullable(type_)
    if isinstance(type_, GraphQLList):
        return True
    return isinstance(type_, GraphQLInputObjectType) and any(
        isinstance(_nullable(f.type), GraphQLList | GraphQLInputObjectType)
        for f in type_.fields.values()
    )


def _walk(
    type_: GraphQLInputType,
    value: Any,
    limits: dict[str, tuple[int, str]],
    depth: int,
    unlimited: list[int],
) -> None:
    """unlimited: [items so far in this variable's lists with no limit of their own]."""
    if depth > MAX_INPUT_DEPTH:
        raise BadUserInput(FILTER_TOO_DEEP)
    type_ = _nullable(type_)
    if isinstance(type_, GraphQLList):
        if not isinstance(value, list):
            return
        item = type_.of_type
        own = limits.get(get_named_type(item).name)
        if own is None:
            if len(value) > MAX_LIST_ITEMS:
                raise BadUserInput(TOO_MANY_IN_A_LIST)
            unlimited[0] += len(value)
            if unlimited[0] > MAX_LIST_ITEMS:
                raise BadUserInput(TOO_MANY_MATCH_VALUES)
        elif len(value) > own[0]:
            raise BadUserInput(own[1])
        if _holds_lists(item):
            for element in value:
                _walk(item, element, limits, depth + 1, unlimited)
    elif isinstance(type_, GraphQLInputObjectType) and isinstance(value, dict):
        for name, field in type_.fields.items():
            if name in value and isinstance(value[name], list | dict):
                _walk(field.type, value[name], limits, depth + 1, unlimited)
