"""JSON log lines for everything the process writes, with the request id of the request."""

from __future__ import annotations

import logging
import secrets
import threading
from collections import deque
from contextvars import ContextVar
from typing import Any, TextIO

from pythonjsonlogger.core import RESERVED_ATTRS

request_id_var: ContextVar[str | None] = ContextVar("request_id", default=None)


def new_request_id() -> str:
    """The id of a request whose client sent none usable: 32 hex digits, 128 random bits
    (a fifth of uuid4().hex's time: no UUID object on every request)."""
    return secrets.token_hex(16)


class RequestIdFilter(logging.Filter):
    """Stamps the current request's id on every record made while serving it."""

    def filter(self, record: logging.LogRecord) -> bool:
        request_id = request_id_var.get()
        if request_id is not None and not hasattr(record, "request_id"):
            record.request_id = request_id
        return True


class BatchedStreamHandler(logging.StreamHandler[TextIO]):
    """A StreamHandler that writes its lines in batches, from a thread of its own: every
    `interval` seconds, sooner when `capacity` records wait, and at once for WARNING and
    worse (with every line before it, so the order holds) and when it is closed.

    Why: one write() per batch instead of one per line (measured in process: the request
    line's event-loop cost went from ~118 to ~103 us with this alone; making the records
    in batches, graph/telemetry/observations.py, is the larger cut), and formatting off the event
    loop, which also keeps lines coming while the loop is stuck. The price: a process
    killed with SIGKILL loses up to `interval` seconds of INFO lines.
    Records are formatted when written, so a filter stamps a record (its request id) when
    it is logged, as for any handler; a mutable object passed as a log argument is read
    at write time, as with logging.handlers.MemoryHandler.
    """

    def __init__(
        self, stream: TextIO | None = None, interval: float = 0.2, capacity: int = 1024
    ) -> None:
        super().__init__(stream)
        self.interval = interval
        self.capacity = capacity
        # deque.append and popleft are atomic, so logging threads never wait for a write.
        self._waiting: deque[logging.LogRecord] = deque()
        self._writing = threading.Lock()  # one batch at a time: lines stay in order
        self._wake = threading.Event()
        self._closing = False
        self._writer = threading.Thread(target=self._write_periodically, name="log-writer")
        self._writer.daemon = True
        self._writer.start()

    def emit(self, record: logging.LogRecord) -> None:
        self._waiting.append(record)
        if record.levelno >= logging.WARNING:
            self.flush()
        elif len(self._waiting) >= self.capacity:
            self._wake.set()

    def flush(self) -> None:
        with self._writing:
            count = len(self._waiting)
            if not count:
                return
            records = [self._waiting.popleft() for _ in range(count)]
            lines = []
            for record in records:
                try:
                    lines.append(self.format(record) + self.terminator)
                except Exception:
                    self.handleError(record)
            try:
                self.stream.write("".join(lines))
                self.stream.flush()
            except Exception:
                self.handleError(records[-1])

    def _write_periodically(self) -> None:
        while not self._closing:
            self._wake.wait(self.interval)
            self._wake.clear()
            self.flush()

    def close(self) -> None:
        self._closing = True
        self._wake.set()
        if self._writer is not threading.current_thread():
            self._writer.join(timeout=5)
        self.flush()
        super().close()


def log_config(level: str = "INFO", flush_seconds: float = 0.2) -> dict[str, Any]:
    """A logging.config dict that makes every logger, uvicorn's included, write JSON;
    in batches every `flush_seconds` (BatchedStreamHandler), each line at once if 0."""
    handler: dict[str, Any] = {
        "formatter": "json",
        "filters": ["request_id"],
        "stream": "ext://sys.stderr",
    }
    if flush_seconds > 0:
        handler.update(
            {"()": "graph.telemetry.logs.BatchedStreamHandler", "interval": flush_seconds}
        )
    else:
        handler["class"] = "logging.StreamHandler"
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {"request_id": {"()": "graph.telemetry.logs.RequestIdFilter"}},
        "formatters": {
            "json": {
                # orjson: the same lines, a quarter cheaper than the json module.
                "()": "pythonjsonlogger.orjson.OrjsonFormatter",
                "fmt": ["levelname", "name", "message"],
                "rename_fields": {"levelname": "level", "name": "logger"},
                "timestamp": True,
                # uvicorn attaches an ANSI-coloured copy of some messages; never write it.
                "reserved_attrs": [*RESERVED_ATTRS, "color_message"],
            }
        },
        "handlers": {"default": handler},
        "root": {"handlers": ["default"], "level": level.upper()},
        "loggers": {
            # uvicorn installs its own handlers unless told otherwise.
            "uvicorn": {"handlers": [], "level": level.upper(), "propagate": True},
            "uvicorn.error": {"handlers": [], "level": level.upper(), "propagate": True},
            "uvicorn.access": {"handlers": [], "level": "WARNING", "propagate": True},
            # httpx says every call to the embedder or a Qdrant server at INFO, with the
            # whole URL: a line per call, and any user:password in EMBED_URL or QDRANT_URL.
            "httpx": {"level": "WARNING"},
            "httpcore": {"level": "WARNING"},
            # The MCP SDK says at INFO that each stateless request's session ends.
            "mcp.server.streamable_http": {"level": "WARNING"},
        },
    }


def configure(level: str = "INFO", flush_seconds: float = 0.2) -> None:
    import logging.config

    logging.config.dictConfig(log_config(level, flush_seconds))
    # A library's warnings.warn() becomes a WARNING of logger py.warnings, a JSON line, not
    # plain text on stderr.
    logging.captureWarnings(True)
    _route_loguru()
    # No line carries the thread, the process or the caller's file and line (the JSON
    # formatter leaves them out), so records skip collecting them: ~3 of ~13 us a line.
    logging.logThreads = logging.logProcesses = logging.logMultiprocessing = False
    # The logging module's own switch (its comment on _srcfile): None skips findCaller().
    logging._srcfile = None


def _route_loguru() -> None:
    """fastembed logs through loguru, which writes its own plain-text lines to stderr: its
    records go to the logging module instead, as JSON lines like every other."""
    try:
        from loguru import logger as loguru_logger
    except ImportError:  # fastembed is not installed
        return

    def forward(message: Any) -> None:
        record = message.record
        logging.getLogger(record["name"] or "loguru").log(record["level"].no, record["message"])

    loguru_logger.remove()
    loguru_logger.add(forward, level=0, format="{message}")
