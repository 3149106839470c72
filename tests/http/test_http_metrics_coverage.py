"""Every response the application sends is counted in http_requests_total and
http_request_duration_seconds, with a bounded path: a route's template, or UNMATCHED for
a path no route matches (404, the redirect to the path without its trailing slash)."""

from __future__ import annotations

import random
import string
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client import REGISTRY
from starlette.testclient import TestClient

from graph.app import create_app
from graph.telemetry.http_metrics import UNMATCHED
from tests.conftest import make_settings

MAX_BODY_BYTES = 1024
Counts = dict[tuple[str, str, str], float]


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    settings = make_settings(
        tmp_path, max_body_bytes=MAX_BODY_BYTES, cors_allow_origins="https://app.example"
    )
    with TestClient(create_app(settings), follow_redirects=False) as test_client:
        yield test_client


def counts(name: str = "http_requests_total") -> Counts:
    """(method, path, status_code) -> value, for one sample name of the HTTP metrics."""
    return {
        (sample.labels["method"], sample.labels["path"], sample.labels["status_code"]): (
            sample.value
        )
        for metric in REGISTRY.collect()
        for sample in metric.samples
        if sample.name == name
    }


def added(before: Counts, after: Counts) -> Counts:
    return {
        key: value - before.get(key, 0.0)
        for key, value in after.items()
        if value != before.get(key, 0.0)
    }


def counted(client: TestClient, method: str, path: str, **kwargs: object) -> Counts:
    """What one request adds to http_requests_total; the duration histogram must agree."""
    before = counts()
    durations = counts("http_request_duration_seconds_count")
    response = client.request(method, path, **kwargs)  # type: ignore[arg-type]
    assert response.headers["x-request-id"]
    new = added(before, counts())
    assert added(durations, counts("http_request_duration_seconds_count")) == new
    assert list(new.values()) == [1.0], new
    ((_, _, status),) = new
    assert status == str(response.status_code)
    return new


def test_a_body_refused_by_its_declared_length_is_counted(client: TestClient) -> None:
    body = b"x" * (MAX_BODY_BYTES + 1)
    assert counted(client, "POST", "/graphql", content=body) == {("POST", "/graphql", "413"): 1}


def test_an_absurd_declared_length_is_counted(client: TestClient) -> None:
    new = counted(client, "POST", "/graphql", headers={"content-length": "99999999999"})
    assert new == {("POST", "/graphql", "413"): 1}


def test_a_chunked_body_over_the_limit_is_counted(client: TestClient) -> None:
    def chunks() -> Iterator[bytes]:
        yield b"x" * MAX_BODY_BYTES
        yield b"x"

    json = {"content-type": "application/json"}
    new = counted(client, "POST", "/graphql", content=chunks(), headers=json)
    assert new == {("POST", "/graphql", "413"): 1}


def test_a_body_refused_on_a_route_not_seen_before_is_grouped_by_its_route(
    client: TestClient,
) -> None:
    new = counted(client, "POST", "/mcp", content=b"x" * (MAX_BODY_BYTES + 1))
    assert new == {("POST", "/mcp", "413"): 1}


def test_an_unknown_path_is_counted_as_unmatched(client: TestClient) -> None:
    assert counted(client, "GET", "/nope") == {("GET", UNMATCHED, "404"): 1}


def test_the_trailing_slash_redirect_is_counted_as_unmatched(client: TestClient) -> None:
    assert counted(client, "GET", "/graphql/") == {("GET", UNMATCHED, "307"): 1}


@pytest.mark.parametrize("path", ["/healthz", "/readyz", "/metrics", "/graphql"])
def test_a_method_the_route_does_not_serve_is_counted_under_its_route(
    client: TestClient, path: str
) -> None:
    assert counted(client, "PUT", path) == {("PUT", path, "405"): 1}


def test_a_cors_preflight_is_counted(client: TestClient) -> None:
    headers = {"origin": "https://app.example", "access-control-request-method": "POST"}
    new = counted(client, "OPTIONS", "/graphql", headers=headers)
    assert new == {("OPTIONS", "/graphql", "200"): 1}


def test_random_unknown_paths_add_one_path_label(client: TestClient) -> None:
    rng = random.Random(7)
    paths = {
        "/" + "".join(rng.choices(string.ascii_letters + string.digits, k=16)) for _ in range(1000)
    }
    assert len(paths) == 1000
    before = counts()
    for path in paths:
        assert client.get(path).status_code == 404
    new = added(before, counts())
    assert new == {("GET", UNMATCHED, "404"): 1000}
    assert UNMATCHED in {path for (_, path, _) in counts()}
    assert not {path for (_, path, _) in counts()} & paths


@pytest.mark.parametrize(
    ("method", "path", "status", "code"),
    [
        ("GET", "/nope", 404, "NOT_FOUND"),
        ("GET", "/graphql/extra", 404, "NOT_FOUND"),
        ("POST", "/healthz", 405, "BAD_REQUEST"),
        ("DELETE", "/readyz", 405, "BAD_REQUEST"),
        ("PUT", "/metrics", 405, "BAD_REQUEST"),
    ],
)
def test_the_router_s_own_refusals_have_the_coded_json_body(
    client: TestClient, method: str, path: str, status: int, code: str
) -> None:
    """Starlette answered these in plain text ("Not Found"), unlike every other refusal."""
    response = client.request(method, path, follow_redirects=False)
    assert response.status_code == status
    assert response.headers["content-type"] == "application/json; charset=utf-8"
    (error,) = response.json()["errors"]
    assert error["extensions"] == {"code": code, "requestId": response.headers["x-request-id"]}
    if status == 405:
        assert "GET" in response.headers["allow"]
