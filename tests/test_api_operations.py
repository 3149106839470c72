"""Every operation of the API, through GraphQL over HTTP, on the real embedded engine."""

from __future__ import annotations

from starlette.testclient import TestClient

from tests.helpers import COUNT, QUERY, UPSERT, count_points, gql, point

UUID = "6F9619FF-8B86-D011-B42D-00CF4FC964FF"


def seed(client: TestClient) -> None:
    points = [
        point(1, [1, 0, 0, 0], kind="note", rank=1, meta={"source": "chat"}),
        point("2", [0.9, 0.1, 0, 0], kind="note", rank=2, meta={"source": "mail"}),
        point(3, [0, 1, 0, 0], kind="fact", rank=3, pinned=True),
        point(UUID, [0, 0, 1, 0], kind="fact", rank=4),
    ]
    assert gql(client, UPSERT, {"points": points}).data == {"upsert": {"upserted": 4}}


def test_health_reports_ok_version_and_backend(client: TestClient) -> None:
    health = gql(client, "{ health { status version backend } }").data["health"]
    assert health["status"] == "OK"
    assert health["backend"] == "embedded"
    assert health["version"]


def test_upsert_then_query_best_first_with_ids_normalised(client: TestClient) -> None:
    seed(client)
    hits = gql(client, QUERY, {"vector": [1, 0, 0, 0], "limit": 4}).data["query"]
    assert [hit["id"] for hit in hits][:2] == ["1", "2"]
    assert hits[0]["score"] >= hits[1]["score"] >= hits[2]["score"]
    assert hits[0]["payload"] == {"kind": "note", "rank": 1, "meta": {"source": "chat"}}
    assert hits[0]["vector"] is None
    assert UUID.lower() in {hit["id"] for hit in hits}


def test_query_with_filter_offset_threshold_and_vector(client: TestClient) -> None:
    seed(client)
    facts = {"must": [{"key": "kind", "match": {"value": "fact"}}]}
    hits = gql(client, QUERY, {"vector": [1, 0, 0, 0], "filter": facts}).data["query"]
    assert {hit["id"] for hit in hits} == {"3", UUID.lower()}

    nested = {"must": [{"key": "meta.source", "match": {"any": ["mail"]}}]}
    hits = gql(client, QUERY, {"vector": [1, 0, 0, 0], "filter": nested}).data["query"]
    assert [hit["id"] for hit in hits] == ["2"]

    ranged = {
        "must": [{"key": "rank", "range": {"gte": 2, "lt": 4}}],
        "mustNot": [{"key": "pinned", "match": {"value": True}}],
    }
    hits = gql(client, QUERY, {"vector": [1, 0, 0, 0], "filter": ranged}).data["query"]
    assert [hit["id"] for hit in hits] == ["2"]

    second = gql(client, QUERY, {"vector": [1, 0, 0, 0], "offset": 1, "limit": 1}).data["query"]
    assert [hit["id"] for hit in second] == ["2"]

    close = gql(client, QUERY, {"vector": [1, 0, 0, 0], "threshold": 0.9}).data["query"]
    assert [hit["id"] for hit in close] == ["1", "2"]

    with_vector = gql(client, QUERY, {"vector": [1, 0, 0, 0], "limit": 1, "withVector": True})
    assert with_vector.data["query"][0]["vector"] == [1.0, 0.0, 0.0, 0.0]


def test_inline_vector_literal_is_accepted(client: TestClient) -> None:
    seed(client)
    result = gql(client, "{ query(vector: [0, 1, 0, 0], limit: 1) { id } }")
    assert result.data["query"] == [{"id": "3"}]


def test_upsert_replaces_by_id(client: TestClient) -> None:
    seed(client)
    assert gql(client, UPSERT, {"points": [point(1, [0, 0, 0, 1], kind="changed")]}).data
    assert count_points(client) == 4
    got = gql(client, '{ points(ids: ["1"]) { id payload } }').data["points"]
    assert got == [{"id": "1", "payload": {"kind": "changed"}}]


def test_points_by_ids_in_order_missing_left_out(client: TestClient) -> None:
    seed(client)
    query = "query P($ids: [ID!]!) { points(ids: $ids, withVector: true) { id vector } }"
    got = gql(client, query, {"ids": [UUID, "99", 1]}).data["points"]
    assert [p["id"] for p in got] == [UUID.lower(), "1"]
    assert got[1]["vector"] == [1.0, 0.0, 0.0, 0.0]


def test_count_with_and_without_filter(client: TestClient) -> None:
    seed(client)
    assert count_points(client) == 4
    notes = {"should": [{"key": "kind", "match": {"value": "note"}}]}
    assert gql(client, COUNT, {"filter": notes}).data["count"] == 2
    excluded = {"must": [{"key": "kind", "match": {"except": ["note"]}}]}
    assert gql(client, COUNT, {"filter": excluded}).data["count"] == 2


def test_scroll_pages_through_every_point_once(client: TestClient) -> None:
    seed(client)
    query = """query S($cursor: ID) {
      scroll(limit: 3, cursor: $cursor) { points { id } nextCursor }
    }"""
    first = gql(client, query).data["scroll"]
    assert len(first["points"]) == 3
    assert first["nextCursor"] is not None  # opaque: a stored id (README: Security)
    second = gql(client, query, {"cursor": first["nextCursor"]}).data["scroll"]
    assert len(second["points"]) == 1
    assert second["nextCursor"] is None
    seen = [p["id"] for p in first["points"] + second["points"]]
    assert sorted(seen) == sorted(["1", "2", "3", UUID.lower()])


def test_delete_by_ids_and_by_filter(client: TestClient) -> None:
    seed(client)
    by_ids = 'mutation { delete(ids: ["1", "42"]) { deleted } }'
    assert gql(client, by_ids).data == {"delete": {"deleted": 1}}
    by_filter = """mutation { delete(filter: {must: [{key: "kind", match: {value: "fact"}}]}) {
      deleted } }"""
    assert gql(client, by_filter).data == {"delete": {"deleted": 2}}
    assert count_points(client) == 1


def test_collections_lifecycle(client: TestClient) -> None:
    create = """mutation { createCollection(name: "docs", dimension: 3, distance: EUCLID) {
      name dimension distance pointsCount } }"""
    assert gql(client, create).data["createCollection"] == {
        "name": "docs",
        "dimension": 3,
        "distance": "EUCLID",
        "pointsCount": 0,
    }
    assert gql(client, UPSERT, {"points": [point(7, [1, 2, 3])], "collection": "docs"}).data
    listed = gql(client, "{ collections { name dimension pointsCount } }").data["collections"]
    assert listed == [
        {"name": "docs", "dimension": 3, "pointsCount": 1},
        {"name": "memories", "dimension": 4, "pointsCount": 0},
    ]
    hits = gql(client, QUERY, {"vector": [1, 2, 3], "collection": "docs"}).data["query"]
    assert hits[0]["id"] == "7"
    deleted = gql(client, 'mutation { deleteCollection(name: "docs") }').data
    assert deleted == {"deleteCollection": True}
    names = [c["name"] for c in gql(client, "{ collections { name } }").data["collections"]]
    assert names == ["memories"]


def test_every_response_has_a_request_id_and_echoes_the_clients(client: TestClient) -> None:
    mine = client.get("/healthz", headers={"X-Request-ID": "trace-123"})
    assert mine.headers["x-request-id"] == "trace-123"
    generated = client.get("/healthz")
    assert len(generated.headers["x-request-id"]) == 32
    unsafe = client.get("/healthz", headers={"X-Request-ID": "bad id\twith spaces"})
    assert unsafe.headers["x-request-id"] != "bad id\twith spaces"
    for padded in ("trace-456 ", "trace-456\t", " trace-456"):
        # Optional whitespace around a header value (httptools keeps the trailing part).
        echoed = client.get("/healthz", headers={"X-Request-ID": padded})
        assert echoed.headers["x-request-id"] == "trace-456"


def test_health_readiness_and_metrics_routes(client: TestClient) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    assert client.get("/readyz").status_code == 200
    gql(client, "{ health { status } }")
    metrics = client.get("/metrics").text
    assert 'graphql_resolver_duration_seconds_count{field="health",type="Query"}' in metrics
    assert "http_requests_total{" in metrics
    assert "http_request_duration_seconds_bucket{" in metrics


def test_graphiql_served_on_get_when_enabled(client: TestClient) -> None:
    page = client.get("/graphql", headers={"Accept": "text/html"})
    assert page.status_code == 200
    assert "graphiql" in page.text.lower()
