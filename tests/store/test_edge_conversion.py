"""The embedded adapter builds engine points one thread at a time, in chunks: qdrant-edge
hands the GIL back and forth while it converts payloads, so two threads converting at
once each run several times slower than one after the other (graph/store/edge/views.py),
and chunks keep a small write from waiting for all of a large one."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from graph.errors import BadUserInput
from graph.store.edge import views
from graph.store.edge.translate import edge_points
from graph.store.models import Point

CHUNK = views.CONVERSION_CHUNK


def test_conversions_from_several_threads_never_overlap() -> None:
    active = 0
    most = 0
    guard = threading.Lock()

    def convert(items: list[int], first: int) -> list[int]:  # stands in for edge_points
        nonlocal active, most
        with guard:
            active += 1
            most = max(most, active)
        time.sleep(0.005)
        with guard:
            active -= 1
        return [first + i for i, _ in enumerate(items)]

    batch = list(range(3 * CHUNK + 1))
    with ThreadPoolExecutor(4) as pool:
        results: list[object] = list(
            pool.map(lambda _: views.converted(convert, batch), range(4))  # type: ignore[arg-type]
        )
    assert results == [batch] * 4  # every item, in order, each chunk told where it starts
    assert most == 1


def test_an_error_names_the_point_by_its_place_in_the_whole_batch() -> None:
    points = [Point(i, [0.0, 1.0], {"n": i}) for i in range(2 * CHUNK + 3)]
    points[CHUNK + 2] = Point(CHUNK + 2, [0.0, float("nan")], None)
    with pytest.raises(BadUserInput, match=f"point {CHUNK + 2}\\b"):
        views.converted(edge_points, points, 2, "t/c")
    assert len(views.converted(edge_points, points[: CHUNK + 2], 2, "t/c")) == CHUNK + 2


def test_a_small_write_does_not_queue_behind_a_large_one() -> None:
    inside = threading.Event()
    release = threading.Event()

    def slow(items: list[int], first: int) -> list[int]:
        inside.set()
        assert release.wait(10)  # holds the conversion lock until the small write is done
        return list(items)

    with ThreadPoolExecutor(1) as pool:
        large = pool.submit(views.converted, slow, list(range(2 * CHUNK)))  # type: ignore[arg-type]
        assert inside.wait(10)
        started = time.monotonic()
        small: list[object] = list(views.converted(lambda items, first: list(items), [1, 2]))
        assert small == [1, 2] and time.monotonic() - started < 5
        release.set()
        converted: list[object] = list(large.result(10))
        assert converted == list(range(2 * CHUNK))
