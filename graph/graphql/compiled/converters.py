"""Strawberry's argument conversion, compiled once per argument type.

strawberry.types.arguments.convert_argument works out what a type is (optional, list,
scalar, input object...) again for every value it converts: for an upsert of 500
points that is ~100,000 calls, more time than the engine's own write. The fast path
(graph/graphql/compiled/fastpath.py) compiles the same decisions into closures once per root field.
Types this module does not know how to compile (enums, Maybe, lazy types, input types
with a from_input hook, GlobalID) get a closure calling Strawberry's own function, so
the result is always what Strawberry would build; tests/test_fastpath.py compares them.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any

from strawberry.relay.types import GlobalID
from strawberry.schema.config import StrawberryConfig
from strawberry.types.arguments import (
    StrawberryArgument,
    _is_leaf_type,
    _is_optional_leaf_type,
    convert_argument,
)
from strawberry.types.base import (
    StrawberryList,
    StrawberryMaybe,
    StrawberryOptional,
    has_object_definition,
)
from strawberry.types.unset import UNSET

Converter = Callable[[Any], Any]
ArgumentsConverter = Callable[[Mapping[str, Any]], dict[str, Any]]


class ArgumentConverters:
    def __init__(self, scalar_registry: Mapping[object, Any], config: StrawberryConfig) -> None:
        self.scalar_registry = scalar_registry
        self.config = config
        self._input_objects: dict[Any, Converter] = {}

    def arguments(self, arguments: list[StrawberryArgument]) -> ArgumentsConverter:
        """What convert_arguments(value, arguments, ...) returns, for any value."""
        compiled = [
            (
                self.config.name_converter.from_argument(argument),
                argument.python_name,
                self.value(argument.type),
            )
            for argument in arguments
        ]

        def convert(values: Mapping[str, Any]) -> dict[str, Any]:
            return {
                python_name: converter(values[name])
                for name, python_name, converter in compiled
                if name in values
            }

        return convert

    def value(self, type_: Any) -> Converter:
        """What convert_argument(value, type_, ...) returns, for any value."""
        if isinstance(type_, StrawberryMaybe):
            return self._strawberry(type_)
        if isinstance(type_, StrawberryOptional):
            return self.value(type_.of_type)
        if isinstance(type_, StrawberryList):
            return self._list(type_)
        if _is_leaf_type(type_, self.scalar_registry) and type_ is not GlobalID:
            return _passthrough
        if has_object_definition(type_) and dataclasses.is_dataclass(type_):
            definition = type_.__strawberry_definition__
            if definition.from_input is None and not definition.is_graphql_generic:
                return self._input_object(type_)
        return self._strawberry(type_)

    def _list(self, type_: StrawberryList) -> Converter:
        item_type = type_.of_type
        registry = self.scalar_registry
        if _is_leaf_type(item_type, registry, skip_classes=(GlobalID,)) or (
            _is_optional_leaf_type(item_type, registry, skip_classes=(GlobalID,))
        ):
            # A copy, as Strawberry makes: graphql-core shares defaults between requests.
            return lambda value: value if _is_special(value) else list(value)
        item = self.value(item_type)
        return lambda value: value if _is_special(value) else [item(entry) for entry in value]

    def _input_object(self, cls: Any) -> Converter:
        known = self._input_objects.get(cls)
        if known is not None:
            return known  # input types may refer to themselves (nested filters)
        definition = cls.__strawberry_definition__
        defaults: dict[str, Any] = {}
        if definition.is_input:
            defaults = {
                field.python_name: None
                for field in definition.fields
                if field.default_value is dataclasses.MISSING
                and field.default_factory is dataclasses.MISSING
            }
        fields: list[tuple[str, str, Converter]] = []

        def convert(value: Any) -> Any:
            if _is_special(value):
                return value
            kwargs = dict(defaults)
            for name, python_name, converter in fields:
                if name in value:
                    kwargs[python_name] = converter(value[name])
            return cls(**kwargs)

        self._input_objects[cls] = convert
        fields.extend(
            (
                self.config.name_converter.from_field(field),
                field.python_name,
                self.value(field.resolve_type(type_definition=definition)),
            )
            for field in definition.fields
        )
        return convert

    def _strawberry(self, type_: Any) -> Converter:
        registry, config = self.scalar_registry, self.config
        return lambda value: convert_argument(value, type_, registry, config)


def _is_special(value: Any) -> bool:
    """None and UNSET, which convert to themselves."""
    return value is None or value is UNSET


def _passthrough(value: Any) -> Any:
    return value
