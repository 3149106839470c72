"""`graph mcp`: the tools over stdin and stdout, for a desktop agent on this machine.

The same settings as the server (DATA_DIR, or QDRANT_URL). stdio carries no credential:
every call runs as the open tenant with every scope, as an open server does. The
embedded store takes one process per data directory: when a server already holds it,
StoreInUse says so and `graph mcp` exits with status 2 (graph/cli.py).
"""

from __future__ import annotations

import asyncio
import contextlib

from mcp.server.stdio import stdio_server

from graph.mcp.server import build_server
from graph.mcp.tools import MemoryTools
from graph.memory.embedders import create_embedder
from graph.memory.expiry import sweep_forever
from graph.memory.service import MemoryService
from graph.security.auth import OPEN_PRINCIPAL
from graph.settings import Settings
from graph.store import create_store
from graph.store.defaults import DefaultCollections
from graph.store.edge.layout import DataDirectoryInUse
from graph.store.tenancy import DEFAULT_TENANT


class StoreInUse(Exception):
    """The embedded store's data directory is held by another process."""


async def serve_stdio(settings: Settings) -> None:
    store = create_store(settings)
    memories = MemoryService(store, settings, create_embedder(settings.memory))
    await memories.start()
    try:
        await store.open()
    except DataDirectoryInUse:
        await memories.close()
        raise StoreInUse(
            f"graph mcp: the data directory {settings.store.data_dir} is in use by another "
            "process (a running server?): stop it, or point a stdio client at its /mcp instead"
        ) from None
    sweeping = asyncio.create_task(sweep_forever(memories, settings.memory.ttl_sweep_seconds))
    try:
        defaults = DefaultCollections(store, settings.store)
        await defaults.ensure(DEFAULT_TENANT)
        server = build_server(MemoryTools(memories, settings, defaults), OPEN_PRINCIPAL)
        async with stdio_server() as (read, write):
            await server.run(read, write, server.create_initialization_options())
    finally:
        sweeping.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await sweeping
        await store.close()
        await memories.close()
