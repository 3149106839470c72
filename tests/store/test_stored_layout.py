"""How a point and a memory are laid out in the engine: stored ids, the internal payload
fields, and records read back, including the forms earlier releases wrote."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from graph.store.models import MemoryPoint, SparseVector
from graph.store.tenancy import (
    CREATED_FIELD,
    ID_FIELD,
    UPDATED_FIELD,
    client_id,
    memory_record,
    stored_id,
    stored_memory,
    stored_payload,
    stored_uuid,
)

NAMESPACE = uuid.UUID("5b0f3a52-6a4e-4d8e-9c1e-8c9d2f7b4a10")
MAX_ID = 2**64 - 1
client_ids = st.one_of(st.integers(0, MAX_ID), st.uuids().map(str))
partitions = st.text(min_size=1, max_size=40).filter(lambda p: "\x00" not in p)
# No deadline: a busy machine's stall is not a slow example.
FAST = settings(deadline=None, database=None)


def test_a_stored_id_is_the_one_every_release_derived() -> None:
    # Data directories and archives hold points under these ids: they never change.
    assert stored_id("default/memories", 42) == "f6fd950e-549f-5aaf-b78c-b4a25fa9e331"


@FAST
@given(partitions, client_ids)
def test_stored_ids_are_uuid5_of_the_partition_and_client_id(
    partition: str, point_id: object
) -> None:
    expected = uuid.uuid5(NAMESPACE, f"{partition}\x00{point_id}")
    assert stored_uuid(partition, point_id) == expected  # type: ignore[arg-type]
    assert stored_uuid(partition, point_id).version == 5  # type: ignore[arg-type]


@FAST
@given(client_ids)
def test_client_ids_survive_the_payload_as_integers_or_strings(point_id: object) -> None:
    stored = stored_payload("t/c", point_id, None)  # type: ignore[arg-type]
    assert client_id(stored) == point_id
    # Integers beyond the engine's signed 64-bit payload integers are kept as text.
    assert isinstance(stored[ID_FIELD], int) == (isinstance(point_id, int) and point_id < 2**63)
    # Earlier releases wrote every id as text: read the same.
    assert client_id({**stored, ID_FIELD: str(point_id)}) == point_id


def memory(created: datetime, updated: datetime) -> MemoryPoint:
    return MemoryPoint(
        id=7,
        text="likes tea",
        keywords=SparseVector([1], [1.0]),
        vector=None,
        metadata={"user": "u1"},
        created_at=created,
        updated_at=updated,
        expires_at=None,
    )


def test_an_unchanged_memory_stores_one_time_and_reads_back_two() -> None:
    now = datetime(2026, 11, 29, 14, 0, 0, 123456, tzinfo=UTC)
    stored = stored_memory("t/c", memory(now, now))
    assert UPDATED_FIELD not in stored
    record = memory_record(stored)
    assert record.created_at == record.updated_at == now
    assert record.id == 7 and record.text == "likes tea" and record.metadata == {"user": "u1"}


def test_a_replaced_memory_keeps_both_times() -> None:
    created = datetime(2026, 11, 29, 14, 0, tzinfo=UTC)
    updated = created + timedelta(hours=1)
    stored = stored_memory("t/c", memory(created, updated))
    record = memory_record(stored)
    assert (record.created_at, record.updated_at) == (created, updated)


def test_a_memory_an_earlier_release_wrote_reads_the_same() -> None:
    now = datetime(2026, 11, 29, 14, 0, tzinfo=UTC)
    written = {
        "_p": "t/c",
        ID_FIELD: "7",
        "_u": {"user": "u1"},
        "_t": "likes tea",
        CREATED_FIELD: "2026-11-29T14:00:00Z",
        UPDATED_FIELD: "2026-11-29T14:00:00Z",
    }
    assert memory_record(written) == memory_record(stored_memory("t/c", memory(now, now)))
