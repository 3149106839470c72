"""The embedded adapter builds engine points one batch at a time: qdrant-edge hands the
GIL back and forth while it converts payloads, so two threads converting at once each
run several times slower than one after the other (graph/store/edge/views.py)."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

from graph.store.edge import views


def test_conversions_from_several_threads_never_overlap() -> None:
    active = 0
    most = 0
    guard = threading.Lock()

    def convert(batch: int) -> list[int]:  # stands in for edge_points / memory_points
        nonlocal active, most
        with guard:
            active += 1
            most = max(most, active)
        time.sleep(0.02)
        with guard:
            active -= 1
        return [batch]

    with ThreadPoolExecutor(4) as pool:
        results: list[object] = list(pool.map(lambda b: views.converted(convert, b), range(8)))  # type: ignore[arg-type]
    assert results == [[b] for b in range(8)]
    assert most == 1
