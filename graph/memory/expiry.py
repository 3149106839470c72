"""The expiry sweep: every TTL_SWEEP_SECONDS, expired memories are deleted from the store.

Reads already leave expired memories out from the moment they expire; the sweep only
frees their space. Each run deletes at most SWEEP_BATCH memories, of every tenant (the one
store call that spans tenants), so a large backlog is worked off over several runs
without stalling the store.
"""

from __future__ import annotations

import asyncio
import logging

from graph.memory.service import MemoryService

logger = logging.getLogger(__name__)


async def sweep_forever(service: MemoryService, interval_seconds: float) -> None:
    """Until cancelled; a failed run is logged and the next one tries again."""
    while True:
        await asyncio.sleep(interval_seconds)
        try:
            deleted = await service.sweep()
        except Exception:
            logger.warning("The expiry sweep failed; retrying next run", exc_info=True)
            continue
        if deleted:
            logger.info("Deleted %s expired memories", deleted)
