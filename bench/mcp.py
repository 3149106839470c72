"""Recall over MCP next to the same recall over GraphQL, on one server on 127.0.0.1.

    python -m bench.mcp                      # 2000 memories, 400 recalls each: ~1 minute
    python -m bench.mcp --requests 100       # quicker

One server process (embedded store, no auth, LOG_LEVEL=WARNING) gets --memories memories
through GraphQL's remember. Then one client sends recalls one at a time, each text once
over each API, the order alternating: POST /graphql `recall(text, limit)` and POST /mcp
`tools/call recall` (one JSON-RPC request, as a stateless client sends it), both over one
keep-alive connection each with the same HTTP client. It prints p50 and p99 of each and
the ratio MCP / GraphQL. Bounded by --requests and --max-seconds.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from bench.run import Server

WORDS = [
    "harbour",
    "coffee",
    "invoice",
    "meeting",
    "garden",
    "python",
    "server",
    "memory",
    "river",
    "deadline",
    "budget",
    "holiday",
    "doctor",
    "recipe",
    "guitar",
    "train",
    "ticket",
    "password",
    "laptop",
    "birthday",
    "weather",
    "report",
    "contract",
    "client",
    "design",
    "review",
    "travel",
    "hotel",
    "flight",
    "dinner",
    "book",
    "music",
    "project",
    "release",
    "deploy",
    "database",
    "backup",
    "monday",
    "friday",
    "morning",
    "evening",
    "office",
    "home",
]
REMEMBER = "mutation R($m: [MemoryInput!]!) { remember(memories: $m) { ids } }"
RECALL = "query Q($t: String!, $l: Int!) { recall(text: $t, limit: $l) { id text score } }"
BATCH = 100
WARMUP = 20


def text(rng: random.Random, words: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(words))


def seed(client: httpx.Client, count: int, rng: random.Random) -> None:
    for start in range(0, count, BATCH):
        memories = [{"text": text(rng, 12)} for _ in range(min(BATCH, count - start))]
        response = client.post("/graphql", json={"query": REMEMBER, "variables": {"m": memories}})
        body = response.json()
        if response.status_code != 200 or body.get("errors"):
            raise RuntimeError(f"seeding failed: {body}")


def graphql_recall(client: httpx.Client, query: str, limit: int) -> int:
    response = client.post(
        "/graphql", json={"query": RECALL, "variables": {"t": query, "l": limit}}
    )
    body = response.json()
    if response.status_code != 200 or body.get("errors"):
        raise RuntimeError(f"GraphQL recall failed: {body}")
    return len(body["data"]["recall"])


def mcp_recall(client: httpx.Client, query: str, limit: int, request_id: int) -> int:
    message = {
        "jsonrpc": "2.0",
        "id": request_id,
        "method": "tools/call",
        "params": {"name": "recall", "arguments": {"text": query, "limit": limit}},
    }
    response = client.post("/mcp", json=message)
    body: dict[str, Any] = response.json()
    result = body.get("result")
    if response.status_code != 200 or not result or result.get("isError"):
        raise RuntimeError(f"MCP recall failed: {body}")
    return len(result["structuredContent"]["memories"])


def percentile(values: list[float], q: int) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.mcp", description=__doc__)
    parser.add_argument("--memories", type=int, default=2000)
    parser.add_argument("--requests", type=int, default=400, help="recalls over each API")
    parser.add_argument("--limit", type=int, default=10)
    parser.add_argument("--max-seconds", type=float, default=300)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    rng = random.Random(20261129)
    timings: dict[str, list[float]] = {"GraphQL": [], "MCP": []}
    with tempfile.TemporaryDirectory(prefix="bench-mcp-") as work:
        server = Server(
            "graph",
            "graphql",
            Path(work) / "data",
            Path(work) / "server.log",
            dimension=4,
            env={"LOG_LEVEL": "WARNING", "SHUTDOWN_DELAY_SECONDS": "0"},
        )
        server.start()
        try:
            server.wait_ready()
            headers = {"accept": "application/json, text/event-stream"}
            with (
                httpx.Client(base_url=server.base, timeout=60) as gql,
                httpx.Client(base_url=server.base, timeout=60, headers=headers) as mcp,
            ):
                seed(gql, args.memories, rng)
                for i in range(WARMUP):
                    graphql_recall(gql, text(rng, 3), args.limit)
                    mcp_recall(mcp, text(rng, 3), args.limit, i)
                deadline = time.monotonic() + args.max_seconds
                for i in range(args.requests):
                    if time.monotonic() > deadline:
                        break
                    query = text(rng, 3)
                    for name in ("GraphQL", "MCP") if i % 2 == 0 else ("MCP", "GraphQL"):
                        started = time.perf_counter()
                        if name == "GraphQL":
                            graphql_recall(gql, query, args.limit)
                        else:
                            mcp_recall(mcp, query, args.limit, i)
                        timings[name].append(time.perf_counter() - started)
        finally:
            server.stop()
    print(f"recall, limit {args.limit}, over {args.memories} memories, one request at a time\n")
    print("| API | requests | p50 ms | p99 ms |")
    print("| --- | --- | --- | --- |")
    for name, seen in timings.items():
        p50, p99 = percentile(seen, 50) * 1000, percentile(seen, 99) * 1000
        print(f"| {name} | {len(seen)} | {p50:.2f} | {p99:.2f} |")
    ratio50 = percentile(timings["MCP"], 50) / percentile(timings["GraphQL"], 50)
    ratio99 = percentile(timings["MCP"], 99) / percentile(timings["GraphQL"], 99)
    print(f"\nMCP / GraphQL: p50 {ratio50:.2f}x, p99 {ratio99:.2f}x (target: within 2x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
