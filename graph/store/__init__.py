"""Vector stores: one interface, an embedded and a remote adapter."""

from __future__ import annotations

from graph.settings import Settings
from graph.store.base import VectorStore


def create_store(settings: Settings) -> VectorStore:
    """The remote adapter when QDRANT_URL is set, the embedded engine otherwise."""
    if settings.store.qdrant_url:
        from graph.store.remote import RemoteStore

        return RemoteStore.from_settings(settings)
    from graph.store.edge import EdgeStore

    return EdgeStore.from_settings(settings)


__all__ = ["VectorStore", "create_store"]
