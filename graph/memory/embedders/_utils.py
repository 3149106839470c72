"""What every embedder does with a call: time it, and turn its failure into one safe error."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np

from graph.errors import EmbedderUnavailable
from graph.telemetry.metrics import EMBEDDER_DURATION, EMBEDDER_ERRORS

_MESSAGES = {
    "timeout": "The embedding model did not answer in time",
    "overloaded": "The embedding model is overloaded; retry later",
}


class Failure(Exception):
    """A failed call; reason is the `reason` label of embedder_errors_total, never shown."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@contextmanager
def measured(kind: str) -> Iterator[None]:
    """Observe the call's duration; any failure leaves as EmbedderUnavailable, counted once,
    with a message that carries nothing from the exception (no URL, key or server text)."""
    start = time.perf_counter()
    try:
        yield
    except Failure as failure:
        EMBEDDER_ERRORS.labels(kind, failure.reason).inc()
        raise EmbedderUnavailable(_MESSAGES.get(failure.reason)) from None
    except EmbedderUnavailable:
        raise
    except Exception:
        EMBEDDER_ERRORS.labels(kind, "unexpected").inc()
        raise EmbedderUnavailable() from None
    finally:
        EMBEDDER_DURATION.labels(kind).observe(time.perf_counter() - start)


def checked(vectors: object, count: int, dimension: int | None) -> list[list[float]]:
    """vectors as `count` lists of finite floats of one length (`dimension` when known);
    anything else is a Failure("bad_response")."""
    try:
        array = np.asarray(vectors, dtype=np.float64)
    except (TypeError, ValueError):  # ragged, or not numbers
        raise Failure("bad_response") from None
    if array.ndim != 2 or array.shape[0] != count or array.shape[1] == 0:
        raise Failure("bad_response")
    if dimension is not None and array.shape[1] != dimension:
        raise Failure("dimension")
    if not np.isfinite(array).all():
        raise Failure("bad_response")
    result: list[list[float]] = array.tolist()
    return result
