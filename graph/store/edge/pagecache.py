"""Keeping the shards' files in the operating system's page cache.

The engine drops a segment's on-disk files (the original vectors it rescores with, the
payloads) from the page cache when it loads a shard, and an index build leaves its new
segment's files out of it too. Until something reads them back, every query reads what
it touches from the disk: at 1M points over seven shards, ~700 KB a query and a p50 of
10.5 ms after a restart, against ~4 KB and 6 ms once the files are cached
(docs/benchmarks.md). So after a shard is loaded, the kernel is asked to read its files
back (POSIX_FADV_WILLNEED). The page cache is the kernel's to reclaim under memory
pressure, and the store's memory does not grow by it until queries map what they touch,
as they would anyway; shards that do not fit in a share of the memory available are left
alone, so a store larger than the machine's memory is not read in whole to no purpose.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

logger = logging.getLogger(__name__)

# At most this share of memory_available() is asked for, over one call.
SHARE_OF_AVAILABLE = 0.5
# One advice per range of this size: the kernel reads only the first few megabytes of a
# single advice over a whole file.
CHUNK_BYTES = 4 << 20
# The write-ahead log is read on load only, and once more never.
_SKIPPED_DIRECTORIES = frozenset({"wal"})

MEMINFO = Path("/proc/meminfo")
CGROUP = Path("/sys/fs/cgroup")

# One reader, so that pre-reads queue rather than compete for the disk.
_READER = ThreadPoolExecutor(1, thread_name_prefix="edge-preread")


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


def preread(shard_dirs: Iterable[Path], budget: int | None = None) -> int:
    """Ask the kernel to read the shards' files into the page cache, shard by shard in
    order, leaving out any shard that does not fit in what is left of budget (by default
    SHARE_OF_AVAILABLE of the memory available; nothing when that is unknown). Returns
    the bytes asked for."""
    if not hasattr(os, "posix_fadvise"):
        return 0
    if budget is None:
        available = memory_available()
        if available is None:
            return 0
        budget = int(available * SHARE_OF_AVAILABLE)
    asked = 0
    for shard_dir in shard_dirs:
        files = shard_files(shard_dir)
        size = sum(size for _, size in files)
        if asked + size > budget:
            continue
        for path, file_size in files:
            _advise(path, file_size)
        asked += size
    return asked


def preread_later(shard_dirs: list[Path]) -> Future[int]:
    """preread() on the pre-read thread: loading a shard does not wait for it."""
    return _READER.submit(_logged_preread, shard_dirs)


def _logged_preread(shard_dirs: list[Path]) -> int:
    started = time.perf_counter()
    try:
        asked = preread(shard_dirs)
    except Exception:  # advice only: a failure costs speed, never data
        logger.warning("Pre-reading shard files failed", exc_info=True)
        return 0
    logger.debug(
        "Shard files pre-read",
        extra={
            "shards": len(shard_dirs),
            "bytes": asked,
            "seconds": round(time.perf_counter() - started, 3),
        },
    )
    return asked


def _advise(path: Path, size: int) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # removed meanwhile (a retired shard)
        return
    try:
        for offset in range(0, size, CHUNK_BYTES):
            os.posix_fadvise(fd, offset, CHUNK_BYTES, os.POSIX_FADV_WILLNEED)
    finally:
        os.close(fd)
