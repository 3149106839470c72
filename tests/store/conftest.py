"""Fixtures shared by the store tests.

There is no pytest-asyncio: each test gets its own event loop through the `run`
fixture and drives coroutines with `run(coro)`. The contract suite takes the
`store` fixture, parametrized over every adapter:

- embedded: graph.store.edge.EdgeStore on a temporary data directory;
- local:    RemoteStore on qdrant-client's in-process local mode (":memory:");
- server:   RemoteStore on the real Qdrant server at $QDRANT_URL (skipped without it).

`collection` is a fresh, empty collection (dimension 4, cosine) in that store, and
`names` makes more collection names: unique per test, so that tests can share a
real server, and deleted again after the test.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from graph.errors import NotFound
from graph.settings import Distance
from graph.store.base import VectorStore
from graph.store.remote import RemoteStore
from tests.conftest import Runner, run

__all__ = ["Runner", "run"]


DIMENSION = 4
# The tenant every store call of the suites runs as (tenancy itself: test_tenancy.py).
TENANT = "t1"
BACKENDS = ["embedded", "local", "server"]
NO_SERVER = "QDRANT_URL not set: no real Qdrant server to test against"


class CollectionNames:
    """Collection names unique to one test, remembered for the clean-up."""

    def __init__(self) -> None:
        self.made: list[str] = []
        self._suffix = uuid.uuid4().hex[:10]

    def __call__(self, base: str) -> str:
        name = f"{base}_{self._suffix}"
        self.made.append(name)
        return name


@pytest.fixture
def names() -> CollectionNames:
    return CollectionNames()


def make_store(backend: str, tmp_path: Path) -> VectorStore:
    if backend == "embedded":
        if importlib.util.find_spec("graph.store.edge") is None:
            pytest.skip("graph.store.edge does not exist yet: the embedded adapter is not written")
        from graph.store.edge import EdgeStore  # import errors must fail, not skip

        store: VectorStore = EdgeStore(data_dir=tmp_path)
        return store
    if backend == "local":
        return RemoteStore.local()
    if backend == "server":
        url = os.environ.get("QDRANT_URL")
        if not url:
            pytest.skip(NO_SERVER)
        return RemoteStore.connect(
            url, api_key=os.environ.get("QDRANT_API_KEY") or None, timeout_seconds=10.0
        )
    raise AssertionError(f"unknown backend {backend}")


@pytest.fixture(params=BACKENDS)
def store(
    request: pytest.FixtureRequest, run: Runner, names: CollectionNames, tmp_path: Path
) -> Iterator[VectorStore]:
    """An opened store; the collections the test named are deleted afterwards."""
    store = make_store(request.param, tmp_path)
    run(store.open())
    try:
        yield store
    finally:
        try:
            for name in names.made:
                with contextlib.suppress(NotFound):
                    run(store.delete_collection(TENANT, name))
        finally:
            run(store.close())


@pytest.fixture
def collection(store: VectorStore, run: Runner, names: CollectionNames) -> str:
    """A fresh, empty collection: dimension 4, cosine distance."""
    name = names("c")
    run(store.create_collection(TENANT, name, DIMENSION, Distance.COSINE))
    return name
