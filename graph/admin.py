"""`graph backup`, `graph restore` and `graph migrate`: the operator's commands around
graph/store/backup/. Each failure is one line on stderr and exit status 1."""

from __future__ import annotations

import argparse
import asyncio
import logging
import math
import sys
import time
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any, NoReturn

import orjson

from graph.errors import ApiError, ConfigError
from graph.settings import Settings
from graph.store.backup.archive import ArchiveError
from graph.store.backup.transfer import (
    Checkpoint,
    CheckpointError,
    MigrateMismatch,
    ShapeMismatch,
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


# The longest --timeout: a week. It is how long the command waits for the server's answer,
# and a backup that takes longer is not waited for (it goes on on the server: the archive
# appears in BACKUP_DIR when complete). Past it the value would only reach the limits below
# it: socket.settimeout holds nanoseconds in 64 bits, so above ~9.2e9 s (292 years) it fails
# with an OverflowError (`--timeout 1e12` did, in a traceback).
MAX_TIMEOUT_SECONDS = 7 * 24 * 3600


def positive_seconds(text: str) -> float:
    try:
        seconds = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not 0 < seconds < math.inf:
        raise argparse.ArgumentTypeError(f"must be a positive number of seconds, not {text}")
    if seconds > MAX_TIMEOUT_SECONDS:
        raise argparse.ArgumentTypeError(
            f"must be at most {MAX_TIMEOUT_SECONDS} seconds (7 days), not {text}"
        )
    return seconds


def credential(text: str) -> str:
    """An API key or a JWT: printable ASCII without spaces, as an HTTP header carries it.
    The value is never echoed: it is a secret."""
    if not all("!" <= c <= "~" for c in text):
        raise argparse.ArgumentTypeError(
            "an API key or JWT is printable ASCII with no spaces; this one is not"
        )
    return text


def add_commands(commands: Any) -> None:
    """The three subcommands, on the `graph` parser's subparsers."""
    backup = commands.add_parser(
        "backup", help="ask a running server to write a backup archive into its BACKUP_DIR"
    )
    backup.add_argument(
        "--url", default="http://127.0.0.1:8000", help="the server (default %(default)s)"
    )
    backup.add_argument("--key", type=credential, help="an API key or JWT with the admin scope")
    backup.add_argument("--path", help="the archive's file name in BACKUP_DIR")
    backup.add_argument(
        "--timeout", type=positive_seconds, default=3600.0, help="seconds (default 3600)"
    )
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
        return
    try:
        settings = Settings.from_environment()
    except ConfigError as exc:
        fail(args.command, exc)
    if args.command == "restore":
        _run(
            "restore",
            lambda stack: _restore(stack, settings, args.archive, args.force),
        )
    else:
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
    except httpx.InvalidURL as exc:
        fail("backup", f"--url {args.url!r} is not a valid URL ({exc})")
    except httpx.TimeoutException:
        fail(
            "backup",
            f"{args.url} did not answer within {args.timeout:g} s (a backup it began may "
            "still be running there)",
        )
    except httpx.HTTPError as exc:
        fail("backup", f"cannot reach {args.url}: {type(exc).__name__}")
    except KeyboardInterrupt:
        fail("backup", "interrupted")
    sys.stdout.write(backup_result(args.url, response.status_code, response.content) + "\n")


def backup_result(url: str, status: int, content: bytes) -> str:
    """The line printed for the server's answer to BACKUP_MUTATION; fail() if it is an
    error, or not an answer to it."""
    try:
        body = orjson.loads(content)
    except orjson.JSONDecodeError:
        fail("backup", f"{url} answered HTTP {status} without JSON")
    try:
        errors = body.get("errors")
        if errors:
            first = errors[0]
            code = first.get("extensions", {}).get("code", f"HTTP {status}")
            fail("backup", f"{code}: {first.get('message', 'no message')}")
        result = body["data"]["backup"]
        return (
            f"{result['path']}\t{result['collections']} collections\t{result['points']} "
            f"points\t{int(result['bytes'])} bytes\t{result['seconds']:.1f} s"
        )
    except (AttributeError, KeyError, IndexError, TypeError, ValueError):
        fail("backup", f"{url} answered HTTP {status} with no backup result")


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
    require_source(settings.store.data_dir if args.to is not None else args.source)
    data_dir = settings.store.data_dir.resolve()
    route = f"{data_dir} -> {args.to}" if args.to is not None else f"{args.source} -> {data_dir}"
    checkpoint = Checkpoint(args.checkpoint, route)  # refused before any store is made
    if args.to is not None:
        source = await _opened(stack, store_for(embedded))
        target = await _opened(stack, store_for(settings, args.to))
    else:
        source = await _opened(stack, store_for(settings, args.source))
        target = await _opened(stack, store_for(embedded))
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


class SourceMissing(Exception):
    pass


def require_source(source: Path | str) -> None:
    """A migrate copies from a store that exists: opening a missing one would make it,
    empty, and "migrate" nothing. A Qdrant server's URL is checked by the first call."""
    from graph.store.edge.layout import CATALOG
    from graph.store.remote.store import LOCAL_PREFIX

    if isinstance(source, Path):
        if not (source / CATALOG).is_file():
            raise SourceMissing(f"no embedded store in DATA_DIR {source} (no {CATALOG})")
    elif source.startswith(LOCAL_PREFIX) and not Path(source.removeprefix(LOCAL_PREFIX)).is_dir():
        raise SourceMissing(f"no store at {source} (no such directory)")


class Reasons(logging.Handler):
    """The warnings logged while a command runs (a store's "Qdrant scroll failed:
    ConnectError ..."), kept instead of printed so that a failure stays one line: the last
    of them is its reason."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.last: str | None = None

    def emit(self, record: logging.LogRecord) -> None:
        lines = record.getMessage().strip().splitlines()
        if not lines:
            return
        reason = lines[0]
        # An engine failure is logged with its exception ("Embedded engine call
        # create_collection failed"), whose text is the reason: "failed to open WAL ...
        # No space left on device".
        exc = record.exc_info[1] if record.exc_info else None
        detail = str(exc).strip().splitlines() if exc is not None else []
        self.last = f"{reason}: {detail[0]}" if detail else reason

    def __enter__(self) -> Reasons:
        logging.getLogger().addHandler(self)
        return self

    def __exit__(self, *_: object) -> None:
        logging.getLogger().removeHandler(self)


def _run(command: str, body: Callable[[AsyncExitStack], Awaitable[str]]) -> None:
    async def main() -> str:
        async with AsyncExitStack() as stack:
            return await body(stack)

    reasons = Reasons()
    try:
        with reasons:
            done = asyncio.run(main())
    except (
        ArchiveError,
        TargetNotEmpty,
        MigrateMismatch,
        ShapeMismatch,
        CheckpointError,
        ConfigError,  # a store in use by another process (DATA_DIR, or QDRANT_URL=path:)
        SourceMissing,
    ) as exc:
        fail(command, exc)
    except ApiError as exc:
        store_fault = exc.code.value.startswith("STORE_")
        reason = f" ({reasons.last})" if store_fault and reasons.last else ""
        fail(command, f"{exc.code.value}: {exc.message}{reason}")
    except OSError as exc:
        fail(command, f"{exc.strerror or type(exc).__name__}: {exc.filename or ''}".rstrip(": "))
    except KeyboardInterrupt:
        fail(command, "interrupted (a migrate resumes from its checkpoint)")
    sys.stderr.write(f"graph {command}: {done}\n")
