"""Builds a collection's HNSW index in a separate process.

Run by EdgeStore as `python -m graph.store.edge.indexer ...` on private copies of the
shards: optimize() holds the GIL for the whole build, so in the server process it
would stop every request. The copies sit at paths of their own, so the engine's
per-directory lock never meets the shards the server has open.

The target is a copy of one shard: a sealed shard, optimized where it is (a new
indexed segment), or, for a merge, the largest of the segments merged, into which the
points of the others' copies (--source) are moved; the engine then inserts them into
the graph it already has instead of building it anew. Then the target is flushed and
closed. One JSON line on stdout reports what was done; any failure exits non-zero and
the server throws the build away.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import json
import os
import signal
import sys
import time
from collections.abc import Sequence

from qdrant_edge import EdgeShard, ScrollRequest, UpdateOperation
from qdrant_edge import Point as EdgePoint

from graph.settings import Distance, Quantization, VectorDatatype
from graph.store.edge.layout import edge_config

MOVE_BATCH = 1_000
_PR_SET_PDEATHSIG = 1


def move_points(source: EdgeShard, target: EdgeShard, batch: int = MOVE_BATCH) -> int:
    """Upsert every point of source into target; returns how many there were."""
    moved = 0
    offset: int | str | None = None
    while True:
        request = ScrollRequest(offset=offset, limit=batch, with_payload=True, with_vector=True)
        records, next_offset = source.scroll(request)
        points = []
        for record in records:
            if record.vector is None:
                raise RuntimeError(f"point {record.id} came back without its vector")
            points.append(EdgePoint(record.id, record.vector, record.payload))
        if points:
            target.update(UpdateOperation.upsert_points(points))
            moved += len(points)
        if next_offset is None:
            return moved
        offset = next_offset if isinstance(next_offset, int) else str(next_offset)


def build(
    target_path: str,
    source_paths: Sequence[str],
    dimension: int,
    distance: Distance,
    quantization: Quantization = Quantization.NONE,
    datatype: VectorDatatype = VectorDatatype.FLOAT32,
) -> dict[str, float | int]:
    started = time.monotonic()
    # The configuration given here wins over the one the copy was made with, so a
    # change of VECTOR_QUANTIZATION reaches older points at their next build.
    config = edge_config(dimension, distance, quantization, datatype)
    target = EdgeShard.load(target_path, config)
    try:
        moved = 0
        for path in source_paths:
            source = EdgeShard.load(path)
            try:
                moved += move_points(source, target)
            finally:
                source.close()
        moved_at = time.monotonic()
        target.optimize()
        target.flush()
        info = target.info()
        return {
            "moved": moved,
            "points": info.points_count,
            "indexed_vectors": info.indexed_vectors_count,
            "move_seconds": round(moved_at - started, 3),
            "optimize_seconds": round(time.monotonic() - moved_at, 3),
        }
    finally:
        target.close()


def _die_with_parent(parent_pid: int) -> None:
    """An orphaned build would keep writing into a directory the next server deletes."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent_pid:
        sys.exit(3)


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m graph.store.edge.indexer")
    parser.add_argument("--target", required=True)
    parser.add_argument(
        "--source", action="append", default=[], help="moved into the target (repeatable)"
    )
    parser.add_argument("--dimension", type=int, required=True)
    parser.add_argument("--distance", type=Distance, choices=list(Distance), required=True)
    parser.add_argument(
        "--quantization", type=Quantization, choices=list(Quantization), default="none"
    )
    parser.add_argument(
        "--datatype", type=VectorDatatype, choices=list(VectorDatatype), default="float32"
    )
    parser.add_argument("--parent-pid", type=int, default=0)
    parser.add_argument("--nice", type=int, default=10)
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse(argv)
    if args.parent_pid:
        _die_with_parent(args.parent_pid)
    with contextlib.suppress(OSError):
        os.nice(args.nice)  # the server's requests come first on a small machine
    stats = build(
        args.target, args.source, args.dimension, args.distance, args.quantization, args.datatype
    )
    print(json.dumps(stats), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
