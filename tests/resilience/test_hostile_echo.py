"""What a client sends is echoed and logged bounded: a megabyte of id, key or operation
name makes an error message or a log line of a few hundred characters, not a megabyte.
And payload integers past 2^53 stay integers, exactly, on every way back."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from graph.app import create_app
from graph.errors import MAX_SHOWN_CHARS
from tests.conftest import make_settings
from tests.helpers import UPSERT, gql

HUGE = 1_000_000
MAX_MESSAGE_CHARS = 400
COUNT = "query Count($f: Filter) { count(filter: $f) }"
GET = "query Get($ids: [ID!]!) { points(ids: $ids) { id payload } }"


def message_of(client: TestClient, query: str, variables: dict[str, Any]) -> str:
    error = gql(client, query, variables).assert_error("BAD_USER_INPUT")
    message: str = error["message"]
    return message


@pytest.mark.parametrize(
    ("query", "variables"),
    [
        (GET, {"ids": ["9" * HUGE]}),
        (UPSERT, {"points": [{"id": "9" * HUGE, "vector": [1, 0, 0, 0]}]}),
        (COUNT, {"f": {"must": [{"key": "a" * HUGE, "match": {"value": 1}, "range": {"gt": 1}}]}}),
        (COUNT, {"f": {"must": [{"key": "a b" * HUGE, "match": {"value": 1}}]}}),
        (
            UPSERT,
            {
                "points": [
                    {"id": "{" + "0" * 32 + "}", "vector": [1, 0, 0, 0]},
                    {"id": "0" * 32, "vector": [1, 0, 0, 0]},
                ]
            },
        ),
    ],
    ids=["id to read", "id to write", "key of a bad condition", "bad key", "duplicate id"],
)
def test_error_messages_echo_a_bounded_part_of_the_input(
    client: TestClient, query: str, variables: dict[str, Any]
) -> None:
    assert len(message_of(client, query, variables)) < MAX_MESSAGE_CHARS


def test_the_operation_name_is_logged_bounded(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    name = "N" * HUGE
    with TestClient(create_app(make_settings(tmp_path, log_flush_seconds=0))) as client:
        with caplog.at_level(logging.INFO, logger="graph.request"):
            response = client.post(
                "/graphql", json={"query": f"query {name} {{ count }}", "operationName": name}
            )
        assert response.status_code == 200 and "errors" not in response.json()
    logged = [r for r in caplog.records if r.name == "graph.request" and r.msg == "graphql request"]
    assert logged
    for record in logged:
        # A field the logger's `extra` set: not a declared LogRecord attribute.
        assert len(record.__dict__["operation_name"]) <= MAX_SHOWN_CHARS + 40
        assert len(record.getMessage()) < MAX_MESSAGE_CHARS


@pytest.mark.parametrize(
    "value", [2**53 + 1, -(2**53) - 1, 2**63 - 1, 2**63 + 1, 2**64 - 1, -(2**63)]
)
def test_integers_past_2_to_the_53_stay_exact(client: TestClient, value: int) -> None:
    payload = {"n": value, "list": [value], "nested": {"n": value}}
    point = {"id": 1, "vector": [1, 0, 0, 0], "payload": payload}
    assert gql(client, UPSERT, {"points": [point]}).data == {"upsert": {"upserted": 1}}
    literal = '{ points(ids: ["1"]) { payload } }'
    answers = [
        gql(client, GET, {"ids": ["1"]}).data["points"][0]["payload"],
        gql(client, literal).data["points"][0]["payload"],
        gql(client, "{ scroll(limit: 1) { points { payload } } }").data["scroll"]["points"][0][
            "payload"
        ],
        gql(client, "{ query(vector: [1, 0, 0, 0], limit: 1) { payload } }").data["query"][0][
            "payload"
        ],
    ]
    for answer in answers:
        assert answer == payload
        assert type(answer["n"]) is int and type(answer["nested"]["n"]) is int
    if -(2**63) <= value < 2**63:  # match takes signed 64-bit integers
        flt = {"must": [{"key": "n", "match": {"value": value}}]}
        assert gql(client, COUNT, {"f": flt}).data["count"] == 1
        flt = {"must": [{"key": "n", "match": {"value": value - 1 if value > 0 else value + 1}}]}
        assert gql(client, COUNT, {"f": flt}).data["count"] == 0
