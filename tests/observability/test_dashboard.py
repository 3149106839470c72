"""The Grafana dashboard: generated from observability/grafana/dashboard.py, provisioned
with the datasource it refers to, and covering what on-call needs. Its queries run
against live data in test_live.py."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import jwt
from prometheus_client import REGISTRY
from starlette.testclient import TestClient

from graph.app import create_app
from tests.conftest import make_settings
from tests.observability.support import (
    DASHBOARD_JSON,
    DATASOURCES,
    GRAFANA,
    dashboard_module,
    load_yaml,
    panel_targets,
)

DASHBOARD = json.loads(DASHBOARD_JSON.read_text())


def test_committed_json_is_the_generators_output() -> None:
    assert DASHBOARD_JSON.read_text() == dashboard_module().render(), (
        "run: python observability/grafana/dashboard.py "
        "> observability/grafana/dashboards/graph-memory.json"
    )


def test_every_query_uses_the_provisioned_datasource() -> None:
    (datasource,) = load_yaml(DATASOURCES)["datasources"]
    assert datasource["type"] == "prometheus"
    for title, target in panel_targets(DASHBOARD):
        assert target["datasource"] == {"type": "prometheus", "uid": datasource["uid"]}, title
        assert target["expr"].strip(), title


def test_panels_have_unique_ids_and_fit_the_grid() -> None:
    ids = [panel["id"] for panel in DASHBOARD["panels"]]
    assert len(ids) == len(set(ids))
    for panel in DASHBOARD["panels"]:
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24, panel["title"]
        if panel["type"] != "row":
            assert panel["targets"], panel["title"]
            refs = [target["refId"] for target in panel["targets"]]
            assert len(refs) == len(set(refs)), panel["title"]


def test_the_dashboard_shows_what_on_call_needs() -> None:
    exprs = " ".join(target["expr"] for _, target in panel_targets(DASHBOARD))
    for needed in [
        "http_requests_total",  # request rate
        "graphql_errors_total",  # error rate by code
        "graphql_operation_duration_seconds_bucket",  # p50/p95/p99 per operation
        "graphql_resolver_duration_seconds_bucket",  # slowest resolvers
        "store_call_duration_seconds_bucket",  # store latency
        "store_errors_total",  # store errors
        "store_points_upserted_total",  # ingest rate
        "store_collection_points",  # points per collection
        "http_requests_in_progress",  # in flight
        "rate_limited_requests_total",  # rate-limited requests, GraphQL's and MCP's
        "process_cpu_seconds_total",
        "process_resident_memory_bytes",
        'up{job="qdrant"}',
        'field=~"remember|recall"',  # memory resolvers' latency
        "embedder_duration_seconds_bucket",  # embedder latency
        "embedder_errors_total",  # embedder errors by reason
        "memories_expired_total",  # the expiry sweep
        "histogram_quantile(0.99",
    ]:
        assert needed in exprs, needed


def test_provisioning_points_at_the_dashboards_folder() -> None:
    (provider,) = load_yaml(GRAFANA / "provisioning" / "dashboards" / "graph-memory.yml")[
        "providers"
    ]
    assert provider["options"]["path"] == "/var/lib/grafana/dashboards"


def counted_by(title: str) -> float:
    """What the counter a panel rates holds now, summed over the series its selector picks
    (the job matcher aside: no scrape here)."""
    (expr,) = [t["expr"] for t_title, t in panel_targets(DASHBOARD) if t_title == title]
    match = re.search(r"rate\((\w+)\{([^}]*)\}\[", expr)
    assert match, expr
    name, selector = match.groups()
    wanted = dict(re.findall(r'(\w+)="([^"]*)"', selector))
    wanted.pop("job", None)
    return sum(
        sample.value
        for family in REGISTRY.collect()
        for sample in family.samples
        if sample.name == name and wanted.items() <= sample.labels.items()
    )


def test_the_rate_limited_panel_counts_every_refusal_mcps_included(tmp_path: Path) -> None:
    secret = "a-test-secret-of-at-least-32-bytes-long!"
    claims = {"tenant": "panel", "scope": "read write", "exp": int(time.time()) + 600}
    bearer = {"authorization": f"Bearer {jwt.encode(claims, secret, algorithm='HS256')}"}
    settings = make_settings(tmp_path, auth_jwt_secret=secret, rate_limit="1/minute")
    before = counted_by("Rate-limited requests")
    with TestClient(create_app(settings)) as client:
        graphql = [client.post("/graphql", json={"query": "{ count }"}, headers=bearer)]
        graphql += [client.post("/graphql", json={"query": "{ count }"}, headers=bearer)]
        mcp = client.post(
            "/mcp",
            json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"},
            headers={**bearer, "accept": "application/json, text/event-stream"},
        )
    assert [r.status_code for r in graphql] == [200, 429]
    assert mcp.status_code == 429
    assert counted_by("Rate-limited requests") - before == 2
