"""GraphQL errors to response entries: a code by type, masking, at most MAX_ERRORS.

The phase an error comes from decides its code when nothing more specific does: the
errors of a Refusal carry its code; errors raised while executing carry the code of the
ApiError behind them, or BAD_USER_INPUT when graphql-core itself rejects the variables,
or INTERNAL_SERVER_ERROR, whose text goes to the log and never to the client.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from graphql import GraphQLError

from graph.errors import ApiError, ErrorCode
from graph.graphql.prepare import MAX_ERRORS
from graph.telemetry.metrics import GRAPHQL_ERRORS

logger = logging.getLogger("graph.errors")

# With introspection off, graphql-core's own messages (errors with no exception of ours
# behind them; our size rules raise LimitExceeded, whose text is kept) are replaced: they name the
# schema's fields, arguments and types ("Field 'health' of type 'Health!' must have a
# selection..."), from which a tool like clairvoyance rebuilds the schema.
HIDDEN_MESSAGES = {
    ErrorCode.GRAPHQL_VALIDATION_FAILED: "The document is not valid for this API",
    ErrorCode.BAD_USER_INPUT: "The variables do not fit the operation",
}


def root_cause(error: GraphQLError) -> Exception | None:
    """The exception behind an error, through graphql-core's own wrapping (variable
    coercion wraps a scalar's exception in a GraphQLError, sometimes twice)."""
    cause: Exception | None = error.original_error
    while isinstance(cause, GraphQLError):
        cause = cause.original_error
    return cause


def execution_code(error: GraphQLError) -> ErrorCode:
    """The code of an error raised while an operation was executed."""
    cause = root_cause(error)
    if isinstance(cause, ApiError):
        return cause.code
    if cause is None:
        # graphql-core's own: the variables could not be coerced to their types.
        return ErrorCode.BAD_USER_INPUT
    return ErrorCode.INTERNAL_SERVER_ERROR


def refusal_code(error: GraphQLError, code: ErrorCode) -> ErrorCode:
    """The code of an error that refused a document before it ran."""
    cause = root_cause(error)
    if isinstance(cause, ApiError):
        return cause.code
    if isinstance(cause, ValueError | TypeError | ArithmeticError):
        # A literal a scalar could not parse, as an Int of 5,000 digits.
        return ErrorCode.GRAPHQL_VALIDATION_FAILED
    return code


def format_errors(
    errors: Sequence[GraphQLError],
    request_id: str,
    *,
    hide_schema: bool,
    refused_with: ErrorCode | None = None,
) -> tuple[list[dict[str, Any]], list[ErrorCode]]:
    """Response entries and their codes. `refused_with`: the errors refused the document
    with this code; None: they were raised while executing it."""
    formatted: list[dict[str, Any]] = []
    codes: list[ErrorCode] = []
    for error in errors[:MAX_ERRORS]:
        code = execution_code(error) if refused_with is None else refusal_code(error, refused_with)
        codes.append(code)
        GRAPHQL_ERRORS.labels(code=code.value).inc()
        formatted.append(_entry(error, code, request_id, hide_schema))
    return formatted, codes


def _entry(
    error: GraphQLError, code: ErrorCode, request_id: str, hide_schema: bool
) -> dict[str, Any]:
    cause = root_cause(error)
    hidden = False
    if code is ErrorCode.INTERNAL_SERVER_ERROR:
        original = cause or error
        logger.error(
            "Unexpected error in a resolver",
            exc_info=(type(original), original, original.__traceback__),
            extra={"path": error.path, "request_id": request_id},
        )
        message = "Internal server error"
    elif hide_schema and code in HIDDEN_MESSAGES and cause is None:
        message, hidden = HIDDEN_MESSAGES[code], True
    else:
        message = error.message
    entry: dict[str, Any] = {"message": message}
    if error.locations and not hidden:
        entry["locations"] = [{"line": loc.line, "column": loc.column} for loc in error.locations]
    if error.path:
        entry["path"] = error.path
    entry["extensions"] = {"code": code.value, "requestId": request_id}
    return entry
