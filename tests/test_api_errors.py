"""Every error a client can cause: its code, its request id, and that nothing was written."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from graph.app import create_app
from graph.settings import Settings
from graph.store import create_store
from tests.conftest import make_settings
from tests.helpers import (
    QUERY,
    UPSERT,
    GraphQLResponse,
    SilentServer,
    count_points,
    free_port,
    gql,
    point,
)

GOOD = [1.0, 0.0, 0.0, 0.0]


@pytest.fixture
def seeded(client: TestClient) -> TestClient:
    assert gql(client, UPSERT, {"points": [point(1, GOOD, kind="seed")]}).data
    return client


def assert_unchanged(client: TestClient) -> None:
    assert count_points(client) == 1
    payload = gql(client, '{ points(ids: ["1"]) { payload } }').data["points"][0]["payload"]
    assert payload == {"kind": "seed"}


def upsert(client: TestClient, points: list[dict[str, Any]], **extra: Any) -> GraphQLResponse:
    return gql(client, UPSERT, {"points": points, **extra})


# GRAPHQL_PARSE_FAILED


def test_syntax_error_is_parse_failed(seeded: TestClient) -> None:
    result = gql(seeded, "mutation { upsert(points: [{id: 2, vector: [1,0,0,0]}]) { upserted ")
    result.assert_error("GRAPHQL_PARSE_FAILED")
    assert "data" not in result.body
    assert_unchanged(seeded)


def test_too_many_tokens_is_parse_failed(tmp_path: Path) -> None:
    with TestClient(create_app(make_settings(tmp_path, max_tokens=50))) as client:
        many = ", ".join(["0"] * 60)
        gql(
            client, f"mutation {{ upsert(points: [{{id: 2, vector: [{many}]}}]) {{ upserted }} }}"
        ).assert_error("GRAPHQL_PARSE_FAILED")
        assert count_points(client) == 0


# GRAPHQL_VALIDATION_FAILED


def test_unknown_field_is_validation_failed(seeded: TestClient) -> None:
    error = gql(seeded, "{ query(vector: [1,0,0,0]) { id secret } }").assert_error(
        "GRAPHQL_VALIDATION_FAILED"
    )
    assert "secret" in error["message"]


def test_wrong_argument_type_is_validation_failed(seeded: TestClient) -> None:
    mutation = 'mutation { upsert(points: [{id: 2, vector: "x"}]) { upserted } }'
    result = gql(seeded, mutation)
    assert result.codes and set(result.codes) <= {"GRAPHQL_VALIDATION_FAILED", "BAD_USER_INPUT"}
    assert_unchanged(seeded)


def test_depth_limit(tmp_path: Path) -> None:
    with TestClient(create_app(make_settings(tmp_path, max_query_depth=1))) as client:
        deep = "{ scroll { points { id } } }"
        gql(client, deep).assert_error("GRAPHQL_VALIDATION_FAILED")


def test_alias_flood(seeded: TestClient) -> None:
    aliases = " ".join(f"a{i}: health {{ status }}" for i in range(20))
    gql(seeded, f"{{ {aliases} }}").assert_error("GRAPHQL_VALIDATION_FAILED")


def test_directive_flood(seeded: TestClient) -> None:
    directives = " ".join("@include(if: true)" for _ in range(12))
    result = gql(seeded, f"{{ health {directives} {{ status }} }}")
    result.assert_error("GRAPHQL_VALIDATION_FAILED")
    assert "at most 10 directives" in result.http.text


# BAD_USER_INPUT


@pytest.mark.parametrize(
    "points",
    [
        [point(2, GOOD), point(3, [1.0, 0.0])],  # one wrong dimension rejects the batch
        [point(2, GOOD), point(-3, GOOD)],  # negative id
        [point(2, GOOD), point("not-an-id", GOOD)],
        [point(2, GOOD), point(str(2**64), GOOD)],  # beyond unsigned 64-bit
        [point(2, GOOD), {"id": 3, "vector": GOOD, "payload": [1, 2]}],  # payload not an object
        [point(2, GOOD), point(2, GOOD)],  # the same id twice
        [point(2, GOOD), {"id": 3, "vector": [1, "x", 0, 0]}],
        [point(2, GOOD), {"id": 3, "vector": []}],
        [point(2, GOOD), {"id": 3, "vector": [1e39, 0, 0, 0]}],
        [point(1, GOOD, kind="changed"), {"id": 3, "vector": [True, 0, 0, 0]}],
    ],
)
def test_bad_upsert_batch_writes_nothing(seeded: TestClient, points: list[dict[str, Any]]) -> None:
    upsert(seeded, points).assert_error("BAD_USER_INPUT")
    assert_unchanged(seeded)


def test_inline_literal_out_of_range_is_bad_user_input(seeded: TestClient) -> None:
    mutation = "mutation { upsert(points: [{id: 2, vector: [1e39, 0, 0, 0]}]) { upserted } }"
    gql(seeded, mutation).assert_error("BAD_USER_INPUT")
    assert_unchanged(seeded)


def test_missing_variable_is_bad_user_input(seeded: TestClient) -> None:
    gql(seeded, UPSERT, {}).assert_error("BAD_USER_INPUT")
    assert_unchanged(seeded)


def test_too_many_points_per_upsert(tmp_path: Path) -> None:
    with TestClient(create_app(make_settings(tmp_path, max_upsert_points=2))) as client:
        points = [point(i, GOOD) for i in range(3)]
        upsert(client, points).assert_error("BAD_USER_INPUT")
        assert count_points(client) == 0


@pytest.mark.parametrize("limit", [0, 101, -1])
def test_limit_outside_1_to_100(seeded: TestClient, limit: int) -> None:
    gql(seeded, QUERY, {"vector": GOOD, "limit": limit}).assert_error("BAD_USER_INPUT")


def test_negative_offset(seeded: TestClient) -> None:
    gql(seeded, QUERY, {"vector": GOOD, "offset": -1}).assert_error("BAD_USER_INPUT")


def test_query_vector_of_wrong_dimension(seeded: TestClient) -> None:
    gql(seeded, QUERY, {"vector": [1.0, 0.0]}).assert_error("BAD_USER_INPUT")


@pytest.mark.parametrize(
    "flt",
    [
        {"must": [{"key": "kind"}]},  # neither match nor range
        {"must": [{"key": "kind", "match": {"value": 1.5}}]},  # floats cannot be matched
        {"must": [{"key": "kind", "match": {"any": ["a", 1]}}]},  # mixed any
        {"must": [{"key": "kind", "match": {"value": "a", "any": ["b"]}}]},
        {"must": [{"match": {"value": "a"}}]},  # no key
        {"must": [{"key": "n", "range": {}}]},
    ],
)
def test_malformed_filter(seeded: TestClient, flt: dict[str, Any]) -> None:
    gql(seeded, QUERY, {"vector": GOOD, "filter": flt}).assert_error("BAD_USER_INPUT")
    delete = "mutation D($f: Filter) { delete(filter: $f) { deleted } }"
    gql(seeded, delete, {"f": flt}).assert_error("BAD_USER_INPUT")
    assert_unchanged(seeded)


def test_delete_needs_exactly_one_of_ids_or_filter(seeded: TestClient) -> None:
    gql(seeded, "mutation { delete { deleted } }").assert_error("BAD_USER_INPUT")
    both = 'mutation { delete(ids: ["1"], filter: {must: []}) { deleted } }'
    gql(seeded, both).assert_error("BAD_USER_INPUT")
    gql(seeded, "mutation { delete(filter: {}) { deleted } }").assert_error("BAD_USER_INPUT")
    assert_unchanged(seeded)


def test_bad_collection_name_and_dimension(seeded: TestClient) -> None:
    create = 'mutation { createCollection(name: "../etc", dimension: 3) { name } }'
    gql(seeded, create).assert_error("BAD_USER_INPUT")
    create = 'mutation { createCollection(name: "ok", dimension: 0) { name } }'
    gql(seeded, create).assert_error("BAD_USER_INPUT")
    gql(seeded, 'mutation { deleteCollection(name: "memories") }').assert_error("BAD_USER_INPUT")
    names = [c["name"] for c in gql(seeded, "{ collections { name } }").data["collections"]]
    assert names == ["memories"]


# NOT_FOUND and ALREADY_EXISTS


def test_unknown_collection_is_not_found(seeded: TestClient) -> None:
    gql(seeded, QUERY, {"vector": GOOD, "collection": "nope"}).assert_error("NOT_FOUND")
    upsert(seeded, [point(5, GOOD)], collection="nope").assert_error("NOT_FOUND")
    gql(seeded, 'mutation { deleteCollection(name: "nope") }').assert_error("NOT_FOUND")
    assert_unchanged(seeded)


def test_creating_an_existing_collection(seeded: TestClient) -> None:
    create = 'mutation { createCollection(name: "memories", dimension: 8) { name } }'
    gql(seeded, create).assert_error("ALREADY_EXISTS")
    info = gql(seeded, "{ collections { dimension } }").data["collections"]
    assert info == [{"dimension": 4}]


# PAYLOAD_TOO_LARGE and BAD_REQUEST: refused before any parsing


def test_body_over_the_limit_is_413(tmp_path: Path) -> None:
    with TestClient(create_app(make_settings(tmp_path, max_body_bytes=2048))) as client:
        points = [point(i, GOOD, text="x" * 100) for i in range(40)]
        response = client.post("/graphql", json={"query": UPSERT, "variables": {"points": points}})
        assert response.status_code == 413
        body = response.json()
        assert body["errors"][0]["extensions"] == {
            "code": "PAYLOAD_TOO_LARGE",
            "requestId": response.headers["x-request-id"],
        }
        assert count_points(client) == 0


def test_streamed_body_over_the_limit_is_413(tmp_path: Path) -> None:
    with TestClient(create_app(make_settings(tmp_path, max_body_bytes=2048))) as client:

        def chunks() -> Iterator[bytes]:
            yield b'{"query": "'
            for _ in range(100):
                yield b"x" * 100
            yield b'"}'

        response = client.post(
            "/graphql", content=chunks(), headers={"Content-Type": "application/json"}
        )
        assert response.status_code == 413
        assert response.json()["errors"][0]["extensions"]["code"] == "PAYLOAD_TOO_LARGE"


def refused(response: Any, status: int) -> None:
    assert response.status_code == status
    error = response.json()["errors"][0]
    assert error["extensions"] == {
        "code": "BAD_REQUEST",
        "requestId": response.headers["x-request-id"],
    }


def test_batched_requests_are_refused(seeded: TestClient) -> None:
    batch = [{"query": UPSERT, "variables": {"points": [point(9, GOOD)]}}] * 2
    refused(seeded.post("/graphql", json=batch), 400)
    assert_unchanged(seeded)


def test_mutations_over_get_are_refused(seeded: TestClient) -> None:
    mutation = 'mutation { delete(ids: ["1"]) { deleted } }'
    preflight = {"graphql-require-preflight": "1"}
    response = seeded.get("/graphql", params={"query": mutation}, headers=preflight)
    refused(response, 405)
    assert response.headers["allow"] == "POST"
    # Without a preflight header the CSRF guard refuses it first (tests/http).
    refused(seeded.get("/graphql", params={"query": mutation}), 400)
    assert_unchanged(seeded)


def test_form_and_text_bodies_are_refused(seeded: TestClient) -> None:
    mutation = 'mutation { delete(ids: ["1"]) { deleted } }'
    refused(seeded.post("/graphql", data={"query": mutation}), 415)
    text = {"Content-Type": "text/plain"}
    refused(seeded.post("/graphql", content=f'{{"query": "{mutation}"}}', headers=text), 415)
    assert_unchanged(seeded)


@pytest.mark.parametrize(
    "body",
    [
        b"{not json",
        b'"just a string"',
        b'{"query": 5}',
        b'{"query": "{ health { status } }", "variables": [1]}',
        b'{"query": ""}',
    ],
)
def test_malformed_request_bodies(seeded: TestClient, body: bytes) -> None:
    response = seeded.post("/graphql", content=body, headers={"Content-Type": "application/json"})
    refused(response, 400)


def test_subscription_and_unknown_operation_name_are_refused(seeded: TestClient) -> None:
    response = seeded.post(
        "/graphql",
        json={"query": "query A { health { status } }", "operationName": "B"},
    )
    refused(response, 400)


# STORE_UNAVAILABLE, STORE_TIMEOUT: a real remote adapter pointed at nothing, or at silence


def remote_settings(tmp_path: Path, port: int, timeout: float = 1.0) -> Settings:
    return make_settings(
        tmp_path, qdrant_url=f"http://127.0.0.1:{port}", store_timeout_seconds=timeout
    )


def test_store_down_is_store_unavailable_and_health_says_so(tmp_path: Path) -> None:
    with TestClient(create_app(remote_settings(tmp_path, free_port()))) as client:
        assert client.get("/healthz").status_code == 200
        assert client.get("/readyz").status_code == 503
        health = gql(client, "{ health { status } }").data["health"]
        assert health == {"status": "UNAVAILABLE"}
        gql(client, QUERY, {"vector": GOOD}).assert_error("STORE_UNAVAILABLE")
        upsert(client, [point(1, GOOD)]).assert_error("STORE_UNAVAILABLE")


def test_hung_store_is_store_timeout(tmp_path: Path) -> None:
    with SilentServer() as silent:
        settings = remote_settings(tmp_path, silent.port, timeout=0.5)
        with TestClient(create_app(settings)) as client:
            gql(client, QUERY, {"vector": GOOD}).assert_error("STORE_TIMEOUT")
            assert client.get("/readyz").status_code == 503


# INTERNAL_SERVER_ERROR


def test_unexpected_failure_hides_its_text_and_logs_the_traceback_once(
    settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    store = create_store(settings)

    async def broken_query(*args: Any, **kwargs: Any) -> Any:
        # A fake fault: no real engine fails like this on demand.
        raise RuntimeError("secret internal detail")

    store.query = broken_query  # type: ignore[method-assign]
    with TestClient(create_app(settings, store)) as client, caplog.at_level(logging.ERROR):
        result = gql(client, QUERY, {"vector": GOOD})
        error = result.assert_error("INTERNAL_SERVER_ERROR")
    assert error["message"] == "Internal server error"
    assert "secret" not in result.http.text
    assert "Traceback" not in result.http.text
    records = [r for r in caplog.records if r.name == "graph.errors"]
    assert len(records) == 1
    assert records[0].exc_info is not None
    assert getattr(records[0], "request_id", None) == result.request_id
