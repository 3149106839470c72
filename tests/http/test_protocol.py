"""GraphQL over HTTP as the spec has it: the media type negotiated from Accept, the status
of each kind of error under each media type, the methods served, GET queries behind the
CSRF guard, and a coded JSON body on every refusal. The app runs in-process on the real
embedded engine (tests/conftest.py); tests/http/test_audit.py runs graphql-http's own
audit against a real server."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from prometheus_client import REGISTRY
from starlette.testclient import TestClient

from graph.app import create_app
from tests.conftest import make_settings
from tests.helpers import COUNT, UPSERT, count_points, gql, point
from tests.test_security import SECRET, bearer, token

JSON = "application/json; charset=utf-8"
GRAPHQL_RESPONSE = "application/graphql-response+json; charset=utf-8"
PREFLIGHT = {"graphql-require-preflight": "1"}
HEALTH = "{ health { status } }"
DELETE = 'mutation { delete(ids: ["1"]) { deleted } }'
# The compiled executor runs the first (plain fields); graphql-core's the second (fragment).
RECALL = "query Q($v: Vector!) { query(vector: $v) { id } }"
RECALL_FRAGMENT = "query Q($v: Vector!) { ...F } fragment F on Query { query(vector: $v) { id } }"


@pytest.fixture
def seeded(client: TestClient) -> TestClient:
    assert gql(client, UPSERT, {"points": [point(1, [1, 0, 0, 0])]}).data
    return client


def post(client: TestClient, body: Any, **headers: str) -> Any:
    return client.post("/graphql", json=body, headers=headers)


def get(client: TestClient, params: dict[str, str], **headers: str) -> Any:
    return client.get("/graphql", params=params, headers={**PREFLIGHT, **headers})


def assert_refused(response: Any, status: int, code: str = "BAD_REQUEST") -> dict[str, Any]:
    """A non-200 answer: a JSON body with one coded error carrying the request id, no data."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"] in (JSON, GRAPHQL_RESPONSE)
    body: dict[str, Any] = response.json()
    assert "data" not in body
    assert body["errors"][0]["extensions"] == {
        "code": code,
        "requestId": response.headers["x-request-id"],
    }
    return body


# Content negotiation


@pytest.mark.parametrize(
    ("accept", "content_type"),
    [
        (None, JSON),
        ("*/*", JSON),
        ("application/*", JSON),
        ("application/json", JSON),
        ("Application/JSON", JSON),
        ("application/json; charset=utf-8", JSON),
        ("application/graphql-response+json", GRAPHQL_RESPONSE),
        ("application/graphql-response+json; charset=UTF-8", GRAPHQL_RESPONSE),
        ("application/graphql-response+json, application/json;q=0.9", GRAPHQL_RESPONSE),
        ("application/json;q=0.5, application/graphql-response+json", GRAPHQL_RESPONSE),
        ("text/html;q=0.9, application/graphql-response+json;q=0.8", GRAPHQL_RESPONSE),
        # Equal preference: application/json, what older clients expect.
        ("application/graphql-response+json, application/json", JSON),
        ("text/plain, */*;q=0.1", JSON),
    ],
)
def test_the_response_has_the_media_type_the_client_prefers(
    client: TestClient, accept: str | None, content_type: str
) -> None:
    headers = {} if accept is None else {"accept": accept}
    response = post(client, {"query": HEALTH}, **headers)
    assert response.status_code == 200
    assert response.headers["content-type"] == content_type
    assert response.json() == {"data": {"health": {"status": "OK"}}}


@pytest.mark.parametrize(
    "accept",
    [
        "text/plain",
        "application/xml, text/html",
        "application/json; charset=utf-16",
        "application/graphql-response+json; charset=iso-8859-1",
        "application/json;q=0",
        "application/json;q=0, application/graphql-response+json;q=0, */*;q=0",
        "image/*",
        "application/json;q=not-a-number",
    ],
)
def test_an_accept_header_we_cannot_satisfy_is_406_and_nothing_runs(
    seeded: TestClient, accept: str
) -> None:
    assert_refused(post(seeded, {"query": DELETE}, accept=accept), 406)
    assert count_points(seeded) == 1


# Status codes: request errors are 4xx under application/graphql-response+json, 200 under
# application/json; neither has a data entry. Field errors are 200 with data.


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"query": "{ health { status "}, "GRAPHQL_PARSE_FAILED"),
        ({"query": "{ noSuchField }"}, "GRAPHQL_VALIDATION_FAILED"),
        ({"query": RECALL, "variables": {"v": None}}, "BAD_USER_INPUT"),
        ({"query": RECALL_FRAGMENT, "variables": {"v": None}}, "BAD_USER_INPUT"),
        ({"query": RECALL, "variables": {"v": "not a vector"}}, "BAD_USER_INPUT"),
        # The policy refuses it before it runs: too many points asked for.
        (
            {
                "query": "query Q($ids: [ID!]!) { points(ids: $ids) { id } }",
                "variables": {"ids": [str(i) for i in range(5000)]},
            },
            "BAD_USER_INPUT",
        ),
    ],
    ids=["parse", "validation", "coercion", "coercion-general", "coercion-scalar", "policy"],
)
def test_request_errors_have_no_data_and_a_status_by_media_type(
    seeded: TestClient, body: dict[str, Any], code: str
) -> None:
    modern = post(seeded, body, accept="application/graphql-response+json")
    assert modern.status_code == 400
    assert modern.headers["content-type"] == GRAPHQL_RESPONSE
    legacy = post(seeded, body, accept="application/json")
    assert legacy.status_code == 200
    assert legacy.headers["content-type"] == JSON
    for response in (modern, legacy):
        answer = response.json()
        assert "data" not in answer, answer
        assert {e["extensions"]["code"] for e in answer["errors"]} == {code}
        assert answer["errors"][0]["extensions"]["requestId"] == response.headers["x-request-id"]


def test_a_field_error_keeps_200_and_the_data_entry(seeded: TestClient) -> None:
    for accept in ("application/graphql-response+json", "application/json"):
        missing = post(seeded, {"query": COUNT, "variables": {"c": "nope"}}, accept=accept)
        assert missing.status_code == 200
        answer = missing.json()
        assert "data" in answer and answer["data"] is None  # a non-null root field failed
        assert [e["extensions"]["code"] for e in answer["errors"]] == ["NOT_FOUND"]


@pytest.mark.parametrize(
    "document",
    [
        "query A { health { status } } query B { count }",
        # An anonymous operation beside others also breaks a validation rule; the request
        # is still one that does not say what to run.
        "{ health { status } } query B { count }",
        "{ health { status } } { count }",
    ],
    ids=["named", "anonymous and named", "two anonymous"],
)
def test_an_operation_that_cannot_be_chosen_is_400_under_both(
    seeded: TestClient, document: str
) -> None:
    for accept in ("application/graphql-response+json", "application/json"):
        response = post(seeded, {"query": document}, accept=accept)
        assert_refused(response, 400, "BAD_REQUEST")
        assert "name the one to run in operationName" in response.json()["errors"][0]["message"]


def test_a_missing_scope_stays_403_under_both(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, auth_jwt_secret=SECRET, auth_jwt_audience="memory")
    reader = bearer(token(scope="read", aud="memory"))
    with TestClient(create_app(settings)) as client:
        for accept in ("application/graphql-response+json", "application/json"):
            response = post(client, {"query": DELETE}, accept=accept, **reader)
            assert_refused(response, 403, "FORBIDDEN")
            # The credential's answer carries the negotiated media type too.
            denied = post(client, {"query": HEALTH}, accept=accept)
            assert_refused(denied, 401, "UNAUTHENTICATED")
            assert denied.headers["content-type"].startswith(accept)


# Methods, Content-Type and size


@pytest.mark.parametrize("method", ["PUT", "PATCH", "DELETE", "OPTIONS", "HEAD", "PROPFIND"])
def test_other_methods_are_405_with_allow(seeded: TestClient, method: str) -> None:
    response = seeded.request(method, "/graphql", json={"query": DELETE})
    assert response.status_code == 405
    assert response.headers["allow"] == "GET, POST"
    if method != "HEAD":
        assert_refused(response, 405)
    assert count_points(seeded) == 1


@pytest.mark.parametrize(
    "content_type",
    [
        None,
        "text/plain",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x",
        "application/graphql",
        "application/json; charset=latin-1",
        "application/json; charset=utf-16",
    ],
)
def test_a_body_that_is_not_utf8_json_is_415_and_nothing_runs(
    seeded: TestClient, content_type: str | None
) -> None:
    headers = {} if content_type is None else {"content-type": content_type}
    body = b'{"query": "mutation { delete(ids: [\\"1\\"]) { deleted } }"}'
    response = seeded.post("/graphql", content=body, headers=headers)
    assert_refused(response, 415)
    assert count_points(seeded) == 1


def test_json_in_utf8_is_read_with_or_without_its_charset(client: TestClient) -> None:
    body = '{"query": "{ __type(name: \\"Run🏃Swim🏊\\") { name } }"}'.encode()
    for content_type in ("application/json", "application/json; charset=UTF-8"):
        response = client.post("/graphql", content=body, headers={"content-type": content_type})
        assert response.status_code == 200
        assert response.json() == {"data": {"__type": None}}


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"query": HEALTH, "extensions": "x"}, "`extensions` must be a JSON object"),
        ({"query": HEALTH, "extensions": [1]}, "`extensions` must be a JSON object"),
        ({"query": HEALTH, "variables": "{}"}, "`variables` must be a JSON object"),
        ({"query": HEALTH, "operationName": 1}, "`operationName` must be a string"),
        ({"qeury": HEALTH}, "The request has no GraphQL query string"),
    ],
)
def test_malformed_parameters_are_400(client: TestClient, body: Any, message: str) -> None:
    for accept in ("application/graphql-response+json", "application/json"):
        answer = assert_refused(post(client, body, accept=accept), 400)
        assert answer["errors"][0]["message"] == message


def test_extensions_and_nulls_are_accepted(client: TestClient) -> None:
    for extra in ({"extensions": {"some": "value"}}, {"extensions": None}, {"variables": None}):
        assert post(client, {"query": HEALTH, **extra}).json() == {
            "data": {"health": {"status": "OK"}}
        }


def test_a_body_over_the_limit_is_a_coded_413(tmp_path: Path) -> None:
    with TestClient(create_app(make_settings(tmp_path, max_body_bytes=1024))) as client:
        response = post(client, {"query": HEALTH, "variables": {"x": "y" * 2000}})
        assert_refused(response, 413, "PAYLOAD_TOO_LARGE")


# GET: queries only, behind the CSRF guard, through the same policy and executors


def test_a_query_over_get_answers_as_over_post(seeded: TestClient) -> None:
    documents: list[dict[str, Any]] = [
        {"query": HEALTH},
        {"query": COUNT, "variables": {"c": None}},
        {"query": RECALL, "variables": {"v": [1, 0, 0, 0]}},
        {"query": RECALL_FRAGMENT, "variables": {"v": [1, 0, 0, 0]}},
        {"query": "query A { health { status } } query B { count }", "operationName": "B"},
    ]
    for document in documents:
        params = {k: v if isinstance(v, str) else _json(v) for k, v in document.items()}
        over_get = get(seeded, params, accept="application/graphql-response+json")
        assert over_get.status_code == 200, over_get.text
        assert over_get.headers["content-type"] == GRAPHQL_RESPONSE
        assert over_get.json() == post(seeded, document).json()
        assert "errors" not in over_get.json()


def _json(value: Any) -> str:
    import json

    return json.dumps(value)


def test_a_mutation_over_get_is_405_and_writes_nothing(seeded: TestClient) -> None:
    for accept in ("application/graphql-response+json", "application/json"):
        response = get(seeded, {"query": DELETE}, accept=accept)
        assert_refused(response, 405)
        assert response.headers["allow"] == "POST"
    # Chosen by operationName from a document that also holds a query.
    both = f"query Q {{ count }} mutation M {DELETE.removeprefix('mutation')}"
    assert_refused(get(seeded, {"query": both, "operationName": "M"}), 405)
    assert get(seeded, {"query": both, "operationName": "Q"}).json() == {"data": {"count": 1}}
    assert count_points(seeded) == 1


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"graphql-require-preflight": ""},
        {"content-type": "text/plain"},
        {"content-type": "application/x-www-form-urlencoded"},
        {"content-type": "multipart/form-data; boundary=x"},
    ],
)
def test_a_get_a_browser_could_send_cross_site_is_refused(
    client: TestClient, headers: dict[str, str]
) -> None:
    response = client.get("/graphql", params={"query": HEALTH}, headers=headers)
    body = assert_refused(response, 400)
    assert "cross-site request forgery" in body["errors"][0]["message"]


@pytest.mark.parametrize(
    "headers",
    [
        {"graphql-require-preflight": "1"},
        {"apollo-require-preflight": "true"},
        {"x-apollo-operation-name": "Health"},
        {"content-type": "application/json"},
    ],
)
def test_a_get_with_a_preflight_header_is_served(
    client: TestClient, headers: dict[str, str]
) -> None:
    response = client.get("/graphql", params={"query": HEALTH}, headers=headers)
    assert response.json() == {"data": {"health": {"status": "OK"}}}


@pytest.mark.parametrize(
    ("query_string", "message"),
    [
        ("", "The request has no GraphQL query string"),
        (f"query={HEALTH}&query={HEALTH}", "`query` is given more than once"),
        (f"query={HEALTH}&variables=%7Bnot", "`variables` is not valid JSON"),
        (
            f"query={HEALTH}&variables=" + "%5B" * 1100 + "%5D" * 1100,
            "`variables` nests JSON deeper than 1024 levels",
        ),
        (f"query={HEALTH}&variables=%5B1%5D", "`variables` must be a JSON object"),
        (f"query={HEALTH}&extensions=1", "`extensions` must be a JSON object"),
    ],
)
def test_malformed_get_parameters_are_400(
    client: TestClient, query_string: str, message: str
) -> None:
    response = client.get(f"/graphql?{query_string}", headers=PREFLIGHT)
    assert assert_refused(response, 400)["errors"][0]["message"] == message


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b'{"query": "{ health { status } }", "variables": {bad', "is not valid JSON"),
        (
            b'{"variables": ' + b"[" * 1100 + b"]" * 1100 + b"}",
            "nests JSON deeper than 1024 levels",
        ),
    ],
    ids=["invalid", "valid but too deep"],
)
def test_a_body_orjson_refuses_says_why(client: TestClient, body: bytes, message: str) -> None:
    response = client.post("/graphql", content=body, headers={"content-type": JSON})
    error = assert_refused(response, 400)["errors"][0]["message"]
    assert error == f"The request body {message}"


def test_get_goes_through_the_same_credentials_scopes_and_rate_limit(tmp_path: Path) -> None:
    settings = make_settings(
        tmp_path, auth_jwt_secret=SECRET, auth_jwt_audience="memory", rate_limit="3/minute"
    )
    writer = bearer(token(scope="write", aud="memory"))
    reader = bearer(token(tenant="other", scope="read", aud="memory"))
    with TestClient(create_app(settings)) as client:
        client.get("/metrics")  # records what earlier tests left waiting
        before = successful_queries()
        assert_refused(get(client, {"query": HEALTH}), 401, "UNAUTHENTICATED")
        # A token without `read` may not query, over GET as over POST.
        assert_refused(get(client, {"query": COUNT}, **writer), 403, "FORBIDDEN")
        assert get(client, {"query": COUNT}, **reader).json() == {"data": {"count": 0}}
        for _ in range(2):
            assert get(client, {"query": COUNT}, **reader).status_code == 200
        limited = get(client, {"query": COUNT}, **reader)
        assert_refused(limited, 429, "RATE_LIMITED")
        assert "retry-after" in limited.headers
        metrics = client.get("/metrics").text
    assert 'graphql_errors_total{code="FORBIDDEN"}' in metrics
    # The three served GETs are counted as operations, as POSTs are.
    assert successful_queries() - before == 3


def successful_queries() -> float:
    return sum(
        sample.value
        for metric in REGISTRY.collect()
        if metric.name == "graphql_operations"
        for sample in metric.samples
        if sample.name == "graphql_operations_total"
        and sample.labels["operation_type"] == "query"
        and sample.labels["outcome"] == "success"
    )


def test_a_browser_app_may_send_the_preflight_header_cross_origin(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, cors_allow_origins="https://app.example")
    with TestClient(create_app(settings)) as client:
        preflight = client.options(
            "/graphql",
            headers={
                "origin": "https://app.example",
                "access-control-request-method": "GET",
                "access-control-request-headers": "graphql-require-preflight",
            },
        )
        assert preflight.status_code == 200
        allowed = preflight.headers["access-control-allow-headers"].lower()
        assert "graphql-require-preflight" in allowed
        response = get(client, {"query": HEALTH}, origin="https://app.example")
        assert response.headers["access-control-allow-origin"] == "https://app.example"
        assert response.json() == {"data": {"health": {"status": "OK"}}}


def test_graphiql_is_still_served_to_a_browser(client: TestClient) -> None:
    page = client.get("/graphql", headers={"accept": "text/html,*/*;q=0.8"})
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")


def test_without_graphiql_a_browser_gets_a_coded_refusal(tmp_path: Path) -> None:
    with TestClient(create_app(make_settings(tmp_path, graphiql=False))) as client:
        html_only = client.get("/graphql", headers={"accept": "text/html"})
        assert_refused(html_only, 406)
        browser = client.get("/graphql", headers={"accept": "text/html,*/*;q=0.8"})
        assert_refused(browser, 400)  # the CSRF guard: a browser's navigation is not served
