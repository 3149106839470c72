"""Schema extensions and the error policy: limits, request phases, error codes."""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterator
from typing import Any

from graphql import (
    ASTValidationRule,
    DirectiveNode,
    DocumentNode,
    ExecutionResult,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLError,
    GraphQLSyntaxError,
    InlineFragmentNode,
    NoSchemaIntrospectionCustomRule,
    OperationDefinitionNode,
    SelectionSetNode,
    ValidationRule,
    get_operation_ast,
)
from graphql.validation.rules import overlapping_fields_can_be_merged
from strawberry.extensions import (
    AddValidationRules,
    MaxTokensLimiter,
    ParserCache,
    SchemaExtension,
    ValidationCache,
)
from strawberry.extensions.max_aliases import create_validator as max_aliases_rule
from strawberry.extensions.query_depth_limiter import create_validator as max_depth_rule

from graph.errors import ApiError, BadUserInput, ErrorCode, Forbidden
from graph.graphql.schema.context import RequestContext
from graph.graphql.schema.sizes import check_variable_sizes, list_limits
from graph.security.auth import Scope, scope_for
from graph.settings import Settings
from graph.telemetry.metrics import GRAPHQL_ERRORS

logger = logging.getLogger("graph.errors")

DOCUMENT_CACHE_SIZE = 512
# graphql-core's budget for comparing a document's fields (OverlappingFieldsCanBeMerged),
# process-wide. Its default, 500,000, let a 20 KB document of 1,990 fields hold the event
# loop for ~0.5 s before validation gave up; documents within our alias and depth limits
# use a few thousand units at most.
overlapping_fields_can_be_merged.MAX_COMPLEXITY_BUDGET = 20_000
# graphql-core's "Did you mean ...?" hints, which reveal the schema when introspection is off.
_SUGGESTION = re.compile(r"\s*Did you mean .*$", re.DOTALL)
# Even without suggestions, graphql-core's validation and variable messages name the
# schema's fields, arguments and types ("Field 'health' of type 'Health!' must have a
# selection..."): clairvoyance rebuilt most of the schema from them. With introspection
# off they are replaced, and only the text of our own limits is kept.
_OWN_LIMIT = re.compile(
    r"exceeds maximum operation depth|aliases found\. Allowed|A document may use at most"
    r"|introspection has been disabled"
)
_HIDDEN_MESSAGES = {
    ErrorCode.GRAPHQL_VALIDATION_FAILED: "The document is not valid for this API",
    ErrorCode.BAD_USER_INPUT: "The variables do not fit the operation",
}


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


def _root_fields(
    selection: SelectionSetNode, document: DocumentNode | None, seen: set[str]
) -> Iterator[str]:
    for node in selection.selections:
        if isinstance(node, FieldNode):
            yield node.name.value
        elif isinstance(node, InlineFragmentNode):
            yield from _root_fields(node.selection_set, document, seen)
        elif isinstance(node, FragmentSpreadNode) and document is not None:
            name = node.name.value
            if name in seen:
                continue
            seen.add(name)
            for definition in document.definitions:
                if isinstance(definition, FragmentDefinitionNode) and definition.name.value == name:
                    yield from _root_fields(definition.selection_set, document, seen)


def missing_scope(
    operation: OperationDefinitionNode, document: DocumentNode | None, scopes: frozenset[Scope]
) -> Forbidden | None:
    """Whether the operation needs a scope the credential lacks: checked on every root
    field before anything runs, so a request is refused whole or not at all."""
    kind = operation.operation.value
    for field in _root_fields(operation.selection_set, document, set()):
        needed = scope_for(kind, field)
        if needed is not None and needed not in scopes:
            return Forbidden(f"This credential lacks the '{needed.value}' scope for {field}")
    return None


def forbidden_result(error: Forbidden) -> ExecutionResult:
    return ExecutionResult(data=None, errors=[GraphQLError(error.message, original_error=error)])


class ScopeGuard(SchemaExtension):
    """missing_scope() for documents the fast path does not take: when a scope is
    missing, the operation does not execute and the endpoint answers 403."""

    def on_execute(self) -> Iterator[None]:
        execution = self.execution_context
        context = execution.context
        document = execution.graphql_document
        if isinstance(context, RequestContext) and document is not None:
            operation = get_operation_ast(document, execution.operation_name)
            error = operation and missing_scope(operation, document, context.principal.scopes)
            if error:
                context.forbidden = True
                execution.result = forbidden_result(error)
        yield


class InputSizeGuard(SchemaExtension):
    """check_variable_sizes() for documents the fast path does not take."""

    def on_execute(self) -> Iterator[None]:
        execution = self.execution_context
        context = execution.context
        document = execution.graphql_document
        if isinstance(context, RequestContext) and document is not None and execution.variables:
            operation = get_operation_ast(document, execution.operation_name)
            try:
                if operation is not None:
                    check_variable_sizes(
                        self.execution_context.schema._schema,
                        operation,
                        execution.variables,
                        list_limits(context.settings),
                    )
            except BadUserInput as error:
                execution.result = ExecutionResult(
                    data=None, errors=[GraphQLError(error.message, original_error=error)]
                )
        yield


def validation_rules(settings: Settings) -> list[type[ASTValidationRule]]:
    """Our limits as validation rules, beyond graphql-core's own. Built once, so that
    validation caches keyed by document and rules hit across requests."""
    rules: list[type[ASTValidationRule]] = [
        max_depth_rule(settings.limits.max_query_depth, None),
        max_aliases_rule(settings.limits.max_aliases),
        max_directives_rule(settings.limits.max_directives),
    ]
    if not settings.limits.graphql_introspection:
        rules.append(NoSchemaIntrospectionCustomRule)
    return rules


def schema_extensions(
    settings: Settings, rules: list[type[ASTValidationRule]]
) -> list[Callable[[], SchemaExtension]]:
    """Limits and caches, in the order they must run."""
    return [
        lambda: MaxTokensLimiter(max_token_count=settings.limits.max_tokens),
        lambda: ParserCache(maxsize=DOCUMENT_CACHE_SIZE),
        lambda: AddValidationRules(rules),
        lambda: ValidationCache(maxsize=DOCUMENT_CACHE_SIZE),
        RequestObserver,
        ScopeGuard,
        InputSizeGuard,
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
    if not validated and isinstance(original, ValueError | TypeError | ArithmeticError):
        # A literal a scalar could not parse, as an Int of 5,000 digits: graphql-core's
        # validation reports what the scalar raised.
        return ErrorCode.GRAPHQL_VALIDATION_FAILED
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
            if not context.settings.limits.graphql_introspection:
                message = _SUGGESTION.sub("", message)
                hidden = _HIDDEN_MESSAGES.get(code)
                if hidden and root_cause(error) is None and not _OWN_LIMIT.search(message):
                    message = hidden
        entry: dict[str, Any] = {"message": message}
        if error.locations and message not in _HIDDEN_MESSAGES.values():
            entry["locations"] = [
                {"line": loc.line, "column": loc.column} for loc in error.locations
            ]
        if error.path:
            entry["path"] = error.path
        entry["extensions"] = {"code": code.value, "requestId": context.request_id}
        formatted.append(entry)
    return formatted, codes
