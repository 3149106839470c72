"""/graphql: GraphQL over HTTP (POST, and queries over GET), coded errors.

A thin endpoint of our own rather than Strawberry's HTTP view: it follows the
GraphQL-over-HTTP spec (graph/http/protocol.py, docs/http.md), refuses what we do
not serve (batches, mutations over GET, non-JSON bodies) with coded errors, and
keeps the per-request work to one JSON decode, one execute and one JSON encode.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from graphql import ExecutionResult, GraphQLError
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from graph.errors import ErrorCode, Forbidden
from graph.graphql.errors import format_errors
from graph.graphql.execution import Executor, failed_before_execution
from graph.graphql.policy import Policy
from graph.graphql.prepare import PreparedOperation, Preparer, Refusal
from graph.graphql.schema.context import RequestContext, ServerState
from graph.http.gate import denial_response
from graph.http.graphiql import GraphiQL
from graph.http.middleware import request_id_of
from graph.http.protocol import (
    JSON,
    GraphQLParams,
    Malformed,
    body_params,
    content_type_refusal,
    csrf_refusal,
    query_string_params,
    response_media_type,
)
from graph.http.responses import JSONResponse, error_response, utf8
from graph.memory.service import MemoryService
from graph.security.auth import Authenticator
from graph.security.gate import Denial, Gate
from graph.security.principals import Principal
from graph.security.ratelimit import TenantRateLimiter
from graph.settings import Settings
from graph.store.base import VectorStore
from graph.store.defaults import DefaultCollections
from graph.telemetry.metrics import AUTH_FAILURES, GRAPHQL_ERRORS
from graph.telemetry.observations import Operation, OperationRecorder

logger = logging.getLogger("graph.request")

ALLOW = {"Allow": "GET, POST"}


class GraphQLEndpoint:
    """Credential, rate limit and body first; then prepare (cached), the policy's rules,
    and one of the two executors."""

    def __init__(
        self,
        preparer: Preparer,
        policy: Policy,
        executor: Executor,
        store: VectorStore,
        defaults: DefaultCollections,
        settings: Settings,
        server: ServerState,
        recorder: OperationRecorder,
        authenticator: Authenticator | None = None,
        limiter: TenantRateLimiter | None = None,
        memories: MemoryService | None = None,
        graphiql: GraphiQL | None = None,
    ) -> None:
        self.memories = memories
        self.preparer = preparer
        self.policy = policy
        self.executor = executor
        self.store = store
        self.defaults = defaults
        self.settings = settings
        self.server = server
        self.recorder = recorder
        self.authenticator = authenticator
        self.limiter = limiter
        self.gate = Gate(authenticator, limiter)
        self.hide_schema = not settings.limits.graphql_introspection
        self.graphiql = graphiql

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = await self.handle(Request(scope, receive))
        await response(scope, receive, send)

    async def handle(self, request: Request) -> Response:
        request_id = request_id_of(request.scope)
        if request.method == "GET" and self.graphiql is not None and self._wants_html(request):
            return self.graphiql.page()  # it holds no data: every operation it sends is gated
        if request.method not in ("GET", "POST"):
            return self._refuse(
                405, "Send GraphQL requests as POST (or queries as GET)", request_id, ALLOW
            )
        media_type = response_media_type(request.headers.get("accept"))
        # Credential and rate limit first: a refused request costs no body read or parse.
        admitted = await self.gate.admit(request.headers.get("authorization"))
        if isinstance(admitted, Denial):
            GRAPHQL_ERRORS.labels(code=admitted.code.value).inc()
            return denial_response(admitted, request_id, "graphql", media_type or JSON)
        principal = admitted
        if media_type is None:
            return self._refuse(
                406,
                "Accept application/graphql-response+json or application/json",
                request_id,
            )
        params: GraphQLParams | Malformed | None
        if request.method == "GET":
            params = csrf_refusal(request.headers) or query_string_params(request.query_params)
        else:
            params = content_type_refusal(request.headers.get("content-type"))
            if params is None:
                params = body_params(await request.body())
        if isinstance(params, Malformed):
            return self._refuse(
                params.status, params.message, request_id, params.headers, media_type
            )
        over_get = request.method == "GET"
        return await self._run(params, media_type, over_get, request_id, principal)

    async def _run(
        self,
        params: GraphQLParams,
        media_type: str,
        over_get: bool,
        request_id: str,
        principal: Principal,
    ) -> Response:
        started = time.perf_counter()
        prepared = await self.preparer.prepare(params.query, params.operation_name)
        if isinstance(prepared, Refusal):
            return self._refused(prepared, media_type, principal, request_id, started)
        if over_get and prepared.operation_type != "query":
            # The spec: a mutation over GET is 405, and nothing runs.
            return self._refuse(
                405, "Send mutations as POST", request_id, {"Allow": "POST"}, media_type
            )
        variables = params.variables
        refusal = self.policy.refusal(prepared, principal, variables)
        if refusal is not None:
            error = GraphQLError(refusal.message, original_error=refusal)
            result = ExecutionResult(data=None, errors=[error])
        else:
            made = await self.defaults.ensure(principal.tenant)
            context = RequestContext(
                store=self.store,
                settings=self.settings,
                request_id=request_id,
                principal=principal,
                server=self.server,
                memories=self.memories,
                default_problem=None if made else self.defaults.problem(principal.tenant),
            )
            result = await self.executor.execute(prepared, variables, context)
        body: dict[str, Any] = {}
        codes: list[ErrorCode] = []
        if result.errors:
            body["errors"], codes = format_errors(
                result.errors, request_id, hide_schema=self.hide_schema
            )
        self._record(prepared, principal, request_id, started, codes)
        status = 200
        if refusal is not None or failed_before_execution(result):
            # A request error: no data entry, and a 4xx status for a client of
            # application/graphql-response+json.
            status = request_error_status(200, media_type)
            if isinstance(refusal, Forbidden):
                AUTH_FAILURES.labels(ErrorCode.FORBIDDEN.value).inc()
                status = 403
        else:
            body["data"] = result.data
        return JSONResponse(body, status_code=status, media_type=utf8(media_type))

    def _refused(
        self,
        refusal: Refusal,
        media_type: str,
        principal: Principal,
        request_id: str,
        started: float,
    ) -> Response:
        """A document that does not run: its errors, no data (as graphql-core answers a
        request error)."""
        errors, codes = format_errors(
            refusal.errors, request_id, hide_schema=self.hide_schema, refused_with=refusal.code
        )
        self._record(None, principal, request_id, started, codes)
        return JSONResponse(
            {"errors": errors},
            status_code=request_error_status(refusal.status, media_type),
            media_type=utf8(media_type),
        )

    def _record(
        self,
        operation: PreparedOperation | None,
        principal: Principal,
        request_id: str,
        started: float,
        codes: list[ErrorCode],
    ) -> None:
        """Its metrics and log line are recorded in a batch (graph/telemetry/observations.py)."""
        self.recorder.add(
            Operation(
                operation.operation_type if operation else "unknown",
                operation.operation_name if operation else None,
                principal.tenant,
                request_id,
                time.perf_counter() - started,
                codes,
                time.time(),
            )
        )

    @staticmethod
    def _wants_html(request: Request) -> bool:
        return "text/html" in request.headers.get("accept", "")

    @staticmethod
    def _refuse(
        status: int,
        message: str,
        request_id: str,
        headers: dict[str, str] | None = None,
        media_type: str = JSON,
    ) -> Response:
        GRAPHQL_ERRORS.labels(code=ErrorCode.BAD_REQUEST.value).inc()
        logger.info("graphql request refused", extra={"status": status, "reason": message})
        return error_response(
            status, ErrorCode.BAD_REQUEST, message, request_id, headers, media_type
        )


def request_error_status(status: int, media_type: str) -> int:
    """A request error's status: for application/json the legacy one (200 unless the
    request was not well-formed), for application/graphql-response+json always 4xx."""
    if media_type == JSON or status >= 400:
        return status
    return 400
