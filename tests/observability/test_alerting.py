"""Alertmanager: the config is valid, alerts reach the receivers their severity calls for,
and symptom alerts are inhibited while ServiceDown fires (on a real Alertmanager)."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.helpers import free_port, require_tool
from tests.observability.support import ALERTMANAGER_CONFIG, ROUTE_CASES, alerts, load_yaml

STARTUP_SECONDS = 20


def amtool(*args: str) -> subprocess.CompletedProcess[str]:
    tool = require_tool("amtool")
    return subprocess.run([tool, *args], capture_output=True, text=True, timeout=60, check=False)


def test_config_is_valid() -> None:
    result = amtool("check-config", str(ALERTMANAGER_CONFIG))
    assert result.returncode == 0, result.stdout + result.stderr


def test_secrets_are_files_not_values() -> None:
    config = load_yaml(ALERTMANAGER_CONFIG)
    assert config["global"]["smtp_auth_password_file"].startswith("/run/secrets/")
    assert config["global"]["slack_api_url_file"].startswith("/run/secrets/")
    text = ALERTMANAGER_CONFIG.read_text()
    assert "smtp_auth_password:" not in text and "api_url:" not in text


@pytest.mark.parametrize(
    "case", load_yaml(ROUTE_CASES), ids=lambda case: case["labels"].get("alertname", "?")
)
def test_routes(case: dict[str, Any]) -> None:
    labels = [f"{key}={value}" for key, value in case["labels"].items()]
    result = amtool(
        "config",
        "routes",
        "test",
        f"--config.file={ALERTMANAGER_CONFIG}",
        f"--verify.receivers={','.join(case['receivers'])}",
        *labels,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_severity_of_our_alerts_has_a_route_case() -> None:
    covered = {case["labels"].get("severity") for case in load_yaml(ROUTE_CASES)}
    assert {alert["labels"]["severity"] for alert in alerts()} <= covered


@pytest.fixture
def alertmanager(tmp_path: Path) -> Iterator[str]:
    """A real Alertmanager on 127.0.0.1 with our routes and inhibitions; the receivers
    are emptied so that nothing is ever sent anywhere."""
    binary = require_tool("prometheus-alertmanager")
    config = load_yaml(ALERTMANAGER_CONFIG)
    config["global"] = {"resolve_timeout": "5m"}
    config["receivers"] = [{"name": receiver["name"]} for receiver in config["receivers"]]
    config_path = tmp_path / "alertmanager.yml"
    config_path.write_text(yaml.safe_dump(config))
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = (tmp_path / "alertmanager.log").open("wb")
    process = subprocess.Popen(
        [
            binary,
            f"--config.file={config_path}",
            f"--storage.path={tmp_path / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--cluster.listen-address=",
        ],
        stdout=log,
        stderr=log,
    )
    log.close()
    try:
        deadline = time.monotonic() + STARTUP_SECONDS
        while True:
            assert process.poll() is None, (tmp_path / "alertmanager.log").read_text()
            try:
                if httpx.get(f"{url}/-/ready", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "Alertmanager did not start"
            time.sleep(0.1)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


def post_alerts(url: str, *labels: dict[str, str]) -> None:
    now = datetime.now(UTC)
    body = [
        {
            "labels": label_set,
            "annotations": {"summary": "test"},
            "startsAt": now.isoformat(),
            "endsAt": (now + timedelta(minutes=5)).isoformat(),
        }
        for label_set in labels
    ]
    response = httpx.post(f"{url}/api/v2/alerts", json=body, timeout=5)
    assert response.status_code == 200, response.text


def inhibited(url: str) -> dict[str, bool]:
    """alertname -> whether Alertmanager holds it inhibited, once it has them all."""
    response = httpx.get(f"{url}/api/v2/alerts", timeout=5)
    return {
        alert["labels"]["alertname"]: bool(alert["status"]["inhibitedBy"])
        for alert in response.json()
    }


def wait_for(url: str, expected: dict[str, bool]) -> dict[str, bool]:
    deadline = time.monotonic() + 10
    while True:
        seen = inhibited(url)
        if seen == expected or time.monotonic() > deadline:
            return seen
        time.sleep(0.1)


@pytest.mark.slow
def test_service_down_inhibits_its_symptoms_but_not_other_causes(alertmanager: str) -> None:
    post_alerts(
        alertmanager,
        {"alertname": "ServiceDown", "severity": "critical", "job": "graph-memory"},
        {"alertname": "HighErrorRate", "severity": "critical"},
        {"alertname": "StoreTimeouts", "severity": "warning", "operation": "query"},
        {"alertname": "AvailabilityBurnRateFast", "severity": "critical", "slo": "availability"},
        {"alertname": "QdrantDown", "severity": "critical", "job": "qdrant"},
    )
    expected = {
        "ServiceDown": False,
        "HighErrorRate": True,
        "StoreTimeouts": True,
        "AvailabilityBurnRateFast": True,
        "QdrantDown": False,
    }
    assert wait_for(alertmanager, expected) == expected


@pytest.mark.slow
def test_a_fast_burn_inhibits_the_slow_burn_of_the_same_slo(alertmanager: str) -> None:
    post_alerts(
        alertmanager,
        {"alertname": "LatencyBurnRateFast", "severity": "critical", "slo": "latency"},
        {"alertname": "LatencyBurnRateSlow", "severity": "warning", "slo": "latency"},
        {"alertname": "AvailabilityBurnRateSlow", "severity": "warning", "slo": "availability"},
    )
    expected = {
        "LatencyBurnRateFast": False,
        "LatencyBurnRateSlow": True,
        "AvailabilityBurnRateSlow": False,
    }
    assert wait_for(alertmanager, expected) == expected
