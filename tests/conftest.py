"""Shared fixtures: the app in-process on the real embedded engine, and GraphQL helpers."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Iterator
from pathlib import Path
from typing import Any, Protocol, TypeVar

import pytest
from starlette.testclient import TestClient

from graph.app import create_app
from graph.settings import Settings

T = TypeVar("T")

DIMENSION = 4


def make_settings(tmp_path: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "data_dir": tmp_path / "data",
        "vector_size": DIMENSION,
        "collection": "memories",
    }
    values.update(overrides)
    return Settings(**values)


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return make_settings(tmp_path)


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings)) as test_client:
        yield test_client


class Runner(Protocol):
    def __call__(self, awaitable: Awaitable[T], /) -> T: ...


@pytest.fixture
def run() -> Iterator[Runner]:
    """Run a coroutine to completion on this test's own event loop."""
    loop = asyncio.new_event_loop()

    def run_(awaitable: Awaitable[T]) -> T:
        return loop.run_until_complete(awaitable)

    try:
        yield run_
    finally:
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.run_until_complete(loop.shutdown_default_executor())
        loop.close()
