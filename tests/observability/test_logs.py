"""The JSON log handler that writes in batches (graph/telemetry/logs.py BatchedStreamHandler):
its lines arrive on time, in order, whole, and none is lost at close."""

from __future__ import annotations

import io
import json
import logging
import logging.config
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from graph.telemetry.logs import (
    BatchedStreamHandler,
    RequestIdFilter,
    configure,
    log_config,
    request_id_var,
)

WAIT_SECONDS = 10


class CountingStream(io.StringIO):
    """A stream that counts its write() calls: a batch is one write."""

    def __init__(self) -> None:
        super().__init__()
        self.writes = 0
        self.lock = threading.Lock()

    def write(self, text: str) -> int:
        with self.lock:
            self.writes += 1
            return super().write(text)

    def lines(self) -> list[dict[str, Any]]:
        with self.lock:
            return [json.loads(line) for line in self.getvalue().splitlines()]


@pytest.fixture
def stream() -> Iterator[CountingStream]:
    yield CountingStream()
    configure("WARNING")  # what the rest of the suite runs with


def logger_writing_to(stream: CountingStream, **handler: object) -> logging.Logger:
    config = log_config("INFO", **handler)  # type: ignore[arg-type]
    config["handlers"]["default"]["stream"] = stream
    logging.config.dictConfig(config)
    return logging.getLogger("graph.test")


def wait_until(check: Callable[[], bool]) -> float:
    started = time.monotonic()
    while not check():
        assert time.monotonic() - started < WAIT_SECONDS, "the lines never came"
        time.sleep(0.01)
    return time.monotonic() - started


def the_handler() -> BatchedStreamHandler:
    (handler,) = logging.getLogger().handlers
    assert isinstance(handler, BatchedStreamHandler)
    return handler


def test_lines_wait_for_the_interval_then_come_in_one_write(stream: CountingStream) -> None:
    # The cycle starts with the handler: 2 s leaves a stalled machine time to log all 50
    # lines inside the first one, so they come in one write.
    log = logger_writing_to(stream, flush_seconds=2.0)
    for n in range(50):
        log.info("line %d", n)
    assert stream.lines() == []  # nothing on the logging call itself
    waited = wait_until(lambda: len(stream.lines()) == 50)
    assert waited < 2.0 + 3.0  # the interval, and a busy machine's safety net
    assert [line["message"] for line in stream.lines()] == [f"line {n}" for n in range(50)]
    assert stream.writes == 1


def test_a_warning_writes_at_once_after_the_lines_before_it(stream: CountingStream) -> None:
    log = logger_writing_to(stream, flush_seconds=60)
    log.info("first")
    log.info("second")
    log.warning("third")
    assert [(line["level"], line["message"]) for line in stream.lines()] == [
        ("INFO", "first"),
        ("INFO", "second"),
        ("WARNING", "third"),
    ]


def test_a_full_buffer_is_written_before_the_interval(stream: CountingStream) -> None:
    log = logger_writing_to(stream, flush_seconds=60)
    handler = the_handler()
    handler.capacity = 10
    for n in range(10):
        log.info("line %d", n)
    assert wait_until(lambda: len(stream.lines()) == 10) < WAIT_SECONDS


def test_closing_writes_every_waiting_line_and_stops_the_writer(stream: CountingStream) -> None:
    log = logger_writing_to(stream, flush_seconds=60)
    handler = the_handler()
    for n in range(5):
        log.info("line %d", n)
    logging.config.dictConfig(log_config("INFO"))  # what uvicorn does: the old one closed
    assert [line["message"] for line in stream.lines()] == [f"line {n}" for n in range(5)]
    assert not handler._writer.is_alive()


def test_the_request_id_is_the_one_when_logged_not_when_written(stream: CountingStream) -> None:
    log = logger_writing_to(stream, flush_seconds=60)
    token = request_id_var.set("req-1")
    log.info("during the request")
    request_id_var.reset(token)
    log.info("after it")
    the_handler().flush()
    during, after = stream.lines()
    assert during["request_id"] == "req-1"
    assert "request_id" not in after


def test_a_line_that_cannot_be_formatted_loses_no_other(
    stream: CountingStream, capsys: pytest.CaptureFixture[str]
) -> None:
    log = logger_writing_to(stream, flush_seconds=60)
    log.info("before")
    log.info("broken %d", "not a number")
    log.info("after")
    the_handler().flush()
    assert [line["message"] for line in stream.lines()] == ["before", "after"]
    assert "not a number" in capsys.readouterr().err  # logging's own report of the fault


def test_lines_from_many_threads_are_whole_and_all_there(stream: CountingStream) -> None:
    log = logger_writing_to(stream, flush_seconds=0.01)

    def write(thread: int) -> None:
        for n in range(200):
            log.info("t%d n%d", thread, n)

    threads = [threading.Thread(target=write, args=(t,)) for t in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    the_handler().flush()
    messages = [line["message"] for line in stream.lines()]
    assert sorted(messages) == sorted(f"t{t} n{n}" for t in range(4) for n in range(200))
    for t in range(4):  # each thread's lines in the order it logged them
        mine = [m for m in messages if m.startswith(f"t{t} ")]
        assert mine == [f"t{t} n{n}" for n in range(200)]


def test_flush_seconds_0_writes_each_line_at_once(stream: CountingStream) -> None:
    log = logger_writing_to(stream, flush_seconds=0)
    (handler,) = logging.getLogger().handlers
    assert not isinstance(handler, BatchedStreamHandler)
    assert any(isinstance(f, RequestIdFilter) for f in handler.filters)
    log.info("now")
    assert [line["message"] for line in stream.lines()] == ["now"]


def configured_process_stderr(statements: str) -> str:
    """What a fresh process writes to stderr running statements after configure()."""
    code = f"from graph.telemetry.logs import configure\nconfigure(flush_seconds=0)\n{statements}"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    return result.stderr


def test_a_librarys_warning_is_a_json_line_too() -> None:
    """warnings.warn writes to stderr past logging unless logging captures it: a library's
    deprecation or resource warning would be a line of plain text among the JSON."""
    stderr = configured_process_stderr(
        "import warnings\nwarnings.warn('a library warns', UserWarning)\n"
    )
    lines = [json.loads(line) for line in stderr.splitlines()]
    assert [(line["level"], line["logger"]) for line in lines] == [("WARNING", "py.warnings")]
    assert "a library warns" in lines[0]["message"]


def test_calls_to_the_embedder_or_qdrant_are_not_logged_with_their_url() -> None:
    """httpx logs each call at INFO with its whole URL, user:password included (EMBED_URL
    and QDRANT_URL may carry them), and the MCP SDK each stateless session's end: neither
    reaches the log at the default level; their warnings still do."""
    stderr = configured_process_stderr(
        "import logging\n"
        "logging.getLogger('httpx').info('HTTP Request: POST http://u:s3cret@embedder/v1')\n"
        "logging.getLogger('mcp.server.streamable_http').info('Terminating session: None')\n"
        "logging.getLogger('httpx').warning('a warning of its own')\n"
    )
    assert "s3cret" not in stderr
    lines = [json.loads(line) for line in stderr.splitlines()]
    assert [(line["logger"], line["message"]) for line in lines] == [
        ("httpx", "a warning of its own")
    ]


def test_loguru_lines_of_a_library_are_json_lines_too() -> None:
    """fastembed logs through loguru, which writes plain text to stderr on its own."""
    stderr = configured_process_stderr(
        "from loguru import logger\nlogger.error('Could not download model')\n"
    )
    lines = [json.loads(line) for line in stderr.splitlines()]
    assert [(line["level"], line["message"]) for line in lines] == [
        ("ERROR", "Could not download model")
    ]
