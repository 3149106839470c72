"""The Vector and JSON scalars: whole values decoded in one step, not element by element."""

from __future__ import annotations

import math
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any, NewType

import strawberry
from graphql import (
    FloatValueNode,
    IntValueNode,
    ListValueNode,
    ObjectValueNode,
    ValueNode,
    VariableNode,
    value_from_ast_untyped,
)
from strawberry.types.scalar import ScalarDefinition

from graph.errors import BadUserInput
from graph.store.models import MAX_DIMENSION

FLOAT32_MAX = 3.4028234663852886e38
_NUMBER_TYPES = frozenset({float, int})


def parse_vector(value: object) -> list[float]:
    """A non-empty JSON array of finite numbers that fit a 32-bit float."""
    if not isinstance(value, list) or not value:
        raise BadUserInput("A vector must be a non-empty array of numbers")
    if len(value) > MAX_DIMENSION:
        raise BadUserInput(f"A vector has at most {MAX_DIMENSION} dimensions")
    # The usual vector, all floats well inside the 32-bit range, costs two C loops: every
    # value's magnitude is at most the vector's length (which is NaN with a NaN, infinite
    # with an infinity), and math.hypot makes no float objects on the way, unlike a sum of
    # abs() (2.4x the time on a freshly decoded body). Anything else takes the exact
    # checks below.
    if list(map(type, value)).count(float) == len(value) and math.hypot(*value) <= FLOAT32_MAX:
        return value
    types = set(map(type, value))
    if not types <= _NUMBER_TYPES:
        raise BadUserInput("A vector may contain only numbers")
    if int in types:
        try:
            value = [float(x) for x in value]
        except OverflowError:
            raise BadUserInput("A vector may contain only finite 32-bit numbers") from None
    # One C loop each: a NaN or an infinity makes the sum non-finite (so does an overflow
    # of the sum, which needs numbers far outside the 32-bit range anyway); min and max
    # are then exact.
    if not (math.isfinite(sum(value)) and min(value) >= -FLOAT32_MAX and max(value) <= FLOAT32_MAX):
        raise BadUserInput("A vector may contain only finite 32-bit numbers")
    if math.hypot(*value) > FLOAT32_MAX:
        # Its length overflows the engine's 32-bit floats: under cosine it was stored as
        # zeros, under dot and euclid its scores are infinite.
        raise BadUserInput("A vector's length (Euclidean norm) must fit a 32-bit float")
    return value


def parse_vector_literal(node: ValueNode, variables: dict[str, Any] | None = None) -> list[float]:
    if not isinstance(node, ListValueNode):
        raise BadUserInput("A vector must be a non-empty array of numbers")
    numbers: list[float] = []
    append = numbers.append
    for item in node.values:
        if not isinstance(item, FloatValueNode | IntValueNode):
            raise BadUserInput("A vector literal may contain only numbers")
        append(float(item.value))
    return parse_vector(numbers)


def parse_json_literal(node: ValueNode, variables: dict[str, Any] | None = None) -> Any:
    # variables None: validation, which looks at the literal before any variable is known.
    missing = None if variables is None else _missing_variable(node, variables)
    if missing is not None:
        # graphql-core would leave its Undefined in the value, which no JSON can hold.
        raise BadUserInput(f'Variable "${missing}" is used in a JSON value and not given')
    return value_from_ast_untyped(node, variables)


def _missing_variable(node: ValueNode, variables: dict[str, Any]) -> str | None:
    """The name of the first variable inside node that the request does not give."""
    if isinstance(node, VariableNode):
        return None if node.name.value in variables else node.name.value
    if isinstance(node, ListValueNode):
        children: Iterable[ValueNode] = node.values
    elif isinstance(node, ObjectValueNode):
        children = (field.value for field in node.fields)
    else:
        return None
    for child in children:
        missing = _missing_variable(child, variables)
        if missing is not None:
            return missing
    return None


def _identity(value: Any) -> Any:
    return value


def serialize_datetime(value: datetime) -> str:
    """Always UTC, with a Z: "2026-11-29T08:00:00Z" (fractions of a second when any)."""
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def parse_datetime(value: object) -> datetime:
    """ISO 8601 with an offset (Z or +hh:mm); a time without one is refused."""
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            parsed = None
        if parsed is not None and parsed.tzinfo is not None:
            return parsed.astimezone(UTC)
    raise BadUserInput('A DateTime is ISO 8601 with an offset, e.g. "2026-11-29T08:00:00Z"')


def parse_datetime_literal(node: ValueNode, variables: dict[str, Any] | None = None) -> datetime:
    return parse_datetime(value_from_ast_untyped(node, variables))


Vector = NewType("Vector", list[float])
JSON = NewType("JSON", object)
DateTime = NewType("DateTime", datetime)

SCALAR_MAP: dict[object, ScalarDefinition] = {
    Vector: strawberry.scalar(
        name="Vector",
        description=(
            "A dense vector: a JSON array of finite numbers, e.g. [0.12, -0.5, ...]. Its "
            "length must equal the dimension of the collection it is used with. Accepted "
            "both as a variable and as an inline list literal. 1 to "
            f"{MAX_DIMENSION} numbers, integers or floats, each within the 32-bit float "
            "range (about ±3.4e38); empty, longer, non-numeric, NaN or infinite values are "
            "BAD_USER_INPUT. Stored as 32-bit floats, so a vector read back may differ in "
            "the last digits."
        ),
        serialize=_identity,
        parse_value=parse_vector,
        parse_literal=parse_vector_literal,
    ),
    JSON: strawberry.scalar(
        name="JSON",
        description=(
            "Any JSON value. A point's payload is a JSON object. Sent and returned as "
            "given, with no conversion; where a field wants an object, anything else is "
            "BAD_USER_INPUT."
        ),
        serialize=_identity,
        parse_value=_identity,
        parse_literal=parse_json_literal,
    ),
    DateTime: strawberry.scalar(
        name="DateTime",
        description=(
            'A date and time in ISO 8601 with an offset, e.g. "2026-11-29T08:00:00Z". '
            "Output is always UTC, with a Z, and microseconds when there are any "
            '("2026-11-29T08:00:00.123456Z"). As input, a time without an offset is '
            "BAD_USER_INPUT."
        ),
        serialize=serialize_datetime,
        parse_value=parse_datetime,
        parse_literal=parse_datetime_literal,
    ),
}
