"""Backup and restore on real stores (the embedded engine and qdrant-client's local
mode): what goes in comes back, and a bad archive or target is refused before anything
is written."""

from __future__ import annotations

import asyncio
import io
import tarfile
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
import pytest

from graph.errors import AlreadyExists, BadUserInput
from graph.settings import Distance
from graph.store.backup.archive import MANIFEST, ArchiveError, ArchiveReader, partial_path
from graph.store.backup.transfer import (
    Checkpoint,
    ShapeMismatch,
    TargetNotEmpty,
    archive_path,
    backup,
    backup_once,
    migrate,
    point_digest,
    restore,
    same_points,
)
from graph.store.base import VectorStore
from graph.store.edge import EdgeStore
from graph.store.models import (
    MemoryPoint,
    MemoryRecord,
    Point,
    RecallMode,
    RecallRequest,
    ScoredPoint,
    SparseVector,
    StoredPoint,
)
from graph.store.remote import RemoteStore
from tests.conftest import Runner

NOW = datetime(2026, 1, 1, tzinfo=UTC)


async def fill(store: VectorStore, points: int = 1_200, memories: int = 300) -> None:
    """Two tenants, two shapes, plain points and memories (with and without a dense vector,
    one expiring), and an empty collection."""
    await store.create_collection("acme", "docs", 4, Distance.COSINE)
    await store.create_collection("beta", "notes", 3, Distance.DOT)
    await store.create_collection("beta", "empty", 4, Distance.COSINE)
    await store.upsert(
        "acme",
        "docs",
        [
            Point(i, [1.0, i % 7, i % 11, 1.0 + i], {"n": i, "tag": f"t{i % 5}"})
            for i in range(points)
        ],
    )
    batch = [
        MemoryPoint(
            id=f"00000000-0000-4000-8000-{i:012d}",
            text=f"memory number {i} about {'cats' if i % 2 else 'dogs'}",
            keywords=SparseVector([i % 50, 100 + i % 3], [1.0, 0.5]),
            vector=[1.0, float(i % 13), 2.0] if i % 3 else None,
            metadata={"i": i},
            created_at=NOW + timedelta(seconds=i),
            updated_at=NOW + timedelta(seconds=i),
            expires_at=NOW + timedelta(days=3650) if i == 7 else None,
        )
        for i in range(memories)
    ]
    await store.remember("beta", "notes", batch)


async def everything(store: VectorStore) -> dict[tuple[str, str], list[StoredPoint]]:
    """Every point of every collection, as stored, in stored-id order."""
    found: dict[tuple[str, str], list[StoredPoint]] = {}
    for entry in await store.all_collections():
        points: list[StoredPoint] = []
        cursor: str | None = None
        while True:
            page, cursor = await store.export_points(
                entry.tenant, entry.name, limit=500, cursor=cursor
            )
            points.extend(page)
            if cursor is None:
                break
        found[(entry.tenant, entry.name)] = points
    return found


def same(
    one: dict[tuple[str, str], list[StoredPoint]], other: dict[tuple[str, str], list[StoredPoint]]
) -> bool:
    return one.keys() == other.keys() and all(same_points(one[k], other[k]) for k in one)


def ranked(hits: Sequence[MemoryRecord | ScoredPoint]) -> list[tuple[float, str]]:
    """Best first, hits of equal score (in any order) by id."""
    return sorted((-round(h.score, 4), str(h.id)) for h in hits)


def open_store(kind: str, path: Path, run: Runner) -> VectorStore:
    # Local mode in memory: persisted to a path, it takes seconds per thousand points.
    store: VectorStore = EdgeStore(path) if kind == "embedded" else RemoteStore.local()
    run(store.open())
    return store


@pytest.fixture
def source(tmp_path: Path, run: Runner) -> Iterator[VectorStore]:
    store = open_store("embedded", tmp_path / "source", run)
    run(fill(store))
    yield store
    run(store.close())


@pytest.mark.parametrize("kind", ["embedded", "local"])
def test_a_restore_into_an_empty_store_gives_back_every_point(
    source: VectorStore, tmp_path: Path, run: Runner, kind: str
) -> None:
    summary = run(backup(source, tmp_path / "a.tar", page_points=200))
    assert (summary.collections, summary.points) == (3, 1_500)
    assert not partial_path(tmp_path / "a.tar").exists()
    target = open_store(kind, tmp_path / "target", run)
    try:
        assert run(restore(target, tmp_path / "a.tar")) == 1_500
        assert same(run(everything(target)), run(everything(source)))
        assert [e.to_json() for e in run(target.all_collections())] == [
            e.to_json() for e in run(source.all_collections())
        ]
        # The service's answers are the same: nearest points, and recall by keywords.
        vector = [1.0, 3.0, 5.0, 40.0]
        assert ranked(run(target.query("acme", "docs", vector, limit=5))) == ranked(
            run(source.query("acme", "docs", vector, limit=5))
        )
        request = RecallRequest(RecallMode.KEYWORD, 10, NOW, keywords=SparseVector([3], [1.0]))
        recalled = ranked(run(target.recall("beta", "notes", request)))
        assert len(recalled) == 6  # memories 3, 53, ..., 253 hold token 3
        assert recalled == ranked(run(source.recall("beta", "notes", request)))
    finally:
        run(target.close())


def test_a_store_holding_points_is_refused_unless_forced(
    source: VectorStore, tmp_path: Path, run: Runner
) -> None:
    run(backup(source, tmp_path / "a.tar"))
    target = open_store("embedded", tmp_path / "target", run)
    try:
        run(target.create_collection("other", "c", 4, Distance.COSINE))
        run(target.upsert("other", "c", [Point(1, [1.0, 0.0, 0.0, 0.0])]))
        with pytest.raises(TargetNotEmpty):
            run(restore(target, tmp_path / "a.tar"))
        assert [(e.tenant, e.name) for e in run(target.all_collections())] == [("other", "c")]
        # An empty collection (the default one a server made at start-up) is no obstacle,
        # and --force merges: the archive's points, and the one that was there.
        assert run(restore(target, tmp_path / "a.tar", force=True)) == 1_500
        restored = run(everything(target))
        assert len(restored.pop(("other", "c"))) == 1
        assert same(restored, run(everything(source)))
    finally:
        run(target.close())


@pytest.mark.parametrize("force", [False, True])
def test_a_collection_of_another_shape_in_the_target_is_refused_before_anything_is_written(
    source: VectorStore, tmp_path: Path, run: Runner, force: bool
) -> None:
    """As the default collection a server made at start-up with another VECTOR_SIZE: its
    points could not go in, and the collections before it would be written."""
    run(backup(source, tmp_path / "a.tar"))
    target = open_store("embedded", tmp_path / "target", run)
    try:
        run(target.create_collection("beta", "notes", 384, Distance.COSINE))
        message = "'notes' of tenant 'beta' has dimension 384 and cosine distance in the target"
        with pytest.raises(ShapeMismatch, match=message):
            run(restore(target, tmp_path / "a.tar", force=force))
        with pytest.raises(ShapeMismatch, match="3 and dot in the source"):
            run(migrate(source, target, Checkpoint(tmp_path / "checkpoint", "route")))
        assert [(e.tenant, e.name) for e in run(target.all_collections())] == [("beta", "notes")]
        assert not (tmp_path / "checkpoint").exists()
    finally:
        run(target.close())


def rewrite(archive: Path, change: dict[str, bytes]) -> None:
    """The archive with some members' bytes replaced (order and names kept)."""
    with tarfile.open(archive) as tar:
        members = [(m, tar.extractfile(m).read()) for m in tar.getmembers()]  # type: ignore[union-attr]
    with tarfile.open(archive, "w") as tar:
        for member, data in members:
            data = change.get(member.name, data)
            member.size = len(data)
            tar.addfile(member, io.BytesIO(data))


def refused(target: VectorStore, archive: Path, run: Runner, message: str) -> None:
    with pytest.raises(ArchiveError, match=message):
        run(restore(target, archive))
    assert run(target.all_collections()) == []  # nothing written


@pytest.fixture
def target(tmp_path: Path, run: Runner) -> Iterator[VectorStore]:
    store = open_store("embedded", tmp_path / "target", run)
    yield store
    run(store.close())


@pytest.fixture
def archive(source: VectorStore, tmp_path: Path, run: Runner) -> Path:
    """A backup of source in chunks of 200 points."""
    path = tmp_path / "a.tar"
    run(backup(source, path, page_points=200))
    return path


def test_a_flipped_byte_in_any_chunk_is_refused(
    archive: Path, target: VectorStore, run: Runner
) -> None:
    with tarfile.open(archive) as tar:
        last = [m for m in tar.getmembers() if m.name != MANIFEST][-1]
        data = bytearray(tar.extractfile(last).read())  # type: ignore[union-attr]
    data[len(data) // 2] ^= 0x01
    rewrite(archive, {last.name: bytes(data)})
    refused(target, archive, run, "fails its checksum")


def test_a_flipped_byte_anywhere_in_the_file_is_refused(
    archive: Path, target: VectorStore, run: Runner
) -> None:
    raw = bytearray(archive.read_bytes())
    with tarfile.open(archive) as tar:
        members = tar.getmembers()
    # A header, the middle of a chunk and of the manifest, the last byte of content (the
    # rest of the file is the tar's zero padding, which holds nothing).
    last = members[-1]
    offsets = [
        members[1].offset + 3,
        members[2].offset_data + members[2].size // 2,
        last.offset_data + last.size // 2,
        last.offset_data + last.size - 2,
    ]
    for offset in offsets:
        flipped = bytearray(raw)
        flipped[offset] ^= 0x10
        archive.write_bytes(bytes(flipped))
        with pytest.raises(ArchiveError):
            run(restore(target, archive))
        assert run(target.all_collections()) == []


def test_a_damaged_header_is_told_apart_from_a_backup_cut_short(
    archive: Path, target: VectorStore, run: Runner
) -> None:
    """tarfile stops listing at a header it cannot read: the manifest is then missing, but
    the backup was complete, and the operator must not be told it was cut short."""
    raw = bytearray(archive.read_bytes())
    with tarfile.open(archive) as tar:
        third = tar.getmembers()[2]
    raw[third.offset + 3] ^= 0x10  # in its name: the header's checksum fails
    archive.write_bytes(bytes(raw))
    refused(target, archive, run, f"damaged at byte {third.offset}")


def test_an_archive_of_a_newer_format_is_refused(
    archive: Path, target: VectorStore, run: Runner
) -> None:
    reader = ArchiveReader(archive)
    manifest = orjson.loads(reader.manifest.to_json())
    reader.close()
    manifest["version"] = 2
    rewrite(archive, {MANIFEST: orjson.dumps(manifest)})
    refused(target, archive, run, "format version 2 is newer")


def test_a_backup_cut_short_is_refused(archive: Path, target: VectorStore, run: Runner) -> None:
    whole = archive.read_bytes()
    with tarfile.open(archive) as tar:
        manifest_at = tar.getmember(MANIFEST).offset
    # What a crash leaves: the partial file, cut anywhere before the manifest is written.
    for size in (0, 100, manifest_at // 2, manifest_at):
        archive.write_bytes(whole[:size])
        refused(target, archive, run, "incomplete")
    archive.unlink()
    refused(target, archive, run, "no archive")


def test_points_of_another_tenant_are_never_imported(source: VectorStore, run: Runner) -> None:
    points, _ = run(source.export_points("acme", "docs", limit=3))
    run(source.create_collection("evil", "docs", 4, Distance.COSINE))
    with pytest.raises(BadUserInput, match="another collection"):
        run(source.import_points("evil", "docs", points))
    forged = [p for p in points]
    forged[0].payload = {**forged[0].payload, "_p": "evil/docs"}
    with pytest.raises(BadUserInput, match="id not derived"):
        run(source.import_points("evil", "docs", forged))
    assert run(source.count("evil", "docs")) == 0


def test_writes_go_on_during_a_backup_and_what_was_acknowledged_before_is_in_it(
    source: VectorStore, target: VectorStore, tmp_path: Path, run: Runner
) -> None:
    before = run(everything(source))
    written: list[int] = []

    async def writer(done: asyncio.Event) -> None:
        i = 10_000
        while not done.is_set() and i < 12_000:
            await source.upsert("acme", "docs", [Point(i, [1.0, 2.0, 3.0, 4.0], {"late": True})])
            written.append(i)
            i += 1
            await asyncio.sleep(0)

    async def both() -> int:
        done = asyncio.Event()
        task = asyncio.create_task(writer(done))
        # A page of 10 points: hundreds of store calls, with writes between them.
        summary = await backup(source, tmp_path / "a.tar", page_points=10)
        done.set()
        await task
        return summary.points

    backed_up = run(both())
    assert written, "no write was acknowledged while the backup ran"
    assert run(source.count("acme", "docs")) == 1_200 + len(written)
    run(restore(target, tmp_path / "a.tar"))
    restored = run(everything(target))
    assert sum(len(p) for p in restored.values()) == backed_up
    for key, points in before.items():
        assert {point_digest(p) for p in points} <= {point_digest(p) for p in restored[key]}


def test_a_client_names_only_a_file_in_the_backup_directory(
    source: VectorStore, tmp_path: Path, run: Runner
) -> None:
    backups = tmp_path / "backups"
    for name in ("../a.tar", "/etc/passwd", "a/b.tar", ".hidden", "a.tar.partial", "", "x" * 200):
        with pytest.raises(BadUserInput):
            archive_path(backups, name)
    summary = run(backup_once(source, backups, "nightly.tar"))
    assert summary.path == backups / "nightly.tar"
    with pytest.raises(AlreadyExists):
        run(backup_once(source, backups, "nightly.tar"))
    assert archive_path(backups, None).parent == backups
