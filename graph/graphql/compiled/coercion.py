"""Variable coercion, compiled, for the big variables: lists of flat input objects.

graphql-core coerces a variable of type `[PointInput!]!` value by value, a generic
step per list item, per field and per scalar, after walking the whole value once more
to check its depth: for an upsert of 500 points that costs about as much as the
engine's write. A variable whose type is a list of input objects with scalar fields
only is compiled here into one loop. It handles the valid values only: at the first
thing it is not sure of (a wrong type, a missing or unknown field, a scalar that
refuses its value) it gives up, and the caller runs graphql-core's coercion instead,
so every error keeps graphql-core's exact wording and path.

A non-null scalar variable (a query's `Vector!` and `Int!`) is compiled too: one
parse, the same give-up rule, and no pass through graphql-core's generic coercion.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from graphql import (
    GraphQLID,
    GraphQLInputObjectType,
    GraphQLInputType,
    GraphQLInt,
    GraphQLList,
    GraphQLNonNull,
    GraphQLScalarType,
    Undefined,
    specified_scalar_types,
)

# What a compiled coercion returns when it leaves the value to graphql-core.
GIVE_UP: Any = Undefined
Coerce = Callable[[Any], Any]


class _GiveUp(Exception):
    pass


def compile_coercion(type_: GraphQLInputType) -> Coerce | None:
    """A coercion for `[Input!]` and `[Input!]!` where Input has scalar fields only, or
    None for any other type (graphql-core's coercion is then used as it is)."""
    if isinstance(type_, GraphQLNonNull):
        type_ = type_.of_type
        if isinstance(type_, GraphQLScalarType):
            return _non_null_scalar(type_)
    if not isinstance(type_, GraphQLList):
        return None
    item_type = type_.of_type
    if not isinstance(item_type, GraphQLNonNull):
        return None
    input_object = item_type.of_type
    if not isinstance(input_object, GraphQLInputObjectType) or input_object.is_one_of:
        return None
    fields: list[tuple[str, Coerce, bool, Any]] = []
    for name, field in input_object.fields.items():
        field_type = field.type
        required = isinstance(field_type, GraphQLNonNull)
        scalar = field_type.of_type if required else field_type
        if not isinstance(scalar, GraphQLScalarType):
            return None
        coerce = _scalar(scalar)
        if coerce is None:
            return None
        fields.append((field.out_name or name, coerce, required, field.default_value))
    names = frozenset(input_object.fields)

    def coerce_item(item: Any) -> dict[str, Any]:
        if type(item) is not dict or not item.keys() <= names:
            raise _GiveUp
        result: dict[str, Any] = {}
        for name, coerce, required, default in fields:
            value = item.get(name, Undefined)
            if value is Undefined:
                if default is not Undefined:
                    result[name] = default
                elif required:
                    raise _GiveUp
            elif value is None:
                if required:
                    raise _GiveUp
                result[name] = None
            else:
                result[name] = coerce(value)
        return result

    def coerce_list(value: Any) -> Any:
        if type(value) is not list:
            return GIVE_UP  # a single item (graphql-core wraps it in a list), or an error
        try:
            return [coerce_item(item) for item in value]
        except _GiveUp:
            return GIVE_UP

    return coerce_list


def _scalar(scalar: GraphQLScalarType) -> Coerce | None:
    if scalar is GraphQLID:
        return _coerce_id
    if scalar.name in specified_scalar_types:
        return None  # String, Int, Float, Boolean: rare in big lists; not worth a copy
    parse_value = scalar.parse_value

    def coerce(value: Any) -> Any:
        try:
            parsed = parse_value(value)
        except Exception:
            raise _GiveUp from None
        if parsed is Undefined:
            raise _GiveUp
        return parsed

    return coerce


INT_MIN, INT_MAX = -(2**31), 2**31 - 1


def _coerce_int(value: Any) -> int:
    if type(value) is int and INT_MIN <= value <= INT_MAX:
        return value
    raise _GiveUp  # floats, bools, out of range: graphql-core decides


def _non_null_scalar(scalar: GraphQLScalarType) -> Coerce | None:
    """A `Scalar!` variable: Int, ID and custom scalars; None for the others."""
    if scalar is GraphQLInt:
        coerce: Coerce | None = _coerce_int
    else:
        coerce = _scalar(scalar)
    if coerce is None:
        return None
    one = coerce

    def coerce_value(value: Any) -> Any:
        if value is None:
            return GIVE_UP
        try:
            return one(value)
        except _GiveUp:
            return GIVE_UP

    return coerce_value


def _coerce_id(value: Any) -> str:
    if type(value) is str:
        return value
    if type(value) is int:
        return str(value)
    raise _GiveUp  # floats, and everything graphql-core refuses
