"""graph/telemetry/http_metrics.py counts every request exactly as starlette-exporter's stock
middleware does with the same options: both run over the same requests, side by side,
and every sample they add must match (durations by count: their values are timings).
The one difference, by design: a request answered before its route ran is labelled
with that route's template, where the stock middleware says UNMATCHED."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from prometheus_client import REGISTRY
from starlette.applications import Starlette
from starlette.background import BackgroundTask
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send
from starlette_exporter import PrometheusMiddleware
from starlette_exporter.optional_metrics import request_body_size, response_body_size

from graph.telemetry.http_metrics import MAX_REMEMBERED_PATHS, UNMATCHED, HttpMetricsMiddleware

STOCK_PREFIX = "stock_http"
SUFFIXES = (
    "requests_total",
    "request_duration_seconds_count",
    "request_body_bytes_total",
    "response_body_bytes_total",
    "requests_in_progress",
)

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


@pytest.fixture(autouse=True, scope="module")
def forget_the_stock_metrics() -> Iterator[None]:
    """The stock middleware registers its metrics globally; other tests list every
    metric the process exports, so they leave with this module."""
    yield
    for name in [name for name in PrometheusMiddleware._metrics if name.startswith(STOCK_PREFIX)]:
        REGISTRY.unregister(PrometheusMiddleware._metrics.pop(name))


async def graphql(request: Request) -> Response:
    if request.method == "GET":
        return PlainTextResponse("POST only", status_code=405)
    body = await request.body()
    return JSONResponse({"data": {"echo": len(body)}})


async def item(request: Request) -> Response:
    return PlainTextResponse(f"item {request.path_params['item_id']}")


async def boom(request: Request) -> Response:
    raise RuntimeError("a bug")


async def stream(request: Request) -> Response:
    async def chunks() -> Any:
        for chunk in (b"one ", b"two ", b"three"):
            yield chunk

    return StreamingResponse(chunks())


class RefuseBeforeRouting:
    """Like the body limit: answers before the router, so no route is matched."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and (b"x-refuse", b"1") in scope["headers"]:
            await PlainTextResponse("too large", status_code=413)(scope, receive, send)
            return
        await self.app(scope, receive, send)


class Silent:
    """An ASGI endpoint (not a function, so Starlette does not wrap it) that returns
    without answering."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await receive()


def make_app(metrics: Middleware) -> Starlette:
    return Starlette(
        routes=[
            Route("/silent", Silent(), methods=["GET"]),
            Route("/graphql", graphql, methods=["GET", "POST"]),
            Route("/items/{item_id}", item, methods=["GET"]),
            Route("/boom", boom, methods=["GET"]),
            Route("/stream", stream, methods=["GET"]),
        ],
        middleware=[metrics, Middleware(RefuseBeforeRouting)],
    )


def stock_app() -> Starlette:
    return make_app(
        Middleware(
            PrometheusMiddleware,
            prefix=STOCK_PREFIX,
            group_paths=True,
            filter_unhandled_paths=False,
            group_unhandled_paths=True,
            optional_metrics=[request_body_size, response_body_size],
        )
    )


def samples(prefix: str) -> Samples:
    wanted = {f"{prefix}_{suffix}": suffix for suffix in SUFFIXES}
    out: Samples = {}
    for metric in REGISTRY.collect():
        for sample in metric.samples:
            if sample.name in wanted:
                out[(wanted[sample.name], tuple(sorted(sample.labels.items())))] = sample.value
    return out


def added(before: Samples, after: Samples) -> Samples:
    return {
        key: value - before.get(key, 0.0)
        for key, value in after.items()
        if value - before.get(key, 0.0) != 0.0
    }


async def drive(app: Starlette, requests: list[tuple[str, str, bytes]]) -> None:
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        for method, path, body in requests:
            headers = {"x-refuse": "1"} if body == REFUSE else {}
            # httpx's transport asserts that the app answered; /silent does not.
            with contextlib.suppress(AssertionError):
                await client.request(method, path, content=body or None, headers=headers)


def record(make: Callable[[], Starlette], prefix: str, requests: list[Any]) -> Samples:
    before = samples(prefix)
    asyncio.run(drive(make(), requests))
    return added(before, samples(prefix))


REFUSE = b"refuse me"
REQUESTS = [
    ("POST", "/graphql", b'{"query": "{ a }"}'),
    ("POST", "/graphql", b'{"query": "{ a b c }"}'),
    ("GET", "/graphql", b""),  # 405 from the endpoint
    ("GET", "/nowhere", b""),  # 404: UNMATCHED
    ("GET", "/elsewhere", b""),  # another 404, the same label
    ("GET", "/graphql/", b""),  # the router's redirect: UNMATCHED
    ("GET", "/items/1", b""),
    ("GET", "/items/2", b""),  # grouped with /items/1 under /items/{item_id}
    ("HEAD", "/items/3", b""),
    ("GET", "/boom", b""),  # the endpoint raises: 500
    ("GET", "/stream", b""),  # no content-length, several body messages
    ("GET", "/silent", b""),  # the app ends without a response: 500 (499 if disconnected)
    ("GET", "/silent", b""),
]


def test_the_same_samples_as_starlette_exporters_own_middleware() -> None:
    stock = record(stock_app, STOCK_PREFIX, REQUESTS)
    lean = record(lambda: make_app(Middleware(HttpMetricsMiddleware)), "http", REQUESTS)
    assert stock, "the stock middleware recorded nothing: the comparison would prove nothing"
    assert lean == stock
    paths = {dict(labels)["path"] for (_, labels) in lean}
    assert paths == {"/graphql", "/items/{item_id}", "/boom", "/stream", "/silent", UNMATCHED}
    statuses = {dict(labels)["status_code"] for (_, labels) in lean}
    assert statuses == {"200", "307", "404", "405", "500"}


def test_a_request_answered_before_its_route_ran_is_labelled_with_the_route() -> None:
    """Where this middleware and the stock one differ: the stock one labels these
    UNMATCHED, as if no route had their path, and counts a refused body's declared
    length."""
    requests = [
        ("GET", "/nowhere", REFUSE),  # answered before routing, on no route's path
        ("POST", "/graphql", b"{}"),
        ("POST", "/graphql", REFUSE),  # refused before routing, on a path seen before
        ("PATCH", "/graphql", REFUSE),  # refused before routing, on a path never seen
        ("PUT", "/graphql", b"x"),  # 405 from the router: the route serves GET and POST
        ("PUT", "/items/1", b"x"),
        ("PUT", "/items/2", b"x"),
    ]
    lean = record(lambda: make_app(Middleware(HttpMetricsMiddleware)), "http", requests)
    counts = {
        (labels["method"], labels["path"], labels["status_code"]): value
        for (suffix, key), value in lean.items()
        if suffix == "requests_total"
        for labels in [dict(key)]
    }
    body_bytes = {
        (labels["method"], labels["path"], labels["status_code"]): value
        for (suffix, key), value in lean.items()
        if suffix == "request_body_bytes_total"
        for labels in [dict(key)]
    }
    assert body_bytes[("POST", "/graphql", "200")] == 2
    # Counted below, with no body bytes added (a sample that did not move is left out).
    assert body_bytes.get(("POST", "/graphql", "413"), 0) == 0
    assert body_bytes.get(("GET", UNMATCHED, "413"), 0) == 0
    assert counts == {
        ("GET", UNMATCHED, "413"): 1,
        ("POST", "/graphql", "200"): 1,
        ("POST", "/graphql", "413"): 1,
        ("PATCH", "/graphql", "413"): 1,
        ("PUT", "/graphql", "405"): 1,
        ("PUT", "/items/{item_id}", "405"): 2,
    }


def test_paths_no_route_matches_are_never_remembered() -> None:
    app = make_app(Middleware(HttpMetricsMiddleware))
    many = [("GET", f"/nowhere/{n}", b"") for n in range(MAX_REMEMBERED_PATHS + 40)]
    counts = record(lambda: app, "http", many)
    key = (
        "requests_total",
        (
            ("app_name", "starlette"),
            ("method", "GET"),
            ("path", UNMATCHED),
            ("status_code", "404"),
        ),
    )
    assert counts[key] == len(many)
    middleware: Any = app.middleware_stack
    while not isinstance(middleware, HttpMetricsMiddleware):
        middleware = middleware.app
    assert middleware._route_paths == {}


def test_repeated_requests_count_each_time() -> None:
    """The second and later requests take the remembered path and labels."""
    requests = [("POST", "/graphql", b"{}")] * 5 + [("GET", "/items/7", b"")] * 3
    stock = record(stock_app, STOCK_PREFIX, requests)
    lean = record(lambda: make_app(Middleware(HttpMetricsMiddleware)), "http", requests)
    assert lean == stock
    counts = {dict(k[1])["path"]: v for k, v in lean.items() if k[0] == "requests_total"}
    assert counts == {"/graphql": 5, "/items/{item_id}": 3}


def test_paths_remembered_are_bounded() -> None:
    app = make_app(Middleware(HttpMetricsMiddleware))
    many = [("GET", f"/items/{n}", b"") for n in range(MAX_REMEMBERED_PATHS + 40)]
    before = samples("http")
    asyncio.run(drive(app, many))
    counts = added(before, samples("http"))
    key = (
        "requests_total",
        (
            ("app_name", "starlette"),
            ("method", "GET"),
            ("path", "/items/{item_id}"),
            ("status_code", "200"),
        ),
    )
    assert counts[key] == len(many)
    middleware: Any = app.middleware_stack
    while not isinstance(middleware, HttpMetricsMiddleware):
        middleware = middleware.app
    assert len(middleware._route_paths) == MAX_REMEMBERED_PATHS


def test_requests_in_progress_while_a_request_runs() -> None:
    release = asyncio.Event()
    started = asyncio.Event()

    async def slow(request: Request) -> Response:
        started.set()
        await release.wait()
        return PlainTextResponse("done")

    app = Starlette(
        routes=[Route("/slow", slow, methods=["GET"])],
        middleware=[Middleware(HttpMetricsMiddleware)],
    )
    key = ("requests_in_progress", (("app_name", "starlette"), ("method", "GET")))

    async def scenario() -> tuple[float, float, float]:
        before = samples("http").get(key, 0.0)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            pending = asyncio.create_task(client.get("/slow"))
            await started.wait()
            during = samples("http")[key]
            release.set()
            response = await pending
            assert response.status_code == 200
        return before, during, samples("http")[key]

    before, during, after = asyncio.run(scenario())
    assert during == before + 1
    assert after == before


def test_a_client_gone_before_the_answer_counts_as_499() -> None:
    scope: dict[str, Any] = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": "/silent",
        "raw_path": b"/silent",
        "root_path": "",
        "query_string": b"",
        "headers": [(b"host", b"testserver")],
        "server": ("testserver", 80),
        "client": ("127.0.0.1", 5000),
    }

    async def receive() -> dict[str, Any]:
        return {"type": "http.disconnect"}

    async def send(message: Any) -> None:
        raise AssertionError(f"nothing should be sent, got {message}")

    def gone(make: Callable[[], Starlette], prefix: str) -> Samples:
        before = samples(prefix)
        asyncio.run(make()(dict(scope), receive, send))
        return added(before, samples(prefix))

    stock = gone(stock_app, STOCK_PREFIX)
    lean = gone(lambda: make_app(Middleware(HttpMetricsMiddleware)), "http")
    assert lean == stock
    assert {dict(labels)["status_code"] for (_, labels) in lean} == {"499"}


def test_the_duration_ends_with_the_response_not_its_background_work() -> None:
    """The server logs and records GraphQL metrics in a background task after the
    response; the HTTP duration must not include it (the stock middleware's rule too)."""
    # Long, so that half of it is a wide safety net for a busy machine's response time.
    pause = 1.0

    async def answered_then_busy(request: Request) -> Response:
        return PlainTextResponse("ok", background=BackgroundTask(asyncio.sleep, pause))

    def duration_sum(prefix: str) -> float:
        def total() -> float:
            return sum(
                sample.value
                for metric in REGISTRY.collect()
                for sample in metric.samples
                if sample.name == f"{prefix}_request_duration_seconds_sum"
                and sample.labels.get("path") == "/busy"
            )

        before = total()
        app = Starlette(
            routes=[Route("/busy", answered_then_busy, methods=["GET"])],
            middleware=[make_middleware(prefix)],
        )
        asyncio.run(drive(app, [("GET", "/busy", b"")]))
        return total() - before

    def make_middleware(prefix: str) -> Middleware:
        if prefix == STOCK_PREFIX:
            return Middleware(PrometheusMiddleware, prefix=STOCK_PREFIX)
        return Middleware(HttpMetricsMiddleware)

    for prefix in (STOCK_PREFIX, "http"):
        assert 0 < duration_sum(prefix) < pause / 2, prefix
