"""What each GraphQL operation leaves behind, its operation metrics and its log line,
kept on the request path as one tuple and recorded in batches on the event loop.

Why batches: between two requests (the engine's search in between leaves the caches
cold) recording one operation took ~110 us of the event loop, ten times its cost in a
loop; recording many in a row costs close to the loop's price (docs/operating.md,
"Logs"). Nothing is lost or late for a reader: /metrics records what waits before it
answers, the app records every ~LOG_FLUSH_SECONDS and at shutdown, and a line keeps the
time and request id of its request.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections import deque
from typing import Any, NamedTuple

from graph.errors import ErrorCode, shown
from graph.telemetry.metrics import (
    GRAPHQL_OPERATION_DURATION,
    GRAPHQL_OPERATIONS,
    observe_tenant_operation,
)

logger = logging.getLogger("graph.request")

MAX_OPERATION_NAMES = 100
_OPERATION_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
OTHER_OPERATION = "other"


class OperationNames:
    """Operation names as metric labels: the first MAX_OPERATION_NAMES well-formed names
    seen keep their own value, everything after that folds into one."""

    def __init__(self) -> None:
        self.known: set[str] = set()

    def label(self, name: str | None) -> str:
        if name is None:
            return "anonymous"
        if name in self.known:
            return name
        if len(self.known) < MAX_OPERATION_NAMES and _OPERATION_NAME.fullmatch(name):
            self.known.add(name)
            return name
        return OTHER_OPERATION


class Operation(NamedTuple):
    """One executed operation, as the request path leaves it."""

    operation_type: str
    operation_name: str | None
    tenant: str
    request_id: str
    elapsed: float  # seconds, from planning to the response body
    codes: list[ErrorCode]
    at: float  # time.time() when it ended: the log line's timestamp


class OperationRecorder:
    """Operation metrics and the request log line, for the operations handed to add()."""

    def __init__(self, interval: float, metrics: bool = True) -> None:
        # Seconds between batches; 0: each operation is recorded as add() gets it.
        self.interval = interval
        self.metrics = metrics  # METRICS_OPERATIONS: off only to measure what they cost
        self.operation_names = OperationNames()
        self._waiting: deque[Operation] = deque()
        # Labelled children looked up once per (type, name, outcome): bounded by
        # OperationNames, and a dict lookup is a fraction of labels().
        self._children: dict[tuple[str, str, str], tuple[Any, Any]] = {}

    def add(self, operation: Operation) -> None:
        if not self.metrics and not logger.isEnabledFor(logging.INFO):
            return
        self._waiting.append(operation)
        if not self.interval:
            self.record()

    def record(self) -> None:
        """Records every operation waiting; no await, so no request interleaves."""
        log = logger.isEnabledFor(logging.INFO)
        while self._waiting:
            operation = self._waiting.popleft()
            if self.metrics:
                self._count(operation)
            if log:
                _log_line(operation)

    def _count(self, operation: Operation) -> None:
        name = self.operation_names.label(operation.operation_name)
        outcome = "error" if operation.codes else "success"
        key = (operation.operation_type, name, outcome)
        children = self._children.get(key)
        if children is None:
            children = self._children[key] = (
                GRAPHQL_OPERATIONS.labels(*key),
                GRAPHQL_OPERATION_DURATION.labels(operation.operation_type, name),
            )
        children[0].inc()
        children[1].observe(operation.elapsed)
        observe_tenant_operation(operation.tenant, operation.operation_type, outcome)

    async def run(self) -> None:
        """Records a batch every `interval` seconds until cancelled."""
        while True:
            await asyncio.sleep(self.interval)
            self.record()


def _log_line(operation: Operation) -> None:
    extra: dict[str, Any] = {
        "request_id": operation.request_id,
        "operation_name": None
        if operation.operation_name is None
        else shown(operation.operation_name),
        "operation_type": operation.operation_type,
        "elapsed_ms": round(operation.elapsed * 1000, 3),
    }
    if operation.codes:
        extra["error_codes"] = [code.value for code in operation.codes]
    record = logger.makeRecord(
        logger.name, logging.INFO, __file__, 0, "graphql request", (), None, extra=extra
    )
    # The line's time is the request's, not the batch's.
    record.created = operation.at
    record.msecs = operation.at % 1 * 1000
    logger.handle(record)
