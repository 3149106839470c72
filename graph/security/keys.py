"""API keys (`gm_<id>_<secret>`), made by `graph keys create`: the file named by
AUTH_API_KEYS_FILE holds only a SHA-256 of each secret (256 random bits, so a fast hash is
enough), compared in constant time. The file is re-read when it changes, so a revoked key
stops working within KEYS_RECHECK_SECONDS; a file that cannot be read, or holds an entry
that cannot work, keeps the keys read before (said once, as an error) until it is fixed.
"""

from __future__ import annotations

import contextlib
import datetime
import fcntl
import hashlib
import hmac
import json
import logging
import os
import re
import secrets
import stat
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from graph.errors import BadUserInput
from graph.security.principals import (
    AuthConfigError,
    Principal,
    Scope,
    parse_scopes,
    refusal,
)
from graph.store.tenancy import validate_tenant

logger = logging.getLogger("graph.security.keys")

API_KEY_PREFIX = "gm_"
KEYS_RECHECK_SECONDS = 1.0


@dataclass(frozen=True, slots=True)
class ApiKey:
    id: str
    tenant: str
    scopes: tuple[str, ...]
    hash: str
    created: str

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "tenant": self.tenant,
            "scopes": list(self.scopes),
            "hash": self.hash,
            "created": self.created,
        }


TENANT_RULE = "1-128 letters, digits or '_.@:-', starting with a letter or digit"
# `graph keys create` makes 16 hex digits; a hand-written id must at least not hold the
# '_' that ends it in a credential.
_KEY_ID = re.compile(r"[A-Za-z0-9-]{1,64}")
_KEY_HASH = re.compile(r"[0-9a-f]{64}")  # hashlib's hexdigest


def _unknown_scopes(scopes: Iterable[str]) -> str | None:
    """The message for the scopes that are not ours, or None when all are."""
    known = {x.value for x in Scope}
    unknown = [s for s in scopes if s not in known]
    if not unknown:
        return None
    named = ", ".join(repr(s) for s in unknown)
    plural = "s" if len(unknown) > 1 else ""
    return f"unknown scope{plural} {named}; scopes are {', '.join(x.value for x in Scope)}"


def _key_entry_problem(index: int, entry: dict[str, Any], seen: set[str]) -> str | None:
    """What would make a well-shaped entry of a hand-edited file silently wrong: a second
    entry of one id (the last would win, whatever its tenant), a tenant the store refuses,
    a scope misspelt (the key would lose it), a hash no secret can match."""
    key_id = entry["id"]
    if not _KEY_ID.fullmatch(key_id):
        # Not shown: a whole credential pasted as the id would put its secret in the log.
        return f"the id of key number {index + 1} is not 1-64 letters, digits or '-'"
    if key_id in seen:
        return f"key id {key_id} appears more than once"
    seen.add(key_id)
    try:
        validate_tenant(entry["tenant"])
    except BadUserInput:
        return f"key {key_id}: tenant {entry['tenant']!r} is not {TENANT_RULE}"
    unknown = _unknown_scopes(entry["scopes"])
    if unknown is not None:
        return f"key {key_id}: {unknown}"
    if not _KEY_HASH.fullmatch(entry["hash"]):
        return f"key {key_id}: hash is not a SHA-256 in lowercase hex"
    return None


def _is_key_entry(entry: object) -> bool:
    """A key as ApiKey.to_json writes it: four strings and a list of strings."""
    return (
        isinstance(entry, dict)
        and all(isinstance(entry.get(name), str) for name in ("id", "tenant", "hash", "created"))
        and isinstance(entry.get("scopes"), list)
        and all(isinstance(scope, str) for scope in entry["scopes"])
    )


def _hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


class ApiKeyFile:
    """The operator's key file: read by the server, written by `graph keys`."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._keys: dict[str, tuple[ApiKey, Principal]] = {}
        self._stamp: tuple[int, ...] | None = None
        # The version of the file that could not be read: kept from being re-read (and
        # its error logged again) every KEYS_RECHECK_SECONDS until it changes.
        self._failed: tuple[int, ...] | None = None
        self._checked = 0.0

    def load(self) -> None:
        """Read the file when it changed; a missing file holds no keys."""
        try:
            st = self.path.stat()
        except FileNotFoundError:
            self._keys, self._stamp = {}, None
            return
        # ctime too: a chmod that makes the file readable again changes nothing else.
        stamp = (st.st_mtime_ns, st.st_ctime_ns, st.st_size, st.st_ino)
        if stamp in (self._stamp, self._failed):
            return
        try:
            read = self._read()
        except AuthConfigError:
            self._failed = stamp
            raise
        keys: dict[str, tuple[ApiKey, Principal]] = {}
        for key in read:
            principal = Principal(key.tenant, parse_scopes(key.scopes), f"key:{key.id}")
            keys[key.id] = (key, principal)
        self._keys, self._stamp = keys, stamp

    def _read(self) -> list[ApiKey]:
        try:
            raw = json.loads(self.path.read_bytes())
        except FileNotFoundError:
            return []
        except OSError as exc:
            raise AuthConfigError(f"API key file {self.path}: {exc.strerror}") from None
        except ValueError:
            raise AuthConfigError(f"API key file {self.path} is not JSON") from None
        entries = raw.get("keys") if isinstance(raw, dict) else None
        if not isinstance(entries, list) or not all(map(_is_key_entry, entries)):
            raise AuthConfigError(
                f"API key file {self.path} is not a key file: expected "
                '{"keys": [{"id", "tenant", "scopes", "hash", "created"}, ...]}, '
                "as `graph keys` writes it"
            )
        seen: set[str] = set()
        for index, entry in enumerate(entries):
            problem = _key_entry_problem(index, entry, seen)
            if problem is not None:
                raise AuthConfigError(f"API key file {self.path}: {problem}")
        return [
            ApiKey(
                id=k["id"],
                tenant=k["tenant"],
                scopes=tuple(k["scopes"]),
                hash=k["hash"],
                created=k["created"],
            )
            for k in entries
        ]

    def verify(self, credential: str) -> Principal:
        now = time.monotonic()
        if now - self._checked >= KEYS_RECHECK_SECONDS:
            self._checked = now
            try:
                self.load()
            except AuthConfigError as exc:
                # Failing open would take every key away for one typo; the operator is
                # told, once per version of the file, that revocations wait for a fix.
                logger.error("%s; keeping the keys read before until the file is fixed", exc)
        key_id, _, secret = credential.removeprefix(API_KEY_PREFIX).partition("_")
        entry = self._keys.get(key_id)
        # Hash and compare even for an unknown id, so that timing says nothing about ids.
        digest = _hash_secret(secret)
        expected = entry[0].hash if entry else "0" * len(digest)
        if not hmac.compare_digest(digest, expected) or entry is None:
            raise refusal("unknown or revoked API key")
        return entry[1]

    # Management, for the CLI: one writer at a time, atomic replacement.

    @contextlib.contextmanager
    def _locked(self) -> Iterator[list[ApiKey]]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        lock = os.open(f"{self.path}.lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(lock, fcntl.LOCK_EX)
            keys = self._read()
            yield keys
            tmp = self.path.with_name(self.path.name + ".tmp")
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with contextlib.suppress(FileNotFoundError):
                # The file keeps its mode and owner: `sudo graph keys revoke` must not
                # leave a server running as another user unable to read it (and so still
                # taking the key it revoked).
                st = os.stat(self.path)
                with contextlib.suppress(PermissionError):
                    os.fchown(fd, st.st_uid, st.st_gid)
                os.fchmod(fd, stat.S_IMODE(st.st_mode))
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                json.dump({"keys": [k.to_json() for k in keys]}, f, indent=1)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.path)
        finally:
            os.close(lock)

    def create(self, tenant: str, scopes: Iterable[str]) -> tuple[str, ApiKey]:
        """A new key; the returned credential is the only time its secret exists."""
        try:
            validate_tenant(tenant)
        except BadUserInput:
            raise ValueError(f"tenant must be {TENANT_RULE}") from None
        wanted = list(dict.fromkeys(scopes))
        unknown = _unknown_scopes(wanted)
        if unknown is not None:
            raise ValueError(unknown)
        if not wanted:
            raise ValueError(f"no scope given; scopes are {', '.join(x.value for x in Scope)}")
        key_id = secrets.token_hex(8)
        secret = secrets.token_urlsafe(32)
        key = ApiKey(
            id=key_id,
            tenant=tenant,
            scopes=tuple(wanted),
            hash=_hash_secret(secret),
            created=datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        )
        with self._locked() as keys:
            keys.append(key)
        return f"{API_KEY_PREFIX}{key_id}_{secret}", key

    def list(self) -> list[ApiKey]:
        return self._read()

    def revoke(self, key_id: str) -> bool:
        with self._locked() as keys:
            kept = [k for k in keys if k.id != key_id]
            found = len(kept) != len(keys)
            keys[:] = kept
        return found
