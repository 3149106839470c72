"""What bounds the disk a backup may take: one `backup` field per operation, the disk
guard (MIN_FREE_DISK_MB) on BACKUP_DIR's filesystem before and while an archive is
written, and a `graph backup --timeout` that stays within what the client can wait."""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from graph.app import create_app
from graph.errors import StoreUnavailable
from graph.graphql.schema.backups import SEVERAL_BACKUPS
from graph.settings import Distance
from graph.store.backup.transfer import backup_once, expected_archive_bytes
from graph.store.edge import EdgeStore
from graph.store.models import Point
from tests.conftest import Runner, make_settings
from tests.helpers import gql
from tests.test_backup_commands import BACKUP, graph
from tests.test_backup_failures import usage_error

MIB = 1024 * 1024


def written(backup_dir: Path) -> list[str]:
    """What is in BACKUP_DIR, archives and partial files alike."""
    return sorted(p.name for p in backup_dir.iterdir()) if backup_dir.exists() else []


def fill(data_dir: Path, *, points: int, dimension: int = 4) -> None:
    async def go() -> None:
        store = EdgeStore(data_dir)
        await store.open()
        try:
            await store.create_collection("acme", "docs", dimension, Distance.COSINE)
            for start in range(0, points, 500):
                await store.upsert(
                    "acme",
                    "docs",
                    [
                        Point(i, [1.0 + i % 7, float(i), *([0.5] * (dimension - 2))])
                        for i in range(start, min(start + 500, points))
                    ],
                )
        finally:
            await store.close()

    asyncio.run(go())


# At most one `backup` field per operation


FIFTEEN = "mutation { " + " ".join(f"b{i}: backup {{ path }}" for i in range(15)) + " }"
TWICE = [
    "mutation { ...Twice } fragment Twice on Mutation { a: backup { path } b: backup { path } }",
    "mutation { backup { path } ...Again } fragment Again on Mutation { again: backup { path } }",
    "mutation { backup { path } ... on Mutation { again: backup { path } } }",
]


def refused_whole(client: TestClient, query: str) -> None:
    response = gql(client, query)
    error = response.assert_error("BAD_USER_INPUT")
    assert error["message"] == SEVERAL_BACKUPS
    assert response.body.get("data") is None


def test_an_operation_selecting_backup_fifteen_times_is_refused_and_writes_nothing(
    tmp_path: Path,
) -> None:
    fill(tmp_path / "data", points=100)
    backup_dir = tmp_path / "backups"
    with TestClient(create_app(make_settings(tmp_path, backup_dir=backup_dir))) as client:
        refused_whole(client, FIFTEEN)
        assert written(backup_dir) == []
        # One is still a backup.
        assert gql(client, BACKUP, {"path": "one.tar"}).data["backup"]["points"] == 100
    assert written(backup_dir) == ["one.tar"]


@pytest.mark.parametrize("query", TWICE)
def test_fragments_selecting_backup_twice_are_refused_and_write_nothing(
    tmp_path: Path, query: str
) -> None:
    backup_dir = tmp_path / "backups"
    with TestClient(create_app(make_settings(tmp_path, backup_dir=backup_dir))) as client:
        refused_whole(client, query)
    assert written(backup_dir) == []


def test_an_operation_selecting_backup_twice_runs_none_of_its_fields(tmp_path: Path) -> None:
    backup_dir = tmp_path / "backups"
    with TestClient(create_app(make_settings(tmp_path, backup_dir=backup_dir))) as client:
        refused_whole(
            client,
            'mutation { createCollection(name: "early", dimension: 4) { name } '
            "a: backup { path } b: backup { path } }",
        )
        names = gql(client, "{ collections { name } }").data["collections"]
    assert "early" not in [c["name"] for c in names]
    assert written(backup_dir) == []


def test_the_same_backup_field_repeated_under_one_key_is_one_backup(tmp_path: Path) -> None:
    """GraphQL merges fields of one response key: they run once, so they are allowed."""
    backup_dir = tmp_path / "backups"
    with TestClient(create_app(make_settings(tmp_path, backup_dir=backup_dir))) as client:
        data = gql(client, "mutation { backup { path } backup { path } }").data
    assert written(backup_dir) == [data["backup"]["path"]]


# The disk guard, before anything is written


def test_a_backup_is_refused_when_backup_dir_has_less_than_min_free_disk_mb(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """MIN_FREE_DISK_MB set above the real free space: the store refuses its own writes
    (createCollection), and a backup is refused alike, before anything is written."""
    backup_dir = tmp_path / "backups"
    free_mb = shutil.disk_usage(tmp_path).free // MIB
    settings = make_settings(tmp_path, backup_dir=backup_dir, min_free_disk_mb=free_mb + 1024)
    with (
        caplog.at_level(logging.ERROR, logger="graph.store.backup"),
        TestClient(create_app(settings)) as client,
    ):
        create = 'mutation { createCollection(name: "more", dimension: 4) { name } }'
        store_says = gql(client, create).assert_error("STORE_UNAVAILABLE")["message"]
        assert "out of disk space" in store_says
        error = gql(client, BACKUP, {"path": "x.tar"}).assert_error("STORE_UNAVAILABLE")
    assert error["message"] == "BACKUP_DIR is out of disk space; the backup 'x.tar' is refused"
    assert str(tmp_path) not in error["message"]
    assert written(backup_dir) == []
    (logged,) = [r for r in caplog.records if r.name == "graph.store.backup.transfer"]
    assert "refused" in logged.getMessage() and str(backup_dir) in logged.getMessage()


def test_a_backup_is_refused_when_its_archive_would_leave_less_than_min_free_disk_mb(
    tmp_path: Path, run: Runner
) -> None:
    """Free space above MIN_FREE_DISK_MB, but not once the archive is written: the bound
    sits half the archive's expected size (~15 MB here) below the free space, so that
    other writes to this disk meanwhile cannot make the test pass or fail by chance."""
    fill(tmp_path / "data", points=1_000, dimension=1_536)

    async def go() -> None:
        store = EdgeStore(tmp_path / "data")
        await store.open()
        try:
            expected = await expected_archive_bytes(store)
            assert expected > 10 * MIB
            min_free = shutil.disk_usage(tmp_path).free - expected // 2
            with pytest.raises(StoreUnavailable, match="is refused"):
                await backup_once(store, tmp_path / "backups", "big.tar", min_free_bytes=min_free)
        finally:
            await store.close()

    run(go())
    assert written(tmp_path / "backups") == []


# The disk guard, while the archive is written


def test_a_backup_stops_when_free_space_falls_below_min_free_disk_mb_midway(
    tmp_path: Path, run: Runner, caplog: pytest.LogCaptureFixture
) -> None:
    """Free space really falls during the backup: another writer on the same filesystem
    (as the tenants writing to the data volume BACKUP_DIR shares) takes 256 MiB once the
    archive's .partial file exists. The bound is 64 MiB below the free space at the start,
    far from what other processes on this disk change meanwhile.

    Not the archive's own growth crossing the bound: the check before writing refuses
    exactly that (the estimate is at least the archive), so only space taken by others,
    or an archive outgrowing its estimate, reaches the check between chunks."""
    fill(tmp_path / "data", points=600)
    backup_dir = tmp_path / "backups"
    ballast = tmp_path / "ballast"

    async def other_writer() -> None:
        while not any(p.name.endswith(".partial") for p in backup_dir.glob("*")):
            await asyncio.sleep(0)
        fd = os.open(ballast, os.O_CREAT | os.O_WRONLY)
        try:
            os.posix_fallocate(fd, 0, 256 * MIB)
        finally:
            os.close(fd)

    async def go() -> None:
        store = EdgeStore(tmp_path / "data")
        await store.open()
        try:
            min_free = shutil.disk_usage(tmp_path).free - 64 * MIB
            writer = asyncio.create_task(other_writer())
            with pytest.raises(StoreUnavailable) as raised:
                await backup_once(
                    store, backup_dir, "cut.tar", page_points=10, min_free_bytes=min_free
                )
            assert writer.done()
            assert raised.value.message == (
                "BACKUP_DIR ran out of disk space; the backup 'cut.tar' was stopped and "
                "nothing was kept"
            )
        finally:
            await store.close()

    try:
        with caplog.at_level(logging.ERROR, logger="graph.store.backup"):
            run(go())
    finally:
        ballast.unlink(missing_ok=True)
    assert written(backup_dir) == []
    (logged,) = [r for r in caplog.records if r.name == "graph.store.backup.transfer"]
    assert "stopped" in logged.getMessage()


# `graph backup --timeout`


@pytest.mark.parametrize("timeout", ["1e12", "1e18", "1e308", "604801"])
def test_backup_refuses_a_timeout_past_a_week_as_a_usage_error(timeout: str) -> None:
    result = graph("backup", "--url", "http://127.0.0.1:9", f"--timeout={timeout}")
    usage_error(result, "argument --timeout: must be at most 604800 seconds (7 days)")


def test_backup_takes_a_timeout_of_a_week() -> None:
    result = graph("backup", "--url", "http://127.0.0.1:9", "--timeout=604800")
    assert result.returncode == 1 and "cannot reach" in result.stderr, result
