"""Prometheus config and rules: valid for promtool, and every alert fires and stays silent
in promtool's unit tests, with a summary, a description, a row in the README and a
runbook in docs/operating.md."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.helpers import require_tool
from tests.observability.support import (
    PROMETHEUS_DIR,
    ROOT,
    RULE_FILES,
    RULE_TESTS,
    alerts,
    load_yaml,
    metric_names,
    recorded_names,
    rules,
)


def promtool(*args: str, cwd: Path = ROOT) -> str:
    tool = require_tool("promtool")
    result = subprocess.run(
        [tool, *args], cwd=cwd, capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def test_rule_files_are_valid() -> None:
    promtool("check", "rules", *map(str, RULE_FILES))


def test_prometheus_config_is_valid() -> None:
    # Syntax only: the Qdrant credentials file exists inside the stack, not here.
    out = promtool("check", "config", "--syntax-only", str(PROMETHEUS_DIR / "prometheus.yml"))
    assert "SUCCESS" in out


def test_prometheus_config_scrapes_the_api_qdrant_and_alertmanager() -> None:
    config = load_yaml(PROMETHEUS_DIR / "prometheus.yml")
    jobs = {job["job_name"] for job in config["scrape_configs"]}
    assert {"graph-memory", "qdrant", "alertmanager"} <= jobs
    assert config["rule_files"] == ["rules/*.yml"]
    assert config["alerting"]["alertmanagers"]


def test_promtool_unit_tests_pass() -> None:
    out = promtool("test", "rules", *map(str, RULE_TESTS))
    assert out.count("SUCCESS") == len(RULE_TESTS), out


def test_every_alert_has_a_firing_and_a_silent_case() -> None:
    firing: set[str] = set()
    silent: set[str] = set()
    for path in RULE_TESTS:
        for case in load_yaml(path)["tests"]:
            for check in case.get("alert_rule_test", []):
                (firing if check["exp_alerts"] else silent).add(check["alertname"])
    names = {alert["alert"] for alert in alerts()}
    assert names - firing == set(), "alerts never seen firing"
    assert names - silent == set(), "alerts never seen staying silent"


def test_the_seeds_alerts_are_kept() -> None:
    names = {alert["alert"] for alert in alerts()}
    assert {"HighErrorRate", "HighLatency", "ServiceDown", "QdrantDown"} <= names


@pytest.mark.parametrize("alert", alerts(), ids=lambda alert: alert["alert"])
def test_every_alert_is_documented(alert: dict[str, object]) -> None:
    annotations = alert["annotations"]
    labels = alert["labels"]
    assert isinstance(annotations, dict) and isinstance(labels, dict)
    assert {"summary", "description", "runbook"} <= set(annotations)
    assert labels["severity"] in {"critical", "warning"}
    readme = (ROOT / "README.md").read_text()
    assert f"| `{alert['alert']}` |" in readme, "no row in the README's alerts table"
    runbooks = (ROOT / "docs" / "operating.md").read_text()
    assert f"| `{alert['alert']}` |" in runbooks, "no runbook row in docs/operating.md"
    assert annotations["runbook"] == f"docs/operating.md, Alerts > {alert['alert']}"


def test_rules_use_only_recorded_series_they_define() -> None:
    recorded = recorded_names()
    for rule in rules():
        for name in metric_names(rule["expr"]):
            if ":" in name:
                assert name in recorded, f"{name} is not recorded by any rule"
