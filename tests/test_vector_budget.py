"""The vector values one operation may return over all its fields (withVector: true).

MAX_POINTS_PER_REQUEST bounds the points, but each point carries its whole vector: in a
collection of 65,536 dimensions, 15 aliases of query(limit: 66, withVector: true) made a
260 MB answer. Every field that returns vectors takes `asked` times the dimension from one
per-request budget of MAX_VECTOR_VALUES_PER_REQUEST (1,536,000) before it fetches.
"""

from __future__ import annotations

from typing import Any

import pytest
from starlette.testclient import TestClient

from graph.graphql.schema.context import (
    MAX_VECTOR_VALUES_PER_REQUEST,
    RequestContext,
    VectorBudget,
)
from tests.helpers import UPSERT, GraphQLResponse, gql

# 187 vectors of 8,192 dimensions fit (1,531,904 values), 188 do not (1,540,096).
WIDE = 8_192
FITS = MAX_VECTOR_VALUES_PER_REQUEST // WIDE


def create(client: TestClient, name: str, dimension: int) -> None:
    mutation = (
        "mutation($n: String!, $d: Int!) { createCollection(name: $n, dimension: $d) { name } }"
    )
    assert gql(client, mutation, {"n": name, "d": dimension}).data["createCollection"] == {
        "name": name
    }


def fill(client: TestClient, name: str, dimension: int, count: int) -> None:
    points = [
        {"id": i + 1, "vector": [((i + j) % 7 + 1) / 8 for j in range(dimension)]}
        for i in range(count)
    ]
    assert gql(client, UPSERT, {"points": points, "collection": name}).data == {
        "upsert": {"upserted": count}
    }


def queries(limits: list[int], *, with_vector: bool = True, fragment: bool = False) -> str:
    """One query alias per limit, on $c with vector $v; `fragment` sends the document to
    graphql-core's executor instead of the compiled one."""
    selection = "...P" if fragment else "id vector"
    fields = " ".join(
        f"a{i}: query(collection: $c, vector: $v, limit: {limit}, "
        f"withVector: {str(with_vector).lower()}) {{ {selection} }}"
        for i, limit in enumerate(limits)
    )
    document = f"query($c: String!, $v: Vector!) {{ {fields} }}"
    if fragment:
        document += " fragment P on ScoredPoint { id vector }"
    return document


def refusal(asked: int, dimension: int, left: int = MAX_VECTOR_VALUES_PER_REQUEST) -> str:
    return (
        "An operation may return at most 1536000 vector values (withVector: true) over all "
        f"its fields; this field asks for {asked} vectors of {dimension} dimensions "
        f"({asked * dimension} values) and {left} are left"
    )


def refused_field(response: GraphQLResponse) -> dict[str, Any]:
    """The one error of a response whose only failing field is over the budget."""
    error = response.assert_error("BAD_USER_INPUT")
    assert len(response.body["errors"]) == 1, response.body
    return error


def test_the_bound_is_a_thousand_vectors_of_1536_dimensions() -> None:
    assert MAX_VECTOR_VALUES_PER_REQUEST == 1_000 * 1_536 == 1_536_000
    assert FITS == 187


def test_the_probe_is_refused_before_anything_is_fetched(client: TestClient) -> None:
    create(client, "huge", 65_536)
    vector = [0.5] * 65_536
    response = gql(client, queries([66] * 15), {"c": "huge", "v": vector})
    response.assert_error("BAD_USER_INPUT")
    assert response.body["data"] is None
    assert response.body["errors"][0]["message"] == refusal(66, 65_536)
    assert response.body["errors"][0]["path"] == ["a0"]


@pytest.mark.parametrize("fragment", [False, True], ids=["compiled", "graphql-core"])
def test_fields_that_together_cross_the_bound_refuse_the_crossing_one(
    client: TestClient, fragment: bool
) -> None:
    create(client, "wide", WIDE)
    fill(client, "wide", WIDE, 3)
    variables = {"c": "wide", "v": [0.25] * WIDE}

    served = gql(client, queries([100, FITS - 100], fragment=fragment), variables).data
    assert [len(served[key]) for key in ("a0", "a1")] == [3, 3]
    assert all(len(hit["vector"]) == WIDE for hit in served["a0"] + served["a1"])

    response = gql(client, queries([100, FITS - 99, 1], fragment=fragment), variables)
    error = refused_field(response)
    assert error["path"] == ["a1"]
    assert error["message"] == refusal(FITS - 99, WIDE, MAX_VECTOR_VALUES_PER_REQUEST - 100 * WIDE)


def test_common_dimensions_get_the_whole_points_budget(client: TestClient) -> None:
    create(client, "small", 384)
    fill(client, "small", 384, 1_000)
    response = gql(client, queries([100] * 10), {"c": "small", "v": [0.5] * 384})
    hits = [hit for key in sorted(response.data) for hit in response.data[key]]
    assert len(hits) == 1_000
    assert all(len(hit["vector"]) == 384 for hit in hits)
    # At 1,536 dimensions, 1,000 vectors are exactly the bound, and served.
    create(client, "common", 1_536)
    fill(client, "common", 1_536, 2)
    ids = list(range(1, 1_001))
    found = gql(
        client,
        'query($ids: [ID!]!) { points(ids: $ids, collection: "common", withVector: true) '
        "{ id vector } }",
        {"ids": ids},
    ).data["points"]
    assert [len(p["vector"]) for p in found] == [1_536, 1_536]


def test_without_vectors_nothing_is_counted(client: TestClient) -> None:
    create(client, "huge", 65_536)
    create(client, "wide", WIDE)
    fill(client, "wide", WIDE, 2)
    vector = [0.5] * 65_536
    data = gql(client, queries([100] * 10, with_vector=False), {"c": "huge", "v": vector}).data
    assert all(hits == [] for hits in data.values())
    data = gql(
        client,
        'query($ids: [ID!]!) { p: points(ids: $ids, collection: "wide") { id vector } '
        's: scroll(collection: "wide", limit: 100) { points { id vector } } }',
        {"ids": list(range(1, 901))},
    ).data
    assert [p["vector"] for p in data["p"]] == [None, None]
    assert [p["vector"] for p in data["s"]["points"]] == [None, None]


def test_points_count_their_ids(client: TestClient) -> None:
    create(client, "wide", WIDE)
    fill(client, "wide", WIDE, 2)
    document = (
        'query($ids: [ID!]!) { points(ids: $ids, collection: "wide", withVector: true) '
        "{ id vector } }"
    )
    # The ids asked for count, found or not: only two of these points exist.
    found = gql(client, document, {"ids": list(range(1, FITS + 1))}).data["points"]
    assert [len(p["vector"]) for p in found] == [WIDE, WIDE]
    response = gql(client, document, {"ids": list(range(1, FITS + 2))})
    assert refused_field(response)["message"] == refusal(FITS + 1, WIDE)


def test_every_kind_of_field_shares_one_budget(client: TestClient) -> None:
    create(client, "wide", WIDE)
    fill(client, "wide", WIDE, 2)
    document = """
    query($v: Vector!, $ids: [ID!]!) {
      q: query(collection: "wide", vector: $v, limit: 100, withVector: true) { id }
      s: scroll(collection: "wide", limit: 80, withVector: true) { points { id } }
      p: points(ids: $ids, collection: "wide", withVector: true) { id }
    }
    """
    variables: dict[str, Any] = {"v": [0.5] * WIDE, "ids": list(range(1, FITS - 180 + 1))}
    assert gql(client, document, variables).data["p"] == [{"id": "1"}, {"id": "2"}]
    variables["ids"] = list(range(1, FITS - 180 + 2))
    error = refused_field(gql(client, document, variables))
    assert error["path"] == ["p"]
    assert error["message"] == refusal(FITS - 179, WIDE, MAX_VECTOR_VALUES_PER_REQUEST - 180 * WIDE)


def test_scroll_counts_its_limit(client: TestClient) -> None:
    create(client, "wide", WIDE)
    fill(client, "wide", WIDE, 2)
    document = (
        'query { a: scroll(collection: "wide", limit: 100, withVector: true) { points { id } } '
        'b: scroll(collection: "wide", limit: %d, withVector: true) { points { id } } }'
    )
    assert gql(client, document % (FITS - 100)).data["b"]["points"] == [{"id": "1"}, {"id": "2"}]
    error = refused_field(gql(client, document % (FITS - 99)))
    assert error["path"] == ["b"]
    assert error["message"] == refusal(FITS - 99, WIDE, MAX_VECTOR_VALUES_PER_REQUEST - 100 * WIDE)


def test_the_budget_is_per_request(client: TestClient) -> None:
    create(client, "wide", WIDE)
    fill(client, "wide", WIDE, 1)
    variables = {"c": "wide", "v": [0.25] * WIDE}
    for _ in range(3):
        data = gql(client, queries([100, FITS - 100]), variables).data
        assert [len(data["a0"]), len(data["a1"])] == [1, 1]
    # Still refused past it, after the requests that used nearly all of theirs.
    refused_field(gql(client, queries([100, FITS - 99]), variables))


def test_each_context_has_a_budget_of_its_own() -> None:
    first = RequestContext(store=None, settings=None, request_id="a")  # type: ignore[arg-type]
    second = RequestContext(store=None, settings=None, request_id="b")  # type: ignore[arg-type]
    first.vectors.left -= 1
    assert first.vectors is not second.vectors
    assert second.vectors.left == MAX_VECTOR_VALUES_PER_REQUEST
    assert VectorBudget().left == MAX_VECTOR_VALUES_PER_REQUEST


def test_an_unknown_collection_is_still_not_found(client: TestClient) -> None:
    for document in (
        'query { points(ids: [1], collection: "nope", withVector: true) { id } }',
        'query { scroll(collection: "nope", withVector: true) { points { id } } }',
    ):
        gql(client, document).assert_error("NOT_FOUND")
