"""The one way to Qdrant: every client call goes through Client.call.

Client.call bounds a call by the configured timeout and turns whatever qdrant-client
raises into one of our ApiErrors with a generic message (the text of client exceptions
can hold URLs, payload fragments or server internals, and our messages are shown to API
clients). Transient faults are retried (faults.py) and calls are admitted through a
bounded queue (admission.py). The same class runs on qdrant-client's local mode, which
the tests use as a real, in-process implementation of the same API.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import math
import time
import warnings
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from typing import Any, TypeVar

import httpx
from qdrant_client import AsyncQdrantClient
from qdrant_client.common.client_exceptions import QdrantException
from qdrant_client.http.exceptions import ResponseHandlingException, UnexpectedResponse

from graph.errors import (
    AlreadyExists,
    ApiError,
    BadUserInput,
    ConfigError,
    NotFound,
    StoreTimeout,
    StoreUnavailable,
)
from graph.store.remote.admission import Admission
from graph.store.remote.faults import RetryPolicy, classify
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


def http_client(url: str, api_key: str | None, timeout_seconds: float) -> ClientFactory:
    """A factory of clients of the Qdrant server at url (REST)."""

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
    return factory


def local_client(path: str | None) -> ClientFactory:
    """qdrant-client's in-process local mode: in memory, or persisted under path."""

    def factory() -> AsyncQdrantClient:
        if path is None:
            return AsyncQdrantClient(location=":memory:")
        try:
            return AsyncQdrantClient(path=path)
        except RuntimeError as exc:
            # The client's lock on the directory: one process at a time, as the embedded
            # store's DATA_DIR (a ConfigError: the server, graph restore and graph migrate
            # say it in one line).
            if "already accessed" not in str(exc):
                raise
            raise ConfigError(
                f"QDRANT_URL path:{path} is in use by another process (qdrant-client's local "
                "mode allows one at a time)"
            ) from None

    return factory


def _from_qdrant(exc: UnexpectedResponse) -> bool:
    """Whether an error response is Qdrant's own JSON (not, say, a proxy's 404 page for a
    wrong QDRANT_URL path, which must not read as a missing collection)."""
    try:
        body = exc.structured()
    except ValueError:
        return False
    return isinstance(body, dict) and "status" in body


class Client:
    def __init__(
        self,
        factory: ClientFactory,
        *,
        backend: str,
        timeout_seconds: float,
        max_retries: int,
        max_concurrency: int,
        max_queue: int,
    ) -> None:
        if not timeout_seconds > 0:
            raise ValueError("timeout_seconds must be positive")
        self._factory = factory
        self.timeout = timeout_seconds
        self._retry = RetryPolicy(max_retries)
        self._admission = Admission(backend, limit=max_concurrency, queue=max_queue)
        self._backend = backend
        self._client: AsyncQdrantClient | None = None

    def open(self) -> None:
        """Build the client; no request is made, so a server that is down does not matter."""
        if self._client is None:
            self._client = self._factory()

    async def close(self) -> None:
        client, self._client = self._client, None
        if client is None:
            return
        try:
            async with asyncio.timeout(self.timeout):
                await client.close()
        except Exception:
            logger.warning("Closing the Qdrant client failed", exc_info=True)

    @property
    def _qdrant(self) -> AsyncQdrantClient:
        if self._client is None:
            raise RuntimeError("the Qdrant client used before open() or after close()")
        return self._client

    async def call(
        self,
        operation: str,
        fn: Callable[[AsyncQdrantClient], Awaitable[T]],
        *,
        collection: str | None = None,
    ) -> T:
        client = self._qdrant
        deadline = _operation_deadline.get() or time.monotonic() + self.timeout
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
                        STORE_FAULTS.labels(self._backend, fault.kind).inc()
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
                STORE_RETRIES.labels(self._backend, operation).inc()
                await asyncio.sleep(pause)
                attempt += 1

    def _translate(self, exc: Exception, operation: str, collection: str | None) -> ApiError:
        where = f"{operation} on collection {collection!r}" if collection else operation
        if isinstance(exc, TimeoutError):
            logger.warning("Qdrant %s timed out after %ss", where, self.timeout)
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


def within_one_deadline(
    method: Callable[..., Awaitable[Any]], timeout: Callable[[Any], float]
) -> Callable[..., Awaitable[Any]]:
    """method, with every Qdrant call it makes (and the operations it calls in turn)
    bounded together by one deadline of timeout(self) seconds."""

    @functools.wraps(method)
    async def bounded(self: Any, *args: Any, **kwargs: Any) -> Any:
        if _operation_deadline.get() is not None:
            return await method(self, *args, **kwargs)
        token = _operation_deadline.set(time.monotonic() + timeout(self))
        try:
            return await method(self, *args, **kwargs)
        finally:
            _operation_deadline.reset(token)

    return bounded
