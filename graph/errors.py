"""The error codes clients rely on, and the exceptions that carry them."""

from __future__ import annotations

from enum import StrEnum
from typing import Any


class ErrorCode(StrEnum):
    GRAPHQL_PARSE_FAILED = "GRAPHQL_PARSE_FAILED"
    GRAPHQL_VALIDATION_FAILED = "GRAPHQL_VALIDATION_FAILED"
    BAD_USER_INPUT = "BAD_USER_INPUT"
    BAD_REQUEST = "BAD_REQUEST"
    UNAUTHENTICATED = "UNAUTHENTICATED"
    FORBIDDEN = "FORBIDDEN"
    NOT_FOUND = "NOT_FOUND"
    ALREADY_EXISTS = "ALREADY_EXISTS"
    RATE_LIMITED = "RATE_LIMITED"
    PAYLOAD_TOO_LARGE = "PAYLOAD_TOO_LARGE"
    REQUEST_TIMEOUT = "REQUEST_TIMEOUT"
    HEADERS_TOO_LARGE = "HEADERS_TOO_LARGE"
    STORE_UNAVAILABLE = "STORE_UNAVAILABLE"
    STORE_TIMEOUT = "STORE_TIMEOUT"
    STORE_OVERLOADED = "STORE_OVERLOADED"
    INTERNAL_SERVER_ERROR = "INTERNAL_SERVER_ERROR"
    EMBEDDER_UNAVAILABLE = "EMBEDDER_UNAVAILABLE"
    SHUTTING_DOWN = "SHUTTING_DOWN"


def error_body(code: ErrorCode, message: str, request_id: str) -> dict[str, Any]:
    """The JSON body of every refusal made outside GraphQL's execution (HTTP, MCP's)."""
    return {
        "errors": [
            {"message": message, "extensions": {"code": code.value, "requestId": request_id}}
        ]
    }


MAX_SHOWN_CHARS = 64


def shown(value: object) -> str:
    """Client input as an error message or a log line shows it: at most MAX_SHOWN_CHARS
    characters of it, so that a megabyte sent is not a megabyte echoed or logged."""
    if isinstance(value, int) and value.bit_length() > 4 * MAX_SHOWN_CHARS:
        return f"(an integer of {value.bit_length()} bits)"  # str() of it could take long
    text = str(value)
    if len(text) <= MAX_SHOWN_CHARS:
        return text
    return f"{text[:MAX_SHOWN_CHARS]}... ({len(text)} characters)"


class ConfigError(ValueError):
    """A setting the server cannot start with; it refuses to start, saying which."""


class ApiError(Exception):
    """An error whose message is safe to show to the client, with its code."""

    code: ErrorCode = ErrorCode.INTERNAL_SERVER_ERROR
    default_message = "Internal server error"

    def __init__(self, message: str | None = None) -> None:
        message = message or self.default_message
        super().__init__(message)
        self.message = message


class BadUserInput(ApiError):
    code = ErrorCode.BAD_USER_INPUT


class NotFound(ApiError):
    code = ErrorCode.NOT_FOUND


class AlreadyExists(ApiError):
    code = ErrorCode.ALREADY_EXISTS


class StoreUnavailable(ApiError):
    code = ErrorCode.STORE_UNAVAILABLE
    default_message = "The vector store is unavailable"


class StoreTimeout(ApiError):
    code = ErrorCode.STORE_TIMEOUT
    default_message = "The vector store did not answer in time"


class StoreOverloaded(ApiError):
    """Shed before reaching the store: too many calls were already waiting for it."""

    code = ErrorCode.STORE_OVERLOADED
    default_message = "The vector store is overloaded; retry later"


class EmbedderUnavailable(ApiError):
    """The configured embedder failed, timed out or is overloaded; nothing was written."""

    code = ErrorCode.EMBEDDER_UNAVAILABLE
    default_message = "The embedding model is unavailable"


class Unauthenticated(ApiError):
    code = ErrorCode.UNAUTHENTICATED


class Forbidden(ApiError):
    code = ErrorCode.FORBIDDEN
