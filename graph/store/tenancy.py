"""How tenants share the engine: logical collections partitioned inside physical ones.

Qdrant's recommended multi-tenant layout, the same in both adapters:

- One physical collection per vector shape (dimension and distance), shared by every
  tenant and every logical collection of that shape (`physical_name`).
- A logical collection is (tenant, name). Each of its points carries the partition
  key `"<tenant>/<name>"` in the internal payload field PARTITION_FIELD, indexed as a
  keyword with is_tenant=true; every read, count, scroll and delete the adapters run
  carries a must-condition on it (`partition_of`).
- Point ids are per logical collection: the engine stores the point under
  uuid5(partition, client id) (`stored_id`) and keeps the client's id in ID_FIELD, so
  two tenants (or two collections) using id 1 never touch each other's point.
- A memory is a point of the same collection (graph/memory/service.py): its metadata is
  the client payload, and its text and times are internal fields (TEXT_FIELD ...), out of
  reach of client filters like the others. It carries BM25 weights under the named
  sparse vector KEYWORDS_VECTOR, and the unnamed dense vector only when it has one.
- The client's payload is stored whole under PAYLOAD_FIELD and every client filter key
  is prefixed with it (`USER_KEY_PREFIX`), so no client filter can ever reach the
  internal fields, and a payload handed back is exactly the one the client stored.

Scroll therefore walks a collection in the order of stored ids, not of client ids; its
cursor is a stored id, opaque to the client.
"""

from __future__ import annotations

import functools
import hashlib
import re
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from graph.errors import BadUserInput
from graph.settings import Distance
from graph.store.models import (
    Condition,
    Filter,
    Match,
    MemoryPoint,
    MemoryRecord,
    Payload,
    PointId,
    Record,
    ScoredPoint,
    StoredPoint,
    check_finite,
    check_payload,
    check_vector_dimension,
    validate_filter,
)

PARTITION_FIELD = "_p"
ID_FIELD = "_id"
PAYLOAD_FIELD = "_u"
USER_KEY_PREFIX = PAYLOAD_FIELD + "."
# Memories: the text (present exactly on memories) and times as ISO 8601 in UTC.
TEXT_FIELD = "_t"
CREATED_FIELD = "_c"
UPDATED_FIELD = "_m"
EXPIRES_FIELD = "_x"
# The named sparse vector of memories' BM25 weights (IDF computed by the engine).
KEYWORDS_VECTOR = "bm25"

DEFAULT_TENANT = "default"
_TENANT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@:-]{0,127}$")
# Fixed forever: stored ids are derived from it.
_ID_NAMESPACE = uuid.UUID("5b0f3a52-6a4e-4d8e-9c1e-8c9d2f7b4a10")
# RFC 4122 bits of a version 5 UUID (as uuid.uuid5 sets them), over its 128-bit integer.
_VERSION_BITS = (0xF000 << 64) | (0xC000 << 48)
_VERSION_5 = (0x5000 << 64) | (0x8000 << 48)
# Payload integers are signed 64-bit: larger client ids are kept as decimal strings.
_MAX_PAYLOAD_INT = 2**63 - 1


def validate_tenant(tenant: str) -> str:
    """Tenants come from credentials; a name outside this alphabet is refused there."""
    if not isinstance(tenant, str) or not _TENANT.fullmatch(tenant):
        raise BadUserInput("Invalid tenant")
    return tenant


def physical_name(dimension: int, distance: Distance) -> str:
    return f"d{dimension}-{distance.value}"


def partition_of(tenant: str, collection: str) -> str:
    # Collection names never hold '/', so the key is unambiguous.
    return f"{tenant}/{collection}"


def stored_id(partition: str, point_id: PointId) -> str:
    return str(stored_uuid(partition, point_id))


def stored_uuid(partition: str, point_id: PointId) -> uuid.UUID:
    """stored_id as a UUID object, which the embedded engine reads faster than its text:
    uuid.uuid5(_ID_NAMESPACE, f"{partition}\\x00{point_id}"), with the partition's part of
    the hash computed once (a write converts thousands of ids of one partition)."""
    digest = _partition_hash(partition).copy()
    digest.update(str(point_id).encode())
    value = int.from_bytes(digest.digest()[:16])
    return uuid.UUID(int=(value & ~_VERSION_BITS) | _VERSION_5)


@functools.lru_cache(maxsize=1024)
def _partition_hash(partition: str) -> hashlib._Hash:
    return hashlib.sha1(_ID_NAMESPACE.bytes + f"{partition}\x00".encode(), usedforsecurity=False)


def stored_payload(partition: str, point_id: PointId, payload: Payload | None) -> Payload:
    # The engine converts a payload integer faster than a string; ids beyond signed 64 bits
    # (and UUIDs) are strings. client_id reads either.
    kept = point_id if isinstance(point_id, int) and point_id <= _MAX_PAYLOAD_INT else str(point_id)
    stored: Payload = {PARTITION_FIELD: partition, ID_FIELD: kept}
    if payload is not None:  # {} is kept, to read back as written (None as null)
        stored[PAYLOAD_FIELD] = payload
    return stored


def stored_memory(
    partition: str, memory: MemoryPoint, to_iso: Callable[[datetime], str] | None = None
) -> Payload:
    """to_iso: iso() memoised over a batch, whose memories mostly share their times."""
    to_iso = to_iso or iso
    stored = stored_payload(partition, memory.id, memory.metadata or None)
    stored[TEXT_FIELD] = memory.text
    stored[CREATED_FIELD] = to_iso(memory.created_at)
    # Absent while equal to the creation time (every string costs the engine's payload
    # conversion ~5 us a memory); memory_record reads it back.
    if memory.updated_at != memory.created_at:
        stored[UPDATED_FIELD] = to_iso(memory.updated_at)
    if memory.expires_at is not None:
        stored[EXPIRES_FIELD] = to_iso(memory.expires_at)
    return stored


def memory_record(stored: Payload | None, score: float = 0.0) -> MemoryRecord:
    stored = stored or {}
    expires = stored.get(EXPIRES_FIELD)
    created = datetime.fromisoformat(stored[CREATED_FIELD])
    updated = stored.get(UPDATED_FIELD)
    return MemoryRecord(
        id=client_id(stored),
        text=str(stored.get(TEXT_FIELD, "")),
        metadata=client_payload(stored) or None,
        created_at=created,
        updated_at=datetime.fromisoformat(updated) if updated else created,
        expires_at=datetime.fromisoformat(expires) if expires else None,
        score=score,
    )


def is_memory(stored: Payload | None) -> bool:
    return bool(stored) and TEXT_FIELD in stored  # type: ignore[operator]


def iso(moment: datetime) -> str:
    """UTC, as the engine's datetime filters and formulas read it."""
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def client_id(stored: Payload | None) -> PointId:
    raw = str((stored or {}).get(ID_FIELD, ""))
    return int(raw) if raw.isdigit() else raw


def client_payload(stored: Payload | None) -> Payload:
    payload = (stored or {}).get(PAYLOAD_FIELD)
    return payload if isinstance(payload, dict) else {}


def written_payload(stored: Payload | None) -> Payload | None:
    """The client's payload as written: None when the point was written without one."""
    payload = (stored or {}).get(PAYLOAD_FIELD)
    return payload if isinstance(payload, dict) else None


def user_key(key: str) -> str:
    return USER_KEY_PREFIX + key


def owns(partition: str, stored: Payload | None) -> bool:
    """Whether a stored point belongs to the logical collection of partition."""
    return stored is not None and stored.get(PARTITION_FIELD) == partition


def partition_condition(partition: str) -> Condition:
    return Condition(key=PARTITION_FIELD, match=Match(value=partition))


def prefixed(flt: Filter, prefix: str) -> Filter:
    """flt with every key (nested filters included) prefixed with prefix."""

    def condition(c: Condition) -> Condition:
        if c.filter is not None:
            return Condition(filter=prefixed(c.filter, prefix))
        assert c.key is not None  # validate_filter ran first
        return Condition(key=prefix + c.key, match=c.match, range=c.range)

    return Filter(
        must=[condition(c) for c in flt.must],
        should=[condition(c) for c in flt.should],
        must_not=[condition(c) for c in flt.must_not],
    )


def scoped_filter(partition: str, client_filter: Filter | None) -> Filter:
    """The filter an adapter sends to the engine for a client's filter on one logical
    collection: the client's keys can only name its own payload, and the partition
    condition is one more must (the first)."""
    if client_filter is None:
        return Filter(must=[partition_condition(partition)])
    user = prefixed(validate_filter(client_filter), USER_KEY_PREFIX)
    return Filter(
        must=[partition_condition(partition), *user.must],
        should=user.should,
        must_not=user.must_not,
    )


def client_record(stored: Payload | None, vector: list[float] | None) -> Record:
    """A stored point as the client sees it: its own id and payload."""
    return Record(id=client_id(stored), payload=written_payload(stored), vector=vector)


def client_scored(stored: Payload | None, score: float, vector: list[float] | None) -> ScoredPoint:
    return ScoredPoint(
        id=client_id(stored), score=score, payload=written_payload(stored), vector=vector
    )


def check_stored(
    points: Sequence[StoredPoint], partition: str, dimension: int, first: int = 0
) -> None:
    """Points as stored (an export) that may go into the logical collection of partition:
    each of it, under the stored id its own client id gives there, with vectors the
    collection takes. A point of another tenant or collection is refused, so an archive
    can never move points across tenants. first: the position of points[0] in the batch."""
    for i, point in enumerate(points, start=first):
        payload = point.payload
        if not isinstance(payload, dict) or payload.get(PARTITION_FIELD) != partition:
            raise BadUserInput(f"Stored point {i} belongs to another collection")
        if point.id != stored_id(partition, client_id(payload)):
            raise BadUserInput(f"Stored point {i} has an id not derived from its own")
        check_payload(client_payload(payload))
        if point.vector is not None:
            check_vector_dimension(point.vector, dimension, f"Vector of stored point {i}")
            check_finite(point.vector, f"Vector of stored point {i}")
        if set(point.sparse) - {KEYWORDS_VECTOR}:
            raise BadUserInput(f"Stored point {i} has an unknown sparse vector")
        if point.vector is None and not point.sparse:
            raise BadUserInput(f"Stored point {i} has no vector")
        for sparse in point.sparse.values():
            if len(sparse.indices) != len(sparse.values):
                raise BadUserInput(f"Stored point {i} has a malformed sparse vector")
            check_finite(sparse.values, f"Sparse vector of stored point {i}")


@dataclass(frozen=True, slots=True)
class CollectionEntry:
    """A logical collection, as the catalog of each adapter records it."""

    tenant: str
    name: str
    dimension: int
    distance: Distance
    partition: str = field(init=False)
    physical: str = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "partition", partition_of(self.tenant, self.name))
        object.__setattr__(self, "physical", physical_name(self.dimension, self.distance))

    def to_json(self) -> dict[str, Any]:
        return {
            "tenant": self.tenant,
            "name": self.name,
            "dimension": self.dimension,
            "distance": self.distance.value,
        }

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> CollectionEntry:
        return cls(
            tenant=str(raw["tenant"]),
            name=str(raw["name"]),
            dimension=int(raw["dimension"]),
            distance=Distance(raw["distance"]),
        )
