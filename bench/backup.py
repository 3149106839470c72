"""Backup, restore and migrate rates, in points per second, on the embedded store.

    .venv/bin/python -m bench.backup                       # 100k points, 384 dims
    .venv/bin/python -m bench.backup --points 20000

1. Fills a fresh embedded store (a temporary DATA_DIR) with N points of 384 dims and a
   small payload (bench/data.py), in batches of 1,000, with no index build meanwhile.
2. backup: the whole store into an archive (graph/store/backup/transfer.py, as the
   `backup` mutation runs it), BACKUP_PAGE_POINTS 1,000. Points/s, and the archive's
   bytes per point.
3. restore: the archive into a second, empty embedded store (checksums verified first,
   counts after), as `graph restore` runs it. Points/s.
4. migrate: the first store into a third embedded store (the same pages and checkpoints
   as `graph migrate`; there is no Qdrant server on this machine, and qdrant-client's
   local mode writes ~50 points/s, so it would measure only itself). Points/s.
5. The baseline in the same run: the fill's own rate (points/s into the engine).

Nothing leaves the machine; not part of the test suite.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
import time
from pathlib import Path

from bench.data import points
from graph.settings import Distance
from graph.store.backup.transfer import PAGE_POINTS, Checkpoint, backup, migrate, restore
from graph.store.edge import EdgeStore

TENANT = "default"
COLLECTION = "memories"
NEVER = 10**9  # INDEX_THRESHOLD: no background index build while the bench runs


async def run(count: int, dimension: int, root: Path) -> dict[str, float]:
    results: dict[str, float] = {}
    source = EdgeStore(root / "source", index_threshold=NEVER)
    await source.open()
    try:
        await source.create_collection(TENANT, COLLECTION, dimension, Distance.COSINE)
        started = time.perf_counter()
        for start in range(0, count, 1_000):
            await source.upsert(
                TENANT, COLLECTION, points(start, min(1_000, count - start), dimension)
            )
        results["fill points/s"] = count / (time.perf_counter() - started)

        archive = root / "bench.tar"
        summary = await backup(source, archive, page_points=PAGE_POINTS)
        results["backup points/s"] = summary.points / summary.seconds
        results["archive bytes/point"] = summary.bytes / summary.points

        for name in ("restored", "migrated"):
            target = EdgeStore(root / name, index_threshold=NEVER)
            await target.open()
            try:
                started = time.perf_counter()
                if name == "restored":
                    done = await restore(target, archive)
                else:
                    checkpoint = Checkpoint(root / "checkpoint", "bench")
                    done = (await migrate(source, target, checkpoint)).points
                assert done == count, (name, done)
                results[f"{name[:-1]} points/s"] = count / (time.perf_counter() - started)
            finally:
                await target.close()
    finally:
        await source.close()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--points", type=int, default=100_000)
    parser.add_argument("--dimension", type=int, default=384)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-backup-") as tmp:
        results = asyncio.run(run(args.points, args.dimension, Path(tmp)))
    print(f"{args.points} points of {args.dimension} dims; load average {os.getloadavg()[0]:.1f}")
    for name, value in results.items():
        print(f"  {name:24} {value:10,.0f}")


if __name__ == "__main__":
    main()
