"""Schema extensions and the error policy: limits, request phases, error codes."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from typing import Any

from graphql import (
    ASTValidationRule,
    DirectiveNode,
    GraphQLError,
    GraphQLSyntaxError,
    ValidationRule,
)
from strawberry.extensions import (
    AddValidationRules,
    MaxTokensLimiter,
    ParserCache,
    SchemaExtension,
    ValidationCache,
)
from strawberry.extensions.max_aliases import create_validator as max_aliases_rule
from strawberry.extensions.query_depth_limiter import create_validator as max_depth_rule

from graph.errors import ApiError, ErrorCode
from graph.metrics import GRAPHQL_ERRORS
from graph.schema.context import RequestContext
from graph.settings import Settings

logger = logging.getLogger("graph.errors")

DOCUMENT_CACHE_SIZE = 512


def max_directives_rule(max_directives: int) -> type[ValidationRule]:
    class MaxDirectivesRule(ValidationRule):
        seen = 0

        def enter_directive(self, node: DirectiveNode, *_args: Any) -> None:
            self.seen += 1
            if self.seen == max_directives + 1:
                self.report_error(
                    GraphQLError(f"A document may use at most {max_directives} directives.")
                )

    return MaxDirectivesRule


class RequestObserver(SchemaExtension):
    """Tells the error policy whether a request got past validation."""

    def on_execute(self) -> Iterator[None]:
        context = self.execution_context.context
        if isinstance(context, RequestContext):
            context.validated = True
            context.operation_type = self.execution_context.operation_type.value
            context.operation_name = self.execution_context.operation_name
        yield


def validation_rules(settings: Settings) -> list[type[ASTValidationRule]]:
    """Our limits as validation rules, beyond graphql-core's own. Built once, so that
    validation caches keyed by document and rules hit across requests."""
    return [
        max_depth_rule(settings.max_query_depth, None),
        max_aliases_rule(settings.max_aliases),
        max_directives_rule(settings.max_directives),
    ]


def schema_extensions(
    settings: Settings, rules: list[type[ASTValidationRule]]
) -> list[Callable[[], SchemaExtension]]:
    """Limits and caches, in the order they must run."""
    return [
        lambda: MaxTokensLimiter(max_token_count=settings.max_tokens),
        lambda: ParserCache(maxsize=DOCUMENT_CACHE_SIZE),
        lambda: AddValidationRules(rules),
        lambda: ValidationCache(maxsize=DOCUMENT_CACHE_SIZE),
        RequestObserver,
    ]


def root_cause(error: GraphQLError) -> Exception | None:
    """The exception behind an error, through graphql-core's own wrapping (variable
    coercion wraps a scalar's exception in a GraphQLError, sometimes twice)."""
    cause: Exception | None = error.original_error
    while isinstance(cause, GraphQLError):
        cause = cause.original_error
    return cause


def error_code(error: GraphQLError, validated: bool) -> ErrorCode:
    original = root_cause(error)
    if isinstance(original, ApiError):
        return original.code
    if isinstance(error, GraphQLSyntaxError):
        return ErrorCode.GRAPHQL_PARSE_FAILED
    if original is None:
        # Before execution: a validation rule failed. After it: variables could not be
        # coerced, or the operation could not be chosen; both are the client's input.
        return ErrorCode.BAD_USER_INPUT if validated else ErrorCode.GRAPHQL_VALIDATION_FAILED
    return ErrorCode.INTERNAL_SERVER_ERROR


def format_errors(
    errors: list[GraphQLError], context: RequestContext
) -> tuple[list[dict[str, Any]], list[ErrorCode]]:
    """Every error gets a code and the request id; unexpected ones lose their text."""
    formatted: list[dict[str, Any]] = []
    codes: list[ErrorCode] = []
    for error in errors:
        code = error_code(error, context.validated)
        codes.append(code)
        GRAPHQL_ERRORS.labels(code=code.value).inc()
        if code is ErrorCode.INTERNAL_SERVER_ERROR:
            original = root_cause(error) or error
            logger.error(
                "Unexpected error in a resolver",
                exc_info=(type(original), original, original.__traceback__),
                extra={"path": error.path, "request_id": context.request_id},
            )
            message = "Internal server error"
        else:
            message = error.message
        entry: dict[str, Any] = {"message": message}
        if error.locations:
            entry["locations"] = [
                {"line": loc.line, "column": loc.column} for loc in error.locations
            ]
        if error.path:
            entry["path"] = error.path
        entry["extensions"] = {"code": code.value, "requestId": context.request_id}
        formatted.append(entry)
    return formatted, codes
