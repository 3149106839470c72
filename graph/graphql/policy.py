"""Every rule a prepared operation must pass before an executor runs it, in one place.

The rules run once per request, on the PreparedOperation, whichever executor then runs
it (compiled or graphql-core's): a rule added to RULES holds on both. A rule returns
the error that refuses the request, or None; the first refusal wins and nothing runs.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from graphql import (
    FieldNode,
    GraphQLArgument,
    GraphQLSchema,
    ListValueNode,
    NullValueNode,
    OperationDefinitionNode,
    Undefined,
    ValueNode,
    VariableNode,
    coerce_input_literal,
    coerce_input_value,
)

from graph.errors import ApiError, BadUserInput, Forbidden
from graph.graphql.compiled.coercion import INT_MAX, INT_MIN
from graph.graphql.prepare import PreparedOperation
from graph.graphql.schema.backups import several_backups
from graph.graphql.schema.sizes import check_variable_sizes, list_limits
from graph.security.principals import Principal, scope_for
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


def _source(
    node: FieldNode,
    name: str,
    operation: OperationDefinitionNode,
    variables: dict[str, Any] | None,
) -> Any:
    """Where the argument `name` of `node` gets its value at execution, as graphql-core's
    coerce_argument decides: a literal (a ValueNode, the default of an absent variable
    included), the variable's value as the request gave it (None for an explicit null),
    or Undefined when the argument's own default applies."""
    for argument in node.arguments or ():
        if argument.name.value == name:
            value = argument.value
            if not isinstance(value, VariableNode):
                return value
            variable = value.name.value
            if variables is not None and variable in variables:
                return variables[variable]
            for definition in operation.variable_definitions or ():
                if definition.variable.name.value == variable:
                    return definition.default_value or Undefined
            return Undefined
    return Undefined


def _limit(source: Any, argument: GraphQLArgument) -> int:
    """The Int the argument will hold, coerced by graphql-core (a JSON 100.0 is 100), or
    0 when coercion fails (the operation is then refused before it runs)."""
    if source is Undefined:
        value = argument.default_value
    elif type(source) is int and INT_MIN <= source <= INT_MAX:
        value = source  # what coerce_input_value returns for an Int, without its ~1 µs
    elif isinstance(source, ValueNode):
        value = coerce_input_literal(source, argument.type)
    else:
        value = coerce_input_value(source, argument.type)
    return value if type(value) is int and value > 0 else 0


def _length(source: Any, argument: GraphQLArgument) -> int:
    """How many items a list argument will hold. Counted, not coerced (coercing 1,000
    ids costs ~0.5 ms): a list coerces to as many items or fails, any other non-null
    value to a list of one, null to none."""
    if type(source) is list:  # the usual case: a JSON list
        return len(source)
    if source is Undefined:
        source = argument.default_value
    if isinstance(source, ListValueNode):
        return len(source.values)
    if isinstance(source, ValueNode):
        return 0 if isinstance(source, NullValueNode) else 1
    if source is None or source is Undefined:
        return 0
    if isinstance(source, Collection) and not isinstance(source, str | bytes | Mapping):
        return len(source)  # what graphql-core's is_iterable takes for a list
    return 1


def points_budget(operation: PreparedOperation, facts: RequestFacts) -> ApiError | None:
    """What all root fields together may return: the sum of their `limit`s (10 when
    omitted) and of their `ids` lists, at most MAX_POINTS_PER_REQUEST. Each argument is
    read as execution will read it: a literal, a variable as given, or the variable's
    default when the request leaves it out, numbers as GraphQL's Int coerces them."""
    budget = facts.settings.limits.max_points_per_request
    definition_node = operation.operation
    root = facts.schema.get_root_type(definition_node.operation)
    total = 0
    for node in operation.root_nodes:
        definition = root.fields.get(node.name.value) if root else None
        if definition is None:
            continue
        arguments = definition.args
        for name in _LIMIT_ARGUMENTS:
            if name in arguments:
                source = _source(node, name, definition_node, facts.variables)
                total += _limit(source, arguments[name])
        for name in _ID_ARGUMENTS:
            if name in arguments:
                source = _source(node, name, definition_node, facts.variables)
                total += _length(source, arguments[name])
    if total > budget:
        return BadUserInput(
            f"An operation may return at most {budget} points or memories over all its "
            f"fields; this one asks for {total}"
        )
    return None


def one_backup(operation: PreparedOperation, facts: RequestFacts) -> ApiError | None:
    """At most one `backup` field per operation, aliases and fragments included: each
    writes an archive of every tenant's data (graph/graphql/schema/backups.py)."""
    return several_backups(operation.root_nodes)


RULES: tuple[Rule, ...] = (required_scopes, variable_sizes, points_budget, one_backup)


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
