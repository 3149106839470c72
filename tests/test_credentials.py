"""What the operator's credential files can get wrong: an API key file edited by hand or
rewritten by another user, a JWKS of several keys, a key that cannot verify anything.

Each such file either works as documented or stops the start naming the setting; a
running server never turns a mistake in the file into another tenant or a lost scope.
"""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from graph.errors import Unauthenticated
from graph.security import keys as keys_module
from graph.security.auth import Authenticator
from graph.security.keys import ApiKeyFile
from graph.security.principals import AuthConfigError, Principal, Scope
from graph.settings import Settings


def principal(authenticator: Authenticator, credential: str) -> Principal | None:
    try:
        return authenticator.authenticate(f"Bearer {credential}")
    except Unauthenticated:
        return None


def edit(path: Path, change: Any) -> None:
    """Rewrites the key file by hand: `change` gets the list of entries to alter."""
    raw = json.loads(path.read_text())
    change(raw["keys"])
    path.write_text(json.dumps(raw))


# API key files


HAND_EDITS = {
    # A copied entry given another tenant: the last of one id would win.
    "duplicate id": (lambda keys: keys.append({**keys[0], "tenant": "globex"}), "more than once"),
    "tenant outside the alphabet": (lambda keys: keys[0].update(tenant="acme/x"), "tenant"),
    "empty tenant": (lambda keys: keys[0].update(tenant=""), "tenant"),
    "misspelt scope": (lambda keys: keys[0].update(scopes=["read", "wirte"]), "'wirte'"),
    "scope in capitals": (lambda keys: keys[0].update(scopes=["READ"]), "'READ'"),
    "id holding the separator": (lambda keys: keys[0].update(id="ab_cd"), "key number 1"),
    "hash in capitals": (lambda keys: keys[0].update(hash=keys[0]["hash"].upper()), "hash"),
    "secret instead of its hash": (lambda keys: keys[0].update(hash="s3cret"), "hash"),
    "credential pasted as the id": (
        lambda keys: keys[0].update(id="gm_0123456789abcdef_s3cret"),
        "key number 1",
    ),
}


@pytest.mark.parametrize(("change", "said"), HAND_EDITS.values(), ids=list(HAND_EDITS))
def test_a_hand_edited_key_file_that_cannot_work_stops_the_start(
    tmp_path: Path, change: Any, said: str
) -> None:
    """Every entry `graph keys create` could not have written is refused by name, where
    it used to be read as something else: a key of another tenant, a key without its
    scope, a key no credential can match."""
    path = tmp_path / "keys.json"
    ApiKeyFile(path).create("acme", ["read"])
    edit(path, change)
    with pytest.raises(AuthConfigError, match="API key file") as refused:
        Authenticator(Settings(auth_api_keys_file=path))
    assert said in str(refused.value)
    entry = json.loads(path.read_text())["keys"][0]
    assert entry["hash"] not in str(refused.value) and "s3cret" not in str(refused.value)


def test_a_running_server_keeps_its_keys_when_the_file_breaks_and_says_so_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A broken edit neither hands acme's key to globex nor takes every key away: the
    keys read before stay, the error is logged once for that version of the file, and
    the fixed file is read as soon as it is written."""
    monkeypatch.setattr(keys_module, "KEYS_RECHECK_SECONDS", 0.0)
    path = tmp_path / "keys.json"
    keys = ApiKeyFile(path)
    credential, key = keys.create("acme", ["read"])
    authenticator = Authenticator(Settings(auth_api_keys_file=path))
    before = principal(authenticator, credential)
    assert before is not None and before.tenant == "acme"
    edit(path, lambda entries: entries.append({**entries[0], "tenant": "globex"}))
    with caplog.at_level(logging.ERROR, logger="graph.security.keys"):
        for _ in range(5):
            assert principal(authenticator, credential) == before
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1, [r.getMessage() for r in errors]
    assert "more than once" in errors[0].getMessage()
    assert "keeping the keys read before" in errors[0].getMessage()
    assert credential.split("_", 2)[2] not in caplog.text
    edit(path, lambda entries: entries.pop())  # fixed by hand
    assert principal(authenticator, credential) == before
    assert keys.revoke(key.id)
    assert principal(authenticator, credential) is None


def test_keys_commands_keep_the_file_mode_and_owner(tmp_path: Path) -> None:
    """`sudo graph keys revoke` on the file of a server that runs as another user used to
    leave it root's and 0600: the server could no longer read it, so kept taking the key
    just revoked (and would not start again)."""
    path = tmp_path / "keys.json"
    keys = ApiKeyFile(path)
    _, first = keys.create("acme", ["read"])
    assert path.stat().st_mode & 0o777 == 0o600  # a new file: the owner's only
    os.chmod(path, 0o640)
    as_root = os.geteuid() == 0
    if as_root:
        os.chown(path, 10001, 10001)  # the image's `app` user
    keys.create("globex", ["read"])
    assert keys.revoke(first.id)
    st = path.stat()
    assert st.st_mode & 0o777 == 0o640
    if as_root:
        assert (st.st_uid, st.st_gid) == (10001, 10001)
    assert [k.tenant for k in keys.list()] == ["globex"]


# JWT keys


def es256_jwk(key: ec.EllipticCurvePrivateKey, kid: str | None) -> dict[str, Any]:
    jwk: dict[str, Any] = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(key.public_key()))
    return {**jwk, "alg": "ES256", **({"kid": kid} if kid else {})}


def es256(key: ec.EllipticCurvePrivateKey, kid: str | None, tenant: str = "acme") -> str:
    claims = {"tenant": tenant, "scope": "read", "exp": int(time.time()) + 300}
    return jwt.encode(claims, key, algorithm="ES256", headers={"kid": kid} if kid else None)


def test_a_token_without_a_kid_is_checked_against_each_key_of_the_jwks(tmp_path: Path) -> None:
    """As documented ("each key when it names none"): only the first key of the token's
    algorithm used to be tried, so a token of the second key was refused. A kid still
    names its key only."""
    old, new, stranger = (ec.generate_private_key(ec.SECP256R1()) for _ in range(3))
    path = tmp_path / "jwks.json"
    path.write_text(json.dumps({"keys": [es256_jwk(old, "old"), es256_jwk(new, "new")]}))
    authenticator = Authenticator(Settings(auth_jwks_file=path))
    for key in (old, new):
        accepted = principal(authenticator, es256(key, None))
        assert accepted == Principal("acme", frozenset({Scope.READ}), "jwt:acme")
    assert principal(authenticator, es256(new, "new")) is not None
    assert principal(authenticator, es256(new, "old")) is None  # the kid names another key
    assert principal(authenticator, es256(new, "missing")) is None
    assert principal(authenticator, es256(stranger, None)) is None


def test_a_jwt_key_that_cannot_work_stops_the_start(tmp_path: Path) -> None:
    """A P-384 key as the ES256 public key verified nothing (PyJWT refuses the curve), and
    a JWKS holding a private key put the signing key on the API server, which the PEM
    file already refused."""
    p384 = ec.generate_private_key(ec.SECP384R1()).public_key()
    (tmp_path / "p384.pem").write_bytes(
        p384.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    with pytest.raises(AuthConfigError, match=r"AUTH_JWT_PUBLIC_KEY_FILE .* secp384r1"):
        Authenticator(Settings(auth_jwt_public_key_file=tmp_path / "p384.pem"))
    signing = ec.generate_private_key(ec.SECP256R1())
    private_jwk = {**json.loads(jwt.algorithms.ECAlgorithm.to_jwk(signing)), "kid": "k1"}
    (tmp_path / "jwks.json").write_text(json.dumps({"keys": [private_jwk]}))
    with pytest.raises(AuthConfigError, match=r"AUTH_JWKS_FILE .* private key"):
        Authenticator(Settings(auth_jwks_file=tmp_path / "jwks.json"))
    rsa_private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private_rsa = {**json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(rsa_private)), "kid": "r"}
    (tmp_path / "jwks.json").write_text(
        json.dumps({"keys": [es256_jwk(signing, "k1"), private_rsa]})
    )
    with pytest.raises(AuthConfigError, match=r"AUTH_JWKS_FILE .* private key \(r\)"):
        Authenticator(Settings(auth_jwks_file=tmp_path / "jwks.json"))
