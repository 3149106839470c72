"""JSON responses, and the error body shared by the endpoint and the middleware."""

from __future__ import annotations

import json
from typing import Any

import orjson
from starlette.exceptions import HTTPException
from starlette.requests import Request
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


# What Starlette's router refuses itself (no route at the path, a method a route does not
# take): the coded JSON body every other refusal has, instead of its plain text.
ROUTER_REFUSALS = {
    404: (ErrorCode.NOT_FOUND, "No route at this path (see the README's Operating it)"),
    405: (ErrorCode.BAD_REQUEST, "This route does not take this method (see Allow)"),
}


async def router_refusal(request: Request, exc: Exception) -> JSONResponse:
    """Starlette's handler for its HTTPException (the router's 404 and 405)."""
    assert isinstance(exc, HTTPException)
    code, message = ROUTER_REFUSALS.get(exc.status_code, (ErrorCode.BAD_REQUEST, exc.detail))
    request_id: str = request.scope["state"]["request_id"]  # RequestIdMiddleware's
    headers = dict(exc.headers) if exc.headers else None
    return error_response(exc.status_code, code, message, request_id, headers=headers)
