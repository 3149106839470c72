"""Every rule a prepared operation must pass before an executor runs it, in one place.

The rules run once per request, on the PreparedOperation, whichever executor then runs
it (compiled or graphql-core's): a rule added to RULES holds on both. A rule returns
the error that refuses the request, or None; the first refusal wins and nothing runs.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from graphql import FieldNode, GraphQLSchema, VariableNode, value_from_ast_untyped

from graph.errors import ApiError, BadUserInput, Forbidden
from graph.graphql.prepare import PreparedOperation
from graph.graphql.schema.sizes import check_variable_sizes, list_limits
from graph.security.auth import Principal, scope_for
from graph.settings import Settings


@dataclass(frozen=True, slots=True)
class RequestFacts:
    """What a rule may look at besides the operation."""

    principal: Principal
    variables: dict[str, Any] | None
    settings: Settings
    schema: GraphQLSchema


Rule = Callable[[PreparedOperation, RequestFacts], ApiError | None]


def required_scopes(operation: PreparedOperation, facts: RequestFacts) -> ApiError | None:
    """Every root field's scope, checked before anything runs: refused whole or not at all."""
    for field in sorted(operation.root_fields):
        needed = scope_for(operation.operation_type, field)
        if needed is not None and needed not in facts.principal.scopes:
            return Forbidden(f"This credential lacks the '{needed.value}' scope for {field}")
    return None


def variable_sizes(operation: PreparedOperation, facts: RequestFacts) -> ApiError | None:
    """Lists in the variables within their limits, before anything coerces them."""
    try:
        check_variable_sizes(
            facts.schema, operation.operation, facts.variables, list_limits(facts.settings)
        )
    except ApiError as error:
        return error
    return None


# Root-field arguments that say how many points or memories a field may return.
_LIMIT_ARGUMENTS = ("limit",)
_ID_ARGUMENTS = ("ids",)


def _argument(node: FieldNode, name: str, variables: dict[str, Any] | None) -> Any:
    for argument in node.arguments or ():
        if argument.name.value == name:
            value = argument.value
            if isinstance(value, VariableNode):
                return (variables or {}).get(value.name.value)
            return value_from_ast_untyped(value, variables)
    return None


def points_budget(operation: PreparedOperation, facts: RequestFacts) -> ApiError | None:
    """What all root fields together may return: the sum of their `limit`s (10 when
    omitted) and of their `ids` lists, at most MAX_POINTS_PER_REQUEST."""
    budget = facts.settings.limits.max_points_per_request
    root = facts.schema.get_root_type(operation.operation.operation)
    total = 0
    for node in operation.root_nodes:
        definition = root.fields.get(node.name.value) if root else None
        if definition is None:
            continue
        for name in _LIMIT_ARGUMENTS:
            if name in definition.args:
                limit = _argument(node, name, facts.variables)
                if limit is None:
                    limit = definition.args[name].default_value
                total += limit if isinstance(limit, int) and limit > 0 else 0
        for name in _ID_ARGUMENTS:
            ids = _argument(node, name, facts.variables)
            total += len(ids) if isinstance(ids, list) else 0
    if total > budget:
        return BadUserInput(
            f"An operation may return at most {budget} points or memories over all its "
            f"fields; this one asks for {total}"
        )
    return None


RULES: tuple[Rule, ...] = (required_scopes, variable_sizes, points_budget)


class Policy:
    def __init__(
        self, schema: GraphQLSchema, settings: Settings, rules: Sequence[Rule] = ()
    ) -> None:
        self.schema = schema
        self.settings = settings
        self.rules = tuple(rules) or RULES

    def refusal(
        self,
        operation: PreparedOperation,
        principal: Principal,
        variables: dict[str, Any] | None,
    ) -> ApiError | None:
        facts = RequestFacts(principal, variables, self.settings, self.schema)
        for rule in self.rules:
            error = rule(operation, facts)
            if error is not None:
                return error
        return None
