"""The tools' arguments: the recall filter as the GraphQL Filter in JSON, checked by the
same code as GraphQL's."""

from __future__ import annotations

from typing import Any

import mcp_types as types
import pytest

from graph.errors import BadUserInput
from graph.mcp.tools import TOOLS, filter_from_json
from graph.store import models
from tests.conftest import Runner


def test_a_filter_in_json_becomes_the_stores_filter() -> None:
    parsed = filter_from_json(
        {
            "must": [{"key": "topic", "match": {"value": "billing"}}],
            "should": [{"key": "n", "range": {"gte": 1, "lt": 5.5}}],
            "mustNot": [
                {"filter": {"must": [{"key": "tags", "match": {"any": ["a", "b"]}}]}},
                {"key": "kind", "match": {"except": ["x"]}},
            ],
        }
    )
    assert parsed.must == [models.Condition(key="topic", match=models.Match(value="billing"))]
    assert parsed.should[0].range == models.Range(gte=1.0, lt=5.5)
    nested = parsed.must_not[0].filter
    assert nested is not None
    assert nested.must[0].match == models.Match(any=["a", "b"])
    assert parsed.must_not[1].match == models.Match(except_=["x"])


@pytest.mark.parametrize(
    "raw",
    [
        {"must": {"key": "a"}},
        {"must": [{"key": 1, "match": {"value": 1}}]},
        {"must": [{"key": "a", "match": {"value": 1.5}}]},
        {"must": [{"key": "a", "match": {"all": [1]}}]},
        {"must": [{"key": "a", "range": {"gte": "1"}}]},
        {"must": [{"key": "a", "range": {"gte": True}}]},
        {"must": [{"key": "a b", "match": {"value": 1}}]},
        {"must_not": []},
        {"must": ["a"]},
    ],
)
def test_a_bad_filter_is_bad_user_input(raw: dict[str, Any]) -> None:
    with pytest.raises(BadUserInput):
        filter_from_json(raw)


def test_deep_filters_are_refused_before_they_are_walked() -> None:
    raw: dict[str, Any] = {"must": [{"key": "a", "match": {"value": 1}}]}
    for _ in range(1000):
        raw = {"must": [{"filter": raw}]}
    with pytest.raises(BadUserInput, match="nest at most"):
        filter_from_json(raw)


def test_every_argument_says_what_it_takes() -> None:
    for tool in TOOLS:
        assert tool.input_schema["additionalProperties"] is False
        for name, schema in tool.input_schema["properties"].items():
            assert len(schema["description"]) > 20, (tool.name, name)


class _Broken:
    async def recall(self, *args: object) -> list[object]:
        raise RuntimeError("secret detail of the failure")


def test_an_unexpected_failure_is_a_tool_error_without_its_text(
    run: Runner, caplog: pytest.LogCaptureFixture
) -> None:
    from graph.mcp.server import _call
    from graph.mcp.tools import MemoryTools
    from graph.security.principals import OPEN_PRINCIPAL
    from graph.settings import Settings

    class Ready:
        async def ensure(self, tenant: str) -> bool:
            return True

    tools = MemoryTools(_Broken(), Settings(), Ready())  # type: ignore[arg-type]
    params = types.CallToolRequestParams(name="recall", arguments={"text": "x"})
    result = run(_call(tools, params, OPEN_PRINCIPAL, "req-1"))
    assert result.is_error
    [content] = result.content
    assert isinstance(content, types.TextContent)
    assert content.text == "INTERNAL_SERVER_ERROR: Internal server error"
    [record] = [r for r in caplog.records if r.exc_info]
    assert getattr(record, "request_id", None) == "req-1"


class _Recording:
    """A memory service that keeps what the tools asked of it."""

    def __init__(self) -> None:
        self.asked: list[object] = []

    def check_text(self, text: str) -> None:
        pass

    async def remember(self, tenant: str, collection: str, memories: list[object]) -> list[int]:
        self.asked.extend(memories)
        return [1]

    async def recall(self, tenant: str, collection: str, asked: object) -> list[object]:
        self.asked.append(asked)
        return []


class _Ready:
    async def ensure(self, tenant: str) -> bool:
        return True


def test_an_integer_written_as_a_number_without_fraction_is_taken(run: Runner) -> None:
    """JSON Schema's integer is any number without a fraction: clients that write every
    number as a float (5.0) pass their own validation, and GraphQL's Int takes 5.0 too."""
    from graph.mcp.tools import MemoryTools
    from graph.memory.service import NewMemory, Recall
    from graph.security.principals import OPEN_PRINCIPAL
    from graph.settings import Settings

    service = _Recording()
    tools = MemoryTools(service, Settings(), _Ready())  # type: ignore[arg-type]
    run(tools.call("recall", {"text": "x", "limit": 3.0}, OPEN_PRINCIPAL))
    run(tools.call("remember", {"text": "x", "ttl_seconds": 60.0}, OPEN_PRINCIPAL))
    recall, memory = service.asked
    assert isinstance(recall, Recall) and recall.limit == 3 and type(recall.limit) is int
    assert isinstance(memory, NewMemory) and memory.ttl_seconds == 60
    assert type(memory.ttl_seconds) is int
    for arguments in ({"limit": 2.5}, {"limit": True}, {"limit": "3"}, {"limit": 1e300}):
        with pytest.raises(BadUserInput, match=r"^limit must be"):
            run(tools.call("recall", {"text": "x", **arguments}, OPEN_PRINCIPAL))
