"""A memory cgroup of its own for a benchmark: what does the store need at most?

The resident memory of a process counts every page of a file it maps that is in the page
cache, and on a machine with memory to spare the kernel keeps them all: the store's
resident memory then grows with the cache rather than with what it needs. Run under a
limit, the kernel reclaims the cache and the resident memory cannot pass the limit; the
benchmark's latencies and rates then say whether the store does its work within it.

Needs root and a writable memory controller (cgroup v1's or v2's); make() returns None
where there is none. Processes started afterwards (the index builds) inherit the group.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from graph.store.edge.pagecache import memory_cgroups

MOUNT = Path("/sys/fs/cgroup")


@dataclass(frozen=True)
class MemoryCgroup:
    path: Path
    version: int
    home: Path  # the group this process was in, which leave() goes back to

    @classmethod
    def make(cls, name: str, limit_bytes: int, mount: Path = MOUNT) -> MemoryCgroup | None:
        """A new group limited to limit_bytes, or None where none can be made."""
        candidates = [(mount / "memory", 1)]
        if "memory" in _read(mount / "cgroup.subtree_control").split():
            candidates.append((mount, 2))
        for parent, version in candidates:
            path = parent / name
            try:
                path.mkdir()
            except OSError:
                continue
            group = cls(path, version, _current_group(parent, version))
            try:
                (path / group._limit_file).write_text(str(limit_bytes))
            except OSError:
                path.rmdir()
                continue
            return group
        return None

    @property
    def _limit_file(self) -> str:
        return "memory.limit_in_bytes" if self.version == 1 else "memory.max"

    def enter(self, pid: int | None = None) -> None:
        (self.path / "cgroup.procs").write_text(str(pid or os.getpid()))

    def peak_bytes(self) -> int | None:
        """The most the group has held at once (cgroup v2's memory.peak needs Linux 5.19)."""
        name = "memory.max_usage_in_bytes" if self.version == 1 else "memory.peak"
        text = _read(self.path / name)
        return int(text) if text.strip().isdigit() else None

    def leave(self) -> None:
        """Move this process back to the group it was in."""
        (self.home / "cgroup.procs").write_text(str(os.getpid()))

    def delete(self) -> None:
        """Remove the group, which must be empty by then."""
        self.path.rmdir()


def _current_group(mount: Path, version: int) -> Path:
    """This process's group in the hierarchy of that version mounted at mount."""
    for each_version, group in memory_cgroups():
        if each_version == version and group.is_relative_to(mount):
            return group
    return mount


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="ascii")
    except OSError:
        return ""
