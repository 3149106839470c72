"""GraphiQL, served from the package: the page, and the browser files it loads.

The files (graphiql, react, react-dom, the explorer plugin; graphiql.lock.json lists them
with their versions and sha256, scripts/refresh_graphiql.py rewrites them) are served under
/graphiql/assets/<hash>/<file>, so a browser may cache each for good and a new version is a
new URL. The page names no other host, so GraphiQL works where no CDN is reachable. It holds
no data and is served without a credential; every operation it sends needs one.

The example tabs use text memories only, so a newcomer's first remember and recall need no
vectors and no VECTOR_SIZE change. GraphiQL shows them when the browser has no tabs of its
own saved yet.
"""

from __future__ import annotations

import gzip
import hashlib
import html
import json
from pathlib import Path
from string import Template
from typing import Any

from anyio import to_thread
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response

from graph.errors import ErrorCode
from graph.http.middleware import request_id_of
from graph.http.responses import error_response

STATIC = Path(__file__).parent / "static" / "graphiql"
LOCK = STATIC / "graphiql.lock.json"
# The page's own script and style, beside the locked files.
OWN_FILES = ("page.js", "page.css")
ASSETS_PATH = "/graphiql/assets"
IMMUTABLE = "public, max-age=31536000, immutable"
MEDIA_TYPES = {".js": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8"}
# The page runs only this server's scripts and talks only to it. GraphiQL sets inline styles
# and its stylesheet embeds fonts and icons as data: URLs.
PAGE_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; font-src 'self' data:; connect-src 'self'; "
    "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
AUTH_HEADERS = '{\n  "Authorization": "Bearer <token>"\n}'
AUTH_NOTE = (
    '<p id="auth-note">This server needs a credential: put '
    "<code>{&quot;Authorization&quot;: &quot;Bearer &lt;token&gt;&quot;}</code> "
    "in the Headers editor below (a JWT or an API key, README: Security).</p>"
)

EXAMPLE_TABS: list[dict[str, str]] = [
    {
        "query": (
            "# Store memories: text, with optional metadata and expiry.\n"
            "mutation Remember {\n"
            "  remember(memories: [\n"
            '    {text: "Ada likes green tea in the morning", metadata: {user: "ada"}}\n'
            '    {text: "Ada flies to Paris on Friday", metadata: {user: "ada"}, '
            "ttlSeconds: 604800}\n"
            "  ]) { ids }\n"
            "}\n"
        )
    },
    {
        "query": (
            "# Recall by keywords: no embedding model needed.\n"
            "query Recall {\n"
            '  recall(text: "green tea", limit: 5,\n'
            '         filter: {must: [{key: "user", match: {value: "ada"}}]}) {\n'
            "    id text score metadata createdAt\n"
            "  }\n"
            "}\n"
        )
    },
    {"query": "query Health {\n  health { status version backend }\n}\n"},
]


def locked_files() -> list[dict[str, str]]:
    """graphiql.lock.json: name, version, file (under STATIC) and sha256 of each file."""
    entries: list[dict[str, str]] = json.loads(LOCK.read_text())
    return entries


def media_type(name: str) -> str:
    return MEDIA_TYPES.get(Path(name).suffix, "text/plain; charset=utf-8")


def script_json(value: Any) -> str:
    """JSON to place inside a <script> element: "<" escaped, so no text can close it."""
    return json.dumps(value).replace("<", "\\u003c")


class GraphiQL:
    """The page and its files, read once at start-up and served from memory."""

    def __init__(self, credential_required: bool) -> None:
        # "<hash>/<file>" -> (body, media type); nothing else is ever served.
        self.assets: dict[str, tuple[bytes, str]] = {}
        # Each file gzipped when a browser first asks (graphiql.min.js: 3.5 MB, ~0.9 MB).
        self.gzipped: dict[str, bytes] = {}
        urls: dict[str, str] = {}
        for name in [entry["file"] for entry in locked_files()] + list(OWN_FILES):
            body = (STATIC / name).read_bytes()
            key = f"{hashlib.sha256(body).hexdigest()[:16]}/{name}"
            self.assets[key] = (body, media_type(name))
            # Relative to the page (/graphql), so a proxy may serve both under a prefix.
            urls[name] = f"{ASSETS_PATH.lstrip('/')}/{key}"
        config: dict[str, Any] = {"tabs": EXAMPLE_TABS}
        if credential_required:
            config["headers"] = AUTH_HEADERS
            config["tabs"] = [{**tab, "headers": AUTH_HEADERS} for tab in EXAMPLE_TABS]
        self.html = Template((STATIC / "page.html").read_text()).substitute(
            graphiql_css=html.escape(urls["graphiql/graphiql.min.css"]),
            explorer_css=html.escape(urls["plugin-explorer/style.css"]),
            page_css=html.escape(urls["page.css"]),
            react=html.escape(urls["react/react.production.min.js"]),
            react_dom=html.escape(urls["react-dom/react-dom.production.min.js"]),
            graphiql_js=html.escape(urls["graphiql/graphiql.min.js"]),
            explorer_js=html.escape(urls["plugin-explorer/index.umd.js"]),
            page_js=html.escape(urls["page.js"]),
            auth_note=AUTH_NOTE if credential_required else "",
            config=script_json(config),
        )

    def page(self) -> Response:
        return HTMLResponse(
            self.html,
            headers={
                "Cache-Control": "no-cache",  # it names the current files' URLs
                "Content-Security-Policy": PAGE_POLICY,
                "X-Content-Type-Options": "nosniff",
                "Referrer-Policy": "no-referrer",
            },
        )

    async def asset(self, request: Request) -> Response:
        key = f"{request.path_params['digest']}/{request.path_params['file']}"
        found = self.assets.get(key)
        if found is None:
            return error_response(
                404, ErrorCode.NOT_FOUND, "No such GraphiQL file", request_id_of(request.scope)
            )
        body, media = found
        headers = {
            "Cache-Control": IMMUTABLE,
            "X-Content-Type-Options": "nosniff",
            "Vary": "Accept-Encoding",
        }
        if accepts_gzip(request.headers.get("accept-encoding", "")):
            if key not in self.gzipped:  # once a file: off the event loop, it takes a while
                self.gzipped[key] = await to_thread.run_sync(gzip_bytes, body)
            body = self.gzipped[key]
            headers["Content-Encoding"] = "gzip"
        return Response(body, media_type=media, headers=headers)


def gzip_bytes(body: bytes) -> bytes:
    return gzip.compress(body, compresslevel=9, mtime=0)


def accepts_gzip(accept_encoding: str) -> bool:
    """Whether an Accept-Encoding header takes gzip (by name or "*", not with q=0)."""
    for part in accept_encoding.split(","):
        name, _, params = part.partition(";")
        if name.strip().lower() in ("gzip", "*"):
            quality = params.replace(" ", "").lower().removeprefix("q=")
            try:
                return float(quality or 1) > 0
            except ValueError:
                return False
    return False
