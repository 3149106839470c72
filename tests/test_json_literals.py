"""A variable inside a JSON literal (a payload or metadata written in the document) that
the request does not give: graphql-core leaves its Undefined in the value, which reached
the payload check as INTERNAL_SERVER_ERROR. It is BAD_USER_INPUT naming the variable."""

from __future__ import annotations

import pytest
from starlette.testclient import TestClient

from tests.helpers import gql

REMEMBER = 'mutation R{v} {{ remember(memories: [{{text: "x", metadata: {m}}}]) {{ ids }} }}'
UPSERT = (
    "mutation U{v} "
    "{{ upsert(points: [{{id: 1, vector: [1, 0, 0, 0], payload: {m}}}]) {{ upserted }} }}"
)


def declared(literal: str) -> str:
    """The definitions of the variables the literal uses (an unused one is a validation
    error of its own)."""
    names = [n for n in ("x", "y") if f"${n}" in literal]
    return "(" + ", ".join(f"${n}: Int" for n in names) + ")"


@pytest.mark.parametrize("document", [REMEMBER, UPSERT], ids=["metadata", "payload"])
@pytest.mark.parametrize(
    ("literal", "variables", "missing"),
    [
        ("{a: $x}", {}, "x"),
        ("{a: [1, $x]}", {}, "x"),
        ("{a: {b: [{c: $x}]}}", {}, "x"),
        ("{a: $x, b: $y}", {"x": 1}, "y"),
    ],
)
def test_a_variable_not_given_inside_a_json_literal_is_bad_user_input(
    client: TestClient, document: str, literal: str, variables: dict[str, int], missing: str
) -> None:
    response = gql(client, document.format(v=declared(literal), m=literal), variables)
    error = response.assert_error("BAD_USER_INPUT")
    # graphql-core's coercion says where: "Argument 'memories' has invalid value at ..."
    assert f'Variable "${missing}" is used in a JSON value and not given' in error["message"]
    count = gql(client, "{ count }").data["count"]
    assert count == 0, "nothing is written"


@pytest.mark.parametrize("document", [REMEMBER, UPSERT], ids=["metadata", "payload"])
def test_variables_given_inside_a_json_literal_are_used(client: TestClient, document: str) -> None:
    literal = "{a: [1, $x], b: {c: $y}}"
    response = gql(client, document.format(v=declared(literal), m=literal), {"x": 2, "y": 3})
    assert "errors" not in response.body, response.body
    points = gql(client, "{ scroll { points { payload } } }").data["scroll"]["points"]
    memories_metadata = gql(client, '{ recall(text: "x") { metadata } }').data["recall"]
    written = [p["payload"] for p in points if p["payload"]] + [
        m["metadata"] for m in memories_metadata if m["metadata"]
    ]
    assert {"a": [1, 2], "b": {"c": 3}} in written
