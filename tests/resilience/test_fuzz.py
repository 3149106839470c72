"""Fuzzing the running server: schemathesis in GraphQL mode, and clairvoyance against a
server with introspection off. Both from PyPI, both against a real `python -m graph` on
127.0.0.1, both bounded."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import graphql
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis.core.result import Ok
from schemathesis.graphql import nodes
from schemathesis.specs.openapi.checks import response_schema_conformance

from graph.errors import ErrorCode
from tests.process import ServerProcess

pytestmark = pytest.mark.slow

FUZZ_EXAMPLES = 1000
FUZZ_SECONDS = 45
CODES = {code.value for code in ErrorCode}


def _json_nodes() -> st.SearchStrategy[graphql.ValueNode]:
    """Inline JSON literals: any scalar, lists, objects with GraphQL-name keys."""
    scalars = st.one_of(
        st.text(max_size=8).map(nodes.String),
        st.integers(min_value=-(2**70), max_value=2**70).map(nodes.Int),
        st.floats(allow_nan=False, allow_infinity=False).map(nodes.Float),
        st.booleans().map(nodes.Boolean),
        st.just(nodes.Null),
    )
    names = st.from_regex(r"[_A-Za-z][_0-9A-Za-z]{0,6}", fullmatch=True)
    return st.recursive(
        scalars,
        lambda inner: (
            st.lists(inner, max_size=3).map(nodes.List)
            | st.dictionaries(names, inner, max_size=3).map(
                lambda d: nodes.Object(
                    [
                        graphql.ObjectFieldNode(name=graphql.NameNode(value=k), value=v)
                        for k, v in d.items()
                    ]
                )
            )
        ),
        max_leaves=8,
    )


def register_scalars() -> None:
    """Our two custom scalars, for schemathesis to generate: vectors mostly of the
    collection's dimension (4), sometimes not, and any JSON."""
    finite = st.floats(allow_nan=False, allow_infinity=False)
    vectors = st.one_of(
        st.lists(st.floats(min_value=-1, max_value=1), min_size=4, max_size=4),
        st.lists(finite, max_size=6),
    ).map(lambda xs: nodes.List([nodes.Float(x) for x in xs]))
    schemathesis.graphql.scalar("Vector", vectors)
    schemathesis.graphql.scalar("JSON", _json_nodes())


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    base = tmp_path_factory.mktemp("fuzz")
    process = ServerProcess(
        base / "data", base / "server.log", LOG_LEVEL="WARNING", BACKUP_DIR=str(base / "backups")
    )
    try:
        yield process.start()
    finally:
        process.stop()


def check_graphql_response(response: Any) -> None:
    """What every response of the server is: no 5xx; a JSON object with data or errors;
    every error with a message, a known code other than INTERNAL_SERVER_ERROR, and the
    request id of the response."""
    assert response.status_code < 500, response.text
    body = response.json()
    assert isinstance(body, dict) and ("data" in body or "errors" in body), body
    assert set(body) <= {"data", "errors"}, body
    request_id = response.headers["x-request-id"]
    if isinstance(request_id, list):  # schemathesis keeps every value of a header
        (request_id,) = request_id
    for error in body.get("errors", []):
        assert isinstance(error["message"], str), body
        code = error["extensions"]["code"]
        assert code in CODES and code != ErrorCode.INTERNAL_SERVER_ERROR.value, body
        assert error["extensions"]["requestId"] == request_id, body
    if "errors" not in body:
        assert response.status_code == 200


def test_schemathesis_finds_no_failure(server: ServerProcess) -> None:
    """Generated queries and mutations of every root field, with valid and invalid
    arguments. Schemathesis's own schema conformance check runs too; its "client error"
    checks do not, since refusing a schema-valid value (a limit of 0, an unknown
    collection) is this API's job."""
    register_scalars()
    schema = schemathesis.graphql.from_url(f"{server.url}/graphql")
    operations = []
    for result in schema.get_all_operations():
        assert isinstance(result, Ok), result.err()  # every root field loads as an operation
        operations.append(result.ok())
    assert len(operations) == 15, [op.label for op in operations]  # 8 queries, 7 mutations
    cases = st.one_of(*(operation.as_strategy() for operation in operations))
    deadline = time.monotonic() + FUZZ_SECONDS
    ran: list[str] = []

    @settings(
        max_examples=FUZZ_EXAMPLES,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(cases)
    def fuzz(case: Any) -> None:
        if time.monotonic() > deadline:
            return
        response = case.call(timeout=10)
        ran.append(case.operation.label)
        check_graphql_response(response)
        case.validate_response(response, checks=[response_schema_conformance])

    fuzz()
    print(f"schemathesis: {len(ran)} requests over {len(set(ran))} root fields")
    assert len(set(ran)) == 15
    assert server.process is not None and server.process.poll() is None
    assert server.gql("{ health { status } }") == {"data": {"health": {"status": "OK"}}}


# Clairvoyance probes 64 names a request and counts each one no error names as valid;
# this server answers at most 10 errors a response (a name can cost two), so the tool is
# run as an attacker would adapt it, 4 names a request (for the control run and the
# real one alike).
CLAIRVOYANCE_WITHIN_THE_ERROR_CAP = """
import clairvoyance.config
from clairvoyance.cli import cli

original = clairvoyance.config.Config.__init__

def within_the_cap(self):
    original(self)
    self._bucket_size = 4

clairvoyance.config.Config.__init__ = within_the_cap
cli()
"""


def recover_schema(
    tmp_path: Path, words: list[str], introspection: bool
) -> tuple[list[str], subprocess.CompletedProcess[str]]:
    """Run clairvoyance with `words` against a fresh server; the Query and Mutation fields
    it recovered, and how it ended."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    wordlist = tmp_path / "words.txt"
    wordlist.write_text("\n".join(words) + "\n")
    output = tmp_path / "recovered.json"
    process = ServerProcess(
        tmp_path / "data",
        tmp_path / "server.log",
        GRAPHQL_INTROSPECTION=str(introspection).lower(),
        LOG_LEVEL="WARNING",
    ).start()
    try:
        started = time.monotonic()
        run = subprocess.run(
            [
                sys.executable,
                "-c",
                CLAIRVOYANCE_WITHIN_THE_ERROR_CAP,
                f"{process.url}/graphql",
                "-o",
                str(output),
                "-w",
                str(wordlist),
                "-c",
                "8",
            ],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        elapsed = time.monotonic() - started
    finally:
        process.stop()
    recovered: list[str] = []
    if output.exists():
        for type_ in json.loads(output.read_text())["data"]["__schema"]["types"]:
            if type_["name"] in ("Query", "Mutation"):
                recovered += [f["name"] for f in type_.get("fields") or []]
    print(
        f"clairvoyance, introspection {introspection}: exit {run.returncode} after "
        f"{elapsed:.1f}s, {len(words)} words, recovered {recovered}"
    )
    return [name for name in recovered if name != "__typename"], run


def test_clairvoyance_recovers_nothing_with_introspection_off(tmp_path: Path) -> None:
    """Clairvoyance guesses names from a wordlist and reads the server's error messages.
    Its own wordlist, plus every name the schema really has: with introspection off it
    must still learn no field of Query or Mutation. The control run, with introspection
    (and so suggestions) on and only the real names, shows the tool does find them."""
    from graph.graphql.schema import build_schema

    names = set()
    for type_ in build_schema()._schema.type_map.values():
        names.add(type_.name)
        for field_name, field in getattr(type_, "fields", {}).items():
            names.add(field_name)
            names.update(getattr(field, "args", {}))
    real = sorted(names - {""})
    import clairvoyance

    default_words = (Path(clairvoyance.__file__).parent / "wordlist.txt").read_text().split()

    control, _ = recover_schema(tmp_path / "on", real, introspection=True)
    assert {"query", "upsert", "health"} <= set(control), control

    recovered, run = recover_schema(tmp_path / "off", real + default_words, introspection=False)
    assert recovered == [], (recovered, run.stderr[-2000:])
    # It ran to its own conclusion, not into some other failure.
    gave_up = "Field Suggestion is not fully enabled" in run.stderr
    assert run.returncode == 0 or gave_up, run.stderr[-2000:]
