"""How `graph backup`, `graph restore`, `graph migrate` and the `backup` mutation fail: a
coded error or one line on stderr, never a traceback, and nothing half-written left."""

from __future__ import annotations

import asyncio
import http.server
import logging
import os
import resource
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from starlette.testclient import TestClient

from graph.app import create_app
from graph.settings import Distance
from graph.store.backup.archive import PARTIAL_SUFFIX
from graph.store.edge import EdgeStore
from graph.store.models import Point
from graph.store.remote import RemoteStore
from tests.conftest import Runner, make_settings
from tests.helpers import free_port, gql, stand_in_http
from tests.test_backup_commands import BACKUP, graph, one_line_failure

# `graph backup`, the client


def usage_error(result: subprocess.CompletedProcess[str], message: str) -> None:
    """argparse's refusal: its usage line, then one line saying what is wrong."""
    assert result.returncode == 2, result
    assert "Traceback" not in result.stderr
    assert message in result.stderr.strip().splitlines()[-1], result.stderr


@pytest.mark.parametrize("timeout", ["-1", "0", "nan", "inf", "soon"])
def test_backup_refuses_a_timeout_that_is_not_positive(timeout: str) -> None:
    result = graph("backup", "--url", "http://127.0.0.1:9", f"--timeout={timeout}")
    usage_error(result, "argument --timeout")


@pytest.mark.parametrize("key", ["clé", "a\nb", "a b"])
def test_backup_refuses_a_key_no_header_can_carry_without_echoing_it(key: str) -> None:
    result = graph("backup", "--url", "http://127.0.0.1:9", "--key", key)
    usage_error(result, "argument --key")
    assert key not in result.stderr


def test_backup_refuses_a_url_that_is_not_one() -> None:
    one_line_failure(graph("backup", "--url", "http://[::1"), "not a valid URL")


def test_backup_says_when_nothing_listens() -> None:
    one_line_failure(graph("backup", "--url", f"http://127.0.0.1:{free_port()}"), "cannot reach")


ANSWERS: dict[str, tuple[int, bytes]] = {
    "/html/graphql": (502, b"<html>Bad Gateway</html>"),
    "/list/graphql": (200, b"[1, 2]"),
    "/null/graphql": (200, b'{"data": null}'),
    "/odd/graphql": (200, b'{"errors": ["no"]}'),
}


class Answers(http.server.BaseHTTPRequestHandler):
    """What a proxy or another service in front of the wrong port may answer: no graph
    server gives these, hence a stand-in."""

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers["Content-Length"]))
        status, body = ANSWERS[self.path]
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def answering() -> Iterator[str]:
    with stand_in_http(Answers) as url:
        yield url


@pytest.mark.parametrize(
    ("answer", "message"),
    [
        ("html", "answered HTTP 502 without JSON"),
        ("list", "answered HTTP 200 with no backup result"),
        ("null", "answered HTTP 200 with no backup result"),
        ("odd", "answered HTTP 200 with no backup result"),
    ],
)
def test_backup_says_when_the_answer_is_not_a_backup(
    answering: str, answer: str, message: str
) -> None:
    one_line_failure(graph("backup", "--url", f"{answering}/{answer}"), message)


# The `backup` mutation, when BACKUP_DIR cannot be written


@pytest.mark.parametrize("where", ["a file", "/proc"])
def test_an_unwritable_backup_dir_is_store_unavailable_with_the_reason_logged(
    tmp_path: Path, where: str, caplog: pytest.LogCaptureFixture
) -> None:
    if where == "a file":
        backup_dir = tmp_path / "backups"
        backup_dir.write_text("a regular file where the directory should be")
    else:
        backup_dir = Path("/proc/graph-backups")  # not writable, even by root
    settings = make_settings(tmp_path, backup_dir=backup_dir)
    with (
        caplog.at_level(logging.ERROR, logger="graph.store.backup"),
        TestClient(create_app(settings)) as client,
    ):
        error = gql(client, BACKUP, {"path": "x.tar"}).assert_error("STORE_UNAVAILABLE")
    assert "'x.tar'" in error["message"] and "BACKUP_DIR" in error["message"]
    assert str(backup_dir) not in error["message"] and str(tmp_path) not in error["message"]
    (logged,) = [r for r in caplog.records if r.name == "graph.store.backup.transfer"]
    assert str(backup_dir) in logged.getMessage() and logged.exc_info is None
    assert "\n" not in logged.getMessage()
    if where == "a file":
        assert [p.name for p in tmp_path.iterdir() if "x.tar" in p.name] == []


# RLIMIT_FSIZE makes the kernel refuse writes past a size (EFBIG) as a full disk refuses
# them (ENOSPC): a real write failure midway through the archive, with no root-only mount.
FILL_THEN_BACKUP = """
import asyncio, resource, signal, sys
from pathlib import Path
from graph.errors import ApiError
from graph.settings import Distance
from graph.store.backup.transfer import backup_once
from graph.store.edge import EdgeStore
from graph.store.models import Point

async def main() -> None:
    store = EdgeStore(Path(sys.argv[1]) / "data")
    await store.open()
    await store.create_collection("acme", "docs", 4, Distance.COSINE)
    await store.upsert(
        "acme", "docs", [Point(i, [1.0, i, 2.0, 3.0], {"text": f"{i}" * 40}) for i in range(600)]
    )
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    limits = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (20_000, limits[1]))
    try:
        await backup_once(store, Path(sys.argv[1]) / "backups", "full.tar", page_points=50)
        print("written")
    except ApiError as exc:
        print(exc.code.value, exc.message)
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, limits)
        await store.close()

asyncio.run(main())
"""


def test_a_write_failing_midway_is_store_unavailable_and_leaves_no_partial_file(
    tmp_path: Path,
) -> None:
    result = subprocess.run(
        [sys.executable, "-c", FILL_THEN_BACKUP, str(tmp_path)],
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("STORE_UNAVAILABLE The backup 'full.tar'"), result
    assert "File too large" in result.stderr and "Traceback" not in result.stderr
    assert list((tmp_path / "backups").iterdir()) == []


# `graph migrate` and `graph restore`


def test_migrate_refuses_a_source_that_does_not_exist(tmp_path: Path) -> None:
    missing = tmp_path / "missing"
    target = tmp_path / "qdrant"
    checkpoint = str(tmp_path / "checkpoint")
    one_line_failure(
        graph(
            "migrate", "--to", f"path:{target}", "--checkpoint", checkpoint, DATA_DIR=str(missing)
        ),
        "no embedded store",
    )
    one_line_failure(
        graph(
            "migrate", "--from", f"path:{missing}", "--checkpoint", checkpoint, DATA_DIR=str(target)
        ),
        "no store at",
    )
    assert not missing.exists() and not target.exists()
    assert not Path(checkpoint).exists()


def small_store(data_dir: Path, archive: Path | None = None) -> None:
    async def go() -> None:
        store = EdgeStore(data_dir)
        await store.open()
        try:
            await store.create_collection("acme", "docs", 4, Distance.COSINE)
            await store.upsert("acme", "docs", [Point(i, [1.0, i, 2.0, 3.0]) for i in range(10)])
            if archive is not None:
                from graph.store.backup.transfer import backup

                await backup(store, archive)
        finally:
            await store.close()

    asyncio.run(go())


def test_an_unreachable_qdrant_is_one_line_with_its_reason(tmp_path: Path) -> None:
    archive = tmp_path / "a.tar"
    small_store(tmp_path / "data", archive)
    nobody = f"http://127.0.0.1:{free_port()}"
    restored = graph("restore", str(archive), QDRANT_URL=nobody, STORE_MAX_RETRIES="0")
    one_line_failure(restored, "STORE_UNAVAILABLE")
    assert "ConnectError" in restored.stderr
    migrated = graph(
        "migrate",
        "--to",
        nobody,
        "--checkpoint",
        str(tmp_path / "checkpoint"),
        DATA_DIR=str(tmp_path / "data"),
        STORE_MAX_RETRIES="0",
    )
    one_line_failure(migrated, "STORE_UNAVAILABLE")
    assert "ConnectError" in migrated.stderr
    assert not (tmp_path / f"a.tar{PARTIAL_SUFFIX}").exists()


def test_the_compose_stack_backs_up_onto_a_volume() -> None:
    """Its root filesystem is read-only, so the default ./backups could not be written."""
    compose = yaml.safe_load((Path(__file__).resolve().parents[1] / "compose.yml").read_text())
    api = compose["services"]["api"]
    assert api["read_only"] is True
    backup_dir = Path(api["environment"]["BACKUP_DIR"])
    mounted = {Path(volume.split(":")[1]) for volume in api["volumes"]}
    assert any(backup_dir.is_relative_to(target) for target in mounted), (backup_dir, mounted)


def test_a_restore_into_a_collection_of_another_shape_is_one_line_and_writes_nothing(
    tmp_path: Path,
) -> None:
    """A DATA_DIR where a server started with another VECTOR_SIZE made the default
    collection: refused before anything is written, saying which collection."""
    archive = tmp_path / "a.tar"
    small_store(tmp_path / "data", archive)

    async def other_shape() -> None:
        store = EdgeStore(tmp_path / "target")
        await store.open()
        try:
            await store.create_collection("acme", "docs", 384, Distance.COSINE)
        finally:
            await store.close()

    asyncio.run(other_shape())
    one_line_failure(
        graph("restore", str(archive), DATA_DIR=str(tmp_path / "target")),
        "'docs' of tenant 'acme' has dimension 384 and cosine distance in the target, 4 and "
        "cosine in the archive",
    )
    catalog = (tmp_path / "target" / "catalog.json").read_text()
    assert '"dimension": 384' in catalog and catalog.count('"name"') == 1


@pytest.mark.parametrize("content", [b"", b"{", b"[1]", b"notes of mine"])
def test_migrate_refuses_a_checkpoint_it_did_not_write(tmp_path: Path, content: bytes) -> None:
    """An empty file (a crash) or another file named by --checkpoint: one line, and the file
    is neither read as progress nor overwritten."""
    small_store(tmp_path / "data")
    checkpoint = tmp_path / "checkpoint"
    checkpoint.write_bytes(content)
    target = tmp_path / "qdrant"
    result = graph(
        "migrate",
        "--to",
        f"path:{target}",
        "--checkpoint",
        str(checkpoint),
        DATA_DIR=str(tmp_path / "data"),
    )
    one_line_failure(result, f"{checkpoint} is not a migrate checkpoint")
    assert checkpoint.read_bytes() == content and not target.exists()


def test_a_local_mode_directory_in_use_is_one_line(tmp_path: Path, run: Runner) -> None:
    """QDRANT_URL=path:<dir> allows one process at a time, as a DATA_DIR does."""
    archive = tmp_path / "a.tar"
    small_store(tmp_path / "data", archive)
    held = RemoteStore.local(str(tmp_path / "qdrant"))
    run(held.open())  # qdrant-client's lock on the directory (an flock: per open file)
    try:
        url = f"path:{tmp_path / 'qdrant'}"
        message = f"QDRANT_URL {url} is in use by another process"
        one_line_failure(graph("restore", str(archive), QDRANT_URL=url), message)
        checkpoint = str(tmp_path / "checkpoint")
        migrated = graph(
            "migrate", "--to", url, "--checkpoint", checkpoint, DATA_DIR=str(tmp_path / "data")
        )
        one_line_failure(migrated, message)
    finally:
        run(held.close())


def full_disk() -> None:
    """In the child: writes past 3 MB fail (EFBIG), as on a full disk (ENOSPC), with no
    root-only mount; SIGXFSZ ignored, so the write fails rather than the process."""
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (3_000_000, resource.RLIM_INFINITY))


def test_a_restore_onto_a_full_disk_says_why_and_runs_again_once_there_is_room(
    tmp_path: Path,
) -> None:
    """The engine's own reason is in the one line (it is logged with the exception)."""
    archive = tmp_path / "a.tar"
    small_store(tmp_path / "data", archive)
    env = {**os.environ, "DATA_DIR": str(tmp_path / "target")}
    full = subprocess.run(
        [sys.executable, "-m", "graph", "restore", str(archive)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        preexec_fn=full_disk,
    )
    one_line_failure(full, "STORE_UNAVAILABLE")
    assert "File too large" in full.stderr
    assert not (tmp_path / "target" / "catalog.json").exists()
    again = graph("restore", str(archive), DATA_DIR=str(tmp_path / "target"))
    assert again.returncode == 0 and "restored 10 points" in again.stderr, again.stderr
