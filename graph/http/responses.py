"""JSON responses, and the error body shared by the endpoint and the middleware."""

from __future__ import annotations

import json
from typing import Any

import orjson
from starlette.responses import Response

from graph.errors import ErrorCode


def dumps(content: Any) -> bytes:
    try:
        return orjson.dumps(content)
    except TypeError:
        # orjson refuses integers beyond 64 bits, which a JSON payload may hold.
        return json.dumps(content, separators=(",", ":")).encode()


class JSONResponse(Response):
    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return dumps(content)


def error_body(code: ErrorCode, message: str, request_id: str) -> dict[str, Any]:
    return {
        "errors": [
            {"message": message, "extensions": {"code": code.value, "requestId": request_id}}
        ]
    }


def error_response(
    status: int,
    code: ErrorCode,
    message: str,
    request_id: str,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    return JSONResponse(error_body(code, message, request_id), status_code=status, headers=headers)
