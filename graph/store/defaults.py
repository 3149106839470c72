"""The default collection (COLLECTION, VECTOR_SIZE, DISTANCE), which every tenant has:
made for a tenant on its first request, and for the open tenant at start-up."""

from __future__ import annotations

import logging

from graph.errors import ApiError
from graph.settings import StoreSettings
from graph.store.base import VectorStore

logger = logging.getLogger("graph.store")


class DefaultCollections:
    def __init__(self, store: VectorStore, settings: StoreSettings) -> None:
        self.store = store
        self.settings = settings
        # Tenants whose default collection this process has made sure exists.
        self.ready: set[str] = set()

    async def ensure(self, tenant: str) -> bool:
        """Whether the tenant's default collection exists; a store fault is logged and
        tried again on the tenant's next request."""
        if tenant in self.ready:
            return True
        settings = self.settings
        try:
            await self.store.ensure_collection(
                tenant,
                settings.collection,
                settings.vector_size,
                settings.distance,
            )
        except ApiError:
            logger.warning("Could not prepare the default collection", extra={"tenant": tenant})
            return False
        self.ready.add(tenant)
        return True
