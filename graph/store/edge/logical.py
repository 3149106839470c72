"""A tenant's logical collection inside the embedded store's physical one."""

from __future__ import annotations

from qdrant_edge import Filter as EdgeFilter

from graph.store.edge.layout import Collection
from graph.store.edge.translate import to_edge_filter
from graph.store.models import CollectionInfo, Filter
from graph.store.tenancy import CollectionEntry, scoped_filter


class Logical:
    """A tenant's collection: its catalog entry, the physical collection holding it, and
    the partition filter every call on it carries, built once."""

    __slots__ = ("coll", "entry", "only")

    def __init__(self, entry: CollectionEntry, coll: Collection) -> None:
        self.entry = entry
        self.coll = coll
        self.only = to_edge_filter(scoped_filter(entry.partition, None))

    def scoped(self, flt: Filter | None) -> EdgeFilter:
        """flt confined to this collection (tenancy.scoped_filter), in qdrant_edge's terms."""
        return (
            self.only if flt is None else to_edge_filter(scoped_filter(self.entry.partition, flt))
        )

    def info(self, points_count: int) -> CollectionInfo:
        e = self.entry
        return CollectionInfo(e.name, e.dimension, e.distance, points_count)
