"""A data directory for the memory server, preloaded with the benchmark's points.

    .venv/bin/python -m bench.preload ./data-100k --points 100000
    DATA_DIR=./data-100k .venv/bin/python -m graph      # then, e.g., k6 run loadtest/seed.js

The points (bench/data.py: 384-dim vectors from a mixture of tight clusters, payload
{"user", "n", "text"}) are in the default collection of the default tenant, every one
of them in the HNSW index. The store is built once into the benchmark's cache and
copied from there.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

from bench import run


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.preload", description=__doc__)
    parser.add_argument("out", type=Path, help="the data directory to create")
    parser.add_argument("--points", type=int, default=100_000)
    parser.add_argument("--dimension", type=int, default=384)
    parser.add_argument(
        "--cache-dir", type=Path, default=Path(tempfile.gettempdir()) / "graph-bench-cache"
    )
    args = parser.parse_args(argv)
    if args.out.exists():
        parser.error(f"{args.out} exists")
    args.no_cache = False
    source = run.prepared_store(args, args.cache_dir)
    shutil.copytree(source, args.out)
    run.log(f"{args.points:,} points in {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
