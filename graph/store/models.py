"""Plain data passed across the store boundary, and the checks every adapter shares.

Nothing here knows about GraphQL or about Qdrant: the schema layer builds these
objects from its inputs, and each adapter translates them to its own client.
"""

from __future__ import annotations

import math
import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import Enum
from typing import Any

import orjson

from graph.errors import BadUserInput, shown
from graph.settings import Distance

# Integer ids come back as Python ints, UUIDs as their canonical string.
PointId = int | str
Payload = dict[str, Any]

MAX_POINT_ID = 2**64 - 1
_COLLECTION_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,62}$")
MAX_DIMENSION = 65_536


@dataclass(slots=True)
class Point:
    id: PointId
    vector: list[float]
    payload: Payload | None = None


@dataclass(slots=True)
class ScoredPoint:
    id: PointId
    score: float
    payload: Payload | None
    vector: list[float] | None = None


@dataclass(slots=True)
class Record:
    id: PointId
    payload: Payload | None
    vector: list[float] | None = None


@dataclass(slots=True)
class ScrollPage:
    points: list[Record]
    next_cursor: PointId | None


@dataclass(slots=True)
class CollectionInfo:
    name: str
    dimension: int
    distance: Distance
    points_count: int


@dataclass(slots=True)
class SparseVector:
    """BM25 term weights: token ids and their weights (graph.memory.keywords)."""

    indices: list[int]
    values: list[float]


@dataclass(slots=True)
class StoredPoint:
    """A point exactly as a store keeps it, for backup, restore and migrate: its stored id,
    its whole stored payload (the internal fields of graph/store/tenancy.py included), its
    dense vector (None for a memory without one) and its sparse vectors by name."""

    id: str
    payload: Payload
    vector: list[float] | None = None
    sparse: dict[str, SparseVector] = field(default_factory=dict)


@dataclass(slots=True)
class MemoryPoint:
    """A memory as written: the service has checked it and set its times."""

    id: PointId
    text: str
    keywords: SparseVector
    vector: list[float] | None
    metadata: Payload | None
    created_at: datetime
    updated_at: datetime
    expires_at: datetime | None = None


@dataclass(slots=True)
class MemoryRecord:
    """A memory as read; score only for recall (higher is better)."""

    id: PointId
    text: str
    metadata: Payload | None
    created_at: datetime
    updated_at: datetime
    expires_at: datetime | None = None
    score: float = 0.0


def expired(memory: MemoryRecord, now: datetime | None) -> bool:
    """Whether memory has expired at now (None: never)."""
    return now is not None and memory.expires_at is not None and memory.expires_at <= now


class RecallMode(Enum):
    """The modes a store runs (the service resolves AUTO to one of them)."""

    HYBRID = "HYBRID"
    KEYWORD = "KEYWORD"
    SEMANTIC = "SEMANTIC"


@dataclass(slots=True)
class Recency:
    half_life_seconds: float
    weight: float


@dataclass(slots=True)
class RecallRequest:
    """What recall ranks by. KEYWORD needs keywords, SEMANTIC dense, HYBRID both;
    diversity > 0 needs dense. Memories expired at `now` are never returned."""

    mode: RecallMode
    limit: int
    now: datetime
    keywords: SparseVector | None = None
    dense: list[float] | None = None
    filter: Filter | None = None
    recency: Recency | None = None
    diversity: float = 0.0

    @property
    def candidates(self) -> int:
        """How many memories each ranking stage hands on to the next."""
        return max(RECALL_CANDIDATES, self.limit)

    @property
    def lists(self) -> int:
        """How many rankings are fused."""
        return 2 if self.mode is RecallMode.HYBRID else 1


# Each stage of a recall looks at this many candidates.
RECALL_CANDIDATES = 100
# Reciprocal rank fusion's k, as Qdrant's default: a memory ranked r-th (from 0) in a
# list scores 1 / (RRF_K + r) for it.
RRF_K = 2


@dataclass(slots=True)
class Range:
    gt: float | None = None
    gte: float | None = None
    lt: float | None = None
    lte: float | None = None


MatchScalar = str | int | bool


@dataclass(slots=True)
class Match:
    """Exactly one of the three is set (checked by validate_filter)."""

    value: MatchScalar | None = None
    any: list[str] | list[int] | None = None
    except_: list[str] | list[int] | None = None


@dataclass(slots=True)
class Condition:
    """Either key with exactly one of match/range, or a nested filter alone."""

    key: str | None = None
    match: Match | None = None
    range: Range | None = None
    filter: Filter | None = None


@dataclass(slots=True)
class Filter:
    must: list[Condition] = field(default_factory=list)
    should: list[Condition] = field(default_factory=list)
    must_not: list[Condition] = field(default_factory=list)


# The engine stores a payload deeper than about 126 levels but then fails to read it back,
# and with it every query, scroll or get that meets the point: such payloads are refused.
MAX_PAYLOAD_DEPTH = 64
# Payload integers are kept as 64-bit numbers; a larger one would come back changed.
PAYLOAD_INT_MIN = -(2**63)
PAYLOAD_INT_MAX = 2**64 - 1


# What one point's payload may hold, so that what a request can make the server read
# and send is bounded (with MAX_POINTS_PER_REQUEST; docs/hardening.md has the worst
# case): its JSON text, and its values (each a Python object once read back).
MAX_PAYLOAD_BYTES = 32 * 1024
MAX_PAYLOAD_VALUES = 1_024


def check_payload(payload: dict[str, Any]) -> None:
    """A payload the store hands back unchanged and that costs a bounded amount to read:
    at most MAX_PAYLOAD_DEPTH levels of objects and arrays (the payload itself is level
    1), MAX_PAYLOAD_VALUES values and MAX_PAYLOAD_BYTES of JSON, finite numbers, 64-bit
    integers."""
    if _check_values(payload, 1, 0) > MAX_PAYLOAD_VALUES:
        raise BadUserInput(f"a payload holds at most {MAX_PAYLOAD_VALUES} values")
    if len(orjson.dumps(payload)) > MAX_PAYLOAD_BYTES:
        raise BadUserInput(f"a payload is at most {MAX_PAYLOAD_BYTES} bytes of JSON")


def _check_values(payload: dict[str, Any] | list[Any], depth: int, counted: int) -> int:
    """The values counted so far, this container's included; stops counting (and
    looking) past the limit."""
    if depth > MAX_PAYLOAD_DEPTH:
        raise BadUserInput(f"payload nests more than {MAX_PAYLOAD_DEPTH} levels deep")
    for value in payload.values() if isinstance(payload, dict) else payload:
        counted += 1
        if counted > MAX_PAYLOAD_VALUES:
            return counted
        kind = type(value)
        if kind is dict or kind is list:
            counted = _check_values(value, depth + 1, counted)
        elif kind is int:
            if not PAYLOAD_INT_MIN <= value <= PAYLOAD_INT_MAX:
                raise BadUserInput("payload integers must fit in 64 bits")
        elif kind is float and not math.isfinite(value):
            raise BadUserInput("payload numbers must be finite")
    return counted


def normalize_point_id(raw: object) -> PointId:
    """An unsigned 64-bit integer (int or decimal string) or a UUID in canonical form."""
    if isinstance(raw, bool):
        raise BadUserInput("Point id must be an unsigned integer or a UUID")
    if isinstance(raw, int):
        if 0 <= raw <= MAX_POINT_ID:
            return raw
        raise BadUserInput(f"Point id {shown(raw)} is out of range 0..{MAX_POINT_ID}")
    if isinstance(raw, str):
        if raw.isascii() and raw.isdigit():
            if len(raw) > 20 or int(raw) > MAX_POINT_ID:
                raise BadUserInput(f"Point id {shown(raw)} is out of range 0..{MAX_POINT_ID}")
            return int(raw)
        try:
            return str(uuid.UUID(raw))
        except ValueError:
            pass
    raise BadUserInput("Point id must be an unsigned integer or a UUID")


def validate_collection_name(name: str) -> str:
    if not _COLLECTION_NAME.fullmatch(name):
        raise BadUserInput(
            "Collection name must be 1-63 characters of letters, digits, '_' or '-', "
            "starting with a letter or digit"
        )
    return name


def validate_dimension(dimension: int) -> int:
    if not 1 <= dimension <= MAX_DIMENSION:
        raise BadUserInput(f"Dimension must be between 1 and {MAX_DIMENSION}")
    return dimension


def check_vector_dimension(vector: Sequence[float], dimension: int, what: str = "Vector") -> None:
    if len(vector) != dimension:
        raise BadUserInput(f"{what} has {len(vector)} dimensions; the collection has {dimension}")


def check_finite(vector: Sequence[float], what: str = "Vector") -> None:
    try:
        total = sum(vector)
    except TypeError:
        raise BadUserInput(f"{what} must hold only numbers") from None
    # A sum of finite numbers can overflow, so only then is it looked at value by value.
    if not math.isfinite(total) and not all(math.isfinite(x) for x in vector):
        raise BadUserInput(f"{what} must hold only finite numbers")


def check_limit(limit: int, offset: int = 0) -> None:
    if limit < 1:
        raise BadUserInput("limit must be at least 1")
    if offset < 0:
        raise BadUserInput("offset must not be negative")


def normalize_ids(ids: Sequence[PointId]) -> list[PointId]:
    """Normalised, duplicates dropped, first occurrence kept."""
    return list(dict.fromkeys(normalize_point_id(i) for i in ids))


def _check_match(match: Match) -> None:
    given = [v is not None for v in (match.value, match.any, match.except_)]
    if sum(given) != 1:
        raise BadUserInput("A match needs exactly one of value, any or except")
    if match.value is not None and not isinstance(match.value, str | int):
        raise BadUserInput("match.value must be a string, an integer or a boolean")
    for values in (match.any, match.except_):
        if values is None:
            continue
        if not values:
            raise BadUserInput("match.any and match.except need at least one value")
        strings = all(isinstance(v, str) for v in values)
        integers = all(isinstance(v, int) and not isinstance(v, bool) for v in values)
        if not (strings or integers):
            raise BadUserInput("match.any and match.except take only strings or only integers")


def _check_range(rng: Range) -> None:
    bounds = [b for b in (rng.gt, rng.gte, rng.lt, rng.lte) if b is not None]
    if not bounds:
        raise BadUserInput("A range needs at least one of gt, gte, lt, lte")
    if not all(math.isfinite(b) for b in bounds):
        raise BadUserInput(RANGE_NOT_FINITE)


MAX_FILTER_DEPTH = 8
MAX_FILTER_CONDITIONS = 64
# The values of all of a filter's match.any and match.except lists together: each is
# converted for every field that uses the filter (64 lists of 900 cost ~0.1 s a field).
MAX_MATCH_VALUES = 10_000
# The engine follows a key's path for every point it filters, one step a level: a path
# deeper than a payload can nest matches nothing and only costs (a million levels held the
# engine, and with it the server, for seconds).
MAX_FILTER_KEY_CHARS = 1_024
# The refusals, in the same words whichever layer finds them first.
FILTER_TOO_DEEP = f"Filters nest at most {MAX_FILTER_DEPTH} levels deep"
TOO_MANY_CONDITIONS = f"A filter has at most {MAX_FILTER_CONDITIONS} conditions"
TOO_MANY_IN_A_LIST = f"At most {MAX_MATCH_VALUES} values in a list"
TOO_MANY_MATCH_VALUES = (
    f"A filter's match.any and match.except lists hold at most {MAX_MATCH_VALUES} values in all"
)
RANGE_NOT_FINITE = "Range bounds must be finite numbers"

# A payload path as the engine parses it: dotted names, each followed by any number of []
# or [N], each name raw or quoted. A raw name is letters, digits, '_' and '-', where
# "letters and digits" are what Python's str.isalnum() says: a subset of what the engine
# takes (it also takes the combining marks Unicode counts as alphabetic, which Python
# cannot tell from the others: a name with a combining mark must be quoted). A quoted
# name is any non-empty text but a quote or a backslash (the engine takes `""` but it
# matches nothing, not even a payload key ""). Anything else makes the engine raise, which
# must reach the client as BAD_USER_INPUT. Checked against the engine for every code
# point by tests/resilience/test_properties.py.
_KEY_SEGMENT = r'(?:[\w-]+|"[^"\\\ud800-\udfff]+")(?:\[[0-9]{0,18}\])*'
_FILTER_KEY = re.compile(rf"{_KEY_SEGMENT}(?:\.{_KEY_SEGMENT})*")
_QUOTED_NAME = re.compile(r'"[^"]*"')


def check_filter_key(key: str) -> str:
    """key, when it is a payload path of at most MAX_FILTER_KEY_CHARS characters and
    MAX_PAYLOAD_DEPTH levels (each name and each [] or [N] is one)."""
    if len(key) > MAX_FILTER_KEY_CHARS:
        raise BadUserInput(f"A filter key is at most {MAX_FILTER_KEY_CHARS} characters")
    if not _FILTER_KEY.fullmatch(key):
        raise BadUserInput(
            f"Filter key {shown(repr(key))} is not a payload path: dotted names of letters, "
            "digits, '_' and '-', each optionally followed by [] or [N]; quote a name made of "
            'other characters ("my key"; one or more of any but a quote or a backslash)'
        )
    path = _QUOTED_NAME.sub("q", key)  # only dots between names and brackets remain
    if path.count(".") + 1 + path.count("[") > MAX_PAYLOAD_DEPTH:
        raise BadUserInput(
            f"Filter key {shown(repr(key))} goes deeper than a payload nests "
            f"({MAX_PAYLOAD_DEPTH} levels)"
        )
    return key


def validate_filter(flt: Filter) -> Filter:
    """Reject filters that no adapter can run the same way, or that cost more than any
    use needs; returns the filter unchanged."""
    count = 0
    values = 0

    def walk(node: Filter, depth: int) -> None:
        nonlocal count, values
        if depth > MAX_FILTER_DEPTH:
            raise BadUserInput(FILTER_TOO_DEEP)
        conditions = (*node.must, *node.should, *node.must_not)
        if depth > 1 and not conditions:
            # It would match every point: `{must: [{filter: {}}]}` would pass for a filter
            # with a condition where one is required (a delete).
            raise BadUserInput("A nested filter needs at least one condition")
        for condition in conditions:
            count += 1
            if count > MAX_FILTER_CONDITIONS:
                raise BadUserInput(TOO_MANY_CONDITIONS)
            if condition.filter is not None:
                if condition.key is not None or condition.match or condition.range:
                    raise BadUserInput("A condition with a nested filter takes nothing else")
                walk(condition.filter, depth + 1)
                continue
            if not condition.key:
                raise BadUserInput("A condition needs a key (or a nested filter)")
            check_filter_key(condition.key)
            if (condition.match is None) == (condition.range is None):
                raise BadUserInput(
                    f"Condition on '{shown(condition.key)}' needs exactly one of match or range"
                )
            if condition.match is not None:
                _check_match(condition.match)
                values += len(condition.match.any or ()) + len(condition.match.except_ or ())
                if values > MAX_MATCH_VALUES:
                    raise BadUserInput(TOO_MANY_MATCH_VALUES)
            if condition.range is not None:
                _check_range(condition.range)

    walk(flt, 1)
    return flt
