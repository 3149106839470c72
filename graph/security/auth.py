"""Credentials to a principal (graph/security/principals.py): the tenant a request runs
as, and its scopes.

Two kinds of credential, both sent as `Authorization: Bearer <credential>`:

- a JWT (PyJWT): HS256 signed with AUTH_JWT_SECRET, or RS256/ES256 verified with the
  public key in AUTH_JWT_PUBLIC_KEY_FILE or a key of the JWKS in AUTH_JWKS_FILE. `exp`
  is required; `iss` and `aud` are checked when configured. The algorithm is chosen by
  the key, never by the token: `alg: none`, and an HS256 token against a public key,
  are refused.
- an API key, checked against AUTH_API_KEYS_FILE (graph/security/keys.py).

Nothing configured: the server is open and every request is the tenant `default` with
every scope. Every failure is the same Unauthenticated, whatever the reason; the reason
goes to the log only, without the credential.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

import jwt
from cryptography.hazmat.primitives.asymmetric import ec
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

from graph.errors import BadUserInput
from graph.security.keys import API_KEY_PREFIX, ApiKeyFile
from graph.security.principals import (
    OPEN_PRINCIPAL,
    AuthConfigError,
    Principal,
    parse_scopes,
    refusal,
)
from graph.settings import Settings
from graph.store.tenancy import validate_tenant

logger = logging.getLogger("graph.security.auth")

MIN_HS256_SECRET_BYTES = 32
ASYMMETRIC_ALGORITHMS = ("RS256", "ES256")
# Far above any real JWT (a few hundred bytes to a few KiB with many claims).
MAX_CREDENTIAL_CHARS = 16 * 1024


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
            raise refusal("token header with a non-string alg or kid")
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
            raise refusal(f"no key for algorithm {algorithm[:16]!r}")
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
            raise refusal(f"invalid token: {type(exc).__name__}") from None
        if self.audience is None and "aud" in claims:
            # PyJWT refuses an audience when none is configured, but lets an empty one by.
            raise refusal("token with an audience, and AUTH_JWT_AUDIENCE is unset")
        wrong = _wrongly_typed_claim(claims)
        if wrong is not None:
            raise refusal(f"token whose {wrong} claim is missing or has the wrong type")
        tenant: str = claims["tenant"]
        try:
            validate_tenant(tenant)
        except BadUserInput:
            raise refusal("token with an invalid tenant") from None
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
            raise refusal("no credential")
        scheme, _, credential = authorization.partition(" ")
        credential = credential.strip()
        if scheme.lower() != "bearer" or not credential:
            raise refusal("not a bearer credential")
        # Every credential this server issues or accepts is short ASCII (base64url, hex).
        if len(credential) > MAX_CREDENTIAL_CHARS or not credential.isascii():
            raise refusal("a credential too long or not ASCII")
        if credential.startswith(API_KEY_PREFIX):
            if self.keys is None:
                raise refusal("API keys are not enabled")
            return self.keys.verify(credential)
        if not self.jwt.configured:
            raise refusal("JWTs are not enabled")
        return self.jwt.verify(credential)
