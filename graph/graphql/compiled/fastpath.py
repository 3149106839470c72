"""Compiled execution for the documents clients send over and over.

graphql-core resolves every field of every hit through a generic machinery (a
resolve-info object, an awaitable check and a completion step per field), which
costs more than the engine's own search. Our result types are plain objects
whose fields are attributes, so a document that only selects fields can be
compiled once into a plan: coerce the variables, call the same root resolvers
Strawberry would call, and build the response dicts directly.

Only valid operations reach compile() (graph/graphql/prepare.py validates them),
and every rule runs before either executor (graph/graphql/policy.py). Anything a
plan does not cover (fragments, directives, introspection, fields with resolvers,
permissions or extensions of their own) returns None from compile() and runs on
graphql-core's executor, so edge cases keep one implementation. Root resolvers get
the same Strawberry Info on both (graph/graphql/schema/context.py says what they may
read); tests/test_fastpath.py generates documents from the schema and holds the two
executors' answers equal.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast

from graphql import (
    ExecutionResult,
    FieldNode,
    GraphQLEnumType,
    GraphQLError,
    GraphQLField,
    GraphQLList,
    GraphQLNonNull,
    GraphQLObjectType,
    GraphQLOutputType,
    GraphQLScalarType,
    OperationDefinitionNode,
    SelectionSetNode,
    Undefined,
    VariableDefinitionNode,
    located_error,
)
from graphql.execution.get_variable_signature import (
    GraphQLVariableSignature,
    get_variable_signature,
)
from graphql.execution.values import (
    VariableValues,
    VariableValueSource,
    get_argument_values,
    get_variable_values,
)
from graphql.pyutils import Path
from strawberry.execution import optimized_is_awaitable
from strawberry.schema.schema import _OperationContextAwareGraphQLResolveInfo
from strawberry.types import Info
from strawberry.types.base import StrawberryObjectDefinition
from strawberry.types.field import StrawberryField

from graph.graphql.compiled.coercion import GIVE_UP, Coerce, compile_coercion
from graph.graphql.compiled.converters import ArgumentConverters, ArgumentsConverter
from graph.graphql.schema import MemorySchema
from graph.graphql.schema.context import RequestContext

Complete = Callable[[Any], Any]
# As graphql-core's executor is told (graph/graphql/execution.py): errors stay few.
MAX_COERCION_ERRORS = 9


class NotCompilable(Exception):
    """The document needs the general executor."""


@dataclass(frozen=True, slots=True)
class RootField:
    key: str
    node: FieldNode
    definition: GraphQLField
    field: StrawberryField
    resolver: Callable[..., Any]
    convert: ArgumentsConverter
    complete: Complete
    nullable: bool


@dataclass(frozen=True, slots=True)
class CompiledVariable:
    """A variable coerced by compiled/coercion.py instead of graphql-core, when it can."""

    name: str
    signature: GraphQLVariableSignature
    coerce: Coerce


@dataclass(frozen=True, slots=True)
class Plan:
    operation_type: str
    operation_name: str | None
    operation: OperationDefinitionNode
    root: GraphQLObjectType
    fields: tuple[RootField, ...]
    compiled_variables: tuple[CompiledVariable, ...] = ()
    # The variable definitions graphql-core coerces when every compiled one succeeds.
    other_variables: tuple[VariableDefinitionNode, ...] = ()


class FastPath:
    """Compiles operations that only select fields into Plans, and runs them."""

    def __init__(self, schema: MemorySchema) -> None:
        self.schema = schema
        self.graphql_schema = schema._schema
        converter = schema.schema_converter
        self.converters = ArgumentConverters(converter.scalar_registry, schema.config)

    def compile(self, operation: OperationDefinitionNode) -> Plan | None:
        """A plan for a valid operation, or None when it needs graphql-core's executor."""
        if operation.directives:
            return None
        root = self.graphql_schema.get_root_type(operation.operation)
        if root is None:
            return None
        try:
            fields = tuple(
                self._root_field(root, node) for node in _fields(operation.selection_set)
            )
        except NotCompilable:
            return None
        compiled, others = self._variables(operation)
        return Plan(
            operation_type=operation.operation.value,
            operation_name=operation.name.value if operation.name else None,
            operation=operation,
            root=root,
            fields=fields,
            compiled_variables=compiled,
            other_variables=others,
        )

    def _variables(
        self, operation: OperationDefinitionNode
    ) -> tuple[tuple[CompiledVariable, ...], tuple[VariableDefinitionNode, ...]]:
        compiled: list[CompiledVariable] = []
        others: list[VariableDefinitionNode] = []
        for definition in operation.variable_definitions or ():
            signature = get_variable_signature(self.graphql_schema, definition)
            coerce = (
                None
                if isinstance(signature, GraphQLError) or definition.default_value
                else compile_coercion(signature.type)
            )
            if coerce is None or isinstance(signature, GraphQLError):
                others.append(definition)
            else:
                compiled.append(CompiledVariable(signature.name, signature, coerce))
        return tuple(compiled), tuple(others)

    def _coerce_variables(
        self, plan: Plan, inputs: dict[str, Any]
    ) -> VariableValues | list[GraphQLError]:
        fast: list[tuple[CompiledVariable, Any, Any]] = []
        for variable in plan.compiled_variables:
            value = inputs.get(variable.name, Undefined)
            coerced = GIVE_UP if value is Undefined else variable.coerce(value)
            if coerced is GIVE_UP:
                # graphql-core's own coercion, for its errors (or its defaults).
                definitions = plan.operation.variable_definitions or ()
                return get_variable_values(
                    self.graphql_schema, definitions, inputs, MAX_COERCION_ERRORS
                )
            fast.append((variable, value, coerced))
        result = get_variable_values(
            self.graphql_schema, plan.other_variables, inputs, MAX_COERCION_ERRORS
        )
        if isinstance(result, list):
            return result
        for variable, value, coerced in fast:
            result.sources[variable.name] = VariableValueSource(variable.signature, value)
            result.coerced[variable.name] = coerced
        return result

    def _root_field(self, root: GraphQLObjectType, node: FieldNode) -> RootField:
        name = node.name.value
        definition = root.fields.get(name)
        field = self._strawberry_field(root.name, name)
        if definition is None or field.base_resolver is None:
            raise NotCompilable
        return RootField(
            key=node.alias.value if node.alias else name,
            node=node,
            definition=definition,
            field=field,
            resolver=cast(Callable[..., Any], field.base_resolver.wrapped_func),
            convert=self.converters.arguments(field.arguments),
            complete=self._completion(definition.type, node.selection_set),
            nullable=not isinstance(definition.type, GraphQLNonNull),
        )

    def _strawberry_field(self, type_name: str, field_name: str) -> StrawberryField:
        field = self.schema.get_field_for_type(field_name, type_name)
        if field is None or field.permission_classes or field.extensions:
            raise NotCompilable
        return field

    def _completion(self, type_: GraphQLOutputType, selection: SelectionSetNode | None) -> Complete:
        if isinstance(type_, GraphQLNonNull):
            inner = self._completion(type_.of_type, selection)

            def non_null(value: Any) -> Any:
                if value is None:
                    raise TypeError("A non-null field resolved to null")
                return inner(value)

            return non_null
        if isinstance(type_, GraphQLList):
            item = self._completion(type_.of_type, selection)
            return lambda value: None if value is None else [item(v) for v in value]
        if isinstance(type_, GraphQLScalarType | GraphQLEnumType):
            if selection is not None:
                raise NotCompilable
            serialize = type_.serialize
            return lambda value: None if value is None else serialize(value)
        if isinstance(type_, GraphQLObjectType) and selection is not None:
            return self._object_completion(type_, selection)
        raise NotCompilable

    def _object_completion(self, type_: GraphQLObjectType, selection: SelectionSetNode) -> Complete:
        definition = self.schema.get_type_by_name(type_.name)
        if not isinstance(definition, StrawberryObjectDefinition):
            raise NotCompilable
        entries: list[tuple[str, str | None, Complete | None]] = []
        for node in _fields(selection):
            name = node.name.value
            key = node.alias.value if node.alias else name
            if name == "__typename":
                entries.append((key, None, None))
                continue
            graphql_field = type_.fields.get(name)
            field = self._strawberry_field(type_.name, name)
            if graphql_field is None or field.base_resolver is not None:
                raise NotCompilable
            entries.append(
                (key, field.python_name, self._completion(graphql_field.type, node.selection_set))
            )
        type_name = type_.name

        def complete(value: Any) -> dict[str, Any] | None:
            if value is None:
                return None
            result: dict[str, Any] = {}
            for key, attribute, completion in entries:
                if attribute is None or completion is None:
                    result[key] = type_name
                else:
                    result[key] = completion(getattr(value, attribute))
            return result

        return complete

    async def execute(
        self, plan: Plan, variables: dict[str, Any] | None, context: RequestContext
    ) -> ExecutionResult:
        coerced = self._coerce_variables(plan, variables or {})
        if isinstance(coerced, list):
            return ExecutionResult(data=None, errors=coerced)
        data: dict[str, Any] = {}
        errors: list[GraphQLError] = []
        for root in plan.fields:
            try:
                arguments = get_argument_values(root.definition, root.node, coerced)
                kwargs = root.convert(arguments)
                info = self._info(plan, root, coerced.coerced, context)
                value = await root.resolver(None, info, **kwargs)
                data[root.key] = root.complete(value)
            except Exception as error:
                errors.append(located_error(error, [root.node], [root.key]))
                if not root.nullable:
                    # A null in a non-null root field nulls the whole data, as in graphql-core.
                    return ExecutionResult(data=None, errors=errors)
                data[root.key] = None
        return ExecutionResult(data=data, errors=errors or None)

    def _info(
        self,
        plan: Plan,
        root: RootField,
        variables: dict[str, Any],
        context: RequestContext,
    ) -> Info[RequestContext, Any]:
        """The Strawberry Info graphql-core's executor would give this root resolver."""
        raw = _OperationContextAwareGraphQLResolveInfo(
            root.node.name.value,
            [root.node],
            root.definition.type,
            plan.root,
            Path(None, root.key, plan.root.name),
            self.graphql_schema,
            {},
            None,
            plan.operation,
            variables,
            context,
            optimized_is_awaitable,
            None,
            None,
            {},
        )
        return Info(_raw_info=raw, _field=root.field)  # type: ignore[arg-type]


def _fields(selection: SelectionSetNode) -> list[FieldNode]:
    """The selection's fields, when it is nothing but plain fields with distinct keys."""
    fields: list[FieldNode] = []
    keys: set[str] = set()
    for node in selection.selections:
        if not isinstance(node, FieldNode) or node.directives:
            raise NotCompilable
        if node.name.value.startswith("__") and node.name.value != "__typename":
            raise NotCompilable
        key = node.alias.value if node.alias else node.name.value
        if key in keys:
            raise NotCompilable
        keys.add(key)
        fields.append(node)
    return fields
