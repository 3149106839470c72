"""Documents built to be expensive: fragments that spread each other, floods of errors,
several operations, large documents for the caches. Each is refused or answered in
bounded time and memory, and other requests go on meanwhile."""

from __future__ import annotations

import asyncio
import gc
import time
import tracemalloc
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from starlette.testclient import TestClient

from graph.graphql.compiled.fastpath import FastPath
from graph.graphql.prepare import (
    MAX_CACHED_DOCUMENT_CHARS,
    MAX_ERRORS,
    BytesBoundedCache,
    PreparedOperation,
    Preparer,
    Refusal,
    entry_cost,
)
from graph.graphql.schema import build_schema
from graph.settings import Settings
from tests.helpers import gql

# A safety net, far above what any of these takes (milliseconds of CPU). Measured as this
# thread's CPU time, so a busy machine's waiting for a core does not count.
PREPARE_SECONDS = 1.0
SCHEMA = build_schema()


def preparer(**overrides: object) -> Preparer:
    return Preparer(SCHEMA, Settings(**overrides).limits, FastPath(SCHEMA))


def doubling_chain(levels: int, spreads: int = 2, inline: bool = False) -> str:
    """F0 spreads F1 `spreads` times, F1 spreads F2..., the last selects a field: the
    expanded document is spreads**levels fields in under a kilobyte."""

    def spread(i: int) -> str:
        return f"... on Query {{ ...F{i} }}" if inline else f"...F{i}"

    fragments = [
        f"fragment F{i} on Query {{ {' '.join(spread(i + 1) for _ in range(spreads))} }}"
        for i in range(levels)
    ]
    fragments.append(f"fragment F{levels} on Query {{ health {{ status }} }}")
    return "{ ...F0 } " + " ".join(fragments)


def timed_prepare(prepare: Preparer, query: str) -> tuple[PreparedOperation | Refusal, float]:
    started = time.thread_time()
    prepared = prepare.prepare_now(query, None)
    return prepared, time.thread_time() - started


@pytest.mark.parametrize(
    "query",
    [
        doubling_chain(20),
        doubling_chain(12, spreads=4),
        doubling_chain(20, inline=True),
        # The same field under many aliases in a doubling chain: the overlap check's worst.
        "{ ...F0 } "
        + " ".join(f"fragment F{i} on Query {{ ...F{i + 1} ...F{i + 1} }}" for i in range(18))
        + " fragment F18 on Query { a: health { status } a: health { version } }",
    ],
    ids=["doubling", "quadrupling", "inline", "overlapping"],
)
def test_fragment_explosions_are_refused_in_bounded_time(query: str) -> None:
    assert len(query) < 2_000
    prepared, seconds = timed_prepare(preparer(), query)
    assert isinstance(prepared, Refusal) and prepared.code == "GRAPHQL_VALIDATION_FAILED"
    assert any("fragments are expanded" in error.message for error in prepared.errors)
    assert seconds < PREPARE_SECONDS


@st.composite
def fragment_graphs(draw: st.DrawFn) -> str:
    """Random acyclic fragment graphs: each fragment spreads later ones, some several
    times, with aliases, inline fragments and directives mixed in."""
    count = draw(st.integers(2, 25))
    fragments = []
    for i in range(count):
        parts = []
        for target in range(i + 1, count):
            times = draw(st.integers(0, 3))
            for _ in range(times):
                shape = draw(st.sampled_from(["...F{t}", "... on Query {{ ...F{t} }}"]))
                parts.append(shape.format(t=target))
        if draw(st.booleans()) or not parts:
            alias = draw(st.sampled_from(["", "a: ", "b: "]))
            directive = draw(st.sampled_from(["", " @include(if: true)"]))
            parts.append(f"{alias}health{directive} {{ status }}")
        fragments.append(f"fragment F{i} on Query {{ {' '.join(parts)} }}")
    return "{ ...F0 } " + " ".join(fragments)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(query=fragment_graphs())
def test_any_fragment_graph_is_prepared_in_bounded_time(query: str) -> None:
    prepared, seconds = timed_prepare(preparer(), query)
    assert seconds < PREPARE_SECONDS, (seconds, query[:200])
    if isinstance(prepared, Refusal):
        assert prepared.code in {"GRAPHQL_VALIDATION_FAILED", "GRAPHQL_PARSE_FAILED"}
        assert len(prepared.errors) <= MAX_ERRORS


def test_validation_of_a_heavy_document_does_not_hold_the_event_loop(tmp_path: Path) -> None:
    """Uncached documents are prepared off the loop: a timer keeps ticking meanwhile."""
    prepare = preparer(max_tokens=100_000)
    heavy = "{ " + " ".join(f"a{i}: health {{ status version }}" for i in range(240)) + " }"

    async def scenario() -> tuple[int, float]:
        ticks = 0
        stop = asyncio.Event()

        async def ticker() -> None:
            nonlocal ticks
            while not stop.is_set():
                ticks += 1
                await asyncio.sleep(0.001)

        task = asyncio.create_task(ticker())
        started = time.perf_counter()
        for index in range(5):
            await prepare.prepare(heavy + f" # {index}", None)
        elapsed = time.perf_counter() - started
        stop.set()
        await task
        return ticks, elapsed

    ticks, elapsed = asyncio.run(scenario())
    prepare.close()
    # The loop ran between the preparations' slices of the GIL, not only after them.
    assert ticks >= 5, (ticks, elapsed)


@pytest.mark.parametrize(
    "query",
    [
        "{ nope }",
        "{ " + " ".join(f"f{i}: nope{i}" for i in range(100)) + " }",
        "{ health @a @b @c @d @e @f @g @h @i @j { status } }",
        "query Q(" + " ".join(f"$v{i}: Nope" for i in range(60)) + ") { health { status } }",
    ],
    ids=["one", "unknown-fields", "unknown-directives", "unknown-types"],
)
def test_a_response_has_at_most_ten_errors(client: TestClient, query: str) -> None:
    body = gql(client, query).body
    assert 1 <= len(body["errors"]) <= MAX_ERRORS
    assert len(str(body)) < 5_000


def test_a_response_to_bad_variables_has_at_most_ten_errors(client: TestClient) -> None:
    declared = ", ".join(f"$v{i}: Int!" for i in range(60))
    document = f"query Q({declared}) {{ count }}"
    body = gql(client, document, {f"v{i}": "x" for i in range(60)}).body
    assert 1 <= len(body["errors"]) <= MAX_ERRORS


def test_several_operations_without_a_name_run_none(client: TestClient) -> None:
    document = (
        'mutation M { createCollection(name: "sneaky", dimension: 3) { name } } query Q { count }'
    )
    response = client.post("/graphql", json={"query": document})
    assert response.status_code == 400
    body = response.json()
    assert "data" not in body
    assert body["errors"][0]["extensions"]["code"] == "BAD_REQUEST"
    names = gql(client, "{ collections { name } }").body["data"]["collections"]
    assert "sneaky" not in [c["name"] for c in names]
    # Naming one runs that one.
    named = client.post("/graphql", json={"query": document, "operationName": "Q"})
    assert named.status_code == 200 and "count" in named.json()["data"]


def test_the_document_cache_is_bounded_in_bytes() -> None:
    prepare = preparer()
    capacity = 2 * 1024 * 1024  # the same cache, smaller, so that a few documents fill it
    prepare.cache = BytesBoundedCache(capacity)

    async def fill() -> None:
        for index in range(40):
            padding = "x" * (MAX_CACHED_DOCUMENT_CHARS - 200)
            await prepare.prepare(f"{{ health {{ status }} }} # {index} {padding}", None)
            await prepare.prepare(f"{{ a{index}: count }}", None)
        # Too large to keep at all, however often it comes.
        await prepare.prepare("{ count } #" + "y" * (MAX_CACHED_DOCUMENT_CHARS + 1), None)

    asyncio.run(fill())
    prepare.close()
    assert capacity / 2 < prepare.cache.used <= capacity
    assert sum(cost for _, cost in prepare.cache.entries.values()) == prepare.cache.used
    assert all(len(query) <= MAX_CACHED_DOCUMENT_CHARS for query, _ in prepare.cache.entries)


@pytest.mark.parametrize(
    "query",
    [
        "{ health { status } }",
        "query Q($v: Vector!, $f: Filter) { a: query(vector: $v, filter: $f) { id score "
        "payload } b: count(filter: $f) c: collections { name dimension } }",
        "{ "
        + " ".join(f'a{i}: count(filter: {{must: [{{key: "k{i}"}}]}})' for i in range(14))
        + " }",
    ],
    ids=["small", "typical", "many-tokens"],
)
def test_a_cache_entry_costs_at_least_what_it_holds(query: str) -> None:
    """The byte estimate that bounds the cache is above what tracemalloc measures."""
    prepare = preparer()
    prepare.prepare_now(query, None)  # what the first one sets up once, for every document
    copies = 5
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        kept = [prepare.prepare_now(query, None) for _ in range(copies)]
        gc.collect()  # validation leaves cyclic garbage that is not the entries' to keep
        held = (tracemalloc.get_traced_memory()[0] - before) / copies
    finally:
        tracemalloc.stop()
    assert isinstance(kept[0], PreparedOperation)
    assert entry_cost(query, None, kept[0]) >= held


# What one request can make the server read and send: a payload is bounded when it is
# written, and the points an operation may return over all its root fields are bounded.

BIG_PAYLOAD = {"t": "x" * 31_000}  # near MAX_PAYLOAD_BYTES, in one value


def upsert_points(client: TestClient, points: list[dict[str, Any]]) -> dict[str, Any]:
    document = "mutation M($p: [PointInput!]!) { upsert(points: $p) { upserted } }"
    return gql(client, document, {"p": points}).body


@pytest.mark.parametrize(
    "payload",
    [
        {"many": list(range(2_000))},  # the ~1M tiny elements attack, smaller: too many values
        {"nested": [[0] * 100 for _ in range(20)]},
        {"text": "x" * 40_000},  # too many bytes in one value
        {f"k{i}": "y" * 40 for i in range(900)},  # too many bytes over many keys
    ],
    ids=["values", "nested-values", "bytes", "keys"],
)
def test_an_oversized_payload_is_refused_and_nothing_is_written(
    client: TestClient, payload: dict[str, object]
) -> None:
    body = upsert_points(client, [{"id": 1, "vector": [1, 0, 0, 0], "payload": payload}])
    assert [e["extensions"]["code"] for e in body["errors"]] == ["BAD_USER_INPUT"]
    assert gql(client, "{ count }").body["data"] == {"count": 0}


@pytest.mark.parametrize(
    ("document", "variables"),
    [
        # 15 aliases of the largest query: 1,500 points.
        (
            "query Q($v: Vector!) { "
            + " ".join(f"a{i}: query(vector: $v, limit: 100) {{ payload }}" for i in range(15))
            + " }",
            {"v": [1, 0, 0, 0]},
        ),
        # Ids and limits together, through a variable and a fragment.
        (
            "query Q($ids: [ID!]!, $v: Vector!, $n: Int!) { points(ids: $ids) { id } ...F } "
            "fragment F on Query { query(vector: $v, limit: $n) { id } s: scroll(limit: 100) "
            "{ nextCursor } }",
            {"ids": [str(i) for i in range(950)], "v": [1, 0, 0, 0], "n": 100},
        ),
    ],
    ids=["aliases", "ids-and-limits"],
)
def test_an_operation_asking_for_too_many_points_is_refused_before_it_runs(
    client: TestClient, document: str, variables: dict[str, object]
) -> None:
    body = gql(client, document, variables).body
    assert "data" not in body
    assert [e["extensions"]["code"] for e in body["errors"]] == ["BAD_USER_INPUT"]
    assert "at most 1000 points or memories" in body["errors"][0]["message"]


def test_the_largest_answer_is_bounded(client: TestClient) -> None:
    """The worst case of one request, measured: every point at the payload bound, the
    points budget spent on one query's worth of aliases, vectors included."""
    points = [{"id": i, "vector": [1, i, 0, 0], "payload": BIG_PAYLOAD} for i in range(100)]
    assert "errors" not in upsert_points(client, points)
    aliases = " ".join(
        f"a{i}: query(vector: $v, limit: 100, withVector: true) {{ id payload vector }}"
        for i in range(10)
    )
    response = client.post(
        "/graphql",
        json={"query": f"query Q($v: Vector!) {{ {aliases} }}", "variables": {"v": [1, 0, 0, 0]}},
    )
    body = response.json()
    assert "errors" not in body
    assert sum(len(hits) for hits in body["data"].values()) == 1_000
    # 1,000 points of 32 KiB of JSON at most, and their ids and vectors.
    assert len(response.content) < 1_000 * (32 * 1024 + 200)
    # One more point than the budget is refused.
    more = aliases + ' b: points(ids: ["1"]) { id }'
    refused = gql(client, f"query Q($v: Vector!) {{ {more} }}", {"v": [1, 0, 0, 0]}).body
    assert refused["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"
