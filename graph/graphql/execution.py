"""Runs a prepared operation that passed the policy: compiled when it has a plan,
graphql-core's executor otherwise, on the same schema and resolvers.

graphql-core's executor is called directly with the prepared document, so nothing is
parsed or validated twice; Strawberry's execution context class builds the resolvers'
Info as it does under Strawberry's own execute(). The schema carries no extensions:
request-level rules belong to the policy, which both paths share.
"""

from __future__ import annotations

from typing import Any

from graphql import ExecutionResult, execute
from strawberry.execution import optimized_is_awaitable
from strawberry.schema.schema import StrawberryGraphQLCoreExecutionContext

from graph.graphql.compiled.fastpath import MAX_COERCION_ERRORS, FastPath
from graph.graphql.prepare import PreparedOperation
from graph.graphql.schema import MemorySchema
from graph.graphql.schema.context import RequestContext


class Executor:
    def __init__(self, schema: MemorySchema, fast_path: FastPath, hide_schema: bool) -> None:
        self.graphql_schema = schema._schema
        self.fast_path = fast_path
        self.hide_schema = hide_schema

    async def execute(
        self,
        operation: PreparedOperation,
        variables: dict[str, Any] | None,
        context: RequestContext,
    ) -> ExecutionResult:
        if operation.plan is not None:
            return await self.fast_path.execute(operation.plan, variables, context)
        result = execute(
            self.graphql_schema,
            operation.document,
            context_value=context,
            variable_values=variables,
            operation_name=operation.operation_name,
            max_coercion_errors=MAX_COERCION_ERRORS,
            hide_suggestions=self.hide_schema,
            is_awaitable=optimized_is_awaitable,  # type: ignore[arg-type]
            executor_class=StrawberryGraphQLCoreExecutionContext,
            operation_extensions=None,
        )
        if isinstance(result, ExecutionResult):
            return result
        return await result


def failed_before_execution(result: ExecutionResult) -> bool:
    """Whether the operation failed before any field ran (its variables could not be
    coerced): a request error, which has no data. An error raised by a field always has
    the field's path; one raised before execution never has one."""
    if result.data is not None or not result.errors:
        return False
    return all(error.path is None for error in result.errors)
