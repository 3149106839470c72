"""Sustained ingest at scale on the embedded store: does indexing keep up?

    .venv/bin/python -m bench.scale --points 1000000     # on demand, not in CI
    .venv/bin/python -m bench.scale --points 200000 --backlog 50000

In this process, through the store adapter (no HTTP): one writer upserts --points
vectors (bench.data's deterministic ones) in batches of --batch as fast as the store
takes them, while one reader sends a nearest-neighbour query (limit 10) every
--query-interval seconds and a sampler records, every second, the unindexed backlog
(fresh and sealed shards) and the resident memory of this process and its children
(the index builds). Then it waits until no more than the fresh shard's last points,
fewer than --threshold, are unindexed, and until the merges of indexed segments are
done, closes the store, opens it again (restart-to-ready: open() and the first query
answered) and measures query latency (the first queries, and after a thousand more)
and recall@10 against exact search over every stored vector.

Prints: sustained ingest rate, backlog (max and over time), peak RSS, query p50/p99
during ingest, time to caught-up after ingest, to merges done (and the segments
left), restart-to-ready, query p50 and recall after, next to the targets. Every loop
is bounded (--max-seconds, --catch-up-wait).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from bench.cgroup import MemoryCgroup
from bench.data import points, query_vectors, vectors
from bench.run import load_average, log, machine
from graph.errors import StoreUnavailable
from graph.settings import Distance, Quantization, StoreSettings, VectorDatatype
from graph.store.edge import EdgeStore
from graph.store.tenancy import DEFAULT_TENANT

COLLECTION = "scale"
LIMIT = 10
RECALL_QUERIES = 50
AFTER_QUERIES = 200
# Then this many more, the last AFTER_QUERIES of them timed as "warmed": an index build
# leaves the on-disk parts of its segment (original vectors, payloads) out of the page
# cache, so the first queries after it read them from disk.
WARM_QUERIES = 1_000
# Targets at 1M points on 2 cores.
TARGET_RATE = 4_000.0
TARGET_P99_MS = 50.0
TARGET_CATCH_UP_S = 180.0
TARGET_RSS_GB = 2.5
TARGET_RESTART_S = 10.0
TARGET_AFTER_P50_MS = 5.0


class Rss(NamedTuple):
    """Resident memory, and the part of it that is not mapped files (which the kernel
    can drop and read again, such as the segments' files the store maps)."""

    total: int
    anonymous: int


def rss_bytes(pid: int) -> Rss:
    fields = {}
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as f:
            for line in f:
                name, _, value = line.partition(":")
                if name in ("VmRSS", "RssAnon"):
                    fields[name] = int(value.split()[0]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return Rss(fields.get("VmRSS", 0), fields.get("RssAnon", 0))


def tree_rss() -> Rss:
    """This process's resident memory and its direct children's (the index builds)."""
    me = os.getpid()
    processes = [rss_bytes(me)]
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", encoding="ascii", errors="replace") as f:
                parent = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        if parent == me:
            processes.append(rss_bytes(int(entry)))
    return Rss(sum(p.total for p in processes), sum(p.anonymous for p in processes))


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


async def backlog(store: EdgeStore) -> tuple[int, bool, int]:
    """Unindexed points, whether a build (or merge) runs, indexed segments."""
    unindexed, building, segments = 0, False, 0
    for physical in await store.physical_collections():
        status = await store.index_status(physical.name)
        unindexed += int(status["unindexed_points"])
        building = building or bool(status["building"])
        segments += int(status["segments"])
    return unindexed, building, segments


async def ingest(store: EdgeStore, args: argparse.Namespace) -> dict[str, Any]:
    queries = query_vectors(args.dimension, 256)
    latencies: list[float] = []
    samples: list[tuple[float, int, Rss]] = []  # seconds, unindexed, rss
    done = asyncio.Event()
    started = time.perf_counter()
    progress = [0]  # points written so far, for the log

    async def writer() -> int:
        written = 0
        try:
            for start in range(0, args.points, args.batch):
                if time.perf_counter() - started > args.max_seconds:
                    log("  --max-seconds reached: ingest stopped early")
                    break
                count = min(args.batch, args.points - start)
                # Drawn in a worker thread: a client's own work does not belong on the
                # store's event loop, where it would delay the queries measured.
                batch = await asyncio.to_thread(points, start, count, args.dimension)
                try:
                    await store.upsert(DEFAULT_TENANT, COLLECTION, batch)
                except StoreUnavailable:
                    log("  a write waited --max-seconds for the index: ingest stopped early")
                    break
                written += count
                progress[0] = written
        finally:
            done.set()
        return written

    async def reader() -> None:
        i = 0
        while not done.is_set():
            t0 = time.perf_counter()
            await store.query(DEFAULT_TENANT, COLLECTION, queries[i % len(queries)], limit=LIMIT)
            latencies.append((time.perf_counter() - t0) * 1000)
            i += 1
            await asyncio.sleep(args.query_interval)

    async def sampler() -> None:
        while not done.is_set():
            unindexed, _, segments = await backlog(store)
            seconds, rss = time.perf_counter() - started, tree_rss()
            samples.append((seconds, unindexed, rss))
            if len(samples) % 30 == 0:
                log(
                    f"  {seconds:.0f}s written {progress[0]:,} backlog {unindexed:,} "
                    f"segments {segments} "
                    f"rss {rss.total / 2**30:.2f} GB (anonymous {rss.anonymous / 2**30:.2f})"
                )
            await asyncio.sleep(1.0)

    written, _, _ = await asyncio.gather(writer(), reader(), sampler())
    seconds = time.perf_counter() - started
    return {
        "written": written,
        "seconds": round(seconds, 1),
        "vectors_per_second": round(written / seconds),
        "query_p50_ms": round(percentile(latencies, 50), 2),
        "query_p99_ms": round(percentile(latencies, 99), 2),
        "queries": len(latencies),
        "backlog_max": max((s[1] for s in samples), default=0),
        "samples": samples,
    }


async def catch_up(
    store: EdgeStore, args: argparse.Namespace, peak: list[Rss]
) -> tuple[float, float, int, int]:
    """Seconds until nothing is waiting for the index, until the merges are done too, the
    segments then, and the points left unindexed (nan: not within --catch-up-wait).
    Fewer than --threshold points may stay in the fresh shard for good: the store indexes
    a chunk once it holds that many (as Qdrant's indexing_threshold does)."""
    started = time.perf_counter()
    indexed_at = float("nan")
    while True:
        unindexed, building, segments = await backlog(store)
        peak.append(tree_rss())
        caught_up = unindexed < args.threshold
        if caught_up and indexed_at != indexed_at:
            indexed_at = time.perf_counter() - started
            log(f"  {unindexed:,} unindexed after {indexed_at:.1f}s ({segments} segments)")
        if caught_up and not building:
            return indexed_at, time.perf_counter() - started, segments, unindexed
        if time.perf_counter() - started >= args.catch_up_wait:
            return indexed_at, float("nan"), segments, unindexed
        await asyncio.sleep(1.0)


def exact_tops(queries: list[list[float]], total: int, dimension: int) -> list[set[int]]:
    """For each query, the ids of the LIMIT stored vectors nearest by cosine, over every
    vector: one pass over the stored vectors for all the queries."""
    q = np.array(queries, dtype=np.float32)
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    best_ids = np.empty((len(q), 0), dtype=np.int64)
    best_scores = np.empty((len(q), 0), dtype=np.float32)
    for start in range(0, total, 50_000):
        block = vectors(min(50_000, total - start), dimension, start=start)
        scores = (q @ block.T) / np.linalg.norm(block, axis=1)
        ids = np.broadcast_to(np.arange(start, start + len(block)), scores.shape)
        best_ids = np.concatenate([best_ids, ids], axis=1)
        best_scores = np.concatenate([best_scores, scores], axis=1)
        keep = np.argsort(-best_scores, axis=1)[:, :LIMIT]
        best_ids = np.take_along_axis(best_ids, keep, axis=1)
        best_scores = np.take_along_axis(best_scores, keep, axis=1)
    return [{int(i) for i in row} for row in best_ids]


async def after(store: EdgeStore, args: argparse.Namespace, total: int) -> dict[str, Any]:
    queries = query_vectors(args.dimension, AFTER_QUERIES + WARM_QUERIES)
    latencies = []
    for vector in queries:
        t0 = time.perf_counter()
        await store.query(DEFAULT_TENANT, COLLECTION, vector, limit=LIMIT)
        latencies.append((time.perf_counter() - t0) * 1000)
    first, warmed = latencies[:AFTER_QUERIES], latencies[-AFTER_QUERIES:]
    hits = 0
    exact = exact_tops(queries[:RECALL_QUERIES], total, args.dimension)
    for vector, true in zip(queries[:RECALL_QUERIES], exact, strict=True):
        found = await store.query(DEFAULT_TENANT, COLLECTION, vector, limit=LIMIT)
        hits += len({p.id for p in found} & true)
    return {
        "query_p50_ms": round(percentile(first, 50), 2),
        "query_p99_ms": round(percentile(first, 99), 2),
        "warmed_p50_ms": round(percentile(warmed, 50), 2),
        "warmed_p99_ms": round(percentile(warmed, 99), 2),
        "recall_at_10": round(hits / (RECALL_QUERIES * LIMIT), 3),
    }


def make_store(path: Path, args: argparse.Namespace) -> EdgeStore:
    return EdgeStore(
        path,
        index_threshold=args.threshold,
        index_backlog_max_points=args.backlog,
        merge_max_points=args.merge_max_points,
        max_segments=args.max_segments,
        quantization=args.quantization,
        datatype=args.datatype,
        backlog_wait_seconds=args.max_seconds,
    )


async def run(args: argparse.Namespace, data_dir: Path) -> dict[str, Any]:
    store = make_store(data_dir, args)
    await store.open()
    try:
        await store.create_collection(DEFAULT_TENANT, COLLECTION, args.dimension, Distance.COSINE)
        log(f"ingest {args.points:,} points ...")
        results: dict[str, Any] = {"ingest": await ingest(store, args)}
        peak = [s[2] for s in results["ingest"]["samples"]]
        log("waiting until the index has caught up ...")
        indexed, merged, segments, left = await catch_up(store, args, peak)
        results["catch_up_seconds"], results["merged_seconds"] = round(indexed, 1), round(merged, 1)
        results["segments"], results["unindexed_left"] = segments, left
        results["peak_rss_gb"] = round(max(p.total for p in peak) / 2**30, 2)
        results["peak_anonymous_rss_gb"] = round(max(p.anonymous for p in peak) / 2**30, 2)
    finally:
        await store.close()
    started = time.perf_counter()
    store = make_store(data_dir, args)
    await store.open()
    try:
        await store.query(DEFAULT_TENANT, COLLECTION, [1.0] * args.dimension, limit=LIMIT)
        results["restart_seconds"] = round(time.perf_counter() - started, 2)
        log("queries and recall after ...")
        results["after"] = await after(store, args, results["ingest"]["written"])
    finally:
        await store.close()
    return results


def memory_limit_rows(r: dict[str, Any]) -> list[tuple[str, str, str, bool | None]]:
    """With --memory-limit: the most the cgroup held, page cache included."""
    if "memory_limit_gb" not in r:
        return []
    peak = r["cgroup_peak_gb"]
    return [(f"peak of the cgroup limited to {r['memory_limit_gb']} GB",
             "unknown" if peak is None else f"{peak} GB", "", None)]  # fmt: skip


def mark(ok: bool) -> str:
    return "met" if ok else "MISSED"


def report(args: argparse.Namespace, r: dict[str, Any]) -> str:
    i, a = r["ingest"], r["after"]
    over_time = ", ".join(
        f"{s[0]:.0f}s: {s[1]:,}" for s in i["samples"][:: max(1, len(i["samples"]) // 12)]
    )
    rows = [
        ("sustained ingest", f"{i['vectors_per_second']:,} vectors/s", f">= {TARGET_RATE:,.0f}",
         i["vectors_per_second"] >= TARGET_RATE),
        ("backlog, max sampled", f"{i['backlog_max']:,} points", f"< {args.backlog:,} + a batch",
         i["backlog_max"] <= args.backlog + args.batch),
        ("query during ingest, p50 / p99", f"{i['query_p50_ms']} / {i['query_p99_ms']} ms",
         f"p99 <= {TARGET_P99_MS:.0f} ms", i["query_p99_ms"] <= TARGET_P99_MS),
        ("caught up after ingest",
         f"{r['catch_up_seconds']} s ({r['unindexed_left']:,} left, under INDEX_THRESHOLD)",
         f"<= {TARGET_CATCH_UP_S:.0f} s",
         r["catch_up_seconds"] <= TARGET_CATCH_UP_S),
        ("merges done after ingest", f"{r['merged_seconds']} s, {r['segments']} segments", "",
         None),
        ("peak RSS (with index builds)", f"{r['peak_rss_gb']} GB", f"<= {TARGET_RSS_GB} GB",
         r["peak_rss_gb"] <= TARGET_RSS_GB),
        ("peak RSS not of mapped files", f"{r['peak_anonymous_rss_gb']} GB", "", None),
        *memory_limit_rows(r),
        ("restart to ready", f"{r['restart_seconds']} s", f"<= {TARGET_RESTART_S:.0f} s",
         r["restart_seconds"] <= TARGET_RESTART_S),
        (f"query after, first {AFTER_QUERIES}, p50 / p99",
         f"{a['query_p50_ms']} / {a['query_p99_ms']} ms", f"p50 <= {TARGET_AFTER_P50_MS:.0f} ms",
         a["query_p50_ms"] <= TARGET_AFTER_P50_MS),
        (f"query after {WARM_QUERIES:,} more, p50 / p99",
         f"{a['warmed_p50_ms']} / {a['warmed_p99_ms']} ms", f"p50 <= {TARGET_AFTER_P50_MS:.0f} ms",
         a["warmed_p50_ms"] <= TARGET_AFTER_P50_MS),
        ("recall@10 after", f"{a['recall_at_10']}", "", None),
    ]  # fmt: skip
    lines = [
        f"## Scale: {i['written']:,} points of {args.dimension} dims, batches of {args.batch}, "
        f"INDEX_THRESHOLD {args.threshold:,}, INDEX_BACKLOG_MAX_POINTS {args.backlog:,}, "
        f"INDEX_MERGE_MAX_POINTS {args.merge_max_points:,}, "
        f"INDEX_MAX_SEGMENTS {args.max_segments}, VECTOR_QUANTIZATION {args.quantization}, "
        f"VECTOR_DATATYPE {args.datatype}",
        "",
        "Machine: " + ", ".join(f"{k} {v}" for k, v in r["machine"].items()),
        "",
        "| measure | value | target (1M, 2 cores) |",
        "| --- | ---: | --- |",
    ]
    for name, value, target, ok in rows:
        lines.append(f"| {name} | {value} | {target}{': ' + mark(ok) if ok is not None else ''} |")
    lines += ["", f"Backlog over time: {over_time}."]
    return "\n".join(lines)


def run_in_data_dir(args: argparse.Namespace) -> dict[str, Any]:
    if args.keep:
        kept = Path(tempfile.mkdtemp(prefix="bench-scale-", dir=args.data_dir)) / "data"
        results = asyncio.run(run(args, kept))
        log(f"store kept in {kept}")
        return results
    with tempfile.TemporaryDirectory(prefix="bench-scale-", dir=args.data_dir) as tmp:
        return asyncio.run(run(args, Path(tmp) / "data"))


def parse_args(argv: list[str]) -> argparse.Namespace:
    defaults = StoreSettings()
    parser = argparse.ArgumentParser(
        prog="python -m bench.scale", description=(__doc__ or "").split("\n")[0]
    )
    parser.add_argument("--points", type=int, default=1_000_000)
    parser.add_argument("--dimension", type=int, default=384)
    parser.add_argument("--batch", type=int, default=250)
    parser.add_argument("--threshold", type=int, default=defaults.index_threshold)
    parser.add_argument("--backlog", type=int, default=defaults.index_backlog_max_points)
    parser.add_argument("--merge-max-points", type=int, default=defaults.index_merge_max_points)
    parser.add_argument("--max-segments", type=int, default=defaults.index_max_segments)
    parser.add_argument(
        "--quantization",
        type=Quantization,
        choices=list(Quantization),
        default=defaults.vector_quantization,
    )
    parser.add_argument(
        "--datatype",
        type=VectorDatatype,
        choices=list(VectorDatatype),
        default=defaults.vector_datatype,
    )
    parser.add_argument("--query-interval", type=float, default=0.05)
    parser.add_argument("--max-seconds", type=float, default=3_600.0, help="ingest bound")
    parser.add_argument("--catch-up-wait", type=float, default=1_800.0)
    parser.add_argument("--data-dir", type=Path, help="default: a temporary directory")
    parser.add_argument("--json", type=Path, help="write every number here")
    parser.add_argument(
        "--keep", action="store_true", help="keep the store afterwards (its path is printed)"
    )
    parser.add_argument(
        "--memory-limit",
        type=float,
        metavar="GB",
        help="run in a memory cgroup of its own limited to this (root only; bench/cgroup.py)",
    )
    args = parser.parse_args(argv)
    if not 1_000 <= args.points <= 10_000_000:
        parser.error("--points 1000..10000000")
    return args


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    if not args.memory_limit:
        results = run_in_data_dir(args)
    else:
        group = MemoryCgroup.make(f"bench-scale-{os.getpid()}", int(args.memory_limit * 2**30))
        if group is None:
            log("no memory cgroup can be made here (root and a memory controller are needed)")
            return 2
        group.enter()
        try:
            results = run_in_data_dir(args)
            peak = group.peak_bytes()
        finally:
            group.leave()
            group.delete()
        results["memory_limit_gb"] = args.memory_limit
        results["cgroup_peak_gb"] = None if peak is None else round(peak / 2**30, 2)
    results["machine"] = {**machine(), "load average": load_average()}
    print(report(args, results))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
