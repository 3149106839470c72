"""GraphQL input types and their translation into the store's data models."""

from __future__ import annotations

from typing import Any, cast

import strawberry

from graph.errors import BadUserInput
from graph.schema.scalars import JSON, Vector
from graph.store import models


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
            raise BadUserInput(f"points[{index}]: id {item.id} appears twice in the batch")
        seen.add(point_id)
        payload = item.payload
        if payload is not None and not isinstance(payload, dict):
            raise BadUserInput(f"points[{index}]: payload must be a JSON object")
        points.append(models.Point(id=point_id, vector=item.vector, payload=payload))
    return points


def to_ids(raw_ids: list[strawberry.ID]) -> list[models.PointId]:
    return [models.normalize_point_id(raw) for raw in raw_ids]


def _match_scalar(value: Any) -> models.MatchScalar:
    if isinstance(value, str | int):
        return value
    raise BadUserInput("match.value must be a string, an integer or a boolean")


def _to_match(match: Match) -> models.Match:
    return models.Match(
        value=None if match.value is None else _match_scalar(match.value),
        any=cast(list[str] | list[int] | None, match.any),
        except_=cast(list[str] | list[int] | None, match.except_),
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
