"""The embedded adapter: the qdrant-edge engine in this process (see store.py)."""

from graph.store.edge.store import EdgeStore
from graph.store.edge.translate import to_edge_filter

__all__ = ["EdgeStore", "to_edge_filter"]
