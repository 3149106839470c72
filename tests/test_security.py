"""Authentication, scopes, tenancy through the API, rate limits and hardening.

Every attack asserts the error (code, HTTP status, request id) and that no data moved:
the victim's points are counted through a valid credential before and after.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import REGISTRY
from starlette.testclient import TestClient

from graph.app import create_app
from graph.errors import Unauthenticated
from graph.security import auth
from graph.security import keys as keys_module
from graph.security.keys import ApiKeyFile
from graph.security.principals import AuthConfigError, Principal
from graph.security.ratelimit import RateLimitConfigError
from graph.settings import Settings
from tests.conftest import make_settings
from tests.helpers import COUNT, QUERY, UPSERT, GraphQLResponse, gql, point

SECRET = "a-test-secret-of-at-least-32-bytes-long!"
V = [0.1, 0.2, 0.3, 0.4]


def token(
    tenant: str = "acme",
    scope: str = "read write admin",
    *,
    key: Any = SECRET,
    algorithm: str = "HS256",
    # Module-level tokens are made at collection: a day outlives any run of the suite.
    exp: float | None = 24 * 3600,
    headers: dict[str, Any] | None = None,
    **claims: Any,
) -> str:
    body: dict[str, Any] = {"tenant": tenant, "scope": scope, **claims}
    if exp is not None:
        body["exp"] = int(time.time() + exp)
    return jwt.encode(body, key, algorithm=algorithm, headers=headers)


def bearer(credential: str) -> dict[str, str]:
    return {"authorization": f"Bearer {credential}"}


def call(
    client: TestClient, query: str, variables: dict[str, Any] | None = None, /, **headers: str
) -> GraphQLResponse:
    return gql(client, query, variables, **headers)


def count(client: TestClient, credential: str, collection: str | None = None) -> int:
    result: int = call(client, COUNT, {"c": collection}, **bearer(credential)).data["count"]
    return result


def upsert(client: TestClient, credential: str, *points: dict[str, Any]) -> GraphQLResponse:
    return call(client, UPSERT, {"points": list(points)}, **bearer(credential))


@pytest.fixture
def secured(tmp_path: Path) -> Iterator[TestClient]:
    settings = make_settings(tmp_path, auth_jwt_secret=SECRET, auth_jwt_audience="memory")
    with TestClient(create_app(settings)) as client:
        yield client


A = token("acme", aud="memory")
B = token("globex", aud="memory")


def assert_refused(response: GraphQLResponse, status: int, code: str) -> None:
    assert response.status == status, response.body
    response.assert_error(code)
    assert "data" not in response.body or response.body["data"] is None


# Authentication


BAD_TOKENS = {
    "missing": None,
    "empty bearer": "Bearer ",
    "not bearer": f"Basic {A}",
    "malformed": "Bearer not.a.jwt",
    "garbage": "Bearer " + "x" * 300,
    "expired": "Bearer " + token(exp=-3600, aud="memory"),
    "no exp": "Bearer " + token(exp=None, aud="memory"),
    "wrong signature": "Bearer " + token(key="another-secret-that-is-also-32-bytes!", aud="memory"),
    "alg none": "Bearer " + token(key=None, algorithm="none", aud="memory"),
    "wrong audience": "Bearer " + token(aud="someone-else"),
    "no audience": "Bearer " + token(),
    "bad tenant": "Bearer " + token(tenant="../../etc", aud="memory"),
    "tenant not a string": "Bearer " + token(tenant=["a"], aud="memory"),  # type: ignore[arg-type]
    "unknown api key": "Bearer gm_0123456789abcdef_nope",
}


@pytest.mark.parametrize("header", BAD_TOKENS.values(), ids=list(BAD_TOKENS))
def test_bad_credentials_are_unauthenticated_and_move_nothing(
    secured: TestClient, header: str | None
) -> None:
    assert upsert(secured, A, point(1, V, owner="acme")).data == {"upsert": {"upserted": 1}}
    headers = {} if header is None else {"authorization": header}
    attack = call(secured, UPSERT, {"points": [point(1, V, owner="evil")]}, **headers)
    assert_refused(attack, 401, "UNAUTHENTICATED")
    assert attack.http.headers["www-authenticate"] == "Bearer"
    assert attack.body["errors"][0]["message"] == "Authentication required"
    wiped = call(secured, 'mutation { delete(ids: ["1"]) { deleted } }', **headers)
    assert_refused(wiped, 401, "UNAUTHENTICATED")
    [record] = call(secured, '{ points(ids: ["1"]) { payload } }', **bearer(A)).data["points"]
    assert record["payload"] == {"owner": "acme"}


def test_refusal_happens_before_the_body_is_read(secured: TestClient) -> None:
    response = secured.post("/graphql", content=b"{not json", headers={"x-request-id": "r-1"})
    assert response.status_code == 401
    assert response.json()["errors"][0]["extensions"] == {
        "code": "UNAUTHENTICATED",
        "requestId": "r-1",
    }


def test_probes_metrics_and_the_graphiql_page_need_no_credential(secured: TestClient) -> None:
    for path in ("/healthz", "/readyz", "/metrics"):
        assert secured.get(path).status_code == 200, path


def test_graphiql_is_served_without_a_credential_but_runs_nothing_without_one(
    secured: TestClient,
) -> None:
    """The page and its files hold no data; every operation the page sends is gated."""
    page = secured.get("/graphql", headers={"accept": "text/html"})
    assert page.status_code == 200
    # It says, on the page and in the headers editor, which header to fill in.
    assert "Bearer &lt;token&gt;" in page.text and "Headers editor" in page.text
    config = json.loads(re.findall(r'type="application/json">(.*?)</script>', page.text)[0])
    for headers in [config["headers"], *(tab["headers"] for tab in config["tabs"])]:
        assert json.loads(headers) == {"Authorization": "Bearer <token>"}
    scripts = re.findall(r'src="(graphiql/assets/[^"]+)"', page.text)
    assert len(scripts) == 5
    for url in scripts:
        assert secured.get(f"/{url}").status_code == 200, url
    # What GraphiQL sends: introspection and operations, as POSTs; other GETs stay gated.
    introspection = "{ __schema { queryType { name } } }"
    assert_refused(call(secured, introspection), 401, "UNAUTHENTICATED")
    assert_refused(call(secured, introspection, **bearer("not-a-token")), 401, "UNAUTHENTICATED")
    assert call(secured, introspection, **bearer(A)).data == {
        "__schema": {"queryType": {"name": "Query"}}
    }
    other = secured.get("/graphql", headers={"accept": "application/json"})
    assert other.status_code == 401
    assert other.json()["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"


def test_open_mode_is_one_tenant_with_every_scope(client: TestClient) -> None:
    create = 'mutation { createCollection(name: "x", dimension: 2) { name } }'
    assert gql(client, create).data == {"createCollection": {"name": "x"}}
    assert gql(client, "{ collections { name } }").data["collections"] == [
        {"name": "memories"},
        {"name": "x"},
    ]


def test_open_mode_says_so_at_start_up(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with TestClient(create_app(make_settings(tmp_path))):
        pass
    assert "No authentication is configured" in caplog.text
    caplog.clear()
    settings = make_settings(tmp_path / "s", auth_jwt_secret=SECRET)
    with TestClient(create_app(settings)):
        pass
    assert "No authentication is configured" not in caplog.text
    assert SECRET not in caplog.text
    assert SECRET not in repr(settings) and SECRET not in str(settings.auth.model_dump())


# Tenancy through the API


def test_tenants_reach_nothing_of_each_other(secured: TestClient) -> None:
    assert upsert(secured, A, point(1, V, owner="acme", kind="x"), point(2, V, owner="acme"))
    assert upsert(secured, B, point(1, V, owner="globex"))  # the same id in another tenant
    assert count(secured, A) == 2 and count(secured, B) == 1

    def as_b(query: str, variables: dict[str, Any] | None = None) -> Any:
        return call(secured, query, variables, **bearer(B)).data

    assert as_b('{ points(ids: ["1", "2"]) { id payload } }')["points"] == [
        {"id": "1", "payload": {"owner": "globex"}}
    ]
    assert as_b(QUERY, {"vector": V, "limit": 100})["query"][0]["payload"] == {"owner": "globex"}
    assert len(as_b(QUERY, {"vector": V, "limit": 100})["query"]) == 1
    owner_acme = {"must": [{"key": "owner", "match": {"value": "acme"}}]}
    assert as_b(COUNT, {"filter": owner_acme})["count"] == 0
    for internal in ("_p", "_id", "_u", "_u.owner"):
        flt = {"must": [{"key": internal, "match": {"any": ["acme/memories", "1", "2", "acme"]}}]}
        assert as_b(COUNT, {"filter": flt})["count"] == 0
        delete = "mutation D($f: Filter) { delete(filter: $f) { deleted } }"
        assert as_b(delete, {"f": flt}) == {"delete": {"deleted": 0}}
    scroll = as_b("{ scroll(limit: 100) { points { id payload } } }")["scroll"]["points"]
    assert scroll == [{"id": "1", "payload": {"owner": "globex"}}]
    assert as_b('mutation { delete(ids: ["2"]) { deleted } }') == {"delete": {"deleted": 0}}
    everything = {"mustNot": [{"key": "owner", "match": {"value": "nobody"}}]}
    delete_all = "mutation D($f: Filter) { delete(filter: $f) { deleted } }"
    assert as_b(delete_all, {"f": everything}) == {"delete": {"deleted": 1}}
    assert count(secured, A) == 2
    [one] = call(secured, '{ points(ids: ["1"]) { payload } }', **bearer(A)).data["points"]
    assert one["payload"] == {"owner": "acme", "kind": "x"}


def test_collections_are_per_tenant_through_the_api(secured: TestClient) -> None:
    create = 'mutation { createCollection(name: "docs", dimension: 4) { name } }'
    assert call(secured, create, **bearer(A)).data == {"createCollection": {"name": "docs"}}
    assert upsert_into(secured, A, "docs").data == {"upsert": {"upserted": 1}}
    names = "{ collections { name } }"
    assert call(secured, names, **bearer(B)).data == {"collections": [{"name": "memories"}]}
    for attack in (
        'query { count(collection: "docs") }',
        'query { points(ids: ["1"], collection: "docs") { id } }',
        'query { scroll(collection: "docs") { nextCursor } }',
        'mutation { delete(ids: ["1"], collection: "docs") { deleted } }',
        'mutation { deleteCollection(name: "docs") }',
    ):
        call(secured, attack, **bearer(B)).assert_error("NOT_FOUND")
    assert upsert_into(secured, B, "docs").codes == ["NOT_FOUND"]
    assert count(secured, A, "docs") == 1
    # b's own `docs` is another collection.
    assert call(secured, create, **bearer(B)).data == {"createCollection": {"name": "docs"}}
    assert count(secured, B, "docs") == 0 and count(secured, A, "docs") == 1


def upsert_into(client: TestClient, credential: str, collection: str) -> GraphQLResponse:
    return call(
        client,
        UPSERT,
        {"points": [point(1, V, owner="x")], "collection": collection},
        **bearer(credential),
    )


# Scopes


READ_ONLY = token("acme", "read", aud="memory")
WRITER = token("acme", "read write", aud="memory")


def test_a_read_only_credential_cannot_write(secured: TestClient) -> None:
    assert upsert(secured, A, point(1, V, v=1)).data
    for attack in (
        UPSERT,
        'mutation { delete(ids: ["1"]) { deleted } }',
        'mutation { createCollection(name: "x", dimension: 2) { name } }',
        "mutation { ...F } fragment F on Mutation { upsert(points: []) { upserted } }",
    ):
        refused = call(secured, attack, {"points": [point(1, V, v=2)]}, **bearer(READ_ONLY))
        assert_refused(refused, 403, "FORBIDDEN")
    assert count(secured, READ_ONLY) == 1
    [one] = call(secured, '{ points(ids: ["1"]) { payload } }', **bearer(READ_ONLY)).data["points"]
    assert one["payload"] == {"v": 1}
    assert call(secured, "{ health { status } }", **bearer(READ_ONLY)).data


def test_a_request_needing_a_missing_scope_is_refused_whole(secured: TestClient) -> None:
    both = """mutation M($points: [PointInput!]!) {
      upsert(points: $points) { upserted }
      createCollection(name: "other", dimension: 2) { name }
    }"""
    refused = call(secured, both, {"points": [point(9, V)]}, **bearer(WRITER))
    assert_refused(refused, 403, "FORBIDDEN")
    assert "admin" in refused.body["errors"][0]["message"]
    assert count(secured, A) == 0  # the upsert before it did not run
    no_write = token("acme", "admin", aud="memory")
    assert_refused(upsert(secured, no_write, point(1, V)), 403, "FORBIDDEN")
    assert_refused(call(secured, COUNT, **bearer(no_write)), 403, "FORBIDDEN")


def b64url(data: bytes) -> bytes:
    return base64.urlsafe_b64encode(data).rstrip(b"=")


def sign_hs256(header: bytes, claims: bytes, secret: bytes) -> str:
    """A token of any header and claims bytes, with a valid HS256 signature: by hand,
    since PyJWT refuses to sign odd headers, or HS256 with a public key."""
    signing = b64url(header) + b"." + b64url(claims)
    signature = hmac.new(secret, signing, hashlib.sha256).digest()
    return (signing + b"." + b64url(signature)).decode()


def forge_hs256(claims: dict[str, Any], secret: bytes) -> str:
    return sign_hs256(b'{"alg":"HS256","typ":"JWT"}', json.dumps(claims).encode(), secret)


def test_asymmetric_tokens_and_algorithm_confusion(tmp_path: Path) -> None:
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    rsa_public = rsa_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    (tmp_path / "rsa.pem").write_bytes(rsa_public)
    ec_key = ec.generate_private_key(ec.SECP256R1())
    jwk = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(ec_key.public_key()))
    (tmp_path / "jwks.json").write_text(
        json.dumps({"keys": [{**jwk, "kid": "k1", "alg": "ES256"}]})
    )
    settings = make_settings(
        tmp_path,
        auth_jwt_public_key_file=tmp_path / "rsa.pem",
        auth_jwks_file=tmp_path / "jwks.json",
        auth_jwt_issuer="https://idp.example",
    )
    with TestClient(create_app(settings)) as client:
        good_rsa = token(key=rsa_key, algorithm="RS256", iss="https://idp.example")
        good_ec = token(
            key=ec_key, algorithm="ES256", iss="https://idp.example", headers={"kid": "k1"}
        )
        assert count(client, good_rsa) == 0 and count(client, good_ec) == 0
        # HS256 signed with the public key as the secret: the classic confusion.
        confused = forge_hs256(
            {
                "tenant": "acme",
                "scope": "read write",
                "exp": int(time.time()) + 300,
                "iss": "https://idp.example",
            },
            rsa_public,
        )
        wrong_issuer = token(key=rsa_key, algorithm="RS256", iss="https://evil.example")
        no_issuer = token(key=rsa_key, algorithm="RS256")
        for bad in (confused, wrong_issuer, no_issuer, token(iss="https://idp.example")):
            assert_refused(upsert(client, bad, point(1, V)), 401, "UNAUTHENTICATED")
        assert count(client, good_rsa) == 0


# Malformed credentials of every shape: a Principal or Unauthenticated, nothing else.

ISSUER = "https://idp.example"
FUZZ = settings(max_examples=300, deadline=None, database=None)
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats()
    | st.text(max_size=12)
    | st.sampled_from(["1", "HS256", "memory", ISSUER, "acme", "read write", "", "0"]),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=6,
)
GOOD_CLAIMS: dict[str, Any] = {
    "tenant": "acme",
    "scope": "read",
    "aud": "memory",
    "iss": ISSUER,
    "sub": "someone",
}
CLAIMS = ("tenant", "scope", "exp", "nbf", "iat", "iss", "aud", "sub")


@pytest.fixture(scope="module")
def authenticator(tmp_path_factory: pytest.TempPathFactory) -> auth.Authenticator:
    """Every kind of credential enabled at once: HS256, a public key, a JWKS, API keys."""
    base = tmp_path_factory.mktemp("auth")
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    (base / "rsa.pem").write_bytes(
        rsa_key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    jwk = json.loads(
        jwt.algorithms.ECAlgorithm.to_jwk(ec.generate_private_key(ec.SECP256R1()).public_key())
    )
    (base / "jwks.json").write_text(json.dumps({"keys": [{**jwk, "kid": "k1", "alg": "ES256"}]}))
    ApiKeyFile(base / "keys.json").create("acme", ["read"])
    return auth.Authenticator(
        Settings(
            auth_jwt_secret=SECRET,
            auth_jwt_public_key_file=base / "rsa.pem",
            auth_jwks_file=base / "jwks.json",
            auth_api_keys_file=base / "keys.json",
            auth_jwt_audience="memory",
            auth_jwt_issuer=ISSUER,
        )
    )


def outcome(authenticator: auth.Authenticator, header: str) -> Principal | None:
    """The principal, or None for Unauthenticated; any other exception fails the test."""
    try:
        return authenticator.authenticate(header)
    except Unauthenticated:
        return None


def as_header(raw: bytes) -> str:
    return raw.decode("latin-1")  # as Starlette hands a header value over


headers_of_any_shape = st.fixed_dictionaries(
    {},
    optional={
        "alg": st.sampled_from(["HS256", "RS256", "ES256", "none"]) | json_values,
        "kid": st.just("k1") | json_values,
        "typ": json_values,
        "crit": json_values,
        "b64": json_values,
        "jku": json_values,
    },
).map(lambda h: json.dumps(h).encode()) | json_values.map(lambda v: json.dumps(v).encode())


@FUZZ
@given(header=headers_of_any_shape, claims=json_values.map(lambda v: json.dumps(v).encode()))
def test_signed_tokens_with_any_header_and_claims_json_are_refused_cleanly(
    authenticator: auth.Authenticator, header: bytes, claims: bytes
) -> None:
    assert outcome(authenticator, "Bearer " + sign_hs256(header, claims, SECRET.encode())) is None


@FUZZ
@given(
    wrong=st.dictionaries(st.sampled_from(CLAIMS), json_values, min_size=1),
    missing=st.sets(st.sampled_from(CLAIMS)),
    checked=st.booleans(),
)
def test_every_claim_of_the_wrong_type_is_unauthenticated(
    authenticator: auth.Authenticator, wrong: dict[str, Any], missing: set[str], checked: bool
) -> None:
    """With issuer and audience configured, and with neither (then PyJWT looks at neither,
    and a token without `aud` is the valid one)."""
    if not checked:
        authenticator = auth.Authenticator(Settings(auth_jwt_secret=SECRET))
    now = int(time.time())
    claims: dict[str, Any] = {**GOOD_CLAIMS, "exp": now + 300, "iat": now, "nbf": now - 1}
    claims.update(wrong)
    if not checked:
        wrong.pop("aud", None)
        claims.pop("aud")
    for name in missing:
        claims.pop(name, None)
    header = b'{"alg":"HS256","typ":"JWT"}'
    principal = outcome(
        authenticator, "Bearer " + sign_hs256(header, json.dumps(claims).encode(), SECRET.encode())
    )
    if principal is not None:  # accepted: then every claim it used had its type
        assert isinstance(claims["tenant"], str) and principal.tenant == claims["tenant"]
        assert isinstance(claims.get("scope", ""), str)
        assert isinstance(claims.get("sub", ""), str)
        assert isinstance(claims.get("iss", ""), str)
        if checked:
            assert claims["iss"] == ISSUER
            assert claims["aud"] == "memory" or (
                isinstance(claims["aud"], list) and "memory" in claims["aud"]
            )
        for name in ("exp", "nbf", "iat"):
            assert name not in claims or type(claims[name]) in (int, float)


segments = (
    st.binary(max_size=40).map(b64url)
    | st.binary(max_size=40)
    | st.text(max_size=20).map(str.encode)
)


@FUZZ
@given(
    scheme=st.sampled_from(["Bearer ", "bearer ", "Bearer  ", "Basic ", "", "Bearer\t"]),
    credential=st.one_of(
        st.lists(segments, max_size=5).map(b".".join),
        segments.map(lambda s: b"gm_" + s),
        st.tuples(segments, segments).map(lambda p: b"gm_" + p[0] + b"_" + p[1]),
        st.binary(max_size=60),
        st.integers(min_value=1, max_value=200_000).map(lambda n: b"e30." * n),
    ),
)
def test_malformed_credentials_of_any_shape_are_unauthenticated(
    authenticator: auth.Authenticator, scheme: str, credential: bytes
) -> None:
    assert outcome(authenticator, scheme + as_header(credential)) is None


MALFORMED = {
    "alg a list": sign_hs256(b'{"alg":["HS256"]}', b"{}", SECRET.encode()),
    "alg an object": sign_hs256(b'{"alg":{"HS256":1}}', b"{}", SECRET.encode()),
    "header an array": sign_hs256(b"[1]", b"{}", SECRET.encode()),
    "claims an array": sign_hs256(b'{"alg":"HS256"}', b"[1]", SECRET.encode()),
    "nbf a boolean": forge_hs256(
        {"tenant": "acme", "aud": "memory", "exp": int(time.time()) + 300, "nbf": True},
        SECRET.encode(),
    ),
    "sub an object": forge_hs256(
        {"tenant": "acme", "aud": "memory", "exp": int(time.time()) + 300, "sub": {"a": 1}},
        SECRET.encode(),
    ),
    "huge": "e30." * 4000,
    "non-ascii": "é.é.é",
    "non-ascii api key": "gm_é_é",
    "odd api key": "gm_\u00e9_",
}


def test_malformed_credentials_are_401_json_and_counted(secured: TestClient) -> None:
    for index, (name, credential) in enumerate(MALFORMED.items()):
        before = REGISTRY.get_sample_value("auth_failures_total", {"code": "UNAUTHENTICATED"})
        response = secured.post(
            "/graphql",
            json={"query": COUNT},
            # Bytes, so a non-ASCII credential goes out as its UTF-8 bytes.
            headers={
                b"authorization": f"Bearer {credential}".encode(),
                b"x-request-id": f"r-{index}".encode(),
            },
        )
        assert response.status_code == 401, name
        assert response.json()["errors"][0]["extensions"] == {
            "code": "UNAUTHENTICATED",
            "requestId": f"r-{index}",
        }
        after = REGISTRY.get_sample_value("auth_failures_total", {"code": "UNAUTHENTICATED"})
        assert (after or 0) == (before or 0) + 1, name


def test_a_token_without_a_scope_claim_is_unauthenticated(secured: TestClient) -> None:
    """The contract's claims are tenant, scope and exp; anything else is UNAUTHENTICATED.
    A scope the server does not know is ignored (an identity provider's token may carry
    other services' scopes): with none it knows, a token may do nothing (FORBIDDEN)."""
    claims = {"tenant": "acme", "aud": "memory", "exp": int(time.time()) + 300}
    no_scope = jwt.encode(claims, SECRET, algorithm="HS256")
    assert_refused(call(secured, COUNT, {"c": None}, **bearer(no_scope)), 401, "UNAUTHENTICATED")
    for scope in ("", "superuser"):
        other = token("acme", scope, aud="memory")
        assert_refused(call(secured, COUNT, {"c": None}, **bearer(other)), 403, "FORBIDDEN")
    assert count(secured, token("acme", "superuser read", aud="memory")) == 0


def test_api_keys_work_until_revoked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(keys_module, "KEYS_RECHECK_SECONDS", 0.0)
    keys_file = tmp_path / "keys.json"
    keys = ApiKeyFile(keys_file)
    reader, reader_key = keys.create("acme", ["read"])
    writer, _ = keys.create("acme", ["read", "write"])
    stored = keys_file.read_text()
    secret = reader.split("_", 2)[2]  # gm_<hex id>_<secret>; a secret may hold "_" itself
    assert len(secret) >= 40 and secret not in stored and reader_key.hash in stored
    settings = make_settings(tmp_path, auth_api_keys_file=keys_file)
    with TestClient(create_app(settings)) as client:
        assert upsert(client, writer, point(1, V)).data == {"upsert": {"upserted": 1}}
        assert count(client, reader) == 1
        assert_refused(upsert(client, reader, point(2, V)), 403, "FORBIDDEN")
        assert_refused(upsert(client, writer[:-2] + "xx", point(2, V)), 401, "UNAUTHENTICATED")
        assert_refused(call(client, COUNT, **bearer(A)), 401, "UNAUTHENTICATED")  # no JWTs
        assert keys.revoke(reader_key.id)
        assert_refused(call(client, COUNT, **bearer(reader)), 401, "UNAUTHENTICATED")
        assert count(client, writer) == 1


def test_keys_cli_prints_the_key_once_and_lists_without_secrets(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from graph.cli import main

    path = str(tmp_path / "keys.json")
    main(["keys", "--file", path, "create", "--tenant", "acme", "--scopes", "read,write"])
    credential = capsys.readouterr().out.strip()
    assert credential.startswith("gm_")
    main(["keys", "--file", path, "list"])
    listed = capsys.readouterr().out
    key_id = credential.split("_")[1]
    assert listed.startswith(f"{key_id}\tacme\tread,write\t")
    assert credential.split("_", 2)[2] not in listed
    main(["keys", "--file", path, "revoke", key_id])
    main(["keys", "--file", path, "list"])
    assert capsys.readouterr().out == ""
    with pytest.raises(SystemExit):
        main(["keys", "--file", path, "create", "--tenant", "acme", "--scopes", "root"])


@pytest.mark.parametrize(
    ("overrides", "error"),
    [
        ({"auth_jwt_secret": "short"}, AuthConfigError),
        ({"auth_jwt_public_key_file": Path("/nonexistent/key.pem")}, AuthConfigError),
        ({"auth_jwks_file": Path("/nonexistent/jwks.json")}, AuthConfigError),
        ({"rate_limit": "lots"}, RateLimitConfigError),
        ({"rate_limit": "5/second", "rate_limit_storage_url": "http://x"}, RateLimitConfigError),
    ],
)
def test_bad_security_settings_stop_the_start(
    tmp_path: Path, overrides: dict[str, Any], error: type[Exception]
) -> None:
    with pytest.raises(error):
        create_app(make_settings(tmp_path, **overrides))


def test_a_private_key_or_garbage_as_public_key_stops_the_start(tmp_path: Path) -> None:
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = private.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    for content in (pem, b"not a key"):
        (tmp_path / "k.pem").write_bytes(content)
        with pytest.raises(AuthConfigError, match="AUTH_JWT_PUBLIC_KEY_FILE"):
            create_app(make_settings(tmp_path, auth_jwt_public_key_file=tmp_path / "k.pem"))


# Rate limits


def test_past_the_limit_a_tenant_gets_429_and_another_does_not(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, auth_jwt_secret=SECRET, rate_limit="5/minute")
    acme, globex = token("acme"), token("globex")
    before = REGISTRY.get_sample_value("rate_limited_requests_total", {"tenant": "acme"})
    with TestClient(create_app(settings)) as client:
        for _ in range(5):
            assert upsert(client, acme, point(1, V)).status == 200
        limited = upsert(client, acme, point(2, V))
        assert_refused(limited, 429, "RATE_LIMITED")
        assert 1 <= int(limited.http.headers["retry-after"]) <= 60
        assert count(client, globex) == 0  # globex has its own budget
        after = REGISTRY.get_sample_value("rate_limited_requests_total", {"tenant": "acme"})
        assert after == (before or 0) + 1
    with TestClient(create_app(make_settings(tmp_path / "again"))) as client:
        assert count_points_open(client) == 0


def count_points_open(client: TestClient) -> int:
    result: int = gql(client, COUNT).data["count"]
    return result


# Hardening


def test_introspection_off_hides_the_schema_and_suggestions(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, graphql_introspection=False)
    with TestClient(create_app(settings)) as client:
        gql(client, "{ __schema { types { name } } }").assert_error("GRAPHQL_VALIDATION_FAILED")
        gql(client, '{ __type(name: "Query") { name } }').assert_error("GRAPHQL_VALIDATION_FAILED")
        typo = gql(client, "{ cuont }").assert_error("GRAPHQL_VALIDATION_FAILED")
        assert "Did you mean" not in typo["message"] and "count" not in typo["message"]
        enum = gql(
            client,
            'mutation { createCollection(name: "x", dimension: 2, distance: DOTT) { name } }',
        )
        assert "Did you mean" not in enum.body["errors"][0]["message"]
        assert gql(client, "{ __typename }").data == {"__typename": "Query"}
    with TestClient(create_app(make_settings(tmp_path / "on"))) as client:
        assert "Did you mean" in gql(client, "{ cuont }").body["errors"][0]["message"]


def test_cors_allows_only_the_listed_origins(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, cors_allow_origins="https://app.example")
    with TestClient(create_app(settings)) as client:
        preflight = {
            "access-control-request-method": "POST",
            "access-control-request-headers": "authorization, content-type",
        }
        ok = client.options("/graphql", headers={"origin": "https://app.example", **preflight})
        assert ok.headers["access-control-allow-origin"] == "https://app.example"
        other = client.options("/graphql", headers={"origin": "https://evil.example", **preflight})
        assert "access-control-allow-origin" not in other.headers
        # A form post (CSRF) is refused whatever its origin.
        form = client.post(
            "/graphql",
            content=b"query={count}",
            headers={"content-type": "application/x-www-form-urlencoded"},
        )
        assert form.status_code == 415
    with TestClient(create_app(make_settings(tmp_path / "none"))) as client:
        no_cors = client.options("/graphql", headers={"origin": "https://app.example", **preflight})
        assert "access-control-allow-origin" not in no_cors.headers


def test_settings_hide_secrets() -> None:
    settings = Settings(auth_jwt_secret=SECRET, rate_limit_storage_url="redis://:pw@h:1/0")
    assert SECRET not in repr(settings) and "pw@" not in repr(settings)


def test_a_key_file_that_does_not_exist_yet_is_said_at_start_up(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Every request is then 401 until `graph keys create` makes the file: the operator
    is told why, once, rather than left to guess."""
    missing = tmp_path / "keys.json"
    with caplog.at_level(logging.WARNING, logger="graph.security.auth"):
        auth.Authenticator(Settings(auth_api_keys_file=missing))
    assert [r.getMessage() for r in caplog.records] == [
        f"AUTH_API_KEYS_FILE {missing} does not exist: no API key is valid until "
        "`graph keys create` makes one"
    ]
    caplog.clear()
    ApiKeyFile(missing).create("acme", ["read"])
    with caplog.at_level(logging.WARNING, logger="graph.security.auth"):
        auth.Authenticator(Settings(auth_api_keys_file=missing))
    assert caplog.records == []


@pytest.mark.parametrize("audience", [[], "memory", ["memory"], ""])
def test_a_token_with_an_audience_is_refused_when_none_is_configured(audience: Any) -> None:
    """PyJWT refused a token's `aud` when no audience is configured, but let an empty
    one (`[]`, `""`) by: the documented rule has no such exception."""
    authenticator = auth.Authenticator(Settings(auth_jwt_secret=SECRET))
    assert outcome(authenticator, "Bearer " + token(aud=audience)) is None
    assert outcome(authenticator, "Bearer " + token()) is not None
