"""Every part of the schema is described, as a client introspecting the server sees it."""

from __future__ import annotations

import re
from typing import Any

from starlette.testclient import TestClient

from graph.errors import ErrorCode
from graph.graphql.limits import MAX_EXPANDED_FIELDS
from graph.graphql.prepare import MAX_ERRORS
from graph.graphql.schema.resolvers import MAX_LIMIT
from graph.security.principals import scope_for
from graph.settings import Settings
from tests.helpers import gql

INTROSPECTION = """
{
  __schema {
    types {
      name kind description
      fields { name description args { name description } }
      inputFields { name description }
      enumValues { name description }
    }
  }
}
"""
# GraphQL's own scalars; the introspection types (__*) are skipped by name.
BUILT_IN_SCALARS = {"String", "Int", "Float", "Boolean", "ID"}


def introspected(client: TestClient) -> list[dict[str, Any]]:
    types: list[dict[str, Any]] = gql(client, INTROSPECTION).data["__schema"]["types"]
    return [
        t for t in types if not t["name"].startswith("__") and t["name"] not in BUILT_IN_SCALARS
    ]


def described(item: dict[str, Any]) -> bool:
    return bool((item["description"] or "").strip())


def every_description(types: list[dict[str, Any]]) -> dict[str, str]:
    """Each described thing by the name a reader would look it up by: Type, Type.field,
    Type.field(argument), Input.field, Enum.VALUE."""
    found: dict[str, str] = {}
    for type_ in types:
        name = type_["name"]
        found[name] = type_["description"] or ""
        for field in type_["fields"] or ():
            found[f"{name}.{field['name']}"] = field["description"] or ""
            for arg in field["args"]:
                found[f"{name}.{field['name']}({arg['name']})"] = arg["description"] or ""
        for field in type_["inputFields"] or ():
            found[f"{name}.{field['name']}"] = field["description"] or ""
        for value in type_["enumValues"] or ():
            found[f"{name}.{value['name']}"] = value["description"] or ""
    return found


def test_every_type_field_argument_and_value_has_a_description(client: TestClient) -> None:
    descriptions = every_description(introspected(client))
    assert len(descriptions) > 100  # the walk reached arguments, input fields and values
    assert [name for name, text in descriptions.items() if not text.strip()] == []


def test_the_custom_scalars_are_described(client: TestClient) -> None:
    scalars = {t["name"]: t for t in introspected(client) if t["kind"] == "SCALAR"}
    assert {"Vector", "JSON", "DateTime"} <= set(scalars)
    assert all(described(s) for s in scalars.values())


def test_every_root_field_names_the_scope_it_needs(client: TestClient) -> None:
    types = {t["name"]: t for t in introspected(client)}
    for type_name, operation_type in (("Query", "query"), ("Mutation", "mutation")):
        for field in types[type_name]["fields"]:
            scope = scope_for(operation_type, field["name"])
            expected = f"Scope: {scope.value} (FORBIDDEN" if scope else "Scope: none."
            assert expected in field["description"], (type_name, field["name"])
            assert "Errors: " in field["description"], (type_name, field["name"])


def test_every_upper_case_name_is_a_real_code_or_setting(client: TestClient) -> None:
    """A description that names an error code or a setting names one that exists."""
    known = {c.value for c in ErrorCode} | {name.upper() for name in Settings.names()}
    named = re.compile(r"\b[A-Z][A-Z0-9]*(?:_[A-Z0-9]+)+\b")
    wrong = {
        (where, word)
        for where, text in every_description(introspected(client)).items()
        for word in named.findall(text)
        if word not in known
    }
    assert wrong == set()


def test_the_limits_described_are_the_limits_enforced(client: TestClient) -> None:
    descriptions = every_description(introspected(client))
    assert f"1..{MAX_LIMIT}, default 10" in descriptions["Query.query(limit)"]
    [default] = [d for name, d, _ in Settings.described() if name == "MAX_IDS_PER_REQUEST"]
    assert f"1 to MAX_IDS_PER_REQUEST (default {default}) ids" in descriptions["Query.points(ids)"]
    # The schema cannot import these (they sit above it), so its words are checked here.
    assert f"or {MAX_EXPANDED_FIELDS} fields once fragments" in descriptions["Query"]
    assert f"At most {MAX_ERRORS} errors per response" in descriptions["Query"]
    vector = [0.1, 0.2, 0.3, 0.4]
    over = gql(client, "query($v: Vector!) { query(vector: $v, limit: 101) { id } }", {"v": vector})
    over.assert_error("BAD_USER_INPUT")
    at = gql(client, "query($v: Vector!) { query(vector: $v, limit: 100) { id } }", {"v": vector})
    assert at.data == {"query": []}


def test_scroll_does_not_promise_the_clients_id_order(client: TestClient) -> None:
    scroll = every_description(introspected(client))["Query.scroll"]
    assert "not the order of the client's ids" in scroll
    ids = list(range(1, 31))
    points = [{"id": i, "vector": [1.0, 0.0, 0.0, float(i)]} for i in ids]
    gql(client, "mutation($p: [PointInput!]!) { upsert(points: $p) { upserted } }", {"p": points})
    page = gql(client, "{ scroll(limit: 30) { points { id } nextCursor } }").data["scroll"]
    scrolled = [int(p["id"]) for p in page["points"]]
    assert sorted(scrolled) == ids and page["nextCursor"] is None
    # What the description warns of: stored ids are derived, so the order is not the ids'.
    assert scrolled != ids
