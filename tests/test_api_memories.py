"""The memory API through GraphQL, on the real embedded engine and (the tests taking
`client` or `embedded`) on the remote adapter in qdrant-client's local mode: remember,
recall (every mode, recency, diversity), memories, forget, expiry, timestamps, bad input,
tenancy."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import REGISTRY
from starlette.testclient import TestClient

from graph.app import create_app
from graph.errors import EmbedderUnavailable
from graph.memory.embedders.base import Embedder
from graph.memory.service import MAX_TTL_SECONDS
from graph.settings import Settings
from tests.conftest import DIMENSION, make_settings
from tests.helpers import UPSERT, count_points, gql, point
from tests.process import ServerProcess
from tests.test_security import SECRET, bearer, token

REMEMBER = """
mutation R($m: [MemoryInput!]!, $c: String) {
  remember(memories: $m, collection: $c) { ids }
}
"""
RECALL = """
query Q($text: String, $vector: Vector, $filter: Filter, $limit: Int! = 10,
        $mode: RecallMode! = AUTO, $recency: RecencyInput, $diversity: Float) {
  recall(text: $text, vector: $vector, filter: $filter, limit: $limit, mode: $mode,
         recency: $recency, diversity: $diversity) {
    id text metadata score createdAt updatedAt expiresAt
  }
}
"""
MEMORIES = """
query M($ids: [ID!]!) { memories(ids: $ids) { id text metadata createdAt updatedAt expiresAt } }
"""
FORGET = """
mutation F($ids: [ID!], $filter: Filter) { forget(ids: $ids, filter: $filter) { deleted } }
"""
TOPICS = {"fruit": 0, "apple": 0, "pear": 0, "car": 1, "truck": 1, "engine": 1, "sea": 2}


class TopicEmbedder(Embedder):
    """Deterministic: one axis per topic of TOPICS, counted in the text, and a small
    hash-spread remainder so that no vector is zero."""

    name = "test:topics"
    _dimension: int  # known from construction: never None, as it is before a load()

    def __init__(self, dimension: int = DIMENSION, fail: bool = False) -> None:
        self._dimension = dimension
        self.fail = fail
        self.calls = 0

    async def load(self) -> int:
        return self._dimension

    @property
    def dimension(self) -> int:
        return self._dimension

    def _vector(self, text: str) -> list[float]:
        vector = [0.0] * self._dimension
        for word in text.lower().split():
            word = word.strip(".,!?")
            if word in TOPICS:
                vector[TOPICS[word]] += 1.0
            else:
                vector[hashlib.sha256(word.encode()).digest()[0] % self._dimension] += 0.01
        return vector

    async def embed_documents(self, texts: Sequence[str]) -> list[list[float]]:
        self.calls += 1
        if self.fail:
            raise EmbedderUnavailable()
        return [self._vector(t) for t in texts]

    async def embed_query(self, text: str) -> list[float]:
        if self.fail:
            raise EmbedderUnavailable()
        return self._vector(text)


def make_client(tmp_path: Path, embedder: Embedder | None = None, **settings: Any) -> TestClient:
    return TestClient(create_app(make_settings(tmp_path, **settings), embedder=embedder))


def store_settings(backend: str, tmp_path: Path) -> dict[str, Any]:
    """The embedded store, or the remote adapter on qdrant-client's local mode: the same
    answers through GraphQL either way."""
    return {"qdrant_url": f"path:{tmp_path / 'qdrant'}"} if backend == "local" else {}


@pytest.fixture(params=["embedded", "local"])
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def settings(tmp_path: Path, backend: str) -> Settings:
    """tests.conftest's client runs on each backend."""
    return make_settings(tmp_path, **store_settings(backend, tmp_path))


@pytest.fixture
def embedded(tmp_path: Path, backend: str) -> Iterator[TestClient]:
    with make_client(tmp_path, TopicEmbedder(), **store_settings(backend, tmp_path)) as client:
        yield client


def remember(client: TestClient, *memories: dict[str, Any], **headers: str) -> list[str]:
    ids: list[str] = gql(client, REMEMBER, {"m": list(memories)}, **headers).data["remember"]["ids"]
    return ids


def recall(client: TestClient, **variables: Any) -> list[dict[str, Any]]:
    hits: list[dict[str, Any]] = gql(client, RECALL, variables).data["recall"]
    return hits


def recalled(client: TestClient, **variables: Any) -> list[str]:
    return [h["id"] for h in recall(client, **variables)]


def parse(moment: str) -> datetime:
    assert moment.endswith("Z"), moment
    return datetime.fromisoformat(moment)


# Remember and recall


def test_keyword_recall_needs_no_model(client: TestClient) -> None:
    ids = remember(
        client,
        {"id": 1, "text": "The invoice for March is overdue", "metadata": {"kind": "todo"}},
        {"id": "2", "text": "Lunch with Ana on Friday"},
        {"text": "Pay the March invoice before Friday"},
    )
    assert ids[:2] == ["1", "2"] and len(ids[2]) == 36  # a UUID assigned by the server
    hits = recall(client, text="march invoice")
    assert [h["id"] for h in hits] == ["1", ids[2]] or [h["id"] for h in hits] == [ids[2], "1"]
    assert hits[0]["score"] >= hits[1]["score"] > 0
    assert recalled(
        client, text="invoice", filter={"must": [{"key": "kind", "match": {"value": "todo"}}]}
    ) == ["1"]
    assert recalled(client, text="invoice", mode="KEYWORD", limit=1) in (["1"], [ids[2]])
    # a memory is a point: its metadata is the point's payload, and it is counted
    assert count_points(client) == 3
    [one] = gql(client, '{ points(ids: ["1"]) { payload } }').data["points"]
    assert one["payload"] == {"kind": "todo"}


def test_modes_with_an_embedder(embedded: TestClient) -> None:
    remember(
        embedded,
        {"id": 1, "text": "apple pear fruit salad"},
        {"id": 2, "text": "truck engine repair"},
        {"id": 3, "text": "the car needs an apple sticker"},
    )
    assert recalled(embedded, text="fruit", mode="SEMANTIC")[0] == "1"
    assert recalled(embedded, text="engine", mode="KEYWORD") == ["2"]
    assert recalled(embedded, text="car", mode="SEMANTIC")[:2] in (["2", "3"], ["3", "2"])
    assert recalled(embedded, text="apple")[0] in ("1", "3")  # AUTO: hybrid
    assert recalled(embedded, text="apple", mode="HYBRID")[:2] in (["1", "3"], ["3", "1"])
    assert recalled(embedded, vector=[1, 0, 0, 0])[0] == "1"  # AUTO with a vector: semantic
    diverse = recalled(embedded, text="truck", mode="SEMANTIC", limit=2, diversity=0.9)
    assert diverse[0] == "2" and len(diverse) == 2


def test_client_vectors_without_an_embedder(client: TestClient) -> None:
    remember(
        client,
        {"id": 1, "text": "north", "vector": [1, 0, 0, 0]},
        {"id": 2, "text": "east", "vector": [0, 1, 0, 0]},
        {"id": 3, "text": "north east", "vector": [0.7, 0.7, 0, 0]},
        {"id": 4, "text": "no vector here"},
    )
    assert recalled(client, vector=[1, 0.1, 0, 0], mode="SEMANTIC") == ["1", "3", "2"]
    assert recalled(client, vector=[1, 0, 0, 0], limit=2, diversity=0.95) == ["1", "2"]
    hybrid = recalled(client, text="east", vector=[0, 1, 0, 0])
    assert hybrid[0] == "2" and "4" not in hybrid
    # the points API only sees points with a dense vector
    hits = gql(client, "{ query(vector: [1, 0, 0, 0], limit: 100) { id } }").data["query"]
    assert sorted(h["id"] for h in hits) == ["1", "2", "3"]


def test_a_diverse_recall_scores_best_first_and_memories_keep_their_vectors(
    client: TestClient,
) -> None:
    remember(
        client,
        {"id": 1, "text": "north", "vector": [1, 0, 0, 0]},
        {"id": 2, "text": "north too", "vector": [0.99, 0.1, 0, 0]},
        {"id": 3, "text": "east", "vector": [0, 1, 0, 0]},
        {"id": 4, "text": "no vector here"},
    )
    diverse = recall(client, vector=[1, 0, 0, 0], diversity=0.7)
    assert [h["id"] for h in diverse] == ["1", "3", "2"]
    scores = [h["score"] for h in diverse]
    assert scores == sorted(scores, reverse=True)
    assert scores[0] == pytest.approx(0.3)  # (1 - diversity) * similarity of the first
    points = gql(client, "{ points(ids: [1, 4], withVector: true) { id vector } }").data
    assert points["points"] == [
        {"id": "1", "vector": [1.0, 0.0, 0.0, 0.0]},
        {"id": "4", "vector": None},
    ]


def test_recency_blends_age_into_the_ranking(client: TestClient) -> None:
    remember(client, {"id": 1, "text": "budget budget budget review"})
    time.sleep(1.2)
    remember(client, {"id": 2, "text": "budget"})
    assert recalled(client, text="budget") == ["1", "2"]
    assert recalled(client, text="budget", recency={"halfLifeSeconds": 3600, "weight": 0}) == [
        "1",
        "2",
    ]
    assert recalled(client, text="budget", recency={"halfLifeSeconds": 0.5, "weight": 1}) == [
        "2",
        "1",
    ]
    # weight 1: the score is the recency boost alone, 1 for a memory made just now
    [newest, _] = recall(client, text="budget", recency={"halfLifeSeconds": 1e9, "weight": 1})
    assert newest["score"] == pytest.approx(1.0, abs=1e-3)


# Timestamps, memories(ids), expiry


def test_timestamps_are_utc_and_created_at_survives_a_replace(client: TestClient) -> None:
    remember(client, {"id": 7, "text": "first version", "metadata": {"v": 1}})
    [first] = gql(client, MEMORIES, {"ids": ["7"]}).data["memories"]
    assert first["createdAt"] == first["updatedAt"]
    assert abs(parse(first["createdAt"]) - datetime.now(UTC)) < timedelta(minutes=1)
    assert first["expiresAt"] is None
    time.sleep(0.01)
    remember(client, {"id": 7, "text": "second version", "ttlSeconds": 3600})
    [second] = gql(client, MEMORIES, {"ids": ["7"]}).data["memories"]
    assert second["text"] == "second version" and second["metadata"] is None
    assert second["createdAt"] == first["createdAt"]
    assert parse(second["updatedAt"]) > parse(first["updatedAt"])
    expires = parse(second["expiresAt"]) - parse(second["updatedAt"])
    assert expires == timedelta(seconds=3600)


def test_memories_in_the_order_asked_without_missing_or_expired(client: TestClient) -> None:
    # Long enough that a stalled machine still reads memory 2 before it expires.
    ttl = 3
    remembered = time.monotonic()
    remember(
        client,
        {"id": 1, "text": "one"},
        {"id": 2, "text": "two", "ttlSeconds": ttl},
        {"id": 3, "text": "three"},
    )
    ids = ["3", "99", "2", "1"]
    assert [m["id"] for m in gql(client, MEMORIES, {"ids": ids}).data["memories"]] == [
        "3",
        "2",
        "1",
    ]
    time.sleep(max(0.0, remembered + ttl + 0.2 - time.monotonic()))
    assert [m["id"] for m in gql(client, MEMORIES, {"ids": ids}).data["memories"]] == ["3", "1"]
    assert recalled(client, text="two") == []
    # plain points are not memories
    assert gql(client, UPSERT, {"points": [point(50, [1, 0, 0, 0])]}).data
    assert gql(client, MEMORIES, {"ids": ["50"]}).data["memories"] == []


def test_the_sweep_deletes_expired_memories_and_counts_them(tmp_path: Path) -> None:
    before = REGISTRY.get_sample_value("memories_expired_total") or 0.0
    with make_client(tmp_path, ttl_sweep_seconds=0.2) as client:
        remember(client, {"id": 1, "text": "fleeting", "ttlSeconds": 1}, {"id": 2, "text": "kept"})
        deadline = time.monotonic() + 30
        while count_points(client) != 1 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert count_points(client) == 1
    after = REGISTRY.get_sample_value("memories_expired_total") or 0.0
    assert after - before == 1


def test_forget_by_ids_or_filter(client: TestClient) -> None:
    remember(
        client,
        {"id": 1, "text": "a", "metadata": {"tag": "x"}},
        {"id": 2, "text": "b", "metadata": {"tag": "x"}},
        {"id": 3, "text": "c", "metadata": {"tag": "y"}},
    )
    assert gql(client, UPSERT, {"points": [point(9, [1, 0, 0, 0], tag="x")]}).data
    assert gql(client, FORGET, {"ids": ["1", "404"]}).data == {"forget": {"deleted": 1}}
    tag_x = {"must": [{"key": "tag", "match": {"value": "x"}}]}
    assert gql(client, FORGET, {"filter": tag_x}).data == {"forget": {"deleted": 1}}
    assert count_points(client) == 2  # the plain point with tag x is still there
    variables: dict[str, Any]
    for variables in ({}, {"ids": ["3"], "filter": tag_x}, {"filter": {}}, {"ids": []}):
        gql(client, FORGET, variables).assert_error("BAD_USER_INPUT")
    assert count_points(client) == 2


# Bad input: BAD_USER_INPUT, nothing written


def _deep(levels: int) -> Any:
    value: Any = 1
    for _ in range(levels):
        value = {"n": value}
    return value


BAD_BATCHES: dict[str, list[dict[str, Any]]] = {
    "empty batch": [],
    "empty text": [{"text": ""}],
    "blank text": [{"text": "  \n\t "}],
    "no-break spaces only": [{"text": "\u00a0\u202f\u3000"}],
    "zero-width characters only": [{"text": "\u200b \ufeff\u200d\u2060\u00ad"}],
    "oversized text": [{"text": "é" * 600}],  # 1200 bytes over a limit of 1000
    "ttl zero": [{"text": "ok", "ttlSeconds": 0}],
    "ttl negative": [{"text": "ok", "ttlSeconds": -5}],
    "ttl beyond ten years": [{"text": "ok", "ttlSeconds": MAX_TTL_SECONDS + 1}],
    "metadata not an object": [{"text": "ok", "metadata": [1, 2]}],
    "metadata too deep": [{"text": "ok", "metadata": _deep(70)}],
    "wrong dimension": [{"text": "ok", "vector": [1, 0]}],
    "bad id": [{"text": "ok", "id": "not-an-id"}],
    "duplicate ids": [{"text": "ok", "id": 1}, {"text": "ok", "id": "1"}],
    "one bad among good": [{"text": "fine", "id": 5}, {"text": " ", "id": 6}],
    "too many": [{"text": "x"}] * 11,
}


@pytest.mark.parametrize("case", list(BAD_BATCHES))
def test_bad_memories_write_nothing(tmp_path: Path, case: str) -> None:
    with make_client(tmp_path, max_memory_text_bytes=1000, max_upsert_points=10) as client:
        remember(client, {"id": 100, "text": "already here"})
        response = gql(client, REMEMBER, {"m": BAD_BATCHES[case]})
        response.assert_error("BAD_USER_INPUT")
        assert count_points(client) == 1


BAD_RECALLS: dict[str, dict[str, Any]] = {
    "neither text nor vector": {},
    "blank text": {"text": "   "},
    "zero-width text": {"text": "\u200b\u200b"},
    "semantic without vector or embedder": {"text": "x", "mode": "SEMANTIC"},
    "hybrid without vector or embedder": {"text": "x", "mode": "HYBRID"},
    "keyword without text": {"vector": [1, 0, 0, 0], "mode": "KEYWORD"},
    "diversity without dense": {"text": "x", "diversity": 0.5},
    "diversity above 1": {"vector": [1, 0, 0, 0], "diversity": 1.5},
    "diversity below 0": {"vector": [1, 0, 0, 0], "diversity": -0.1},
    "negative half-life": {"text": "x", "recency": {"halfLifeSeconds": -1}},
    "zero half-life": {"text": "x", "recency": {"halfLifeSeconds": 0}},
    # 0 in the engine's 32-bit floats: the recall failed as STORE_UNAVAILABLE
    "half-life below 32-bit floats": {"text": "x", "recency": {"halfLifeSeconds": 1e-46}},
    "half-life under a millisecond": {"text": "x", "recency": {"halfLifeSeconds": 9e-4}},
    "half-life over 1e12 seconds": {"text": "x", "recency": {"halfLifeSeconds": 1.01e12}},
    "weight above 1": {"text": "x", "recency": {"halfLifeSeconds": 60, "weight": 1.01}},
    "weight below 0": {"text": "x", "recency": {"halfLifeSeconds": 60, "weight": -0.5}},
    "limit 0": {"text": "x", "limit": 0},
    "limit 101": {"text": "x", "limit": 101},
    "wrong dimension": {"vector": [1, 0]},
}


@pytest.mark.parametrize("case", list(BAD_RECALLS))
def test_bad_recalls_are_refused_saying_why(client: TestClient, case: str) -> None:
    remember(client, {"text": "x marks the spot"})  # a recall with candidates to rank
    error = gql(client, RECALL, BAD_RECALLS[case]).assert_error("BAD_USER_INPUT")
    if "embedder" in case or "dense" in case:
        assert "EMBEDDER" in error["message"] and "vector" in error["message"]
    if "half-life" in case:
        assert "between 0.001 and 1e+12 seconds" in error["message"]


@pytest.mark.parametrize("half_life", [1e-3, 1e12])
def test_the_half_life_bounds_themselves_are_served(client: TestClient, half_life: float) -> None:
    remember(client, {"text": "x marks the spot"})
    found = recall(client, text="spot", recency={"halfLifeSeconds": half_life, "weight": 0.5})
    assert [m["text"] for m in found] == ["x marks the spot"]


def test_an_embedder_failure_writes_nothing(tmp_path: Path) -> None:
    embedder = TopicEmbedder(fail=True)
    with make_client(tmp_path, embedder) as client:
        response = gql(
            client, REMEMBER, {"m": [{"text": "a"}, {"text": "b", "vector": [1, 0, 0, 0]}]}
        )
        response.assert_error("EMBEDDER_UNAVAILABLE")
        assert count_points(client) == 0
        # with every vector given, the embedder is not needed
        remember(client, {"text": "b", "vector": [1, 0, 0, 0]})
        assert embedder.calls == 1


def test_while_the_embedder_fails_auto_recall_ranks_by_keywords(tmp_path: Path) -> None:
    """AUTO ranks by what the request allows; an agent over MCP cannot pick a mode, so its
    recall would be down with the embedder. The modes that need it still say so."""
    embedder = TopicEmbedder(fail=True)
    with make_client(tmp_path, embedder) as client:
        remember(client, {"text": "the harbour at dawn", "vector": [1, 0, 0, 0]})
        found = gql(client, RECALL, {"text": "harbour"}).data["recall"]
        assert [m["text"] for m in found] == ["the harbour at dawn"]
        for asked in ({"mode": "HYBRID"}, {"mode": "SEMANTIC"}, {"diversity": 0.5}):
            response = gql(client, RECALL, {"text": "harbour", **asked})
            response.assert_error("EMBEDDER_UNAVAILABLE")
        # a vector given needs no embedder: AUTO is HYBRID as ever
        hybrid = gql(client, RECALL, {"text": "harbour", "vector": [1, 0, 0, 0]}).data
        assert [m["text"] for m in hybrid["recall"]] == ["the harbour at dawn"]


def test_the_embedder_dimension_is_checked_at_start_up(tmp_path: Path) -> None:
    app = create_app(make_settings(tmp_path), embedder=TopicEmbedder(dimension=8))
    with (
        pytest.raises(ValueError, match=r"EMBEDDER test:topics .* 8 .*VECTOR_SIZE 4"),
        TestClient(app),
    ):
        pass


# Tenancy


@pytest.fixture
def secured(tmp_path: Path) -> Iterator[TestClient]:
    settings = make_settings(tmp_path, auth_jwt_secret=SECRET, auth_jwt_audience="memory")
    with TestClient(create_app(settings)) as client:
        yield client


def test_tenants_cannot_reach_each_others_memories(secured: TestClient) -> None:
    a, b = bearer(token("acme", aud="memory")), bearer(token("globex", aud="memory"))
    remember(secured, {"id": 1, "text": "acme secret merger", "metadata": {"owner": "acme"}}, **a)

    def as_b(query: str, variables: dict[str, Any]) -> Any:
        return gql(secured, query, variables, **b).data

    assert as_b(RECALL, {"text": "acme secret merger"})["recall"] == []
    assert as_b(RECALL, {"vector": [1, 0, 0, 0], "mode": "SEMANTIC"})["recall"] == []
    assert as_b(MEMORIES, {"ids": ["1"]})["memories"] == []
    assert as_b(FORGET, {"ids": ["1"]})["forget"]["deleted"] == 0
    owner = {"must": [{"key": "owner", "match": {"value": "acme"}}]}
    assert as_b(FORGET, {"filter": owner})["forget"]["deleted"] == 0
    for internal in ("_t", "_c", "_x", "_p", "_u.owner"):
        flt = {"mustNot": [{"key": internal, "match": {"value": "nothing"}}]}
        assert as_b(FORGET, {"filter": flt})["forget"]["deleted"] == 0
        assert as_b(RECALL, {"text": "secret", "filter": flt})["recall"] == []
    # acme's own filters cannot reach the internal fields either
    text_key = {"must": [{"key": "_t", "match": {"value": "acme secret merger"}}]}
    assert gql(secured, FORGET, {"filter": text_key}, **a).data["forget"]["deleted"] == 0
    assert [m["id"] for m in gql(secured, MEMORIES, {"ids": ["1"]}, **a).data["memories"]] == ["1"]


# Durability


@pytest.mark.slow
def test_remembered_memories_survive_kill_9(tmp_path: Path) -> None:
    servers = [ServerProcess(tmp_path / "data", tmp_path / f"server-{i}.log") for i in range(2)]
    try:
        first = servers[0].start()
        memories = [
            {"id": i, "text": f"note {i} about kiwis", "ttlSeconds": 3600} for i in range(50)
        ]
        assert first.gql(REMEMBER, {"m": memories}) == {
            "data": {"remember": {"ids": [str(i) for i in range(50)]}}
        }
        before = first.gql(MEMORIES, {"ids": ["0"]})["data"]["memories"]
        first.kill9()
        again = servers[1].start()
        found = again.gql(RECALL, {"text": "kiwis", "limit": 100})["data"]["recall"]
        assert sorted(int(m["id"]) for m in found) == list(range(50))
        assert again.gql(MEMORIES, {"ids": ["0"]})["data"]["memories"] == before
    finally:
        for server in servers:
            server.stop()


@pytest.mark.parametrize(
    ("text", "taken"),
    [
        ("x" * 32_768, True),
        ("é" * 16_384, True),  # two bytes of UTF-8 each, as JSON too
        ('"' * 16_384, True),  # \" is two bytes of JSON
        ('"' * 16_385, False),
        ("\x01" * 5_462, False),  # \u0001: six bytes of JSON for one of UTF-8
        ("\x01" * 5_461 + "xx", True),
    ],
    ids=["ascii", "utf-8", "quotes", "quotes-over", "controls-over", "controls"],
)
def test_text_is_measured_as_json_as_answers_carry_it(
    client: TestClient, text: str, taken: bool
) -> None:
    """1,000 memories of 32 KB of \\x01 (and metadata alike) made one 208 MB answer: the
    text bound counted UTF-8, but the answer carries \\u0001, six bytes a character."""
    response = gql(client, REMEMBER, {"m": [{"text": text}]})
    if taken:
        assert "errors" not in response.body, response.body
    else:
        message = response.assert_error("BAD_USER_INPUT")["message"]
        assert message.startswith("memories[0]: text is longer than MAX_MEMORY_TEXT_BYTES (32768")
        assert count_points(client) == 0
