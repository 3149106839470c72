"""Reading the shards' files into the operating system's page cache before the engine
loads them.

The engine loads a shard holding the GIL from start to end, so whatever it reads from
the disk on the way it reads while no request is served. And its files are rarely in the
page cache then: the engine drops a segment's files from it when it writes and closes
them, as an index build does just before the server loads the new segment. So the store
reads a shard's files first, in a worker thread with the GIL given up on every read:
a 160,000-point segment then loads in ~130 ms instead of 0.9-1.5 s of requests waiting,
a 20,000-point one in ~60 ms instead of 200-270 ms. The load drops little of what was
read, so queries afterwards find the original vectors they rescore with and the payloads
in memory too (at 1M points over seven shards, ~700 KB read from the disk per query and a
p50 of 10.5 ms when they are not, against ~4 KB and 6 ms; docs/benchmarks.md).

The page cache is the kernel's to reclaim under memory pressure, and the store's memory
does not grow by it until queries map what they touch, as they would anyway. Shards that
do not fit in a share of the memory available are not read, so a store larger than the
machine's memory is not read in whole to no purpose; the engine then reads what it needs.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterable
from pathlib import Path

logger = logging.getLogger(__name__)

# At most this share of memory_available() is read, over one call.
SHARE_OF_AVAILABLE = 0.5
# Read this much at a time: the GIL is taken back once per read.
CHUNK_BYTES = 4 << 20
# The write-ahead log is read once, on load, and a built shard's is still cached from its
# writing: three 32 MB files a shard that would count against the budget for little.
_SKIPPED_DIRECTORIES = frozenset({"wal"})

MEMINFO = Path("/proc/meminfo")
CGROUP = Path("/sys/fs/cgroup")


def memory_available() -> int | None:
    """The kernel's estimate of memory available without swapping, within this process's
    cgroup limit when it has one (a container's /proc/meminfo shows the host's memory);
    None off Linux."""
    available = _meminfo_available()
    limit = _cgroup_room()
    if available is None or limit is None:
        return available
    return min(available, limit)


def _meminfo_available() -> int | None:
    try:
        with MEMINFO.open(encoding="ascii") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def _cgroup_room() -> int | None:
    """What the cgroup (v2) may still take before its limit; None without a limit."""
    try:
        limit = (CGROUP / "memory.max").read_text(encoding="ascii").strip()
        if limit == "max":
            return None
        used = int((CGROUP / "memory.current").read_text(encoding="ascii"))
        return max(0, int(limit) - used)
    except (OSError, ValueError):
        return None


def shard_files(shard_dir: Path) -> list[tuple[Path, int]]:
    """The files of a shard the pre-read covers, with their sizes."""
    files = []
    for directory, subdirectories, names in os.walk(shard_dir):
        subdirectories[:] = [d for d in subdirectories if d not in _SKIPPED_DIRECTORIES]
        for name in names:
            path = Path(directory, name)
            try:
                files.append((path, path.stat().st_size))
            except OSError:  # removed meanwhile (a retired shard)
                continue
    return files


def read_now(shard_dirs: Iterable[Path], budget: int | None = None) -> int:
    """Read the shards' files into the page cache, shard by shard in order, leaving out
    any shard that does not fit in what is left of budget (by default SHARE_OF_AVAILABLE
    of the memory available; nothing when that is unknown). Returns the bytes read. A
    file that cannot be read is passed over: this costs speed, never data."""
    started = time.perf_counter()
    done = 0
    buffer = memoryview(bytearray(CHUNK_BYTES))
    for files in _within_budget(shard_dirs, budget):
        for path, _ in files:
            done += _read(path, buffer)
    logger.debug(
        "Shard files read into the page cache",
        extra={"bytes": done, "seconds": round(time.perf_counter() - started, 3)},
    )
    return done


def _within_budget(shard_dirs: Iterable[Path], budget: int | None) -> list[list[tuple[Path, int]]]:
    """Each shard's files, for the shards that fit, in order, in what is left of budget."""
    if budget is None:
        available = memory_available()
        if available is None:
            return []
        budget = int(available * SHARE_OF_AVAILABLE)
    chosen: list[list[tuple[Path, int]]] = []
    taken = 0
    for shard_dir in shard_dirs:
        files = shard_files(shard_dir)
        size = sum(size for _, size in files)
        if taken + size <= budget:
            chosen.append(files)
            taken += size
    return chosen


def _read(path: Path, buffer: memoryview) -> int:
    done = 0
    try:
        with path.open("rb", buffering=0) as file:
            while read := file.readinto(buffer):
                done += read
    except OSError:  # removed meanwhile (a retired shard), or unreadable
        logger.debug("Shard file not read into the page cache", extra={"path": str(path)})
    return done
