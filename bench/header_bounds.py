"""What the header bounds cost: uvicorn's httptools protocol against
graph.serving.BoundedHttpToolsProtocol (and h11, for reference).

    .venv/bin/python -m bench.header_bounds --protocol-only --rounds 15
        in process: the protocol alone, a keep-alive connection fed a typical GraphQL
        request and answered by a trivial ASGI app; CPU time per request, interleaved
        rounds, medians. Contention from other processes barely moves CPU time.
    .venv/bin/python -m bench.header_bounds --rounds 5 --seconds 5
        end to end: the memory server under each protocol, driven by k6 with
        bench/k6/query.js; requests per second and server CPU per request.

Not part of the test suite; docs/hardening.md has the numbers.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.run import _stat_cpu_seconds, free_port, k6_binary

HERE = Path(__file__).parent
PROTOCOLS = ("httptools", "bounded", "h11")
DIMENSION = 4


def serve(protocol: str, port: int, data_dir: str) -> None:
    import uvicorn

    from graph.app import create_app
    from graph.serving import BoundedHttpToolsProtocol
    from graph.settings import Settings

    settings = Settings(data_dir=data_dir, vector_size=DIMENSION, log_level="WARNING")
    http: str | type = protocol
    if protocol == "bounded":
        http = BoundedHttpToolsProtocol.bounded(
            settings.limits.max_header_bytes, settings.limits.header_timeout_seconds
        )
    uvicorn.run(
        create_app(settings),
        host="127.0.0.1",
        port=port,
        http=http,
        log_level="warning",
        access_log=False,
    )


def post(url: str, body: dict[str, object]) -> None:
    request = urllib.request.Request(
        url, json.dumps(body).encode(), {"content-type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        assert "errors" not in json.load(response)


def start(protocol: str, work: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "bench.header_bounds", "--serve", protocol, str(port)],
        env={**os.environ, "LOG_LEVEL": "WARNING", "DATA_DIR": str(work / protocol)},
    )
    url = f"http://127.0.0.1:{port}/graphql"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=1).close()
            break
        except OSError:
            time.sleep(0.2)
    points = [{"id": i, "vector": [1, i % 7, 0, 1], "payload": {"n": i}} for i in range(200)]
    upsert = "mutation U($p: [PointInput!]!) { upsert(points: $p) { upserted } }"
    post(url, {"query": upsert, "variables": {"p": points}})
    return process, url


def k6_rate(url: str, pid: int, seconds: float, vus: int, work: Path) -> tuple[float, float]:
    """Requests per second, and the server's CPU microseconds per request."""
    summary = work / "summary.json"
    cpu_before = _stat_cpu_seconds(f"/proc/{pid}/stat")
    subprocess.run(
        [
            k6_binary(),
            "run",
            "--quiet",
            "--summary-export",
            str(summary),
            str(HERE / "k6" / "query.js"),
        ],
        env={
            **os.environ,
            "URL": url,
            "VECTOR_SIZE": str(DIMENSION),
            "LIMIT": "3",
            "VUS": str(vus),
            "DURATION": f"{seconds}s",
        },
        check=True,
        capture_output=True,
    )
    cpu = _stat_cpu_seconds(f"/proc/{pid}/stat") - cpu_before
    reqs = json.loads(summary.read_text())["metrics"]["http_reqs"]
    return reqs["rate"], cpu / reqs["count"] * 1e6


REQUEST = (
    b"POST /graphql HTTP/1.1\r\nHost: 127.0.0.1:8000\r\nUser-Agent: k6/1.0\r\n"
    b"Content-Type: application/json\r\nAuthorization: Bearer " + b"x" * 180 + b"\r\n"
    b"Content-Length: 120\r\n\r\n" + b"{" + b" " * 118 + b"}"
)


class _Transport(asyncio.Transport):
    def __init__(self, answered: Callable[[], None]) -> None:
        super().__init__()
        self.answered = answered
        self.closed = False

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if bytes(data).endswith(b"ok"):
            self.answered()

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"sockname": ("127.0.0.1", 8000), "peername": ("127.0.0.1", 5000)}.get(name)

    def is_closing(self) -> bool:
        return False

    def close(self) -> None:
        self.closed = True


async def _trivial_app(scope: Any, receive: Any, send: Any) -> None:
    while (await receive()).get("more_body"):
        pass
    await send(
        {"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]}
    )
    await send({"type": "http.response.body", "body": b"ok"})


def protocol_cpu_per_request(protocol: str, requests: int) -> float:
    import uvicorn
    from uvicorn.server import ServerState

    from graph.serving import BoundedHttpToolsProtocol

    http: str | type[asyncio.Protocol] = protocol
    if protocol == "bounded":
        http = BoundedHttpToolsProtocol.bounded(64 * 1024, 10.0)
    config = uvicorn.Config(_trivial_app, http=http, log_level="warning", access_log=False)
    config.load()
    loop = asyncio.new_event_loop()

    async def drive() -> float:
        answered = asyncio.Event()
        instance = config.http_protocol_class(  # type: ignore[call-arg]
            config=config, server_state=ServerState(), app_state={}, _loop=loop
        )
        transport = _Transport(answered.set)
        instance.connection_made(transport)
        started = time.process_time()
        for _ in range(requests):
            answered.clear()
            instance.data_received(REQUEST)
            await answered.wait()
        elapsed = time.process_time() - started
        assert not transport.closed
        instance.connection_lost(None)
        return elapsed / requests * 1e6

    try:
        return loop.run_until_complete(drive())
    finally:
        loop.close()


def protocol_only(rounds: int, requests: int) -> None:
    """Each round measures every protocol back to back (order alternating); the cost of
    one against httptools is the median of the rounds' ratios, which cancels most of what
    other processes on the machine do to CPU time."""
    cpus: dict[str, list[float]] = {protocol: [] for protocol in PROTOCOLS}
    for index in range(rounds):
        for protocol in PROTOCOLS if index % 2 == 0 else PROTOCOLS[::-1]:
            cpus[protocol].append(protocol_cpu_per_request(protocol, requests))
    base = cpus["httptools"]
    print(f"| protocol | CPU per request, median of {rounds} rounds of {requests} | vs httptools |")
    for protocol in PROTOCOLS:
        ratio = statistics.median(c / b for c, b in zip(cpus[protocol], base, strict=True))
        deltas = statistics.median(c - b for c, b in zip(cpus[protocol], base, strict=True))
        cpu = statistics.median(cpus[protocol])
        print(f"| {protocol} | {cpu:.1f} us | {deltas:+.1f} us ({ratio - 1:+.1%}) |")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--serve", nargs=2, metavar=("PROTOCOL", "PORT"))
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=5)
    parser.add_argument("--vus", type=int, default=8)
    parser.add_argument("--protocol-only", action="store_true")
    parser.add_argument("--requests", type=int, default=20_000)
    args = parser.parse_args()
    if args.protocol_only:
        protocol_only(args.rounds, args.requests)
        return
    if args.serve:
        serve(args.serve[0], int(args.serve[1]), os.environ["DATA_DIR"])
        return
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        servers = {protocol: start(protocol, work) for protocol in PROTOCOLS}
        rates: dict[str, list[float]] = {protocol: [] for protocol in PROTOCOLS}
        cpus: dict[str, list[float]] = {protocol: [] for protocol in PROTOCOLS}
        try:
            for index in range(args.rounds):
                order = PROTOCOLS if index % 2 == 0 else PROTOCOLS[::-1]
                for protocol in order:
                    process, url = servers[protocol]
                    rate, cpu = k6_rate(url, process.pid, args.seconds, args.vus, work)
                    rates[protocol].append(rate)
                    cpus[protocol].append(cpu)
                    print(f"round {index + 1} {protocol}: {rate:.0f} req/s, {cpu:.0f} us CPU/req")
        finally:
            for process, _ in servers.values():
                process.send_signal(signal.SIGTERM)
                process.wait(timeout=30)
    base = statistics.median(rates["httptools"])
    base_cpu = statistics.median(cpus["httptools"])
    print("| protocol | req/s (median) | range | vs httptools | server CPU/req | vs httptools |")
    for protocol in PROTOCOLS:
        median = statistics.median(rates[protocol])
        cpu = statistics.median(cpus[protocol])
        spread = f"{min(rates[protocol]):.0f}-{max(rates[protocol]):.0f}"
        print(
            f"| {protocol} | {median:.0f} | {spread} | {median / base - 1:+.1%} "
            f"| {cpu:.0f} us | {cpu / base_cpu - 1:+.1%} |"
        )


if __name__ == "__main__":
    main()
