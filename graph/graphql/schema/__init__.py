"""The GraphQL schema: scalars, types, inputs and the root Query and Mutation."""

from __future__ import annotations

import strawberry
from strawberry.schema.config import StrawberryConfig

from graph.graphql.schema.mutation import Mutation
from graph.graphql.schema.query import Query
from graph.graphql.schema.scalars import SCALAR_MAP


class MemorySchema(strawberry.Schema):
    """The schema, with no extensions: graph/graphql/ prepares, polices and executes
    operations itself (graph/graphql/execution.py), on this schema's types and resolvers."""


def build_schema() -> MemorySchema:
    return MemorySchema(
        query=Query, mutation=Mutation, config=StrawberryConfig(scalar_map=SCALAR_MAP)
    )


def schema_sdl() -> str:
    """The schema in SDL, sorted, as committed in schema.graphql."""
    from graphql import build_schema as schema_from_sdl
    from graphql import lexicographic_sort_schema, print_schema

    # Round-trip through SDL: sorting Strawberry's own type objects loses its enum
    # serialisers, which default values need for printing.
    plain = schema_from_sdl(build_schema().as_str())
    return print_schema(lexicographic_sort_schema(plain)) + "\n"


__all__ = ["MemorySchema", "build_schema", "schema_sdl"]
