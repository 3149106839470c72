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
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from strawberry.exceptions import MissingQueryError
from strawberry.http.ides import get_graphql_ide_html
from strawberry.schema.exceptions import CannotGetOperationTypeError, InvalidOperationTypeError
from strawberry.types import ExecutionResult
from strawberry.types.graphql import OperationType

from graph.errors import ApiError, ErrorCode, Unauthenticated
from graph.graphql.compiled.fastpath import FastPath
from graph.graphql.extensions import forbidden_result, format_errors, missing_scope
from graph.graphql.schema import MemorySchema
from graph.graphql.schema.context import RequestContext
from graph.http.middleware import request_id_of
from graph.http.responses import JSONResponse, error_response
from graph.security.auth import OPEN_PRINCIPAL, Authenticator, Principal
from graph.security.ratelimit import TenantRateLimiter
from graph.settings import Settings
from graph.store.base import VectorStore
from graph.telemetry.metrics import AUTH_FAILURES, GRAPHQL_ERRORS
from graph.telemetry.observations import Operation, OperationRecorder

logger = logging.getLogger("graph.request")

ALLOWED_OPERATIONS = frozenset({OperationType.QUERY, OperationType.MUTATION})


class GraphQLEndpoint:
    def __init__(
        self,
        schema: MemorySchema,
        fast_path: FastPath,
        store: VectorStore,
        settings: Settings,
        state: dict[str, Any],
        recorder: OperationRecorder,
        authenticator: Authenticator | None = None,
        limiter: TenantRateLimiter | None = None,
    ) -> None:
        self.authenticator = authenticator
        self.limiter = limiter
        # Tenants whose default collection this process has made sure exists.
        self.tenants_ready: set[str] = set()
        self.schema = schema
        self.fast_path = fast_path
        self.store = store
        self.settings = settings
        self.state = state
        self.graphiql_html = get_graphql_ide_html("graphiql") if settings.server.graphiql else None
        self.recorder = recorder

    async def handle(self, request: Request) -> Response:
        request_id = request_id_of(request.scope)
        # Credential and rate limit first: a refused request costs no body read or parse.
        principal = OPEN_PRINCIPAL
        if self.authenticator is not None:
            try:
                principal = self.authenticator.authenticate(request.headers.get("authorization"))
            except Unauthenticated as exc:
                return self._deny(401, ErrorCode.UNAUTHENTICATED, exc.message, request_id)
        if self.limiter is not None:
            retry_after = await self.limiter.hit(principal.tenant)
            if retry_after is not None:
                return self._deny(
                    429,
                    ErrorCode.RATE_LIMITED,
                    "Too many requests for this tenant; retry later",
                    request_id,
                    {"Retry-After": str(retry_after)},
                )
        if request.method != "POST":
            return self._get(request, request_id)
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
        if principal.tenant not in self.tenants_ready:
            await self._prepare_tenant(principal.tenant)
        return await self._execute(query, variables, operation_name, request_id, principal)

    async def _prepare_tenant(self, tenant: str) -> None:
        """Every tenant has the default collection, made on its first request."""
        settings = self.settings
        try:
            await self.store.ensure_collection(
                tenant,
                settings.store.collection,
                settings.store.vector_size,
                settings.store.distance,
            )
        except ApiError:
            logger.warning("Could not prepare the default collection", extra={"tenant": tenant})
            return
        self.tenants_ready.add(tenant)

    async def _execute(
        self,
        query: str,
        variables: dict[str, Any] | None,
        operation_name: str | None,
        request_id: str,
        principal: Principal = OPEN_PRINCIPAL,
    ) -> Response:
        context = RequestContext(
            store=self.store,
            settings=self.settings,
            request_id=request_id,
            principal=principal,
            extra=self.state,
        )
        started = time.perf_counter()
        plan = self.fast_path.plan(query, operation_name)
        result: ExecutionResult | None
        if plan is not None:
            refused = missing_scope(plan.operation, None, principal.scopes)
            if refused is None:
                result = await self.fast_path.execute(plan, variables, context)
            else:
                context.validated, context.forbidden = True, True
                context.operation_type = plan.operation_type
                context.operation_name = plan.operation_name
                result = ExecutionResult(data=None, errors=forbidden_result(refused).errors)
        else:
            result = await self._execute_general(query, variables, operation_name, context)
        if result is None:
            return self._refuse(
                400, "No query or mutation in the document matches the request", request_id
            )
        body: dict[str, Any] = {}
        codes: list[ErrorCode] = []
        if result.errors:
            body["errors"], codes = format_errors(list(result.errors), context)
        if context.validated:
            body["data"] = result.data
        elapsed = time.perf_counter() - started
        # Its metrics and log line are recorded in a batch (graph/telemetry/observations.py).
        self.recorder.add(
            Operation(
                context.operation_type,
                context.operation_name,
                principal.tenant,
                request_id,
                elapsed,
                codes,
                time.time(),
            )
        )
        if context.forbidden:
            AUTH_FAILURES.labels(ErrorCode.FORBIDDEN.value).inc()
            return JSONResponse(body, status_code=403)
        return JSONResponse(body)

    async def _execute_general(
        self,
        query: str,
        variables: dict[str, Any] | None,
        operation_name: str | None,
        context: RequestContext,
    ) -> ExecutionResult | None:
        """Strawberry's executor, for whatever the fast path does not compile."""
        try:
            return await self.schema.execute(
                query,
                variable_values=variables,
                context_value=context,
                operation_name=operation_name,
                allowed_operation_types=ALLOWED_OPERATIONS,
            )
        except (CannotGetOperationTypeError, MissingQueryError, InvalidOperationTypeError):
            # Subscriptions, and names that match no operation of the document.
            return None

    def _get(self, request: Request, request_id: str) -> Response:
        if self.graphiql_html is not None and "text/html" in request.headers.get("accept", ""):
            return HTMLResponse(self.graphiql_html)
        return self._refuse(
            405,
            "Send GraphQL operations as POST with a JSON body",
            request_id,
            headers={"Allow": "POST"},
        )

    @staticmethod
    def _deny(
        status: int,
        code: ErrorCode,
        message: str,
        request_id: str,
        headers: dict[str, str] | None = None,
    ) -> Response:
        GRAPHQL_ERRORS.labels(code=code.value).inc()
        if status == 401:
            AUTH_FAILURES.labels(code.value).inc()
            headers = {"WWW-Authenticate": "Bearer"}
        logger.info("graphql request refused", extra={"status": status, "code": code.value})
        return error_response(status, code, message, request_id, headers)

    @staticmethod
    def _refuse(
        status: int, message: str, request_id: str, headers: dict[str, str] | None = None
    ) -> Response:
        GRAPHQL_ERRORS.labels(code=ErrorCode.BAD_REQUEST.value).inc()
        logger.info("graphql request refused", extra={"status": status, "reason": message})
        return error_response(status, ErrorCode.BAD_REQUEST, message, request_id, headers)
