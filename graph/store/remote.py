"""The remote adapter: a Qdrant server reached through qdrant-client's AsyncQdrantClient.

Every client call goes through RemoteStore._call, which bounds it by the configured
timeout and turns whatever the client raises into one of our ApiErrors with a generic
message (the text of client exceptions can hold URLs, payload fragments or server
internals, and our messages are shown to API clients). The same class runs on
qdrant-client's local mode (RemoteStore.local), which the tests use as a real,
in-process implementation of the same API.

Tenancy (graph/store/tenancy.py): tenants' logical collections live in physical
collections named `graph-<shape>`, one per vector shape, with the partition key indexed
as a tenant keyword; the logical collections are points of the catalog collection
CATALOG_COLLECTION, so every replica of the API sees the same ones. Reads use a catalog
entry cached for ENTRY_TTL_SECONDS; writes and collection calls read it fresh.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import math
import time
import uuid
import warnings
from collections.abc import Awaitable, Callable, Sequence
from contextvars import ContextVar
from typing import Any, TypeVar

import httpx
from qdrant_client import AsyncQdrantClient, models
from qdrant_client.common.client_exceptions import QdrantException
from qdrant_client.http.exceptions import ResponseHandlingException, UnexpectedResponse

from graph.errors import (
    AlreadyExists,
    ApiError,
    BadUserInput,
    NotFound,
    StoreTimeout,
    StoreUnavailable,
)
from graph.settings import Distance, Settings
from graph.store.admission import Admission
from graph.store.base import VectorStore
from graph.store.faults import RetryPolicy, classify
from graph.store.models import (
    CollectionInfo,
    Condition,
    Filter,
    Match,
    Payload,
    Point,
    PointId,
    Record,
    ScoredPoint,
    ScrollPage,
    check_finite,
    check_limit,
    check_vector_dimension,
    normalize_ids,
    normalize_point_id,
    validate_collection_name,
    validate_dimension,
)
from graph.store.tenancy import (
    PARTITION_FIELD,
    CollectionEntry,
    client_record,
    client_scored,
    owns,
    partition_of,
    scoped_filter,
    stored_id,
    stored_payload,
    validate_tenant,
)
from graph.telemetry.metrics import STORE_FAULTS, STORE_RETRIES

logger = logging.getLogger(__name__)

T = TypeVar("T")
ClientFactory = Callable[[], AsyncQdrantClient]

REJECTED_MESSAGE = "The vector store rejected the request"
# When the current store operation must be done (time.monotonic()): all of its calls to
# Qdrant share it, so an operation making several calls still ends within the timeout.
_operation_deadline: ContextVar[float | None] = ContextVar("operation_deadline", default=None)
# Calls that must not run twice: a second create_collection would fail on the first's work.
# Everything else we send is idempotent (upserts carry their ids; deletes name their points).
_NOT_IDEMPOTENT = frozenset({"create_collection"})
_NO_RETRIES = RetryPolicy(0)

_TO_QDRANT_DISTANCE: dict[Distance, models.Distance] = {
    Distance.COSINE: models.Distance.COSINE,
    Distance.DOT: models.Distance.DOT,
    Distance.EUCLID: models.Distance.EUCLID,
}
_FROM_QDRANT_DISTANCE = {qdrant: ours for ours, qdrant in _TO_QDRANT_DISTANCE.items()}

PHYSICAL_PREFIX = "graph-"
CATALOG_COLLECTION = "graph-catalog"
CATALOG_TENANT_FIELD = "tenant"
ENTRY_TTL_SECONDS = 5.0
CATALOG_PAGE = 256
_LOCAL_INDEX_WARNING = "Payload indexes have no effect in the local Qdrant"


class _Unsupported(Exception):
    """A collection made outside this server that we cannot represent (named vectors...)."""


# Translation between our models and qdrant_client.models


def _to_qdrant_filter(flt: Filter) -> models.Filter:
    def conditions(items: list[Condition]) -> list[models.Condition] | None:
        return [_to_qdrant_condition(c) for c in items] or None

    return models.Filter(
        must=conditions(flt.must),
        should=conditions(flt.should),
        must_not=conditions(flt.must_not),
    )


def _to_qdrant_condition(condition: Condition) -> models.Condition:
    if condition.filter is not None:
        return _to_qdrant_filter(condition.filter)
    assert condition.key is not None  # validate_filter ran first
    if condition.match is not None:
        return models.FieldCondition(key=condition.key, match=_to_qdrant_match(condition.match))
    assert condition.range is not None
    rng = condition.range
    return models.FieldCondition(
        key=condition.key,
        range=models.Range(gt=rng.gt, gte=rng.gte, lt=rng.lt, lte=rng.lte),
    )


def _to_qdrant_match(match: Match) -> models.Match:
    if match.value is not None:
        return models.MatchValue(value=match.value)
    if match.any is not None:
        return models.MatchAny(any=match.any)
    # `except` is a keyword: MatchExcept's field is except_ with the alias "except".
    return models.MatchExcept.model_validate({"except": match.except_})


def _from_qdrant_id(raw: models.ExtendedPointId) -> PointId:
    if isinstance(raw, int):
        return raw
    return str(raw if isinstance(raw, uuid.UUID) else uuid.UUID(raw))


def _from_qdrant_vector(raw: object) -> list[float] | None:
    if isinstance(raw, list) and all(isinstance(x, int | float) for x in raw):
        return [float(x) for x in raw]
    return None


class _Logical:
    """A tenant's collection as the catalog has it, with its partition filter built once."""

    __slots__ = ("catalog_id", "entry", "expires", "only", "physical")

    def __init__(self, entry: CollectionEntry) -> None:
        self.entry = entry
        self.physical = PHYSICAL_PREFIX + entry.physical
        self.catalog_id = _catalog_id(entry.tenant, entry.name)
        self.only = _to_qdrant_filter(scoped_filter(entry.partition, None))
        self.expires = time.monotonic() + ENTRY_TTL_SECONDS

    def scoped(self, flt: Filter | None) -> models.Filter:
        """flt confined to this collection (tenancy.scoped_filter), in qdrant-client's terms."""
        return (
            self.only
            if flt is None
            else _to_qdrant_filter(scoped_filter(self.entry.partition, flt))
        )

    def info(self, points_count: int) -> CollectionInfo:
        e = self.entry
        return CollectionInfo(e.name, e.dimension, e.distance, points_count)


def _catalog_id(tenant: str, name: str) -> str:
    return stored_id(CATALOG_COLLECTION, partition_of(tenant, name))


def _describe(name: str, info: models.CollectionInfo, points_count: int) -> CollectionInfo:
    params = info.config.params.vectors
    if not isinstance(params, models.VectorParams):
        raise _Unsupported(f"collection {name!r} has no single unnamed vector")
    distance = _FROM_QDRANT_DISTANCE.get(params.distance)
    if distance is None:
        raise _Unsupported(f"collection {name!r} uses distance {params.distance}")
    return CollectionInfo(
        name=name, dimension=params.size, distance=distance, points_count=points_count
    )


# Checks the shared helpers leave to adapters


def _check_payload(payload: Payload | None, what: str) -> None:
    if payload is None:
        return
    if not isinstance(payload, dict):
        raise BadUserInput(f"{what} payload must be a JSON object")
    try:
        json.dumps(payload, allow_nan=False)
    except (TypeError, ValueError):
        raise BadUserInput(f"{what} payload must be JSON without NaN or infinity") from None


def _from_qdrant(exc: UnexpectedResponse) -> bool:
    """Whether an error response is Qdrant's own JSON (not, say, a proxy's 404 page for a
    wrong QDRANT_URL path, which must not read as a missing collection)."""
    try:
        body = exc.structured()
    except ValueError:
        return False
    return isinstance(body, dict) and "status" in body


class RemoteStore(VectorStore):
    backend = "qdrant"

    def __init__(
        self,
        client_factory: ClientFactory,
        *,
        timeout_seconds: float = 10.0,
        max_retries: int = 3,
        max_concurrency: int = 64,
        max_queue: int = 256,
    ) -> None:
        """client_factory builds the client in open(). Every call, its retries of transient
        faults (at most max_retries) and its wait for one of max_concurrency slots included,
        is bounded by timeout_seconds; past max_queue waiting calls, calls are shed."""
        if not timeout_seconds > 0:
            raise ValueError("timeout_seconds must be positive")
        self._client_factory = client_factory
        self._timeout = timeout_seconds
        self._retry = RetryPolicy(max_retries)
        self._admission = Admission(self.backend, limit=max_concurrency, queue=max_queue)
        self._client: AsyncQdrantClient | None = None
        # Catalog entries by (tenant, name), for reads; physical collections known to exist.
        self._entries: dict[tuple[str, str], _Logical] = {}
        self._physicals: set[str] = set()

    @classmethod
    def connect(
        cls, url: str, *, api_key: str | None = None, timeout_seconds: float = 10.0, **limits: int
    ) -> RemoteStore:
        """A store on the Qdrant server at url (REST). Nothing is contacted before a call."""

        def factory() -> AsyncQdrantClient:
            with warnings.catch_warnings():
                # The client warns when an api key goes over plain http; we log it instead
                # (tests run with warnings as errors, and a warning here is not actionable
                # by a caller).
                warnings.filterwarnings("ignore", message="Api key is used with an insecure")
                return AsyncQdrantClient(
                    url=url,
                    api_key=api_key,
                    # The client takes whole seconds; our own asyncio timeout is the exact
                    # one, this only keeps abandoned sockets from lingering.
                    timeout=max(1, math.ceil(timeout_seconds)) + 1,
                    # Otherwise the client starts a thread that queries the server version
                    # at construction and warns when it cannot.
                    check_compatibility=False,
                )

        if api_key and url.startswith("http://"):
            logger.warning("The Qdrant api key is sent over plain http")
        return cls(factory, timeout_seconds=timeout_seconds, **limits)

    @classmethod
    def from_settings(cls, settings: Settings) -> RemoteStore:
        if not settings.qdrant_url:
            raise ValueError("QDRANT_URL is not set")
        api_key = settings.qdrant_api_key.get_secret_value() if settings.qdrant_api_key else None
        return cls.connect(
            settings.qdrant_url,
            api_key=api_key or None,
            timeout_seconds=settings.store_timeout_seconds,
            max_retries=settings.store_max_retries,
            max_concurrency=settings.store_max_concurrency,
            max_queue=settings.store_max_queue,
        )

    @classmethod
    def local(cls, path: str | None = None, *, timeout_seconds: float = 10.0) -> RemoteStore:
        """qdrant-client's in-process local mode: in memory, or persisted under path."""

        def factory() -> AsyncQdrantClient:
            if path is None:
                return AsyncQdrantClient(location=":memory:")
            return AsyncQdrantClient(path=path)

        return cls(factory, timeout_seconds=timeout_seconds)

    # The one way to the client

    @property
    def _qdrant(self) -> AsyncQdrantClient:
        if self._client is None:
            raise RuntimeError("RemoteStore used before open() or after close()")
        return self._client

    async def _call(
        self,
        operation: str,
        fn: Callable[[AsyncQdrantClient], Awaitable[T]],
        *,
        collection: str | None = None,
    ) -> T:
        client = self._qdrant
        deadline = _operation_deadline.get() or time.monotonic() + self._timeout
        retries = self._retry if operation not in _NOT_IDEMPOTENT else _NO_RETRIES
        async with self._admission.slot(deadline):
            attempt = 0
            while True:
                try:
                    # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow a
                    # cancellation that arrives as the call completes.
                    async with asyncio.timeout(deadline - time.monotonic()):
                        return await fn(client)
                except ApiError:
                    raise
                except Exception as exc:
                    fault = classify(exc)
                    if fault is not None:
                        STORE_FAULTS.labels(self.backend, fault.kind).inc()
                    pause = retries.pause(fault, attempt, deadline)
                    if pause is None or fault is None:
                        raise self._translate(exc, operation, collection) from None
                    logger.info(
                        "Qdrant %s: %s, attempt %s; retrying in %.3fs",
                        operation,
                        fault.kind,
                        attempt + 1,
                        pause,
                    )
                STORE_RETRIES.labels(self.backend, operation).inc()
                await asyncio.sleep(pause)
                attempt += 1

    def _translate(self, exc: Exception, operation: str, collection: str | None) -> ApiError:
        where = f"{operation} on collection {collection!r}" if collection else operation
        if isinstance(exc, TimeoutError):
            logger.warning("Qdrant %s timed out after %ss", where, self._timeout)
            return StoreTimeout()
        if isinstance(exc, ResponseHandlingException):
            source = exc.source
            if isinstance(source, httpx.TimeoutException):
                logger.warning("Qdrant %s timed out: %s", where, type(source).__name__)
                return StoreTimeout()
            if isinstance(source, httpx.TransportError):
                logger.warning("Qdrant %s failed: %s: %s", where, type(source).__name__, source)
                return StoreUnavailable()
            logger.error("Qdrant %s: unreadable response", where, exc_info=source)
            return StoreUnavailable()
        if isinstance(exc, QdrantException):  # ResourceExhaustedResponse, a 429
            logger.warning("Qdrant %s: rate limited by the server", where)
            return StoreUnavailable()
        if isinstance(exc, UnexpectedResponse):
            return self._translate_status(exc, where, collection)
        if isinstance(exc, ValueError) and collection is not None:
            # Local mode reports collection errors as ValueError.
            text = str(exc)
            if text.endswith("not found"):
                return NotFound(f"Collection '{collection}' not found")
            if text.endswith("already exists"):
                return AlreadyExists(f"Collection '{collection}' already exists")
        if isinstance(exc, httpx.TransportError):
            logger.warning("Qdrant %s failed: %s: %s", where, type(exc).__name__, exc)
            return StoreUnavailable()
        # Called from the except block in _call, so this logs exc with its traceback.
        logger.exception("Unexpected error from Qdrant %s", where)
        return StoreUnavailable()

    def _translate_status(
        self, exc: UnexpectedResponse, where: str, collection: str | None
    ) -> ApiError:
        status = exc.status_code or 0
        content = exc.content[:500].decode("utf-8", "replace")
        if status == 404 and collection is not None and _from_qdrant(exc):
            return NotFound(f"Collection '{collection}' not found")
        if collection is not None and (
            status == 409 or (status == 400 and "already exists" in content)
        ):
            return AlreadyExists(f"Collection '{collection}' already exists")
        if status in (400, 422):
            # Our own checks ran first, so this is input they do not cover (an odd
            # payload key path, say); the server's words stay in the log.
            logger.warning("Qdrant rejected %s (%s): %s", where, status, content)
            return BadUserInput(REJECTED_MESSAGE)
        if status in (401, 403):
            logger.error("Qdrant refused %s (%s): check QDRANT_API_KEY", where, status)
            return StoreUnavailable()
        if status == 408 or status == 504:
            logger.warning("Qdrant %s timed out on the server (%s)", where, status)
            return StoreTimeout()
        if status >= 500 or status == 429:
            logger.warning("Qdrant %s failed (%s): %s", where, status, content)
            return StoreUnavailable()
        logger.error("Unexpected response from Qdrant %s (%s): %s", where, status, content)
        return StoreUnavailable()

    # Lifecycle

    async def open(self) -> None:
        """Build the client; no request is made, so a server that is down does not matter."""
        if self._client is None:
            self._client = self._client_factory()

    async def close(self) -> None:
        client, self._client = self._client, None
        self._entries.clear()
        self._physicals.clear()
        if client is None:
            return
        try:
            async with asyncio.timeout(self._timeout):
                await client.close()
        except Exception:
            logger.warning("Closing the Qdrant client failed", exc_info=True)

    async def ping(self) -> None:
        await self._call("ping", lambda c: c.get_collections())

    # The catalog and the physical collections

    async def _lookup(self, tenant: str, name: str, *, fresh: bool = False) -> _Logical:
        """The catalog entry of a logical collection; NotFound when there is none."""
        key = (tenant, name)
        cached = self._entries.get(key)
        if cached is not None and not fresh and cached.expires > time.monotonic():
            return cached
        validate_tenant(tenant)
        validate_collection_name(name)
        cid = _catalog_id(tenant, name)
        try:
            found = await self._call(
                "retrieve",
                lambda c: c.retrieve(CATALOG_COLLECTION, ids=[cid], with_payload=True),
                collection=name,
            )
        except NotFound:
            found = []  # no catalog yet: no collection at all
        if not found or not found[0].payload:
            self._entries.pop(key, None)
            raise NotFound(f"Collection '{name}' not found")
        logical = _Logical(CollectionEntry.from_json(found[0].payload))
        self._entries[key] = logical
        return logical

    async def _create_if_missing(
        self, name: str, size: int, distance: models.Distance, index: tuple[str, bool] | None
    ) -> None:
        """A physical or catalog collection, with a keyword index on index[0] (is_tenant
        when index[1]); created once, by whichever replica gets there first."""
        exists = await self._call(
            "collection_exists", lambda c: c.collection_exists(name), collection=name
        )
        if not exists:
            with contextlib.suppress(AlreadyExists):
                await self._call(
                    "create_collection",
                    lambda c: c.create_collection(
                        name, vectors_config=models.VectorParams(size=size, distance=distance)
                    ),
                    collection=name,
                )
        if index is not None:
            field, is_tenant = index
            schema = models.KeywordIndexParams(
                type=models.KeywordIndexType.KEYWORD, is_tenant=is_tenant or None
            )
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message=_LOCAL_INDEX_WARNING)
                await self._call(
                    "create_payload_index",
                    lambda c: c.create_payload_index(name, field, field_schema=schema, wait=True),
                    collection=name,
                )

    async def _ensure_physical(self, logical: _Logical) -> None:
        if logical.physical in self._physicals:
            return
        e = logical.entry
        await self._create_if_missing(
            logical.physical, e.dimension, _TO_QDRANT_DISTANCE[e.distance], (PARTITION_FIELD, True)
        )
        self._physicals.add(logical.physical)

    async def _purge(self, logical: _Logical) -> None:
        """Delete every point of a logical collection."""
        if logical.physical not in self._physicals:
            exists = await self._call(
                "collection_exists",
                lambda c: c.collection_exists(logical.physical),
                collection=logical.entry.name,
            )
            if not exists:
                return
        await self._call(
            "delete",
            lambda c: c.delete(
                logical.physical,
                points_selector=models.FilterSelector(filter=logical.only),
                wait=True,
            ),
            collection=logical.entry.name,
        )

    async def _count(self, logical: _Logical, flt: models.Filter) -> int:
        result = await self._call(
            "count",
            lambda c: c.count(logical.physical, count_filter=flt, exact=True),
            collection=logical.entry.name,
        )
        return result.count

    def _check_dimension(self, logical: _Logical, vectors: Sequence[Sequence[float]]) -> None:
        dimension = logical.entry.dimension
        for i, vector in enumerate(vectors):
            what = "Vector" if len(vectors) == 1 else f"Vector of point {i}"
            check_vector_dimension(vector, dimension, what)

    # Collections

    async def ensure_collection(
        self, tenant: str, name: str, dimension: int, distance: Distance
    ) -> None:
        validate_dimension(dimension)
        try:
            existing = (await self._lookup(tenant, name, fresh=True)).entry
        except NotFound:
            pass
        else:
            if (existing.dimension, existing.distance) != (dimension, distance):
                logger.warning(
                    "Collection %r exists with dimension %s and %s distance; "
                    "keeping it (configured: %s, %s)",
                    name,
                    existing.dimension,
                    existing.distance.value,
                    dimension,
                    distance.value,
                )
            return
        try:
            await self.create_collection(tenant, name, dimension, distance)
        except AlreadyExists:
            pass  # created meanwhile by a concurrent call or another replica
        else:
            logger.info("Created collection %r (%s, %s)", name, dimension, distance.value)

    async def create_collection(
        self, tenant: str, name: str, dimension: int, distance: Distance
    ) -> CollectionInfo:
        validate_tenant(tenant)
        validate_collection_name(name)
        validate_dimension(dimension)
        try:
            await self._lookup(tenant, name, fresh=True)
        except NotFound:
            pass
        else:
            raise AlreadyExists(f"Collection '{name}' already exists")
        logical = _Logical(CollectionEntry(tenant, name, dimension, distance))
        await self._create_if_missing(
            CATALOG_COLLECTION, 1, models.Distance.DOT, (CATALOG_TENANT_FIELD, False)
        )
        await self._ensure_physical(logical)
        # Points of an earlier collection of this name whose delete was cut short must
        # not reappear in the new one.
        await self._purge(logical)
        entry = models.PointStruct(
            id=logical.catalog_id, vector=[1.0], payload=logical.entry.to_json()
        )
        await self._call(
            "upsert",
            lambda c: c.upsert(CATALOG_COLLECTION, points=[entry], wait=True),
            collection=name,
        )
        self._entries[(tenant, name)] = logical
        return logical.info(0)

    async def delete_collection(self, tenant: str, name: str) -> None:
        logical = await self._lookup(tenant, name, fresh=True)
        await self._purge(logical)
        await self._call(
            "delete",
            lambda c: c.delete(
                CATALOG_COLLECTION,
                points_selector=models.PointIdsList(points=[logical.catalog_id]),
                wait=True,
            ),
            collection=name,
        )
        self._entries.pop((tenant, name), None)
        # What a write racing with the delete (on another replica) may have added.
        await self._purge(logical)

    async def get_collection(self, tenant: str, name: str) -> CollectionInfo:
        logical = await self._lookup(tenant, name, fresh=True)
        return logical.info(await self._count(logical, logical.only))

    async def list_collections(self, tenant: str) -> list[CollectionInfo]:
        validate_tenant(tenant)
        mine = models.Filter(
            must=[
                models.FieldCondition(
                    key=CATALOG_TENANT_FIELD, match=models.MatchValue(value=tenant)
                )
            ]
        )
        entries: list[CollectionEntry] = []
        offset: models.ExtendedPointId | None = None

        def page(c: AsyncQdrantClient) -> Awaitable[tuple[list[models.Record], Any]]:
            return c.scroll(
                CATALOG_COLLECTION,
                scroll_filter=mine,
                limit=CATALOG_PAGE,
                offset=offset,
                with_payload=True,
            )

        while True:
            try:
                records, offset = await self._call("scroll", page, collection=CATALOG_COLLECTION)
            except NotFound:
                return []  # no catalog yet
            entries.extend(CollectionEntry.from_json(r.payload) for r in records if r.payload)
            if offset is None:
                break

        async def describe(entry: CollectionEntry) -> CollectionInfo | None:
            logical = _Logical(entry)
            try:
                return logical.info(await self._count(logical, logical.only))
            except NotFound:
                return None  # its physical collection was removed behind our back

        infos = await asyncio.gather(*(describe(e) for e in entries))
        return sorted((i for i in infos if i is not None), key=lambda i: i.name)

    async def physical_collections(self) -> list[CollectionInfo]:
        response = await self._call("get_collections", lambda c: c.get_collections())
        names = sorted(
            c.name
            for c in response.collections
            if c.name.startswith(PHYSICAL_PREFIX) and c.name != CATALOG_COLLECTION
        )
        infos = []

        async def describe(name: str) -> CollectionInfo | None:
            try:
                info = await self._call(
                    "get_collection", lambda c: c.get_collection(name), collection=name
                )
                counted = await self._call(
                    "count", lambda c: c.count(name, exact=True), collection=name
                )
                return _describe(name, info, counted.count)
            except (NotFound, _Unsupported):
                return None

        infos = [await describe(name) for name in names]
        return [info for info in infos if info is not None]

    # Points

    async def upsert(self, tenant: str, collection: str, points: Sequence[Point]) -> int:
        logical = await self._lookup(tenant, collection, fresh=True)
        partition = logical.entry.partition
        structs: list[models.PointStruct] = []
        for i, point in enumerate(points):
            what = f"Point {i}"
            check_finite(point.vector, f"Vector of point {i}")
            _check_payload(point.payload, what)
            point_id = normalize_point_id(point.id)
            structs.append(
                models.PointStruct(
                    id=stored_id(partition, point_id),
                    vector=[float(x) for x in point.vector],
                    payload=stored_payload(partition, point_id, point.payload),
                )
            )
        self._check_dimension(logical, [p.vector for p in points])
        if not structs:
            return 0
        await self._call(
            "upsert",
            lambda c: c.upsert(logical.physical, points=structs, wait=True),
            collection=collection,
        )
        return len(structs)

    async def _reading(
        self, tenant: str, collection: str, vectors: Sequence[Sequence[float]] = ()
    ) -> _Logical:
        """The cached entry for a read; re-read once when a vector does not fit it (the
        collection may have been recreated by another replica)."""
        logical = await self._lookup(tenant, collection)
        if any(len(v) != logical.entry.dimension for v in vectors):
            logical = await self._lookup(tenant, collection, fresh=True)
        self._check_dimension(logical, vectors)
        return logical

    async def query(
        self,
        tenant: str,
        collection: str,
        vector: Sequence[float],
        *,
        limit: int,
        offset: int = 0,
        filter: Filter | None = None,
        score_threshold: float | None = None,
        with_vector: bool = False,
    ) -> list[ScoredPoint]:
        check_limit(limit, offset)
        check_finite(vector, "Query vector")
        if score_threshold is not None and not math.isfinite(score_threshold):
            raise BadUserInput("scoreThreshold must be a finite number")
        logical = await self._reading(tenant, collection, [vector])
        query_filter = logical.scoped(filter)
        response = await self._call(
            "query_points",
            lambda c: c.query_points(
                logical.physical,
                query=[float(x) for x in vector],
                query_filter=query_filter,
                limit=limit,
                offset=offset or None,
                with_payload=True,
                with_vectors=with_vector,
                score_threshold=score_threshold,
            ),
            collection=collection,
        )
        return [
            client_scored(
                p.payload, float(p.score), _from_qdrant_vector(p.vector) if with_vector else None
            )
            for p in response.points
        ]

    async def _retrieve(
        self, logical: _Logical, ids: list[PointId], *, with_vector: bool
    ) -> dict[PointId, Record]:
        """The points among the client's ids that exist in this logical collection."""
        partition = logical.entry.partition
        stored: list[models.ExtendedPointId] = [stored_id(partition, i) for i in ids]
        found = await self._call(
            "retrieve",
            lambda c: c.retrieve(
                logical.physical, ids=stored, with_payload=True, with_vectors=with_vector
            ),
            collection=logical.entry.name,
        )
        records: dict[PointId, Record] = {}
        for r in found:
            if not owns(partition, r.payload):
                continue
            record = client_record(
                r.payload, _from_qdrant_vector(r.vector) if with_vector else None
            )
            records[record.id] = record
        return records

    async def retrieve(
        self, tenant: str, collection: str, ids: Sequence[PointId], *, with_vector: bool = False
    ) -> list[Record]:
        wanted = normalize_ids(ids)
        logical = await self._reading(tenant, collection)  # NotFound even when ids is empty
        if not wanted:
            return []
        by_id = await self._retrieve(logical, wanted, with_vector=with_vector)
        return [by_id[i] for i in wanted if i in by_id]

    async def delete_ids(self, tenant: str, collection: str, ids: Sequence[PointId]) -> int:
        wanted = normalize_ids(ids)
        logical = await self._lookup(tenant, collection, fresh=True)
        if not wanted:
            return 0
        found = await self._retrieve(logical, wanted, with_vector=False)
        partition = logical.entry.partition
        existing: list[models.ExtendedPointId] = [stored_id(partition, i) for i in found]
        if not existing:
            return 0
        await self._call(
            "delete",
            lambda c: c.delete(
                logical.physical, points_selector=models.PointIdsList(points=existing), wait=True
            ),
            collection=collection,
        )
        return len(existing)

    async def delete_by_filter(self, tenant: str, collection: str, filter: Filter) -> int:
        logical = await self._lookup(tenant, collection, fresh=True)
        qdrant_filter = logical.scoped(filter)
        matched = await self._count(logical, qdrant_filter)
        if matched == 0:
            return 0
        await self._call(
            "delete",
            lambda c: c.delete(
                logical.physical,
                points_selector=models.FilterSelector(filter=qdrant_filter),
                wait=True,
            ),
            collection=collection,
        )
        return matched

    async def count(self, tenant: str, collection: str, filter: Filter | None = None) -> int:
        logical = await self._reading(tenant, collection)
        return await self._count(logical, logical.scoped(filter))

    async def scroll(
        self,
        tenant: str,
        collection: str,
        *,
        limit: int,
        cursor: PointId | None = None,
        filter: Filter | None = None,
        with_vector: bool = False,
    ) -> ScrollPage:
        check_limit(limit)
        offset = normalize_point_id(cursor) if cursor is not None else None
        logical = await self._reading(tenant, collection)
        qdrant_filter = logical.scoped(filter)
        records, next_offset = await self._call(
            "scroll",
            lambda c: c.scroll(
                logical.physical,
                scroll_filter=qdrant_filter,
                limit=limit,
                offset=offset,
                with_payload=True,
                with_vectors=with_vector,
            ),
            collection=collection,
        )
        return ScrollPage(
            points=[
                client_record(r.payload, _from_qdrant_vector(r.vector) if with_vector else None)
                for r in records
            ],
            next_cursor=_from_qdrant_id(next_offset) if next_offset is not None else None,
        )


def _within_one_deadline(name: str) -> Callable[..., Awaitable[Any]]:
    """The interface method `name` of RemoteStore, with every Qdrant call it makes (and the
    operations it calls in turn) bounded together by one deadline of timeout_seconds."""
    method = getattr(RemoteStore, name)

    @functools.wraps(method)
    async def bounded(self: RemoteStore, *args: Any, **kwargs: Any) -> Any:
        if _operation_deadline.get() is not None:
            return await method(self, *args, **kwargs)
        token = _operation_deadline.set(time.monotonic() + self._timeout)
        try:
            return await method(self, *args, **kwargs)
        finally:
            _operation_deadline.reset(token)

    return bounded


for _name in VectorStore.__abstractmethods__ - {"open", "close"}:
    setattr(RemoteStore, _name, _within_one_deadline(_name))

__all__ = ["RemoteStore"]
