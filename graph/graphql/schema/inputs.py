"""GraphQL input types and their translation into the store's data models."""

from __future__ import annotations

from typing import Any, cast

import strawberry

from graph.errors import BadUserInput, shown
from graph.graphql.schema.scalars import JSON, Vector
from graph.graphql.schema.sizes import MAX_LIST_ITEMS
from graph.store import models
from graph.store.models import (
    MAX_FILTER_CONDITIONS,
    MAX_FILTER_DEPTH,
    MAX_FILTER_KEY_CHARS,
    MAX_PAYLOAD_BYTES,
    MAX_PAYLOAD_DEPTH,
    MAX_PAYLOAD_VALUES,
    check_payload,
)

PAYLOAD_LIMITS = (
    f"at most {MAX_PAYLOAD_BYTES} bytes of JSON, {MAX_PAYLOAD_VALUES} values and "
    f"{MAX_PAYLOAD_DEPTH} levels of nesting; numbers finite, integers written in the "
    "document within -2^63..2^64-1 (else BAD_USER_INPUT; in JSON variables a larger "
    "integer is read as the nearest double, as JavaScript reads it, and kept so)"
)


@strawberry.input(
    description=(
        "A point to write: its id, its vector, and an optional payload. `upsert` checks every "
        "point of the batch before it writes any."
    )
)
class PointInput:
    id: strawberry.ID = strawberry.field(
        description=(
            'An unsigned integer (as 42 or "42", 0..18446744073709551615) or a UUID string; '
            "anything else, or an id twice in one batch, is BAD_USER_INPUT. An existing id is "
            "replaced: vector and payload alike."
        )
    )
    vector: Vector = strawberry.field(
        description=(
            "As many numbers as the collection's dimension (else BAD_USER_INPUT). Under "
            "cosine distance it is stored normalised to unit length."
        )
    )
    payload: JSON | None = strawberry.field(
        default=None,
        description=(
            f"A JSON object (anything else is BAD_USER_INPUT), {PAYLOAD_LIMITS}. Omitted or "
            "null: no payload (an upsert replaces the old payload with none)."
        ),
    )


@strawberry.input(
    description=(
        "Bounds on a numeric payload value: at least one of the four, each a finite number "
        "(else BAD_USER_INPUT); all given must hold."
    )
)
class Range:
    gt: float | None = strawberry.field(default=None, description="Greater than this.")
    gte: float | None = strawberry.field(default=None, description="Greater than or equal.")
    lt: float | None = strawberry.field(default=None, description="Less than this.")
    lte: float | None = strawberry.field(default=None, description="Less than or equal.")


@strawberry.input(
    description=(
        "What a payload value must be: exactly one of `value`, `any` or `except` (else "
        "BAD_USER_INPUT). A key holding an array matches when one of its elements does."
    )
)
class Match:
    value: JSON | None = strawberry.field(
        default=None,
        description=(
            "Exact match of a keyword (string), integer (-2^63..2^63-1) or boolean; other "
            "JSON values are BAD_USER_INPUT."
        ),
    )
    any: list[JSON] | None = strawberry.field(
        default=None,
        description=(
            f"Matches any of these values: 1 to {MAX_LIST_ITEMS} values (and at most "
            f"{MAX_LIST_ITEMS} in all of a filter's any and except lists), all strings or all "
            "integers (else BAD_USER_INPUT)."
        ),
    )
    except_: list[JSON] | None = strawberry.field(
        default=None,
        name="except",
        description=(
            f"Matches none of these values: 1 to {MAX_LIST_ITEMS} values (and at most "
            f"{MAX_LIST_ITEMS} in all of a filter's any and except lists), all strings or all "
            "integers (else BAD_USER_INPUT)."
        ),
    )


@strawberry.input(
    description=(
        "One condition: a `key` with exactly one of `match` or `range`, or a nested `filter` "
        "alone; anything else is BAD_USER_INPUT."
    )
)
class Condition:
    key: str | None = strawberry.field(
        default=None,
        description=(
            'Dotted path into the payload, e.g. "meta.source": names of letters, digits, '
            "'_' and '-', each optionally followed by [] (every element of an array) or [N]; "
            'quote other names ("my key"); at most '
            f"{MAX_FILTER_KEY_CHARS} characters and {MAX_PAYLOAD_DEPTH} levels (each name and "
            "each [] or [N] is one). Other keys are BAD_USER_INPUT. Keys address the "
            "client's payload (a memory's metadata) only."
        ),
    )
    match: Match | None = strawberry.field(
        default=None, description="The value at `key` must match this."
    )
    range: Range | None = strawberry.field(
        default=None, description="The number at `key` must lie within this range."
    )
    filter: Filter | None = strawberry.field(
        default=None,
        description="A nested filter, for grouping; it needs at least one condition.",
    )


@strawberry.input(
    description=(
        "A Qdrant-style boolean filter over payload fields. A point matches when all three "
        "lists hold; an omitted, null or empty list always holds. At most "
        f"{MAX_FILTER_DEPTH} levels of nested filters and {MAX_FILTER_CONDITIONS} conditions "
        "in all (else BAD_USER_INPUT)."
    )
)
class Filter:
    must: list[Condition] | None = strawberry.field(
        default=None, description="Every one of these conditions holds."
    )
    should: list[Condition] | None = strawberry.field(
        default=None, description="At least one of these conditions holds (when any are given)."
    )
    must_not: list[Condition] | None = strawberry.field(
        default=None, description="None of these conditions holds."
    )


# Qdrant matches integers as signed 64-bit.
MATCH_INT_MIN = -(2**63)
MATCH_INT_MAX = 2**63 - 1


def to_points(inputs: list[PointInput]) -> list[models.Point]:
    """Normalise ids and check payloads for the whole batch before anything is written."""
    points: list[models.Point] = []
    seen: set[models.PointId] = set()
    for index, item in enumerate(inputs):
        try:
            point_id = models.normalize_point_id(item.id)
        except BadUserInput as error:
            raise BadUserInput(f"points[{index}]: {error.message}") from None
        if point_id in seen:
            raise BadUserInput(f"points[{index}]: id {shown(item.id)} appears twice in the batch")
        seen.add(point_id)
        payload = item.payload
        if payload is not None:
            if not isinstance(payload, dict):
                raise BadUserInput(f"points[{index}]: payload must be a JSON object")
            try:
                check_payload(payload)
            except BadUserInput as error:
                raise BadUserInput(f"points[{index}]: {error.message}") from None
        points.append(models.Point(id=point_id, vector=item.vector, payload=payload))
    return points


def to_ids(raw_ids: list[strawberry.ID]) -> list[models.PointId]:
    return [models.normalize_point_id(raw) for raw in raw_ids]


def _check_match_int(value: Any) -> None:
    if type(value) is int and not MATCH_INT_MIN <= value <= MATCH_INT_MAX:
        raise BadUserInput("match takes integers between -2^63 and 2^63-1")


def _match_scalar(value: Any) -> models.MatchScalar:
    if isinstance(value, str | int):
        _check_match_int(value)
        return value
    raise BadUserInput("match.value must be a string, an integer or a boolean")


def _match_list(values: list[Any] | None) -> list[str] | list[int] | None:
    for value in values or ():
        _check_match_int(value)
    return cast(list[str] | list[int] | None, values)


def _to_match(match: Match) -> models.Match:
    return models.Match(
        value=None if match.value is None else _match_scalar(match.value),
        any=_match_list(match.any),
        except_=_match_list(match.except_),
    )


def _to_condition(condition: Condition) -> models.Condition:
    return models.Condition(
        key=condition.key,
        match=None if condition.match is None else _to_match(condition.match),
        range=None
        if condition.range is None
        else models.Range(
            gt=condition.range.gt,
            gte=condition.range.gte,
            lt=condition.range.lt,
            lte=condition.range.lte,
        ),
        filter=None if condition.filter is None else _to_filter_unchecked(condition.filter),
    )


def _to_filter_unchecked(flt: Filter) -> models.Filter:
    return models.Filter(
        must=[_to_condition(c) for c in flt.must or ()],
        should=[_to_condition(c) for c in flt.should or ()],
        must_not=[_to_condition(c) for c in flt.must_not or ()],
    )


def to_filter(flt: Filter | None) -> models.Filter | None:
    if flt is None:
        return None
    return models.validate_filter(_to_filter_unchecked(flt))
