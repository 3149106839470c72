"""The gate (graph/security/gate.py) on HTTP: a denial as a coded JSON response, and
the gate in front of an ASGI app (the MCP transport), which finds the principal it
admitted in scope["state"]["principal"]."""

from __future__ import annotations

import logging

from starlette.types import ASGIApp, Receive, Scope, Send

from graph.http.middleware import request_id_of
from graph.http.responses import JSONResponse, error_response
from graph.security.gate import Denial, Gate

logger = logging.getLogger("graph.request")


def denial_response(
    denial: Denial, request_id: str, route: str, media_type: str = "application/json"
) -> JSONResponse:
    logger.info(
        f"{route} request refused", extra={"status": denial.status, "code": denial.code.value}
    )
    return error_response(
        denial.status, denial.code, denial.message, request_id, denial.headers or None, media_type
    )


class GatedApp:
    """Admits each HTTP request through the gate before the wrapped app sees it."""

    def __init__(self, app: ASGIApp, gate: Gate, route: str) -> None:
        self.app = app
        self.gate = gate
        self.route = route

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        authorization = None
        for name, value in scope["headers"]:
            if name == b"authorization":
                authorization = value.decode("latin-1")
                break
        admitted = await self.gate.admit(authorization)
        if isinstance(admitted, Denial):
            response = denial_response(admitted, request_id_of(scope), self.route)
            await response(scope, receive, send)
            return
        scope["state"]["principal"] = admitted
        await self.app(scope, receive, send)
