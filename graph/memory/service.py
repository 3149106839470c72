"""The memory service: remember, recall, read, forget and expire memories.

A memory is a point of the logical collection, in the same tenant partition and id space
as the points API (graph/store/tenancy.py has the layout): its metadata is the point's
client payload (so `points(ids)` shows it as `payload`), its text, createdAt, updatedAt
and expiresAt are internal payload fields that no client filter can reach, and it
carries the BM25 weights of its text (graph/memory/keywords.py) under a named sparse
vector, and the collection's dense vector when it has one (given by the client, or
computed by the configured embedder). Recall and memories see only points with text;
the points API's `query` only points with a dense vector.

Every check runs, and every text is embedded, before anything is written: a batch is
stored whole or not at all. Recall modes, recency and diversity: README "Memories".
"""

from __future__ import annotations

import logging
import math
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import Enum

import orjson

from graph.errors import ApiError, BadUserInput, ConfigError, EmbedderUnavailable
from graph.memory.embedders.base import Embedder
from graph.memory.keywords import blank, keywords_of_documents, keywords_of_query
from graph.settings import Settings
from graph.store.base import VectorStore
from graph.store.models import (
    Filter,
    MemoryPoint,
    MemoryRecord,
    PointId,
    RecallMode,
    RecallRequest,
    Recency,
    check_payload,
    normalize_ids,
    normalize_point_id,
)
from graph.telemetry.metrics import MEMORIES_EXPIRED

logger = logging.getLogger(__name__)

MAX_RECALL_LIMIT = 100
MAX_TTL_SECONDS = 10 * 366 * 24 * 3600  # ten years
# Deletions per expiry sweep: a backlog is worked off over several runs.
SWEEP_BATCH = 1_000


class Mode(Enum):
    """RecallMode as asked: AUTO or one the store runs."""

    AUTO = "AUTO"
    HYBRID = "HYBRID"
    KEYWORD = "KEYWORD"
    SEMANTIC = "SEMANTIC"


@dataclass(slots=True)
class NewMemory:
    """A memory to remember, as the client gave it (checked by the service)."""

    text: str
    id: object = None
    metadata: object = None
    vector: list[float] | None = None
    ttl_seconds: int | None = None


@dataclass(slots=True)
class Recall:
    """A recall as the client asked it."""

    text: str | None = None
    vector: list[float] | None = None
    filter: Filter | None = None
    limit: int = 10
    mode: Mode = Mode.AUTO
    recency: Recency | None = None
    diversity: float | None = None


def utc_now() -> datetime:
    return datetime.now(UTC)


class MemoryService:
    def __init__(
        self,
        store: VectorStore,
        settings: Settings,
        embedder: Embedder | None = None,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        self.store = store
        self.settings = settings
        self.embedder = embedder
        self.clock = clock

    async def start(self) -> None:
        """Load the embedder; its dimension must be the default collection's."""
        if self.embedder is None:
            return
        dimension = await self.embedder.load()
        expected = self.settings.store.vector_size
        if dimension != expected:
            raise ConfigError(
                f"EMBEDDER {self.embedder.name} makes vectors of {dimension} dimensions, but "
                f"the default collection has VECTOR_SIZE {expected}: set VECTOR_SIZE={dimension} "
                "(for a new data directory or collection) or choose a matching EMBEDDER"
            )

    async def close(self) -> None:
        if self.embedder is not None:
            await self.embedder.close()

    # Writes

    async def remember(
        self, tenant: str, collection: str, memories: Sequence[NewMemory]
    ) -> list[PointId]:
        """Check and embed the whole batch, then store it; returns the ids in input order."""
        maximum = self.settings.limits.max_upsert_points
        if not 1 <= len(memories) <= maximum:
            raise BadUserInput(f"remember takes 1 to {maximum} memories")
        now = self.clock()
        ids: list[PointId] = []
        for index, memory in enumerate(memories):
            try:
                ids.append(self._check_memory(memory))
            except BadUserInput as error:
                raise BadUserInput(f"memories[{index}]: {error.message}") from None
        if len(set(ids)) != len(ids):
            raise BadUserInput("An id appears twice in the batch")
        missing = [i for i, m in enumerate(memories) if m.vector is None]
        vectors = [m.vector for m in memories]
        if missing and self.embedder is not None:
            embedded = await self._embed_documents([memories[i].text for i in missing])
            for i, vector in zip(missing, embedded, strict=True):
                vectors[i] = vector
        # Off the event loop for a large batch (graph/memory/keywords.py says why).
        sparse = await keywords_of_documents([m.text for m in memories])
        existing = await self.store.get_memories(tenant, collection, ids, now=now)
        created = {m.id: m.created_at for m in existing}
        points = [
            MemoryPoint(
                id=point_id,
                text=memory.text,
                keywords=keywords,
                vector=vector,
                metadata=memory.metadata,  # type: ignore[arg-type]  # checked: a dict or None
                created_at=created.get(point_id, now),
                updated_at=now,
                expires_at=(
                    now + timedelta(seconds=memory.ttl_seconds)
                    if memory.ttl_seconds is not None
                    else None
                ),
            )
            for point_id, memory, vector, keywords in zip(
                ids, memories, vectors, sparse, strict=True
            )
        ]
        await self.store.remember(tenant, collection, points)
        return ids

    def _check_memory(self, memory: NewMemory) -> PointId:
        self.check_text(memory.text)
        metadata = memory.metadata
        if metadata is not None:
            if not isinstance(metadata, dict):
                raise BadUserInput("metadata must be a JSON object")
            check_payload(metadata)
        ttl = memory.ttl_seconds
        if ttl is not None and not 1 <= ttl <= MAX_TTL_SECONDS:
            raise BadUserInput(f"ttlSeconds must be between 1 and {MAX_TTL_SECONDS} (ten years)")
        if memory.id is None:
            return str(uuid.uuid4())
        return normalize_point_id(memory.id)

    def check_text(self, text: str) -> None:
        # Zero-width characters count as whitespace: a text of them shows nothing and has
        # no words to recall it by.
        if blank(text):
            raise BadUserInput("text must not be empty or only whitespace")
        maximum = self.settings.memory.max_memory_text_bytes
        # Measured as JSON, as every answer carries it: a control character written out
        # is six bytes (\u0001), so UTF-8 bytes alone let 1,000 memories make a 200 MB answer.
        try:
            size = len(orjson.dumps(text)) - 2
        except TypeError:  # a lone surrogate: no UTF-8, no JSON
            raise BadUserInput("text must be valid Unicode") from None
        if size > maximum:
            raise BadUserInput(
                f"text is longer than MAX_MEMORY_TEXT_BYTES ({maximum} bytes as JSON: UTF-8, "
                "with quotes, backslashes and control characters escaped)"
            )

    async def forget(
        self,
        tenant: str,
        collection: str,
        *,
        ids: Sequence[object] | None = None,
        filter: Filter | None = None,
    ) -> int:
        """By ids (whatever the points are) or by a filter on metadata (memories only)."""
        if (ids is None) == (filter is None):
            raise BadUserInput("Give exactly one of ids or filter")
        if ids is not None:
            return await self.store.delete_ids(tenant, collection, self._ids(ids))
        assert filter is not None
        if not (filter.must or filter.should or filter.must_not):
            raise BadUserInput("A forget filter needs at least one condition")
        return await self.store.forget_by_filter(tenant, collection, filter)

    def _ids(self, ids: Sequence[object]) -> list[PointId]:
        maximum = self.settings.limits.max_ids_per_request
        if not 1 <= len(ids) <= maximum:
            raise BadUserInput(f"ids must hold 1 to {maximum} ids")
        return normalize_ids([normalize_point_id(i) for i in ids])

    async def sweep(self, limit: int = SWEEP_BATCH) -> int:
        """Delete up to limit expired memories of every tenant; returns how many."""
        deleted = await self.store.sweep_expired_all_tenants(self.clock(), limit)
        if deleted:
            MEMORIES_EXPIRED.inc(deleted)
        return deleted

    # Reads

    async def memories(
        self, tenant: str, collection: str, ids: Sequence[object]
    ) -> list[MemoryRecord]:
        return await self.store.get_memories(tenant, collection, self._ids(ids), now=self.clock())

    async def recall(self, tenant: str, collection: str, asked: Recall) -> list[MemoryRecord]:
        if not 1 <= asked.limit <= MAX_RECALL_LIMIT:
            raise BadUserInput(f"limit must be between 1 and {MAX_RECALL_LIMIT}")
        text = asked.text
        if text is not None:
            self.check_text(text)
        diversity = _check_diversity(asked.diversity)
        if asked.recency is not None:
            _check_recency(asked.recency)
        mode = self._mode(asked, diversity)
        dense = asked.vector
        if dense is None and text is not None and (mode is not RecallMode.KEYWORD or diversity):
            try:
                dense = await self._embed_query(text)
            except EmbedderUnavailable:
                # AUTO ranks by what the request allows: while the embedder is down that
                # is the keywords (an agent over MCP cannot ask for another mode).
                if asked.mode is not Mode.AUTO or diversity:
                    raise
                logger.warning("The embedder is unavailable: an AUTO recall ranks by keywords")
                mode = RecallMode.KEYWORD
        keywords = await keywords_of_query(text) if text is not None else None
        request = RecallRequest(
            mode=mode,
            limit=asked.limit,
            now=self.clock(),
            keywords=keywords,
            dense=dense,
            filter=asked.filter,
            recency=asked.recency,
            diversity=diversity,
        )
        return await self.store.recall(tenant, collection, request)

    def _mode(self, asked: Recall, diversity: float) -> RecallMode:
        """The mode to run, or BadUserInput saying why the request cannot be served."""
        has_text = asked.text is not None
        has_dense = asked.vector is not None or (has_text and self.embedder is not None)
        no_dense = (
            "there is no dense vector: the request has no `vector` and the server has no "
            "embedder (EMBEDDER is unset)"
        )
        if not has_text and asked.vector is None:
            raise BadUserInput("recall needs `text`, `vector` or both")
        if diversity and not has_dense:
            raise BadUserInput(f"diversity needs dense vectors, and {no_dense}")
        if asked.mode is Mode.AUTO:
            if has_text and has_dense:
                return RecallMode.HYBRID
            return RecallMode.KEYWORD if has_text else RecallMode.SEMANTIC
        if asked.mode is not Mode.SEMANTIC and not has_text:
            raise BadUserInput(f"mode {asked.mode.value} ranks by keywords and needs `text`")
        if asked.mode is not Mode.KEYWORD and not has_dense:
            raise BadUserInput(f"mode {asked.mode.value} cannot be served: {no_dense}")
        return RecallMode(asked.mode.value)

    async def _embed_documents(self, texts: list[str]) -> list[list[float]]:
        assert self.embedder is not None
        try:
            vectors = await self.embedder.embed_documents(texts)
        except ApiError:
            raise
        except Exception:
            logger.exception("The embedder failed")
            raise EmbedderUnavailable() from None
        if len(vectors) != len(texts):
            logger.error("The embedder returned %s vectors for %s texts", len(vectors), len(texts))
            raise EmbedderUnavailable()
        return vectors

    async def _embed_query(self, text: str) -> list[float] | None:
        if self.embedder is None:
            return None
        try:
            return await self.embedder.embed_query(text)
        except ApiError:
            raise
        except Exception:
            logger.exception("The embedder failed")
            raise EmbedderUnavailable() from None


def _check_diversity(diversity: float | None) -> float:
    if diversity is None:
        return 0.0
    if not (math.isfinite(diversity) and 0.0 <= diversity <= 1.0):
        raise BadUserInput("diversity must be between 0 and 1")
    return diversity


# The engines compute the decay in 32-bit floats: a half-life under ~1e-45 s is 0 there and
# fails the whole recall, and a Qdrant server may refuse one past the 32-bit range. A
# millisecond to ~31,700 years covers every use.
MIN_HALF_LIFE_SECONDS = 1e-3
MAX_HALF_LIFE_SECONDS = 1e12


def _check_recency(recency: Recency) -> None:
    half_life = recency.half_life_seconds
    if not MIN_HALF_LIFE_SECONDS <= half_life <= MAX_HALF_LIFE_SECONDS:  # NaN included
        raise BadUserInput(
            f"recency.halfLifeSeconds must be between {MIN_HALF_LIFE_SECONDS:g} and "
            f"{MAX_HALF_LIFE_SECONDS:g} seconds"
        )
    if not (math.isfinite(recency.weight) and 0.0 <= recency.weight <= 1.0):
        raise BadUserInput("recency.weight must be between 0 and 1")


__all__ = ["MemoryService", "Mode", "NewMemory", "Recall"]
