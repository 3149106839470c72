"""What the instrumentation costs, measured in process: the app itself, no HTTP server
and no k6, one caller, instrumentation on and off in alternating rounds.

Under k6 the event loop's CPU per query moves by +-100 us between rounds of the same
server on a shared machine (k6 and the engine compete with it for the two cores); here
nothing else runs, so the difference between on and off is a few microseconds wide.
Every part of the instrumentation runs on the event loop (HTTP middleware, resolver and
store timers, the operation metrics and log lines recorded in batches, the lines'
writing too, see _instrumented), so the event loop's CPU time is all of it. The
engine's search runs on its own threads and is not counted.
"""

from __future__ import annotations

import contextlib
import logging
import statistics
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, TextIO

import orjson
from starlette.applications import Starlette
from starlette.types import Message

from bench import data
from graph.app import create_app
from graph.settings import Settings
from graph.telemetry.logs import configure
from graph.telemetry.metrics import set_resolver_timing

QUERY = (
    "query Recall($vector: Vector!, $limit: Int!) "
    "{ query(vector: $vector, limit: $limit) { id score payload } }"
)
# Instrumentation off, as settings; bench/run.py gives the same to its server as environment.
OFF: dict[str, Any] = {
    "metrics_resolver_timing": False,
    "metrics_http": False,
    "metrics_store": False,
    "metrics_operations": False,
    "log_level": "WARNING",
}
WARM_UP_QUERIES = 200
SLICE_SECONDS = 0.5


def _scope(length: int) -> dict[str, Any]:
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/graphql",
        "raw_path": b"/graphql",
        "root_path": "",
        "query_string": b"",
        "headers": [
            (b"host", b"127.0.0.1"),
            (b"content-type", b"application/json"),
            (b"content-length", str(length).encode()),
        ],
        "server": ("127.0.0.1", 8000),
        "client": ("127.0.0.1", 50000),
    }


class Caller:
    """Sends the benchmark's query to an app through ASGI and checks every answer."""

    def __init__(self, app: Starlette, dimension: int) -> None:
        self.app = app
        self.bodies = [
            orjson.dumps(
                {"query": QUERY, "operationName": "Recall", "variables": {"vector": v, "limit": 10}}
            )
            for v in data.query_vectors(dimension)
        ]
        self.sent = 0
        self.status = 0
        self.answer = b""

    async def query(self) -> None:
        body = self.bodies[self.sent % len(self.bodies)]
        self.sent += 1

        async def receive() -> Message:
            return {"type": "http.request", "body": body, "more_body": False}

        async def send(message: Message) -> None:
            if message["type"] == "http.response.start":
                self.status = message["status"]
            elif message["type"] == "http.response.body":
                self.answer = message.get("body", b"")

        await self.app(_scope(len(body)), receive, send)
        if self.status != 200 or b'"errors"' in self.answer:
            raise RuntimeError(f"query failed: {self.status} {self.answer[:300]!r}")


@contextlib.asynccontextmanager
async def _running(settings: Settings) -> AsyncIterator[Starlette]:
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        yield app


def _instrumented(on: bool, log: TextIO) -> None:
    """The process-wide parts: resolver timing and the log level (the rest is per app).
    Log lines go to a file, as a server's do in the benchmark. A server writes them in
    batches from a thread of its own (graph/telemetry/logs.py); here _slice writes each slice's
    batch on the event loop, so that its CPU is counted (the interval is longer than a
    slice and a slice logs fewer lines than the handler's capacity)."""
    set_resolver_timing(on)
    configure("INFO" if on else "WARNING", flush_seconds=3600)
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.StreamHandler):
            handler.setStream(log)


async def measure(
    data_dirs: tuple[Path, Path], dimension: int, seconds: float, log_file: Path
) -> dict[str, float]:
    """Event-loop CPU and latency per query with the instrumentation on and off, for
    `seconds` each, in short alternating slices: the machine's speed drifts (other
    tenants of a virtual machine), and a pair of adjacent slices sees the same speed."""
    common: dict[str, Any] = {
        "collection": data.COLLECTION,
        "vector_size": dimension,
        "index_threshold": 10**9,
    }
    cpu: dict[bool, list[float]] = {True: [], False: []}
    latency: dict[bool, list[float]] = {True: [], False: []}
    with log_file.open("a") as log:
        _instrumented(True, log)  # the start-up lines go to the file too
        async with (
            _running(Settings(data_dir=data_dirs[0], **common)) as on_app,
            _running(Settings(data_dir=data_dirs[1], **common, **OFF)) as off_app,
        ):
            callers = {True: Caller(on_app, dimension), False: Caller(off_app, dimension)}
            for on, caller in callers.items():
                _instrumented(on, log)
                for _ in range(WARM_UP_QUERIES):
                    await caller.query()
            for r in range(max(1, round(seconds / SLICE_SECONDS))):
                for on in (True, False) if r % 2 == 0 else (False, True):
                    _instrumented(on, log)
                    times = await _slice(callers[on], SLICE_SECONDS)
                    cpu[on].append(times.pop())
                    latency[on].append(statistics.median(times))
            _instrumented(True, log)  # and the shut-down lines
    configure("WARNING")
    return {
        "loop_cpu_us_on": statistics.median(cpu[True]) * 1e6,
        "loop_cpu_us_off": statistics.median(cpu[False]) * 1e6,
        "pairs": len(cpu[True]),
        "loop_cpu_us_diff": statistics.median(
            a - b for a, b in zip(cpu[True], cpu[False], strict=True)
        )
        * 1e6,
        "p50_ms_on": statistics.median(latency[True]) * 1e3,
        "p50_ms_off": statistics.median(latency[False]) * 1e3,
    }


async def _slice(caller: Caller, seconds: float) -> list[float]:
    """Queries for `seconds`: each one's latency, then the event loop's CPU per query."""
    times: list[float] = []
    cpu_start = time.thread_time()
    deadline = time.perf_counter() + seconds
    while (started := time.perf_counter()) < deadline:
        await caller.query()
        times.append(time.perf_counter() - started)
    # What waits for its batch is this slice's work (the app would record it within
    # LOG_FLUSH_SECONDS, maybe during the other app's slice).
    caller.app.state.record_operations()
    for handler in logging.getLogger().handlers:
        handler.flush()
    return [*times, (time.thread_time() - cpu_start) / len(times)]
