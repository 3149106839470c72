"""Any OpenAI-compatible embeddings API: `POST {EMBED_URL}/embeddings`.

OpenAI, Ollama, vLLM, TEI and LM Studio all answer `{"model", "input": [texts]}` with
`{"data": [{"index", "embedding"}]}`. A call is bounded like a call to the remote store:
at most `max_concurrency` in flight and `max_queue` waiting (past that it is refused at
once), one deadline of EMBED_TIMEOUT_SECONDS for the whole call, retries included, and
transient faults (connection errors, 429, 5xx) retried with backoff, honouring Retry-After
when the budget allows.
"""

from __future__ import annotations

import asyncio
import os
import ssl
import time
from collections.abc import Sequence
from http import HTTPStatus
from itertools import count
from typing import Any

import httpx
import orjson
from pydantic import SecretStr

from graph.errors import ConfigError, StoreOverloaded, StoreTimeout
from graph.memory.embedders._utils import Failure, checked, measured
from graph.memory.embedders.base import Embedder
from graph.settings import MemorySettings
from graph.store.remote.admission import Admission
from graph.store.remote.faults import Fault, RetryPolicy, _retry_after

_PROBE_TEXT = "dimension probe"


class OpenAIEmbedder(Embedder):
    def __init__(
        self,
        model: str,
        *,
        url: str,
        api_key: SecretStr | None = None,
        timeout_seconds: float = 10.0,
        batch_size: int = 64,
        max_retries: int = 3,
        max_concurrency: int = 8,
        max_queue: int = 64,
    ) -> None:
        if batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        self.name = f"openai:{model}"
        self._model = model
        # Credentials in the URL become basic auth (unless an API key is set), so no request
        # line that httpx logs shows them.
        try:
            base = httpx.URL(url)
        except httpx.InvalidURL:
            base = httpx.URL()
        if base.scheme not in ("http", "https") or not base.host:
            raise ConfigError("EMBED_URL must be an http:// or https:// URL")
        auth = None
        if base.userinfo and api_key is None:
            auth = httpx.BasicAuth(base.username, base.password)
        base = base.copy_with(userinfo=b"")
        # As a start-up refusal names it: no credentials, no query (a key could be there).
        self._shown_url = str(base.copy_with(query=None, fragment=None))
        self._endpoint = base.copy_with(path=base.path.rstrip("/") + "/embeddings")
        self._timeout = timeout_seconds
        self._batch_size = batch_size
        self._retry = RetryPolicy(max_retries)
        self._admission = Admission(f"embedder:{self.kind}", limit=max_concurrency, queue=max_queue)
        headers = {"Content-Type": "application/json"}
        if api_key is not None:
            headers["Authorization"] = f"Bearer {api_key.get_secret_value()}"
        # The asyncio deadline bounds each call; httpx's own timeout is only a backstop.
        self._client = httpx.AsyncClient(headers=headers, auth=auth, timeout=timeout_seconds)
        self._dimension: int | None = None

    @classmethod
    def from_settings(cls, model: str, settings: MemorySettings) -> OpenAIEmbedder:
        if not settings.embed_url:
            raise ConfigError(
                f"EMBEDDER=openai:{model} needs EMBED_URL, the base URL of an "
                "OpenAI-compatible API (e.g. https://api.openai.com/v1)"
            )
        return cls(
            model,
            url=settings.embed_url,
            api_key=settings.embed_api_key,
            timeout_seconds=settings.embed_timeout_seconds,
        )

    async def load(self) -> int:
        self._dimension = None
        starting = f"EMBEDDER {self.name}: EMBED_URL {self._shown_url} did not embed a probe text"
        with measured(self.kind, starting=starting):
            [vector] = await self._embed([_PROBE_TEXT])
        self._dimension = len(vector)
        return self._dimension

    async def embed_documents(self, texts: Sequence[str]) -> list[list[float]]:
        if not texts:
            return []
        with measured(self.kind):
            return await self._embed(texts)

    async def embed_query(self, text: str) -> list[float]:
        with measured(self.kind):
            [vector] = await self._embed([text])
        return vector

    async def close(self) -> None:
        await self._client.aclose()

    async def _embed(self, texts: Sequence[str]) -> list[list[float]]:
        deadline = time.monotonic() + self._timeout
        try:
            async with self._admission.slot(deadline):
                vectors: list[list[float]] = []
                dimension = self._dimension
                for start in range(0, len(texts), self._batch_size):
                    batch = list(texts[start : start + self._batch_size])
                    vectors.extend(await self._post(batch, dimension, deadline))
                    dimension = len(vectors[0])
                return vectors
        except StoreOverloaded:
            raise Failure("overloaded") from None
        except StoreTimeout:
            raise Failure("timeout") from None

    async def _post(
        self, batch: list[str], dimension: int | None, deadline: float
    ) -> list[list[float]]:
        body = orjson.dumps({"model": self._model, "input": batch})
        for attempt in count():
            try:
                async with asyncio.timeout(max(0.0, deadline - time.monotonic())):
                    response = await self._client.post(self._endpoint, content=body)
            except (TimeoutError, httpx.TimeoutException):
                raise Failure(
                    "timeout", f"no answer within EMBED_TIMEOUT_SECONDS ({self._timeout:g}s)"
                ) from None
            except httpx.TransportError as exc:
                fault = Fault("connection", transient=True)
                words = _transport_words(exc)
            else:
                if response.is_success:
                    return _vectors(response.content, len(batch), dimension)
                fault = _fault_of(response)
                words = _status_words(response.status_code)
            pause = self._retry.pause(fault, attempt, deadline)
            if pause is None:
                raise Failure(fault.kind, f"{words} ({attempt + 1} attempts)" if attempt else words)
            await asyncio.sleep(pause)
        raise AssertionError("unreachable")  # pragma: no cover


def _fault_of(response: httpx.Response) -> Fault:
    status = response.status_code
    retry_after = _retry_after(response.headers.get("retry-after"))
    if status == 429:
        return Fault("rate_limited", transient=True, retry_after=retry_after)
    if status in (408, 504):
        return Fault("timeout", transient=True, retry_after=retry_after)
    if status >= 500:
        return Fault("server_error", transient=True, retry_after=retry_after)
    if status in (401, 403):
        return Fault("refused", transient=False)
    return Fault("rejected", transient=False)


def _status_words(status: int) -> str:
    """`HTTP 500 Internal Server Error`: the standard phrase, not the one the server sent."""
    try:
        words = f"HTTP {status} {HTTPStatus(status).phrase}"
    except ValueError:
        words = f"HTTP {status}"
    if status in (401, 403):
        words += " (check EMBED_API_KEY)"
    return words


def _transport_words(exc: BaseException) -> str:
    """Why a connection failed, from the OS's error behind httpx's (`connection refused`,
    `Name or service not known`, a TLS certificate not trusted)."""
    cause: BaseException | None = exc
    for _ in range(8):  # the chain is short; never follow a long one
        if cause is None:
            break
        if isinstance(cause, ssl.SSLCertVerificationError):
            return f"TLS: the certificate is not trusted ({cause.verify_message})"
        if isinstance(cause, ssl.SSLError):
            return f"TLS: {cause.reason or 'the handshake failed'}"
        if isinstance(cause, OSError) and cause.errno and cause.errno > 0:
            return os.strerror(cause.errno).lower()
        if isinstance(cause, OSError) and cause.strerror:  # a resolver's (socket.gaierror)
            return str(cause.strerror)
        cause = cause.__cause__ or cause.__context__
    if isinstance(exc, httpx.ConnectError):
        return "cannot connect"
    if isinstance(exc, httpx.RemoteProtocolError):
        return "the server closed the connection or broke HTTP"
    return f"the connection failed ({type(exc).__name__})"


def _vectors(content: bytes, count: int, dimension: int | None) -> list[list[float]]:
    """The embeddings of one answer, in the order of the input (by each item's index)."""
    try:
        data: Any = orjson.loads(content)["data"]
        by_index = {item["index"]: item["embedding"] for item in data}
        ordered = [by_index[i] for i in range(count)]
    except (orjson.JSONDecodeError, KeyError, TypeError):
        raise Failure("bad_response") from None
    if len(data) != count:
        raise Failure("bad_response")
    return checked(ordered, count, dimension)
