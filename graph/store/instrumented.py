"""Metrics around any VectorStore, without touching the adapters.

InstrumentedStore times every coroutine of the VectorStore interface, counts the
calls that raise by error code, and counts points written and deleted. It is built
from the interface's list of methods rather than their signatures, so a parameter
added to the interface needs no change here. StoreStats samples what the store
holds (points per collection; for the embedded store, its background indexing)
into gauges, off the request path.
"""

from __future__ import annotations

import abc
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from functools import wraps
from typing import Any

from graph.errors import ApiError, ErrorCode
from graph.store.base import VectorStore
from graph.telemetry.metrics import (
    MAX_COLLECTION_LABELS,
    OTHER,
    STORE_CALL_DURATION,
    STORE_COLLECTION_POINTS,
    STORE_ERRORS,
    STORE_INDEX_BUILD_DURATION,
    STORE_INDEX_BUILDING,
    STORE_INDEX_BUILDS,
    STORE_INDEX_SEGMENTS,
    STORE_POINTS_DELETED,
    STORE_POINTS_UPSERTED,
    STORE_UNINDEXED_POINTS,
)

logger = logging.getLogger("graph.store")

INTERFACE = tuple(sorted(VectorStore.__abstractmethods__))
# Methods whose int result is a number of points written or deleted.
_UPSERTS = frozenset({"upsert", "remember"})
_DELETES = frozenset(
    {"delete_ids", "delete_by_filter", "forget_by_filter", "sweep_expired_all_tenants"}
)
# Failures that alerts watch: their series exist from the start so rate() sees the first.
_WATCHED_CODES = (ErrorCode.STORE_UNAVAILABLE, ErrorCode.STORE_TIMEOUT, ErrorCode.STORE_OVERLOADED)


def _instrumented(name: str) -> Callable[..., Awaitable[Any]]:
    interface_method = getattr(VectorStore, name)

    @wraps(interface_method)
    async def call(self: InstrumentedStore, *args: Any, **kwargs: Any) -> Any:
        timer = self._timers[name]
        started = time.perf_counter()
        try:
            result = await getattr(self.inner, name)(*args, **kwargs)
        except ApiError as exc:
            STORE_ERRORS.labels(self.backend, name, exc.code.value).inc()
            raise
        except Exception:
            STORE_ERRORS.labels(self.backend, name, ErrorCode.INTERNAL_SERVER_ERROR.value).inc()
            raise
        finally:
            timer.observe(time.perf_counter() - started)
        if name in _UPSERTS:
            self._upserted.inc(result)
        elif name in _DELETES:
            self._deleted.inc(result)
        return result

    call.__isabstractmethod__ = False  # type: ignore[attr-defined]
    return call


class InstrumentedStore(VectorStore):
    """A VectorStore that records metrics and delegates everything to `inner`; attributes
    beyond the interface (an adapter's own methods) are the inner store's."""

    def __init__(self, inner: VectorStore) -> None:
        self.inner = inner
        self.backend = inner.backend
        self._timers = {name: STORE_CALL_DURATION.labels(self.backend, name) for name in INTERFACE}
        self._upserted = STORE_POINTS_UPSERTED.labels(self.backend)
        self._deleted = STORE_POINTS_DELETED.labels(self.backend)
        for name in INTERFACE:
            for code in _WATCHED_CODES:
                STORE_ERRORS.labels(self.backend, name, code.value)

    def __getattr__(self, name: str) -> Any:
        # Only reached for names the class does not define: the adapter's extras.
        return getattr(self.__dict__["inner"], name)


for _name in INTERFACE:
    setattr(InstrumentedStore, _name, _instrumented(_name))
abc.update_abstractmethods(InstrumentedStore)  # type: ignore[type-abstract]


def instrument(store: VectorStore) -> VectorStore:
    """store with metrics; a store that already has them is returned as it is."""
    if isinstance(store, InstrumentedStore):
        return store
    # The interface's methods are attached above, from VectorStore's own list.
    return InstrumentedStore(store)  # type: ignore[abstract]


def uninstrumented(store: VectorStore) -> VectorStore:
    return store.inner if isinstance(store, InstrumentedStore) else store


class StoreStats:
    """Samples points per collection and, where the adapter reports it, the state of its
    background indexing, into gauges. Runs beside the request path (the app's store
    supervisor calls refresh()), so a scrape only reads numbers already there."""

    def __init__(self, store: VectorStore) -> None:
        self.store = uninstrumented(store)
        self.backend = self.store.backend
        # Index builds already counted, per collection: the adapter keeps running totals.
        self._builds_seen: dict[str, tuple[int, int]] = {}

    @staticmethod
    def _labels(names: list[str]) -> dict[str, str]:
        """Collection names as label values, at most MAX_COLLECTION_LABELS of them."""
        kept = names[:MAX_COLLECTION_LABELS]
        return {name: (name if name in kept else OTHER) for name in names}

    async def refresh(self) -> None:
        infos = await self.store.physical_collections()
        labels = self._labels([info.name for info in infos])
        points: dict[str, int] = {}
        for info in infos:
            label = labels[info.name]
            points[label] = points.get(label, 0) + info.points_count
        index_status = getattr(self.store, "index_status", None)
        statuses: dict[str, dict[str, Any]] = {}
        if index_status is not None:
            for info in infos:
                with contextlib.suppress(ApiError):  # deleted since it was listed
                    statuses[info.name] = await index_status(info.name)
        # No await from here on: a scrape sees either the old numbers or the new ones.
        STORE_COLLECTION_POINTS.clear()
        for label, count in points.items():
            STORE_COLLECTION_POINTS.labels(self.backend, label).set(count)
        if index_status is not None:
            self._record_indexing(statuses, labels)

    def _record_indexing(self, statuses: dict[str, dict[str, Any]], labels: dict[str, str]) -> None:
        unindexed: dict[str, int] = {}
        building: dict[str, int] = {}
        segments: dict[str, int] = {}
        for name, status in statuses.items():
            label = labels[name]
            unindexed[label] = unindexed.get(label, 0) + int(status["unindexed_points"])
            segments[label] = segments.get(label, 0) + int(status["segments"])
            building[label] = building.get(label, 0) + int(bool(status["building"]))
            runs, failures = int(status["builds_run"]), int(status["builds_failed"])
            seen_runs, seen_failures = self._builds_seen.get(name, (0, 0))
            if runs < seen_runs or failures < seen_failures:  # the collection was recreated
                seen_runs, seen_failures = 0, 0
            if runs > seen_runs:
                STORE_INDEX_BUILDS.labels(label, "success").inc(runs - seen_runs)
                # The adapter keeps the last few durations; new runs are at the end.
                for seconds in list(status["build_seconds"])[-(runs - seen_runs) :]:
                    STORE_INDEX_BUILD_DURATION.labels(label).observe(float(seconds))
            if failures > seen_failures:
                STORE_INDEX_BUILDS.labels(label, "failure").inc(failures - seen_failures)
            self._builds_seen[name] = (runs, failures)
        for name in set(self._builds_seen) - set(statuses):
            del self._builds_seen[name]
        STORE_UNINDEXED_POINTS.clear()
        STORE_INDEX_BUILDING.clear()
        STORE_INDEX_SEGMENTS.clear()
        for label in unindexed:
            STORE_UNINDEXED_POINTS.labels(label).set(unindexed[label])
            STORE_INDEX_BUILDING.labels(label).set(building[label])
            STORE_INDEX_SEGMENTS.labels(label).set(segments[label])
            for outcome in ("success", "failure"):
                STORE_INDEX_BUILDS.labels(label, outcome)
            STORE_INDEX_BUILD_DURATION.labels(label)
