"""POST /graphql: JSON in, Strawberry's executor, JSON out with coded errors.

A thin endpoint of our own rather than Strawberry's HTTP view: it refuses what
we do not serve (batches, GET operations, non-JSON bodies) with coded JSON
errors, and keeps the per-request work to one JSON decode, one execute and one
JSON encode.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import orjson
from graphql import ExecutionResult, GraphQLError
from starlette.requests import Request
from starlette.responses import Response

from graph.errors import ErrorCode, Forbidden
from graph.graphql.errors import format_errors
from graph.graphql.execution import Executor
from graph.graphql.policy import Policy
from graph.graphql.prepare import PreparedOperation, Preparer, Refusal
from graph.graphql.schema.context import RequestContext, ServerState
from graph.http.gate import denial_response
from graph.http.graphiql import GraphiQL
from graph.http.middleware import request_id_of
from graph.http.responses import JSONResponse, error_response
from graph.memory.service import MemoryService
from graph.security.auth import Authenticator, Principal
from graph.security.gate import Denial, Gate
from graph.security.ratelimit import TenantRateLimiter
from graph.settings import Settings
from graph.store.base import VectorStore
from graph.store.defaults import DefaultCollections
from graph.telemetry.metrics import AUTH_FAILURES, GRAPHQL_ERRORS
from graph.telemetry.observations import Operation, OperationRecorder

logger = logging.getLogger("graph.request")


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

    async def handle(self, request: Request) -> Response:
        request_id = request_id_of(request.scope)
        if request.method == "GET" and self.graphiql is not None and self._wants_html(request):
            return self.graphiql.page()  # it holds no data: every operation it sends is gated
        # Credential and rate limit first: a refused request costs no body read or parse.
        admitted = await self.gate.admit(request.headers.get("authorization"))
        if isinstance(admitted, Denial):
            GRAPHQL_ERRORS.labels(code=admitted.code.value).inc()
            return denial_response(admitted, request_id, "graphql")
        principal = admitted
        if request.method != "POST":
            return self._refuse(
                405,
                "Send GraphQL operations as POST with a JSON body",
                request_id,
                headers={"Allow": "POST"},
            )
        content_type = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
        if content_type != "application/json":
            return self._refuse(
                415, "Send GraphQL requests as POST with Content-Type: application/json", request_id
            )
        try:
            data = orjson.loads(await request.body())
        except orjson.JSONDecodeError:
            return self._refuse(400, "The request body is not valid JSON", request_id)
        if isinstance(data, list):
            return self._refuse(400, "Batched requests are not supported", request_id)
        if not isinstance(data, dict):
            return self._refuse(400, "The request body must be a JSON object", request_id)
        query = data.get("query")
        variables = data.get("variables")
        operation_name = data.get("operationName")
        if not isinstance(query, str) or not query.strip():
            return self._refuse(400, "The request has no GraphQL query string", request_id)
        if not isinstance(variables, dict | None):
            return self._refuse(400, "`variables` must be a JSON object", request_id)
        if not isinstance(operation_name, str | None):
            return self._refuse(400, "`operationName` must be a string", request_id)
        return await self._run(query, variables, operation_name, request_id, principal)

    async def _run(
        self,
        query: str,
        variables: dict[str, Any] | None,
        operation_name: str | None,
        request_id: str,
        principal: Principal,
    ) -> Response:
        started = time.perf_counter()
        prepared = await self.preparer.prepare(query, operation_name)
        if isinstance(prepared, Refusal):
            return self._refused(prepared, principal, request_id, started)
        refusal = self.policy.refusal(prepared, principal, variables)
        if refusal is not None:
            error = GraphQLError(refusal.message, original_error=refusal)
            result = ExecutionResult(data=None, errors=[error])
        else:
            await self.defaults.ensure(principal.tenant)
            context = RequestContext(
                store=self.store,
                settings=self.settings,
                request_id=request_id,
                principal=principal,
                server=self.server,
                memories=self.memories,
            )
            result = await self.executor.execute(prepared, variables, context)
        body: dict[str, Any] = {}
        codes: list[ErrorCode] = []
        if result.errors:
            body["errors"], codes = format_errors(
                result.errors, request_id, hide_schema=self.hide_schema
            )
        body["data"] = result.data
        self._record(prepared, principal, request_id, started, codes)
        if isinstance(refusal, Forbidden):
            AUTH_FAILURES.labels(ErrorCode.FORBIDDEN.value).inc()
            return JSONResponse(body, status_code=403)
        return JSONResponse(body)

    def _refused(
        self, refusal: Refusal, principal: Principal, request_id: str, started: float
    ) -> Response:
        """A document that does not run: its errors, no data (as graphql-core answers a
        request error)."""
        errors, codes = format_errors(
            refusal.errors, request_id, hide_schema=self.hide_schema, refused_with=refusal.code
        )
        self._record(None, principal, request_id, started, codes)
        return JSONResponse({"errors": errors}, status_code=refusal.status)

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
        status: int, message: str, request_id: str, headers: dict[str, str] | None = None
    ) -> Response:
        GRAPHQL_ERRORS.labels(code=ErrorCode.BAD_REQUEST.value).inc()
        logger.info("graphql request refused", extra={"status": status, "reason": message})
        return error_response(status, ErrorCode.BAD_REQUEST, message, request_id, headers)
