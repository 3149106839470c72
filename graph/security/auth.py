"""Credentials to a principal: the tenant a request runs as, and its scopes.

Two kinds of credential, both sent as `Authorization: Bearer <credential>`:

- a JWT (PyJWT): HS256 signed with AUTH_JWT_SECRET, or RS256/ES256 verified with the
  public key in AUTH_JWT_PUBLIC_KEY_FILE or a key of the JWKS in AUTH_JWKS_FILE. `exp`
  is required; `iss` and `aud` are checked when configured. The algorithm is chosen by
  the key, never by the token: `alg: none`, and an HS256 token against a public key,
  are refused.
- an API key (`gm_<id>_<secret>`), made by `graph keys create`; the file named by
  AUTH_API_KEYS_FILE holds only a SHA-256 of each secret (256 random bits, so a fast
  hash is enough), compared in constant time. The file is re-read when it changes, so
  a revoked key stops working within KEYS_RECHECK_SECONDS; a file that cannot be read,
  or holds an entry that cannot work, keeps the keys read before (said once, as an
  error) until it is fixed.

Nothing configured: the server is open and every request is the tenant `default` with
every scope. Every failure is the same Unauthenticated, whatever the reason; the reason
goes to the log only, without the credential.
"""

from __future__ import annotations

import contextlib
import datetime
import fcntl
import hashlib
import hmac
import json
import logging
import math
import os
import re
import secrets
import stat
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any, cast

import jwt
from cryptography.hazmat.primitives.asymmetric import ec
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

from graph.errors import BadUserInput, ConfigError, Unauthenticated
from graph.settings import Settings
from graph.store.tenancy import DEFAULT_TENANT, validate_tenant

logger = logging.getLogger("graph.security.auth")

UNAUTHENTICATED_MESSAGE = "Authentication required"
API_KEY_PREFIX = "gm_"
KEYS_RECHECK_SECONDS = 1.0
MIN_HS256_SECRET_BYTES = 32
ASYMMETRIC_ALGORITHMS = ("RS256", "ES256")
# Far above any real JWT (a few hundred bytes to a few KiB with many claims).
MAX_CREDENTIAL_CHARS = 16 * 1024


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


def _refuse(reason: str) -> Unauthenticated:
    logger.info("Authentication failed", extra={"reason": reason})
    return Unauthenticated(UNAUTHENTICATED_MESSAGE)


# API keys


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
            raise _refuse("unknown or revoked API key")
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


# JWTs


class JwtVerifier:
    def __init__(self, settings: Settings) -> None:
        self.issuer = settings.auth.auth_jwt_issuer
        self.audience = settings.auth.auth_jwt_audience
        self.leeway = settings.auth.auth_jwt_leeway_seconds
        self.secret: bytes | None = None
        self.public_keys: dict[str, Any] = {}  # algorithm -> key
        self.jwks: jwt.PyJWKSet | None = None
        if settings.auth.auth_jwt_secret is not None:
            secret = settings.auth.auth_jwt_secret.get_secret_value().encode()
            if len(secret) < MIN_HS256_SECRET_BYTES:
                raise AuthConfigError(
                    f"AUTH_JWT_SECRET must be at least {MIN_HS256_SECRET_BYTES} bytes long"
                )
            self.secret = secret
        if settings.auth.auth_jwt_public_key_file is not None:
            algorithm, key = _load_public_key(settings.auth.auth_jwt_public_key_file)
            self.public_keys[algorithm] = key
        if settings.auth.auth_jwks_file is not None:
            self.jwks = _load_jwks(settings.auth.auth_jwks_file)

    @property
    def configured(self) -> bool:
        return self.secret is not None or bool(self.public_keys) or self.jwks is not None

    def _keys_for(self, token: str) -> tuple[list[Any], str]:
        """The keys that may have signed the token, for the algorithm its header names."""
        header = jwt.get_unverified_header(token)
        algorithm = header.get("alg")
        kid = header.get("kid")
        if not isinstance(algorithm, str) or not isinstance(kid, str | None):
            raise _refuse("token header with a non-string alg or kid")
        keys: list[Any] = []
        if algorithm == "HS256" and self.secret is not None:
            keys.append(self.secret)
        if algorithm in self.public_keys:
            keys.append(self.public_keys[algorithm])
        if self.jwks is not None and algorithm in ASYMMETRIC_ALGORITHMS:
            # Every key of the JWKS the token's `kid` names (each one when it names none):
            # during a rotation an identity provider may sign without a kid.
            keys.extend(
                k.key
                for k in self.jwks.keys
                if (kid is None or k.key_id == kid) and k.algorithm_name == algorithm
            )
        if not keys:
            raise _refuse(f"no key for algorithm {algorithm[:16]!r}")
        return keys, algorithm

    def _decode(self, token: str) -> dict[str, Any]:
        keys, algorithm = self._keys_for(token)
        for key in keys[:-1]:
            try:
                return self._decode_with(token, key, algorithm)
            except jwt.InvalidSignatureError:
                continue  # the signature is checked before the claims: try the next key
        return self._decode_with(token, keys[-1], algorithm)

    def _decode_with(self, token: str, key: Any, algorithm: str) -> dict[str, Any]:
        claims: dict[str, Any] = jwt.decode(
            token,
            key,
            algorithms=[algorithm],
            audience=self.audience,
            issuer=self.issuer,
            leeway=self.leeway,
            options={"require": ["exp", *(["iss"] if self.issuer else [])]},
        )
        return claims

    def verify(self, token: str) -> Principal:
        # PyJWT walks JSON an attacker wrote: besides its own errors, a shape it does not
        # expect can surface as one of the built-in ones. All of them are a bad credential.
        try:
            claims = self._decode(token)
        except (jwt.PyJWTError, TypeError, ValueError, OverflowError, RecursionError) as exc:
            raise _refuse(f"invalid token: {type(exc).__name__}") from None
        if self.audience is None and "aud" in claims:
            # PyJWT refuses an audience when none is configured, but lets an empty one by.
            raise _refuse("token with an audience, and AUTH_JWT_AUDIENCE is unset")
        wrong = _wrongly_typed_claim(claims)
        if wrong is not None:
            raise _refuse(f"token whose {wrong} claim is missing or has the wrong type")
        tenant: str = claims["tenant"]
        try:
            validate_tenant(tenant)
        except BadUserInput:
            raise _refuse("token with an invalid tenant") from None
        scope: str = claims["scope"]
        subject: str | None = claims.get("sub")
        return Principal(
            tenant, parse_scopes(scope.split()), f"jwt:{subject[:128] if subject else tenant}"
        )


def _is_string_or_strings(value: object) -> bool:
    return isinstance(value, str) or (
        isinstance(value, list) and all(isinstance(v, str) for v in value)
    )


# Registered claims are checked by PyJWT only as far as the configuration asks (`iss`
# only with an issuer set; a string "1" passes as `iat`): their types are checked here,
# whatever is configured. `tenant` and `scope` are required (an empty scope is a
# credential that may do nothing: FORBIDDEN).
_CLAIM_TYPES: dict[str, Callable[[object], bool]] = {
    "tenant": lambda v: isinstance(v, str),
    "scope": lambda v: isinstance(v, str),
    "sub": lambda v: isinstance(v, str),
    "iss": lambda v: isinstance(v, str),
    "aud": _is_string_or_strings,
    **dict.fromkeys(
        ("exp", "nbf", "iat"),
        lambda v: type(v) in (int, float) and math.isfinite(cast(float, v)),
    ),
}


def _wrongly_typed_claim(claims: dict[str, Any]) -> str | None:
    for required in ("tenant", "scope"):  # the contract's claims (exp: PyJWT's `require`)
        if required not in claims:
            return required
    for name, valid in _CLAIM_TYPES.items():
        if name in claims and not valid(claims[name]):
            return name
    return None


def _load_public_key(path: Path) -> tuple[str, Any]:
    try:
        pem = Path(path).read_bytes()
    except OSError as exc:
        raise AuthConfigError(f"AUTH_JWT_PUBLIC_KEY_FILE {path}: {exc.strerror}") from None
    for algorithm, loader in (("RS256", RSAAlgorithm), ("ES256", ECAlgorithm)):
        try:
            key = loader(loader.SHA256).prepare_key(pem)
        except (jwt.InvalidKeyError, ValueError, TypeError):
            continue
        if hasattr(key, "private_bytes"):
            raise AuthConfigError(
                f"AUTH_JWT_PUBLIC_KEY_FILE {path} holds a private key; give the public key"
            )
        if isinstance(key, ec.EllipticCurvePublicKey) and not isinstance(key.curve, ec.SECP256R1):
            # PyJWT would refuse every ES256 token signed with it, and nothing else is taken.
            raise AuthConfigError(
                f"AUTH_JWT_PUBLIC_KEY_FILE {path} is an EC key on {key.curve.name}; "
                "ES256 needs a P-256 (secp256r1) key"
            )
        return algorithm, key
    raise AuthConfigError(
        f"AUTH_JWT_PUBLIC_KEY_FILE {path} is not an RSA or EC public key in PEM format"
    )


def _load_jwks(path: Path) -> jwt.PyJWKSet:
    try:
        raw = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise AuthConfigError(f"AUTH_JWKS_FILE {path}: {exc.strerror}") from None
    try:
        jwks = jwt.PyJWKSet.from_json(raw)
    except (jwt.PyJWTError, ValueError, KeyError, TypeError) as exc:
        raise AuthConfigError(f"AUTH_JWKS_FILE {path} is not a usable JWKS: {exc}") from None
    usable = [k for k in jwks.keys if k.algorithm_name in ASYMMETRIC_ALGORITHMS]
    if not usable:
        raise AuthConfigError(f"AUTH_JWKS_FILE {path} has no RS256 or ES256 key")
    private = [k.key_id or "without a kid" for k in usable if hasattr(k.key, "private_bytes")]
    if private:
        # As for AUTH_JWT_PUBLIC_KEY_FILE: the signing key has no place on this server.
        raise AuthConfigError(
            f"AUTH_JWKS_FILE {path} holds a private key ({private[0]}); give the public keys"
        )
    return jwks


class Authenticator:
    """Built once at start-up (where configuration errors surface); authenticate() runs
    on every request, before its body is read."""

    def __init__(self, settings: Settings) -> None:
        self.jwt = JwtVerifier(settings)
        self.keys: ApiKeyFile | None = None
        if settings.auth.auth_api_keys_file is not None:
            self.keys = ApiKeyFile(settings.auth.auth_api_keys_file)
            self.keys.load()
            if not self.keys.path.exists():  # legitimate (keys made later), but say so
                logger.warning(
                    "AUTH_API_KEYS_FILE %s does not exist: no API key is valid until "
                    "`graph keys create` makes one",
                    self.keys.path,
                )
        self.open = not self.jwt.configured and self.keys is None

    def authenticate(self, authorization: str | None) -> Principal:
        if self.open:
            return OPEN_PRINCIPAL
        if not authorization:
            raise _refuse("no credential")
        scheme, _, credential = authorization.partition(" ")
        credential = credential.strip()
        if scheme.lower() != "bearer" or not credential:
            raise _refuse("not a bearer credential")
        # Every credential this server issues or accepts is short ASCII (base64url, hex).
        if len(credential) > MAX_CREDENTIAL_CHARS or not credential.isascii():
            raise _refuse("a credential too long or not ASCII")
        if credential.startswith(API_KEY_PREFIX):
            if self.keys is None:
                raise _refuse("API keys are not enabled")
            return self.keys.verify(credential)
        if not self.jwt.configured:
            raise _refuse("JWTs are not enabled")
        return self.jwt.verify(credential)
