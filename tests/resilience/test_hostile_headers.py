"""How a request arrives, against a real server process on raw sockets: a header block
past MAX_HEADER_BYTES is refused (431) after reading about that much, a client that
trickles its headers is cut once HEADER_TIMEOUT_SECONDS have passed, one that trickles its
body gets 408 REQUEST_TIMEOUT once BODY_TIMEOUT_SECONDS have passed, a request that is not
HTTP gets 400 (each refusal with the JSON error body and request id every response has),
and meanwhile /healthz on another connection answers promptly."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest

from tests.process import ServerProcess

pytestmark = pytest.mark.slow

MAX_HEADER_BYTES = 16 * 1024
HEADER_TIMEOUT = 2.0
BODY_TIMEOUT = 2.0
# Wide safety nets for a busy 2-core machine: the refusal itself takes milliseconds.
REFUSAL_SECONDS = 2.0
PROBE_MAX_SECONDS = 1.0
# Sent before the server refuses: the limit plus what one socket read may hold past it.
MAX_SENT_BEFORE_REFUSAL = MAX_HEADER_BYTES + 4 * 1024 * 1024


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    base = tmp_path_factory.mktemp("headers")
    process = ServerProcess(
        base / "data",
        base / "server.log",
        LOG_LEVEL="WARNING",
        MAX_HEADER_BYTES=str(MAX_HEADER_BYTES),
        HEADER_TIMEOUT_SECONDS=str(HEADER_TIMEOUT),
        BODY_TIMEOUT_SECONDS=str(BODY_TIMEOUT),
    ).start()
    try:
        yield process
    finally:
        process.stop()


@dataclass
class HealthProbe:
    """GET /healthz every 20 ms on its own connection, until stopped."""

    url: str
    latencies: list[float] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        with httpx.Client(timeout=10) as client:
            while not self.stop.is_set():
                self.run_once(client)
                self.stop.wait(0.02)

    def run_once(self, client: httpx.Client | None = None) -> None:
        started = time.perf_counter()
        try:
            if (client or httpx).get(f"{self.url}/healthz").status_code != 200:
                self.failures.append("not 200")
        except httpx.HTTPError as error:
            self.failures.append(repr(error))
        self.latencies.append(time.perf_counter() - started)

    def __enter__(self) -> HealthProbe:
        self.thread = threading.Thread(target=self.run)
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.latencies and time.monotonic() < deadline:
            time.sleep(0.01)
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(timeout=30)
        self.stop.clear()
        self.run_once()
        assert not self.failures, self.failures[:3]
        assert self.latencies and max(self.latencies) < PROBE_MAX_SECONDS, max(self.latencies)


def read_reply(sock: socket.socket) -> bytes:
    reply = b""
    try:
        while chunk := sock.recv(65536):
            reply += chunk
    except (ConnectionResetError, TimeoutError):
        pass
    return reply


@pytest.mark.parametrize("where", ["one header", "many headers", "request line"])
def test_an_oversized_header_block_is_refused_quickly(server: ServerProcess, where: str) -> None:
    """Up to 100 MB offered; the server answers 431 and closes long before."""
    chunk = 256 * 1024
    start = {
        "one header": b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: ",
        "many headers": b"GET /healthz HTTP/1.1\r\nHost: x\r\n",
        "request line": b"GET /healthz?",
    }[where]
    filler = b"X-A: " + b"a" * 100 + b"\r\n" if where == "many headers" else b"a"
    block = filler * (chunk // len(filler))
    sent = 0
    with HealthProbe(server.url), socket.create_connection(("127.0.0.1", server.port)) as sock:
        sock.settimeout(REFUSAL_SECONDS + 5)
        started = time.perf_counter()
        try:
            sock.sendall(start)
            while sent < 100 * 1024 * 1024:
                sock.sendall(block)
                sent += len(block)
        except (BrokenPipeError, ConnectionResetError):
            pass
        reply = read_reply(sock)
        elapsed = time.perf_counter() - started
    assert elapsed < REFUSAL_SECONDS, elapsed
    assert sent < MAX_SENT_BEFORE_REFUSAL, sent
    assert reply == b"" or reply.startswith(b"HTTP/1.1 431"), reply[:200]


def header_block(size: int, where: str, keep_alive: bool = False) -> bytes:
    """A GET /healthz whose request line and headers, blank line included, are size bytes."""
    connection = b"keep-alive" if keep_alive else b"close"
    if where == "request line":
        head = b"GET /healthz?"
        tail = b" HTTP/1.1\r\nHost: x\r\nConnection: " + connection + b"\r\n\r\n"
    else:
        head = b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: " + connection + b"\r\nX-Big: "
        tail = b"\r\n\r\n"
    return head + b"a" * (size - len(head) - len(tail)) + tail


@pytest.mark.parametrize("where", ["one header", "request line"])
@pytest.mark.parametrize("after_a_request", [False, True], ids=["first", "kept alive"])
def test_the_header_bound_is_exact(
    server: ServerProcess, where: str, after_a_request: bool
) -> None:
    """A block of exactly MAX_HEADER_BYTES is served; one byte more is refused, though the
    whole block arrives in one read (it passed when the bound was counted per read)."""
    for size, served in ((MAX_HEADER_BYTES, True), (MAX_HEADER_BYTES + 1, False)):
        with socket.create_connection(("127.0.0.1", server.port)) as sock:
            sock.settimeout(REFUSAL_SECONDS + 5)
            if after_a_request:
                sock.sendall(header_block(200, where, keep_alive=True))
                first = b""
                while not first.endswith(b"}"):  # the whole of /healthz's JSON answer
                    first += sock.recv(65536)
                assert first.startswith(b"HTTP/1.1 200 OK"), first[:200]
            sock.sendall(header_block(size, where))
            reply = read_reply(sock)
        if served:
            assert reply.startswith(b"HTTP/1.1 200 OK"), reply[:200]
        else:
            status = b"HTTP/1.1 431 Request Header Fields Too Large"
            refusal_of(server, reply, status, "HEADERS_TOO_LARGE")


@pytest.mark.parametrize("first", [True, False], ids=["first request", "after a request"])
def test_a_client_trickling_its_headers_is_cut_within_the_bound(
    server: ServerProcess, first: bool
) -> None:
    with HealthProbe(server.url), socket.create_connection(("127.0.0.1", server.port)) as sock:
        sock.settimeout(HEADER_TIMEOUT + 10)
        if not first:  # a keep-alive connection that has been served once
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            served = b""
            while not served.endswith(b"}"):
                served += sock.recv(65536)
            assert served.startswith(b"HTTP/1.1 200"), served
        started = time.perf_counter()
        cut = False
        try:
            sock.sendall(b"GET /healthz HTTP/1.1\r\n")
            for n in range(int(HEADER_TIMEOUT * 10) + 100):  # a line every 0.1 s, 12 s at most
                sock.sendall(b"X-%d: a\r\n" % n)
                time.sleep(0.1)
        except (BrokenPipeError, ConnectionResetError):
            cut = True
        assert cut, "still connected after 12 s of trickling"
        reply = read_reply(sock)
        elapsed = time.perf_counter() - started
    assert reply == b"" or reply.startswith(b"HTTP/1.1 408"), reply[:200]
    assert HEADER_TIMEOUT * 0.9 < elapsed < HEADER_TIMEOUT + REFUSAL_SECONDS + 1, elapsed


def test_a_connection_that_never_sends_a_request_is_closed(server: ServerProcess) -> None:
    with socket.create_connection(("127.0.0.1", server.port)) as sock:
        sock.settimeout(HEADER_TIMEOUT + 10)
        started = time.perf_counter()
        reply = read_reply(sock)
        elapsed = time.perf_counter() - started
    assert reply == b"" or reply.startswith(b"HTTP/1.1 408"), reply[:200]
    assert elapsed < HEADER_TIMEOUT + REFUSAL_SECONDS, elapsed


def refusal_of(server: ServerProcess, reply: bytes, status: bytes, code: str) -> dict[str, Any]:
    """The refusal the protocol writes itself carries what every response does: the JSON
    error body with its code and request id, X-Request-ID, a log line with that id, a count
    by code. Returns the error."""
    head, headers, body = split_reply(reply)
    assert head == status, reply[:300]
    assert headers["connection"] == "close"
    assert headers["content-type"] == "application/json; charset=utf-8"
    (error,) = json.loads(body)["errors"]
    request_id = headers["x-request-id"]
    assert error["extensions"] == {"code": code, "requestId": request_id}
    logged = [json.loads(line) for line in server.log_lines()]
    assert [r for r in logged if r.get("request_id") == request_id and r["level"] == "WARNING"]
    metrics = httpx.get(f"{server.url}/metrics", timeout=10).text
    assert f'graphql_errors_total{{code="{code}"}} 0.0' not in metrics
    return dict(error)


def test_a_header_block_just_over_the_limit_gets_431(server: ServerProcess) -> None:
    with socket.create_connection(("127.0.0.1", server.port)) as sock:
        sock.settimeout(REFUSAL_SECONDS + 5)
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * MAX_HEADER_BYTES)
        reply = read_reply(sock)
    status = b"HTTP/1.1 431 Request Header Fields Too Large"
    error = refusal_of(server, reply, status, "HEADERS_TOO_LARGE")
    assert error["message"] == f"The request line and headers are over {MAX_HEADER_BYTES} bytes"


@pytest.mark.parametrize(
    "request_bytes",
    [
        b"NOT HTTP AT ALL\r\n\r\n",
        b"GET /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: many\r\n\r\n",
        b"POST /graphql HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
    ],
    ids=["not HTTP", "bad Content-Length", "bad chunk"],
)
def test_a_request_httptools_cannot_parse_gets_a_json_400(
    server: ServerProcess, request_bytes: bytes
) -> None:
    with socket.create_connection(("127.0.0.1", server.port)) as sock:
        sock.settimeout(REFUSAL_SECONDS + 5)
        sock.sendall(request_bytes)
        reply = read_reply(sock)
    error = refusal_of(server, reply, b"HTTP/1.1 400 Bad Request", "BAD_REQUEST")
    assert error["message"] == "Invalid HTTP request"


def trickle(sock: socket.socket, head: bytes, piece: bytes, seconds: float) -> bool:
    """head, then piece every 0.1 s for at most `seconds`: whether the server cut it."""
    try:
        sock.sendall(head)
        for _ in range(int(seconds * 10)):
            sock.sendall(piece)
            time.sleep(0.1)
    except (BrokenPipeError, ConnectionResetError):
        return True
    return False


def split_reply(reply: bytes) -> tuple[bytes, dict[str, str], bytes]:
    head, _, body = reply.partition(b"\r\n\r\n")
    status, *lines = head.split(b"\r\n")
    headers = dict(line.decode().lower().split(": ", 1) for line in lines)
    return status, headers, body


def test_a_client_trickling_its_body_gets_408_within_the_bound(server: ServerProcess) -> None:
    head = (
        b"POST /graphql HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"X-Request-ID: slow-body-1\r\nContent-Length: 10000\r\n\r\n{"
    )
    with HealthProbe(server.url), socket.create_connection(("127.0.0.1", server.port)) as sock:
        sock.settimeout(BODY_TIMEOUT + 10)
        started = time.perf_counter()
        cut = trickle(sock, head, b" ", BODY_TIMEOUT + 10)  # a byte every 0.1 s
        reply = read_reply(sock)
        elapsed = time.perf_counter() - started
    assert cut, "still connected after trickling for BODY_TIMEOUT + 10 s"
    assert BODY_TIMEOUT * 0.9 < elapsed < BODY_TIMEOUT + REFUSAL_SECONDS + 1, elapsed
    status, headers, body = split_reply(reply)
    assert status == b"HTTP/1.1 408 Request Timeout", reply[:200]
    assert headers["connection"] == "close"
    assert headers["x-request-id"] == "slow-body-1"
    (error,) = json.loads(body)["errors"]
    assert error["extensions"] == {"code": "REQUEST_TIMEOUT", "requestId": "slow-body-1"}
    assert "did not arrive within 2 seconds" in error["message"]
    # The application saw its client leave mid-body: no error logged, no trace anywhere.
    assert not [line for line in server.log_lines() if '"ERROR"' in line or "Traceback" in line]
    metrics = httpx.get(f"{server.url}/metrics", timeout=10).text
    assert 'graphql_errors_total{code="REQUEST_TIMEOUT"}' in metrics


def test_a_body_trickled_to_a_route_that_never_reads_it_is_cut(server: ServerProcess) -> None:
    """/healthz answers without reading; the body still has to arrive in time."""
    head = b"GET /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 10000\r\n\r\n"
    with socket.create_connection(("127.0.0.1", server.port)) as sock:
        sock.settimeout(BODY_TIMEOUT + 10)
        started = time.perf_counter()
        cut = trickle(sock, head, b"a", BODY_TIMEOUT + 10)
        reply = read_reply(sock)
        elapsed = time.perf_counter() - started
    assert cut, "still connected after trickling for BODY_TIMEOUT + 10 s"
    assert elapsed < BODY_TIMEOUT + REFUSAL_SECONDS + 1, elapsed
    assert reply == b"" or reply.startswith(b"HTTP/1.1 200"), reply[:200]


def test_a_slow_body_within_the_bound_is_served(server: ServerProcess) -> None:
    body = json.dumps({"query": "{ collections { name } }"}).encode()
    head = (
        b"POST /graphql HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Content-Length: %d\r\n\r\n" % len(body)
    )
    with socket.create_connection(("127.0.0.1", server.port)) as sock:
        sock.settimeout(30)
        sock.sendall(head)
        for k in range(3):  # three pieces over 0.4 s, a fifth of the bound
            sock.sendall(body[k * len(body) // 3 : (k + 1) * len(body) // 3])
            time.sleep(0.2)
        reply = b""
        while not reply.endswith(b"}"):
            reply += sock.recv(65536)
    status, _, answer = split_reply(reply)
    assert status == b"HTTP/1.1 200 OK", reply[:300]
    assert "errors" not in json.loads(answer)


def test_a_kept_alive_connection_is_not_cut_after_a_whole_body(server: ServerProcess) -> None:
    """The body's clock stops at its last byte: idle past BODY_TIMEOUT (within uvicorn's
    5 s keep-alive), the connection still serves the next request."""
    with httpx.Client(base_url=server.url, timeout=30) as client:
        first = client.post("/graphql", json={"query": "{ collections { name } }"})
        assert first.status_code == 200
        time.sleep(BODY_TIMEOUT + 1)
        second = client.post("/graphql", json={"query": "{ collections { name } }"})
        assert second.status_code == 200
        assert second.extensions["network_stream"] is first.extensions["network_stream"]


@pytest.mark.parametrize("path", ["/graphql", "/mcp", "/healthz"])
def test_a_websocket_upgrade_is_answered_as_http_with_a_request_id(
    server: ServerProcess, path: str
) -> None:
    """No route speaks WebSocket: uvicorn's WebSocket path answered an upgrade with a bare
    403 (no X-Request-ID, no JSON) and logged that no WebSocket library was installed."""
    request = (
        f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: Upgrade, close\r\n"
        "Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\n"
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nAccept: application/json\r\n\r\n"
    ).encode()
    with socket.create_connection(("127.0.0.1", server.port)) as sock:
        sock.settimeout(REFUSAL_SECONDS + 5)
        sock.sendall(request)
        reply = read_reply(sock)
    status, headers, _ = split_reply(reply)
    assert not status.startswith(b"HTTP/1.1 101"), reply[:200]
    assert status != b"HTTP/1.1 403 Forbidden", reply[:200]
    assert len(headers.get("x-request-id", "")) == 32, reply[:300]
    assert not [line for line in server.log_lines() if "upgrade" in line.lower()]
