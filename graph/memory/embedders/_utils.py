"""What every embedder does with a call: time it, and turn its failure into one safe error."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np

from graph.errors import ConfigError, EmbedderUnavailable
from graph.telemetry.metrics import EMBEDDER_DURATION, EMBEDDER_ERRORS

_MESSAGES = {
    "timeout": "The embedding model did not answer in time",
    "overloaded": "The embedding model is overloaded; retry later",
}


# Why a call failed, in a few words for the operator (a start-up refusal), by reason.
_WORDS = {
    "timeout": "no answer in time",
    "overloaded": "too many embedding calls waiting",
    "connection": "cannot connect",
    "rate_limited": "rate limited",
    "server_error": "the server failed",
    "refused": "the credentials are refused (check EMBED_API_KEY)",
    "rejected": "the request is refused",
    "bad_response": "the answer is not one embedding of numbers per text",
    "dimension": "vectors of another dimension than before",
    "load": "the model cannot be loaded",
    "inference": "the model failed on a probe text",
}


class Failure(Exception):
    """A failed call; reason is the `reason` label of embedder_errors_total, never shown to
    a client. words say why in a few words for the operator, when the failure stops the
    start: never a credential, never the server's own text."""

    def __init__(self, reason: str, words: str | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.words = words or _WORDS.get(reason, reason.replace("_", " "))


@contextmanager
def measured(kind: str, *, starting: str | None = None) -> Iterator[None]:
    """Observe the call's duration; any failure leaves as EmbedderUnavailable, counted once,
    with a message that carries nothing from the exception (no URL, key or server text).

    starting, for load(): the embedder as the operator configured it (EMBEDDER, and where
    the model is). A failure is then a ConfigError, `{starting}: {why}`, so that the server
    refuses to start with one line naming the setting and the reason (graph/app.py's
    lifespan, graph/cli.py's cannot_start), rather than a traceback."""
    start = time.perf_counter()
    try:
        yield
    except Failure as failure:
        EMBEDDER_ERRORS.labels(kind, failure.reason).inc()
        if starting is not None:
            raise ConfigError(f"{starting}: {failure.words}") from None
        raise EmbedderUnavailable(_MESSAGES.get(failure.reason)) from None
    except (EmbedderUnavailable, ConfigError):
        raise
    except Exception as exc:
        EMBEDDER_ERRORS.labels(kind, "unexpected").inc()
        if starting is not None:
            raise ConfigError(f"{starting}: an unexpected {type(exc).__name__}") from None
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
