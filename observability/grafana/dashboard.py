"""The Grafana dashboard of the memory server, as code.

    python observability/grafana/dashboard.py > observability/grafana/dashboards/graph-memory.json

The JSON is committed (Grafana provisions it from there); tests/observability checks
that it is this script's output, and runs every query in it against a live Prometheus.
Standard library only.
"""

from __future__ import annotations

import json
import sys
from typing import Any

DATASOURCE = {"type": "prometheus", "uid": "prometheus"}
JOB = 'job="graph-memory"'
RATE = "$__rate_interval"
WIDTH = 24
MEMORY_FIELDS = 'field=~"remember|recall|memories|forget"'


def target(expr: str, legend: str = "", *, instant: bool = False) -> dict[str, Any]:
    return {
        "expr": expr,
        "legendFormat": legend or "__auto",
        "instant": instant,
        "range": not instant,
    }


def quantiles(metric: str, by: str, selector: str, legend: str) -> list[dict[str, Any]]:
    return [
        target(
            f"histogram_quantile({q}, sum by ({by}, le) "
            f"(rate({metric}_bucket{{{selector}}}[{RATE}])))",
            f"p{round(q * 100)} {legend}",
        )
        for q in (0.5, 0.95, 0.99)
    ]


def panel(
    title: str,
    description: str,
    targets: list[dict[str, Any]],
    *,
    kind: str = "timeseries",
    unit: str = "short",
    width: int = 8,
    height: int = 8,
) -> dict[str, Any]:
    return {
        "type": kind,
        "title": title,
        "description": description,
        "datasource": DATASOURCE,
        "targets": targets,
        "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
        "options": {},
        "gridPos": {"w": width, "h": height},
    }


def row(title: str) -> dict[str, Any]:
    return {
        "type": "row",
        "title": title,
        "collapsed": False,
        "panels": [],
        "gridPos": {"w": WIDTH, "h": 1},
    }


SECTIONS: list[tuple[str, list[dict[str, Any]]]] = [
    (
        "Service",
        [
            panel(
                "Up",
                "1 when Prometheus scrapes the server and Qdrant, and when the server "
                "reaches its store.",
                [
                    target(f"up{{{JOB}}}", "server {{instance}}"),
                    target('up{job="qdrant"}', "qdrant {{instance}}"),
                    target(f"store_up{{{JOB}}}", "store from {{instance}}"),
                ],
                kind="stat",
                width=6,
                height=5,
            ),
            panel(
                "Availability SLI (5m)",
                "Share of GraphQL requests that failed on the server's side (SLO: 99.9% succeed).",
                [target("graphql:sli_errors:ratio_rate5m", "failed")],
                kind="stat",
                unit="percentunit",
                width=6,
                height=5,
            ),
            panel(
                "Error budget burn rate (1h)",
                "How fast each SLO's budget is spent: 1 spends it exactly in 30 days; "
                "14.4 over 1h pages.",
                [
                    target("graphql:sli_errors:ratio_rate1h / 0.001", "availability"),
                    target("graphql:sli_slow:ratio_rate1h / 0.01", "latency"),
                ],
                kind="stat",
                width=6,
                height=5,
            ),
            panel(
                "Version",
                "Version and store backend of each server.",
                [target(f"graph_build_info{{{JOB}}}", "{{version}} {{backend}}", instant=True)],
                kind="table",
                width=6,
                height=5,
            ),
        ],
    ),
    (
        "Traffic and errors",
        [
            panel(
                "Request rate by path",
                "HTTP requests per second (paths grouped by route).",
                [target(f"sum by (path) (rate(http_requests_total{{{JOB}}}[{RATE}]))", "{{path}}")],
                unit="reqps",
            ),
            panel(
                "GraphQL operations",
                "Operations per second by type and outcome.",
                [
                    target(
                        f"sum by (operation_type, outcome) "
                        f"(rate(graphql_operations_total{{{JOB}}}[{RATE}]))",
                        "{{operation_type}} {{outcome}}",
                    )
                ],
                unit="ops",
            ),
            panel(
                "Errors by code",
                "GraphQL errors per second by code (they come back with HTTP 200).",
                [
                    target(
                        f"sum by (code) (rate(graphql_errors_total{{{JOB}}}[{RATE}]))", "{{code}}"
                    )
                ],
                unit="reqps",
            ),
            panel(
                "HTTP responses by status",
                "Responses per second by status code.",
                [
                    target(
                        f"sum by (status_code) (rate(http_requests_total{{{JOB}}}[{RATE}]))",
                        "{{status_code}}",
                    )
                ],
                unit="reqps",
            ),
            panel(
                "In-flight requests",
                "HTTP requests being served right now.",
                [target(f"sum(http_requests_in_progress{{{JOB}}})", "in flight")],
            ),
            panel(
                "Rate-limited requests",
                "Requests refused with RATE_LIMITED per second, over GraphQL and MCP.",
                [
                    target(
                        # A tenant's series starts with its first refusal: 0 until then.
                        f"sum(rate(rate_limited_requests_total{{{JOB}}}[{RATE}])) or vector(0)",
                        "rate limited",
                    )
                ],
                unit="reqps",
            ),
            panel(
                "Request and response bytes",
                "Bytes per second received in request bodies and sent in responses.",
                [
                    target(f"sum(rate(http_request_body_bytes_total{{{JOB}}}[{RATE}]))", "in"),
                    target(f"sum(rate(http_response_body_bytes_total{{{JOB}}}[{RATE}]))", "out"),
                ],
                unit="Bps",
            ),
            panel(
                "Top tenants",
                "Operations per second of the ten busiest tenants (the first 100 tenants "
                "keep their own label, the rest are 'other').",
                [
                    target(
                        f"topk(10, sum by (tenant) "
                        f"(rate(graphql_tenant_operations_total{{{JOB}}}[{RATE}])))",
                        "{{tenant}}",
                    )
                ],
                unit="ops",
            ),
        ],
    ),
    (
        "Latency",
        [
            panel(
                "Operation latency",
                "p50, p95 and p99 of GraphQL operations, per operation type and name.",
                quantiles(
                    "graphql_operation_duration_seconds",
                    "operation_type, operation_name",
                    JOB,
                    "{{operation_type}} {{operation_name}}",
                ),
                unit="s",
                width=12,
                height=9,
            ),
            panel(
                "HTTP latency of /graphql",
                "p50, p95 and p99 of POST /graphql, what clients see (HighLatency watches p95).",
                quantiles("http_request_duration_seconds", "path", f'{JOB}, path="/graphql"', ""),
                unit="s",
                width=12,
                height=9,
            ),
            panel(
                "Slowest resolvers (p95)",
                "The ten resolvers with the highest p95 over the dashboard's rate interval.",
                [
                    target(
                        f"topk(10, histogram_quantile(0.95, sum by (type, field, le) "
                        f"(rate(graphql_resolver_duration_seconds_bucket{{{JOB}}}[{RATE}]))))",
                        "{{type}}.{{field}}",
                        instant=True,
                    )
                ],
                kind="bargauge",
                unit="s",
                width=12,
                height=9,
            ),
            panel(
                "Resolver calls",
                "Calls per second of each timed resolver.",
                [
                    target(
                        f"sum by (type, field) "
                        f"(rate(graphql_resolver_duration_seconds_count{{{JOB}}}[{RATE}]))",
                        "{{type}}.{{field}}",
                    )
                ],
                unit="ops",
                width=12,
                height=9,
            ),
        ],
    ),
    (
        "Store",
        [
            panel(
                "Store latency (p95)",
                "p95 of vector store calls by operation.",
                [
                    target(
                        f"histogram_quantile(0.95, sum by (operation, le) "
                        f"(rate(store_call_duration_seconds_bucket{{{JOB}}}[{RATE}])))",
                        "{{operation}}",
                    )
                ],
                unit="s",
            ),
            panel(
                "Store calls",
                "Vector store calls per second by operation.",
                [
                    target(
                        f"sum by (operation) "
                        f"(rate(store_call_duration_seconds_count{{{JOB}}}[{RATE}]))",
                        "{{operation}}",
                    )
                ],
                unit="ops",
            ),
            panel(
                "Store errors",
                "Store calls that failed per second, by operation and code "
                "(STORE_UNAVAILABLE and STORE_TIMEOUT are the store's; NOT_FOUND and "
                "BAD_USER_INPUT the client's).",
                [
                    target(
                        f"sum by (operation, code) (rate(store_errors_total{{{JOB}}}[{RATE}]))",
                        "{{operation}} {{code}}",
                    )
                ],
                unit="ops",
            ),
            panel(
                "Ingest rate",
                "Points written and deleted per second.",
                [
                    target(f"sum(rate(store_points_upserted_total{{{JOB}}}[{RATE}]))", "upserted"),
                    target(f"sum(rate(store_points_deleted_total{{{JOB}}}[{RATE}]))", "deleted"),
                ],
                unit="short",
            ),
            panel(
                "Points per collection",
                "Points each collection holds (sampled every few seconds).",
                [
                    target(
                        f"sum by (collection) (store_collection_points{{{JOB}}})", "{{collection}}"
                    )
                ],
            ),
            panel(
                "Unindexed points",
                "Embedded store: points waiting for the background index build "
                "(searched brute force until then), builds running, and indexed "
                "segments (every query searches each).",
                [
                    target(
                        f"sum by (collection) (store_unindexed_points{{{JOB}}})", "{{collection}}"
                    ),
                    target(
                        f"sum by (collection) (store_index_building{{{JOB}}})",
                        "building {{collection}}",
                    ),
                    target(
                        f"sum by (collection) (store_index_segments{{{JOB}}})",
                        "segments {{collection}}",
                    ),
                ],
            ),
            panel(
                "Index builds",
                "Embedded store: background index builds per hour by outcome, and their "
                "mean duration.",
                [
                    target(
                        f"sum by (collection, outcome) "
                        f"(increase(store_index_builds_total{{{JOB}}}[1h]))",
                        "{{collection}} {{outcome}}",
                    ),
                    target(
                        f"sum by (collection) "
                        f"(increase(store_index_build_duration_seconds_sum{{{JOB}}}[1h])) "
                        f"/ sum by (collection) "
                        f"(increase(store_index_build_duration_seconds_count{{{JOB}}}[1h]))",
                        "mean seconds {{collection}}",
                    ),
                ],
                width=16,
            ),
        ],
    ),
    (
        "Memories",
        [
            panel(
                "Memory calls",
                "remember, recall, memories and forget calls per second (resolver timings).",
                [
                    target(
                        f"sum by (field) (rate(graphql_resolver_duration_seconds_count"
                        f"{{{JOB}, {MEMORY_FIELDS}}}[{RATE}]))",
                        "{{field}}",
                    )
                ],
                unit="ops",
            ),
            panel(
                "Remember and recall latency",
                "p50, p95 and p99 of the remember and recall resolvers (embedding included).",
                quantiles(
                    "graphql_resolver_duration_seconds",
                    "field",
                    f'{JOB}, field=~"remember|recall"',
                    "{{field}}",
                ),
                unit="s",
            ),
            panel(
                "Memories expired",
                "Expired memories deleted by the background sweep, per minute.",
                [target(f"sum(rate(memories_expired_total{{{JOB}}}[{RATE}])) * 60", "per minute")],
            ),
            panel(
                "Embedder latency",
                "p50 and p95 of one embedding call (a batch of texts) by embedder kind, "
                "failed calls included.",
                [
                    target(
                        f"histogram_quantile({q}, sum by (embedder, le) "
                        f"(rate(embedder_duration_seconds_bucket{{{JOB}}}[{RATE}])))",
                        f"p{round(q * 100)} {{{{embedder}}}}",
                    )
                    for q in (0.5, 0.95)
                ],
                unit="s",
                width=12,
            ),
            panel(
                "Embedder errors",
                "Embedding calls that failed after retries, per second, by embedder kind and "
                "reason (EmbedderErrors watches their share of all calls).",
                [
                    target(
                        f"sum by (embedder, reason) (rate(embedder_errors_total{{{JOB}}}[{RATE}]))",
                        "{{embedder}} {{reason}}",
                    )
                ],
                unit="ops",
                width=12,
            ),
        ],
    ),
    (
        "Agents (MCP)",
        [
            panel(
                "MCP tool calls",
                "Tool calls over /mcp per second, by tool and outcome (success, or the error "
                "code the tool answered with).",
                [
                    target(
                        f"sum by (tool, outcome) (rate(mcp_tool_calls_total{{{JOB}}}[{RATE}]))",
                        "{{tool}} {{outcome}}",
                    )
                ],
                unit="ops",
                width=12,
            ),
            panel(
                "MCP tool latency",
                "p50, p95 and p99 of each tool call, from the credential check to the answer.",
                quantiles("mcp_tool_duration_seconds", "tool", JOB, "{{tool}}"),
                unit="s",
                width=12,
            ),
        ],
    ),
    (
        "Process",
        [
            panel(
                "CPU",
                "CPU seconds per second used by each server process.",
                [target(f"rate(process_cpu_seconds_total{{{JOB}}}[{RATE}])", "{{instance}}")],
                unit="percentunit",
                width=12,
            ),
            panel(
                "Memory",
                "Resident memory of each server process.",
                [target(f"process_resident_memory_bytes{{{JOB}}}", "{{instance}}")],
                unit="bytes",
                width=12,
            ),
        ],
    ),
]


def layout(sections: list[tuple[str, list[dict[str, Any]]]]) -> list[dict[str, Any]]:
    """Ids, reference ids and grid positions: rows of panels, left to right."""
    panels: list[dict[str, Any]] = []
    y = 0
    for title, members in sections:
        heading = row(title)
        heading["gridPos"] |= {"x": 0, "y": y}
        panels.append(heading)
        y += 1
        x = 0
        line_height = 0
        for member in members:
            w, h = member["gridPos"]["w"], member["gridPos"]["h"]
            if x + w > WIDTH:
                x, y, line_height = 0, y + line_height, 0
            member["gridPos"] |= {"x": x, "y": y}
            x += w
            line_height = max(line_height, h)
            for ref, query in zip("ABCDEFGH", member["targets"], strict=False):
                query["refId"] = ref
                query["datasource"] = DATASOURCE
            panels.append(member)
        y += line_height
    for number, item in enumerate(panels, start=1):
        item["id"] = number
    return panels


def dashboard() -> dict[str, Any]:
    return {
        "uid": "graph-memory",
        "title": "Memory server",
        "description": "What the on-call engineer of the GraphQL memory server looks at first.",
        "tags": ["graph-memory"],
        "timezone": "browser",
        "editable": True,
        "graphTooltip": 1,
        "schemaVersion": 39,
        "version": 1,
        "refresh": "30s",
        "time": {"from": "now-1h", "to": "now"},
        "templating": {"list": []},
        "annotations": {"list": []},
        "links": [],
        "panels": layout(SECTIONS),
    }


def render() -> str:
    return json.dumps(dashboard(), indent=2) + "\n"


if __name__ == "__main__":
    sys.stdout.write(render())
