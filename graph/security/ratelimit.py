"""Per-tenant rate limits (RATE_LIMIT, e.g. "100/second") with the `limits` library.

Counted in this process by default; with RATE_LIMIT_STORAGE_URL=redis://... in Redis,
so that every replica of the API shares one budget per tenant. The sliding window
counter costs one round trip per request in Redis (two keys, no per-hit list).

When Redis cannot be reached the request is let through (limits protect the service,
they must not take it down) and a warning is logged at most every WARN_EVERY_SECONDS.
After a failure the storage is left alone for RETRY_SECONDS, but for one request that
tries it again: a Redis that stops answering costs one request REDIS_TIMEOUT_SECONDS,
not every request.
"""

from __future__ import annotations

import logging
import math
import time
from typing import Any

from limits import RateLimitItem, parse
from limits.aio.storage import MemoryStorage, Storage
from limits.aio.strategies import SlidingWindowCounterRateLimiter
from limits.storage import storage_from_string
from redis.asyncio import ConnectionPool

from graph.errors import ConfigError
from graph.telemetry.metrics import RATE_LIMITED_REQUESTS, TENANT_LABELS

logger = logging.getLogger("graph.security.ratelimit")

WARN_EVERY_SECONDS = 10.0
REDIS_TIMEOUT_SECONDS = 0.5
RETRY_SECONDS = 1.0


class RateLimitConfigError(ConfigError):
    pass


def _storage(url: str | None) -> tuple[Storage, ConnectionPool | None]:
    if not url:
        return MemoryStorage(), None
    scheme = url.split("://", 1)[0]
    if scheme not in ("redis", "rediss"):
        raise RateLimitConfigError("RATE_LIMIT_STORAGE_URL must be a redis:// or rediss:// URL")
    try:
        # Our own pool, so that shutting down closes its connections.
        pool = ConnectionPool.from_url(
            url,
            socket_timeout=REDIS_TIMEOUT_SECONDS,
            socket_connect_timeout=REDIS_TIMEOUT_SECONDS,
        )
        options: dict[str, Any] = {"implementation": "redispy", "connection_pool": pool}
        storage = storage_from_string(f"async+{url}", **options)
    except Exception as exc:
        raise RateLimitConfigError(
            f"RATE_LIMIT_STORAGE_URL cannot be used: {type(exc).__name__}"
        ) from None
    assert isinstance(storage, Storage)
    return storage, pool


class TenantRateLimiter:
    def __init__(self, limit: str, storage_url: str | None = None) -> None:
        try:
            self.item: RateLimitItem = parse(limit)
        except ValueError:
            raise RateLimitConfigError(
                f"RATE_LIMIT {limit!r} is not a rate such as 100/second or 1000/minute"
            ) from None
        if self.item.amount < 1:  # 0/second would refuse every request, for ever
            raise RateLimitConfigError(f"RATE_LIMIT {limit!r} must allow at least one request")
        self.storage, self._pool = _storage(storage_url)
        self.shared = bool(storage_url)
        self.limiter = SlidingWindowCounterRateLimiter(self.storage)
        self._warned = 0.0
        self._failing = False
        self._retry_at = 0.0

    async def hit(self, tenant: str) -> int | None:
        """None when the request may go on; otherwise the seconds to wait (Retry-After)."""
        if self._failing:
            now = time.monotonic()
            if now < self._retry_at:
                return None
            self._retry_at = now + RETRY_SECONDS  # this request tries; the others pass
        try:
            allowed = await self.limiter.hit(self.item, tenant)
            stats = None if allowed else await self.limiter.get_window_stats(self.item, tenant)
            self._failing = False
        except Exception as exc:
            now = time.monotonic()
            self._failing, self._retry_at = True, now + RETRY_SECONDS
            if now - self._warned >= WARN_EVERY_SECONDS:
                self._warned = now
                logger.warning(
                    "Rate limit storage failed; letting requests through",
                    extra={"error": type(exc).__name__},
                )
            return None
        if stats is None:
            return None
        RATE_LIMITED_REQUESTS.labels(TENANT_LABELS(tenant)).inc()
        return max(1, math.ceil(stats.reset_time - time.time()))

    async def close(self) -> None:
        if self._pool is not None:
            await self._pool.aclose()
