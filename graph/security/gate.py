"""The door every API route goes through: the credential, then the tenant's rate limit.

GraphQL (graph/http/endpoint.py) and MCP (graph/http/gate.py) both call Gate.admit
before they read a body, so a refused request costs the same little on either route and
is counted the same way.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from graph.errors import ErrorCode, Unauthenticated
from graph.security.auth import Authenticator
from graph.security.principals import OPEN_PRINCIPAL, Principal
from graph.security.ratelimit import TenantRateLimiter
from graph.telemetry.metrics import AUTH_FAILURES

RATE_LIMITED_MESSAGE = "Too many requests for this tenant; retry later"


@dataclass(frozen=True, slots=True)
class Denial:
    """Why a request is turned away: its HTTP status, code, message and headers."""

    status: int
    code: ErrorCode
    message: str
    headers: dict[str, str] = field(default_factory=dict)


class Gate:
    def __init__(
        self, authenticator: Authenticator | None, limiter: TenantRateLimiter | None
    ) -> None:
        self.authenticator = authenticator
        self.limiter = limiter

    async def admit(self, authorization: str | None) -> Principal | Denial:
        principal = OPEN_PRINCIPAL
        if self.authenticator is not None:
            try:
                principal = self.authenticator.authenticate(authorization)
            except Unauthenticated as exc:
                AUTH_FAILURES.labels(ErrorCode.UNAUTHENTICATED.value).inc()
                return Denial(
                    401,
                    ErrorCode.UNAUTHENTICATED,
                    exc.message,
                    {"WWW-Authenticate": "Bearer"},
                )
        if self.limiter is not None:
            retry_after = await self.limiter.hit(principal.tenant)
            if retry_after is not None:
                return Denial(
                    429,
                    ErrorCode.RATE_LIMITED,
                    RATE_LIMITED_MESSAGE,
                    {"Retry-After": str(retry_after)},
                )
        return principal
