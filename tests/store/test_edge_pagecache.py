"""Shard files read into the page cache before the engine loads a shard
(graph/store/edge/pagecache.py): the mechanism on real files and the kernel's real page
cache, and the store reading each shard first, on open and after every index build."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path

import pytest
from qdrant_edge import EdgeShard

from bench.cgroup import MemoryCgroup
from graph.store.edge import EdgeStore, layout, pagecache
from tests.store.test_edge import fill, physical, vectors, with_store
from tests.store.test_edge_segments import CHUNK, fill_in_chunks


def resident_bytes(files: list[Path]) -> int:
    """How much of files the page cache holds (util-linux's fincore), read without
    reading the files, which would bring them in."""
    out = subprocess.run(
        [FINCORE, "--bytes", "--noheadings", "--output", "RES", *map(str, files)],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    return sum(int(line) for line in out.stdout.split())


def evicted_or_skip(files: list[Path], size: int) -> None:
    """files out of the page cache; skips where this file system keeps them in memory."""
    for path in files:
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)
    if resident_bytes(files) > size // 10:
        pytest.skip("this file system keeps files in memory (no page cache to empty)")


def shard_like(root: Path, megabytes: int = 6) -> tuple[list[Path], int]:
    """Files laid out like a shard's: segment files, and a write-ahead log left out."""
    files = []
    for relative, size in (
        ("segments/s1/matrix.dat", megabytes << 20),
        ("segments/s1/ids", 300_000),
    ):
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(os.urandom(size))
        files.append(path)
    (root / "wal").mkdir()
    (root / "wal/open-1").write_bytes(os.urandom(1 << 20))
    return files, sum(f.stat().st_size for f in files)


FINCORE = shutil.which("fincore") or "fincore"
needs_page_cache = pytest.mark.skipif(
    not sys.platform.startswith("linux") or not shutil.which("fincore"),
    reason="looks into the Linux page cache with util-linux's fincore",
)


@needs_page_cache
def test_read_now_has_a_shards_files_in_the_page_cache_when_it_returns_but_not_its_log(
    tmp_path: Path,
) -> None:
    files, size = shard_like(tmp_path / "shard")
    wal = tmp_path / "shard/wal/open-1"
    evicted_or_skip([*files, wal], size + wal.stat().st_size)
    assert pagecache.read_now([tmp_path / "shard"], budget=1 << 30) == size
    assert resident_bytes(files) >= size * 9 // 10  # read by then, not merely asked for
    assert resident_bytes([wal]) < wal.stat().st_size // 10


@needs_page_cache
def test_read_now_leaves_out_the_write_ahead_log_and_shards_over_the_budget(
    tmp_path: Path,
) -> None:
    files, size = shard_like(tmp_path / "shard")
    assert {p.name for p, _ in pagecache.shard_files(tmp_path / "shard")} == {"matrix.dat", "ids"}
    evicted_or_skip(files, size)
    assert pagecache.read_now([tmp_path / "shard"], budget=size - 1) == 0
    # A shard over what is left is skipped, the next that fits is still read.
    small, small_size = shard_like(tmp_path / "small", megabytes=2)
    evicted_or_skip(small, small_size)
    assert (
        pagecache.read_now([tmp_path / "shard", tmp_path / "small"], budget=small_size)
        == small_size
    )
    assert resident_bytes(small) >= small_size * 9 // 10
    assert resident_bytes(files) < size // 10


def test_read_now_reads_at_most_a_share_of_the_memory_available(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, size = shard_like(tmp_path / "shard")
    monkeypatch.setattr(pagecache, "memory_available", lambda: 2 * size - 2)
    assert pagecache.read_now([tmp_path / "shard"]) == 0
    monkeypatch.setattr(pagecache, "memory_available", lambda: 2 * size)
    assert pagecache.read_now([tmp_path / "shard"]) == size
    monkeypatch.setattr(pagecache, "memory_available", lambda: None)
    assert pagecache.read_now([tmp_path / "shard"]) == 0


def fake_proc_and_sys(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, groups: str) -> Path:
    """/proc/meminfo, /proc/self/cgroup and the cgroup mount as files under tmp_path (the
    test below this one runs against the real kernel's)."""
    meminfo = tmp_path / "meminfo"
    meminfo.write_text("MemTotal:       24000000 kB\nMemAvailable:   20000000 kB\n")
    proc_cgroup = tmp_path / "proc-self-cgroup"
    proc_cgroup.write_text(groups)
    mount = tmp_path / "sys-fs-cgroup"
    mount.mkdir()
    monkeypatch.setattr(pagecache, "MEMINFO", meminfo)
    monkeypatch.setattr(pagecache, "PROC_CGROUP", proc_cgroup)
    monkeypatch.setattr(pagecache, "CGROUP", mount)
    return mount


def v2_group(directory: Path, limit: str, current: int, inactive_file: int = 0) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "memory.max").write_text(f"{limit}\n")
    (directory / "memory.current").write_text(f"{current}\n")
    (directory / "memory.stat").write_text(f"anon 5\ninactive_file {inactive_file}\n")


def test_the_memory_available_is_the_kernels_within_a_cgroup_v2_limit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    mount = fake_proc_and_sys(tmp_path, monkeypatch, "0::/app/server\n")
    kernels = 20_000_000 * 1024
    assert pagecache.memory_available() == kernels  # no memory controller
    v2_group(mount / "app" / "server", "max", 1000)
    assert pagecache.memory_available() == kernels
    v2_group(mount / "app" / "server", str(2 << 30), 1 << 30)
    assert pagecache.memory_available() == 1 << 30
    # The inactive page cache is reclaimed before the limit bites: it counts as room.
    v2_group(mount / "app" / "server", str(2 << 30), 1 << 30, inactive_file=1 << 29)
    assert pagecache.memory_available() == (1 << 30) + (1 << 29)
    # An ancestor's tighter limit wins.
    v2_group(mount / "app", str(1 << 30), 3 << 28)
    assert pagecache.memory_available() == 1 << 28
    v2_group(mount / "app", str(1 << 30), 2 << 30)
    assert pagecache.memory_available() == 0
    (mount / "app" / "memory.max").write_text("garbage\n")
    assert pagecache.memory_available() == (1 << 30) + (1 << 29)
    (tmp_path / "meminfo").unlink()
    assert pagecache.memory_available() is None


def test_a_container_seeing_its_own_group_at_the_mount_uses_the_mounts_limit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    mount = fake_proc_and_sys(tmp_path, monkeypatch, "0::/docker/0123abcd\n")
    v2_group(mount, str(2 << 30), 1 << 30)
    assert pagecache.memory_available() == 1 << 30


def test_the_memory_available_is_within_a_cgroup_v1_limit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    mount = fake_proc_and_sys(
        tmp_path, monkeypatch, "5:cpu,cpuacct:/x\n4:memory:/jobs/server\n0::/\n"
    )
    group = mount / "memory" / "jobs" / "server"
    group.mkdir(parents=True)
    (group / "memory.usage_in_bytes").write_text(f"{3 << 30}\n")
    no_limit = 9223372036854771712
    stat = "cache 1\nhierarchical_memory_limit {}\ntotal_inactive_file {}\n"
    (group / "memory.stat").write_text(stat.format(no_limit, 0))
    assert pagecache.memory_available() == 20_000_000 * 1024
    (group / "memory.stat").write_text(stat.format(4 << 30, 1 << 29))
    assert pagecache.memory_available() == (1 << 30) + (1 << 29)
    # Without the hierarchical figure, the group's own limit.
    (group / "memory.stat").write_text("cache 1\n")
    (group / "memory.limit_in_bytes").write_text(f"{5 << 30}\n")
    assert pagecache.memory_available() == 2 << 30
    # Unreadable or odd files are no limit, never an error.
    (group / "memory.usage_in_bytes").write_text("lots\n")
    assert pagecache.memory_available() == 20_000_000 * 1024
    pagecache.PROC_CGROUP.write_text("garbage\n\n4:memory\n")
    assert pagecache.memory_available() == 20_000_000 * 1024


def test_a_process_in_a_memory_limited_cgroup_sees_the_limit(tmp_path: Path) -> None:
    """The real kernel: a process moved into a new cgroup limited to 256 MB reads at most
    that much available, though the machine has more."""
    limit = 256 << 20
    group = MemoryCgroup.make(f"graph-test-{os.getpid()}-{tmp_path.name}", limit)
    if group is None:
        pytest.skip("no memory cgroup can be made here (not root, or no memory controller)")
    try:
        script = (
            "import sys; from graph.store.edge import pagecache; "
            "print(pagecache.memory_available(), pagecache._meminfo_available())"
        )
        run = subprocess.run(
            [
                "sh",
                "-c",
                f'echo $$ > "{group.path}/cgroup.procs" && exec "$0" -c "$1"',
                sys.executable,
                script,
            ],
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
    finally:
        group.delete()  # the child has exited, so the group is empty
    within_limit, machines = map(int, run.stdout.split())
    assert machines > limit
    assert 0 < within_limit <= limit


def test_a_shard_or_file_gone_before_it_is_read_is_passed_over(tmp_path: Path) -> None:
    assert pagecache.read_now([tmp_path / "gone"], budget=1 << 30) == 0
    files, _ = shard_like(tmp_path / "shard")
    files[0].unlink()
    assert pagecache.read_now([tmp_path / "shard"], budget=1 << 30) == files[1].stat().st_size


def test_the_store_reads_each_shard_before_the_engine_loads_it_on_open_and_after_builds(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    events: list[tuple[str, Path]] = []
    read_now = pagecache.read_now

    def read_spy(shard_dirs: Iterable[Path], budget: int | None = None) -> int:
        dirs = list(shard_dirs)
        done = read_now(dirs, budget)
        assert done > 0
        events.extend(("read", d) for d in dirs)
        return done

    class Engine:
        """EdgeShard as the store's modules see it, its loads recorded."""

        create = EdgeShard.create

        @staticmethod
        def load(path: str) -> EdgeShard:
            events.append(("load", Path(path)))
            return EdgeShard.load(path)

    monkeypatch.setattr(pagecache, "read_now", read_spy)
    monkeypatch.setattr(layout, "EdgeShard", Engine)
    vecs = vectors(2 * CHUNK + 10)

    async def build(store: EdgeStore) -> None:
        await fill_in_chunks(store, vecs, 2)
        await fill(store, "c", vecs, 2 * CHUNK, 2 * CHUNK + 10)

    with_store(tmp_path, build, index_threshold=CHUNK, merge_max_points=10 * CHUNK)
    # Created empty (nothing loaded), then one build per chunk and a merge of the two.
    built = [d for step, d in events if step == "load"]
    assert len(built) == 3
    assert events == [(step, d) for d in built for step in ("read", "load")]
    events.clear()

    async def reopened(store: EdgeStore) -> list[Path]:
        coll = physical(store, "c")
        return [coll.path / name for name in coll.manifest.live()]

    live = with_store(tmp_path, reopened, index_threshold=CHUNK, merge_max_points=10 * CHUNK)
    assert len(live) == 2 and built[-1] == live[0]
    assert events == [("read", d) for d in live] + [("load", d) for d in live]


@needs_page_cache
def test_read_now_reads_a_sparse_files_data_and_leaves_its_holes_out(tmp_path: Path) -> None:
    """The engine's storage pages are sparse files; reading their holes would fill the
    page cache with zeros, and count against the budget."""
    sparse = tmp_path / "shard/segments/s1/payload_storage/page_0.dat"
    sparse.parent.mkdir(parents=True)
    data = os.urandom(1 << 20)
    with sparse.open("wb") as file:
        file.write(data)  # 1 MB of data at the start, then 15 MB of hole, then 1 MB more
        file.seek(16 << 20)
        file.write(data)
        file.truncate(48 << 20)  # and a hole to the end
    if sparse.stat().st_blocks * 512 > 4 << 20:
        pytest.skip("this file system does not keep holes")
    assert pagecache.shard_files(tmp_path / "shard") == [(sparse, 2 << 20)]
    evicted_or_skip([sparse], 2 << 20)
    assert pagecache.read_now([tmp_path / "shard"], budget=3 << 20) == 2 << 20
    resident = resident_bytes([sparse])
    assert 2 << 20 <= resident < 4 << 20  # the data (and a block around it), no zeros
