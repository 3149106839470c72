"""The recall filter's numbers and limits over /mcp, in-process: what the SDK hands the tool
(a JSON literal's integer of any size, 1e400 read as inf, NaN) is a BAD_USER_INPUT tool
error, never an internal one; and a filter over its limits is refused, in GraphQL's words,
before it is converted."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from typing import Any

import pytest
from starlette.testclient import TestClient

from graph.app import create_app
from graph.graphql.schema import inputs
from graph.settings import Settings
from graph.store.models import MAX_FILTER_CONDITIONS, MAX_MATCH_VALUES

# The SDK's DNS-rebinding guard serves a loopback server under loopback names only.
BASE_URL = "http://127.0.0.1:8000"
MCP_HEADERS = {
    "accept": "application/json, text/event-stream",
    "content-type": "application/json",
}
GRAPHQL_RECALL = 'query Q($f: Filter) { recall(text: "acme", filter: $f) { id } }'
HUGE = 10**400
# Wide: only a safety net; what is converted is counted.
SECONDS = 5


@pytest.fixture
def app(settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings), base_url=BASE_URL) as client:
        yield client


def call(client: TestClient, tool: str, arguments: dict[str, Any]) -> str:
    """The tool's answer, as text."""
    raw = json.dumps(arguments, separators=(",", ":"))
    body = (
        '{"jsonrpc":"2.0","id":1,"method":"tools/call",'
        f'"params":{{"name":"{tool}","arguments":{raw}}}}}'
    )
    response = client.post("/mcp", content=body.encode(), headers=MCP_HEADERS)
    assert response.status_code == 200, response.text
    result = response.json()["result"]
    text: str = result["content"][0]["text"]
    assert result.get("isError", False) == text.startswith(("BAD_USER_INPUT", "INTERNAL"))
    return text


def graphql_error(client: TestClient, query: str, variables: dict[str, Any] | None = None) -> str:
    response = client.post("/graphql", json={"query": query, "variables": variables})
    message: str = response.json()["errors"][0]["message"]
    return message


@pytest.fixture
def conditions_built(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """How many filter conditions the tool converted (GraphQL input objects it built)."""
    built = [0]
    original = inputs.Condition

    def counted(**fields: Any) -> inputs.Condition:
        built[0] += 1
        return original(**fields)

    monkeypatch.setattr(inputs, "Condition", counted)
    return built


@pytest.mark.parametrize("bound", ["gt", "gte", "lt", "lte"])
@pytest.mark.parametrize("number", [HUGE, -HUGE, 2**1024], ids=["10^400", "-10^400", "2^1024"])
def test_an_integer_bound_past_floats_range_is_bad_user_input(
    app: TestClient, caplog: pytest.LogCaptureFixture, bound: str, number: int
) -> None:
    with caplog.at_level(logging.INFO):
        # json.dumps writes the integer as a literal of all its digits, as the probe sent it.
        flt = {"must": [{"key": "user", "range": {bound: number}}]}
        text = call(app, "recall", {"text": "acme", "filter": flt})
    assert text == "BAD_USER_INPUT: Range bounds must be finite numbers"
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    # GraphQL's words for the same literal.
    literal = '{ recall(text: "acme", filter: {must: [{key: "user", range: {%s: %s}}]}) { id } }'
    assert graphql_error(app, literal % (bound, number)) == text.removeprefix("BAD_USER_INPUT: ")


def test_a_nested_integer_bound_past_floats_range_is_bad_user_input(
    app: TestClient, caplog: pytest.LogCaptureFixture
) -> None:
    flt = {"should": [{"filter": {"mustNot": [{"key": "n", "range": {"gte": 1, "lt": HUGE}}]}}]}
    with caplog.at_level(logging.INFO):
        text = call(app, "recall", {"text": "acme", "filter": flt})
    assert text == "BAD_USER_INPUT: Range bounds must be finite numbers"
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


def conditions(count: int) -> list[dict[str, Any]]:
    return [{"key": "user", "match": {"value": n}} for n in range(count)]


def test_65_conditions_are_refused_in_graphqls_words_before_any_is_converted(
    app: TestClient, conditions_built: list[int]
) -> None:
    flt = {"must": conditions(MAX_FILTER_CONDITIONS + 1)}
    expected = graphql_error(app, GRAPHQL_RECALL, {"f": flt})
    assert expected == f"A filter has at most {MAX_FILTER_CONDITIONS} conditions"
    assert call(app, "recall", {"text": "acme", "filter": flt}) == f"BAD_USER_INPUT: {expected}"
    assert conditions_built == [0]


def test_conditions_are_counted_across_lists_and_nesting(
    app: TestClient, conditions_built: list[int]
) -> None:
    flt = {
        "must": conditions(60),
        "should": [{"filter": {"must": conditions(3)}}],
        "mustNot": [{"key": "u", "range": {"gt": 1}}] * 100_000,
    }
    text = call(app, "recall", {"text": "acme", "filter": flt})
    assert text == f"BAD_USER_INPUT: A filter has at most {MAX_FILTER_CONDITIONS} conditions"
    assert conditions_built == [MAX_FILTER_CONDITIONS]  # the 100,000 were never read


def test_a_filter_of_100_000_conditions_is_refused_without_converting_them(
    app: TestClient, conditions_built: list[int]
) -> None:
    flat = {"must": [{"key": "user", "range": {"gt": 10}}] * 100_000}
    nested = {"must": [{"filter": flat}]}
    for flt in (flat, nested):
        started = time.perf_counter()
        text = call(app, "recall", {"text": "acme", "filter": flt})
        assert time.perf_counter() - started < SECONDS
        assert text == f"BAD_USER_INPUT: A filter has at most {MAX_FILTER_CONDITIONS} conditions"
    assert conditions_built == [0]


@pytest.mark.parametrize("name", ["any", "except"])
@pytest.mark.parametrize("count", [MAX_MATCH_VALUES + 1, 400_000])
def test_a_match_list_over_the_limit_is_refused_in_graphqls_words(
    app: TestClient, name: str, count: int
) -> None:
    flt = {"must": [{"key": "user", "match": {name: list(range(count))}}]}
    expected = graphql_error(app, GRAPHQL_RECALL, {"f": flt})
    assert expected == f"At most {MAX_MATCH_VALUES} values in a list"
    started = time.perf_counter()
    assert call(app, "recall", {"text": "acme", "filter": flt}) == f"BAD_USER_INPUT: {expected}"
    assert time.perf_counter() - started < SECONDS


def test_match_values_are_counted_across_the_filter_in_graphqls_words(
    app: TestClient, conditions_built: list[int]
) -> None:
    half = MAX_MATCH_VALUES // 2 + 1
    flt = {
        "must": [{"key": "a", "match": {"any": list(range(half))}}],
        "mustNot": [
            {"filter": {"must": [{"key": "b", "match": {"except": list(range(half))}}]}},
            *conditions(10),
        ],
    }
    expected = graphql_error(app, GRAPHQL_RECALL, {"f": flt})
    assert expected.startswith("A filter's match.any and match.except lists hold at most")
    assert call(app, "recall", {"text": "acme", "filter": flt}) == f"BAD_USER_INPUT: {expected}"
    assert conditions_built == [1]  # refused while reading the second list


def test_a_filter_within_the_limits_still_recalls(app: TestClient) -> None:
    flt = {
        "must": [{"key": "n", "range": {"gte": -(2**62), "lt": 10**300}}],
        "mustNot": [{"key": "tag", "match": {"except": list(range(MAX_MATCH_VALUES))}}],
        "should": conditions(MAX_FILTER_CONDITIONS - 2),
    }
    assert json.loads(call(app, "recall", {"text": "acme", "filter": flt})) == {"memories": []}
