"""The points budget (MAX_POINTS_PER_REQUEST) reads each `limit` and `ids` as execution
will: a variable's default when the request leaves the variable out, and a number as
GraphQL's Int coerces it (a JSON 100.0 is 100). Both were once read as nothing, and an
operation of 15 aliases returned 15,000 points (graph/graphql/policy.py)."""

from __future__ import annotations

from typing import Any

import pytest
from starlette.testclient import TestClient

from tests.helpers import gql

BUDGET = 1_000  # MAX_POINTS_PER_REQUEST's default
ALIASES = 15


def ids_literal(count: int) -> str:
    return "[" + " ".join(str(i) for i in range(count)) + "]"


def aliases(field: str, count: int = ALIASES, prefix: str = "a") -> str:
    return " ".join(f"{prefix}{i}: {field}" for i in range(count))


@pytest.fixture
def filled(client: TestClient) -> TestClient:
    """100 points with a payload each, so that anything executed would be answered."""
    points = [{"id": i, "vector": [1, i, 0, 0], "payload": {"n": i}} for i in range(100)]
    document = "mutation M($p: [PointInput!]!) { upsert(points: $p) { upserted } }"
    assert gql(client, document, {"p": points}).data == {"upsert": {"upserted": 100}}
    return client


def assert_refused(client: TestClient, document: str, variables: dict[str, Any], asks: int) -> None:
    """Refused as a whole before anything ran, saying how many points it asked for."""
    response = gql(client, document, variables)
    assert "data" not in response.body, str(response.body)[:500]
    error = response.assert_error("BAD_USER_INPUT")
    assert error["message"] == (
        f"An operation may return at most {BUDGET} points or memories over all its "
        f"fields; this one asks for {asks}"
    )
    assert len(response.body["errors"]) == 1
    assert len(response.http.content) < 2_000


POINTS = "points(ids: $i) { id payload }"
QUERY = "query(vector: [1, 0, 0, 0], limit: $l) { id payload }"
SCROLL = "scroll(limit: $l) { points { id payload } }"


@pytest.mark.parametrize(
    ("document", "asks"),
    [
        # The probe: 15 aliases of 1,000 ids each, all from the variable's default.
        (f"query Q($i: [ID!]! = {ids_literal(1_000)}) {{ {aliases(POINTS)} }}", 15_000),
        # Through a fragment and an inline fragment too.
        (
            f"query Q($i: [ID!]! = {ids_literal(400)}) {{ ...F ... on Query {{ c: {POINTS} }} }} "
            f"fragment F on Query {{ a: {POINTS} b: {POINTS} }}",
            1_200,
        ),
        (f"query Q($l: Int! = 100) {{ {aliases(QUERY)} }}", 1_500),
        (
            f"query Q($l: Int! = 100) {{ ...F {aliases(SCROLL, 5, 's')} }} "
            f"fragment F on Query {{ {aliases(QUERY, 10)} }}",
            1_500,
        ),
        # A nullable variable with a default, used where an Int! is expected.
        (f"query Q($l: Int = 100) {{ {aliases(SCROLL)} }}", 1_500),
    ],
    ids=["ids-aliases", "ids-fragments", "limit-aliases", "limit-fragments", "nullable-limit"],
)
def test_variable_defaults_count_when_the_variable_is_left_out(
    filled: TestClient, document: str, asks: int
) -> None:
    assert_refused(filled, document, {}, asks)


@pytest.mark.parametrize(
    ("document", "variables", "asks"),
    [
        (f"query Q($l: Int!) {{ {aliases(SCROLL)} }}", {"l": 100.0}, 1_500),
        (f"query Q($l: Int!) {{ {aliases(QUERY)} }}", {"l": 1e2}, 1_500),
        (
            f"query Q($l: Int!) {{ ...F {aliases(QUERY, 5, 'q')} }} "
            f"fragment F on Query {{ {aliases(SCROLL, 10)} }}",
            {"l": 100.0},
            1_500,
        ),
        # A given value, float or not, wins over the default.
        (f"query Q($l: Int! = 1) {{ {aliases(SCROLL)} }}", {"l": 100.0}, 1_500),
    ],
    ids=["scroll", "query", "fragments", "over-a-default"],
)
def test_a_float_limit_counts_as_the_int_it_coerces_to(
    filled: TestClient, document: str, variables: dict[str, Any], asks: int
) -> None:
    assert_refused(filled, document, variables, asks)


def test_a_single_id_given_for_a_list_counts_as_one(filled: TestClient) -> None:
    """GraphQL coerces a lone value given for a list into a list of one."""
    document = f"query Q($l: Int! = 100, $i: [ID!]!) {{ {aliases(SCROLL, 10)} p: {POINTS} }}"
    assert_refused(filled, document, {"i": "1"}, 1_001)


def test_the_budget_holds_to_the_point_through_defaults(filled: TestClient) -> None:
    """Exactly MAX_POINTS_PER_REQUEST through defaults is served; one more is refused."""
    fields = f"{aliases(SCROLL, 9)} p: {POINTS}"
    exactly = f"query Q($l: Int! = 100, $i: [ID!]! = {ids_literal(100)}) {{ {fields} }}"
    data = gql(filled, exactly, {}).data
    assert len(data["p"]) == 100
    assert sum(len(data[f"a{i}"]["points"]) for i in range(9)) == 900
    one_more = f"query Q($l: Int! = 100, $i: [ID!]! = {ids_literal(101)}) {{ {fields} }}"
    assert_refused(filled, one_more, {}, 1_001)
    # The same through a float given for the limit: 900 + 100, then 901 + 100.
    given = f"query Q($l: Int!, $i: [ID!]! = {ids_literal(100)}) {{ {fields} }}"
    assert len(gql(filled, given, {"l": 100.0}).data["p"]) == 100
    plus = given.replace(" p: ", " x: scroll(limit: 1) { nextCursor } p: ")
    assert_refused(filled, plus, {"l": 100.0}, 1_001)
