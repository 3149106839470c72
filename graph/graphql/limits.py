"""The size rules of a document: depth, aliases, directives and expanded fields.

Each fragment is measured once and its measure reused at every spread, so checking a
document costs time linear in its text however its fragments spread each other. The
expanded field count (what the document would select with every spread replaced by its
fragment) is bounded before graphql-core's validation runs: some of its rules
(OverlappingFieldsCanBeMerged, and any rule that follows spreads) do work proportional
to the expanded document, which fragments spreading each other twice make exponential
in the text. A document within these limits is small enough for every rule.
"""

from __future__ import annotations

from dataclasses import dataclass

from graphql import (
    DocumentNode,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLError,
    InlineFragmentNode,
    Node,
    OperationDefinitionNode,
    SelectionSetNode,
)

from graph.errors import ApiError, ErrorCode
from graph.settings import LimitSettings

# Fields one operation may select once every fragment spread is expanded. A document
# within the depth and alias limits selects a few dozen; 500 leaves room for wide
# selections while keeping validation of the worst document far under a second.
MAX_EXPANDED_FIELDS = 500
# Counts saturate here, so a fragment spread 2^60 times costs no big integers.
_SATURATED = 1 << 40


class LimitExceeded(ApiError):
    """A document over one of our size rules: refused before validation, its message kept
    even when introspection is off (it names no part of the schema)."""

    code = ErrorCode.GRAPHQL_VALIDATION_FAILED


@dataclass(frozen=True, slots=True)
class Measure:
    depth: int = 0
    aliases: int = 0
    fields: int = 0

    def plus(self, other: Measure) -> Measure:
        return Measure(
            max(self.depth, other.depth),
            min(self.aliases + other.aliases, _SATURATED),
            min(self.fields + other.fields, _SATURATED),
        )


class _Measurer:
    def __init__(self, document: DocumentNode) -> None:
        self.fragments = {
            d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)
        }
        self.measured: dict[str, Measure] = {}
        self.in_progress: set[str] = set()

    def selection(self, selection: SelectionSetNode | None) -> Measure:
        total = Measure()
        for node in selection.selections if selection else ():
            if isinstance(node, FieldNode):
                inner = self.selection(node.selection_set)
                # Introspection is as deep as the type system, not the data: depth
                # leaves it out (as Strawberry's rule did); its fields still count.
                introspection = node.name.value.startswith("__")
                nested = inner.depth + 1 if node.selection_set and not introspection else 0
                total = total.plus(
                    Measure(nested, inner.aliases + (1 if node.alias else 0), inner.fields + 1)
                )
            elif isinstance(node, InlineFragmentNode):
                total = total.plus(self.selection(node.selection_set))
            elif isinstance(node, FragmentSpreadNode):
                total = total.plus(self.fragment(node.name.value))
        return total

    def fragment(self, name: str) -> Measure:
        known = self.measured.get(name)
        if known is not None:
            return known
        definition = self.fragments.get(name)
        if definition is None or name in self.in_progress:
            # Unknown fragments and cycles are graphql-core's to report.
            return Measure()
        self.in_progress.add(name)
        measure = self.selection(definition.selection_set)
        self.in_progress.discard(name)
        self.measured[name] = measure
        return measure


def count_directives(document: DocumentNode) -> int:
    """Directives written in the document (not expanded: each costs once to validate)."""
    count = 0
    stack: list[Node] = [document]
    while stack:
        node = stack.pop()
        directives = getattr(node, "directives", None)
        if directives:
            count += len(directives)
        for key in node.keys:
            value = getattr(node, key, None)
            if isinstance(value, Node):
                stack.append(value)
            elif isinstance(value, tuple | list):
                stack.extend(v for v in value if isinstance(v, Node))
    return count


def check_document(document: DocumentNode, limits: LimitSettings) -> list[GraphQLError]:
    """Our size rules, one error per rule broken, for every operation of the document."""
    errors: list[LimitExceeded] = []
    measurer = _Measurer(document)
    for definition in document.definitions:
        if not isinstance(definition, OperationDefinitionNode):
            continue
        measure = measurer.selection(definition.selection_set)
        name = f"'{definition.name.value[:64]}'" if definition.name else "anonymous"
        if measure.depth > limits.max_query_depth:
            errors.append(LimitExceeded(f"The {name} operation exceeds maximum operation depth"))
        if measure.aliases > limits.max_aliases:
            errors.append(
                LimitExceeded(f"{measure.aliases} aliases found. Allowed: {limits.max_aliases}")
            )
        if measure.fields > MAX_EXPANDED_FIELDS:
            errors.append(
                LimitExceeded(
                    f"The {name} operation selects over {MAX_EXPANDED_FIELDS} fields "
                    "once its fragments are expanded"
                )
            )
    if count_directives(document) > limits.max_directives:
        errors.append(
            LimitExceeded(f"A document may use at most {limits.max_directives} directives.")
        )
    return [GraphQLError(e.message, original_error=e) for e in errors]
