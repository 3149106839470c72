"""Who a request runs as: its tenant and scopes, and the scope each root field needs."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum

from graph.errors import ConfigError, Unauthenticated
from graph.store.tenancy import DEFAULT_TENANT

# The log of every authentication failure, whichever credential failed.
logger = logging.getLogger("graph.security.auth")

UNAUTHENTICATED_MESSAGE = "Authentication required"


class Scope(StrEnum):
    READ = "read"
    WRITE = "write"
    ADMIN = "admin"


ALL_SCOPES = frozenset(Scope)


def parse_scopes(raw: Iterable[str]) -> frozenset[Scope]:
    """Known scope names; unknown ones are ignored (a token may carry others' scopes)."""
    known = {s.value for s in Scope}
    return frozenset(Scope(s) for s in raw if s in known)


_ADMIN_FIELDS = frozenset({"createCollection", "deleteCollection", "backup"})
_OPEN_FIELDS = frozenset({"health"})


def scope_for(operation_type: str, field: str) -> Scope | None:
    """The scope a root field needs: `read` for queries, `write` for mutations, `admin`
    for collection management; none for `health` and introspection."""
    if field.startswith("__") or field in _OPEN_FIELDS:
        return None
    if operation_type == "mutation":
        return Scope.ADMIN if field in _ADMIN_FIELDS else Scope.WRITE
    return Scope.READ


@dataclass(frozen=True, slots=True)
class Principal:
    tenant: str
    scopes: frozenset[Scope]
    # For logs: "open", "key:<id>" or "jwt:<sub>"; never a secret.
    subject: str


OPEN_PRINCIPAL = Principal(DEFAULT_TENANT, ALL_SCOPES, "open")


class AuthConfigError(ConfigError):
    """A security setting that cannot work; the server refuses to start, saying which."""


def refusal(reason: str) -> Unauthenticated:
    """Every failure is the same Unauthenticated; the reason goes to the log only, without
    the credential."""
    logger.info("Authentication failed", extra={"reason": reason})
    return Unauthenticated(UNAUTHENTICATED_MESSAGE)
