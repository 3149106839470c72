"""The `backup` mutation: an archive of the whole store, written on the server."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Annotated, Any

import strawberry
from graphql import FieldNode
from strawberry.types import Info

from graph.errors import BadUserInput
from graph.graphql.schema.context import RequestContext
from graph.graphql.schema.resolvers import root_description
from graph.store.backup.archive import FORMAT_VERSION
from graph.store.backup.transfer import backup_once
from graph.telemetry.metrics import timed_resolver

BACKUP_DESCRIPTION = root_description(
    "Write a backup archive of every tenant's collections and points into the server's "
    "BACKUP_DIR (never elsewhere, and never sent to the client); returns when the archive "
    "is complete, under its name, with its manifest of counts and checksums. Reads and "
    "writes go on meanwhile; every point acknowledged before the call began is in the "
    "archive. One backup at a time, and at most one `backup` field per operation. Refused "
    "when BACKUP_DIR's disk would keep less than MIN_FREE_DISK_MB free once the archive is "
    "written, and stopped (nothing kept) when its free space falls below that meanwhile. "
    "`graph restore` restores an archive (docs/backup.md).",
    "admin",
    "BAD_USER_INPUT (a bad file name, a backup already running, or an operation selecting "
    "backup more than once), ALREADY_EXISTS (the name is taken), STORE_UNAVAILABLE (BACKUP_DIR "
    "cannot be written or is out of disk space), STORE_TIMEOUT",
)

SEVERAL_BACKUPS = (
    "An operation may select backup at most once (aliases and fragments included); "
    "send one backup per request"
)


def several_backups(root_fields: Iterable[FieldNode]) -> BadUserInput | None:
    """The refusal of an operation whose root fields (one per response key, as
    PreparedOperation.root_nodes) select backup more than once: each would write a whole
    archive of every tenant's data. A policy rule (graph/graphql/policy.py), so that
    nothing of such an operation runs."""
    if sum(1 for node in root_fields if node.name.value == "backup") > 1:
        return BadUserInput(SEVERAL_BACKUPS)
    return None


PathArg = Annotated[
    str | None,
    strawberry.argument(
        description=(
            "A file name (letters, digits, '.', '_', '-'; at most 128 characters; no "
            "directory) inside BACKUP_DIR; default `backup-<UTC time>-<n>.tar`. An existing "
            "name is ALREADY_EXISTS, anything else BAD_USER_INPUT."
        )
    ),
]


@strawberry.type(description="A complete backup archive, written on the server.")
class BackupResult:
    path: str = strawberry.field(description="The archive's file name inside BACKUP_DIR.")
    format_version: int = strawberry.field(
        description=f"The archive format's version (this server writes {FORMAT_VERSION})."
    )
    collections: int = strawberry.field(description="Logical collections, all tenants.")
    points: int = strawberry.field(description="Points (memories included) in the archive.")
    bytes: float = strawberry.field(description="The archive's size in bytes.")
    seconds: float = strawberry.field(description="How long the backup took, in seconds.")


@timed_resolver("Mutation", "backup")
async def backup(
    root: None,
    info: Info[RequestContext, Any],
    path: PathArg = None,
) -> BackupResult:
    context = info.context
    store = context.settings.store
    summary = await backup_once(
        context.store,
        store.backup_dir,
        path,
        page_points=store.backup_page_points,
        min_free_bytes=store.min_free_disk_mb * 1024 * 1024,
    )
    return BackupResult(
        path=summary.path.name,
        format_version=FORMAT_VERSION,
        collections=summary.collections,
        points=summary.points,
        bytes=float(summary.bytes),
        seconds=summary.seconds,
    )
