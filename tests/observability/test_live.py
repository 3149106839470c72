"""The dashboard and the rules against live data: the real server and a real Prometheus
(Debian's) on 127.0.0.1, scraping every second, after traffic that includes errors.

Fails when a panel's query returns no series, when a rule does not evaluate, or when
a panel or a rule names a metric the server does not export.
"""

from __future__ import annotations

import json
import re
import subprocess
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.helpers import free_port, require_tool, stand_in_http
from tests.observability.support import (
    DASHBOARD_JSON,
    PROMETHEUS_DIR,
    RULE_FILES,
    exposition_names,
    metric_names,
    panel_targets,
    recorded_names,
    rules,
)
from tests.process import ServerProcess

pytestmark = pytest.mark.slow

SCRAPE = "1s"
RATE_INTERVAL = "15s"  # what Grafana's $__rate_interval becomes at a 1s scrape interval
TRAFFIC_SECONDS = 3.0
SETTLE_SECONDS = 30.0
INDEX_THRESHOLD = 40

UPSERT = "mutation Upsert($points: [PointInput!]!) { upsert(points: $points) { upserted } }"
RECALL = "query Recall($v: Vector!) { query(vector: $v, limit: 5) { id score payload } }"
MISSING = 'query Missing { count(collection: "nowhere") }'
REMEMBER = "mutation Remember($m: [MemoryInput!]!) { remember(memories: $m) { ids } }"
RECALL_TEXT = "query RecallText($t: String!) { recall(text: $t, limit: 5) { id score } }"
UNEMBEDDABLE = "unembeddable"  # the embedding API below refuses texts with this word


class EmbeddingAPI(BaseHTTPRequestHandler):
    """An OpenAI-compatible POST /v1/embeddings answering 4-dimensional vectors, and HTTP 400
    (a refusal, not retried) for any batch with a text containing UNEMBEDDABLE."""

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["content-length"])))
        texts = [body["input"]] if isinstance(body["input"], str) else body["input"]
        answer: dict[str, object]
        if any(UNEMBEDDABLE in text for text in texts):
            status, answer = 400, {"error": {"message": "refused"}}
        else:
            data = [
                {"index": i, "embedding": [float(len(text)), 1.0, 0.5, float(i)]}
                for i, text in enumerate(texts)
            ]
            status, answer = 200, {"data": data, "model": body.get("model")}
        encoded = json.dumps(answer).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(encoded)))
        self.end_headers()
        self.wfile.write(encoded)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def embedding_api() -> Iterator[str]:
    with stand_in_http(EmbeddingAPI) as url:
        yield f"{url}/v1"


def prometheus_config(server_port: int, prometheus_port: int) -> dict[str, Any]:
    """The committed prometheus.yml, pointed at this test's processes. Qdrant and
    Alertmanager are not running: their targets are ports nobody listens on, so their
    `up` series are real zeros."""
    config: dict[str, Any] = yaml.safe_load((PROMETHEUS_DIR / "prometheus.yml").read_text())
    config["global"] = {"scrape_interval": SCRAPE, "evaluation_interval": SCRAPE}
    config["rule_files"] = [str(path) for path in RULE_FILES]
    config.pop("alerting")
    targets = {
        "graph-memory": f"127.0.0.1:{server_port}",
        "qdrant": f"127.0.0.1:{free_port()}",
        "alertmanager": f"127.0.0.1:{free_port()}",
        "prometheus": f"127.0.0.1:{prometheus_port}",
    }
    for job in config["scrape_configs"]:
        job.pop("authorization", None)
        job["static_configs"] = [{"targets": [targets[job["job_name"]]]}]
    return config


class Prometheus:
    def __init__(self, binary: str, directory: Path, server_port: int) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = directory / "prometheus.log"
        config_path = directory / "prometheus.yml"
        config_path.write_text(yaml.safe_dump(prometheus_config(server_port, self.port)))
        log = self.log_path.open("wb")
        self.process = subprocess.Popen(
            [
                binary,
                f"--config.file={config_path}",
                f"--storage.tsdb.path={directory / 'tsdb'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
                "--log.level=warn",
            ],
            stdout=log,
            stderr=log,
        )
        log.close()

    def wait_ready(self, seconds: float = 30) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            assert self.process.poll() is None, self.log_path.read_text()
            try:
                if httpx.get(f"{self.url}/-/ready", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        raise AssertionError(f"Prometheus not ready:\n{self.log_path.read_text()}")

    def wait_scraping(self, seconds: float = 30) -> None:
        """Until the server has been scraped once: Prometheus applies new targets on a
        timer of its own, a few seconds after it is ready."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if self.query('up{job="graph-memory"} == 1')["data"]["result"]:
                return
            time.sleep(0.2)
        raise AssertionError(f"Prometheus never scraped the server:\n{self.log_path.read_text()}")

    def query(self, expr: str) -> dict[str, Any]:
        response = httpx.get(f"{self.url}/api/v1/query", params={"query": expr}, timeout=10)
        body: dict[str, Any] = response.json()
        return body

    def rule_health(self) -> list[dict[str, Any]]:
        body = httpx.get(f"{self.url}/api/v1/rules", timeout=10).json()
        return [rule for group in body["data"]["groups"] for rule in group["rules"]]

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)


@pytest.fixture
def stack(tmp_path: Path, embedding_api: str) -> Iterator[tuple[ServerProcess, Prometheus]]:
    binary = require_tool("prometheus")
    server = ServerProcess(
        tmp_path / "data",
        tmp_path / "server.log",
        INDEX_THRESHOLD=str(INDEX_THRESHOLD),
        MAX_BODY_BYTES="2048",
        EMBEDDER="openai:test-model",
        EMBED_URL=embedding_api,
        TTL_SWEEP_SECONDS="1",
    )
    prometheus: Prometheus | None = None
    try:
        server.start(wait=False)
        prometheus = Prometheus(binary, tmp_path, server.port)
        server.wait_ready()
        prometheus.wait_ready()
        prometheus.wait_scraping()
        yield server, prometheus
    finally:
        if prometheus is not None:
            prometheus.stop()
        server.stop()


# Tool calls over /mcp (stateless JSON-RPC, as an agent's client sends them), one of them
# a bad argument, so the MCP panels have both outcomes.
MCP_CALLS: list[tuple[str, dict[str, Any]]] = [
    ("remember", {"text": "tea in the morning, said over MCP"}),
    ("recall", {"text": "tea", "limit": 3}),
    ("recall", {"text": "tea", "limit": 0}),
]


def drive_traffic(url: str) -> None:
    """Every kind of request, successes and errors, for a few seconds."""
    graphql = f"{url}/graphql"
    with httpx.Client(timeout=10) as client:

        def post(query: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
            response = client.post(graphql, json={"query": query, "variables": variables})
            body: dict[str, Any] = response.json()
            return body

        points = [
            {"id": i, "vector": [float(i % 7), 1.0, 0.5, float(i % 3)], "payload": {"n": i}}
            for i in range(1, INDEX_THRESHOLD + 21)
        ]
        for start in range(0, len(points), 10):  # small batches: MAX_BODY_BYTES is low here
            batch = points[start : start + 10]
            assert post(UPSERT, {"points": batch})["data"]["upsert"]["upserted"] == len(batch)
        post('mutation { createCollection(name: "docs", dimension: 4) { name } }')
        memories = [
            {"text": "tea in the morning", "metadata": {"user": "ada"}},
            {"text": "a flight on friday", "ttlSeconds": 1},
        ]
        assert len(post(REMEMBER, {"m": memories})["data"]["remember"]["ids"]) == 2
        deadline = time.monotonic() + TRAFFIC_SECONDS
        while time.monotonic() < deadline:
            assert "errors" not in post(RECALL, {"v": [1.0, 0.5, 0.5, 0.0]})
            post("query Count { count }")
            post('query Get { points(ids: ["1", "2"]) { id } }')
            post("query Page { scroll(limit: 10) { nextCursor } }")
            post("query Health { health { status } }")
            post("query Spaces { collections { name pointsCount } }")
            post('mutation Forget { delete(ids: ["3"]) { deleted } }')
            assert "errors" not in post(REMEMBER, {"m": [{"text": "coffee at noon"}]})
            assert post(RECALL_TEXT, {"t": "tea"})["data"]["recall"]
            refused = post(REMEMBER, {"m": [{"text": f"an {UNEMBEDDABLE} text"}]})
            assert refused["errors"][0]["extensions"]["code"] == "EMBEDDER_UNAVAILABLE"
            post('query ById { memories(ids: ["1"]) { id } }')
            post('mutation ForgetMemories { forget(ids: ["2"]) { deleted } }')
            assert post(MISSING)["errors"][0]["extensions"]["code"] == "NOT_FOUND"
            post("query Bad { query(vector: [1, 2, 3, 4], limit: 0) { id } }")
            post("query { nope }")
            post("{ unclosed")
            client.post(graphql, content=b"not json", headers={"content-type": "application/json"})
            client.post(graphql, content=b"x" * 4096, headers={"content-type": "application/json"})
            client.get(f"{url}/readyz")
            for tool, arguments in MCP_CALLS:
                call = {"name": tool, "arguments": arguments}
                answer = client.post(
                    f"{url}/mcp",
                    json={"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": call},
                    headers={"accept": "application/json, text/event-stream"},
                )
                assert answer.status_code == 200, answer.text[:300]


def wait_for_series(prometheus: Prometheus, queries: list[str]) -> dict[str, Any]:
    """Each query's last answer, once all return series or the time is up."""
    answers: dict[str, Any] = {}
    deadline = time.monotonic() + SETTLE_SECONDS
    while True:
        answers = {expr: prometheus.query(expr) for expr in queries}
        empty = [
            e for e, a in answers.items() if a.get("status") != "success" or not a["data"]["result"]
        ]
        if not empty or time.monotonic() > deadline:
            return answers
        time.sleep(1)


def test_every_panel_and_rule_works_on_live_data(
    stack: tuple[ServerProcess, Prometheus],
) -> None:
    server, prometheus = stack
    drive_traffic(server.url)
    exposition = httpx.get(f"{server.url}/metrics", timeout=10).text
    # A family with no series yet (rate_limited_requests_total before its first refusal) is
    # exported all the same: its samples come with its first event.
    declared = set(re.findall(r"^# TYPE (\S+) ", exposition, flags=re.MULTILINE))
    exported = exposition_names(exposition) | declared
    dashboard = json.loads(DASHBOARD_JSON.read_text())
    panels = {
        target["expr"].replace("$__rate_interval", RATE_INTERVAL): title
        for title, target in panel_targets(dashboard)
    }
    proofs = [
        # The index build the upserts started, sampled and scraped.
        'store_index_builds_total{outcome="success"} > 0',
        # The errors the traffic caused on purpose, through the recording rules.
        'graphql:errors_by_code:rate5m{code="NOT_FOUND"} > 0',
        'store:call_error_ratio:rate5m{code="NOT_FOUND"} > 0',
        # The embedder's refusals, by reason, and the memory the sweep deleted on expiry.
        'embedder_errors_total{embedder="openai", reason="rejected"} > 0',
        "memories_expired_total > 0",
    ]
    answers = wait_for_series(prometheus, [*panels, *proofs])

    empty = [
        f"{title}: {expr} -> {answer}"
        for expr, title in panels.items()
        if (answer := answers[expr]).get("status") != "success" or not answer["data"]["result"]
    ]
    assert not empty, "panels without data:\n" + "\n".join(empty)
    for proof in proofs:
        assert answers[proof]["data"]["result"], proof

    known = exported | recorded_names() | {"up"}
    for expr, title in panels.items():
        assert metric_names(expr) <= known, (title, metric_names(expr) - known)

    for rule in rules():
        name = rule.get("alert") or rule["record"]
        assert metric_names(rule["expr"]) <= known, (name, metric_names(rule["expr"]) - known)
        answer = prometheus.query(rule["expr"])
        assert answer["status"] == "success", (name, answer)
    health = prometheus.rule_health()
    assert len(health) == len(rules())
    assert all(rule["health"] == "ok" for rule in health), [
        (rule["name"], rule.get("lastError")) for rule in health if rule["health"] != "ok"
    ]
