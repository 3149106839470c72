"""Recall@10 of each endpoint against exact search, and the time to an indexed store.

Recall: the true ten nearest neighbours of each query by brute force (numpy, cosine)
over the preloaded points, against what each endpoint returns over HTTP for the
same query. A speed bought by searching less carefully shows up here.

Counting until indexed: acknowledged writes are not yet fast to search. Each
endpoint gets the same points in batches over HTTP, then the clock runs until
the points are in an HNSW index: the hand-written app calls optimize() once at the
end, the memory server builds in the background (seen through /metrics, sampled
every 2 s), Chroma indexes as it writes.
"""

from __future__ import annotations

import json
import re
import time
import urllib.request
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from bench import data

K = 10
QUERIES = 200
INDEX_BATCH = 250
INDEX_CLIENTS = 4
INDEX_TIMEOUT_SECONDS = 1_800.0

RECALL_QUERY = (
    "query Recall($vector: Vector!, $limit: Int!, $collection: String) "
    "{ query(vector: $vector, limit: $limit, collection: $collection) { id } }"
)
UPSERT = (
    "mutation Upsert($points: [PointInput!]!, $collection: String) "
    "{ upsert(points: $points, collection: $collection) { upserted } }"
)


def post(url: str, body: Any) -> Any:
    request = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=300) as response:
        text = response.read()
    return json.loads(text) if text else None


def exact(points: int, dimension: int, queries: np.ndarray) -> np.ndarray:
    """The ids of each query's K nearest points by cosine, best first."""
    stored = data.vectors(points, dimension)
    stored /= np.linalg.norm(stored, axis=1, keepdims=True)
    q = queries / np.linalg.norm(queries, axis=1, keepdims=True)
    scores = q @ stored.T
    top = np.argpartition(-scores, K, axis=1)[:, :K]
    order = np.take_along_axis(scores, top, axis=1).argsort(axis=1)[:, ::-1]
    return np.take_along_axis(top, order, axis=1)


def recall_queries(dimension: int) -> list[list[float]]:
    return data.query_vectors(dimension)[:QUERIES]


def measure(
    search: Callable[[list[float]], list[int]], queries: list[list[float]], truth: np.ndarray
) -> float:
    """Mean recall@K over the queries."""
    found = 0
    for vector, true in zip(queries, truth, strict=True):
        found += len(set(search(vector)[:K]) & {int(i) for i in true})
    return found / (K * len(queries))


def graphql_search(url: str, collection: str | None = None) -> Callable[[list[float]], list[int]]:
    def search(vector: list[float]) -> list[int]:
        answer = post(
            url,
            {
                "query": RECALL_QUERY,
                "variables": {"vector": vector, "limit": K, "collection": collection},
            },
        )
        return [int(hit["id"]) for hit in answer["data"]["query"]]

    return search


def plain_search(url: str, collection: str | None = None) -> Callable[[list[float]], list[int]]:
    def search(vector: list[float]) -> list[int]:
        answer = post(url, {"vector": vector, "limit": K, "collection": collection})
        return [int(hit["id"]) for hit in answer]

    return search


# Counting until indexed


def write_all(write: Callable[[int, list[list[float]]], None], count: int, dimension: int) -> None:
    """count points in batches of INDEX_BATCH, INDEX_CLIENTS writers at once."""
    rows = data.vectors(count, dimension)

    def one(start: int) -> None:
        write(start, rows[start : start + INDEX_BATCH].tolist())

    with ThreadPoolExecutor(INDEX_CLIENTS) as pool:
        list(pool.map(one, range(0, count, INDEX_BATCH)))


def graphql_writer(url: str) -> Callable[[int, list[list[float]]], None]:
    def write(start: int, rows: list[list[float]]) -> None:
        points = [
            {"id": start + k, "vector": row, "payload": data.payload(start + k)}
            for k, row in enumerate(rows)
        ]
        answer = post(url, {"query": UPSERT, "variables": {"points": points}})
        if answer.get("errors") or answer["data"]["upsert"]["upserted"] != len(rows):
            raise RuntimeError(f"upsert refused: {answer}")

    return write


def plain_writer(url: str) -> Callable[[int, list[list[float]]], None]:
    def write(start: int, rows: list[list[float]]) -> None:
        points = [
            {"id": start + k, "vector": row, "payload": data.payload(start + k)}
            for k, row in enumerate(rows)
        ]
        if post(url, {"points": points})["upserted"] != len(rows):
            raise RuntimeError("upsert refused")

    return write


METRIC = re.compile(
    r"^(store_unindexed_points|store_index_building|store_collection_points)"
    r"\{[^}]*\} ([0-9.e+]+)$",
    re.MULTILINE,
)


def server_indexed(base: str, count: int) -> bool:
    """True when the memory server's sampled metrics show count points, none of them
    outside the index and no build running."""
    with urllib.request.urlopen(f"{base}/metrics", timeout=30) as response:
        text = response.read().decode()
    totals: dict[str, float] = {}
    for name, value in METRIC.findall(text):
        totals[name] = totals.get(name, 0.0) + float(value)
    return (
        totals.get("store_collection_points", 0) >= count
        and totals.get("store_unindexed_points", 1) == 0
        and totals.get("store_index_building", 1) == 0
    )


def time_to_indexed(
    write: Callable[[int, list[list[float]]], None],
    finish: Callable[[], None],
    count: int,
    dimension: int,
) -> dict[str, float]:
    """Seconds until every write was acknowledged, and until all were indexed."""
    started = time.perf_counter()
    write_all(write, count, dimension)
    acknowledged = time.perf_counter() - started
    finish()
    return {
        "acknowledged_seconds": acknowledged,
        "indexed_seconds": time.perf_counter() - started,
        "points": count,
    }


def wait_until(check: Callable[[], bool], poll: float = 0.5) -> Callable[[], None]:
    def finish() -> None:
        deadline = time.monotonic() + INDEX_TIMEOUT_SECONDS
        while not check():
            if time.monotonic() > deadline:
                raise RuntimeError("not indexed in time")
            time.sleep(poll)

    return finish
