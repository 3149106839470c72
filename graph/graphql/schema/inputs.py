"""GraphQL input types and their translation into the store's data models."""

from __future__ import annotations

import re
from typing import Any, cast

import strawberry

from graph.errors import BadUserInput, shown
from graph.graphql.schema.scalars import JSON, Vector
from graph.store import models
from graph.store.models import (  # noqa: F401 (re-exported for tests)
    MAX_PAYLOAD_DEPTH,
    PAYLOAD_INT_MAX,
    PAYLOAD_INT_MIN,
    check_payload,
)


@strawberry.input
class PointInput:
    id: strawberry.ID = strawberry.field(
        description='An unsigned integer (as 42 or "42") or a UUID string.'
    )
    vector: Vector
    payload: JSON | None = None


@strawberry.input
class Range:
    gt: float | None = None
    gte: float | None = None
    lt: float | None = None
    lte: float | None = None


@strawberry.input
class Match:
    value: JSON | None = strawberry.field(
        default=None, description="Exact match of a keyword, integer or boolean."
    )
    any: list[JSON] | None = strawberry.field(
        default=None, description="Matches any of these values."
    )
    except_: list[JSON] | None = strawberry.field(
        default=None, name="except", description="Matches none of these values."
    )


@strawberry.input
class Condition:
    key: str | None = strawberry.field(
        default=None, description='Dotted path into the payload, e.g. "meta.source".'
    )
    match: Match | None = None
    range: Range | None = None
    filter: Filter | None = strawberry.field(
        default=None, description="A nested filter, for grouping."
    )


@strawberry.input(description="A Qdrant-style boolean filter over payload fields.")
class Filter:
    must: list[Condition] | None = None
    should: list[Condition] | None = None
    must_not: list[Condition] | None = None


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


# A payload path as the engine parses it: dotted names, each followed by any number of []
# or [N], each name raw or quoted. A raw name is letters, digits, '_' and '-', where
# "letters and digits" are what Python's str.isalnum() says: a subset of what the engine
# takes (it also takes the combining marks Unicode counts as alphabetic, which Python
# cannot tell from the others: a name with a combining mark must be quoted). A quoted
# name is any text but a quote or a backslash. Anything else makes the engine raise, which
# must reach the client as BAD_USER_INPUT. Checked against the engine for every code
# point by tests/resilience/test_properties.py.
_KEY_SEGMENT = r'(?:[\w-]+|"[^"\\\ud800-\udfff]*")(?:\[[0-9]{0,18}\])*'
_FILTER_KEY = re.compile(rf"{_KEY_SEGMENT}(?:\.{_KEY_SEGMENT})*")


def check_filter_key(key: str) -> str:
    if not _FILTER_KEY.fullmatch(key):
        raise BadUserInput(
            f"Filter key {shown(repr(key))} is not a payload path: dotted names of letters, "
            "digits, '_' and '-', each optionally followed by [] or [N]; quote a name made of "
            'other characters ("my key"; any but a quote or a backslash)'
        )
    return key


def _to_condition(condition: Condition) -> models.Condition:
    return models.Condition(
        key=None if condition.key is None else check_filter_key(condition.key),
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
