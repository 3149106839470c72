"""The live shards of a collection, and the engine work run on them.

Every engine call runs in a worker thread. Reads take no lock: they use the current
`View` (an immutable tuple of live shards) and are counted on it, so that shards are
closed only once no call uses them. Writes are serialised per collection.
"""

from __future__ import annotations

import asyncio
import heapq
import logging
import os
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, NamedTuple, TypeVar

from qdrant_edge import CountRequest, EdgeShard, QueryRequest, ScrollRequest, UpdateOperation
from qdrant_edge import Filter as EdgeFilter
from qdrant_edge import Point as EdgePoint
from qdrant_edge import Record as EdgeRecord
from qdrant_edge import ScoredPoint as EdgeScoredPoint

from graph.errors import ApiError, StoreUnavailable
from graph.store.edge.moves import Moves
from graph.store.edge.translate import (
    EdgeId,
    Scored,
    from_edge_id,
    from_edge_record,
    from_edge_scored,
    id_order,
    to_stored_point,
)
from graph.store.models import PointId, Record, ScoredPoint, ScrollPage, StoredPoint
from graph.store.tenancy import owns, stored_id

logger = logging.getLogger(__name__)

T = TypeVar("T")
# A delete journaled during a build: the ids, or the filter, it removed.
JournalEntry = list[PointId] | EdgeFilter

DRAIN_TIMEOUT_SECONDS = 30.0
# A count that overlapped a move (Moves) runs again, up to this many times in all, each
# time once the move running has ended (it is one engine write: waiting for it is short).
COUNT_TRIES = 20

# qdrant-edge gives the GIL up and takes it back many times while it converts points to
# its own (payload values, sparse vectors): two threads converting at once hand the GIL
# to each other on every value, and each takes several times as long as the two batches
# would one after the other (measured, two threads: 2.2-2.9x the CPU per point, and a
# batch of memories 4-7x slower in a loaded server). So one thread converts at a time,
# CONVERSION_CHUNK points at a turn. A write of at most that many points converts
# without waiting: it overlaps one chunk of another write at most, and a tenant's
# one-point write never queues behind a large write's chunks (the widest legal payloads
# cost ~ms a point, and the lock does not hand over in arrival order).
_CONVERTING = threading.Lock()
CONVERSION_CHUNK = 16

# A query over several shards (the indexed segments, the sealed and fresh shards) runs
# one search per shard, in threads of their own: the engine gives the GIL up for part
# of each search, so on several cores the shards are searched side by side.
_SEARCHES = ThreadPoolExecutor(os.cpu_count() or 2, thread_name_prefix="edge-search")


class View:
    """The live shards of a collection at one moment. Never changed, only replaced;
    counts the calls running on it so that its shards are closed only once unused."""

    __slots__ = ("_lock", "readers", "shards", "writers")

    def __init__(self, shards: tuple[EdgeShard, ...]) -> None:
        self.shards = shards
        self.readers = 0
        self.writers = 0
        self._lock = threading.Lock()

    def enter(self, writer: bool) -> None:
        with self._lock:
            if writer:
                self.writers += 1
            else:
                self.readers += 1

    def leave_reader(self, _: object) -> None:
        with self._lock:
            self.readers -= 1

    def leave_writer(self, _: object) -> None:
        with self._lock:
            self.writers -= 1


def converted(
    convert: Callable[..., list[EdgePoint]], items: Sequence[Any], *args: Any
) -> list[EdgePoint]:
    """convert(items, *args, first=...) over chunks of items, each converted while no
    other large write converts; every chunk before anything is written."""
    if len(items) <= CONVERSION_CHUNK:
        return convert(items, *args, first=0)
    points: list[EdgePoint] = []
    for first in range(0, len(items), CONVERSION_CHUNK):
        with _CONVERTING:
            points.extend(convert(items[first : first + CONVERSION_CHUNK], *args, first=first))
    return points


# Engine work on a view's shards, run in worker threads


def query(
    shards: tuple[EdgeShard, ...],
    request: QueryRequest,
    descending: bool,
    offset: int,
    limit: int,
    with_vector: bool,
    moves: Moves | None = None,
) -> list[ScoredPoint]:
    """request is built for len(shards) (translate.nearest_request). Shards holding no
    point are left out: an empty fresh shard (just after an index build) costs an engine
    search as dear as a small one. Only the fresh shard (the last) is ever written to, so
    it alone is looked at again afterwards: if it took points meanwhile, a point moving
    there from an older shard may have been missed, and the query runs on every shard."""
    if len(shards) == 1:
        return [from_edge_scored(h, with_vector) for h in shards[0].query(request)]
    hits = _nearest(shards, request, descending, offset + limit, moves)
    return [from_edge_scored(h, with_vector) for h in hits[offset : offset + limit]]


def query_owned(
    shards: tuple[EdgeShard, ...],
    unscoped: QueryRequest,
    scoped: Callable[[], QueryRequest],
    partition: str,
    descending: bool,
    limit: int,
    with_vector: bool,
    moves: Moves | None = None,
) -> list[ScoredPoint]:
    """The first page of a nearest-neighbour query, searched without the partition
    filter (which, over a collection that is almost all one partition's, makes the
    engine's search several times dearer). When every hit is the partition's, they are
    its best points; when any is not, the search runs again with the filter, so no
    other partition's point is ever returned."""
    hits = _nearest(shards, unscoped, descending, limit, moves)
    if not all(owns(partition, h.payload) for h in hits):
        hits = _nearest(shards, scoped(), descending, limit, moves)
    return [from_edge_scored(h, with_vector) for h in hits]


class Found(NamedTuple):
    """A hit of a search over several shards, its payload (and vector) read afterwards."""

    score: float
    payload: dict[str, Any] | None
    vector: Any


def _nearest(
    shards: tuple[EdgeShard, ...],
    request: QueryRequest,
    descending: bool,
    wanted: int,
    moves: Moves | None,
) -> Sequence[Scored]:
    """At most `wanted` hits, best first (request asks each shard for `wanted`)."""
    if len(shards) == 1:
        return shards[0].query(request)
    holding = tuple(s for s in shards if s.info().points_count) or shards[-1:]
    fresh = shards[-1]
    hits = _merged(holding, request, descending, wanted, moves if holding[-1] is fresh else None)
    if all(s is not fresh for s in holding) and fresh.info().points_count:
        hits = _merged(shards, request, descending, wanted, moves)
    return hits


def _merged(
    shards: tuple[EdgeShard, ...],
    request: QueryRequest,
    descending: bool,
    wanted: int,
    moves: Moves | None = None,
) -> Sequence[Scored]:
    """The best `wanted` hits over shards. Each shard is searched for ids and scores
    only, and the payloads (and vectors) are read for the hits kept: a payload read is
    dearer than the search's own work when it comes from disk (as after an index build,
    which leaves the on-disk parts of its segment out of the page cache), and a shard's
    hits are mostly not among the best of all shards."""
    if len(shards) == 1:
        return shards[0].query(request)
    ids_only = _ids_only(request)
    found, complete = _best_with_payloads(shards, ids_only, request, descending, wanted, moves)
    if not complete:
        # A hit gone before its payload was read was deleted, or overwritten (then it
        # moved to the fresh shard): searched once more, it is found where it is now.
        found, _ = _best_with_payloads(shards, ids_only, request, descending, wanted, moves)
    return found


def _best_with_payloads(
    shards: tuple[EdgeShard, ...],
    ids_only: QueryRequest,
    request: QueryRequest,
    descending: bool,
    wanted: int,
    moves: Moves | None,
) -> tuple[list[Found], bool]:
    """moves: when shards[-1] is the fresh shard, the collection's (else None)."""
    before = None if moves is None else moves.number
    each = query_each(shards, ids_only)
    search_fresh_again(shards, ids_only, each, moves, before)
    # Oldest shard first, so that a point caught mid-upsert in two shards keeps the
    # newer version.
    newest: dict[EdgeId, tuple[EdgeScoredPoint, int]] = {}
    for position, hits in enumerate(each):
        for hit in hits:
            newest[hit.id] = (hit, position)
    best = sorted(newest.values(), key=lambda h: h[0].score, reverse=descending)[:wanted]
    wanted_ids: dict[int, list[EdgeId]] = {}
    for hit, position in best:
        wanted_ids.setdefault(position, []).append(hit.id)
    records = {
        position: {
            r.id: r
            for r in shards[position].retrieve(
                ids, with_payload=True, with_vector=request.with_vector
            )
        }
        for position, ids in wanted_ids.items()
    }
    found = []
    for hit, position in best:
        record = records[position].get(hit.id)
        if record is not None:
            found.append(Found(hit.score, record.payload, record.vector))
    return found, len(found) == len(best)


def _ids_only(request: QueryRequest) -> QueryRequest:
    return QueryRequest(
        limit=request.limit,
        offset=request.offset,
        query=request.query,
        filter=request.filter,
        score_threshold=request.score_threshold,
        params=request.params,
        with_payload=False,
        with_vector=False,
    )


def query_each(shards: tuple[EdgeShard, ...], request: QueryRequest) -> list[list[EdgeScoredPoint]]:
    """Each shard's hits, in the shards' order; the calling thread searches the first."""
    if len(shards) == 1:
        return [list(shards[0].query(request))]
    others = [_SEARCHES.submit(shard.query, request) for shard in shards[1:]]
    first = list(shards[0].query(request))
    return [first, *(list(f.result()) for f in others)]


def search_fresh_again(
    shards: tuple[EdgeShard, ...],
    request: QueryRequest,
    each: list[list[EdgeScoredPoint]],
    moves: Moves | None,
    before: int | None,
) -> None:
    """each: every shard's hits, searched side by side since moves.number was before.
    A point moved to the fresh shard (the last) meanwhile may have been searched in
    neither shard: the fresh one is searched again. The move's delete from the older
    shard came before that shard's search ended, and so its write to the fresh one
    before this search."""
    if moves is not None and (before != moves.number or moves.number % 2):
        each[-1] = list(shards[-1].query(request))


def _scroll_page(
    shards: tuple[EdgeShard, ...], request: ScrollRequest, limit: int
) -> tuple[list[EdgeRecord], PointId | None]:
    """Up to limit records in id order, the newest copy of each, and the next cursor."""
    newest: dict[EdgeId, EdgeRecord] = {}
    for shard in shards:
        for rec in shard.scroll(request)[0]:
            newest[rec.id] = rec
    ordered = heapq.nsmallest(limit + 1, newest.values(), key=lambda r: id_order(r.id))
    next_cursor = from_edge_id(ordered[limit].id) if len(ordered) > limit else None
    return ordered[:limit], next_cursor


def scroll(
    shards: tuple[EdgeShard, ...], request: ScrollRequest, limit: int, with_vector: bool
) -> ScrollPage:
    records, next_cursor = _scroll_page(shards, request, limit)
    return ScrollPage([from_edge_record(r, with_vector) for r in records], next_cursor)


def export(
    shards: tuple[EdgeShard, ...], request: ScrollRequest, limit: int
) -> tuple[list[StoredPoint], str | None]:
    records, next_cursor = _scroll_page(shards, request, limit)
    return [to_stored_point(r) for r in records], None if next_cursor is None else str(next_cursor)


def retrieve(
    shards: tuple[EdgeShard, ...], ids: list[PointId], partition: str, with_vector: bool
) -> list[Record]:
    """ids are the client's; a point is found only under its id in this partition."""
    found: dict[PointId, Record] = {}
    wanted: list[EdgeId] = [stored_id(partition, i) for i in ids]
    for shard in shards:
        for rec in shard.retrieve(wanted, with_payload=True, with_vector=with_vector):
            if not owns(partition, rec.payload):
                continue
            record = from_edge_record(rec, with_vector)
            found[record.id] = record
    return [found[i] for i in ids if i in found]


def count(shards: tuple[EdgeShard, ...], flt: EdgeFilter | None, moves: Moves) -> int:
    """flt None: every point of the physical collection (operators' view only). Counted
    again when a move ran meanwhile (Moves): its point may have been counted twice."""
    request = None if flt is None else CountRequest(exact=True, filter=flt)
    for _ in range(COUNT_TRIES):
        before = moves.settled()
        if request is None:
            total = sum(shard.info().points_count for shard in shards)
        else:
            total = sum(shard.count(request) for shard in shards)
        if moves.number == before:
            break
    return total


def _existing_ids(shard: EdgeShard, ids: list[PointId]) -> list[PointId]:
    return [
        from_edge_id(r.id) for r in shard.retrieve(list(ids), with_payload=False, with_vector=False)
    ]


def _held(
    shards: tuple[EdgeShard, ...], ids: list[PointId], *, fresh_too: bool
) -> list[tuple[int, list[PointId]]]:
    """(position, the ids it holds) for each shard holding any of ids."""
    held = []
    for position, shard in enumerate(shards if fresh_too else shards[:-1]):
        existing = _existing_ids(shard, ids)
        if existing:
            held.append((position, existing))
    return held


def _delete_held(
    shards: tuple[EdgeShard, ...],
    held: list[tuple[int, list[PointId]]],
    journal: list[JournalEntry] | None,
) -> set[PointId]:
    """Delete what _held found; journals what left the older shards."""
    deleted: set[PointId] = set()
    for position, existing in held:
        shards[position].update(UpdateOperation.delete_points(list(existing)))
        deleted.update(existing)
        if journal is not None and position < len(shards) - 1:
            journal.append(existing)
    return deleted


def write_points(
    shards: tuple[EdgeShard, ...],
    converted: list[EdgePoint],
    moves: Moves,
    journal: list[JournalEntry] | None,
) -> int:
    """Write converted points (stored ids) to the fresh shard, then drop the same ids from
    the older ones (a move, see Moves); returns how many points the fresh shard holds."""
    fresh = shards[-1]
    if len(shards) == 1:
        fresh.update(UpdateOperation.upsert_points(converted))
        return fresh.info().points_count
    ids: list[PointId] = list(dict.fromkeys(from_edge_id(p.id) for p in converted))
    held = _held(shards, ids, fresh_too=False)
    if held:
        moves.begin()
    try:
        fresh.update(UpdateOperation.upsert_points(converted))
        _delete_held(shards, held, journal)
    finally:
        if held:
            moves.end()
    return fresh.info().points_count


def delete_ids(
    shards: tuple[EdgeShard, ...],
    ids: list[PointId],
    partition: str,
    journal: list[JournalEntry] | None,
) -> int:
    return delete_stored(shards, [stored_id(partition, i) for i in ids], journal)


def delete_stored(
    shards: tuple[EdgeShard, ...], stored: list[PointId], journal: list[JournalEntry] | None
) -> int:
    """Delete by stored id (graph/store/tenancy.py); returns how many existed."""
    return len(_delete_held(shards, _held(shards, stored, fresh_too=True), journal))


def delete_by_filter(
    shards: tuple[EdgeShard, ...], flt: EdgeFilter, journal: list[JournalEntry] | None
) -> int:
    request = CountRequest(exact=True, filter=flt)
    deleted = 0
    for position, shard in enumerate(shards):
        matched = shard.count(request)
        if not matched:
            continue
        shard.update(UpdateOperation.delete_points_by_filter(flt))
        deleted += matched
        if journal is not None and position < len(shards) - 1:
            journal.append(flt)
    return deleted


def replay(shard: EdgeShard, entries: Sequence[JournalEntry]) -> None:
    for entry in entries:
        if isinstance(entry, list):
            shard.update(UpdateOperation.delete_points(list(entry)))
        else:
            shard.update(UpdateOperation.delete_points_by_filter(entry))


class ShardRunner:
    """Runs engine calls in the store's worker threads."""

    _executor: ThreadPoolExecutor | None

    # Running engine calls

    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        """fn(*args) in a worker thread; engine failures become StoreUnavailable."""
        if self._executor is None:
            raise StoreUnavailable()
        try:
            return await asyncio.wrap_future(self._executor.submit(fn, *args))
        except ApiError:
            raise
        except Exception:
            logger.exception("Embedded engine call %s failed", fn.__name__)
            raise StoreUnavailable() from None

    async def _on_view(self, view: View, writer: bool, fn: Callable[..., T], *args: Any) -> T:
        """fn(view.shards, *args) in a worker thread, counted on view until it has returned
        (even when the awaiting coroutine is cancelled first)."""
        if self._executor is None:
            raise StoreUnavailable()
        view.enter(writer)
        try:
            future: Future[T] = self._executor.submit(fn, view.shards, *args)
        except BaseException:
            (view.leave_writer if writer else view.leave_reader)(None)
            raise
        future.add_done_callback(view.leave_writer if writer else view.leave_reader)
        try:
            return await asyncio.wrap_future(future)
        except ApiError:
            raise
        except Exception:
            logger.exception("Embedded engine call %s failed", fn.__name__)
            raise StoreUnavailable() from None

    @staticmethod
    async def _drain(view: View, *, writers_only: bool = False) -> None:
        deadline = time.monotonic() + DRAIN_TIMEOUT_SECONDS
        while view.writers or (not writers_only and view.readers):
            if time.monotonic() > deadline:
                logger.error("Engine calls still running after %ss", DRAIN_TIMEOUT_SECONDS)
                return
            await asyncio.sleep(0.002)
