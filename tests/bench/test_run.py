"""The benchmark at a tiny size, end to end, so that it cannot rot: real servers (the
memory server, the hand-written raw app, the adapter app) on 127.0.0.1, k6, recall
against exact search and the time to an indexed store. Chroma is left out (it needs
its own environment, installed on first use)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np

from bench import data, recall
from tests.loadtest.test_smoke import k6_binary

ROOT = Path(__file__).resolve().parents[2]


def test_exact_neighbours_are_the_nearest_by_cosine() -> None:
    queries = np.asarray(data.query_vectors(8, count=3), dtype=np.float32)
    truth = recall.exact(300, 8, queries)
    stored = data.vectors(300, 8)
    cosine = (queries @ stored.T) / np.outer(
        np.linalg.norm(queries, axis=1), np.linalg.norm(stored, axis=1)
    )
    for row, best in zip(cosine, truth, strict=True):
        assert list(best) == list(np.argsort(-row)[: recall.K])


def test_the_data_is_clustered_and_the_same_whatever_the_slice() -> None:
    whole = data.vectors(300, 8)
    assert np.array_equal(whole[100:200], data.vectors(100, 8, start=100))
    # Nearest neighbours are much nearer than a random pair: a mixture, not noise.
    sample = whole[:100]
    distances = np.linalg.norm(sample[:, None] - sample[None], axis=2)
    np.fill_diagonal(distances, np.inf)
    assert distances.min(axis=1).mean() < 0.5 * np.median(distances[np.isfinite(distances)])


def test_bench_runs_at_a_tiny_size(tmp_path: Path) -> None:
    k6_binary()  # skips without k6
    out = tmp_path / "numbers.json"
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench",
            "--points",
            "300",
            "--dimension",
            "16",
            "--seconds",
            "1",
            "--rounds",
            "1",
            "--vus",
            "1",
            "--index-points",
            "500",
            "--no-instrumentation",
            "--no-cache",
            "--json",
            str(out),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    report = run.stdout
    assert "| 1 |" in report and "server/raw" in report and "server/adapter" in report
    for target in (
        "0.85x raw",
        "within 0.5 ms of raw",
        "0.7x raw",
        "counting until indexed",
        "recall@10 printed for all",
    ):
        assert re.search(rf"- \[[ x]\] (held|MISSED): .*{re.escape(target)}", report), target
    numbers = json.loads(out.read_text())
    # At 300 points an HNSW search with ef 128 sees every point: recall is exact.
    assert numbers["recall"] == {"graphql": 1.0, "raw": 1.0, "plain": 1.0}
    for name in ("graphql", "raw"):
        timed = numbers["indexing"][name]
        assert timed["points"] == 500
        assert 0 < timed["acknowledged_seconds"] <= timed["indexed_seconds"]
    for name in ("graphql", "raw", "plain"):
        (query,) = numbers["query"][f"{name}@1"]
        assert query["requests"] > 0 and query["failed"] == 0
        (ingest,) = numbers["ingest"][f"{name}@250"]
        assert ingest["vectors_per_second"] > 0 and ingest["failed"] == 0
