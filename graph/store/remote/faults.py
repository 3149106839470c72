"""What went wrong on a call to Qdrant, and whether trying again can help.

classify() names the fault behind an exception from qdrant-client (the `kind` label of
store_faults_total) and says whether it is transient; RetryPolicy decides how long to wait
before the next attempt: exponential backoff with full jitter, at least what the server
asked for in Retry-After, and never past the call's deadline.
"""

from __future__ import annotations

import json
import random
import time
from dataclasses import dataclass

import httpx
from qdrant_client.common.client_exceptions import QdrantException, ResourceExhaustedResponse
from qdrant_client.http.exceptions import ResponseHandlingException, UnexpectedResponse

# Statuses a healthy server behind a proxy answers for a moment: worth another attempt.
_TRANSIENT_STATUSES = frozenset({408, 429, 502, 503, 504})


@dataclass(frozen=True, slots=True)
class Fault:
    kind: str
    transient: bool
    retry_after: float | None = None


def classify(exc: BaseException) -> Fault | None:
    """The fault behind exc, or None when exc is an answer rather than a fault (a 404 or a
    400 is Qdrant working as it should)."""
    if isinstance(exc, TimeoutError):
        # Our deadline passed: nothing is left to retry in.
        return Fault("timeout", transient=False)
    if isinstance(exc, ResponseHandlingException):
        source = exc.source
        if isinstance(source, httpx.TimeoutException):
            return Fault("timeout", transient=False)
        if isinstance(source, httpx.TransportError):
            return Fault("connection", transient=True)
        return Fault("bad_response", transient=False)
    if isinstance(exc, httpx.TransportError):
        return Fault("connection", transient=True)
    if isinstance(exc, ResourceExhaustedResponse):
        return Fault("rate_limited", transient=True, retry_after=float(exc.retry_after_s))
    if isinstance(exc, QdrantException):
        # qdrant-client raises this for a 429 whose Retry-After is not whole seconds.
        return Fault("rate_limited", transient=True)
    if isinstance(exc, UnexpectedResponse):
        return _classify_status(exc)
    if isinstance(exc, json.JSONDecodeError):
        return Fault("bad_response", transient=False)
    if isinstance(exc, ValueError):
        return None  # local mode's "not found" and "already exists"
    return Fault("unexpected", transient=False)


def _classify_status(exc: UnexpectedResponse) -> Fault | None:
    status = exc.status_code or 0
    retry_after = _retry_after(exc.headers.get("retry-after"))
    if status in _TRANSIENT_STATUSES:
        kind = {408: "timeout", 504: "timeout", 429: "rate_limited"}.get(status, "server_error")
        return Fault(kind, transient=True, retry_after=retry_after)
    if status >= 500:
        return Fault("server_error", transient=False)
    if status in (401, 403):
        return Fault("refused", transient=False)
    return None


def _retry_after(value: str | None) -> float | None:
    """Retry-After in seconds; an HTTP date (or nonsense) is ignored: backoff applies."""
    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError:
        return None
    return seconds if 0 <= seconds < 3600 else None


class RetryPolicy:
    def __init__(
        self, max_retries: int, *, base_seconds: float = 0.05, cap_seconds: float = 2.0
    ) -> None:
        self.max_retries = max_retries
        self.base_seconds = base_seconds
        self.cap_seconds = cap_seconds

    def pause(self, fault: Fault | None, attempt: int, deadline: float) -> float | None:
        """Seconds to wait before attempt + 1 (attempts count from 0), or None to give up:
        the fault is not transient, the retries are spent, or the wait would end past the
        deadline (a time.monotonic() value), where the answer could not be used any more."""
        if fault is None or not fault.transient or attempt >= self.max_retries:
            return None
        backoff = random.uniform(0, min(self.cap_seconds, self.base_seconds * 2**attempt))
        pause = max(backoff, fault.retry_after or 0.0)
        if time.monotonic() + pause >= deadline:
            return None
        return pause
