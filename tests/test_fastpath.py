"""The compiled fast path answers exactly as Strawberry's general executor does."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from graph.graphql.compiled.fastpath import FastPath
from graph.graphql.extensions import format_errors, schema_extensions, validation_rules
from graph.graphql.schema import MemorySchema, build_schema
from graph.graphql.schema.context import RequestContext
from graph.settings import Settings
from graph.store.edge import EdgeStore
from graph.store.models import Point
from tests.conftest import make_settings

UUID = "6f9619ff-8b86-d011-b42d-00cf4fc964ff"
SEED = [
    Point(1, [1.0, 0.0, 0.0, 0.0], {"kind": "note", "rank": 1, "meta": {"source": "chat"}}),
    Point(2, [0.9, 0.1, 0.0, 0.0], {"kind": "note", "rank": 2}),
    Point(3, [0.2, 1.0, 0.0, 0.0], {"kind": "fact", "rank": 3}),
    Point(UUID, [0.0, 0.0, 1.0, 0.0], None),
]

V = {"vector": [1, 0, 0, 0]}
QUERY_VARS = "query Q($vector: Vector!, $limit: Int! = 3)"
FILTER_VARS = "query Q($vector: Vector!, $limit: Int! = 3, $filter: Filter)"

# (document, variables): each is run on two identical stores, once per executor.
CORPUS: list[tuple[str, dict[str, Any] | None]] = [
    ("{ health { status version backend __typename } }", None),
    (f"{QUERY_VARS} {{ query(vector: $vector, limit: $limit) {{ id score payload }} }}", V),
    (
        f"{FILTER_VARS} {{ hits: query(vector: $vector, filter: $filter, limit: $limit) "
        "{ pid: id score vector __typename } n: count(filter: $filter) }",
        {**V, "filter": {"must": [{"key": "kind", "match": {"value": "note"}}]}},
    ),
    ("{ query(vector: [0, 1, 0, 0], limit: 2, withVector: true) { id vector } }", None),
    ("query Q($vector: Vector!) { query(vector: $vector, limit: 0) { id } }", V),
    (
        "query Q($vector: Vector!, $c: String) { query(vector: $vector, collection: $c) { id } }",
        {**V, "c": "nope"},
    ),
    ("query Q($vector: Vector!) { query(vector: $vector) { id } }", {"vector": [1, 0]}),
    ("query Q($vector: Vector!) { query(vector: $vector) { id } }", {"vector": "x"}),
    ("query Q($vector: Vector!) { query(vector: $vector) { id } }", {}),
    (
        "query Q($vector: Vector!, $filter: Filter) "
        "{ query(vector: $vector, filter: $filter) { id } }",
        {**V, "filter": {"must": [{"key": "kind"}]}},
    ),
    (
        # Every part of the Filter input, nested, through the compiled argument converters.
        f"{FILTER_VARS} {{ query(vector: $vector, filter: $filter, limit: $limit) {{ id }} "
        "count(filter: $filter) }",
        {
            **V,
            "limit": 10,
            "filter": {
                "should": [
                    {"key": "kind", "match": {"any": ["note", "task"]}},
                    {"filter": {"must": [{"key": "rank", "range": {"gt": 0, "lte": 5}}]}},
                ],
                "mustNot": [{"key": "kind", "match": {"except": ["note", "task", "idea"]}}],
                "must": None,
            },
        },
    ),
    (
        "mutation M($p: [PointInput!]!, $c: String) "
        "{ upsert(points: $p, collection: $c) { upserted } }",
        {"p": [{"id": UUID, "vector": [0, 1, 0, 0], "payload": None}], "c": None},
    ),
    # The compiled coercion of [PointInput!]! and graphql-core's, for what it gives up on.
    (
        "mutation M($p: [PointInput!]!) { upsert(points: $p) { upserted } }",
        {"p": {"id": 11, "vector": [0, 0, 1, 0]}},
    ),
    (
        "mutation M($p: [PointInput!]!) { upsert(points: $p) { upserted } }",
        {"p": [{"id": 12.0, "vector": [0, 0, 1, 0]}]},
    ),
    (
        "mutation M($p: [PointInput!]!) { upsert(points: $p) { upserted } }",
        {"p": [{"id": True, "vector": [0, 0, 1, 0]}]},
    ),
    (
        "mutation M($p: [PointInput!]!) { upsert(points: $p) { upserted } }",
        {"p": [{"vector": [0, 0, 1, 0]}]},
    ),
    (
        "mutation M($p: [PointInput!]!) { upsert(points: $p) { upserted } }",
        {"p": [{"id": 13, "vector": [0, 0, 1, 0], "extra": 1}]},
    ),
    (
        "mutation M($p: [PointInput!]!) { upsert(points: $p) { upserted } }",
        {"p": [{"id": 14, "vector": ["x", 0, 1, 0]}]},
    ),
    (
        "mutation M($p: [PointInput!]!) { upsert(points: $p) { upserted } }",
        {"p": [{"id": 15, "vector": None}]},
    ),
    ("mutation M($p: [PointInput!]!) { upsert(points: $p) { upserted } }", {"p": [None]}),
    ("mutation M($p: [PointInput!]!) { upsert(points: $p) { upserted } }", {"p": None}),
    ("mutation M($p: [PointInput!]!) { upsert(points: $p) { upserted } }", {}),
    ('{ points(ids: ["3", "1", "999"]) { id payload } }', None),
    ('{ points(ids: ["-1"]) { id } }', None),
    ("{ scroll(limit: 2) { points { id } nextCursor } }", None),
    (f'{{ scroll(limit: 2, cursor: "{UUID}") {{ points {{ id }} nextCursor }} }}', None),
    ("{ count collections { name dimension distance pointsCount } }", None),
    (
        "mutation M($p: [PointInput!]!) { upsert(points: $p) { upserted } }",
        {"p": [{"id": 9, "vector": [0, 0, 0, 1], "payload": {"a": [1, {"b": None}]}}]},
    ),
    (
        "mutation M($p: [PointInput!]!) { upsert(points: $p) { upserted } }",
        {"p": [{"id": 9, "vector": [0, 0, 0, 1]}, {"id": 10, "vector": [1]}]},
    ),
    (
        'mutation { a: delete(ids: ["1"]) { deleted } b: delete(ids: ["1", "2"]) { deleted } }',
        None,
    ),
    ('mutation { delete(filter: {must: [{key: "rank", range: {gte: 2}}]}) { deleted } }', None),
    ('mutation { createCollection(name: "docs", dimension: 3) { name distance } }', None),
    ('mutation { createCollection(name: "memories", dimension: 3) { name } }', None),
    ('mutation { deleteCollection(name: "nope") }', None),
]

NOT_COMPILED = [
    "{ ...F } fragment F on Query { health { status } }",
    "{ health @include(if: true) { status } }",
    "{ __schema { queryType { name } } }",
    "{ health { ... on Health { status } } }",
    "{ health { status } health { version } }",
    "subscription { health { status } }",
    "{ nope }",
    "{ health { status ",
]


class Executors:
    def __init__(self, tmp_path: Path) -> None:
        self.settings = make_settings(tmp_path)
        rules = validation_rules(self.settings)
        self.schema: MemorySchema = build_schema(schema_extensions(self.settings, rules))
        self.fast = FastPath(self.schema, rules, self.settings.limits.max_tokens)
        self.loop = asyncio.new_event_loop()
        self.stores = [
            self.seeded_store(tmp_path / "general"),
            self.seeded_store(tmp_path / "fast"),
        ]

    def seeded_store(self, data_dir: Path) -> EdgeStore:
        store = EdgeStore(data_dir)
        self.loop.run_until_complete(store.open())
        settings: Settings = self.settings
        self.loop.run_until_complete(
            store.ensure_collection(
                "default",
                settings.store.collection,
                settings.store.vector_size,
                settings.store.distance,
            )
        )
        self.loop.run_until_complete(store.upsert("default", settings.store.collection, SEED))
        return store

    def context(self, store: EdgeStore) -> RequestContext:
        return RequestContext(store=store, settings=self.settings, request_id="r")

    def general(self, query: str, variables: dict[str, Any] | None) -> dict[str, Any]:
        context = self.context(self.stores[0])
        result = self.loop.run_until_complete(
            self.schema.execute(query, variable_values=variables, context_value=context)
        )
        return self.response(result, context)

    def compiled(self, query: str, variables: dict[str, Any] | None) -> dict[str, Any]:
        plan = self.fast.plan(query, None)
        assert plan is not None, "expected the fast path to compile this document"
        context = self.context(self.stores[1])
        result = self.loop.run_until_complete(self.fast.execute(plan, variables, context))
        return self.response(result, context)

    @staticmethod
    def response(result: Any, context: RequestContext) -> dict[str, Any]:
        body: dict[str, Any] = {"data": result.data}
        if result.errors:
            body["errors"], _ = format_errors(list(result.errors), context)
        return body

    def everything(self, store: EdgeStore) -> list[tuple[object, ...]]:
        page = self.loop.run_until_complete(
            store.scroll("default", self.settings.store.collection, limit=100, with_vector=True)
        )
        assert page.next_cursor is None
        return [(p.id, p.payload, p.vector) for p in page.points]

    def close(self) -> None:
        for store in self.stores:
            self.loop.run_until_complete(store.close())
        self.loop.close()


@pytest.fixture
def executors(tmp_path: Path) -> Iterator[Executors]:
    both = Executors(tmp_path)
    yield both
    both.close()


def test_every_corpus_document_answers_the_same_on_both_executors(executors: Executors) -> None:
    for query, variables in CORPUS:
        expected = executors.general(query, variables)
        got = executors.compiled(query, variables)
        assert got == expected, query
    # What the mutations wrote, point by point, is the same too.
    general, fast = (executors.everything(store) for store in executors.stores)
    assert fast == general


@pytest.mark.parametrize("query", NOT_COMPILED)
def test_documents_outside_the_fast_path_go_to_strawberry(executors: Executors, query: str) -> None:
    assert executors.fast.plan(query, None) is None


def test_operation_name_picks_the_operation(executors: Executors) -> None:
    document = "query A { count } query B { health { status } }"
    plan = executors.fast.plan(document, "B")
    assert plan is not None and plan.operation_name == "B"
    assert executors.fast.plan(document, None) is None
    assert executors.fast.plan(document, "C") is None
