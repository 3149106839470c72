"""The backup archive: one tar file, written under a temporary name and renamed only once
complete, with a manifest that counts and checksums everything in it.

    chunks/000001.jsonl.gz ...   points, one JSON object a line, gzip-compressed
    manifest.json                written last: format, version, the collections (tenant,
                                 name, dimension, distance), the chunks of each with their
                                 points and sha256, and the totals

A line is `{"id": stored id, "payload": stored payload, "vector": [...] or null,
"sparse": {name: [indices, values]}}`: a point exactly as the store keeps it
(graph/store/base.py, StoredPoint), so an archive restores into either adapter.
docs/backup.md has the format.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import io
import os
import tarfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import orjson

from graph.store.common import fsync_dir
from graph.store.models import SparseVector, StoredPoint
from graph.store.tenancy import CollectionEntry

FORMAT = "graph-backup"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
CHUNKS = "chunks/"
PARTIAL_SUFFIX = ".partial"


class ArchiveError(Exception):
    """An archive that cannot be restored: incomplete, corrupted or of a newer format. The
    message is one line, safe to show."""


@dataclass(slots=True)
class Chunk:
    name: str
    points: int
    sha256: str


@dataclass(slots=True)
class CollectionPart:
    entry: CollectionEntry
    chunks: list[Chunk] = field(default_factory=list)

    @property
    def points(self) -> int:
        return sum(c.points for c in self.chunks)


@dataclass(slots=True)
class Manifest:
    version: int
    created_at: str
    collections: list[CollectionPart]

    @property
    def points(self) -> int:
        return sum(c.points for c in self.collections)

    def to_json(self) -> bytes:
        return orjson.dumps(
            {
                "format": FORMAT,
                "version": self.version,
                "created_at": self.created_at,
                "points": self.points,
                "collections": [
                    {
                        **part.entry.to_json(),
                        "points": part.points,
                        "chunks": [
                            {"name": c.name, "points": c.points, "sha256": c.sha256}
                            for c in part.chunks
                        ],
                    }
                    for part in self.collections
                ],
            },
            option=orjson.OPT_INDENT_2,
        )

    @classmethod
    def from_json(cls, raw: bytes) -> Manifest:
        try:
            data = orjson.loads(raw)
            if data.get("format") != FORMAT:
                raise ArchiveError("not a backup archive (its manifest names another format)")
            version = int(data["version"])
            if version > FORMAT_VERSION:
                raise ArchiveError(
                    f"archive format version {version} is newer than this version of graph "
                    f"reads (up to {FORMAT_VERSION}): restore it with a newer graph"
                )
            parts = [_part(c) for c in data["collections"]]
            manifest = cls(version, str(data["created_at"]), parts)
        except ArchiveError:
            raise
        except (ValueError, KeyError, TypeError, AttributeError):
            raise ArchiveError("the archive's manifest is malformed") from None
        if manifest.points != int(data.get("points", -1)):
            raise ArchiveError("the archive's manifest does not add up")
        return manifest


def _part(raw: dict[str, Any]) -> CollectionPart:
    chunks = [Chunk(str(c["name"]), int(c["points"]), str(c["sha256"])) for c in raw["chunks"]]
    return CollectionPart(CollectionEntry.from_json(raw), chunks)


def encode_points(points: Sequence[StoredPoint]) -> bytes:
    lines = [
        orjson.dumps(
            {
                "id": p.id,
                "payload": p.payload,
                "vector": p.vector,
                "sparse": {n: [s.indices, s.values] for n, s in p.sparse.items()},
            }
        )
        for p in points
    ]
    return gzip.compress(b"\n".join(lines) + b"\n", compresslevel=1, mtime=0)


def decode_points(data: bytes) -> list[StoredPoint]:
    points = []
    for line in gzip.decompress(data).splitlines():
        raw: dict[str, Any] = orjson.loads(line)
        points.append(
            StoredPoint(
                id=str(raw["id"]),
                payload=raw["payload"],
                vector=raw["vector"],
                sparse={n: SparseVector(s[0], s[1]) for n, s in raw["sparse"].items()},
            )
        )
    return points


def partial_path(path: Path) -> Path:
    return path.with_name(path.name + PARTIAL_SUFFIX)


class ArchiveWriter:
    """Chunks are added as they come; finish() writes the manifest, fsyncs and renames the
    partial file to path. Until then only path + PARTIAL_SUFFIX exists, which restore
    refuses (it has no manifest)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.partial = partial_path(path)
        self._file: IO[bytes] = self.partial.open("xb")
        # Both stay open until finish() or abort().
        self._tar = tarfile.open(  # noqa: SIM115
            fileobj=self._file, mode="w", format=tarfile.PAX_FORMAT
        )
        self._chunks = 0
        self.manifest = Manifest(
            FORMAT_VERSION, time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), []
        )

    def _add(self, name: str, data: bytes) -> None:
        info = tarfile.TarInfo(name)
        info.size = len(data)
        info.mtime = int(time.time())
        self._tar.addfile(info, io.BytesIO(data))

    def begin(self, entry: CollectionEntry) -> None:
        self.manifest.collections.append(CollectionPart(entry))

    def add_chunk(self, points: int, data: bytes) -> None:
        """data from encode_points, of the collection begun last."""
        self._chunks += 1
        name = f"{CHUNKS}{self._chunks:06d}.jsonl.gz"
        self._add(name, data)
        self.manifest.collections[-1].chunks.append(
            Chunk(name, points, hashlib.sha256(data).hexdigest())
        )

    def finish(self) -> int:
        """The archive's size in bytes, once it is complete under its own name."""
        self._add(MANIFEST, self.manifest.to_json())
        self._tar.close()
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()
        os.replace(self.partial, self.path)
        fsync_dir(self.path.parent)
        return self.path.stat().st_size

    def abort(self) -> None:
        """Delete the partial file, whatever failed before (a full disk included): the
        tar's closing blocks are not written, and a failing flush is ignored."""
        try:
            with contextlib.suppress(OSError):
                self._file.close()
        finally:
            self.partial.unlink(missing_ok=True)


class ArchiveReader:
    """An archive checked whole before anything is read from it: verify() reads every
    chunk and compares its sha256 and count with the manifest."""

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            self._tar = tarfile.open(path, mode="r:")  # noqa: SIM115 (closed by close())
        except FileNotFoundError:
            raise ArchiveError(f"no archive at {path}") from None
        except (tarfile.TarError, OSError, EOFError):
            raise ArchiveError(f"{path} is incomplete or not an archive") from None
        try:
            members = {m.name: m for m in self._tar.getmembers()}
        except (tarfile.TarError, OSError, EOFError):
            self._tar.close()
            raise ArchiveError(f"{path} is incomplete or not an archive") from None
        self._members = members
        try:
            if MANIFEST not in members:
                raise ArchiveError(self._no_manifest())
            self.manifest = Manifest.from_json(self._read(MANIFEST))
            named = {c.name for part in self.manifest.collections for c in part.chunks}
            if named != set(members) - {MANIFEST}:
                raise ArchiveError(f"{path} does not hold exactly the chunks its manifest names")
        except BaseException:
            self._tar.close()
            raise

    def _no_manifest(self) -> str:
        """Why no manifest was found. tarfile stops at a header it cannot read and lists the
        members before it: a whole block there that is not zeros (what a crash may leave) is
        a damaged header, not the end of a backup cut short."""
        stopped_at = self._tar.offset
        with self.path.open("rb") as f:
            f.seek(stopped_at)
            block = f.read(tarfile.BLOCKSIZE)
        if len(block) == tarfile.BLOCKSIZE and block.count(0) != len(block):
            return (
                f"{self.path} is damaged at byte {stopped_at}: the members from there on, the "
                "manifest included, cannot be read"
            )
        return f"{self.path} is incomplete: it has no manifest (a backup cut short)"

    def _read(self, name: str) -> bytes:
        try:
            f = self._tar.extractfile(self._members[name])
            if f is None:
                raise ArchiveError(f"{name} in the archive is not a file")
            return f.read()
        except (tarfile.TarError, OSError, EOFError):
            raise ArchiveError(f"{self.path} is truncated or damaged at {name}") from None

    def chunk(self, chunk: Chunk) -> bytes:
        data = self._read(chunk.name)
        if hashlib.sha256(data).hexdigest() != chunk.sha256:
            raise ArchiveError(f"{self.path} is corrupted: {chunk.name} fails its checksum")
        return data

    def chunk_points(self, chunk: Chunk) -> list[StoredPoint]:
        """The points of one chunk, checked against its sha256 and count."""
        data = self.chunk(chunk)
        try:
            points = decode_points(data)
        except (ValueError, KeyError, TypeError, IndexError, EOFError, OSError):
            raise ArchiveError(f"{self.path}: {chunk.name} is malformed") from None
        if len(points) != chunk.points:
            raise ArchiveError(
                f"{self.path}: {chunk.name} holds {len(points)} points, its manifest says "
                f"{chunk.points}"
            )
        return points

    def verify(self) -> None:
        """Every chunk read and checked, one at a time, before anything is restored."""
        for part in self.manifest.collections:
            for chunk in part.chunks:
                self.chunk_points(chunk)

    def close(self) -> None:
        self._tar.close()
