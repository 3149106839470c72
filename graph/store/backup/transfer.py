"""Backup, restore and migrate, on any two VectorStores (a logical copy through the
store interface, so the embedded store and a Qdrant server are alike).

Backup walks each collection in stored-id order a page at a time, with no lock held
across pages: writes go on meanwhile. Every point acknowledged before the backup began
is in the archive (unless deleted since); a point written or changed during it may be
there, in one of its states.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import hashlib
import logging
import math
import os
import re
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from graph.errors import AlreadyExists, BadUserInput, NotFound, StoreUnavailable
from graph.store.backup.archive import (
    PARTIAL_SUFFIX,
    ArchiveError,
    ArchiveReader,
    ArchiveWriter,
    encode_points,
    partial_path,
)
from graph.store.base import VectorStore
from graph.store.models import StoredPoint
from graph.store.tenancy import CollectionEntry

logger = logging.getLogger(__name__)

PAGE_POINTS = 1_000
# An archive's expected size, for the free-space check before a backup: what the store
# takes on disk (allocated blocks, when it is the embedded store's DATA_DIR), or, if more
# (a remote store, or float16 vectors on disk), every dense vector's numbers at the bytes
# one takes as gzip-compressed JSON (measured: ~9.8 at 384 and 1,536 dimensions) plus the
# id, payload keys and framing of each point.
ARCHIVE_BYTES_PER_VALUE = 10
ARCHIVE_BYTES_PER_POINT = 100
MIB = 1024 * 1024
# Points compared one by one between source and target after a migrate, per collection.
SAMPLE_POINTS = 64

Progress = Callable[[int], None]


@dataclass(slots=True)
class BackupSummary:
    path: Path
    collections: int
    points: int
    bytes: int
    seconds: float


_ARCHIVE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
_running = False


def archive_path(backup_dir: Path, name: str | None) -> Path:
    """Where a backup asked for by a client goes: a plain file name inside backup_dir (no
    directory, no '..'), by default one from the time. Never anywhere else."""
    if name is None:
        name = (
            time.strftime("backup-%Y%m%dT%H%M%SZ", time.gmtime())
            + f"-{time.time_ns() % 10**9:09d}.tar"
        )
    if not _ARCHIVE_NAME.fullmatch(name) or name.endswith(PARTIAL_SUFFIX) or ".." in name:
        raise BadUserInput(
            "path must be a file name (letters, digits, '.', '_', '-'; at most 128) "
            "inside BACKUP_DIR"
        )
    path = backup_dir / name
    if path.exists() or partial_path(path).exists():
        raise AlreadyExists(f"A backup named '{name}' already exists")
    return path


async def backup_once(
    store: VectorStore,
    backup_dir: Path,
    name: str | None,
    *,
    page_points: int = PAGE_POINTS,
    min_free_bytes: int = 0,
) -> BackupSummary:
    """A backup asked for by a client: one at a time per process (a second while one runs
    is BadUserInput), into backup_dir only. backup_dir that cannot be written (read-only,
    full, not a directory) is StoreUnavailable, its reason in the log.

    The disk guard (MIN_FREE_DISK_MB, as the embedded store keeps for DATA_DIR, on the
    volume they often share): refused before anything is written when backup_dir's
    filesystem would keep less than min_free_bytes free once the archive is written (its
    size estimated by expected_archive_bytes), and stopped, its partial file deleted, when
    free space falls below min_free_bytes while it is written (StoreUnavailable both)."""
    global _running
    try:
        path = archive_path(backup_dir, name)
    except OSError as exc:  # backup_dir itself unreadable
        raise _not_written(backup_dir / (name or "backup"), exc) from None
    if _running:
        raise BadUserInput("A backup is already running; try again when it has finished")
    _running = True
    try:
        await asyncio.to_thread(backup_dir.mkdir, parents=True, exist_ok=True)
        if min_free_bytes:
            await _check_room(store, path, min_free_bytes)
        return await backup(store, path, page_points=page_points, min_free_bytes=min_free_bytes)
    except FileExistsError as exc:
        if exc.filename in (str(path), str(partial_path(path))):  # made meanwhile
            raise AlreadyExists(f"A backup named '{path.name}' already exists") from None
        raise _not_written(path, exc) from None
    except TimeoutError:  # an OSError too, but never a disk's
        raise
    except OSError as exc:
        raise _not_written(path, exc) from None
    finally:
        _running = False


async def expected_archive_bytes(store: VectorStore) -> int:
    """An estimate of the size of a backup of store now: the larger of the store's own
    size on disk (the embedded store's DATA_DIR, in allocated blocks) and its dense
    vectors' numbers at ARCHIVE_BYTES_PER_VALUE with ARCHIVE_BYTES_PER_POINT a point."""
    by_points = 0
    for entry in await store.all_collections():
        try:
            points = (await store.get_collection(entry.tenant, entry.name)).points_count
        except NotFound:
            continue  # deleted meanwhile
        by_points += points * (entry.dimension * ARCHIVE_BYTES_PER_VALUE + ARCHIVE_BYTES_PER_POINT)
    data_dir = getattr(store, "data_dir", None)
    on_disk = (
        await asyncio.to_thread(allocated_bytes, data_dir) if isinstance(data_dir, Path) else 0
    )
    return max(by_points, on_disk)


def allocated_bytes(directory: Path) -> int:
    """The disk space the files under directory take (their allocated blocks: the
    embedded store's files are sparse, far larger than what they hold)."""
    total = 0
    for root, _, files in os.walk(directory):
        for file in files:
            with contextlib.suppress(OSError):  # removed meanwhile
                total += os.lstat(os.path.join(root, file)).st_blocks * 512
    return total


def free_bytes(directory: Path) -> int:
    return shutil.disk_usage(directory).free


DISK_FULL_REFUSED = "BACKUP_DIR is out of disk space; the backup '{name}' is refused"
DISK_FULL_STOPPED = (
    "BACKUP_DIR ran out of disk space; the backup '{name}' was stopped and nothing was kept"
)


async def _check_room(store: VectorStore, path: Path, min_free_bytes: int) -> None:
    expected = await expected_archive_bytes(store)
    free = await asyncio.to_thread(free_bytes, path.parent)
    if free - expected < min_free_bytes:
        logger.error(
            "Backup %s refused: %s MiB free in %s, the archive would take about %s MiB, "
            "and MIN_FREE_DISK_MB is %s",
            path,
            free // MIB,
            path.parent,
            -(-expected // MIB),
            min_free_bytes // MIB,
        )
        raise StoreUnavailable(DISK_FULL_REFUSED.format(name=path.name))


def _not_written(path: Path, exc: OSError) -> StoreUnavailable:
    """The client's error names its own file only; the log line has the server's path and
    the reason."""
    reason = exc.strerror or type(exc).__name__
    where = f" ({exc.filename})" if exc.filename else ""
    logger.error("Backup %s not written: %s%s", path, reason, where)
    return StoreUnavailable(
        f"The backup '{path.name}' could not be written into BACKUP_DIR; the server log has "
        "the reason"
    )


async def backup(
    store: VectorStore,
    path: Path,
    *,
    page_points: int = PAGE_POINTS,
    min_free_bytes: int = 0,
) -> BackupSummary:
    """Write the archive at path (refused if anything is there, partial or whole). With
    min_free_bytes, free space on path's filesystem is read after every chunk: below it,
    the backup stops (StoreUnavailable) and its partial file is deleted."""
    started = time.perf_counter()
    if path.exists() or partial_path(path).exists():
        raise FileExistsError(errno.EEXIST, os.strerror(errno.EEXIST), str(path))
    writer = await asyncio.to_thread(ArchiveWriter, path)
    try:
        for entry in await store.all_collections():
            writer.begin(entry)
            cursor: str | None = None
            while True:
                try:
                    points, cursor = await store.export_points(
                        entry.tenant, entry.name, limit=page_points, cursor=cursor
                    )
                except NotFound:
                    break  # deleted during the backup: kept with what was read of it
                if points:
                    data = await asyncio.to_thread(encode_points, points)
                    await asyncio.to_thread(writer.add_chunk, len(points), data)
                    if min_free_bytes:
                        await _check_free(path, min_free_bytes)
                if cursor is None:
                    break
        size = await asyncio.to_thread(writer.finish)
    except BaseException:
        await asyncio.to_thread(writer.abort)
        raise
    manifest = writer.manifest
    return BackupSummary(
        path, len(manifest.collections), manifest.points, size, time.perf_counter() - started
    )


async def _check_free(path: Path, min_free_bytes: int) -> None:
    free = await asyncio.to_thread(free_bytes, path.parent)
    if free < min_free_bytes:
        logger.error(
            "Backup %s stopped: %s MiB free in %s, less than MIN_FREE_DISK_MB (%s)",
            path,
            free // MIB,
            path.parent,
            min_free_bytes // MIB,
        )
        raise StoreUnavailable(DISK_FULL_STOPPED.format(name=path.name))


class TargetNotEmpty(Exception):
    pass


class ShapeMismatch(Exception):
    pass


async def check_shapes(
    target: VectorStore, entries: Sequence[CollectionEntry], source: str
) -> None:
    """Refuse, before anything is written, a target holding a collection of the tenant and
    name of one to copy but of another dimension or distance (the default collection a
    server made at start-up with another VECTOR_SIZE): none of its points could go in, so
    the copy would stop at it with the collections before it written."""
    there = {(e.tenant, e.name): e for e in await target.all_collections()}
    for entry in entries:
        have = there.get((entry.tenant, entry.name))
        if have is not None and have.physical != entry.physical:
            raise ShapeMismatch(
                f"collection {entry.name!r} of tenant {entry.tenant!r} has dimension "
                f"{have.dimension} and {have.distance.value} distance in the target, "
                f"{entry.dimension} and {entry.distance.value} in {source}: delete it there, "
                "or use an empty target"
            )


async def holds_points(store: VectorStore) -> bool:
    for entry in await store.all_collections():
        if (await store.get_collection(entry.tenant, entry.name)).points_count:
            return True
    return False


async def restore(
    store: VectorStore, path: Path, *, force: bool = False, progress: Progress | None = None
) -> int:
    """Verify the whole archive, then write it into store; returns the points restored.
    A store already holding points is refused unless force (then the archive's points
    replace those of the same ids, and the others stay)."""
    reader = await asyncio.to_thread(ArchiveReader, path)
    try:
        await asyncio.to_thread(reader.verify)
        if not force and await holds_points(store):
            raise TargetNotEmpty("the target store already holds points (--force to merge)")
        await check_shapes(
            store, [part.entry for part in reader.manifest.collections], "the archive"
        )
        for part in reader.manifest.collections:
            e = part.entry
            await store.ensure_collection(e.tenant, e.name, e.dimension, e.distance)
        restored = 0
        for part in reader.manifest.collections:
            e = part.entry
            for chunk in part.chunks:
                points = await asyncio.to_thread(reader.chunk_points, chunk)
                restored += await store.import_points(e.tenant, e.name, points)
                if progress is not None:
                    progress(len(points))
        for part in reader.manifest.collections:
            e = part.entry
            counted = (await store.get_collection(e.tenant, e.name)).points_count
            if counted < part.points or (not force and counted != part.points):
                raise ArchiveError(
                    f"collection {e.name!r} of tenant {e.tenant!r} holds {counted} points "
                    f"after the restore, the archive {part.points}"
                )
        return restored
    finally:
        reader.close()


# Migrate


class CheckpointError(Exception):
    pass


class Checkpoint:
    """What a migrate has copied: the collections done and the cursor within the current
    one, replaced atomically after every page, so a migrate cut short resumes there."""

    def __init__(self, path: Path, route: str) -> None:
        self.path = path
        self.route = route
        self.done: list[list[str]] = []
        self.current: list[str] | None = None
        self.cursor: str | None = None
        self.copied = 0
        if path.is_file():
            try:
                raw = orjson.loads(path.read_bytes())
                if raw.get("route") == route:
                    self.done = [[str(t), str(n)] for t, n in raw["done"]]
                    current = raw["current"]
                    self.current = None if current is None else [str(c) for c in current]
                    self.cursor = None if raw["cursor"] is None else str(raw["cursor"])
                    self.copied = int(raw["copied"])
            except (ValueError, KeyError, TypeError, AttributeError):
                # Not one this class wrote (another file named by --checkpoint, or one a
                # crash left empty): neither resumed from nor overwritten.
                raise CheckpointError(
                    f"{path} is not a migrate checkpoint: delete it (the migrate then starts "
                    "from the beginning, which gives the same state) or name another file"
                ) from None

    def save(self) -> None:
        tmp = self.path.with_name(self.path.name + ".tmp")
        tmp.write_bytes(
            orjson.dumps(
                {
                    "route": self.route,
                    "done": self.done,
                    "current": self.current,
                    "cursor": self.cursor,
                    "copied": self.copied,
                }
            )
        )
        os.replace(tmp, self.path)

    def remove(self) -> None:
        self.path.unlink(missing_ok=True)


@dataclass(slots=True)
class MigrateSummary:
    collections: int
    points: int
    resumed_at: int
    sampled: int


def point_digest(point: StoredPoint) -> str:
    """A checksum of what a point is, but for its dense vector (a server may normalise a
    cosine vector again, changing its last bits: same_points compares those)."""
    canonical: dict[str, Any] = {
        "id": point.id,
        "payload": point.payload,
        "dense": point.vector is not None and len(point.vector),
        "sparse": {n: [s.indices, s.values] for n, s in sorted(point.sparse.items())},
    }
    return hashlib.sha256(orjson.dumps(canonical, option=orjson.OPT_SORT_KEYS)).hexdigest()


def same_points(one: list[StoredPoint], other: list[StoredPoint]) -> bool:
    """The same points, by checksum, with dense vectors equal to within 1e-5."""
    if [point_digest(p) for p in one] != [point_digest(p) for p in other]:
        return False
    return all(_close(a.vector, b.vector) for a, b in zip(one, other, strict=True))


def _close(one: list[float] | None, other: list[float] | None) -> bool:
    if one is None or other is None:
        return one is other
    return len(one) == len(other) and all(
        math.isclose(x, y, rel_tol=1e-5, abs_tol=1e-6) for x, y in zip(one, other, strict=True)
    )


async def _sample(store: VectorStore, entry: CollectionEntry) -> list[StoredPoint]:
    points, _ = await store.export_points(entry.tenant, entry.name, limit=SAMPLE_POINTS)
    return points


async def migrate(
    source: VectorStore,
    target: VectorStore,
    checkpoint: Checkpoint,
    *,
    page_points: int = PAGE_POINTS,
    progress: Progress | None = None,
) -> MigrateSummary:
    """Copy every collection of source into target, resuming from checkpoint; idempotent
    (points are written by their stored ids). Verified by counts per collection and by the
    first SAMPLE_POINTS points of each (in stored-id order) compared."""
    entries = await source.all_collections()
    await check_shapes(target, entries, "the source")
    resumed_at = checkpoint.copied
    if progress is not None and resumed_at:
        progress(resumed_at)
    for entry in entries:
        key = [entry.tenant, entry.name]
        if key in checkpoint.done:
            continue
        await target.ensure_collection(entry.tenant, entry.name, entry.dimension, entry.distance)
        cursor = checkpoint.cursor if checkpoint.current == key else None
        checkpoint.current = key
        while True:
            points, cursor = await source.export_points(
                entry.tenant, entry.name, limit=page_points, cursor=cursor
            )
            await target.import_points(entry.tenant, entry.name, points)
            checkpoint.cursor = cursor
            checkpoint.copied += len(points)
            if cursor is None:
                checkpoint.done.append(key)
                checkpoint.current = None
            checkpoint.save()
            if progress is not None:
                progress(len(points))
            if cursor is None:
                break
    sampled = 0
    for entry in entries:
        have = (await source.get_collection(entry.tenant, entry.name)).points_count
        got = (await target.get_collection(entry.tenant, entry.name)).points_count
        if have != got:
            raise MigrateMismatch(
                f"collection {entry.name!r} of tenant {entry.tenant!r}: {have} points in the "
                f"source, {got} in the target"
            )
        expected = await _sample(source, entry)
        if not same_points(expected, await _sample(target, entry)):
            raise MigrateMismatch(
                f"collection {entry.name!r} of tenant {entry.tenant!r}: sampled points differ"
            )
        sampled += len(expected)
    checkpoint.remove()
    return MigrateSummary(len(entries), checkpoint.copied, resumed_at, sampled)


class MigrateMismatch(Exception):
    pass
