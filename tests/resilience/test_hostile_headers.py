"""Request headers against a real server process on raw sockets: a header block past
MAX_HEADER_BYTES is refused (431) after reading about that much, a client that trickles
its headers is cut once HEADER_TIMEOUT_SECONDS have passed, and meanwhile /healthz on
another connection answers promptly."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import httpx
import pytest

from tests.process import ServerProcess

pytestmark = pytest.mark.slow

MAX_HEADER_BYTES = 16 * 1024
HEADER_TIMEOUT = 2.0
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


def test_headers_just_under_the_limit_are_served(server: ServerProcess) -> None:
    big = "a" * (MAX_HEADER_BYTES - 1024)
    response = httpx.get(f"{server.url}/healthz", headers={"x-big": big}, timeout=10)
    assert response.status_code == 200


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


def test_a_header_block_just_over_the_limit_gets_431(server: ServerProcess) -> None:
    with socket.create_connection(("127.0.0.1", server.port)) as sock:
        sock.settimeout(REFUSAL_SECONDS + 5)
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * MAX_HEADER_BYTES)
        reply = read_reply(sock)
    assert reply.startswith(b"HTTP/1.1 431 "), reply[:200]
    assert reply.endswith(b"Request header fields too large\n")
