"""Rewrite GraphiQL's browser files in graph/http/static/graphiql/ and their lock.

    python scripts/refresh_graphiql.py

`npm pack` fetches each pinned package (npm checks the tarball against the registry's
integrity hash); the built files and each package's LICENSE are copied out of the tarballs,
and graphiql.lock.json records name, version, file and sha256 of each. To move to another
version, change it in PACKAGES, run this, and check the page (tests/test_graphiql_browser.py).
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ASSETS = ROOT / "graph" / "http" / "static" / "graphiql"
LOCK = ASSETS / "graphiql.lock.json"


@dataclass(frozen=True)
class Package:
    name: str
    version: str
    folder: str  # under ASSETS
    files: dict[str, str]  # path in the tarball (under package/) -> file name in folder


PACKAGES = (
    Package("react", "18.2.0", "react", {"umd/react.production.min.js": "react.production.min.js"}),
    Package(
        "react-dom",
        "18.2.0",
        "react-dom",
        {"umd/react-dom.production.min.js": "react-dom.production.min.js"},
    ),
    Package(
        "graphiql",
        "3.8.3",
        "graphiql",
        {"graphiql.min.js": "graphiql.min.js", "graphiql.min.css": "graphiql.min.css"},
    ),
    Package(
        "@graphiql/plugin-explorer",
        "1.0.2",
        "plugin-explorer",
        {"dist/index.umd.js": "index.umd.js", "dist/style.css": "style.css"},
    ),
)

# Each folder gets its package's LICENSE. The explorer plugin's tarball has none: it is
# built in graphiql's repository (the LICENSE of the graphiql package covers it) and
# bundles graphiql-explorer, whose LICENSE goes beside it too.
LICENSES = (
    Package("react", "18.2.0", "react", {"LICENSE": "LICENSE"}),
    Package("react-dom", "18.2.0", "react-dom", {"LICENSE": "LICENSE"}),
    Package("graphiql", "3.8.3", "graphiql", {"LICENSE": "LICENSE"}),
    Package("graphiql", "3.8.3", "plugin-explorer", {"LICENSE": "LICENSE"}),
    Package(
        "graphiql-explorer", "0.9.0", "plugin-explorer", {"LICENSE": "LICENSE.graphiql-explorer"}
    ),
)


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def pack(spec: str, into: Path) -> Path:
    """The package's tarball, fetched by npm (which verifies its integrity hash)."""
    output = subprocess.run(
        ["npm", "pack", spec, "--json", "--pack-destination", str(into)],
        check=True,
        capture_output=True,
        text=True,
        timeout=600,
    ).stdout
    [packed] = json.loads(output)
    filename: str = packed["filename"]
    return into / filename


def refresh() -> list[dict[str, str]]:
    lock: list[dict[str, str]] = []
    with tempfile.TemporaryDirectory() as temp:
        tarballs: dict[str, Path] = {}
        for folder in {package.folder for package in PACKAGES}:
            shutil.rmtree(ASSETS / folder, ignore_errors=True)  # no file outlives its pin
        for package in (*PACKAGES, *LICENSES):
            spec = f"{package.name}@{package.version}"
            if spec not in tarballs:
                tarballs[spec] = pack(spec, Path(temp))
            with tarfile.open(tarballs[spec]) as tar:
                for inside, name in package.files.items():
                    member = tar.extractfile(f"package/{inside}")
                    if member is None:
                        raise SystemExit(f"{spec} has no {inside}")
                    target = ASSETS / package.folder / name
                    target.parent.mkdir(parents=True, exist_ok=True)
                    with member, target.open("wb") as out:
                        shutil.copyfileobj(member, out)
                    lock.append(
                        {
                            "name": package.name,
                            "version": package.version,
                            "file": f"{package.folder}/{name}",
                            "sha256": sha256(target),
                        }
                    )
    return lock


def main() -> None:
    lock = refresh()
    LOCK.write_text(json.dumps(lock, indent=2) + "\n")
    print(f"wrote {len(lock)} files and {LOCK.relative_to(ROOT)}", file=sys.stderr)


if __name__ == "__main__":
    main()
