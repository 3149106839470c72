"""GraphiQL is served from the package: the page names no other host, its files are the
locked ones, cached for good, and nothing else is served; it opens on example tabs that run
as pasted, with text memories only."""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from graph.app import create_app
from graph.http.graphiql import EXAMPLE_TABS, OWN_FILES, STATIC, locked_files
from scripts.refresh_graphiql import LICENSES, PACKAGES
from tests.conftest import make_settings
from tests.helpers import gql

ROOT = Path(__file__).resolve().parents[1]
PAGE = {"accept": "text/html"}


def page_config(html: str) -> dict[str, object]:
    found = re.search(r'<script id="graphiql-config" type="application/json">(.*?)</script>', html)
    assert found is not None, html
    config: dict[str, object] = json.loads(found.group(1))
    return config


def asset_urls(html: str) -> list[str]:
    return re.findall(r'(?:src|href)="([^"]+)"', html)


def test_every_locked_file_is_there_with_its_hash() -> None:
    entries = locked_files()
    for entry in entries:
        body = (STATIC / entry["file"]).read_bytes()
        assert hashlib.sha256(body).hexdigest() == entry["sha256"], entry["file"]
    # The lock holds what scripts/refresh_graphiql.py pins, and nothing else.
    pinned = {
        (p.name, p.version, f"{p.folder}/{name}")
        for p in (*PACKAGES, *LICENSES)
        for name in p.files.values()
    }
    assert {(e["name"], e["version"], e["file"]) for e in entries} == pinned
    # Each package's licence sits beside its files.
    folders = {Path(e["file"]).parent for e in entries}
    assert folders == {Path(p.folder) for p in PACKAGES}
    for folder in folders:
        assert (STATIC / folder / "LICENSE").read_text().startswith("MIT License"), folder
    on_disk = {str(p.relative_to(STATIC)) for p in STATIC.rglob("*") if p.is_file()}
    ours = {*OWN_FILES, "page.html", "graphiql.lock.json"}
    assert on_disk == {e["file"] for e in entries} | ours


@pytest.mark.slow
def test_a_plain_install_carries_every_file(tmp_path: Path) -> None:
    """`pip install .` (not only -e): the wheel holds the page and every locked file."""
    source = tmp_path / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source)
    shutil.copytree(ROOT / "graph", source / "graph", ignore=shutil.ignore_patterns("__pycache__"))
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(tmp_path), str(source)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert built.returncode == 0, built.stderr
    [wheel] = tmp_path.glob("*.whl")
    with zipfile.ZipFile(wheel) as archive:
        shipped = {n for n in archive.namelist() if n.startswith("graph/http/static/")}
    expected = {
        f"graph/http/static/graphiql/{p.relative_to(STATIC)}"
        for p in STATIC.rglob("*")
        if p.is_file()
    }
    assert shipped == expected


def test_the_page_loads_only_this_servers_files(client: TestClient) -> None:
    page = client.get("/graphql", headers=PAGE)
    assert page.status_code == 200
    assert page.headers["content-type"] == "text/html; charset=utf-8"
    assert page.headers["cache-control"] == "no-cache"  # it names the files' current URLs
    assert re.findall(r"https?://", page.text) == []  # no other host, no absolute URL
    policy = page.headers["content-security-policy"]
    assert "script-src 'self';" in policy and "connect-src 'self';" in policy
    urls = asset_urls(page.text)
    served = {url.split("/", 3)[3] for url in urls if url.startswith("graphiql/assets/")}
    # Every locked script and stylesheet (licences are not loaded by the page), and ours.
    loaded = {e["file"] for e in locked_files() if not Path(e["file"]).name.startswith("LICENSE")}
    assert served == loaded | set(OWN_FILES)
    for url in urls:
        if url.startswith("data:"):
            continue
        asset = client.get(f"/{url}")  # relative to /graphql
        assert asset.status_code == 200, url
        assert asset.headers["cache-control"] == "public, max-age=31536000, immutable"
        assert asset.headers["x-content-type-options"] == "nosniff"
        kind = "text/javascript" if url.endswith(".js") else "text/css"
        assert asset.headers["content-type"] == f"{kind}; charset=utf-8", url
        assert asset.content == (STATIC / url.split("/", 3)[3]).read_bytes()


def test_a_files_url_carries_its_hash(client: TestClient) -> None:
    """A refreshed file gets a new URL, so a browser's cached copy is never served stale."""
    [url] = [u for u in asset_urls(client.get("/graphql", headers=PAGE).text) if "react/" in u]
    _, _, digest, name = url.split("/", 3)
    assert digest == hashlib.sha256((STATIC / name).read_bytes()).hexdigest()[:16]
    licence = client.get(f"/graphiql/assets/{_digest('react/LICENSE')}/react/LICENSE")
    assert licence.status_code == 200
    assert licence.headers["content-type"] == "text/plain; charset=utf-8"
    stale = client.get(f"/graphiql/assets/{'0' * 16}/{name}")
    assert stale.status_code == 404
    assert stale.json()["errors"][0]["extensions"]["code"] == "NOT_FOUND"


def test_files_are_gzipped_for_browsers_that_take_it(client: TestClient) -> None:
    name = "graphiql/graphiql.min.js"
    url = f"/graphiql/assets/{_digest(name)}/{name}"
    original = (STATIC / name).read_bytes()
    for _ in range(2):  # compressed on the first request, kept for the next
        packed = client.get(url, headers={"accept-encoding": "gzip, deflate"})
        assert packed.headers["content-encoding"] == "gzip"
        assert packed.headers["vary"] == "Accept-Encoding"
        assert int(packed.headers["content-length"]) < len(original) / 3
        assert packed.content == original  # as the client decompressed it
    for refusing in ("identity", "gzip;q=0"):
        plain = client.get(url, headers={"accept-encoding": refusing})
        assert "content-encoding" not in plain.headers
        assert plain.content == original


def _digest(name: str) -> str:
    return hashlib.sha256((STATIC / name).read_bytes()).hexdigest()[:16]


@pytest.mark.parametrize(
    "path",
    [
        "/graphiql/assets/{d}/../../../pyproject.toml",
        "/graphiql/assets/{d}/..%2f..%2f..%2fpyproject.toml",
        "/graphiql/assets/{d}/%2e%2e/%2e%2e/http/graphiql.py",
        "/graphiql/assets/{d}/react%2f..%2f..%2f..%2fgraphiql.py",
        "/graphiql/assets/{d}/graphiql.lock.json",
        "/graphiql/assets/{d}/page.html",
        "/graphiql/assets/{d}//etc/passwd",
        "/graphiql/assets/{d}/react",
        "/graphiql/assets/{d}/",
    ],
)
def test_no_path_reaches_another_file(client: TestClient, path: str) -> None:
    response = client.get(path.format(d=_digest("react/react.production.min.js")))
    assert response.status_code == 404
    assert "text/javascript" not in response.headers.get("content-type", "")
    assert b"[project]" not in response.content and b"root:" not in response.content


def test_without_graphiql_nothing_is_served(tmp_path: Path) -> None:
    with TestClient(create_app(make_settings(tmp_path, graphiql=False))) as client:
        page = client.get("/graphql", headers=PAGE)
        # A GET is then a GraphQL request: refused with a coded error, never a page.
        assert page.status_code in (400, 406)
        assert "text/html" not in page.headers["content-type"]
        assert page.json()["errors"][0]["extensions"]["code"] == "BAD_REQUEST"
        name = "react/react.production.min.js"
        assert client.get(f"/graphiql/assets/{_digest(name)}/{name}").status_code == 404


def test_the_page_opens_on_the_example_tabs(client: TestClient) -> None:
    page = client.get("/graphql", headers=PAGE)
    config = page_config(page.text)
    assert config == {"tabs": EXAMPLE_TABS}  # an open server: no header to fill in
    assert 'id="auth-note"' not in page.text


def test_every_example_runs_as_pasted_on_the_default_settings(tmp_path: Path) -> None:
    """The default collection's 384 dimensions, no embedder: the examples need neither."""
    settings = make_settings(tmp_path, vector_size=384)
    with TestClient(create_app(settings)) as client:
        answers = [gql(client, tab["query"]).data for tab in EXAMPLE_TABS]
    remembered, recalled, health = answers
    assert len(remembered["remember"]["ids"]) == 2
    assert [m["text"] for m in recalled["recall"]] == ["Ada likes green tea in the morning"]
    assert health["health"]["status"] == "OK"
