"""The GraphQL-over-HTTP rules a request meets before the GraphQL layer sees it.

Which media type the response is sent as (the Accept header), which request bodies are
read, the CSRF guard on GET, and the request parameters from a JSON body or a query
string. Headers are parsed by werkzeug, which follows RFC 9110 for q-values and
parameters. docs/http.md describes the behaviour.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import orjson
from starlette.datastructures import QueryParams
from werkzeug.datastructures import MIMEAccept
from werkzeug.http import parse_accept_header, parse_options_header

JSON = "application/json"
GRAPHQL_RESPONSE_JSON = "application/graphql-response+json"
# Each type bare and with the one charset served: `Accept: application/json` and
# `application/json; charset=utf-8` match, `application/json; charset=utf-16` does not.
# When a client accepts both types equally, application/json comes first: what a client
# written before application/graphql-response+json existed expects.
_OFFERS = (
    JSON,
    f"{JSON}; charset=utf-8",
    GRAPHQL_RESPONSE_JSON,
    f"{GRAPHQL_RESPONSE_JSON}; charset=utf-8",
)
# Accept headers seen are few (one per client library); longer ones are not kept.
_CACHED_ACCEPT_CHARS = 256
# A request carrying any of these (non-empty) cannot come from a plain HTML form or a
# <script>/<img> tag: a browser sends it cross-origin only after a CORS preflight.
PREFLIGHT_HEADERS = (
    "graphql-require-preflight",
    "apollo-require-preflight",
    "x-apollo-operation-name",
)
# The Content-Types a browser sends cross-origin without a preflight (the Fetch standard).
_SIMPLE_CONTENT_TYPES = frozenset(
    {"application/x-www-form-urlencoded", "multipart/form-data", "text/plain"}
)


@dataclass(frozen=True, slots=True)
class GraphQLParams:
    query: str
    variables: dict[str, Any] | None
    operation_name: str | None


@dataclass(frozen=True, slots=True)
class Malformed:
    """Not a request we serve: answered with this status and a BAD_REQUEST error."""

    status: int
    message: str
    headers: dict[str, str] | None = None


def response_media_type(accept: str | None) -> str | None:
    """The media type to answer with, or None when the client accepts neither (406).
    No Accept header counts as application/json, which every client understands (the
    spec's rule for clients that predate application/graphql-response+json)."""
    if accept is None or not accept.strip():
        return JSON
    if len(accept) > _CACHED_ACCEPT_CHARS:
        return _negotiate(accept)
    return _negotiate_cached(accept)


def _negotiate(accept: str) -> str | None:
    best = parse_accept_header(accept, MIMEAccept).best_match(_OFFERS)
    return None if best is None else best.split(";", 1)[0]


_negotiate_cached = lru_cache(maxsize=256)(_negotiate)


def content_type_refusal(content_type: str | None) -> Malformed | None:
    """A POST body is read only as JSON in UTF-8 (the spec's encoding, assumed when no
    charset is given): anything else is 415, and so is a POST with no Content-Type."""
    mimetype, options = parse_options_header(content_type)
    if mimetype == JSON and options.get("charset", "utf-8").lower() == "utf-8":
        return None
    return Malformed(415, "Send GraphQL requests as POST with Content-Type: application/json")


def csrf_refusal(headers: Mapping[str, str]) -> Malformed | None:
    """Apollo Server's CSRF prevention: a GET is served only when a browser could not have
    sent it cross-origin without a preflight, that is with a preflight header or a
    Content-Type other than the simple ones."""
    if any(headers.get(name, "").strip() for name in PREFLIGHT_HEADERS):
        return None
    content_type = headers.get("content-type")
    if content_type is not None:
        mimetype, _ = parse_options_header(content_type)
        if mimetype and mimetype not in _SIMPLE_CONTENT_TYPES:
            return None
    return Malformed(
        400,
        "This GET request may be a cross-site request forgery: send it with a "
        "non-empty `graphql-require-preflight` header (or `apollo-require-preflight`, "
        "`x-apollo-operation-name`), or as a POST with Content-Type: application/json",
    )


def body_params(body: bytes) -> GraphQLParams | Malformed:
    """The parameters of a POST's JSON body."""
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError as error:
        return _not_json("The request body", error)
    if isinstance(data, list):
        return Malformed(400, "Batched requests are not supported")
    if not isinstance(data, dict):
        return Malformed(400, "The request body must be a JSON object")
    return _params(
        data.get("query"), data.get("variables"), data.get("operationName"), data.get("extensions")
    )


# orjson refuses JSON nested deeper than this; its message is the only sign of it.
MAX_JSON_DEPTH = 1024


def _not_json(what: str, error: orjson.JSONDecodeError) -> Malformed:
    if str(error).startswith("depth limit exceeded"):
        return Malformed(400, f"{what} nests JSON deeper than {MAX_JSON_DEPTH} levels")
    return Malformed(400, f"{what} is not valid JSON")


def query_string_params(params: QueryParams) -> GraphQLParams | Malformed:
    """The parameters of a GET's query string: `variables` and `extensions` as JSON."""
    values: dict[str, Any] = {}
    for name in ("query", "variables", "operationName", "extensions"):
        given = params.getlist(name)
        if len(given) > 1:
            return Malformed(400, f"`{name}` is given more than once")
        values[name] = given[0] if given else None
    for name in ("variables", "extensions"):
        if values[name] is not None:
            try:
                values[name] = orjson.loads(values[name])
            except orjson.JSONDecodeError as error:
                return _not_json(f"`{name}`", error)
    return _params(
        values["query"], values["variables"], values["operationName"], values["extensions"]
    )


def _params(
    query: object, variables: object, operation_name: object, extensions: object
) -> GraphQLParams | Malformed:
    if not isinstance(query, str) or not query.strip():
        return Malformed(400, "The request has no GraphQL query string")
    if not isinstance(variables, dict | None):
        return Malformed(400, "`variables` must be a JSON object")
    if not isinstance(operation_name, str | None):
        return Malformed(400, "`operationName` must be a string")
    if not isinstance(extensions, dict | None):
        return Malformed(400, "`extensions` must be a JSON object")
    return GraphQLParams(query, variables, operation_name)
