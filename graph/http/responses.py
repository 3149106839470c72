"""JSON responses, and the error body shared by the endpoint and the middleware."""

from __future__ import annotations

import json
from typing import Any

import orjson
from starlette.responses import Response

from graph.errors import ErrorCode, error_body


def dumps(content: Any) -> bytes:
    try:
        return orjson.dumps(content)
    except TypeError:
        # orjson refuses integers beyond 64 bits, which a JSON payload may hold.
        return json.dumps(content, separators=(",", ":")).encode()


def utf8(media_type: str) -> str:
    """The Content-Type of a body of this media type: always UTF-8, and saying so."""
    return f"{media_type}; charset=utf-8"


class JSONResponse(Response):
    media_type = utf8("application/json")

    def render(self, content: Any) -> bytes:
        return dumps(content)


def error_response(
    status: int,
    code: ErrorCode,
    message: str,
    request_id: str,
    headers: dict[str, str] | None = None,
    media_type: str = "application/json",
) -> JSONResponse:
    return JSONResponse(
        error_body(code, message, request_id),
        status_code=status,
        headers=headers,
        media_type=utf8(media_type),
    )
