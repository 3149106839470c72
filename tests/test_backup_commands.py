"""`graph backup`, `graph restore` and `graph migrate` as an operator runs them: real
processes, a real server on 127.0.0.1, kill -9 in the middle, and the restore drill.

qdrant-client's local mode, persisted under a directory (QDRANT_URL=path:<dir>), stands
in for a Qdrant server where the tests need one."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import orjson
from starlette.testclient import TestClient

from graph.app import create_app
from graph.security.keys import ApiKeyFile
from graph.settings import Distance
from graph.store.backup.archive import PARTIAL_SUFFIX
from graph.store.backup.transfer import backup
from graph.store.base import VectorStore
from graph.store.edge import EdgeStore
from graph.store.models import Point
from graph.store.remote import RemoteStore
from tests.conftest import make_settings
from tests.helpers import UPSERT, gql
from tests.process import ServerProcess
from tests.store.test_backup import everything, fill, same

COMMAND_SECONDS = 300
BACKUP = "mutation B($path: String) { backup(path: $path) { path points collections } }"


def graph(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "graph", *args],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=COMMAND_SECONDS,
    )


def one_line_failure(result: subprocess.CompletedProcess[str], message: str) -> None:
    assert result.returncode == 1, result
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], result.stderr


def snapshot(store: VectorStore) -> Any:
    async def read() -> Any:
        await store.open()
        try:
            return await everything(store)
        finally:
            await store.close()

    return asyncio.run(read())


def filled(data_dir: Path) -> Any:
    async def go() -> Any:
        store = EdgeStore(data_dir)
        await store.open()
        try:
            await fill(store, points=150, memories=60)
            # The open tenant's default collection, which a server answers for.
            await store.create_collection("default", "memories", 4, Distance.COSINE)
            await store.upsert(
                "default", "memories", [Point(i, [1.0, i, 2.0, 3.0]) for i in range(40)]
            )
            return await everything(store)
        finally:
            await store.close()

    return asyncio.run(go())


def migrate_killed_then_resumed(
    tmp_path: Path, way: str, url: str, data_dir: Path, *, twice: bool = False
) -> None:
    """Run the migrate, kill -9 it once its checkpoint shows progress, run it again (and
    once more from the start when twice). qdrant-client's local mode persisted to a
    directory writes about 50 points/s, hence the small data set."""
    checkpoint = tmp_path / f"{way}.checkpoint"
    args = [sys.executable, "-m", "graph", "migrate", way, url, "--checkpoint", str(checkpoint)]
    env = {**os.environ, "DATA_DIR": str(data_dir), "BACKUP_PAGE_POINTS": "10"}
    process = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + COMMAND_SECONDS
        while time.monotonic() < deadline and process.poll() is None:
            if checkpoint.is_file() and orjson.loads(checkpoint.read_bytes())["copied"] >= 40:
                break
            time.sleep(0.01)
        assert process.poll() is None, "the migrate ended before it could be killed"
        process.send_signal(signal.SIGKILL)
    finally:
        process.kill()
        process.wait(timeout=30)
        assert process.stderr is not None
        process.stderr.close()
    copied = orjson.loads(checkpoint.read_bytes())["copied"]
    resumed = graph("migrate", way, url, "--checkpoint", str(checkpoint), **env)
    assert resumed.returncode == 0, resumed.stderr
    assert f"resumed at {copied}" in resumed.stderr and "verified" in resumed.stderr
    assert "points/s" in resumed.stderr  # the progress bar's rate and the summary's
    assert not checkpoint.exists()
    if twice:  # idempotent: once more from the start gives the same state
        again = graph("migrate", way, url, "--checkpoint", str(checkpoint), **env)
        assert again.returncode == 0 and "resumed" not in again.stderr, again.stderr


NEAREST = "query { query(vector: [1, 7, 2, 3], limit: 5) { id score payload } }"


def nearest(tmp_path: Path, data_dir: Path, **env: str) -> list[tuple[str, float]]:
    """What a server started on this store answers to NEAREST."""
    server = ServerProcess(data_dir, tmp_path / "server.log", **env).start()
    try:
        hits = server.gql(NEAREST)["data"]["query"]
    finally:
        server.stop()
    assert len(hits) == 5
    return [(hit["id"], round(hit["score"], 4)) for hit in hits]


def test_migrate_both_ways_survives_kill_9_and_resumes(tmp_path: Path) -> None:
    source = filled(tmp_path / "data")
    before = nearest(tmp_path, tmp_path / "data")
    server = tmp_path / "qdrant"
    migrate_killed_then_resumed(tmp_path, "--to", f"path:{server}", tmp_path / "data")
    assert same(snapshot(RemoteStore.local(str(server))), source)
    assert nearest(tmp_path, tmp_path / "unused", QDRANT_URL=f"path:{server}") == before
    back = tmp_path / "back"
    migrate_killed_then_resumed(tmp_path, "--from", f"path:{server}", back, twice=True)
    assert same(snapshot(EdgeStore(back)), source)
    assert nearest(tmp_path, back) == before


def test_restore_refuses_in_one_line(tmp_path: Path) -> None:
    filled(tmp_path / "data")
    archive = tmp_path / "a.tar"

    async def take() -> None:
        store = EdgeStore(tmp_path / "data")
        await store.open()
        try:
            from graph.store.backup.transfer import backup

            await backup(store, archive)
        finally:
            await store.close()

    asyncio.run(take())
    one_line_failure(graph("restore", str(archive), DATA_DIR=str(tmp_path / "data")), "--force")
    one_line_failure(
        graph("restore", str(tmp_path / "none.tar"), DATA_DIR=str(tmp_path / "none")), "no archive"
    )
    fresh = graph("restore", str(archive), DATA_DIR=str(tmp_path / "fresh"))
    assert fresh.returncode == 0 and "verified" in fresh.stderr, fresh.stderr
    raw = bytearray(archive.read_bytes())
    raw[600] ^= 1
    archive.write_bytes(bytes(raw))
    one_line_failure(graph("restore", str(archive), DATA_DIR=str(tmp_path / "other")), "corrupted")
    assert not (tmp_path / "other" / "catalog.json").exists()


def test_a_restore_killed_halfway_is_refused_then_completed_with_force(tmp_path: Path) -> None:
    """What docs/backup.md tells the operator: the points written so far stay, a second run
    is refused as for any store holding points, and --force writes the archive's points
    again by their stored ids, which gives the whole archive."""
    archive = tmp_path / "a.tar"

    async def take() -> Any:
        store = EdgeStore(tmp_path / "data")
        await store.open()
        try:
            await fill(store, points=30_000, memories=60)
            await backup(store, archive, page_points=200)
            return await everything(store)
        finally:
            await store.close()

    source = asyncio.run(take())
    env = {**os.environ, "DATA_DIR": str(tmp_path / "target")}
    process = subprocess.Popen(
        [sys.executable, "-m", "graph", "restore", str(archive)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    assert process.stderr is not None
    try:
        # The progress bar (on stderr once the restore has run half a second) shows points
        # written: kill -9 then.
        seen = b""
        while b"/30060 [" not in seen or b" 0/30060" in seen.rsplit(b"\r", 1)[-1]:
            byte = process.stderr.read(1)
            assert byte, f"the restore ended before it could be killed: {seen!r}"
            seen += byte
        assert process.poll() is None, "the restore ended before it could be killed"
        process.send_signal(signal.SIGKILL)
    finally:
        process.kill()
        process.wait(timeout=30)
        process.stderr.close()
    again = graph("restore", str(archive), **env)
    one_line_failure(again, "already holds points (--force to merge)")
    forced = graph("restore", str(archive), "--force", **env)
    assert forced.returncode == 0 and "restored 30060 points" in forced.stderr, forced.stderr
    assert same(snapshot(EdgeStore(tmp_path / "target")), source)


def test_the_backup_mutation_needs_admin_and_a_plain_name(tmp_path: Path) -> None:
    keys = ApiKeyFile(tmp_path / "keys.json")
    admin, _ = keys.create("acme", ["read", "write", "admin"])
    writer, _ = keys.create("acme", ["read", "write"])
    settings = make_settings(
        tmp_path, auth_api_keys_file=tmp_path / "keys.json", backup_dir=tmp_path / "backups"
    )
    with TestClient(create_app(settings)) as client:
        as_admin = {"Authorization": f"Bearer {admin}"}
        gql(client, BACKUP, {"path": "x.tar"}, Authorization=f"Bearer {writer}").assert_error(
            "FORBIDDEN"
        )
        for path in ("../x.tar", "/tmp/x.tar", "a/b.tar"):
            error = gql(client, BACKUP, {"path": path}, **as_admin).assert_error("BAD_USER_INPUT")
            assert "BACKUP_DIR" in error["message"]
        done = gql(client, BACKUP, {"path": "x.tar"}, **as_admin).data["backup"]
        assert done["path"] == "x.tar" and done["collections"] >= 1 and done["points"] == 0
        gql(client, BACKUP, {"path": "x.tar"}, **as_admin).assert_error("ALREADY_EXISTS")
    assert sorted(p.name for p in (tmp_path / "backups").iterdir()) == ["x.tar"]
    assert not (tmp_path / "x.tar").exists() and not Path("/tmp/x.tar").exists()


class WriteLoad:
    """Upserts of new ids, one at a time, bounded in time and count; remembers which were
    acknowledged, and from when."""

    def __init__(self, url: str, first_id: int, seconds: float = 120, most: int = 20_000) -> None:
        self.url = url
        self.next_id = first_id
        self.acked: list[tuple[float, int]] = []
        self.failures = 0
        self._stop = threading.Event()
        self._deadline = time.monotonic() + seconds
        self._most = most
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        with httpx.Client(timeout=30) as http:
            while not self._stop.is_set() and time.monotonic() < self._deadline:
                if len(self.acked) >= self._most:
                    break
                i = self.next_id
                self.next_id += 1
                body = {
                    "query": UPSERT,
                    "variables": {"points": [{"id": i, "vector": [1.0, 2.0, 3.0, float(i)]}]},
                }
                try:
                    answer = http.post(f"{self.url}/graphql", json=body).json()
                except (httpx.HTTPError, ValueError):
                    self.failures += 1
                    time.sleep(0.05)
                    continue
                if answer.get("data"):
                    self.acked.append((time.monotonic(), i))
                else:
                    self.failures += 1

    def __enter__(self) -> WriteLoad:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(timeout=30)

    def acked_before(self, moment: float) -> list[int]:
        return [i for at, i in list(self.acked) if at < moment]


def preload(server: ServerProcess, points: int) -> None:
    for start in range(0, points, 500):
        batch = [{"id": i, "vector": [1.0, 0.0, 1.0, float(i)]} for i in range(start, start + 500)]
        assert server.gql(UPSERT, {"points": batch})["data"]["upsert"]["upserted"] == 500


def restored_ids(data_dir: Path) -> set[int]:
    found = snapshot(EdgeStore(data_dir))
    return {int(p.payload["_id"]) for p in found[("default", "memories")]}


def test_restore_drill(tmp_path: Path) -> None:
    backups = tmp_path / "backups"
    data = tmp_path / "data"
    env = {"BACKUP_DIR": str(backups), "BACKUP_PAGE_POINTS": "5"}
    server = ServerProcess(data, tmp_path / "server.log", **env).start()
    try:
        preload(server, 3_000)
        # 1. kill -9 the server while a backup runs under a write load.
        with WriteLoad(server.url, 100_000) as load:
            while len(load.acked) < 20:
                time.sleep(0.01)
            backup = subprocess.Popen(
                [sys.executable, "-m", "graph", "backup", "--url", server.url, "--path", "cut.tar"],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            partial = backups / f"cut.tar{PARTIAL_SUFFIX}"
            deadline = time.monotonic() + COMMAND_SECONDS
            while time.monotonic() < deadline:
                if partial.is_file() and partial.stat().st_size > 50_000:
                    break
                assert backup.poll() is None, backup.communicate()
                time.sleep(0.005)
            server.kill9()
            out, err = backup.communicate(timeout=COMMAND_SECONDS)
            acked_before_kill = [i for _, i in load.acked]
            sent_before_kill = load.next_id - 100_000
        assert backup.returncode == 1 and "Traceback" not in err, (out, err)
        assert not (backups / "cut.tar").exists()
        # Restarted, the server has every point it acknowledged.
        server = ServerProcess(data, tmp_path / "server.log", **env).start()
        count = server.gql("query { count }")["data"]["count"]
        # Every acknowledged write is there (checked id by id in the archive below); the
        # write in flight at the kill may be there too, durable but never acknowledged.
        assert 3_000 + len(set(acked_before_kill)) <= count <= 3_000 + sent_before_kill, count
        # The half-written archive is refused as incomplete, and nothing is written.
        one_line_failure(
            graph("restore", str(partial), DATA_DIR=str(tmp_path / "cut")), "incomplete"
        )
        assert not (tmp_path / "cut" / "catalog.json").exists()

        # 2. a backup under the same load completes, and restores into a fresh DATA_DIR.
        with WriteLoad(server.url, 200_000) as load:
            while len(load.acked) < 20:
                time.sleep(0.01)
            began = time.monotonic()
            done = graph("backup", "--url", server.url, "--path", "good.tar")
            during = len(load.acked_before(time.monotonic())) - len(load.acked_before(began))
            before = load.acked_before(began)
        assert done.returncode == 0, done.stderr
        assert during > 0, "no write was acknowledged while the backup ran"
        assert load.failures == 0
        assert server.terminate() == 0
    finally:
        server.stop()
    restored = graph("restore", str(backups / "good.tar"), DATA_DIR=str(tmp_path / "fresh"))
    assert restored.returncode == 0, restored.stderr
    ids = restored_ids(tmp_path / "fresh")
    assert set(range(3_000)) | set(acked_before_kill) | set(before) <= ids
    # Nothing in the archive that the server never had.
    assert ids <= restored_ids(data)
