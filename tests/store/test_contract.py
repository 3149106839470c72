"""The contract every VectorStore adapter keeps (see graph/store/base.py).

Each test runs once per adapter through the parametrized `store` fixture (conftest.py):
the embedded engine, qdrant-client's local mode, and a real Qdrant server when
QDRANT_URL is set. `collection` is a fresh, empty collection of dimension 4 with
cosine distance; `run(coro)` drives a coroutine on the test's event loop.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any

import pytest

from graph.errors import AlreadyExists, BadUserInput, NotFound
from graph.settings import Distance
from graph.store.base import VectorStore
from graph.store.models import (
    Condition,
    Filter,
    Match,
    Point,
    PointId,
    Range,
    normalize_point_id,
)
from tests.store.conftest import TENANT

if TYPE_CHECKING:
    from tests.store.conftest import CollectionNames, Runner

UUID_A = "0f0e0d0c-0b0a-4908-8706-050403020100"
UUID_B = "7a3c1e2f-9b8d-4c6e-a5f4-3d2c1b0a9e8f"
UUID_C = "f47ac10b-58cc-4372-a567-0e02b2c3d479"
MAX_ID = 2**64 - 1


def unit(*xs: float) -> list[float]:
    """xs padded to dimension 4 and scaled to length 1 (cosine stores keep unit vectors)."""
    v = [*xs, *[0.0] * (4 - len(xs))]
    norm = math.sqrt(sum(x * x for x in v))
    return [x / norm for x in v]


def key(field: str, **match: Any) -> Condition:
    """A match condition: key("kind", value="note"), key("n", any=[1, 2]), key("n", except_=[3])."""
    return Condition(key=field, match=Match(**match))


def rng(field: str, **bounds: float) -> Condition:
    return Condition(key=field, range=Range(**bounds))


def nested(flt: Filter) -> Condition:
    return Condition(filter=flt)


def ids_of(points: list[Any]) -> list[PointId]:
    return [p.id for p in points]


# Collections


def test_ping_answers(store: VectorStore, run: Runner) -> None:
    run(store.ping())


def test_create_get_list_delete_collection(
    store: VectorStore, run: Runner, names: CollectionNames
) -> None:
    b, a = names("b"), names("a")

    created = run(store.create_collection(TENANT, b, 3, Distance.DOT))
    assert (created.name, created.dimension, created.distance, created.points_count) == (
        b,
        3,
        Distance.DOT,
        0,
    )
    run(store.create_collection(TENANT, a, 5, Distance.EUCLID))

    info = run(store.get_collection(TENANT, a))
    assert (info.name, info.dimension, info.distance, info.points_count) == (
        a,
        5,
        Distance.EUCLID,
        0,
    )

    listed = run(store.list_collections(TENANT))
    assert [c.name for c in listed] == sorted(c.name for c in listed)
    ours = [c for c in listed if c.name in (a, b)]
    assert [(c.name, c.dimension, c.distance) for c in ours] == [
        (a, 5, Distance.EUCLID),
        (b, 3, Distance.DOT),
    ]

    assert run(store.dimension(TENANT, a)) == 5
    assert run(store.dimension(TENANT, b)) == 3

    run(store.delete_collection(TENANT, b))
    with pytest.raises(NotFound):
        run(store.get_collection(TENANT, b))
    with pytest.raises(NotFound):
        run(store.dimension(TENANT, b))
    assert b not in [c.name for c in run(store.list_collections(TENANT))]


def test_points_count_follows_writes(store: VectorStore, run: Runner, collection: str) -> None:
    run(store.upsert(TENANT, collection, [Point(i, unit(1, i)) for i in range(1, 4)]))
    assert run(store.get_collection(TENANT, collection)).points_count == 3
    run(store.delete_ids(TENANT, collection, [1]))
    assert run(store.get_collection(TENANT, collection)).points_count == 2


def test_create_existing_collection_is_already_exists(
    store: VectorStore, run: Runner, collection: str
) -> None:
    with pytest.raises(AlreadyExists):
        run(store.create_collection(TENANT, collection, 4, Distance.COSINE))
    with pytest.raises(AlreadyExists):
        run(store.create_collection(TENANT, collection, 8, Distance.DOT))


def test_missing_collection_is_not_found(
    store: VectorStore, run: Runner, names: CollectionNames
) -> None:
    missing = names("missing")
    with pytest.raises(NotFound):
        run(store.get_collection(TENANT, missing))
    with pytest.raises(NotFound):
        run(store.delete_collection(TENANT, missing))


POINT_OPERATIONS: dict[str, Callable[[VectorStore, str], Coroutine[Any, Any, object]]] = {
    "upsert": lambda s, c: s.upsert(TENANT, c, [Point(1, unit(1))]),
    "upsert-empty": lambda s, c: s.upsert(TENANT, c, []),
    "query": lambda s, c: s.query(TENANT, c, unit(1), limit=3),
    "retrieve": lambda s, c: s.retrieve(TENANT, c, [1]),
    "delete_ids": lambda s, c: s.delete_ids(TENANT, c, [1]),
    "delete_by_filter": lambda s, c: s.delete_by_filter(
        TENANT, c, Filter(must=[key("k", value=1)])
    ),
    "count": lambda s, c: s.count(TENANT, c),
    "scroll": lambda s, c: s.scroll(TENANT, c, limit=3),
}


@pytest.mark.parametrize("operation", POINT_OPERATIONS)
def test_point_operations_on_missing_collection_are_not_found(
    store: VectorStore, run: Runner, names: CollectionNames, operation: str
) -> None:
    with pytest.raises(NotFound):
        run(POINT_OPERATIONS[operation](store, names("missing")))


def test_invalid_collection_name_or_dimension_is_bad_user_input(
    store: VectorStore, run: Runner
) -> None:
    for bad_name in ("", "-starts-with-dash", "has space", "x" * 64, "dots.not.allowed"):
        with pytest.raises(BadUserInput):
            run(store.create_collection(TENANT, bad_name, 4, Distance.COSINE))
    with pytest.raises(BadUserInput):
        run(store.create_collection(TENANT, "zero_dim", 0, Distance.COSINE))


def test_ensure_collection_creates_when_missing_and_keeps_existing(
    store: VectorStore, run: Runner, names: CollectionNames
) -> None:
    name = names("ensured")
    run(store.ensure_collection(TENANT, name, 4, Distance.DOT))
    info = run(store.get_collection(TENANT, name))
    assert (info.dimension, info.distance) == (4, Distance.DOT)

    run(store.upsert(TENANT, name, [Point(1, [1.0, 2.0, 3.0, 4.0])]))
    run(store.ensure_collection(TENANT, name, 4, Distance.DOT))
    run(store.ensure_collection(TENANT, name, 8, Distance.COSINE))  # existing one kept as it is
    info = run(store.get_collection(TENANT, name))
    assert (info.dimension, info.distance, info.points_count) == (4, Distance.DOT, 1)


def test_concurrent_ensure_collection_calls_both_succeed(
    store: VectorStore, run: Runner, names: CollectionNames
) -> None:
    name = names("raced")

    async def race() -> None:
        await asyncio.gather(
            *(store.ensure_collection(TENANT, name, 4, Distance.COSINE) for _ in range(3))
        )

    run(race())
    assert [c.name for c in run(store.list_collections(TENANT))].count(name) == 1


def test_vector_shapes_in_use_are_bounded_and_freed_by_deletes(
    store: VectorStore, run: Runner, names: CollectionNames
) -> None:
    """Each shape (dimension, distance) is a physical collection: at most 8 (the default
    MAX_VECTOR_SHAPES) at once; deleting the last collection of one frees its place."""
    in_use = len(run(store.physical_collections()))
    if in_use >= 8:
        pytest.skip("the Qdrant server already holds 8 shapes of this API")
    made = [names(f"s{i}") for i in range(8 - in_use)]
    for i, name in enumerate(made):
        run(store.create_collection(TENANT, name, 1_000 + i, Distance.DOT))
    one_more = names("one_more")
    with pytest.raises(BadUserInput, match="At most 8 vector shapes"):
        run(store.create_collection(TENANT, one_more, 999, Distance.DOT))
    run(store.delete_collection(TENANT, made[0]))
    run(store.create_collection(TENANT, one_more, 999, Distance.DOT))
    run(store.upsert(TENANT, one_more, [Point(1, [1.0] * 999)]))
    assert run(store.count(TENANT, one_more)) == 1
    run(store.delete_collection(TENANT, one_more))
    run(store.create_collection(TENANT, one_more, 999, Distance.DOT))  # the shape, made again
    assert run(store.count(TENANT, one_more)) == 0


# Upsert, ids and payloads


def test_upsert_returns_count_and_replaces_by_id(
    store: VectorStore, run: Runner, collection: str
) -> None:
    assert run(store.upsert(TENANT, collection, [])) == 0
    written = run(
        store.upsert(
            TENANT,
            collection,
            [
                Point(1, unit(1, 0), {"v": "old"}),
                Point(2, unit(0, 1), {"v": "two"}),
            ],
        )
    )
    assert written == 2

    assert run(store.upsert(TENANT, collection, [Point(1, unit(0, 0, 1), {"v": "new"})])) == 1
    assert run(store.count(TENANT, collection)) == 2
    [record] = run(store.retrieve(TENANT, collection, [1], with_vector=True))
    assert record.payload == {"v": "new"}
    assert record.vector == pytest.approx(unit(0, 0, 1), abs=1e-6)
    best = run(store.query(TENANT, collection, unit(0, 0, 1), limit=1))
    assert ids_of(best) == [1]
    assert best[0].score == pytest.approx(1.0, abs=1e-5)


def test_int_and_uuid_ids_round_trip_in_canonical_form(
    store: VectorStore, run: Runner, collection: str
) -> None:
    raw_ids: list[object] = [0, "42", MAX_ID, UUID_B.upper(), "{" + UUID_A + "}"]
    ids = [normalize_point_id(r) for r in raw_ids]
    assert ids == [0, 42, MAX_ID, UUID_B, UUID_A]
    run(store.upsert(TENANT, collection, [Point(i, unit(1, n + 1)) for n, i in enumerate(ids)]))

    page = run(store.scroll(TENANT, collection, limit=10))
    assert sorted(ids_of(page.points), key=str) == sorted(ids, key=str)
    assert {i: type(i) for i in ids_of(page.points)} == {i: type(i) for i in ids}
    assert ids_of(run(store.retrieve(TENANT, collection, ids))) == ids
    assert sorted(
        map(str, ids_of(run(store.query(TENANT, collection, unit(1), limit=10))))
    ) == sorted(map(str, ids))


def test_payload_round_trips_nested_json(store: VectorStore, run: Runner, collection: str) -> None:
    payload = {
        "text": "héllo, wörld ✓",
        "n": 3,
        "big": 2**53,
        "f": 1.5,
        "flag": True,
        "nothing": None,
        "tags": ["a", "b"],
        "meta": {"source": "chat", "deep": {"list": [1, {"y": [2.5, "z"]}], "empty": {}}},
    }
    run(store.upsert(TENANT, collection, [Point(1, unit(1), payload), Point(2, unit(0, 1))]))

    # A point without a payload reads back None (GraphQL's null, as the schema says).
    assert [r.payload for r in run(store.retrieve(TENANT, collection, [1, 2]))] == [payload, None]
    assert [p.payload for p in run(store.query(TENANT, collection, unit(1), limit=2))] == [
        payload,
        None,
    ]
    scrolled = run(store.scroll(TENANT, collection, limit=2)).points
    assert {r.id: r.payload for r in scrolled} == {1: payload, 2: None}


# Query


ORDERED = [  # cosine similarity to unit(1): 1, ~0.98, ~0.71, 0, -1
    (1, unit(1, 0)),
    (5, unit(1, 0.2)),
    (2, unit(1, 1)),
    (3, unit(0, 1)),
    (4, unit(-1, 0)),
]


@pytest.fixture
def ranked(store: VectorStore, run: Runner, collection: str) -> str:
    run(store.upsert(TENANT, collection, [Point(i, v, {"i": i}) for i, v in reversed(ORDERED)]))
    return collection


def test_query_returns_best_first_with_payload(
    store: VectorStore, run: Runner, ranked: str
) -> None:
    hits = run(store.query(TENANT, ranked, unit(1), limit=10))
    assert ids_of(hits) == [1, 5, 2, 3, 4]
    expected = [1.0, 1 / math.sqrt(1.04), 1 / math.sqrt(2), 0.0, -1.0]
    assert [h.score for h in hits] == pytest.approx(expected, abs=1e-5)
    assert [h.payload for h in hits] == [{"i": i} for i in (1, 5, 2, 3, 4)]
    assert all(h.vector is None for h in hits)


def test_query_limit_and_offset(store: VectorStore, run: Runner, ranked: str) -> None:
    assert ids_of(run(store.query(TENANT, ranked, unit(1), limit=2))) == [1, 5]
    assert ids_of(run(store.query(TENANT, ranked, unit(1), limit=2, offset=1))) == [5, 2]
    assert ids_of(run(store.query(TENANT, ranked, unit(1), limit=10, offset=3))) == [3, 4]
    assert run(store.query(TENANT, ranked, unit(1), limit=10, offset=5)) == []


def test_query_score_threshold_keeps_scores_at_or_above_it(
    store: VectorStore, run: Runner, ranked: str
) -> None:
    hits = run(store.query(TENANT, ranked, unit(1), limit=10, score_threshold=0.5))
    assert ids_of(hits) == [1, 5, 2]
    assert ids_of(run(store.query(TENANT, ranked, unit(1), limit=10, score_threshold=0.99))) == [1]
    assert (
        run(store.query(TENANT, ranked, unit(-1, -1, -1, -1), limit=10, score_threshold=0.9)) == []
    )


def test_query_with_vector(store: VectorStore, run: Runner, collection: str) -> None:
    vector = [0.6, 0.8, 0.0, 0.0]  # unit length: cosine stores may normalise
    run(store.upsert(TENANT, collection, [Point(UUID_A, vector)]))
    [hit] = run(store.query(TENANT, collection, vector, limit=1, with_vector=True))
    assert hit.id == UUID_A
    assert hit.vector == pytest.approx(vector, abs=1e-6)


def test_query_vector_of_wrong_dimension_is_bad_user_input(
    store: VectorStore, run: Runner, ranked: str
) -> None:
    with pytest.raises(
        BadUserInput, match=r"^Query vector has 3 dimensions; the collection has 4$"
    ):
        run(store.query(TENANT, ranked, [1.0, 0.0, 0.0], limit=1))


def test_dot_collection_orders_by_largest_product(
    store: VectorStore, run: Runner, names: CollectionNames
) -> None:
    name = names("dot")
    run(store.create_collection(TENANT, name, 4, Distance.DOT))
    run(
        store.upsert(
            TENANT,
            name,
            [
                Point(1, [1.0, 0.0, 0.0, 0.0]),
                Point(2, [2.0, 0.0, 0.0, 0.0]),
                Point(3, [0.0, 3.0, 0.0, 0.0]),
                Point(4, [-1.0, 0.0, 0.0, 0.0]),
            ],
        )
    )
    hits = run(store.query(TENANT, name, [1.0, 1.0, 0.0, 0.0], limit=10))
    assert ids_of(hits) == [3, 2, 1, 4]
    assert [h.score for h in hits] == pytest.approx([3.0, 2.0, 1.0, -1.0], abs=1e-5)


def test_euclid_collection_orders_by_smallest_distance(
    store: VectorStore, run: Runner, names: CollectionNames
) -> None:
    name = names("euclid")
    run(store.create_collection(TENANT, name, 4, Distance.EUCLID))
    run(
        store.upsert(
            TENANT,
            name,
            [
                Point(1, [0.0, 0.0, 0.0, 0.0]),
                Point(2, [1.0, 0.0, 0.0, 0.0]),
                Point(3, [3.0, 0.0, 0.0, 0.0]),
                Point(4, [0.0, 2.0, 0.0, 0.0]),
            ],
        )
    )
    hits = run(store.query(TENANT, name, [1.0, 0.0, 0.0, 0.0], limit=10, with_vector=True))
    assert ids_of(hits) == [2, 1, 3, 4]
    assert hits[0].score == pytest.approx(0.0, abs=1e-5)
    assert [h.score for h in hits] == sorted(h.score for h in hits)
    assert hits[2].vector == [3.0, 0.0, 0.0, 0.0]  # euclid keeps vectors as given


# Filters

FILTER_POINTS: list[tuple[PointId, dict[str, Any]]] = [
    (
        1,
        {
            "kind": "note",
            "n": 1,
            "flag": True,
            "weight": 0.5,
            "tags": ["a", "b"],
            "meta": {"source": "chat"},
        },
    ),
    (
        2,
        {
            "kind": "task",
            "n": 2,
            "flag": False,
            "weight": 1.5,
            "tags": ["b"],
            "meta": {"source": "email"},
        },
    ),
    (
        3,
        {
            "kind": "note",
            "n": 3,
            "flag": False,
            "weight": 2.5,
            "tags": [],
            "meta": {"source": "chat"},
        },
    ),
    (4, {"kind": "fact", "n": 4, "flag": True, "weight": 3.5, "tags": ["c"]}),  # no meta
    (
        UUID_A,
        {
            "kind": "task",
            "n": 5,
            "flag": True,
            "weight": 4.5,
            "tags": ["a"],
            "meta": {"source": "web"},
        },
    ),
]
ALL: set[PointId] = {i for i, _ in FILTER_POINTS}

FILTERS: dict[str, tuple[Filter, set[PointId]]] = {
    "value-str": (Filter(must=[key("kind", value="note")]), {1, 3}),
    "value-int": (Filter(must=[key("n", value=2)]), {2}),
    "value-bool-true": (Filter(must=[key("flag", value=True)]), {1, 4, UUID_A}),
    "value-bool-false": (Filter(must=[key("flag", value=False)]), {2, 3}),
    "value-in-array": (Filter(must=[key("tags", value="a")]), {1, UUID_A}),
    "any-str": (Filter(must=[key("kind", any=["note", "fact"])]), {1, 3, 4}),
    "any-int": (Filter(must=[key("n", any=[2, 5])]), {2, UUID_A}),
    "except-str": (Filter(must=[key("kind", except_=["note"])]), {2, 4, UUID_A}),
    "except-int": (Filter(must=[key("n", except_=[1, 2, 3])]), {4, UUID_A}),
    "range-gt": (Filter(must=[rng("n", gt=3)]), {4, UUID_A}),
    "range-gte": (Filter(must=[rng("n", gte=3)]), {3, 4, UUID_A}),
    "range-lt": (Filter(must=[rng("n", lt=2)]), {1}),
    "range-lte": (Filter(must=[rng("n", lte=2)]), {1, 2}),
    "range-float-between": (Filter(must=[rng("weight", gt=1.0, lt=3.0)]), {2, 3}),
    "should": (Filter(should=[key("kind", value="fact"), key("n", value=1)]), {1, 4}),
    "must_not": (Filter(must_not=[key("kind", value="note")]), {2, 4, UUID_A}),
    "must-and-must_not": (
        Filter(must=[key("flag", value=True)], must_not=[key("kind", value="task")]),
        {1, 4},
    ),
    "nested-should-in-must": (
        Filter(
            must=[
                nested(Filter(should=[key("kind", value="note"), key("kind", value="task")])),
                rng("n", gte=2),
            ]
        ),
        {2, 3, UUID_A},
    ),
    "nested-in-must_not": (
        Filter(
            must_not=[
                nested(Filter(must=[key("kind", value="note"), key("flag", value=False)])),
            ]
        ),
        {1, 2, 4, UUID_A},
    ),
    "dotted-key": (Filter(must=[key("meta.source", value="chat")]), {1, 3}),
    "dotted-key-any": (Filter(must=[key("meta.source", any=["email", "web"])]), {2, UUID_A}),
    "must_not-on-missing-key": (
        Filter(must_not=[key("meta.source", value="chat")]),
        {2, 4, UUID_A},
    ),
    "empty-filter": (Filter(), ALL),
}


@pytest.fixture
def tagged(store: VectorStore, run: Runner, collection: str) -> str:
    run(
        store.upsert(
            TENANT,
            collection,
            [Point(i, unit(1, n), payload) for n, (i, payload) in enumerate(FILTER_POINTS)],
        )
    )
    return collection


def scroll_all(store: VectorStore, run: Runner, collection: str, **kwargs: Any) -> list[Any]:
    records: list[Any] = []
    cursor: PointId | None = None
    while True:
        page = run(store.scroll(TENANT, collection, limit=2, cursor=cursor, **kwargs))
        records.extend(page.points)
        if page.next_cursor is None:
            return records
        cursor = page.next_cursor


@pytest.mark.parametrize("case", FILTERS)
def test_filter_selects_the_same_points_in_query_scroll_and_count(
    store: VectorStore, run: Runner, tagged: str, case: str
) -> None:
    flt, expected = FILTERS[case]
    queried = run(store.query(TENANT, tagged, unit(1), limit=10, filter=flt))
    assert set(ids_of(queried)) == expected
    scrolled = scroll_all(store, run, tagged, filter=flt)
    assert set(ids_of(scrolled)) == expected
    assert len(scrolled) == len(expected)
    assert run(store.count(TENANT, tagged, flt)) == len(expected)


def test_filtered_query_still_orders_best_first(
    store: VectorStore, run: Runner, ranked: str
) -> None:
    flt = Filter(must_not=[key("i", value=5)])
    assert ids_of(run(store.query(TENANT, ranked, unit(1), limit=10, filter=flt))) == [1, 2, 3, 4]


# Retrieve, delete, count


def test_retrieve_keeps_order_of_ids_and_leaves_out_missing(
    store: VectorStore, run: Runner, tagged: str
) -> None:
    records = run(store.retrieve(TENANT, tagged, [3, 99, UUID_A, UUID_C, 1]))
    assert ids_of(records) == [3, UUID_A, 1]
    assert records[0].payload == dict(FILTER_POINTS)[3]
    assert all(r.vector is None for r in records)
    assert run(store.retrieve(TENANT, tagged, [])) == []
    assert run(store.retrieve(TENANT, tagged, [98, 99])) == []


def test_retrieve_with_vector(store: VectorStore, run: Runner, collection: str) -> None:
    run(store.upsert(TENANT, collection, [Point(7, [0.0, 0.6, 0.0, 0.8])]))
    [record] = run(store.retrieve(TENANT, collection, [7], with_vector=True))
    assert record.vector == pytest.approx([0.0, 0.6, 0.0, 0.8], abs=1e-6)


def test_delete_ids_returns_how_many_existed(store: VectorStore, run: Runner, tagged: str) -> None:
    assert run(store.delete_ids(TENANT, tagged, [1, 99, UUID_A, UUID_C])) == 2
    assert run(store.count(TENANT, tagged)) == 3
    assert run(store.retrieve(TENANT, tagged, [1, UUID_A, 2])) != []
    assert ids_of(run(store.retrieve(TENANT, tagged, [1, UUID_A, 2]))) == [2]
    assert run(store.delete_ids(TENANT, tagged, [1, UUID_A])) == 0
    assert run(store.delete_ids(TENANT, tagged, [])) == 0


def test_delete_by_filter_returns_how_many_matched(
    store: VectorStore, run: Runner, tagged: str
) -> None:
    assert (
        run(store.delete_by_filter(TENANT, tagged, Filter(must=[key("kind", value="note")]))) == 2
    )
    assert run(store.count(TENANT, tagged)) == 3
    assert run(store.count(TENANT, tagged, Filter(must=[key("kind", value="note")]))) == 0
    assert (
        run(store.delete_by_filter(TENANT, tagged, Filter(must=[key("kind", value="note")]))) == 0
    )
    assert {r.id for r in scroll_all(store, run, tagged)} == {2, 4, UUID_A}


def test_count_with_and_without_filter(store: VectorStore, run: Runner, collection: str) -> None:
    assert run(store.count(TENANT, collection)) == 0
    run(
        store.upsert(
            TENANT, collection, [Point(i, unit(1, i), {"even": i % 2 == 0}) for i in range(10)]
        )
    )
    assert run(store.count(TENANT, collection)) == 10
    assert run(store.count(TENANT, collection, Filter(must=[key("even", value=True)]))) == 5
    assert run(store.count(TENANT, collection, Filter(must=[key("even", value="nope")]))) == 0


# Scroll


def test_scroll_pages_through_every_point_once_in_a_stable_order(
    store: VectorStore, run: Runner, collection: str
) -> None:
    ids: list[PointId] = [UUID_C, 10, UUID_A, 2, MAX_ID, 33, UUID_B, 7, 0]
    run(
        store.upsert(
            TENANT, collection, [Point(i, unit(1, n), {"n": n}) for n, i in enumerate(ids)]
        )
    )

    expected: list[PointId] = []
    for limit in (100, 1, 2, 4, 9):
        seen: list[PointId] = []
        cursor: PointId | None = None
        pages = 0
        while True:
            page = run(store.scroll(TENANT, collection, limit=limit, cursor=cursor))
            assert len(page.points) <= limit
            seen.extend(ids_of(page.points))
            pages += 1
            if page.next_cursor is None:
                break
            cursor = page.next_cursor
        expected = expected or seen  # the order of stored ids: the same for every page size
        assert sorted(map(str, seen)) == sorted(map(str, ids)), f"limit={limit}"
        assert seen == expected, f"limit={limit}"
        assert pages == max(1, math.ceil(len(expected) / limit))


def test_scroll_cursor_is_opaque_and_resumes_at_the_next_point(
    store: VectorStore, run: Runner, collection: str
) -> None:
    run(store.upsert(TENANT, collection, [Point(i, unit(1, i)) for i in (1, 3, 5, 7)]))
    everything = ids_of(run(store.scroll(TENANT, collection, limit=4)).points)
    first = run(store.scroll(TENANT, collection, limit=2))
    assert ids_of(first.points) == everything[:2]
    assert first.next_cursor is not None
    assert first.next_cursor not in everything  # a stored id, not the client's
    rest = run(store.scroll(TENANT, collection, limit=2, cursor=first.next_cursor))
    assert (ids_of(rest.points), rest.next_cursor) == (everything[2:], None)


def test_scroll_with_filter_and_vectors(store: VectorStore, run: Runner, tagged: str) -> None:
    records = scroll_all(
        store, run, tagged, filter=Filter(must=[key("flag", value=True)]), with_vector=True
    )
    assert sorted(map(str, ids_of(records))) == sorted(map(str, [1, 4, UUID_A]))
    [first] = [r for r in records if r.id == 1]
    assert first.payload == dict(FILTER_POINTS)[1]
    assert first.vector == pytest.approx(unit(1, 0), abs=1e-6)
    assert all(r.vector is None for r in scroll_all(store, run, tagged))


def test_scroll_empty_collection(store: VectorStore, run: Runner, collection: str) -> None:
    page = run(store.scroll(TENANT, collection, limit=10))
    assert (page.points, page.next_cursor) == ([], None)


# Validation of writes


def test_a_bad_dimension_anywhere_in_a_batch_writes_nothing(
    store: VectorStore, run: Runner, collection: str
) -> None:
    run(store.upsert(TENANT, collection, [Point(1, unit(1), {"v": "kept"})]))
    batch = [
        Point(1, unit(0, 1), {"v": "replaced"}),
        Point(2, unit(1, 1)),
        Point(3, [1.0, 0.0, 0.0]),  # dimension 3 in a collection of 4
    ]
    with pytest.raises(
        BadUserInput, match=r"^Vector of point 2 has 3 dimensions; the collection has 4$"
    ):
        run(store.upsert(TENANT, collection, batch))
    # one point is named as in a batch (the client sent a list of one)
    with pytest.raises(BadUserInput, match=r"^Vector of point 0 has 3 dimensions"):
        run(store.upsert(TENANT, collection, [batch[2]]))
    assert run(store.count(TENANT, collection)) == 1
    assert [r.payload for r in run(store.retrieve(TENANT, collection, [1, 2]))] == [{"v": "kept"}]


def test_an_empty_payload_reads_back_as_written(
    store: VectorStore, run: Runner, collection: str
) -> None:
    """{} as {}, no payload as None: the schema's "null when the point has none"."""
    run(store.upsert(TENANT, collection, [Point(1, unit(1), {}), Point(2, unit(0, 1))]))
    assert [r.payload for r in run(store.retrieve(TENANT, collection, [1, 2]))] == [{}, None]
