"""Every rule a prepared operation must pass before an executor runs it, in one place.

The rules run once per request, on the PreparedOperation, whichever executor then runs
it (compiled or graphql-core's): a rule added to RULES holds on both. A rule returns
the error that refuses the request, or None; the first refusal wins and nothing runs.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from graphql import GraphQLSchema

from graph.errors import ApiError, Forbidden
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


RULES: tuple[Rule, ...] = (required_scopes, variable_sizes)


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
