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

import errno
import logging
import os
import time
from collections.abc import Iterable, Iterator
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
PROC_CGROUP = Path("/proc/self/cgroup")
CGROUP = Path("/sys/fs/cgroup")
# cgroup v1 writes "no limit" as the largest page-aligned 64-bit number.
_NO_LIMIT = 1 << 62


def memory_available() -> int | None:
    """The kernel's estimate of memory available without swapping, within this process's
    memory cgroup's limit when it has one (a container's /proc/meminfo shows the host's
    memory); None off Linux."""
    available = _meminfo_available()
    room = _cgroup_room()
    if available is None or room is None:
        return available
    return min(available, room)


def _meminfo_available() -> int | None:
    try:
        with MEMINFO.open(encoding="ascii") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def memory_cgroups() -> list[tuple[int, Path]]:
    """This process's groups that may hold a memory limit, as (cgroup version, directory):
    its group in cgroup v1's memory hierarchy, and in the v2 hierarchy."""
    try:
        lines = PROC_CGROUP.read_text(encoding="ascii").splitlines()
    except OSError:
        return []
    groups = []
    for line in lines:
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        _, controllers, path = parts
        if controllers == "":
            groups.append((2, _group_dir(CGROUP, path)))
        elif "memory" in controllers.split(","):
            groups.append((1, _group_dir(CGROUP / "memory", path)))
    return groups


def _cgroup_room() -> int | None:
    """What this process's memory cgroup (v1 or v2) may still take before its limit or an
    ancestor's; None without a limit. The inactive page cache counts as room, as the
    kernel reclaims it first: a group's usage includes every file it has read."""
    rooms = []
    for version, group in memory_cgroups():
        room = _room_v1(group) if version == 1 else _room_v2(group)
        if room is not None:
            rooms.append(room)
    return min(rooms, default=None)


def _group_dir(mount: Path, path: str) -> Path:
    """The group's directory; the mount itself when the path is not under it, as in a
    container that sees its own group mounted at the root."""
    group = mount / path.lstrip("/")
    return group if group.is_dir() else mount


def _room_v2(group: Path) -> int | None:
    """The least room left under memory.max from the group up to the mount."""
    rooms = []
    for level in (group, *group.parents):
        try:
            limit = (level / "memory.max").read_text(encoding="ascii").strip()
        except OSError:
            break  # above the mount, or no memory controller here
        if limit == "max":
            continue
        try:
            used = int((level / "memory.current").read_text(encoding="ascii"))
            room = int(limit) - used + (_stat(level, "inactive_file") or 0)
        except (OSError, ValueError):
            continue
        rooms.append(max(0, room))
    return min(rooms, default=None)


def _room_v1(group: Path) -> int | None:
    """Room under the group's limit, which memory.stat gives with its ancestors'."""
    try:
        limit = _stat(group, "hierarchical_memory_limit")
        if limit is None:
            limit = int((group / "memory.limit_in_bytes").read_text(encoding="ascii"))
        used = int((group / "memory.usage_in_bytes").read_text(encoding="ascii"))
        inactive = _stat(group, "total_inactive_file") or 0
    except (OSError, ValueError):
        return None
    if limit >= _NO_LIMIT:
        return None
    return max(0, limit - used + inactive)


def _stat(group: Path, name: str) -> int | None:
    """One counter of the group's memory.stat, None when it is not there."""
    for line in (group / "memory.stat").read_text(encoding="ascii").splitlines():
        key, _, value = line.partition(" ")
        if key == name:
            return int(value)
    return None


def shard_files(shard_dir: Path) -> list[tuple[Path, int]]:
    """The files of a shard the pre-read covers, with the bytes of data they hold: the
    engine makes its storage files large and sparse (32 MB pages of payloads and of
    keyword vectors, in every segment, mostly holes), and holes are not read."""
    files = []
    for directory, subdirectories, names in os.walk(shard_dir):
        subdirectories[:] = [d for d in subdirectories if d not in _SKIPPED_DIRECTORIES]
        for name in names:
            path = Path(directory, name)
            try:
                stat = path.stat()
            except OSError:  # removed meanwhile (a retired shard)
                continue
            files.append((path, min(stat.st_size, stat.st_blocks * 512)))
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
    """Read the file's data, not its holes: reading a hole fills the page cache with
    pages of zeros (64 MB of them for a sparse 64 MB file with one line of data)."""
    done = 0
    try:
        with path.open("rb", buffering=0) as file:
            for start, end in _data_extents(file.fileno()):
                file.seek(start)
                while start < end and (read := file.readinto(buffer[: end - start])):
                    done += read
                    start += read
    except OSError:  # removed meanwhile (a retired shard), or unreadable
        logger.debug("Shard file not read into the page cache", extra={"path": str(path)})
    return done


def _data_extents(fd: int) -> Iterator[tuple[int, int]]:
    """(start, end) of each stretch of data in the file; the whole file where the file
    system cannot tell data from holes."""
    size = os.fstat(fd).st_size
    position = 0
    while position < size:
        try:
            start = os.lseek(fd, position, os.SEEK_DATA)
        except OSError as exc:
            if exc.errno == errno.ENXIO:  # nothing but a hole to the end
                return
            yield position, size  # SEEK_DATA not supported here
            return
        end = os.lseek(fd, start, os.SEEK_HOLE)
        yield start, end
        position = end
