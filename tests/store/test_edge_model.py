"""A model-based test of the embedded store: random, seeded sequences of writes against a
plain dict per logical collection, with index builds and merges running all the time.

The store gets a tiny index threshold and merge cap, and merges start as soon as the
writes pause, so that nearly every step meets a build or a merge: a sealed shard, a
journal of deletes replayed on a built segment, an upsert of an id whose copy lives in
an older segment. Three logical collections share one physical collection (two of one
tenant, one of another) and a fourth has a physical collection to itself (its queries
run unfiltered, views.query_owned). Steps are groups of concurrent operations
(asyncio.gather) with reads running among the writes, waits for the background work to
finish, close and reopen of the store from its directory, and deleting and recreating
a collection.

Concurrent writes to one collection may touch the same ids (a delete by filter touches
ids no one names): the store serialises writes per physical collection but in no set
order, so the model accepts the result of any serial order of a group's writes whose
return values and final state match the store's. Reads running among the writes are
checked on what no write of the group can change, on a count some moment of a serial
order has, and on finding a point whose payload alone is being rewritten.

A failure names the seed and the recent steps: `run_model(seed, steps, path)` replays it.
"""

from __future__ import annotations

import asyncio
import itertools
import math
import random
import uuid
from collections import Counter
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from graph.settings import Distance, Quantization
from graph.store.edge import EdgeStore
from graph.store.models import Condition, Filter, Match, Payload, Point, PointId, Range

DIM = 6
SOLO_DIM = 5
THRESHOLD = 25
MERGE_MAX_POINTS = 80
POOL = 90  # client ids per collection: most writes hit ids that exist already
GROUPS = 4  # the payload field "g" takes values 0..GROUPS-1; deletes by filter use it
UUIDS = [str(uuid.UUID(int=random.Random(i).getrandbits(128), version=4)) for i in range(6)]
IDS: list[PointId] = [*range(POOL), *UUIDS]
# (tenant, collection, dimension): the first three share a physical collection.
COLLECTIONS = [("t1", "a", DIM), ("t1", "b", DIM), ("t2", "a", DIM), ("t2", "solo", SOLO_DIM)]
SAFETY_SECONDS = 120.0  # a hang fails the test instead of stalling the suite

Key = tuple[str, str]
Model = dict[PointId, tuple[list[float], Payload | None]]


def f32(vector: Sequence[float]) -> list[float]:
    return [float(x) for x in np.asarray(vector, dtype=np.float32)]


def stored_vector(vector: list[float], distance: Distance) -> np.ndarray[Any, Any]:
    """What the engine keeps of a vector: float32, normalised for cosine."""
    v = np.asarray(vector, dtype=np.float32)
    return v / np.linalg.norm(v) if distance is Distance.COSINE else v


# Operations


@dataclass
class Op:
    key: Key

    def apply(self, model: Model) -> int:
        """Apply to the model; returns what the store's call returns."""
        raise NotImplementedError

    def run(self, store: EdgeStore) -> Awaitable[int]:
        raise NotImplementedError

    def named(self) -> set[PointId]:
        """The ids this op names (a delete by filter names none)."""
        return set()


@dataclass
class Upsert(Op):
    points: list[Point] = field(default_factory=list)

    def apply(self, model: Model) -> int:
        for p in self.points:
            model[p.id] = (p.vector, p.payload)
        return len(self.points)

    def run(self, store: EdgeStore) -> Awaitable[int]:
        return store.upsert(*self.key, self.points)

    def named(self) -> set[PointId]:
        return {p.id for p in self.points}

    def __repr__(self) -> str:
        return f"Upsert({self.key}, {[(p.id, p.payload) for p in self.points]})"


@dataclass
class DeleteIds(Op):
    ids: list[PointId] = field(default_factory=list)

    def apply(self, model: Model) -> int:
        return sum(model.pop(i, None) is not None for i in self.ids)

    def run(self, store: EdgeStore) -> Awaitable[int]:
        return store.delete_ids(*self.key, self.ids)

    def named(self) -> set[PointId]:
        return set(self.ids)


@dataclass
class DeleteGroup(Op):
    """Delete by filter: the points whose payload field g is `group`."""

    group: int = 0

    def apply(self, model: Model) -> int:
        gone = [i for i, (_, payload) in model.items() if group_of(payload) == self.group]
        for i in gone:
            del model[i]
        return len(gone)

    def run(self, store: EdgeStore) -> Awaitable[int]:
        return store.delete_by_filter(*self.key, group_filter(self.group))


def group_of(payload: Payload | None) -> object:
    return None if payload is None else payload.get("g")


def group_filter(group: int) -> Filter:
    return Filter(must=[Condition(key="g", match=Match(value=group))])


# The driver


class Driver:
    def __init__(self, seed: int, path: Path) -> None:
        self.seed = seed
        self.rnd = random.Random(seed)
        self.path = path
        self.distance = (Distance.COSINE, Distance.DOT)[seed % 2]
        self.quantization = (Quantization.SCALAR, Quantization.NONE)[seed // 2 % 2]
        self.models: dict[Key, Model] = {(t, c): {} for t, c, _ in COLLECTIONS}
        self.dims: dict[Key, int] = {(t, c): d for t, c, d in COLLECTIONS}
        self.version = 0
        self.history: list[str] = []
        self.met: Counter[str] = Counter()  # the background work the steps met
        self.counted: dict[str, int] = {}  # builds run by physical collection, counted
        self.store = self.new_store()

    def new_store(self) -> EdgeStore:
        store = EdgeStore(
            self.path,
            index_threshold=THRESHOLD,
            index_backlog_max_points=4 * THRESHOLD,
            merge_max_points=MERGE_MAX_POINTS,
            max_segments=3,
            quantization=self.quantization,
            backlog_wait_seconds=SAFETY_SECONDS,
            workers=3,
            min_free_bytes=0,
        )
        store.merge_idle_seconds = 0.02  # merges start at nearly every pause
        return store

    async def start(self) -> None:
        await self.store.open()
        for tenant, name, dim in COLLECTIONS:
            await self.store.create_collection(tenant, name, dim, self.distance)

    # Generating operations

    def point(self, key: Key, point_id: PointId) -> Point:
        self.version += 1
        rnd = self.rnd
        current = self.models[key].get(point_id)
        if current is not None and rnd.random() < 0.2:
            vector = current[0]  # a new payload only
        else:
            vector = f32([rnd.gauss(0.0, 1.0) for _ in range(self.dims[key])])
        payload: Payload | None
        if rnd.random() < 0.08:
            payload = None
        else:
            payload = {"g": rnd.randrange(GROUPS), "v": self.version}
            if rnd.random() < 0.3:
                payload["tags"] = [rnd.choice("xyz") for _ in range(rnd.randrange(3))]
        return Point(point_id, vector, payload)

    def ids(self, key: Key, count: int) -> list[PointId]:
        """Up to count distinct ids, mostly ones that exist. The ops of a group may name
        the same ids (see the module docstring)."""
        existing = list(self.models[key])
        chosen: list[PointId] = []
        for _ in range(count):
            pick = self.rnd.choice(existing if existing and self.rnd.random() < 0.6 else IDS)
            if pick not in chosen:
                chosen.append(pick)
        return chosen

    def op(self) -> Op:
        keys = list(self.models)
        key = self.rnd.choice(keys[:3] if self.rnd.random() < 0.85 else keys)
        roll = self.rnd.random()
        if roll < 0.6:
            return Upsert(key, [self.point(key, i) for i in self.ids(key, self.rnd.randint(1, 14))])
        if roll < 0.85:
            return DeleteIds(key, self.ids(key, self.rnd.randint(1, 6)))
        return DeleteGroup(key, self.rnd.randrange(GROUPS))

    # Steps

    async def step(self) -> None:
        roll = self.rnd.random()
        if roll < 0.04:
            self.history.append("reopen")
            await self.reopen()
        elif roll < 0.10:
            self.history.append("wait for indexing")
            await self.store.wait_for_indexing()
            await self.check_builds()
        elif roll < 0.12:
            key = self.rnd.choice(list(self.models))
            self.history.append(f"recreate {key}")
            await self.store.delete_collection(*key)
            await self.store.create_collection(*key, self.dims[key], self.distance)
            self.models[key] = {}
        else:
            ops = [self.op() for _ in range(self.rnd.randint(1, 4))]
            self.history.append(f"group {ops}")
            await self.group(ops)
        await self.check_all()

    async def reopen(self) -> None:
        if self.rnd.random() < 0.5:
            await self.store.wait_for_indexing()
        await self.check_builds()
        self.met["reopens"] += 1
        await self.store.close()
        self.counted.clear()
        self.store = self.new_store()
        await self.store.open()

    async def group(self, ops: list[Op]) -> None:
        """Run ops at once, with reads of what they cannot change among them; then adopt
        the serial order of ops that explains the results and the store's state."""
        for coll in self.store._collections.values():
            if coll.build is not None:
                self.met[
                    "groups during a merge"
                    if coll.manifest.sealed is None
                    else "groups during a build"
                ] += 1
        reads = [self.read_among(key, ops) for key in self.models]
        # Every call ends before a failure is raised: none is left running on the store.
        results = await asyncio.gather(
            *(op.run(self.store) for op in ops), *reads, return_exceptions=True
        )
        for result in results:
            if isinstance(result, BaseException):
                raise result
        returned = results[: len(ops)]
        for key in {op.key for op in ops}:
            mine = [(op, r) for op, r in zip(ops, returned, strict=True) if op.key == key]
            actual = await self.dump(key)
            tried = []
            for order in itertools.permutations(mine):
                model = dict(self.models[key])
                got = [op.apply(model) for op, _ in order]
                if got == [r for _, r in order] and self.same(key, model, actual):
                    break
                tried.append(f"{[type(op).__name__ for op, _ in order]}: {got}, {len(model)}")
            else:
                raise AssertionError(
                    f"no serial order of {mine} explains {key}: the store returned "
                    f"{[r for _, r in mine]} and holds {sorted(map(str, actual))}; "
                    f"orders tried: {tried}"
                )
            self.models[key] = model

    def stable(self, key: Key, ops: list[Op]) -> tuple[list[PointId], list[PointId]]:
        """The ids of key no op of the group can change: those present, those absent."""
        mine = [op for op in ops if op.key == key]
        named = set().union(*(op.named() for op in mine))
        groups = {op.group for op in mine if isinstance(op, DeleteGroup)}
        model = self.models[key]
        present = [i for i in model if i not in named and group_of(model[i][1]) not in groups]
        absent = [i for i in IDS if i not in model and i not in named]
        return present, absent

    def counts(self, key: Key, ops: list[Op]) -> tuple[int, int]:
        """The fewest and most points key holds at any moment of any serial order of ops."""
        mine = [op for op in ops if op.key == key]
        sizes = {len(self.models[key])}
        for order in itertools.permutations(mine):
            model = dict(self.models[key])
            for op in order:
                op.apply(model)
                sizes.add(len(model))
        return min(sizes), max(sizes)

    async def read_among(self, key: Key, ops: list[Op]) -> int:
        """Reads among the writes: what no write of the group touches reads as before, a
        count is one some moment of a serial order has, and a point whose payload alone
        is being rewritten is found by its vector."""
        model = self.models[key]
        present, absent = self.stable(key, ops)
        fewest, most = self.counts(key, ops)
        mine = [op for op in ops if op.key == key]
        kept = [  # the ids every op of the group naming them rewrites with the same vector
            i
            for i in set().union(*(op.named() for op in mine))
            if i in model
            and all(
                isinstance(op, Upsert)
                and all(p.vector == model[i][0] for p in op.points if p.id == i)
                for op in mine
                if i in op.named()
            )
        ]
        moving = [] if any(isinstance(op, DeleteGroup) for op in mine) else sorted(kept, key=str)
        await asyncio.sleep(self.rnd.random() * 0.005)
        counted = await self.store.count(*key)
        assert fewest <= counted <= most, (
            f"{key}: count {counted} among writes, not in {fewest}..{most}"
        )
        if moving and self.distance is Distance.COSINE:
            probe = self.rnd.choice(moving)
            hits = await self.store.query(*key, model[probe][0], limit=2)
            assert hits and hits[0].id == probe, (
                f"{key}: {probe}, its payload being rewritten, not first: {hits}"
            )
        records = await self.store.retrieve(*key, [*present, *absent], with_vector=True)
        assert [r.id for r in records] == present, f"{key}: retrieve among writes"
        for r in records:
            self.check_record(key, r.id, r.payload, r.vector, model)
        seen = await self.scroll_all(key, page=self.rnd.randint(5, 40))
        assert not set(absent) & set(seen), f"{key}: an absent point in a scroll among writes"
        missing = set(present) - set(seen)
        assert not missing, f"{key}: {missing} missing from a scroll among writes"
        for i in present:
            assert seen[i][1] == model[i][1], f"{key}: payload of {i} in a scroll among writes"
        if present:
            probe = self.rnd.choice(present)
            hits = await self.store.query(*key, model[probe][0], limit=3)
            if self.distance is Distance.COSINE:
                assert hits and hits[0].id == probe, f"{key}: {probe} not first among writes"
        return 0

    # Reading the store back

    async def scroll_all(
        self, key: Key, page: int, with_vector: bool = False
    ) -> dict[PointId, tuple[PointId, Payload | None, list[float] | None]]:
        """Every point of key by scroll pages, as id -> (id, payload, vector); duplicates
        keep their first copy and are caught by comparing the length with the ids seen."""
        seen: list[tuple[PointId, Payload | None, list[float] | None]] = []
        cursor: PointId | None = None
        while True:
            found = await self.store.scroll(
                *key, limit=page, cursor=cursor, with_vector=with_vector
            )
            assert len(found.points) <= page
            seen.extend((r.id, r.payload, r.vector) for r in found.points)
            if found.next_cursor is None:
                break
            assert len(seen) <= 2 * len(IDS), f"{key}: scroll does not end"
            cursor = found.next_cursor
        ids = [s[0] for s in seen]
        assert len(ids) == len(set(ids)), f"{key}: scroll returns {len(ids)} points, duplicates"
        return {s[0]: s for s in seen}

    async def dump(
        self, key: Key
    ) -> dict[PointId, tuple[PointId, Payload | None, list[float] | None]]:
        return await self.scroll_all(key, page=self.rnd.randint(7, 60), with_vector=True)

    def same(
        self,
        key: Key,
        model: Model,
        actual: dict[PointId, tuple[PointId, Payload | None, list[float] | None]],
    ) -> bool:
        if set(model) != set(actual):
            return False
        for i, (vector, payload) in model.items():
            _, got_payload, got_vector = actual[i]
            if got_payload != payload or not self.vector_matches(vector, got_vector):
                return False
        return True

    def vector_matches(self, written: list[float], got: list[float] | None) -> bool:
        if got is None:
            return False
        expected = stored_vector(written, self.distance)
        if self.distance is Distance.COSINE:
            return bool(np.allclose(expected, got, rtol=0, atol=1e-6))
        return [float(x) for x in expected] == got  # float32, exactly as written

    def check_record(
        self,
        key: Key,
        point_id: PointId,
        payload: Payload | None,
        vector: list[float] | None,
        model: Model,
    ) -> None:
        written, written_payload = model[point_id]
        assert payload == written_payload, f"{key}: payload of {point_id}"
        assert self.vector_matches(written, vector), f"{key}: vector of {point_id}"

    async def check_all(self) -> None:
        for key in self.models:
            await self.check(key)

    async def check(self, key: Key) -> None:
        model = self.models[key]
        store = self.store
        assert await store.count(*key) == len(model), f"{key}: count"
        assert (await store.get_collection(*key)).points_count == len(model)
        # Every id of the pool: the model's, in order, and no other (deleted, other
        # tenants' or other collections' points under the same client id).
        records = await store.retrieve(*key, IDS, with_vector=True)
        assert [r.id for r in records] == [i for i in IDS if i in model], f"{key}: retrieve"
        for r in records:
            self.check_record(key, r.id, r.payload, r.vector, model)
        assert self.same(key, model, await self.dump(key)), f"{key}: scroll"
        group = self.rnd.randrange(GROUPS)
        in_group = [i for i, (_, p) in model.items() if group_of(p) == group]
        assert await store.count(*key, group_filter(group)) == len(in_group), f"{key}: count g"
        if model:
            await self.check_query(key, model)

    async def check_query(self, key: Key, model: Model) -> None:
        """The best hits are the brute-force best over the model, with their scores."""
        probe = self.rnd.choice(list(model))
        limit = self.rnd.randint(1, 8)
        flt = None
        if self.rnd.random() < 0.3:
            flt = Filter(must=[Condition(key="v", range=Range(gte=self.version / 2))])
        query = model[probe][0]
        if self.rnd.random() < 0.3:
            query = f32([x + self.rnd.gauss(0.0, 0.1) for x in query])
        expected = self.brute_force(model, query, flt)
        hits = await self.store.query(*key, query, limit=limit, filter=flt, with_vector=True)
        assert len(hits) == min(limit, len(expected)), f"{key}: {len(hits)} hits"
        assert len({h.id for h in hits}) == len(hits), f"{key}: a point twice among hits"
        scores = dict(expected)
        for hit in hits:
            assert hit.id in scores, f"{key}: hit {hit.id} is not a point (or not matching)"
            assert math.isclose(hit.score, scores[hit.id], rel_tol=1e-4, abs_tol=1e-4), (
                f"{key}: score of {hit.id}: {hit.score} for {scores[hit.id]}"
            )
            self.check_record(key, hit.id, hit.payload, hit.vector, model)
        best = [s for _, s in expected[:limit]]
        got = [h.score for h in hits]
        assert np.allclose(got, best, rtol=1e-4, atol=1e-4), (
            f"{key}: query scores {got}, brute force {best} ({expected[:limit]})"
        )

    def brute_force(
        self, model: Model, query: list[float], flt: Filter | None
    ) -> list[tuple[PointId, float]]:
        q = np.asarray(query, dtype=np.float64)
        if self.distance is Distance.COSINE:
            q = q / np.linalg.norm(q)
        threshold = self.version / 2
        scored = []
        for i, (vector, payload) in model.items():
            if flt is not None:
                v = None if payload is None else payload.get("v")
                if v is None or v < threshold:
                    continue
            stored = stored_vector(vector, self.distance).astype(np.float64)
            scored.append((i, float(stored @ q)))
        return sorted(scored, key=lambda s: -s[1])

    async def check_builds(self) -> None:
        """No build has failed; counts those run since the store was opened."""
        for coll in await self.store.physical_collections():
            status = await self.store.index_status(coll.name)
            assert status["builds_failed"] == 0, f"{coll.name}: {status['last_error']}"
            runs, before = status["builds_run"], self.counted.get(coll.name, 0)
            self.met["builds and merges"] += runs - before if runs >= before else runs
            self.counted[coll.name] = runs


async def run_model(seed: int, steps: int, path: Path) -> dict[str, int]:
    """The seeded run; returns how much background work it met."""
    driver = Driver(seed, path)
    step = 0
    try:
        async with asyncio.timeout(SAFETY_SECONDS * 3):
            await driver.start()
            while step < steps:
                await driver.step()
                step += 1
            await driver.store.wait_for_indexing()
            await driver.check_builds()
            await driver.check_all()
            return dict(driver.met)
    except BaseException as exc:
        recent = "\n  ".join(driver.history[-6:])
        raise AssertionError(
            f"seed {seed} ({driver.distance.value}, {driver.quantization.value}), step {step}: "
            f"{type(exc).__name__}: {exc}\nrecent steps:\n  {recent}"
        ) from exc
    finally:
        await driver.store.close()


@pytest.mark.parametrize("seed", [1, 2, 3, 4])
def test_the_store_agrees_with_a_model_under_builds_merges_and_reopens(
    seed: int, tmp_path: Path
) -> None:
    asyncio.run(run_model(seed, 20, tmp_path / "data"))
