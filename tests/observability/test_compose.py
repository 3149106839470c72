"""compose.yml: valid for docker-compose (there is no Docker engine here, so `config`
validates the file without running it), and the stack the README promises."""

from __future__ import annotations

import os
import re
import subprocess
from typing import Any

import pytest

from tests.helpers import require_tool
from tests.observability.support import ROOT, load_yaml

COMPOSE = ROOT / "compose.yml"
REQUIRED_ENV = {"QDRANT_API_KEY": "not-a-real-key", "GRAFANA_ADMIN_PASSWORD": "not-a-real-one"}


def compose(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    tool = require_tool("docker-compose")
    return subprocess.run(
        [tool, "--project-directory", str(ROOT), "-f", str(COMPOSE), *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={"PATH": os.environ.get("PATH", ""), **env},
    )


def test_docker_compose_validates_the_file() -> None:
    result = compose("--profile", "load", "config", "-q", env=REQUIRED_ENV)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("missing", sorted(REQUIRED_ENV))
def test_secrets_must_be_given(missing: str) -> None:
    env = {key: value for key, value in REQUIRED_ENV.items() if key != missing}
    result = compose("config", "-q", env=env)
    assert result.returncode != 0
    assert missing in result.stderr


SERVICES: dict[str, Any] = load_yaml(COMPOSE)["services"]


def test_the_stack_has_its_services() -> None:
    assert {"api", "qdrant", "prometheus", "alertmanager", "grafana", "load"} <= set(SERVICES)
    assert SERVICES["load"]["profiles"] == ["load"]
    assert all("profiles" not in s for name, s in SERVICES.items() if name != "load")


def test_images_are_pinned() -> None:
    for name, service in SERVICES.items():
        if "image" in service and "build" not in service:
            assert re.fullmatch(r"[\w./-]+:v?\d+\.\d+\.\d+", service["image"]), name
    dockerfile = (ROOT / "Dockerfile").read_text()
    bases = re.findall(r"^FROM (\S+)", dockerfile, flags=re.MULTILINE)
    assert bases and all(re.fullmatch(r"python:\d+\.\d+\.\d+-slim-\w+", b) for b in bases)


def test_the_api_runs_unprivileged_without_graphiql_or_introspection() -> None:
    api = SERVICES["api"]
    assert api["environment"]["GRAPHIQL"] == "false"
    assert api["environment"]["GRAPHQL_INTROSPECTION"] == "false"
    assert "/readyz" in " ".join(api["healthcheck"]["test"])
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert re.search(r"^USER app$", dockerfile, flags=re.MULTILINE)
    assert "/readyz" in dockerfile


def test_qdrant_has_a_volume_a_healthcheck_and_a_key() -> None:
    qdrant = SERVICES["qdrant"]
    assert any(volume.endswith(":/qdrant/storage") for volume in qdrant["volumes"])
    assert "/readyz" in " ".join(qdrant["healthcheck"]["test"])
    assert "QDRANT_API_KEY" in qdrant["environment"]["QDRANT__SERVICE__API_KEY"]
    assert SERVICES["api"]["depends_on"]["qdrant"]["condition"] == "service_healthy"


def test_observability_is_mounted_from_the_repository() -> None:
    mounts = {
        name: [volume.split(":")[0] for volume in service.get("volumes", [])]
        for name, service in SERVICES.items()
    }
    assert "./observability/prometheus" in mounts["prometheus"]
    assert "./observability/alertmanager" in mounts["alertmanager"]
    assert "./observability/grafana/provisioning" in mounts["grafana"]
    assert "./observability/grafana/dashboards" in mounts["grafana"]
    assert "./loadtest" in mounts["load"]
    for path in [*mounts["prometheus"], *mounts["alertmanager"], *mounts["grafana"]]:
        if path.startswith("./"):
            assert (ROOT / path).is_dir(), path
    assert "GF_SECURITY_ADMIN_PASSWORD" in SERVICES["grafana"]["environment"]


def test_published_ports_listen_on_localhost() -> None:
    for name, service in SERVICES.items():
        for port in service.get("ports", []):
            assert port.startswith("127.0.0.1:"), name
