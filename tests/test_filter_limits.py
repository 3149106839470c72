"""What a filter may cost: its keys (length and depth), its match values in all, and no
empty nested filter. Each rule is graph/store/models.py's validate_filter, for every
caller; GraphQL refuses a variable over the match-value total before coercing it."""

from __future__ import annotations

from typing import Any

import pytest
from starlette.testclient import TestClient

from graph.errors import BadUserInput
from graph.store.models import (
    MAX_FILTER_KEY_CHARS,
    MAX_MATCH_VALUES,
    MAX_PAYLOAD_DEPTH,
    TOO_MANY_MATCH_VALUES,
    Condition,
    Filter,
    Match,
    check_filter_key,
    validate_filter,
)
from tests.helpers import gql

COUNT = "query C($f: Filter) { count(filter: $f) }"
DELETE = "mutation D($f: Filter!) { delete(filter: $f) { deleted } }"


@pytest.fixture
def filled(client: TestClient) -> TestClient:
    points = [{"id": i, "vector": [1, i, 0, 0], "payload": {"n": i}} for i in range(20)]
    document = "mutation M($p: [PointInput!]!) { upsert(points: $p) { upserted } }"
    assert gql(client, document, {"p": points}).data == {"upsert": {"upserted": 20}}
    return client


def refused(client: TestClient, document: str, variables: dict[str, Any]) -> str:
    message: str = gql(client, document, variables).assert_error("BAD_USER_INPUT")["message"]
    return message


def count(client: TestClient, flt: dict[str, Any] | None = None) -> int:
    number: int = gql(client, COUNT, {"f": flt}).data["count"]
    return number


def on_key(key: str) -> dict[str, Any]:
    return {"must": [{"key": key, "match": {"value": 1}}]}


@pytest.mark.parametrize(
    "key",
    [
        ".".join(["a"] * MAX_PAYLOAD_DEPTH),
        "a" + "[]" * (MAX_PAYLOAD_DEPTH - 1),
        '"a.b[c]".' + ".".join(["d[0]"] * 31),  # 63 levels: a quoted name is one
    ],
)
def test_a_key_as_deep_as_a_payload_nests_is_taken(key: str) -> None:
    assert check_filter_key(key) == key


DEEPER = "goes deeper than a payload nests (64 levels)"
LONGER = f"A filter key is at most {MAX_FILTER_KEY_CHARS} characters"


@pytest.mark.parametrize(
    ("key", "said"),
    [
        (".".join(["a"] * (MAX_PAYLOAD_DEPTH + 1)), DEEPER),
        ("a" + "[]" * MAX_PAYLOAD_DEPTH, DEEPER),
        (".".join(["a[0]"] * 33), DEEPER),
        # The probe's key: half a million levels held the engine for 9 s.
        (".".join(["a"] * 500_000), LONGER),
    ],
    ids=["names", "brackets", "both", "half-a-million"],
)
def test_a_key_deeper_than_a_payload_nests_is_refused_before_the_engine(
    filled: TestClient, key: str, said: str
) -> None:
    message = refused(filled, COUNT, {"f": on_key(key)})
    assert said in message
    assert len(message) < 300


def test_a_key_over_its_length_is_refused(filled: TestClient) -> None:
    quoted = '"' + "k" * (MAX_FILTER_KEY_CHARS - 2) + '"'
    assert count(filled, on_key(quoted)) == 0  # exactly the bound: taken, matches nothing
    longer = '"' + "k" * (MAX_FILTER_KEY_CHARS - 1) + '"'
    assert refused(filled, COUNT, {"f": on_key(longer)}) == (
        f"A filter key is at most {MAX_FILTER_KEY_CHARS} characters"
    )


def test_the_same_key_rule_holds_below_graphql() -> None:
    with pytest.raises(BadUserInput, match="goes deeper"):
        validate_filter(Filter(must=[Condition(key="a" + "[]" * 64, match=Match(value=1))]))


def any_of(start: int, size: int) -> dict[str, Any]:
    return {"key": "n", "match": {"any": list(range(start, start + size))}}


def test_match_values_are_bounded_over_the_whole_filter(filled: TestClient) -> None:
    half = MAX_MATCH_VALUES // 2
    at_bound = {"should": [any_of(0, half), {"key": "n", "match": {"except": list(range(half))}}]}
    assert count(filled, at_bound) == 20
    over = {"should": [any_of(0, half), any_of(half, half + 1)]}
    assert refused(filled, COUNT, {"f": over}) == TOO_MANY_MATCH_VALUES
    # The probe's shape: 64 lists of 900, each under the per-list bound.
    probe = {"should": [any_of(k * 900, 900) for k in range(64)]}
    assert refused(filled, COUNT, {"f": probe}) == TOO_MANY_MATCH_VALUES
    # In a nested filter. (Written in the document, 10,001 values are over MAX_TOKENS
    # before this rule: the variables are the way to send that many.)
    nested = {"must": [{"filter": over}]}
    assert refused(filled, COUNT, {"f": nested}) == TOO_MANY_MATCH_VALUES


def test_below_graphql_the_total_holds_too() -> None:
    conditions = [
        Condition(key="n", match=Match(any=list(range(5_000)))),
        Condition(key="n", match=Match(except_=list(range(5_001)))),
    ]
    with pytest.raises(BadUserInput, match="in all"):
        validate_filter(Filter(should=conditions))


@pytest.mark.parametrize(
    "flt",
    [
        {"must": [{"filter": {}}]},
        {"must": [{"filter": {"must": []}}]},
        {"should": [{"key": "n", "match": {"value": 1}}, {"filter": {"mustNot": []}}]},
        {"must": [{"filter": {"must": [{"filter": {}}]}}]},
    ],
)
def test_an_empty_nested_filter_is_refused_and_deletes_nothing(
    filled: TestClient, flt: dict[str, Any]
) -> None:
    """`{must: [{filter: {}}]}` matched every point, and passed the rule that a delete's
    filter has a condition: it emptied the collection."""
    assert refused(filled, DELETE, {"f": flt}) == "A nested filter needs at least one condition"
    assert refused(filled, COUNT, {"f": flt}) == "A nested filter needs at least one condition"
    assert count(filled) == 20
