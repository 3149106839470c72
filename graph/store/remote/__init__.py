"""The remote adapter: a Qdrant server through qdrant-client (see store.py)."""

from graph.store.remote.store import RemoteStore

__all__ = ["RemoteStore"]
