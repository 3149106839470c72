"""`graph backup`, `graph restore` and `graph migrate`: the operator's commands around
graph/store/backup/. Each failure is one line on stderr and exit status 1."""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any, NoReturn

from graph.errors import ApiError
from graph.settings import Settings
from graph.store.backup.archive import ArchiveError
from graph.store.backup.transfer import (
    Checkpoint,
    MigrateMismatch,
    TargetNotEmpty,
    migrate,
    restore,
)
from graph.store.base import VectorStore

BACKUP_MUTATION = (
    "mutation Backup($path: String) { backup(path: $path) "
    "{ path formatVersion collections points bytes seconds } }"
)


def fail(command: str, message: object) -> NoReturn:
    sys.stderr.write(f"graph {command}: {message}\n")
    sys.exit(1)


def add_commands(commands: Any) -> None:
    """The three subcommands, on the `graph` parser's subparsers."""
    backup = commands.add_parser(
        "backup", help="ask a running server to write a backup archive into its BACKUP_DIR"
    )
    backup.add_argument("--url", default="http://127.0.0.1:8000", help="the server")
    backup.add_argument("--key", help="an API key or JWT with the admin scope")
    backup.add_argument("--path", help="the archive's file name in BACKUP_DIR")
    backup.add_argument("--timeout", type=float, default=3600.0, help="seconds (default 3600)")
    restore_parser = commands.add_parser(
        "restore",
        help="restore an archive into the store of DATA_DIR or QDRANT_URL (server stopped)",
    )
    restore_parser.add_argument("archive", type=Path)
    restore_parser.add_argument(
        "--force", action="store_true", help="restore into a store that holds points (merge)"
    )
    migrate_parser = commands.add_parser(
        "migrate", help="copy the embedded store (DATA_DIR) to a Qdrant server, or back"
    )
    way = migrate_parser.add_mutually_exclusive_group(required=True)
    way.add_argument("--to", metavar="QDRANT_URL", help="copy DATA_DIR to this server")
    way.add_argument("--from", dest="source", metavar="QDRANT_URL", help="copy it to DATA_DIR")
    migrate_parser.add_argument(
        "--checkpoint",
        type=Path,
        default=Path("graph-migrate.checkpoint"),
        help="progress kept here, to resume after a crash (default ./graph-migrate.checkpoint)",
    )
    for parser in (backup, restore_parser, migrate_parser):
        parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> None:
    if args.command == "backup":
        remote_backup(args)
    elif args.command == "restore":
        settings = Settings()
        _run(
            "restore",
            lambda stack: _restore(stack, settings, args.archive, args.force),
        )
    else:
        settings = Settings()
        _run("migrate", lambda stack: _migrate(stack, settings, args))


def remote_backup(args: argparse.Namespace) -> None:
    import httpx

    headers = {"Authorization": f"Bearer {args.key}"} if args.key else {}
    try:
        response = httpx.post(
            args.url.rstrip("/") + "/graphql",
            json={"query": BACKUP_MUTATION, "variables": {"path": args.path}},
            headers=headers,
            timeout=args.timeout,
        )
        body = response.json()
    except httpx.HTTPError as exc:
        fail("backup", f"cannot reach {args.url}: {type(exc).__name__}")
    except ValueError:
        fail("backup", f"{args.url} answered HTTP {response.status_code} without JSON")
    errors = body.get("errors") if isinstance(body, dict) else None
    if errors or not isinstance(body, dict) or not body.get("data"):
        first = errors[0] if errors else {}
        code = first.get("extensions", {}).get("code", f"HTTP {response.status_code}")
        fail("backup", f"{code}: {first.get('message', 'no result')}")
    result = body["data"]["backup"]
    sys.stdout.write(
        f"{result['path']}\t{result['collections']} collections\t{result['points']} points\t"
        f"{int(result['bytes'])} bytes\t{result['seconds']:.1f} s\n"
    )


def store_for(settings: Settings, url: str | None = None) -> VectorStore:
    """The store of settings (DATA_DIR, or QDRANT_URL), or of the Qdrant server at url."""
    from graph.store import create_store

    if url is not None:
        settings = Settings(qdrant_url=url, qdrant_api_key=settings.store.qdrant_api_key)
    return create_store(settings)


async def _opened(stack: AsyncExitStack, store: VectorStore) -> VectorStore:
    await store.open()
    stack.push_async_callback(store.close)
    return store


class ProgressBar:
    """Points copied, out of the total, and the rate, on stderr (tqdm)."""

    def __init__(self, what: str, total: int) -> None:
        from tqdm import tqdm

        self._bar = tqdm(total=total, unit=" points", desc=what, file=sys.stderr, delay=0.5)
        self.started = time.perf_counter()

    def __call__(self, points: int) -> None:
        self._bar.update(points)

    def close(self) -> None:
        self._bar.close()


async def _restore(stack: AsyncExitStack, settings: Settings, archive: Path, force: bool) -> str:
    from graph.store.backup.archive import ArchiveReader

    reader = await asyncio.to_thread(ArchiveReader, archive)  # refused early when incomplete
    total = reader.manifest.points
    reader.close()
    store = await _opened(stack, store_for(settings))
    bar = ProgressBar("restore", total)
    try:
        restored = await restore(store, archive, force=force, progress=bar)
    finally:
        bar.close()
    seconds = time.perf_counter() - bar.started
    return (
        f"restored {restored} points from {archive} into the {store.backend} store, "
        f"checksums and counts verified ({seconds:.1f} s, {restored / max(seconds, 1e-9):.0f} "
        "points/s)"
    )


async def _migrate(stack: AsyncExitStack, settings: Settings, args: argparse.Namespace) -> str:
    embedded = Settings(qdrant_url=None, data_dir=settings.store.data_dir)
    if args.to is not None:
        source = await _opened(stack, store_for(embedded))
        target = await _opened(stack, store_for(settings, args.to))
        route = f"{settings.store.data_dir.resolve()} -> {args.to}"
    else:
        source = await _opened(stack, store_for(settings, args.source))
        target = await _opened(stack, store_for(embedded))
        route = f"{args.source} -> {settings.store.data_dir.resolve()}"
    checkpoint = Checkpoint(args.checkpoint, route)
    total = 0
    for entry in await source.all_collections():
        total += (await source.get_collection(entry.tenant, entry.name)).points_count
    bar = ProgressBar("migrate", total)
    try:
        summary = await migrate(
            source,
            target,
            checkpoint,
            page_points=settings.store.backup_page_points,
            progress=bar,
        )
    finally:
        bar.close()
    seconds = time.perf_counter() - bar.started
    copied = summary.points - summary.resumed_at
    resumed = f", resumed at {summary.resumed_at}" if summary.resumed_at else ""
    return (
        f"migrated {summary.points} points in {summary.collections} collections ({route}"
        f"{resumed}); counts and {summary.sampled} sampled points verified "
        f"({seconds:.1f} s, {copied / max(seconds, 1e-9):.0f} points/s)"
    )


def _run(command: str, body: Callable[[AsyncExitStack], Awaitable[str]]) -> None:
    from graph.store.edge.layout import DataDirectoryInUse

    async def main() -> str:
        async with AsyncExitStack() as stack:
            return await body(stack)

    try:
        done = asyncio.run(main())
    except (ArchiveError, TargetNotEmpty, MigrateMismatch, DataDirectoryInUse) as exc:
        fail(command, exc)
    except ApiError as exc:
        fail(command, f"{exc.code.value}: {exc.message}")
    except OSError as exc:
        fail(command, f"{exc.strerror or type(exc).__name__}: {exc.filename or ''}".rstrip(": "))
    except KeyboardInterrupt:
        fail(command, "interrupted (a migrate resumes from its checkpoint)")
    sys.stderr.write(f"graph {command}: {done}\n")
