"""The default collection (COLLECTION, VECTOR_SIZE, DISTANCE), which every tenant has:
made for a tenant on its first request, and for the open tenant at start-up."""

from __future__ import annotations

import logging

from graph.errors import ApiError
from graph.settings import StoreSettings
from graph.store.base import VectorStore

logger = logging.getLogger("graph.store")

# Tenants whose failure is kept at once: a bound on what many tenants' failed first
# requests can hold (one beyond it says NOT_FOUND, as before).
MAX_PROBLEMS_KEPT = 10_000


class DefaultCollections:
    def __init__(self, store: VectorStore, settings: StoreSettings) -> None:
        self.store = store
        self.settings = settings
        # Tenants whose default collection this process has made sure exists.
        self.ready: set[str] = set()
        # Why a tenant's default collection could not be made, until it is.
        self._problems: dict[str, ApiError] = {}

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
        except ApiError as exc:
            logger.warning("Could not prepare the default collection", extra={"tenant": tenant})
            if len(self._problems) < MAX_PROBLEMS_KEPT:
                self._problems[tenant] = exc
            return False
        self._problems.pop(tenant, None)
        self.ready.add(tenant)
        return True

    def problem(self, tenant: str) -> ApiError | None:
        """Why the tenant's default collection is missing, when making it failed: a
        request on it says that (STORE_UNAVAILABLE: out of disk space), not NOT_FOUND."""
        return self._problems.get(tenant)
