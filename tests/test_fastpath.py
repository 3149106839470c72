"""Both executors answer alike: the compiled one and graphql-core's, after one prepare
and one policy. Documents come from a hand-written corpus (inline literals, edge cases)
and from hypothesis, which builds them from the schema itself."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from graphql import (
    GraphQLEnumType,
    GraphQLInputObjectType,
    GraphQLInputType,
    GraphQLList,
    GraphQLNonNull,
    GraphQLObjectType,
    GraphQLScalarType,
    Undefined,
    get_named_type,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from graph.errors import BadUserInput
from graph.graphql import policy
from graph.graphql.compiled.fastpath import FastPath
from graph.graphql.errors import format_errors
from graph.graphql.execution import Executor
from graph.graphql.prepare import PreparedOperation, Preparer, Refusal
from graph.graphql.schema import MemorySchema, build_schema
from graph.graphql.schema.context import RequestContext
from graph.settings import Settings
from graph.store.edge import EdgeStore
from graph.store.models import Point
from tests.conftest import make_settings
from tests.helpers import gql

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
    # The compiled coercion of Scalar! variables and graphql-core's, for what it gives up on.
    *(
        (
            "query Q($vector: Vector!, $limit: Int!) "
            "{ query(vector: $vector, limit: $limit) { id } }",
            {"vector": vector, "limit": limit},
        )
        for vector, limit in (
            ([0, 1, 0, 0], 2**31),
            ([0, 1, 0, 0], -(2**31) - 1),
            ([0, 1, 0, 0], True),
            ([0, 1, 0, 0], 2.0),
            ([0, 1, 0, 0], None),
            ([0, 1, 0, 0], "3"),
            (None, 3),
            ([0, 1, 0, True], 3),
            ([0, 1e40, 0, 0], 3),
        )
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
]
REFUSED = [
    "subscription { health { status } }",
    "{ nope }",
    "{ health { status ",
    "query A { count } query B { count }",
]


class Executors:
    def __init__(self, tmp_path: Path) -> None:
        self.settings = make_settings(tmp_path)
        self.schema: MemorySchema = build_schema()
        self.fast = FastPath(self.schema)
        self.preparer = Preparer(self.schema, self.settings.limits, self.fast)
        self.executor = Executor(self.schema, self.fast, hide_schema=False)
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

    def prepared(self, query: str, operation_name: str | None = None) -> PreparedOperation:
        prepared = self.preparer.prepare_now(query, operation_name)
        assert isinstance(prepared, PreparedOperation), query
        return prepared

    def general(self, query: str, variables: dict[str, Any] | None) -> dict[str, Any]:
        operation = self.prepared(query)
        without_plan = PreparedOperation(
            operation.document,
            operation.operation,
            operation.operation_type,
            operation.operation_name,
            operation.root_nodes,
            plan=None,
        )
        return self.run(without_plan, variables, self.stores[0])

    def compiled(self, query: str, variables: dict[str, Any] | None) -> dict[str, Any]:
        operation = self.prepared(query)
        assert operation.plan is not None, "expected the fast path to compile this document"
        return self.run(operation, variables, self.stores[1])

    def run(
        self, operation: PreparedOperation, variables: dict[str, Any] | None, store: EdgeStore
    ) -> dict[str, Any]:
        context = self.context(store)
        result = self.loop.run_until_complete(self.executor.execute(operation, variables, context))
        body: dict[str, Any] = {"data": result.data}
        if result.errors:
            body["errors"], _ = format_errors(result.errors, "r", hide_schema=False)
        return body

    def everything(self, store: EdgeStore) -> list[tuple[object, ...]]:
        page = self.loop.run_until_complete(
            store.scroll("default", self.settings.store.collection, limit=100, with_vector=True)
        )
        assert page.next_cursor is None
        return [(p.id, p.payload, p.vector) for p in page.points]

    def close(self) -> None:
        self.preparer.close()
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
def test_documents_outside_the_fast_path_run_on_graphql_core(
    executors: Executors, query: str
) -> None:
    assert executors.prepared(query).plan is None


@pytest.mark.parametrize("query", REFUSED)
def test_documents_that_cannot_run_are_refused_before_either_executor(
    executors: Executors, query: str
) -> None:
    assert isinstance(executors.preparer.prepare_now(query, None), Refusal)


def test_operation_name_picks_the_operation(executors: Executors) -> None:
    document = "query A { count } query B { health { status } }"
    prepared = executors.preparer.prepare_now(document, "B")
    assert isinstance(prepared, PreparedOperation)
    assert prepared.plan is not None and prepared.plan.operation_name == "B"
    for name in (None, "C"):
        refused = executors.preparer.prepare_now(document, name)
        assert isinstance(refused, Refusal) and refused.status == 400


# Documents built from the schema: root fields with arguments from a pool of good and bad
# values of each input type, passed as variables, and random selections of their fields.

SCALAR_VALUES: dict[str, list[Any]] = {
    "Int": [0, 1, 2, 3, 10, 100, 101, -1],
    "Float": [0.0, 0.5, -1.0, 2.0],
    "Boolean": [True, False],
    "String": ["memories", "nope", "docs", "bad name!"],
    "ID": ["1", "2", "3", UUID, "999", "-1", "x"],
    "Vector": [[1, 0, 0, 0], [0, 1, 0, 0], [0.5, 0.5, 0, 0], [1, 0]],
    "JSON": [{"kind": "note"}, None, {"a": [1, {"b": None}]}, [1]],
}
FILTERS: list[Any] = [
    {"must": [{"key": "kind", "match": {"value": "note"}}]},
    {"should": [{"key": "rank", "range": {"gte": 2}}]},
    {"mustNot": [{"key": "kind", "match": {"any": ["fact"]}}]},
    {"must": [{"key": "kind"}]},
    {},
]
# Mutations hypothesis may not call: deleting the default collection's points would make
# later examples compare empty answers; a backup writes a file and answers with its time
# (tests/store/test_backup.py and tests/test_backup_commands.py test it).
SKIPPED_ROOT_FIELDS = {"deleteCollection", "delete", "backup"}


def input_values(type_: GraphQLInputType) -> st.SearchStrategy[Any]:
    nullable = not isinstance(type_, GraphQLNonNull)
    inner = type_.of_type if isinstance(type_, GraphQLNonNull) else type_
    if isinstance(inner, GraphQLList):
        values: st.SearchStrategy[Any] = st.lists(input_values(inner.of_type), max_size=3)
    elif isinstance(inner, GraphQLScalarType):
        values = st.sampled_from(SCALAR_VALUES[inner.name])
    elif isinstance(inner, GraphQLEnumType):
        values = st.sampled_from(sorted(inner.values))
    elif isinstance(inner, GraphQLInputObjectType) and inner.name == "Filter":
        values = st.sampled_from(FILTERS)
    elif isinstance(inner, GraphQLInputObjectType):
        values = st.fixed_dictionaries(
            {name: input_values(field.type) for name, field in inner.fields.items()}
        )
    else:
        raise AssertionError(inner)
    return st.one_of(st.none(), values) if nullable else values


def selections(type_: Any, depth: int = 0) -> st.SearchStrategy[str]:
    named = get_named_type(type_)
    if not isinstance(named, GraphQLObjectType):
        return st.just("")
    names = sorted([*named.fields, "__typename"])

    def field(name: str) -> st.SearchStrategy[str]:
        if name == "__typename":
            return st.just(name)
        sub = selections(named.fields[name].type, depth + 1)
        return st.tuples(st.sampled_from(["", "a_", "b_"]), sub).map(
            lambda pair: f"{pair[0] + name + ': ' if pair[0] else ''}{name} {pair[1]}"
        )

    chosen = st.lists(st.sampled_from(names), min_size=1, max_size=4, unique=True)
    return chosen.flatmap(
        lambda picked: st.tuples(*[field(n) for n in picked]).map(
            lambda parts: "{ " + " ".join(parts) + " }"
        )
    )


@st.composite
def documents(draw: st.DrawFn, schema: MemorySchema) -> tuple[str, dict[str, Any]]:
    graphql_schema = schema._schema
    kind = draw(st.sampled_from(["query", "mutation"]))
    root = graphql_schema.query_type if kind == "query" else graphql_schema.mutation_type
    assert root is not None
    names = sorted(set(root.fields) - SKIPPED_ROOT_FIELDS)
    picked = draw(st.lists(st.sampled_from(names), min_size=1, max_size=2, unique=True))
    declarations: list[str] = []
    variables: dict[str, Any] = {}
    fields: list[str] = []
    for index, name in enumerate(picked):
        arguments: list[str] = []
        for arg_name, argument in root.fields[name].args.items():
            no_default = argument.default_value is Undefined
            required = isinstance(argument.type, GraphQLNonNull) and no_default
            if not required and draw(st.booleans()):
                continue
            variable = f"v{index}_{arg_name}"
            declarations.append(f"${variable}: {argument.type}")
            variables[variable] = draw(input_values(argument.type))
            arguments.append(f"{arg_name}: ${variable}")
        call = f"{name}({', '.join(arguments)})" if arguments else name
        fields.append(f"f{index}: {call} {draw(selections(root.fields[name].type))}")
    header = f"{kind} Q({', '.join(declarations)})" if declarations else kind
    return f"{header} {{ {' '.join(fields)} }}", variables


SCHEMA = build_schema()


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(document=documents(SCHEMA))
def test_documents_built_from_the_schema_answer_the_same_on_both_executors(
    executors: Executors, document: tuple[str, dict[str, Any]]
) -> None:
    query, variables = document
    prepared = executors.preparer.prepare_now(query, None)
    if not isinstance(prepared, PreparedOperation) or prepared.plan is None:
        return  # refused whole (e.g. too deep), or not compiled: one executor only
    assert executors.compiled(query, variables) == executors.general(query, variables), query
    general, fast = (executors.everything(store) for store in executors.stores)
    assert fast == general


def test_root_resolvers_get_the_same_info_on_both_executors(
    executors: Executors, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The resolver contract (graph/graphql/schema/context.py), held on both paths."""
    seen: list[dict[str, Any]] = []
    field = executors.schema.get_field_for_type("count", "Query")
    assert field is not None and field.base_resolver is not None
    original = field.base_resolver.wrapped_func
    assert callable(original)  # a plain function, not a classmethod descriptor

    async def recording(self: Any, info: Any, **kwargs: Any) -> int:
        seen.append(
            {
                "context": info.context,
                "field_name": info.field_name,
                "path": info.path.as_list(),
                "selected_fields": info.selected_fields,
                "variable_values": info.variable_values,
                "operation": info.operation,
            }
        )
        result: int = await original(self, info, **kwargs)
        return result

    monkeypatch.setattr(field.base_resolver, "wrapped_func", recording)
    executors.fast = FastPath(executors.schema)  # compiles the recording resolver in
    executors.preparer = Preparer(executors.schema, executors.settings.limits, executors.fast)
    executors.executor = Executor(executors.schema, executors.fast, hide_schema=False)
    query = "query Q($f: Filter) { n: count(filter: $f) }"
    variables = {"f": {"must": [{"key": "kind", "match": {"value": "note"}}]}}
    executors.stores[1] = executors.stores[0]  # one context object for both
    context = executors.context(executors.stores[0])
    executors.context = lambda store: context  # type: ignore[method-assign]
    assert executors.general(query, variables) == executors.compiled(query, variables)
    general, compiled = seen
    assert general.keys() == compiled.keys()
    for key in general:
        assert general[key] == compiled[key], key
    assert general["path"] == ["n"] and general["field_name"] == "count"


def refuse_vectors_of_three(
    operation: PreparedOperation, facts: policy.RequestFacts
) -> BadUserInput | None:
    """A rule a test adds: no variable may be a list of three numbers."""
    for value in (facts.variables or {}).values():
        if isinstance(value, list) and len(value) == 3:
            return BadUserInput("Three is not allowed")
    return None


def test_a_rule_added_to_the_policy_holds_on_both_executors(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from starlette.testclient import TestClient

    from graph.app import create_app

    monkeypatch.setattr(policy, "RULES", (*policy.RULES, refuse_vectors_of_three))
    compiled = "query Q($v: Vector!) { query(vector: $v) { id } }"
    general = "query Q($v: Vector!) { ...F } fragment F on Query { query(vector: $v) { id } }"
    with TestClient(create_app(make_settings(tmp_path, vector_size=3))) as client:
        for document in (compiled, general):
            body = gql(client, document, {"v": [1, 0, 0]}).body
            assert "data" not in body, document  # a request error: refused before it ran
            assert [e["extensions"]["code"] for e in body["errors"]] == ["BAD_USER_INPUT"]
            assert body["errors"][0]["message"] == "Three is not allowed"
            other = gql(client, document, {"v": [0, 1, 0.5, 2]})
            assert "Three is not allowed" not in str(other.body), document


def test_non_null_int_variables_are_coerced_in_one_step_or_left_to_graphql_core() -> None:
    from graphql import GraphQLInt, GraphQLNonNull, GraphQLString

    from graph.graphql.compiled.coercion import GIVE_UP, compile_coercion

    coerce = compile_coercion(GraphQLNonNull(GraphQLInt))
    assert coerce is not None
    assert coerce(5) == 5 and coerce(2**31 - 1) == 2**31 - 1
    for refused in (2**31, -(2**31) - 1, True, 2.0, "3", None):
        assert coerce(refused) is GIVE_UP
    assert compile_coercion(GraphQLNonNull(GraphQLString)) is None  # graphql-core's own
    assert compile_coercion(GraphQLInt) is None  # nullable: graphql-core's own
