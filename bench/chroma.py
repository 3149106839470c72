"""The peer: a Chroma server in a virtual environment of its own.

    .venv/bin/python -m bench --peers chroma

The first run creates the environment (python -m venv, then pip installs the pinned
chromadb into it: a few minutes); later runs, offline too, reuse it. The server runs
`chroma run` on 127.0.0.1 with its log at warn, and every collection is made with
cosine distance and ef_search 128, the server's search parameters.
"""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from bench import data

CHROMADB = "chromadb==1.5.9"
API = "/api/v2/tenants/default_tenant/databases/default_database/collections"
# Chroma's names must have at least three characters of [a-zA-Z0-9._-].
COLLECTION = "memories"
INGEST_COLLECTION = "bench-ingest"
CONFIGURATION = {"hnsw": {"space": "cosine", "ef_search": 128}}
LOAD_BATCH = 1_000


def venv(cache_dir: Path, log: Any = print) -> Path:
    """The chroma executable, installing it first if needed."""
    root = cache_dir / "chroma-venv"
    chroma = root / "bin" / "chroma"
    if chroma.is_file():
        return chroma
    log(f"installing {CHROMADB} into {root} (once)")
    subprocess.run([sys.executable, "-m", "venv", str(root)], check=True)
    subprocess.run(
        [str(root / "bin" / "pip"), "install", "--quiet", CHROMADB],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    return chroma


def command(chroma: Path, path: Path, port: int) -> list[str]:
    return [str(chroma), "run", "--path", str(path), "--host", "127.0.0.1", "--port", str(port)]


ENV = {"RUST_LOG": "warn", "ANONYMIZED_TELEMETRY": "False"}


def call(base: str, path: str, body: Any = None, method: str = "POST") -> Any:
    request = urllib.request.Request(
        f"{base}{path}",
        data=None if body is None else json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
        method=method,
    )
    with urllib.request.urlopen(request, timeout=120) as response:
        text = response.read()
    return json.loads(text) if text else None


def ready(base: str) -> bool:
    try:
        call(base, "/api/v2/heartbeat", method="GET")
    except (OSError, urllib.error.URLError):
        return False
    return True


def create(base: str, name: str) -> str:
    """A new, empty collection (any old one of that name dropped); its id."""
    try:
        call(base, f"{API}/{name}", method="DELETE")
    except urllib.error.HTTPError as e:
        if e.code != 404:
            raise
    created = call(base, API, {"name": name, "configuration": CONFIGURATION})
    return str(created["id"])


def collection_id(base: str, name: str) -> str:
    return str(call(base, f"{API}/{name}", method="GET")["id"])


def add_body(ids: list[int], rows: list[list[float]]) -> dict[str, Any]:
    return {
        "ids": [str(i) for i in ids],
        "embeddings": rows,
        "metadatas": [data.payload(i) for i in ids],
    }


def load(base: str, count: int, dimension: int, log: Any = print) -> None:
    """COLLECTION with the benchmark's count points."""
    ident = create(base, COLLECTION)
    for start in range(0, count, LOAD_BATCH):
        n = min(LOAD_BATCH, count - start)
        rows = data.vectors(n, dimension, start=start).tolist()
        call(base, f"{API}/{ident}/add", add_body(list(range(start, start + n)), rows))
    stored = call(base, f"{API}/{ident}/count", method="GET")
    if stored != count:
        raise RuntimeError(f"chroma holds {stored} points, expected {count}")
    log(f"  chroma: loaded {count} points")


def search(base: str, ident: str, vector: list[float], limit: int) -> list[int]:
    found = call(
        base,
        f"{API}/{ident}/query",
        {"query_embeddings": [vector], "n_results": limit, "include": ["distances"]},
    )
    return [int(i) for i in found["ids"][0]]
