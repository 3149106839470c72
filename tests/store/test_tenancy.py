"""Tenants are confined to their own collections and points, in every adapter.

Each test runs per adapter (the `store` fixture). Tenant A's collection `notes` and
tenant B's `notes` are different collections with the same name; B tries to reach A's
points in every way the interface allows, and A's points stay where they were.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

from graph.errors import AlreadyExists, BadUserInput, NotFound
from graph.settings import Distance
from graph.store.base import VectorStore
from graph.store.models import Condition, Filter, Match, Point
from graph.store.tenancy import (
    ID_FIELD,
    PARTITION_FIELD,
    PAYLOAD_FIELD,
    USER_KEY_PREFIX,
    partition_of,
    scoped_filter,
)

if TYPE_CHECKING:
    from tests.store.conftest import Runner

UUID_A = "0f0e0d0c-0b0a-4908-8706-050403020100"
INTERNAL = (PARTITION_FIELD, ID_FIELD, PAYLOAD_FIELD)


def on(field: str, value: str | int) -> Filter:
    return Filter(must=[Condition(key=field, match=Match(value=value))])


@pytest.fixture
def tenants(store: VectorStore, run: Runner) -> Iterator[tuple[str, str, str]]:
    """Tenants a and b (unique per test), each with a collection of the same name holding
    points with the same ids 1, 2 and UUID_A."""
    suffix = uuid.uuid4().hex[:8]
    a, b, name = f"a-{suffix}", f"b-{suffix}", f"notes_{suffix}"
    for tenant in (a, b):
        run(store.create_collection(tenant, name, 2, Distance.DOT))
        run(
            store.upsert(
                tenant,
                name,
                [
                    Point(1, [1.0, 0.0], {"owner": tenant, "k": 1}),
                    Point(2, [0.0, 1.0], {"owner": tenant, "k": 2}),
                    Point(UUID_A, [1.0, 1.0], {"owner": tenant, "k": 3}),
                ],
            )
        )
    yield a, b, name
    for tenant in (a, b):
        for info in run(store.list_collections(tenant)):
            run(store.delete_collection(tenant, info.name))


def owners(store: VectorStore, run: Runner, tenant: str, name: str) -> dict[object, object]:
    page = run(store.scroll(tenant, name, limit=100))
    return {r.id: r.payload["owner"] if r.payload else None for r in page.points}


def assert_untouched(store: VectorStore, run: Runner, tenant: str, name: str) -> None:
    assert owners(store, run, tenant, name) == {1: tenant, 2: tenant, UUID_A: tenant}


def test_same_ids_in_two_tenants_are_two_points(
    store: VectorStore, run: Runner, tenants: tuple[str, str, str]
) -> None:
    a, b, name = tenants
    run(store.upsert(b, name, [Point(1, [0.5, 0.5], {"owner": b, "k": 9})]))
    assert [r.payload for r in run(store.retrieve(a, name, [1]))] == [{"owner": a, "k": 1}]
    assert [r.payload for r in run(store.retrieve(b, name, [1]))] == [{"owner": b, "k": 9}]
    assert run(store.delete_ids(b, name, [1, 2, UUID_A])) == 3
    assert_untouched(store, run, a, name)
    assert run(store.count(b, name)) == 0


def test_every_read_sees_only_the_tenants_points(
    store: VectorStore, run: Runner, tenants: tuple[str, str, str]
) -> None:
    a, b, name = tenants
    hits = run(store.query(b, name, [1.0, 1.0], limit=100))
    assert {h.payload["owner"] for h in hits if h.payload} == {b}
    assert len(hits) == 3
    assert run(store.count(b, name)) == 3
    assert run(store.count(b, name, on("owner", a))) == 0
    assert run(store.query(b, name, [1.0, 1.0], limit=10, filter=on("owner", a))) == []
    assert set(owners(store, run, b, name).values()) == {b}
    assert run(store.get_collection(b, name)).points_count == 3


@pytest.mark.parametrize("field", INTERNAL)
def test_filters_on_internal_fields_reach_nothing(
    store: VectorStore, run: Runner, tenants: tuple[str, str, str], field: str
) -> None:
    a, b, name = tenants
    for value in (partition_of(a, name), "1", a):
        flt = on(field, value)
        assert run(store.count(b, name, flt)) == 0
        assert run(store.query(b, name, [1.0, 0.0], limit=10, filter=flt)) == []
        assert run(store.scroll(b, name, limit=10, filter=flt)).points == []
        assert run(store.delete_by_filter(b, name, flt)) == 0
        run(store.upsert(b, name, [Point(5, [1.0, 0.0], {"owner": b})]))
        own = run(store.count(b, name))
        nested = Filter(must_not=[Condition(filter=flt)])
        assert run(store.delete_by_filter(b, name, nested)) == own  # b's own points only
        assert run(store.count(b, name)) == 0
    assert_untouched(store, run, a, name)


def test_delete_by_filter_matching_everything_stays_in_the_tenant(
    store: VectorStore, run: Runner, tenants: tuple[str, str, str]
) -> None:
    a, b, name = tenants
    everything = Filter(must_not=[Condition(key="nope", match=Match(value="x"))])
    assert run(store.delete_by_filter(b, name, everything)) == 3
    assert run(store.count(b, name)) == 0
    assert_untouched(store, run, a, name)


def test_internal_fields_never_come_back_and_client_ones_round_trip(
    store: VectorStore, run: Runner, tenants: tuple[str, str, str]
) -> None:
    a, b, name = tenants
    # A client may use the internal names in its own payload: they stay its own.
    sneaky = {PARTITION_FIELD: partition_of(a, name), ID_FIELD: "1", PAYLOAD_FIELD: {"x": 1}}
    run(store.upsert(b, name, [Point(7, [1.0, 0.0], sneaky)]))
    assert [r.payload for r in run(store.retrieve(b, name, [7]))] == [sneaky]
    assert run(store.retrieve(a, name, [7])) == []
    assert run(store.count(b, name, on(PARTITION_FIELD, partition_of(a, name)))) == 1
    assert_untouched(store, run, a, name)
    for hit in run(store.query(a, name, [1.0, 0.0], limit=10, with_vector=True)):
        assert hit.payload is not None and not set(hit.payload) & set(INTERNAL)
    for record in run(store.scroll(a, name, limit=10)).points:
        assert record.payload is not None and not set(record.payload) & set(INTERNAL)


def test_collections_are_per_tenant(
    store: VectorStore, run: Runner, tenants: tuple[str, str, str]
) -> None:
    a, b, name = tenants
    only_a = f"x{name}"
    run(store.create_collection(a, only_a, 3, Distance.COSINE))
    assert only_a in [c.name for c in run(store.list_collections(a))]
    assert only_a not in [c.name for c in run(store.list_collections(b))]
    for call in (
        lambda: store.get_collection(b, only_a),
        lambda: store.count(b, only_a),
        lambda: store.retrieve(b, only_a, [1]),
        lambda: store.scroll(b, only_a, limit=1),
        lambda: store.delete_ids(b, only_a, [1]),
        lambda: store.delete_collection(b, only_a),
        lambda: store.upsert(b, only_a, [Point(1, [1.0, 0.0, 0.0])]),
    ):
        with pytest.raises(NotFound):
            run(call())
    # The same name in b is b's own, with its own shape.
    run(store.create_collection(b, only_a, 2, Distance.EUCLID))
    with pytest.raises(AlreadyExists):
        run(store.create_collection(a, only_a, 3, Distance.COSINE))
    assert run(store.get_collection(a, only_a)).dimension == 3
    assert run(store.get_collection(b, only_a)).dimension == 2
    # Deleting a's collection of that name leaves b's.
    run(store.delete_collection(a, name))
    with pytest.raises(NotFound):
        run(store.count(a, name))
    assert_untouched(store, run, b, name)
    run(store.create_collection(a, name, 2, Distance.DOT))  # recreated: empty
    assert run(store.count(a, name)) == 0


def test_invalid_tenants_are_refused(store: VectorStore, run: Runner) -> None:
    for tenant in ("", "a/b", "../x", "a b", "x" * 200):
        with pytest.raises(BadUserInput):
            run(store.create_collection(tenant, "c", 2, Distance.DOT))
        with pytest.raises((BadUserInput, NotFound)):
            run(store.count(tenant, "c"))


def test_scoped_filter_confines_a_client_filter_to_one_partition() -> None:
    # The rule both adapters translate: the partition first among the musts, every client
    # key (nested ones too) under the client's payload.
    nested = Filter(should=[Condition(key="tag", match=Match(any=["x", "y"]))])
    client = Filter(
        must=[Condition(key="kind", match=Match(value="note"))],
        must_not=[Condition(filter=nested)],
    )
    scoped = scoped_filter("t/c", client)
    assert scoped.must == [
        Condition(key=PARTITION_FIELD, match=Match(value="t/c")),
        Condition(key=USER_KEY_PREFIX + "kind", match=Match(value="note")),
    ]
    assert scoped.should == []
    assert scoped.must_not == [
        Condition(
            filter=Filter(
                should=[Condition(key=USER_KEY_PREFIX + "tag", match=Match(any=["x", "y"]))]
            )
        )
    ]
    assert client.must[0].key == "kind"  # the client's filter is left as it was
    assert scoped_filter("t/c", None) == Filter(
        must=[Condition(key=PARTITION_FIELD, match=Match(value="t/c"))]
    )


def test_scoped_filter_validates_the_client_filter() -> None:
    with pytest.raises(BadUserInput):
        scoped_filter("t/c", Filter(must=[Condition(key="kind")]))
