"""The remote adapter: a Qdrant server reached through qdrant-client's AsyncQdrantClient.

Every client call goes through RemoteStore._call, which bounds it by the configured
timeout and turns whatever the client raises into one of our ApiErrors with a generic
message (the text of client exceptions can hold URLs, payload fragments or server
internals, and our messages are shown to API clients). The same class runs on
qdrant-client's local mode (RemoteStore.local), which the tests use as a real,
in-process implementation of the same API.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import uuid
import warnings
from collections.abc import Awaitable, Callable, Sequence
from typing import TypeVar

import httpx
from qdrant_client import AsyncQdrantClient, models
from qdrant_client.common.client_exceptions import ResourceExhaustedResponse
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
from graph.store.base import VectorStore
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
    validate_filter,
)

logger = logging.getLogger(__name__)

T = TypeVar("T")
ClientFactory = Callable[[], AsyncQdrantClient]

UNAVAILABLE_MESSAGE = "The vector store is unavailable"
TIMEOUT_MESSAGE = "The vector store did not answer in time"
REJECTED_MESSAGE = "The vector store rejected the request"

_TO_QDRANT_DISTANCE: dict[Distance, models.Distance] = {
    Distance.COSINE: models.Distance.COSINE,
    Distance.DOT: models.Distance.DOT,
    Distance.EUCLID: models.Distance.EUCLID,
}
_FROM_QDRANT_DISTANCE = {qdrant: ours for ours, qdrant in _TO_QDRANT_DISTANCE.items()}


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


def _from_qdrant_payload(raw: Payload | None) -> Payload:
    return dict(raw) if raw else {}


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

    def __init__(self, client_factory: ClientFactory, *, timeout_seconds: float = 10.0) -> None:
        """client_factory builds the client in open(); every call is bounded by timeout_seconds."""
        if not timeout_seconds > 0:
            raise ValueError("timeout_seconds must be positive")
        self._client_factory = client_factory
        self._timeout = timeout_seconds
        self._client: AsyncQdrantClient | None = None
        # Vector dimension per collection, so that upsert and query validate without
        # an extra round trip; dropped whenever this process creates or deletes one.
        self._dimensions: dict[str, int] = {}

    @classmethod
    def connect(
        cls, url: str, *, api_key: str | None = None, timeout_seconds: float = 10.0
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
        return cls(factory, timeout_seconds=timeout_seconds)

    @classmethod
    def from_settings(cls, settings: Settings) -> RemoteStore:
        if not settings.qdrant_url:
            raise ValueError("QDRANT_URL is not set")
        api_key = settings.qdrant_api_key.get_secret_value() if settings.qdrant_api_key else None
        return cls.connect(
            settings.qdrant_url,
            api_key=api_key or None,
            timeout_seconds=settings.store_timeout_seconds,
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
        try:
            return await asyncio.wait_for(fn(client), timeout=self._timeout)
        except ApiError:
            raise
        except Exception as exc:
            raise self._translate(exc, operation, collection) from None

    def _translate(self, exc: Exception, operation: str, collection: str | None) -> ApiError:
        where = f"{operation} on collection {collection!r}" if collection else operation
        if isinstance(exc, TimeoutError):
            logger.warning("Qdrant %s timed out after %ss", where, self._timeout)
            return StoreTimeout(TIMEOUT_MESSAGE)
        if isinstance(exc, ResponseHandlingException):
            source = exc.source
            if isinstance(source, httpx.TimeoutException):
                logger.warning("Qdrant %s timed out: %s", where, type(source).__name__)
                return StoreTimeout(TIMEOUT_MESSAGE)
            if isinstance(source, httpx.TransportError):
                logger.warning("Qdrant %s failed: %s: %s", where, type(source).__name__, source)
                return StoreUnavailable(UNAVAILABLE_MESSAGE)
            logger.error("Qdrant %s: unreadable response", where, exc_info=source)
            return StoreUnavailable(UNAVAILABLE_MESSAGE)
        if isinstance(exc, ResourceExhaustedResponse):
            logger.warning("Qdrant %s: rate limited by the server", where)
            return StoreUnavailable(UNAVAILABLE_MESSAGE)
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
            return StoreUnavailable(UNAVAILABLE_MESSAGE)
        # Called from the except block in _call, so this logs exc with its traceback.
        logger.exception("Unexpected error from Qdrant %s", where)
        return StoreUnavailable(UNAVAILABLE_MESSAGE)

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
            return StoreUnavailable(UNAVAILABLE_MESSAGE)
        if status == 408 or status == 504:
            logger.warning("Qdrant %s timed out on the server (%s)", where, status)
            return StoreTimeout(TIMEOUT_MESSAGE)
        if status >= 500 or status == 429:
            logger.warning("Qdrant %s failed (%s): %s", where, status, content)
            return StoreUnavailable(UNAVAILABLE_MESSAGE)
        logger.error("Unexpected response from Qdrant %s (%s): %s", where, status, content)
        return StoreUnavailable(UNAVAILABLE_MESSAGE)

    # Lifecycle

    async def open(self) -> None:
        """Build the client; no request is made, so a server that is down does not matter."""
        if self._client is None:
            self._client = self._client_factory()

    async def close(self) -> None:
        client, self._client = self._client, None
        self._dimensions.clear()
        if client is None:
            return
        try:
            await asyncio.wait_for(client.close(), timeout=self._timeout)
        except Exception:
            logger.warning("Closing the Qdrant client failed", exc_info=True)

    async def ping(self) -> None:
        await self._call("ping", lambda c: c.get_collections())

    # Collections

    async def _info(self, name: str, *, exact_count: bool = True) -> CollectionInfo:
        """Describe a collection (and cache its dimension). Qdrant's own points_count is
        approximate, so an exact count costs a second request, skipped when not needed."""
        info = await self._call("get_collection", lambda c: c.get_collection(name), collection=name)
        points_count = info.points_count or 0
        if exact_count:
            counted = await self._call(
                "count", lambda c: c.count(name, exact=True), collection=name
            )
            points_count = counted.count
        try:
            described = _describe(name, info, points_count)
        except _Unsupported as exc:
            logger.warning("Qdrant %s", exc)
            raise BadUserInput(
                f"Collection '{name}' was not made by this server: it needs one unnamed "
                "vector with cosine, dot or euclid distance"
            ) from None
        self._dimensions[name] = described.dimension
        return described

    async def _dimension(self, name: str, *, refresh: bool = False) -> int:
        """The vector dimension of a collection; NotFound when there is none."""
        if refresh or name not in self._dimensions:
            await self._info(name, exact_count=False)
        return self._dimensions[name]

    async def _check_vectors(self, collection: str, vectors: Sequence[Sequence[float]]) -> None:
        """Dimension check against the cached dimension, re-read once before failing
        (the collection may have been recreated by another process)."""
        dimension = await self._dimension(collection)
        if any(len(v) != dimension for v in vectors):
            dimension = await self._dimension(collection, refresh=True)
        for i, vector in enumerate(vectors):
            what = "Vector" if len(vectors) == 1 else f"Vector of point {i}"
            check_vector_dimension(vector, dimension, what)

    async def ensure_collection(self, name: str, dimension: int, distance: Distance) -> None:
        validate_collection_name(name)
        validate_dimension(dimension)
        try:
            existing = await self._info(name, exact_count=False)
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
            await self.create_collection(name, dimension, distance)
        except AlreadyExists:
            pass  # created meanwhile by a concurrent call or another process
        else:
            logger.info("Created collection %r (%s, %s)", name, dimension, distance.value)

    async def create_collection(
        self, name: str, dimension: int, distance: Distance
    ) -> CollectionInfo:
        validate_collection_name(name)
        validate_dimension(dimension)
        self._dimensions.pop(name, None)
        exists = await self._call(
            "collection_exists", lambda c: c.collection_exists(name), collection=name
        )
        if exists:
            raise AlreadyExists(f"Collection '{name}' already exists")
        created = await self._call(
            "create_collection",
            lambda c: c.create_collection(
                name,
                vectors_config=models.VectorParams(
                    size=dimension, distance=_TO_QDRANT_DISTANCE[distance]
                ),
            ),
            collection=name,
        )
        if not created:
            raise AlreadyExists(f"Collection '{name}' already exists")
        self._dimensions[name] = dimension
        return CollectionInfo(name=name, dimension=dimension, distance=distance, points_count=0)

    async def delete_collection(self, name: str) -> None:
        validate_collection_name(name)
        self._dimensions.pop(name, None)
        exists = await self._call(
            "collection_exists", lambda c: c.collection_exists(name), collection=name
        )
        if not exists:
            raise NotFound(f"Collection '{name}' not found")
        deleted = await self._call(
            "delete_collection", lambda c: c.delete_collection(name), collection=name
        )
        if not deleted:
            raise NotFound(f"Collection '{name}' not found")

    async def get_collection(self, name: str) -> CollectionInfo:
        validate_collection_name(name)
        return await self._info(name)

    async def list_collections(self) -> list[CollectionInfo]:
        response = await self._call("get_collections", lambda c: c.get_collections())
        names = sorted(c.name for c in response.collections)

        async def describe(name: str) -> CollectionInfo | None:
            try:
                return await self._info(name)
            except NotFound:
                return None  # deleted since it was listed
            except BadUserInput:
                return None  # not one of ours (named vectors, other distance): left out

        infos = await asyncio.gather(*(describe(n) for n in names))
        return [info for info in infos if info is not None]

    # Points

    async def upsert(self, collection: str, points: Sequence[Point]) -> int:
        validate_collection_name(collection)
        structs: list[models.PointStruct] = []
        for i, point in enumerate(points):
            what = f"Point {i}"
            check_finite(point.vector, f"Vector of point {i}")
            _check_payload(point.payload, what)
            structs.append(
                models.PointStruct(
                    id=normalize_point_id(point.id),
                    vector=[float(x) for x in point.vector],
                    payload=point.payload,
                )
            )
        await self._check_vectors(collection, [p.vector for p in points])
        if not structs:
            return 0
        await self._call(
            "upsert",
            lambda c: c.upsert(collection, points=structs, wait=True),
            collection=collection,
        )
        return len(structs)

    async def query(
        self,
        collection: str,
        vector: Sequence[float],
        *,
        limit: int,
        offset: int = 0,
        filter: Filter | None = None,
        score_threshold: float | None = None,
        with_vector: bool = False,
    ) -> list[ScoredPoint]:
        validate_collection_name(collection)
        check_limit(limit, offset)
        check_finite(vector, "Query vector")
        if score_threshold is not None and not math.isfinite(score_threshold):
            raise BadUserInput("scoreThreshold must be a finite number")
        query_filter = _to_qdrant_filter(validate_filter(filter)) if filter else None
        await self._check_vectors(collection, [vector])
        response = await self._call(
            "query_points",
            lambda c: c.query_points(
                collection,
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
            ScoredPoint(
                id=_from_qdrant_id(p.id),
                score=float(p.score),
                payload=_from_qdrant_payload(p.payload),
                vector=_from_qdrant_vector(p.vector) if with_vector else None,
            )
            for p in response.points
        ]

    async def _retrieve(
        self, collection: str, ids: list[PointId], *, with_payload: bool, with_vector: bool
    ) -> list[models.Record]:
        return await self._call(
            "retrieve",
            lambda c: c.retrieve(
                collection, ids=ids, with_payload=with_payload, with_vectors=with_vector
            ),
            collection=collection,
        )

    async def retrieve(
        self, collection: str, ids: Sequence[PointId], *, with_vector: bool = False
    ) -> list[Record]:
        validate_collection_name(collection)
        wanted = normalize_ids(ids)
        await self._dimension(collection)  # NotFound even when ids is empty
        if not wanted:
            return []
        found = await self._retrieve(collection, wanted, with_payload=True, with_vector=with_vector)
        by_id = {
            _from_qdrant_id(r.id): Record(
                id=_from_qdrant_id(r.id),
                payload=_from_qdrant_payload(r.payload),
                vector=_from_qdrant_vector(r.vector) if with_vector else None,
            )
            for r in found
        }
        return [by_id[i] for i in wanted if i in by_id]

    async def delete_ids(self, collection: str, ids: Sequence[PointId]) -> int:
        validate_collection_name(collection)
        wanted = normalize_ids(ids)
        await self._dimension(collection)
        if not wanted:
            return 0
        found = await self._retrieve(collection, wanted, with_payload=False, with_vector=False)
        existing: list[models.ExtendedPointId] = [_from_qdrant_id(r.id) for r in found]
        if not existing:
            return 0
        await self._call(
            "delete",
            lambda c: c.delete(
                collection, points_selector=models.PointIdsList(points=existing), wait=True
            ),
            collection=collection,
        )
        return len(existing)

    async def delete_by_filter(self, collection: str, filter: Filter) -> int:
        validate_collection_name(collection)
        qdrant_filter = _to_qdrant_filter(validate_filter(filter))
        matched = await self._call(
            "count",
            lambda c: c.count(collection, count_filter=qdrant_filter, exact=True),
            collection=collection,
        )
        if matched.count == 0:
            return 0
        await self._call(
            "delete",
            lambda c: c.delete(
                collection, points_selector=models.FilterSelector(filter=qdrant_filter), wait=True
            ),
            collection=collection,
        )
        return matched.count

    async def count(self, collection: str, filter: Filter | None = None) -> int:
        validate_collection_name(collection)
        qdrant_filter = _to_qdrant_filter(validate_filter(filter)) if filter else None
        result = await self._call(
            "count",
            lambda c: c.count(collection, count_filter=qdrant_filter, exact=True),
            collection=collection,
        )
        return result.count

    async def scroll(
        self,
        collection: str,
        *,
        limit: int,
        cursor: PointId | None = None,
        filter: Filter | None = None,
        with_vector: bool = False,
    ) -> ScrollPage:
        validate_collection_name(collection)
        check_limit(limit)
        offset = normalize_point_id(cursor) if cursor is not None else None
        qdrant_filter = _to_qdrant_filter(validate_filter(filter)) if filter else None
        records, next_offset = await self._call(
            "scroll",
            lambda c: c.scroll(
                collection,
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
                Record(
                    id=_from_qdrant_id(r.id),
                    payload=_from_qdrant_payload(r.payload),
                    vector=_from_qdrant_vector(r.vector) if with_vector else None,
                )
                for r in records
            ],
            next_cursor=_from_qdrant_id(next_offset) if next_offset is not None else None,
        )


__all__ = ["RemoteStore"]
