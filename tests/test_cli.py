"""The `graph` command as operators run it: a real process, its exit status and its stderr."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from graph.settings import Settings


def graph(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    environment = {k: v for k, v in os.environ.items() if k != "AUTH_API_KEYS_FILE"}
    environment.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "graph", *args],
        capture_output=True,
        text=True,
        env=environment,
        timeout=120,
    )


def fails_with_one_line(result: subprocess.CompletedProcess[str], *expected: str) -> str:
    assert result.returncode == 1, result
    assert "Traceback" not in result.stderr, result.stderr
    assert result.stderr.count("\n") == 1, result.stderr
    for text in expected:
        assert text in result.stderr, result.stderr
    return result.stderr


CORRUPT = {
    "not-json": b"not json {",
    "not-utf8": b"\xff\x00\xfe",
    "a-list": b"[]",
    "keys-an-object": b'{"keys": {}}',
    "a-string-key": b'{"keys": ["x"]}',
    "scopes-a-string": (
        b'{"keys": [{"id": "a", "tenant": "t", "scopes": "read", "hash": "h", "created": "c"}]}'
    ),
    "id-a-number": (
        b'{"keys": [{"id": 1, "tenant": "t", "scopes": ["read"], "hash": "h", "created": "c"}]}'
    ),
}
CASES = [(name, ["list"]) for name in CORRUPT] + [
    ("not-json", ["create", "--tenant", "acme"]),
    ("scopes-a-string", ["create", "--tenant", "acme"]),
    ("not-json", ["revoke", "abc"]),
    ("a-list", ["revoke", "abc"]),
]


@pytest.mark.parametrize(("content", "action"), CASES, ids=[f"{c}-{a[0]}" for c, a in CASES])
def test_a_corrupt_key_file_is_one_line_and_status_1(
    tmp_path: Path, content: str, action: list[str]
) -> None:
    path = tmp_path / "keys.json"
    path.write_bytes(CORRUPT[content])
    stderr = fails_with_one_line(graph("keys", "--file", str(path), *action), str(path))
    assert stderr.startswith(f"graph keys {action[0]}: ")
    assert path.read_bytes() == CORRUPT[content]  # nothing written


def test_file_goes_before_or_after_the_action(tmp_path: Path) -> None:
    before, after = tmp_path / "before.json", tmp_path / "after.json"
    created = graph("keys", "--file", str(before), "create", "--tenant", "acme")
    assert created.returncode == 0, created.stderr
    created = graph("keys", "create", "--tenant", "globex", "--file", str(after))
    assert created.returncode == 0, created.stderr
    assert [k["tenant"] for k in json.loads(before.read_text())["keys"]] == ["acme"]
    assert [k["tenant"] for k in json.loads(after.read_text())["keys"]] == ["globex"]
    listed = graph("keys", "list", "--file", str(before))
    assert listed.returncode == 0 and "\tacme\tread\t" in listed.stdout
    listed = graph("keys", "--file", str(after), "list")
    assert listed.returncode == 0 and "\tglobex\tread\t" in listed.stdout
    # Given on both sides, the one after the action wins, as the later option does.
    listed = graph("keys", "--file", str(before), "list", "--file", str(after))
    assert "globex" in listed.stdout and "acme" not in listed.stdout


def test_file_from_the_environment(tmp_path: Path) -> None:
    path = tmp_path / "keys.json"
    env = {"AUTH_API_KEYS_FILE": str(path)}
    assert graph("keys", "create", "--tenant", "acme", env=env).returncode == 0
    assert "\tacme\t" in graph("keys", "list", env=env).stdout


def test_no_key_file_named() -> None:
    fails_with_one_line(
        graph("keys", "list"), "graph keys list: set AUTH_API_KEYS_FILE or pass --file"
    )


@pytest.mark.parametrize("action", [["list"], ["revoke", "abc"]])
def test_a_missing_key_file_is_said_so(tmp_path: Path, action: list[str]) -> None:
    path = tmp_path / "absent.json"
    fails_with_one_line(
        graph("keys", "--file", str(path), *action),
        f"graph keys {action[0]}: no key file at {path}",
    )
    assert not path.exists()


def test_an_unreadable_key_file_is_one_line(tmp_path: Path) -> None:
    # A directory where the file should be: the same error for root, which reads anything.
    fails_with_one_line(graph("keys", "--file", str(tmp_path), "list"), str(tmp_path))


@pytest.mark.parametrize(
    ("scopes", "message"),
    [
        ("foo", "unknown scope 'foo'; scopes are read, write, admin"),
        ("read,foo,bar", "unknown scopes 'foo', 'bar'; scopes are read, write, admin"),
        (",", "no scope given; scopes are read, write, admin"),
    ],
)
def test_scope_errors_name_the_scopes_in_words(tmp_path: Path, scopes: str, message: str) -> None:
    path = tmp_path / "keys.json"
    result = graph("keys", "--file", str(path), "create", "--tenant", "acme", "--scopes", scopes)
    stderr = fails_with_one_line(result, f"graph keys create: {message}")
    assert "[" not in stderr
    assert not path.exists()


def test_revoking_an_unknown_key(tmp_path: Path) -> None:
    path = tmp_path / "keys.json"
    assert graph("keys", "--file", str(path), "create", "--tenant", "acme").returncode == 0
    fails_with_one_line(graph("keys", "--file", str(path), "revoke", "nope"), "no key nope")


def test_serve_help_lists_every_setting_with_default_and_meaning() -> None:
    result = graph("serve", "--help")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    for name, default, meaning in Settings.described():
        row = [line for line in lines if line.split()[:1] == [name]]
        assert len(row) == 1, (name, result.stdout)
        assert meaning and meaning in row[0] and f"(default: {default})" in row[0], row
    assert "  PORT " in result.stdout and "(default: 8000)" in result.stdout
    assert "(default: unset)" in result.stdout


def test_every_setting_has_a_description() -> None:
    assert [name for name, _, meaning in Settings.described() if not meaning.strip()] == []


# Settings every command reads, then those the HTTP app checks when it is made.
SETTINGS_REFUSED = [
    ("DISTANCE", "manhattan", "DISTANCE: Input should be 'cosine', 'dot' or 'euclid'"),
    ("VECTOR_SIZE", "abc", "VECTOR_SIZE: Input should be a valid integer"),
    ("PORT", "70000", "PORT: Input should be less than or equal to 65535"),
    ("LOG_LEVEL", "LOUD", "LOG_LEVEL: Value error, must be one of DEBUG, INFO"),
]
APP_REFUSED = [
    ("COLLECTION", "bad name!", "COLLECTION 'bad name!': Collection name must be"),
    ("RATE_LIMIT", "0/second", "RATE_LIMIT '0/second' must allow at least one request"),
    ("EMBEDDER", "bogus:x", "EMBEDDER='bogus:x' is not understood"),
    ("EMBEDDER", "openai:m", "EMBEDDER=openai:m needs EMBED_URL"),
]


@pytest.mark.parametrize(
    ("command", "setting", "value", "named"),
    [("serve", *case) for case in SETTINGS_REFUSED + APP_REFUSED]
    + [("mcp", *case) for case in SETTINGS_REFUSED + APP_REFUSED[2:]],
)
def test_a_setting_it_cannot_start_with_is_one_json_line_and_status_2(
    tmp_path: Path, command: str, setting: str, value: str, named: str
) -> None:
    result = graph(command, env={setting: value, "DATA_DIR": str(tmp_path)})
    assert result.returncode == 2, result
    assert "Traceback" not in result.stderr + result.stdout, result.stderr
    (line,) = [json.loads(text) for text in result.stderr.splitlines()]
    assert line["level"] == "CRITICAL" and line["logger"] == "graph.app"
    assert line["message"].startswith("Cannot start: ") and named in line["message"], line
    assert not list(tmp_path.iterdir()), "nothing is made before the settings are known"


@pytest.mark.parametrize(
    ("host", "reason"), [("999.1.1.1", "Name or service not known"), ("a..b", "not a host name")]
)
def test_a_host_it_cannot_listen_on_is_refused_before_anything_starts(
    tmp_path: Path, host: str, reason: str
) -> None:
    """uvicorn would start the application, open the store, then log only the resolver's
    words without naming HOST."""
    result = graph("serve", env={"HOST": host, "PORT": "0", "DATA_DIR": str(tmp_path)})
    assert result.returncode == 2, result
    assert "Traceback" not in result.stderr + result.stdout, result.stderr
    (line,) = [json.loads(text) for text in result.stderr.splitlines()]
    assert line["level"] == "CRITICAL"
    assert line["message"] == f"Cannot start: HOST: cannot listen on {host!r}: {reason}"
    assert not list(tmp_path.iterdir()), "the store is not opened"


@pytest.mark.parametrize(
    "command", [["restore", "backup.tar"], ["migrate", "--to", "http://127.0.0.1:9"]]
)
@pytest.mark.parametrize(("setting", "value", "named"), SETTINGS_REFUSED[:2])
def test_restore_and_migrate_name_a_bad_setting_in_one_line(
    tmp_path: Path, command: list[str], setting: str, value: str, named: str
) -> None:
    result = graph(*command, env={setting: value, "DATA_DIR": str(tmp_path)})
    assert fails_with_one_line(result, named).startswith(f"graph {command[0]}: ")


@pytest.mark.parametrize(
    "command", [["schema"], ["keys", "create", "--tenant", "acme"], ["keys", "list"]]
)
def test_a_failed_write_to_stdout_is_one_line(tmp_path: Path, command: list[str]) -> None:
    key_file = tmp_path / "keys.json"
    if command[-1] == "list":
        assert graph("keys", "--file", str(key_file), "create", "--tenant", "acme").returncode == 0
    args = command if command == ["schema"] else ["keys", "--file", str(key_file), *command[1:]]
    with open("/dev/full", "w") as full:
        result = subprocess.run(
            [sys.executable, "-m", "graph", *args],
            stdout=full,
            stderr=subprocess.PIPE,
            text=True,
            timeout=120,
        )
    assert result.returncode == 1, result
    assert "Traceback" not in result.stderr and "Exception ignored" not in result.stderr
    assert "cannot write to stdout: No space left on device" in result.stderr or (
        "could not show the key" in result.stderr
    ), result.stderr
    if command[1:2] == ["create"]:
        # The key nobody saw is not left valid.
        listed = graph("keys", "--file", str(key_file), "list")
        assert listed.returncode == 0 and listed.stdout == "", listed


def test_a_lower_case_log_level_is_understood() -> None:
    assert Settings(log_level="debug").telemetry.log_level == "DEBUG"


@pytest.mark.parametrize("problem", ["in use", "a file"])
def test_a_data_dir_it_cannot_open_is_one_json_line_and_no_traceback(
    tmp_path: Path, problem: str
) -> None:
    """Found while starting (the store opens in the application's start-up): one
    `Cannot start` line, then uvicorn's own line, and its start-up failure status, 3."""
    from graph.store.edge.layout import take_lock

    data_dir = tmp_path / "data"
    if problem == "in use":
        data_dir.mkdir()
        lock = take_lock(data_dir)  # as a running server holds it
    else:
        data_dir.write_text("not a directory")
    try:
        result = graph("serve", env={"DATA_DIR": str(data_dir), "PORT": "0"})
    finally:
        if problem == "in use":
            os.close(lock)
    assert result.returncode == 3, result
    assert "Traceback" not in result.stderr + result.stdout, result.stderr
    lines = [json.loads(text) for text in result.stderr.splitlines()]
    refused = [line for line in lines if line["message"].startswith("Cannot start: ")]
    assert len(refused) == 1 and refused[0]["level"] == "CRITICAL", lines
    assert str(data_dir) in refused[0]["message"]
    assert "DATA_DIR" in refused[0]["message"]  # the line names the setting, as README says
    assert lines[-1]["message"] == "Application startup failed. Exiting."


def refused_by_embedder(
    command: str, url: str, tmp_path: Path
) -> tuple[subprocess.CompletedProcess[str], str]:
    """`graph <command>` with EMBEDDER openai:m at url; the result and its one `Cannot
    start` line (a start-up failure of the embedder refuses the start, as README says)."""
    secret = "secret-value-123"
    env = {
        "EMBEDDER": "openai:m",
        "EMBED_URL": url,
        "EMBED_API_KEY": secret,
        "EMBED_TIMEOUT_SECONDS": "5",
        "VECTOR_SIZE": "4",
        "DATA_DIR": str(tmp_path / "data"),
        "PORT": "0",
    }
    result = subprocess.run(
        [sys.executable, "-m", "graph", command],
        input="",
        capture_output=True,
        text=True,
        env={**os.environ, **env},
        timeout=120,
    )
    output = result.stderr + result.stdout
    assert "Traceback" not in output, output
    assert secret not in output, output
    lines = [json.loads(text) for text in result.stderr.splitlines()]
    refused = [line for line in lines if line["message"].startswith("Cannot start: ")]
    assert len(refused) == 1 and refused[0]["level"] == "CRITICAL", lines
    assert refused[0]["logger"] == "graph.app"
    if command == "serve":
        assert result.returncode == 3, result  # found as the application starts
        assert lines[-1]["message"] == "Application startup failed. Exiting."
    else:
        assert result.returncode == 2, result
    assert not (tmp_path / "data").exists(), "the store is not opened"
    return result, refused[0]["message"]


@pytest.mark.parametrize("command", ["serve", "mcp"])
def test_an_embedder_it_cannot_reach_is_one_cannot_start_line(tmp_path: Path, command: str) -> None:
    import socket

    with socket.socket() as closed:  # bound, never listening: the connection is refused
        closed.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{closed.getsockname()[1]}/v1"
        _, message = refused_by_embedder(command, url, tmp_path)
    assert message == (
        f"Cannot start: EMBEDDER openai:m: EMBED_URL {url} did not embed a probe text: "
        "connection refused (4 attempts)"
    )


@pytest.mark.parametrize("command", ["serve", "mcp"])
def test_an_embedder_that_answers_500_is_one_cannot_start_line(
    tmp_path: Path, command: str
) -> None:
    from http.server import BaseHTTPRequestHandler

    from tests.helpers import stand_in_http

    class Failing(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("content-length", 0)))
            self.send_response(500)
            self.send_header("content-type", "application/json")
            self.end_headers()
            self.wfile.write(b'{"error": "the model crashed"}')

        def log_message(self, format: str, *args: object) -> None:
            pass

    with stand_in_http(Failing) as base:
        _, message = refused_by_embedder(command, f"{base}/v1", tmp_path)
    assert message == (
        f"Cannot start: EMBEDDER openai:m: EMBED_URL {base}/v1 did not embed a probe text: "
        "HTTP 500 Internal Server Error (4 attempts)"
    )
    assert "the model crashed" not in message
