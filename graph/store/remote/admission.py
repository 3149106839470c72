"""Bounded concurrency toward a store: a slow store must not let calls pile up without limit.

At most `limit` calls are in flight; at most `queue` more wait for a slot, each no longer
than its own deadline (then STORE_TIMEOUT); a call arriving when the queue is full is shed
at once with STORE_OVERLOADED, before it costs anything.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from graph.errors import StoreOverloaded, StoreTimeout
from graph.telemetry.metrics import STORE_SHED, STORE_WAITING


class Admission:
    def __init__(self, backend: str, *, limit: int, queue: int) -> None:
        if limit < 1 or queue < 0:
            raise ValueError("limit must be at least 1 and queue at least 0")
        self._slots = asyncio.Semaphore(limit)
        self._queue = queue
        self._waiting = 0
        self._shed = STORE_SHED.labels(backend)
        self._waiting_gauge = STORE_WAITING.labels(backend)

    @asynccontextmanager
    async def slot(self, deadline: float) -> AsyncIterator[None]:
        """Hold one slot for the body; deadline is a time.monotonic() value."""
        if self._slots.locked():
            await self._wait(deadline)
        else:
            await self._slots.acquire()  # free: returns without suspending
        try:
            yield
        finally:
            self._slots.release()

    async def _wait(self, deadline: float) -> None:
        if self._waiting >= self._queue:
            self._shed.inc()
            raise StoreOverloaded()
        self._waiting += 1
        self._waiting_gauge.inc()
        try:
            async with asyncio.timeout(max(0.0, deadline - time.monotonic())):
                await self._slots.acquire()
        except TimeoutError:
            raise StoreTimeout() from None
        finally:
            self._waiting -= 1
            self._waiting_gauge.dec()
