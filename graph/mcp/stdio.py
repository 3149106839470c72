"""`graph mcp`: the tools over stdin and stdout, for a desktop agent on this machine.

The same settings as the server (DATA_DIR, or QDRANT_URL). stdio carries no credential:
every call runs as the open tenant with every scope, as an open server does. The
embedded store takes one process per data directory: when a server already holds it,
StoreInUse says so and `graph mcp` exits with status 2 (graph/cli.py).
"""

from __future__ import annotations

from collections.abc import Callable

from mcp.server.stdio import stdio_server

from graph.mcp.memories import Memories
from graph.mcp.server import build_server
from graph.mcp.tools import MemoryTools
from graph.security.auth import OPEN_PRINCIPAL
from graph.settings import Settings
from graph.store import VectorStore, create_store
from graph.store.defaults import DefaultCollections
from graph.store.edge.layout import DataDirectoryInUse
from graph.store.tenancy import DEFAULT_TENANT


class StoreInUse(Exception):
    """The embedded store's data directory is held by another process."""


async def serve_stdio(settings: Settings, memories_for: Callable[[VectorStore], Memories]) -> None:
    store = create_store(settings)
    try:
        await store.open()
    except DataDirectoryInUse:
        raise StoreInUse(
            f"graph mcp: the data directory {settings.store.data_dir} is in use by another "
            "process (a running server?): stop it, or point a stdio client at its /mcp instead"
        ) from None
    try:
        defaults = DefaultCollections(store, settings.store)
        await defaults.ensure(DEFAULT_TENANT)
        tools = MemoryTools(memories_for(store), settings, defaults)
        server = build_server(tools, OPEN_PRINCIPAL)
        async with stdio_server() as (read, write):
            await server.run(read, write, server.create_initialization_options())
    finally:
        await store.close()
