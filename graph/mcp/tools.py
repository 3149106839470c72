"""The tools: their schemas, their arguments translated into calls on the memory service
(graph/memory/service.py, as GraphQL's resolvers call it), and their results as JSON.

Every failure is an ApiError with its code; graph/mcp/server.py turns it into a tool
error. The service makes the checks it owns (text, metadata, ttl range, limit, ids), but
words a remembered memory's errors for GraphQL's batch (`memories[0]: ttlSeconds ...`):
so a memory is checked here first, by the same rules, to name the tool's arguments; the
integer bounds are those the input schemas declare, which are the service's.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import mcp_types as types

from graph.errors import BadUserInput, Forbidden
from graph.graphql.schema import inputs
from graph.graphql.schema.scalars import serialize_datetime
from graph.memory.service import MAX_RECALL_LIMIT, MAX_TTL_SECONDS, MemoryService, NewMemory, Recall
from graph.security.principals import Principal, Scope
from graph.settings import Settings
from graph.store.defaults import DefaultCollections
from graph.store.models import (
    FILTER_TOO_DEEP,
    MAX_FILTER_CONDITIONS,
    MAX_FILTER_DEPTH,
    MAX_MATCH_VALUES,
    RANGE_NOT_FINITE,
    TOO_MANY_CONDITIONS,
    TOO_MANY_IN_A_LIST,
    TOO_MANY_MATCH_VALUES,
    Filter,
    MemoryRecord,
    check_payload,
    validate_collection_name,
)

DEFAULT_RECALL_LIMIT = 10


def _arguments(required: str, **properties: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": properties,
        "required": [required],
        "additionalProperties": False,
    }


def _text_schema(description: str) -> dict[str, Any]:
    return {"type": "string", "minLength": 1, "description": description}


def _result(name: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"type": "object", "properties": {name: schema}, "required": [name]}


_COLLECTION = {
    "type": "string",
    "description": (
        "Optional: the collection to use. Omit it to use the server's default collection, "
        "which is what almost every agent wants."
    ),
}
_MEMORY = {
    "type": "object",
    "properties": {
        "id": {"type": "string", "description": "Pass it to forget to delete the memory."},
        "text": {"type": "string"},
        "metadata": {"type": ["object", "null"]},
        "score": {
            "type": "number",
            "description": "Relevance; higher is better, comparable within one recall only.",
        },
        "created_at": {
            "type": "string",
            "format": "date-time",
            "description": 'When it was first remembered, UTC, e.g. "2026-11-29T08:00:00Z".',
        },
    },
    "required": ["id", "text", "metadata", "score", "created_at"],
}

TOOLS = [
    types.Tool(
        name="remember",
        description=(
            "Store one memory: a piece of text to recall later (a fact, a preference, a "
            "decision), with optional metadata to filter on and an optional lifetime. "
            "Returns the new memory's id. Needs the `write` scope."
        ),
        input_schema=_arguments(
            "text",
            text=_text_schema(
                "What to remember, as self-contained text: not empty or only whitespace, at "
                "most 32 KiB as JSON by default (the server's MAX_MEMORY_TEXT_BYTES)."
            ),
            metadata={
                "type": "object",
                "description": (
                    'Optional JSON object kept with the memory, e.g. {"topic": "billing", '
                    '"priority": 2}; recall\'s `filter` matches on its keys.'
                ),
            },
            ttl_seconds={
                "type": "integer",
                "minimum": 1,
                "maximum": MAX_TTL_SECONDS,
                "description": (
                    f"Optional lifetime in seconds (1 to {MAX_TTL_SECONDS}, ten years): the "
                    "memory is forgotten this long from now. Omit it to keep the memory until "
                    "it is forgotten."
                ),
            },
            collection=_COLLECTION,
        ),
        output_schema=_result(
            "ids",
            {
                "type": "array",
                "items": {"type": "string"},
                "description": "The id of the memory stored.",
            },
        ),
        annotations=types.ToolAnnotations(
            title="Remember", read_only_hint=False, destructive_hint=False
        ),
    ),
    types.Tool(
        name="recall",
        description=(
            "Find the stored memories most relevant to a text, best first, by the words "
            "they share (and by meaning when the server has an embedding model). Expired "
            "memories are never returned. Needs the `read` scope."
        ),
        input_schema=_arguments(
            "text",
            text=_text_schema(
                "What to look for: a question or keywords, e.g. 'user's preferred language'."
            ),
            limit={
                "type": "integer",
                "minimum": 1,
                "maximum": MAX_RECALL_LIMIT,
                "default": DEFAULT_RECALL_LIMIT,
                "description": (
                    f"How many memories to return at most: 1 to {MAX_RECALL_LIMIT}, default "
                    f"{DEFAULT_RECALL_LIMIT}."
                ),
            },
            filter={
                "type": "object",
                "description": (
                    "Optional: only memories whose metadata matches. Keys `must` (all hold), "
                    "`should` (at least one holds) and `mustNot` (none holds), each a list of "
                    "conditions; a condition has `key` (a metadata key, dotted for nesting: "
                    '"project.name") with `match` ({"value": x}, {"any": [x, y]} or '
                    '{"except": [x]}; strings, integers or booleans) or `range` ({"gte": 1, '
                    '"lt": 5}), or a nested `filter`. Example: {"must": [{"key": "topic", '
                    '"match": {"value": "billing"}}]}. At most '
                    f"{MAX_FILTER_CONDITIONS} conditions and {MAX_MATCH_VALUES} any/except values "
                    f"in all, {MAX_FILTER_DEPTH} levels of nesting, finite range bounds."
                ),
            },
            collection=_COLLECTION,
        ),
        output_schema=_result("memories", {"type": "array", "items": _MEMORY}),
        annotations=types.ToolAnnotations(title="Recall", read_only_hint=True),
    ),
    types.Tool(
        name="forget",
        description=(
            "Delete memories by id (the ids remember and recall return). Returns how many "
            "existed. Needs the `write` scope."
        ),
        input_schema=_arguments(
            "ids",
            ids={
                "type": "array",
                "items": {"type": "string"},
                "minItems": 1,
                "description": "The ids of the memories to delete: 1 or more.",
            },
            collection=_COLLECTION,
        ),
        output_schema=_result(
            "deleted",
            {
                "type": "integer",
                "description": (
                    "How many of the ids existed and are now gone (memories, or points "
                    "stored with those ids through the GraphQL points API)."
                ),
            },
        ),
        annotations=types.ToolAnnotations(
            title="Forget", read_only_hint=False, destructive_hint=True, idempotent_hint=True
        ),
    ),
]

SCOPES = {"remember": Scope.WRITE, "recall": Scope.READ, "forget": Scope.WRITE}
_ARGUMENTS = {tool.name: frozenset(tool.input_schema["properties"]) for tool in TOOLS}
_PROPERTIES = {tool.name: tool.input_schema["properties"] for tool in TOOLS}


class MemoryTools:
    """The three tools over the memory service, for one principal per call."""

    def __init__(
        self, memories: MemoryService, settings: Settings, defaults: DefaultCollections
    ) -> None:
        self.memories = memories
        self.settings = settings
        self.defaults = defaults

    async def call(
        self, name: str, arguments: dict[str, Any], principal: Principal
    ) -> dict[str, Any]:
        scope = SCOPES.get(name)
        if scope is None:
            raise BadUserInput(f"There is no tool {name[:64]!r}: use remember, recall or forget")
        if scope not in principal.scopes:
            raise Forbidden(f"The tool {name} needs the `{scope.value}` scope")
        unknown = sorted(set(arguments) - _ARGUMENTS[name])
        if unknown:
            raise BadUserInput(f"{name} takes no argument {unknown[0][:64]!r}")
        collection = self._collection(arguments.get("collection"))
        if not await self.defaults.ensure(principal.tenant) and arguments.get("collection") is None:
            problem = self.defaults.problem(principal.tenant)
            if problem is not None:
                raise problem
        tenant = principal.tenant
        if name == "remember":
            ids = await self.memories.remember(tenant, collection, [self._memory(arguments)])
            return {"ids": [str(i) for i in ids]}
        if name == "recall":
            limit = _integer(arguments, "recall", "limit")
            raw_filter = _optional(arguments, "filter", dict, "a JSON object")
            asked = Recall(
                text=_text(arguments),
                filter=None if raw_filter is None else filter_from_json(raw_filter),
                limit=DEFAULT_RECALL_LIMIT if limit is None else limit,
            )
            found = await self.memories.recall(tenant, collection, asked)
            return {"memories": [_memory(m) for m in found]}
        deleted = await self.memories.forget(tenant, collection, ids=_ids(arguments))
        return {"deleted": deleted}

    def _memory(self, arguments: dict[str, Any]) -> NewMemory:
        text = _text(arguments)
        self.memories.check_text(text)  # the service's rule; its batch prefixes the message
        metadata = _optional(arguments, "metadata", dict, "a JSON object")
        if metadata is not None:
            try:
                check_payload(metadata)
            except BadUserInput as error:
                raise BadUserInput(f"metadata: {error.message}") from None
        ttl_seconds = _integer(arguments, "remember", "ttl_seconds")
        return NewMemory(text=text, metadata=metadata, ttl_seconds=ttl_seconds)

    def _collection(self, raw: object) -> str:
        if raw is None:
            return self.settings.store.collection
        if not isinstance(raw, str):
            raise BadUserInput("collection must be a string")
        return validate_collection_name(raw)


def _text(arguments: dict[str, Any]) -> str:
    text = arguments.get("text")
    if not isinstance(text, str):
        raise BadUserInput("text is required and must be a string")
    return text


def _optional(arguments: dict[str, Any], name: str, kind: type, what: str) -> Any:
    value = arguments.get(name)
    # bool is an int to Python, never to a JSON schema.
    if value is not None and (not isinstance(value, kind) or isinstance(value, bool)):
        raise BadUserInput(f"{name} must be {what}")
    return value


def _integer(arguments: dict[str, Any], tool: str, name: str) -> int | None:
    value = arguments.get(name)
    if isinstance(value, float) and value.is_integer():
        # JSON Schema's integer is any number without a fraction (5.0 too, as some clients
        # write every number), and GraphQL's Int takes 5.0 as well.
        value = int(value)
    checked: int | None = _optional({name: value}, name, int, "an integer")
    schema = _PROPERTIES[tool][name]
    if checked is not None and not schema["minimum"] <= checked <= schema["maximum"]:
        raise BadUserInput(f"{name} must be between {schema['minimum']} and {schema['maximum']}")
    return checked


def _ids(arguments: dict[str, Any]) -> Sequence[object]:
    ids = arguments.get("ids")
    if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
        raise BadUserInput("ids is required and must be an array of strings")
    return ids


def _memory(memory: MemoryRecord) -> dict[str, Any]:
    return {
        "id": str(memory.id),
        "text": memory.text,
        "metadata": memory.metadata,
        "score": memory.score,
        "created_at": serialize_datetime(memory.created_at),
    }


# The recall filter: the GraphQL Filter input as JSON, checked by the same code as GraphQL's.
# Its limits are checked while it is read, in GraphQL's words, so that a filter far over
# them (100,000 conditions, a match on 400,000 values) is refused before it is converted,
# as graph/graphql/schema/sizes.py refuses GraphQL's variables before they are coerced.


def filter_from_json(raw: dict[str, Any]) -> Filter:
    result = inputs.to_filter(_Reader().filter(raw, 1))
    assert result is not None
    return result


def _fields(raw: object, allowed: frozenset[str], what: str) -> dict[str, Any]:
    if not isinstance(raw, dict):
        raise BadUserInput(f"{what} must be a JSON object")
    unknown = set(raw) - allowed
    if unknown:
        raise BadUserInput(f"{what} has no key {min(unknown)[:64]!r}")
    return raw


_FILTER_KEYS = frozenset({"must", "should", "mustNot"})
_CONDITION_KEYS = frozenset({"key", "match", "range", "filter"})
_MATCH_KEYS = frozenset({"value", "any", "except"})
_RANGE_NAMES = ("gt", "gte", "lt", "lte")
_RANGE_KEYS = frozenset(_RANGE_NAMES)


class _Reader:
    """One filter read from JSON: its conditions and its match.any and match.except values
    counted so far, across its nesting, each list counted before its items are read."""

    def __init__(self) -> None:
        self.conditions = 0
        self.values = 0

    def filter(self, raw: object, depth: int) -> inputs.Filter:
        if depth > MAX_FILTER_DEPTH:
            raise BadUserInput(FILTER_TOO_DEEP)
        fields = _fields(raw, _FILTER_KEYS, "filter")
        return inputs.Filter(
            must=self.conditions_of(fields.get("must"), depth),
            should=self.conditions_of(fields.get("should"), depth),
            must_not=self.conditions_of(fields.get("mustNot"), depth),
        )

    def conditions_of(self, raw: object, depth: int) -> list[inputs.Condition] | None:
        if raw is None:
            return None
        if not isinstance(raw, list):
            raise BadUserInput("must, should and mustNot are lists of conditions")
        # Counted before any is read: a list over the limit is refused at once.
        self.conditions += len(raw)
        if self.conditions > MAX_FILTER_CONDITIONS:
            raise BadUserInput(TOO_MANY_CONDITIONS)
        return [self.condition(item, depth) for item in raw]

    def condition(self, raw: object, depth: int) -> inputs.Condition:
        fields = _fields(raw, _CONDITION_KEYS, "a filter condition")
        key = fields.get("key")
        if key is not None and not isinstance(key, str):
            raise BadUserInput("a condition's key must be a string")
        match = fields.get("match")
        bounds = fields.get("range")
        nested = fields.get("filter")
        return inputs.Condition(
            key=key,
            match=None if match is None else self.match(match),
            range=None if bounds is None else _range(bounds),
            filter=None if nested is None else self.filter(nested, depth + 1),
        )

    def match(self, raw: object) -> inputs.Match:
        fields = _fields(raw, _MATCH_KEYS, "match")
        lists = {name: fields.get(name) for name in ("any", "except")}
        for name, values in lists.items():
            if values is None:
                continue
            if not isinstance(values, list):
                raise BadUserInput(f"match.{name} must be a list")
            if len(values) > MAX_MATCH_VALUES:
                raise BadUserInput(TOO_MANY_IN_A_LIST)
            self.values += len(values)
            if self.values > MAX_MATCH_VALUES:
                raise BadUserInput(TOO_MANY_MATCH_VALUES)
        return inputs.Match(value=fields.get("value"), any=lists["any"], except_=lists["except"])


def _range(raw: object) -> inputs.Range:
    fields = _fields(raw, _RANGE_KEYS, "range")
    bounds: dict[str, float | None] = {}
    for name in _RANGE_NAMES:
        value = fields.get(name)
        if value is None:
            bounds[name] = None
            continue
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise BadUserInput(f"range.{name} must be a number")
        try:
            bound = float(value)  # an integer past float's range overflows
        except OverflowError:
            raise BadUserInput(RANGE_NOT_FINITE) from None
        if not math.isfinite(bound):  # 1e400 (read as inf), Infinity, NaN
            raise BadUserInput(RANGE_NOT_FINITE)
        bounds[name] = bound
    return inputs.Range(**bounds)
