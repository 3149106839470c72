"""A request's document, parsed, checked and validated once, then cached.

prepare() turns (query, operationName) into either a PreparedOperation, which the
policy checks and an executor runs, or a Refusal, which is answered as it is. Every
step whose cost grows with the document runs here, once per distinct document: the
token limit (in the parser), our size rules (graph/graphql/limits.py, before
graphql-core's validation so that no rule sees an exponential document), graphql-core's
validation, the choice of the operation, and compiling a plan for the compiled executor.
Documents not in the cache are prepared on a thread of their own, so a document that is
expensive to validate delays only its own request.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from graphql import (
    DocumentNode,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLError,
    GraphQLSyntaxError,
    InlineFragmentNode,
    NoSchemaIntrospectionCustomRule,
    OperationDefinitionNode,
    OperationType,
    SelectionSetNode,
    Token,
    parse,
    specified_rules,
    validate,
)

from graph.errors import ErrorCode
from graph.graphql.compiled.fastpath import FastPath, Plan
from graph.graphql.limits import check_document
from graph.graphql.schema import MemorySchema
from graph.settings import LimitSettings

# At most this many entries in a response's `errors`; validation stops one short of it,
# so that graphql-core's own "too many errors" entry fits.
MAX_ERRORS = 10
# The prepared documents kept, bounded by an estimate of their memory: the text, and the
# syntax tree with its compiled plan. Measured with tracemalloc, an entry holds ~19 KB for
# `{ health { status } }` and ~42 KB for a three-field query with variables (~50 tokens);
# the estimate stays above that (tests/resilience/test_documents.py holds it there).
CACHE_BYTES = 32 * 1024 * 1024
BYTES_PER_TOKEN = 1024
ENTRY_OVERHEAD_BYTES = 24 * 1024
# Larger documents (a large comment, say) are prepared every time, never kept.
MAX_CACHED_DOCUMENT_CHARS = 64 * 1024

ALLOWED_OPERATIONS = (OperationType.QUERY, OperationType.MUTATION)


@dataclass(frozen=True, slots=True)
class PreparedOperation:
    """One valid query or mutation of a document, ready for the policy and an executor."""

    document: DocumentNode
    operation: OperationDefinitionNode
    operation_type: str
    operation_name: str | None
    # Every root field the operation selects, through fragments and inline fragments, by
    # response key (fields of one key are merged, and so run once).
    root_nodes: tuple[FieldNode, ...]
    # The compiled executor's plan, when the document only selects fields.
    plan: Plan | None

    @property
    def root_fields(self) -> frozenset[str]:
        return frozenset(node.name.value for node in self.root_nodes)


@dataclass(frozen=True, slots=True)
class Refusal:
    """A request error: nothing runs. `status` is the HTTP status to answer with under
    application/json; under application/graphql-response+json every request error is
    4xx (graph/http/endpoint.py)."""

    code: ErrorCode
    errors: tuple[GraphQLError, ...]
    status: int = 200


Prepared = PreparedOperation | Refusal


class BytesBoundedCache:
    """An LRU map whose entries each declare a cost in bytes; the total stays under
    `capacity`."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.used = 0
        self.entries: OrderedDict[tuple[str, str | None], tuple[Prepared, int]] = OrderedDict()

    def get(self, key: tuple[str, str | None]) -> Prepared | None:
        entry = self.entries.get(key)
        if entry is None:
            return None
        self.entries.move_to_end(key)
        return entry[0]

    def put(self, key: tuple[str, str | None], value: Prepared, cost: int) -> None:
        if cost > self.capacity or key in self.entries:
            return
        self.entries[key] = (value, cost)
        self.used += cost
        while self.used > self.capacity:
            _, (_, evicted) = self.entries.popitem(last=False)
            self.used -= evicted


def entry_cost(query: str, operation_name: str | None, prepared: Prepared) -> int:
    tokens = 0
    if isinstance(prepared, PreparedOperation) and prepared.document.loc is not None:
        token: Token | None = prepared.document.loc.start_token
        while token is not None:
            tokens += 1
            token = token.next
    text = len(query) + len(operation_name or "")
    return text + tokens * BYTES_PER_TOKEN + ENTRY_OVERHEAD_BYTES


class Preparer:
    def __init__(
        self, schema: MemorySchema, limits: LimitSettings, fast_path: FastPath | None
    ) -> None:
        self.graphql_schema = schema._schema
        self.limits = limits
        self.fast_path = fast_path
        self.hide_schema = not limits.graphql_introspection
        self.rules = [*specified_rules]
        if self.hide_schema:
            self.rules.append(NoSchemaIntrospectionCustomRule)
        self.cache = BytesBoundedCache(CACHE_BYTES)
        # One document at a time off the event loop: a flood of expensive documents
        # queues behind itself, not in front of cached requests.
        self.thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="prepare")

    async def prepare(self, query: str, operation_name: str | None) -> Prepared:
        key = (query, operation_name)
        cached = self.cache.get(key)
        if cached is not None:
            return cached
        loop = asyncio.get_running_loop()
        prepared = await loop.run_in_executor(self.thread, self.prepare_now, query, operation_name)
        if len(query) <= MAX_CACHED_DOCUMENT_CHARS:
            self.cache.put(key, prepared, entry_cost(query, operation_name, prepared))
        return prepared

    def close(self) -> None:
        self.thread.shutdown(wait=False, cancel_futures=True)

    def prepare_now(self, query: str, operation_name: str | None) -> Prepared:
        """Every step, on the calling thread, uncached."""
        try:
            document = parse(query, max_tokens=self.limits.max_tokens)
        except GraphQLSyntaxError as error:
            return Refusal(ErrorCode.GRAPHQL_PARSE_FAILED, (error,))
        too_large = check_document(document, self.limits)
        if too_large:
            return Refusal(ErrorCode.GRAPHQL_VALIDATION_FAILED, tuple(too_large[:MAX_ERRORS]))
        if operation_name is None and len(operations_of(document)) > 1:
            # Before validation, whose rule for an anonymous operation beside others
            # would call it invalid: it is a request that does not say what to run.
            return _several_operations()
        invalid = validate(
            self.graphql_schema,
            document,
            self.rules,
            max_errors=MAX_ERRORS - 1,
            hide_suggestions=self.hide_schema,
        )
        if invalid:
            return Refusal(ErrorCode.GRAPHQL_VALIDATION_FAILED, tuple(invalid))
        operation = choose_operation(document, operation_name)
        if isinstance(operation, Refusal):
            return operation
        return PreparedOperation(
            document=document,
            operation=operation,
            operation_type=operation.operation.value,
            operation_name=operation.name.value if operation.name else None,
            root_nodes=root_nodes(operation.selection_set, document),
            plan=self.fast_path.compile(operation) if self.fast_path else None,
        )


def _bad_request(message: str) -> Refusal:
    return Refusal(ErrorCode.BAD_REQUEST, (GraphQLError(message),), status=400)


def _several_operations() -> Refusal:
    return _bad_request("The document has several operations: name the one to run in operationName")


def operations_of(document: DocumentNode) -> list[OperationDefinitionNode]:
    return [d for d in document.definitions if isinstance(d, OperationDefinitionNode)]


def choose_operation(
    document: DocumentNode, operation_name: str | None
) -> OperationDefinitionNode | Refusal:
    """The operation to run, as the GraphQL spec's GetOperation: with several operations
    the request must name one, and a name must match exactly one."""
    operations = operations_of(document)
    if operation_name is None:
        if len(operations) != 1:
            return _several_operations()
        chosen = operations[0]
    else:
        named = [o for o in operations if o.name and o.name.value == operation_name]
        if len(named) != 1:
            return _bad_request("No operation in the document matches operationName")
        chosen = named[0]
    if chosen.operation not in ALLOWED_OPERATIONS:
        return _bad_request("Only queries and mutations are served")
    return chosen


def root_nodes(selection: SelectionSetNode, document: DocumentNode) -> tuple[FieldNode, ...]:
    """The root fields an operation selects, one per response key, each fragment visited
    once (a second spread of it can only repeat keys already found)."""
    fragments = {
        d.name.value: d.selection_set
        for d in document.definitions
        if isinstance(d, FragmentDefinitionNode)
    }
    by_key: dict[str, FieldNode] = {}
    seen: set[str] = set()
    pending = [selection]
    while pending:
        for node in pending.pop().selections:
            if isinstance(node, FieldNode):
                by_key.setdefault((node.alias or node.name).value, node)
            elif isinstance(node, InlineFragmentNode):
                pending.append(node.selection_set)
            elif isinstance(node, FragmentSpreadNode) and node.name.value not in seen:
                seen.add(node.name.value)
                fragment = fragments.get(node.name.value)
                if fragment is not None:
                    pending.append(fragment)
    return tuple(by_key.values())
