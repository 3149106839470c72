"""What the memory service needs of an embedding model, whichever serves it."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence


class Embedder(ABC):
    """Turns texts into dense vectors of one dimension.

    Implementations raise `graph.errors.EmbedderUnavailable` for every failure of a
    call (timeout, transport, a malformed answer) and never let other exception text
    reach a caller; load() raises `graph.errors.ConfigError` instead, naming EMBEDDER
    (and EMBED_URL or EMBED_MODEL_PATH) and why in a few words, never a credential, so
    that the server refuses to start with one line. CPU-bound work runs off the event loop.
    """

    #: `<kind>:<model>` as configured, e.g. `openai:text-embedding-3-small`.
    name: str

    @property
    def kind(self) -> str:
        """`fastembed` or `openai`: the label of the embedder metrics."""
        return self.name.split(":", 1)[0]

    @abstractmethod
    async def load(self) -> int:
        """Load the model (or probe the endpoint) once, at start-up; its dimension. A
        failure is a ConfigError: the server does not start without the model it was
        told to use (README "Settings")."""

    #: Set by load().
    _dimension: int | None = None

    @property
    def dimension(self) -> int:
        """The length of every vector it returns (known after load())."""
        if self._dimension is None:
            raise RuntimeError("load() first")
        return self._dimension

    @abstractmethod
    async def embed_documents(self, texts: Sequence[str]) -> list[list[float]]:
        """One vector per text, in order: the texts being remembered."""

    @abstractmethod
    async def embed_query(self, text: str) -> list[float]:
        """The vector of a recall's text (some models embed queries differently)."""

    async def close(self) -> None:  # noqa: B027 (optional hook: most have nothing to free)
        """Release connections or threads; the default has none."""
