"""Where the embedded store keeps what, on disk.

Layout under data_dir:

    .lock                                  flock held while a store has the directory open
    catalog.json                           the logical collections: tenant, name, shape
    collections/<name>/manifest.json       dimension, distance, the live shard directories
    collections/<name>/shard-000001/ ...   one qdrant-edge shard each (WAL on)

Each directory under collections/ is a physical collection (one per vector shape, see
graph/store/tenancy.py), called a collection below. Its manifest, replaced atomically,
is the commit point: it only ever names complete shards, and anything else found in a
collection directory on open() is a leftover and is deleted.
"""

from __future__ import annotations

import asyncio
import fcntl
import json
import logging
import os
import shutil
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from qdrant_edge import (
    DatetimeIndexParams,
    EdgeConfig,
    EdgeOptimizersConfig,
    EdgeShard,
    EdgeSparseVectorParams,
    EdgeVectorParams,
    KeywordIndexParams,
    Memory,
    Modifier,
    ScalarQuantizationConfig,
    ScalarType,
    UpdateOperation,
    VectorStorageDatatype,
)
from qdrant_edge import Distance as EdgeDistance

from graph.errors import ConfigError, StoreUnavailable
from graph.settings import Distance, Quantization, VectorDatatype
from graph.store.common import fsync_dir
from graph.store.edge import pagecache
from graph.store.edge.moves import Moves
from graph.store.edge.views import JournalEntry, View
from graph.store.models import CollectionInfo
from graph.store.tenancy import (
    CREATED_FIELD,
    EXPIRES_FIELD,
    KEYWORDS_VECTOR,
    PARTITION_FIELD,
    CollectionEntry,
)

logger = logging.getLogger(__name__)

MANIFEST = "manifest.json"
CATALOG = "catalog.json"
COLLECTIONS = "collections"
DISK_FULL_MESSAGE = "The vector store is out of disk space; writes are refused"
LOCK_FILE = ".lock"
TRASH_PREFIX = ".trash-"
SHARD_PREFIX = "shard-"
EDGE_DISTANCES: dict[Distance, EdgeDistance] = {
    Distance.COSINE: EdgeDistance.Cosine,
    Distance.DOT: EdgeDistance.Dot,
    Distance.EUCLID: EdgeDistance.Euclid,
}
# In KB: any segment bigger than this gets an HNSW graph when optimize() runs. The
# engine's default (megabytes) would leave a small collection unindexed forever.
INDEXING_THRESHOLD_KB = 1
# Scalar quantization maps this central share of each vector's values onto int8 (Qdrant's
# usual setting): outliers are clipped rather than stretching the scale for all.
QUANTILE = 0.99


EDGE_DATATYPES: dict[VectorDatatype, VectorStorageDatatype] = {
    VectorDatatype.FLOAT32: VectorStorageDatatype.Float32,
    VectorDatatype.FLOAT16: VectorStorageDatatype.Float16,
}


def edge_config(
    dimension: int,
    distance: Distance,
    quantization: Quantization = Quantization.NONE,
    datatype: VectorDatatype = VectorDatatype.FLOAT32,
) -> EdgeConfig:
    """The one configuration of every shard of a collection (WAL on: kill -9 safe)."""
    quantized = quantization is Quantization.SCALAR
    return EdgeConfig(
        vectors=EdgeVectorParams(
            size=dimension,
            distance=EDGE_DISTANCES[distance],
            # Quantized, the originals are read only to rescore a query's best candidates.
            memory=Memory.Cold if quantized else None,
            datatype=EDGE_DATATYPES[datatype],
        ),
        # Memories' BM25 weights (graph/store/edge/memory.py).
        sparse_vectors={KEYWORDS_VECTOR: EdgeSparseVectorParams(modifier=Modifier.Idf)},
        wal_enabled=True,
        optimizers=EdgeOptimizersConfig(indexing_threshold=INDEXING_THRESHOLD_KB),
        quantization_config=(
            ScalarQuantizationConfig(ScalarType.Int8, quantile=QUANTILE, memory=Memory.Cached)
            if quantized
            else None
        ),
    )


def ensure_memory_schema(shard: EdgeShard) -> None:
    """Give a shard made before memories existed, or before these indexes, their sparse
    vector, the index of their expiry times, which the expiry filter and sweep use, and the
    index of their creation times, which recall's "is a memory" condition reads instead of
    each candidate's payload (memory.memories_only). No-ops when they are there."""
    shard.update(UpdateOperation.create_sparse_vector(KEYWORDS_VECTOR, modifier=Modifier.Idf))
    shard.update(UpdateOperation.create_field_index(EXPIRES_FIELD, DatetimeIndexParams()))
    shard.update(UpdateOperation.create_field_index(CREATED_FIELD, DatetimeIndexParams()))


def create_shard(path: str, manifest: Manifest, quantization: Quantization) -> EdgeShard:
    """A new, empty shard of the collection manifest describes, with the tenant partition
    index every shard of a collection has."""
    config = edge_config(manifest.dimension, manifest.distance, quantization, manifest.datatype)
    shard = EdgeShard.create(path, config)
    try:
        shard.update(
            UpdateOperation.create_field_index(PARTITION_FIELD, KeywordIndexParams(is_tenant=True))
        )
        ensure_memory_schema(shard)
    except BaseException:
        shard.close()
        raise
    return shard


def remove(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def discard(path: Path) -> None:
    """Remove a collection's directory: renamed away first (the commit point), so that a
    crash midway leaves a leftover open() deletes, never a collection missing shards."""
    trash = path.with_name(f"{TRASH_PREFIX}{path.name}-{time.time_ns()}")
    os.replace(path, trash)
    fsync_dir(path.parent)
    remove(trash)


def write_catalog(data_dir: Path, entries: list[CollectionEntry]) -> None:
    """Atomically, like a manifest: the catalog names exactly the logical collections."""
    tmp = data_dir / f"{CATALOG}.tmp"
    with tmp.open("w", encoding="utf-8") as f:
        json.dump({"collections": [e.to_json() for e in entries]}, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, data_dir / CATALOG)
    fsync_dir(data_dir)


def read_catalog(data_dir: Path) -> list[CollectionEntry]:
    path = data_dir / CATALOG
    if not path.is_file():
        return []
    raw = json.loads(path.read_text(encoding="utf-8"))
    return [CollectionEntry.from_json(e) for e in raw["collections"]]


# Per-collection state


@dataclass(frozen=True, slots=True)
class Manifest:
    dimension: int
    distance: Distance
    fresh: str
    indexed: tuple[str, ...] = ()  # the HNSW-indexed segments
    sealed: str | None = None
    next_shard: int = 1
    datatype: VectorDatatype = VectorDatatype.FLOAT32  # of the original vectors

    def live(self) -> list[str]:
        """The indexed segments first; the fresh shard is always last."""
        return [*self.indexed, *(n for n in (self.sealed, self.fresh) if n is not None)]

    def write(self, directory: Path) -> None:
        """Atomically: a crash leaves the old manifest or the new one, never a mix."""
        tmp = directory / f"{MANIFEST}.tmp"
        with tmp.open("w", encoding="utf-8") as f:
            json.dump(
                {**asdict(self), "distance": self.distance.value, "datatype": self.datatype.value},
                f,
            )
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, directory / MANIFEST)
        fsync_dir(directory)

    @classmethod
    def read(cls, directory: Path) -> Manifest:
        raw = json.loads((directory / MANIFEST).read_text(encoding="utf-8"))
        indexed = raw.get("indexed") or ()
        # Stores written before segments name one indexed shard (or none).
        indexed = (indexed,) if isinstance(indexed, str) else tuple(indexed)
        return cls(
            **{
                **raw,
                "distance": Distance(raw["distance"]),
                "indexed": indexed,
                # Stores written before the setting hold float32 vectors.
                "datatype": VectorDatatype(raw.get("datatype", VectorDatatype.FLOAT32)),
            }
        )


@dataclass(slots=True)
class BuildStats:
    runs: int = 0
    failures: int = 0
    durations: list[float] = field(default_factory=list)
    last: dict[str, Any] = field(default_factory=dict)
    last_error: str | None = None


class Collection:
    def __init__(
        self, name: str, path: Path, manifest: Manifest, shards: dict[str, EdgeShard]
    ) -> None:
        self.name = name
        self.path = path
        self.manifest = manifest
        self.shards = shards
        self.view = View(tuple(shards[n] for n in manifest.live()))
        self.descending = manifest.distance is not Distance.EUCLID
        self.lock = asyncio.Lock()
        self.fresh_points = 0
        self.sealed_points = 0
        # Points per indexed segment when it was installed (deletes since are not
        # counted): what the merges are chosen by.
        self.segment_points: dict[str, int] = {}
        self.last_write = 0.0  # time.monotonic() of the last upsert
        self.idle_check: asyncio.TimerHandle | None = None
        self.journal: list[JournalEntry] | None = None
        self.moves = Moves()
        self.build: asyncio.Task[None] | None = None
        self.process: asyncio.subprocess.Process | None = None
        self.retry_at = 0.0
        self.stats = BuildStats()
        self.closing = False

    def set_manifest(self, manifest: Manifest) -> View:
        """Make manifest current; returns the view it replaces."""
        old = self.view
        self.manifest = manifest
        self.view = View(tuple(self.shards[n] for n in manifest.live()))
        return old

    def new_shard_name(self) -> str:
        n = self.manifest.next_shard
        self.manifest = replace(self.manifest, next_shard=n + 1)
        return f"{SHARD_PREFIX}{n:06d}"

    def info(self, points_count: int) -> CollectionInfo:
        return CollectionInfo(
            name=self.name,
            dimension=self.manifest.dimension,
            distance=self.manifest.distance,
            points_count=points_count,
        )


class DataDirectoryInUse(ConfigError):
    """Another store (in this or another process) holds the data directory's lock: the
    server cannot start on that DATA_DIR."""


def take_lock(data_dir: Path) -> int:
    """The flock that keeps a second store (or process) off data_dir."""
    fd = os.open(data_dir / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        raise DataDirectoryInUse(
            f"DATA_DIR {data_dir} is in use by another process (one embedded store per directory)"
        ) from None
    return fd


def load_collection(path: Path) -> Collection:
    manifest = Manifest.read(path)
    live = manifest.live()
    numbers = [int(n.removeprefix(SHARD_PREFIX)) for n in live]
    manifest = replace(manifest, next_shard=max([manifest.next_shard, *(n + 1 for n in numbers)]))
    for entry in path.iterdir():
        if entry.name != MANIFEST and entry.name not in live:
            logger.info("Removing leftover %s", entry)
            remove(entry)
    shards = dict(zip(live, load_shards([path / name for name in live]), strict=True))
    try:
        for shard in shards.values():
            ensure_memory_schema(shard)
    except BaseException:
        for shard in shards.values():
            shard.close()
        raise
    coll = Collection(path.name, path, manifest, shards)
    coll.fresh_points = shards[manifest.fresh].info().points_count
    if manifest.sealed is not None:
        coll.sealed_points = shards[manifest.sealed].info().points_count
    coll.segment_points = {n: shards[n].info().points_count for n in manifest.indexed}
    return coll


def load_shards(paths: list[Path]) -> list[EdgeShard]:
    """The shards at paths, their files read into the page cache first: the engine loads
    a shard holding the GIL, so what it read from the disk it would read while no request
    is served (graph/store/edge/pagecache.py)."""
    pagecache.read_now(paths)
    shards: list[EdgeShard] = []
    try:
        for path in paths:
            shards.append(EdgeShard.load(str(path)))
    except BaseException:
        for shard in shards:
            shard.close()
        raise
    return shards


def close_shards(shards: list[EdgeShard]) -> None:
    for shard in shards:
        try:
            shard.flush()
        finally:
            shard.close()


def create_collection(
    path: Path,
    dimension: int,
    distance: Distance,
    quantization: Quantization,
    datatype: VectorDatatype = VectorDatatype.FLOAT32,
) -> Collection:
    remove(path)  # an unfinished directory no manifest ever named
    path.mkdir(parents=True)
    manifest = Manifest(
        dimension, distance, fresh=f"{SHARD_PREFIX}000001", next_shard=2, datatype=datatype
    )
    shard = create_shard(str(path / manifest.fresh), manifest, quantization)
    try:
        manifest.write(path)
    except BaseException:
        shard.close()
        raise
    return Collection(path.name, path, manifest, {manifest.fresh: shard})


class DiskGuard:
    def __init__(self, data_dir: Path, min_free_bytes: int) -> None:
        self.data_dir = data_dir
        self.min_free_bytes = min_free_bytes
        self._disk_full = False

    def check(self) -> None:
        """Refuse writes while DATA_DIR has less than min_free_bytes free: the engine writes
        through memory-mapped files, and a write that finds the disk full kills the whole
        process with SIGBUS instead of failing."""
        if not self.min_free_bytes:
            return
        full = shutil.disk_usage(self.data_dir).free < self.min_free_bytes
        if full != self._disk_full:
            self._disk_full = full
            if full:
                logger.error(
                    "Less than %s MiB free in %s: writes are refused until there is space",
                    self.min_free_bytes // (1024 * 1024),
                    self.data_dir,
                )
            else:
                logger.warning("Disk space is back in %s: writes are accepted", self.data_dir)
        if full:
            raise StoreUnavailable(DISK_FULL_MESSAGE)

    def room_for(self, nbytes: int) -> bool:
        """Whether nbytes more would leave min_free_bytes free (an index build's copy and
        new segment: they are written through the same maps as the store's own files)."""
        if not self.min_free_bytes:
            return True
        return shutil.disk_usage(self.data_dir).free - nbytes >= self.min_free_bytes


def files_size(path: Path) -> int:
    """The bytes of every file under path as a copy writes them (a copy fills the holes of
    the engine's sparse files)."""
    return sum(
        (Path(root) / name).stat().st_size for root, _, names in os.walk(path) for name in names
    )
