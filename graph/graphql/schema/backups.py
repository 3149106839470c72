"""The `backup` mutation: an archive of the whole store, written on the server."""

from __future__ import annotations

from typing import Annotated, Any

import strawberry
from strawberry.types import Info

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
    "archive. One backup at a time. `graph restore` restores an archive (docs/backup.md).",
    "admin",
    "BAD_USER_INPUT (a bad file name, or a backup already running), ALREADY_EXISTS (the "
    "name is taken), STORE_UNAVAILABLE, STORE_TIMEOUT",
)


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
        context.store, store.backup_dir, path, page_points=store.backup_page_points
    )
    return BackupResult(
        path=summary.path.name,
        format_version=FORMAT_VERSION,
        collections=summary.collections,
        points=summary.points,
        bytes=float(summary.bytes),
        seconds=summary.seconds,
    )
