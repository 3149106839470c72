"""The shape of the package: one-way dependencies, lint and types clean, schema in sync."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest
from graphql import build_schema, find_breaking_changes

from graph.graphql.schema import schema_sdl

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "graph"
CONTRACT = ROOT.parent / "shared" / "contract.graphql"

# Lower layers never import higher ones; app sits on top and nothing imports it. A module
# belongs to the longest prefix listed here; modules of the same entry may import each other.
LAYERS = {
    "graph.errors": 0,
    "graph.settings": 0.25,  # a value it cannot take is a ConfigError
    "graph.telemetry": 0.5,  # may name error codes
    "graph.store": 1,
    "graph.security": 2,  # on the store's tenancy rules
    "graph.memory": 3,
    "graph.graphql.schema": 4,
    "graph.graphql": 5,  # preparing, policing and executing operations
    "graph.graphql.compiled": 4.5,  # the compiled executor, under what prepares for it
    "graph.mcp": 6,
    "graph.http": 7,
    "graph.app": 8,
    "graph.serving": 8,  # uvicorn only
    "graph.admin": 8.5,  # backup, restore and migrate commands, under the CLI
    "graph.cli": 9,
    "graph.__main__": 10,
}


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def group_of(module: str) -> str | None:
    """The longest LAYERS prefix the module falls under."""
    matches = [p for p in LAYERS if module == p or module.startswith(p + ".")]
    return max(matches, key=len) if matches else None


def imports_of(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return found


MODULES = {module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


@pytest.mark.parametrize("module", sorted(MODULES))
def test_imports_point_down_the_layers(module: str) -> None:
    group = group_of(module)
    if group is None:
        assert module == "graph", f"{module} has no layer in LAYERS: give it one"
        # graph/__init__.py: only the version
        assert not {i for i in imports_of(MODULES[module]) if i.split(".")[0] == "graph"}
        return
    own = LAYERS[group]
    for imported in imports_of(MODULES[module]):
        other = group_of(imported)
        if other is None or other == group or imported == "graph":
            continue
        assert LAYERS[other] < own, f"{module} ({group}) imports {imported} ({other})"


@pytest.mark.parametrize("module", sorted(m for m in MODULES if m.startswith("graph.store")))
def test_the_store_never_imports_graphql(module: str) -> None:
    for imported in imports_of(MODULES[module]):
        assert imported.split(".")[0] not in {"strawberry", "graphql"}, imported


@pytest.mark.parametrize("module", sorted(m for m in MODULES if m.startswith("graph.graphql")))
def test_the_graphql_layer_never_imports_qdrant(module: str) -> None:
    for imported in imports_of(MODULES[module]):
        assert not imported.startswith("qdrant"), imported


def test_schema_graphql_is_exported_from_the_code() -> None:
    committed = (ROOT / "schema.graphql").read_text()
    assert committed == schema_sdl(), (
        "schema.graphql drifted: run `python -m graph schema > schema.graphql`"
    )


@pytest.mark.skipif(not CONTRACT.exists(), reason=f"{CONTRACT} is not beside the checkout")
def test_schema_keeps_every_name_of_the_public_contract() -> None:
    contract = build_schema(CONTRACT.read_text())
    ours = build_schema(schema_sdl())
    breaking = find_breaking_changes(contract, ours)
    assert not breaking, [change.description for change in breaking]


# Everything Python we ship or run: the package, its tests, the benchmark and the tools.
PYTHON_SOURCES = ("graph", "tests", "bench", "observability", "loadtest", "scripts")


def run_tool(*args: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", *args], cwd=ROOT, capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_ruff_is_clean() -> None:
    run_tool("ruff", "check", *PYTHON_SOURCES)
    run_tool("ruff", "format", "--check", *PYTHON_SOURCES)


def test_mypy_is_clean() -> None:
    run_tool("mypy")


def test_the_readme_documents_every_setting_and_error_code() -> None:
    from graph.errors import ErrorCode
    from graph.settings import Settings

    readme = (ROOT / "README.md").read_text()
    settings = [name.upper() for name in Settings.names()]
    assert [s for s in settings if f"`{s}`" not in readme] == []
    assert [c.value for c in ErrorCode if f"`{c.value}`" not in readme] == []
